/* server.h: the server that both forms run: intake, hub and HTTP.
 *
 * An sb_server owns one loop thread that serves HTTP (libmicrohttpd, driven
 * by the loop's epoll) and owns the hub. MQTT messages reach it through
 * sb_server_ingest(), which any thread may call (the broker's thread in the
 * plugin, the daemon's MQTT thread while it drives its own socket): it
 * validates and frames the event on the caller's thread and hands the frame
 * to the loop through a queue and an eventfd. The daemon hands its connected
 * socket to the loop (sb_server_source_watch), which then ingests on its own
 * thread. No function here calls libmosquitto or the broker.
 *
 * Life: sb_server_new() -> sb_server_start() -> ... -> sb_server_stop() ->
 * sb_server_free(). */
#ifndef SB_SERVER_H
#define SB_SERVER_H

#include <stddef.h>

#include "err.h"

#include "config.h"
#include "log.h"

struct sb_server;

/* What the server asks of the MQTT side. Both are called on the server's
 * loop thread (or the thread that stops it) and must not block. */
struct sb_mqtt_ops {
  /* Publishes one MQTT message. flags: SB_PUBLISH_EVENT for an event of
   * POST /api/publish (the daemon publishes it at mqtt_qos; the plugin at
   * QoS 1, and also hands it to SSE at once), SB_PUBLISH_RETAIN for a
   * retained presence record or status (QoS 1). payload is borrowed for the
   * call. Returns 0, or a negative code when the MQTT side cannot take it now
   * (SB_ESTATE: it is away). */
  int (*publish)(void *ctx, const char *topic, const void *payload, size_t len, unsigned flags);
  /* Subscribes (on 1) or unsubscribes (on 0) one topic filter; only for
   * subscribe_mode per_user. NULL where the broker decides (the plugin). */
  int (*subscribe)(void *ctx, const char *filter, int on);
  void *ctx;
};

#define SB_PUBLISH_EVENT 1u
#define SB_PUBLISH_RETAIN 2u

/* Returns a server for cfg (deep-copied) that logs through log (copied), or
 * NULL with err naming the option at fault. Nothing is started. Any
 * thread. */
struct sb_server *sb_server_new(const struct sb_config *cfg, const struct sb_log *log, struct sb_err *err);

/* Binds the HTTP listener, names the instance and starts the loop thread.
 * Returns 0, or SB_EIO (for example the port is taken) or SB_EINVAL (the
 * presence will cannot be written) with err saying why; the server is then
 * still stopped and may be freed. Call once. */
int sb_server_start(struct sb_server *b, struct sb_err *err);

/* Sets how the server reaches MQTT (POST /api/publish answers 503 without
 * it; presence and per_user need it). ops is copied. Call before
 * sb_server_start(). */
void sb_server_set_mqtt(struct sb_server *b, const struct sb_mqtt_ops *ops);

/* Returns this instance's name, "<hostname>:<http port>", for presence
 * records and the daemon's default client id; "" until started. Borrowed
 * from b. */
const char *sb_server_instance(const struct sb_server *b);

/* Returns the will the MQTT side should set, when presence is on: the
 * instance status topic, and in *payload its offline status (both borrowed
 * from b; the topic is NULL when presence_prefix is empty, the payload ""
 * until started). See presence.h. */
const char *sb_server_will(const struct sb_server *b, const char **payload);

/* Returns "<presence_prefix>/+" when presence is on, else NULL: the MQTT
 * side subscribes it to learn of records an earlier run left behind. */
const char *sb_server_presence_filter(const struct sb_server *b);

/* Hands over a retained presence record seen on the presence filter. A
 * record of this instance from an earlier run (a crash left it) is cleared
 * by the loop thread unless its user is connected again. topic and payload
 * are borrowed for the call. Any thread. */
void sb_server_presence_seen(struct sb_server *b, const char *topic, const void *payload,
                             size_t len);

/* Sets the subscriptions gauge (topic filters the broker acknowledged). Any
 * thread. */
void sb_server_set_subscriptions(struct sb_server *b, int n);

/* Applies what can change at run time from cfg (log_level, heartbeat_interval,
 * retry_ms, limits, max_queue_bytes, max_memory, jwt options, cors_origins, and the
 * files of http_tls_cert and http_tls_key, read again: new handshakes show
 * the new certificate); logs each option that differs and needs a restart.
 * Returns 0, or SB_EINVAL/SB_EIO with err naming the option (nothing is then
 * changed: a bad certificate pair leaves the running one). Not from the loop
 * thread; blocks until the loop has taken the new settings. */
int sb_server_reload(struct sb_server *b, const struct sb_config *cfg, struct sb_err *err);

/* Feeds one MQTT message. topic is NUL-terminated; payload (len bytes) is
 * borrowed for the call. A bad message is dropped, counted and logged, and
 * so is a good one that the memory budget has no room for (max_memory, less
 * what the hub holds and what waits already: reason "memory", one log line
 * per 10 s); any other is queued for the loop. Thread-safe; never blocks on
 * HTTP. */
void sb_server_ingest(struct sb_server *b, const char *topic, const void *payload, size_t len);

/* Holds back the loop's wake-up for what sb_server_ingest() queues until
 * sb_server_ingest_release(), which wakes the loop once if anything waits:
 * an intake that reads a burst of messages hands it over with one wake-up.
 * Events are journaled and queued as always, only seen by the loop later.
 * For a server fed by one intake thread (the daemon's client thread, until
 * it hands its socket to the loop: sb_server_source_watch), which calls
 * both. */
void sb_server_ingest_hold(struct sb_server *b);
void sb_server_ingest_release(struct sb_server *b);

/* A descriptor of the MQTT side that the loop watches: the daemon hands its
 * broker socket to the loop once connected, so that a message is read, its
 * event journaled and delivered, and its acknowledgement written on one
 * thread, without a hop between threads. The callbacks run on the loop
 * thread, only while the descriptor is watched. */
struct sb_server_source {
  /* The descriptor is ready: events is a mix of SB_SOURCE_IN, SB_SOURCE_OUT
   * and SB_SOURCE_ERR (0: sb_server_source_kick() asked). What it ingests
   * meanwhile goes to the hub at once, with no wake-up of its own; the
   * streams are written on the loop's turn. */
  void (*ready)(void *ctx, unsigned events);
  /* Each turn of the loop: does what is due at now_ms (monotonic; it may
   * read and ingest, as ready() does) and returns how many ms until it next
   * needs a turn (-1: no need). */
  long long (*tick)(void *ctx, long long now_ms);
  /* The loop ends (sb_server_stop) while the descriptor is watched: it is
   * no longer, and the MQTT side drives it by itself from now on. */
  void (*released)(void *ctx);
  void *ctx;
};

#define SB_SOURCE_IN 1u
#define SB_SOURCE_OUT 2u
#define SB_SOURCE_ERR 4u

/* Sets the source's callbacks (copied). Call before sb_server_start(). */
void sb_server_set_source(struct sb_server *b, const struct sb_server_source *src);

/* Watches fd for events (SB_SOURCE_IN, SB_SOURCE_OUT), or changes what it is
 * watched for. Returns 0, or SB_ESTATE when the loop is not running or is
 * ending (the caller keeps the descriptor), or SB_EIO. Any thread. */
int sb_server_source_watch(struct sb_server *b, int fd, unsigned events);

/* Stops watching the source's descriptor: open says whether it is still
 * open (a closed one left the loop's epoll set with its close, and its
 * number may be another descriptor's already). Loop thread. */
void sb_server_source_unwatch(struct sb_server *b, int open);

/* Has the loop call ready(ctx, 0) soon while the descriptor is watched.
 * Any thread. */
void sb_server_source_kick(struct sb_server *b);

/* Says whether the MQTT side is up (for /healthz and /metrics). Any thread.
 * Going up also makes the loop publish the instance's presence again and, in
 * per_user mode, subscribe every user it holds again. */
void sb_server_set_upstream(struct sb_server *b, int connected);

/* Names the broker the MQTT side is on, "host:port", for /healthz ("broker")
 * and /metrics (mqtt_sse_bridge_mqtt_broker_info); NULL while on none.
 * broker is borrowed: it must stay unchanged until it is replaced or the
 * server is stopped. Any thread. */
void sb_server_set_broker(struct sb_server *b, const char *broker);

/* Returns the subscription the MQTT side needs: "<topic_prefix>/+/+" (in
 * per_user mode the loop asks for "<topic_prefix>/<user>/+" instead).
 * Borrowed from b; any thread. */
const char *sb_server_subscription(const struct sb_server *b);

/* Ends every stream cleanly, stops HTTP and joins the loop thread. Safe to
 * call when not started, and more than once. Not from the loop thread. */
void sb_server_stop(struct sb_server *b);

/* Frees a stopped server. NULL-safe. */
void sb_server_free(struct sb_server *b);

#endif
