/* bridge.h: the server that both forms run: intake, hub and HTTP.
 *
 * An sb_bridge owns one loop thread that serves HTTP (libmicrohttpd, driven
 * by the loop's epoll) and owns the hub. MQTT messages reach it through
 * sb_bridge_ingest(), which any thread may call (the daemon's libmosquitto
 * thread, the broker's thread in the plugin): it validates and frames the
 * event on the caller's thread and hands the frame to the loop through a
 * queue and an eventfd. No function here calls libmosquitto or the broker.
 *
 * Life: sb_bridge_new() -> sb_bridge_start() -> ... -> sb_bridge_stop() ->
 * sb_bridge_free(). */
#ifndef SB_BRIDGE_H
#define SB_BRIDGE_H

#include <stddef.h>

#include "config.h"
#include "log.h"

struct sb_bridge;

/* Publishes one MQTT message on behalf of POST /api/publish. Called on the
 * server's loop thread; must not block. payload is borrowed for the call.
 * Returns 0, or a negative code when the MQTT side cannot take it now. */
typedef int (*sb_publish_fn)(void *ctx, const char *topic, const void *payload, size_t len);

/* Returns a bridge for cfg (deep-copied) that logs through log (copied), or
 * NULL with err (SB_CONFIG_ERR_SIZE bytes) naming the option at fault. Nothing
 * is started. Any thread. */
struct sb_bridge *sb_bridge_new(const struct sb_config *cfg, const struct sb_log *log, char *err);

/* Binds the HTTP listener and starts the loop thread. Returns 0, or SB_EIO
 * with err saying why (for example the port is taken); the bridge is then
 * still stopped and may be freed. Call once. */
int sb_bridge_start(struct sb_bridge *b, char *err);

/* Sets how POST /api/publish reaches MQTT (without one it answers 503).
 * Call before sb_bridge_start(). */
void sb_bridge_set_publisher(struct sb_bridge *b, sb_publish_fn fn, void *ctx);

/* Returns the HTTP port actually bound (useful with http_port 0). */
int sb_bridge_http_port(const struct sb_bridge *b);

/* Feeds one MQTT message. topic is NUL-terminated; payload (len bytes) is
 * borrowed for the call. A bad message is dropped, counted and logged; a
 * good one is queued for the loop. Thread-safe; never blocks on HTTP. */
void sb_bridge_ingest(struct sb_bridge *b, const char *topic, const void *payload, size_t len);

/* Says whether the MQTT side is up (for /healthz and /metrics). Any thread. */
void sb_bridge_set_upstream(struct sb_bridge *b, int connected);

/* Returns the subscription the MQTT side needs: "<topic_prefix>/+/+". */
const char *sb_bridge_subscription(const struct sb_bridge *b);

/* Ends every stream cleanly, stops HTTP and joins the loop thread. Safe to
 * call when not started, and more than once. Not from the loop thread. */
void sb_bridge_stop(struct sb_bridge *b);

/* Frees a stopped bridge. NULL-safe. */
void sb_bridge_free(struct sb_bridge *b);

#endif
