/* hub.h: who is connected, and what each connection has still to receive.
 *
 * The hub keeps users, their devices and each device's connections (several
 * tabs may share a device id), a replay buffer of recent events per user, a
 * bounded byte queue per connection, and the heartbeat schedule. It is the
 * in-app hub's register / unregister / broadcast / sendToDevice / heartbeat,
 * over shared frames: an event is framed once and every recipient's queue
 * holds a reference to the same bytes.
 *
 * It counts the bytes it holds (sb_hub_memory) and keeps within
 * max_memory by evicting replay events, idle users' first; see
 * sb_hub_opts.max_memory.
 *
 * Pure logic: no sockets, no threads, no clock, no JSON of its own. Time
 * comes in as milliseconds of a monotonic clock; the one event the hub makes
 * up (system/resync) comes from the caller's resync function, which stamps it.
 * A hub and all its connections belong to one thread (the server's loop
 * thread); nothing here locks. */
#ifndef SB_HUB_H
#define SB_HUB_H

#include <stddef.h>
#include <sys/uio.h>

#include "log.h"
#include "metrics.h"
#include "sse.h"

struct sb_hub;
struct sb_conn;

/* Called when a connection that was waiting (sb_conn_wait) has something new
 * to read or must close, and always when it is cut (SB_CONN_CUT), waiting or
 * not, since its carrier must then drop it at once. Runs on the hub's thread, inside the hub call that
 * queued the data; it must not call back into the hub. */
typedef void (*sb_conn_wake_fn)(void *ctx);

struct sb_hub_opts {
  int max_connections;
  int max_connections_per_user;
  int replay_buffer;      /* events kept per user; 0 keeps none */
  int heartbeat_ms;
  int retry_ms;
  size_t max_queue_bytes; /* per connection */
  size_t max_idle_users;  /* users without connections whose replay is kept
                           * (SIZE_MAX: no count; max_memory bounds them) */
  /* Bytes the hub may hold: its replay buffers, users, connections and
   * queues, each allocation counted as sb_mem_cost() says and a frame once
   * however many hold it. Over it, the hub evicts replay events, oldest
   * first: those of users without connections (least recently published to
   * first, then lingering users), then those of connected users beyond
   * their newest replay_floor, then the floors themselves down to each
   * connected user's newest event. What is still over (queues, and the
   * newest events of connected users) stays: the hub never cuts a stream
   * for memory. 0: no limit. */
  size_t max_memory;
  int replay_floor; /* see max_memory; 0 gives connected users no floor */
  /* Called after a user's connections changed (registered or unregistered).
   * It may read the hub (sb_hub_foreach_device) but must not change it.
   * NULL: none. */
  void (*on_presence)(void *ctx, const char *user);
  /* Called with on 1 when a user gets a first connection (and was not
   * lingering), with on 0 once it has had none for interest_linger_ms. The
   * server subscribes and unsubscribes the user's topics with it. NULL: none. */
  void (*on_interest)(void *ctx, const char *user, int on);
  /* Returns a new frame (the hub takes the reference) of the system/resync
   * event for a connection whose replay is incomplete: last_id is the id it
   * came back with, reason "unknown_last_event_id" or "replay_truncated".
   * The caller stamps it (the server: sb_event_resync() at the wall clock).
   * Runs inside sb_hub_register; must not call back into the hub. NULL, or a
   * NULL return: the replay goes without it. */
  struct sb_frame *(*resync)(void *ctx, const char *last_id, const char *reason);
  void *cb_ctx; /* the first argument of on_presence, on_interest and resync */
  /* The id of the beginning of this run ("<start ms>-0" in the server),
   * copied. A stream's first bytes then carry its resume point with the retry
   * line ("retry: N\nid: X\n\n", which sets an EventSource's last event id
   * without firing an event): the id of the newest event of its user's
   * replay buffer, or origin_id when the buffer is empty. A stream that comes
   * back with origin_id gets the user's whole buffer, with no resync event
   * while the buffer still holds every event since the start. NULL: streams
   * start with the retry line alone. */
  const char *origin_id;
  long long interest_linger_ms;
};

enum sb_conn_state {
  SB_CONN_OPEN = 0,   /* streaming */
  SB_CONN_CLOSING = 1, /* end the stream cleanly once the queue is empty */
  SB_CONN_CUT = 2     /* end the stream at once (too slow) */
};

/* Returns a new hub, or NULL when out of memory. log and metrics are
 * borrowed and must outlive the hub. */
struct sb_hub *sb_hub_new(const struct sb_hub_opts *opts, const struct sb_log *log,
                          struct sb_metrics *metrics);

/* Takes the limits of opts that may change while running: max_connections,
 * max_connections_per_user, heartbeat_ms (a changed interval restarts every
 * connection's schedule from the latest time the hub was given), retry_ms (for
 * new connections), max_queue_bytes and max_memory (a lower one evicts at
 * once). Returns 0 or SB_ENOMEM (nothing changed). */
int sb_hub_reconfigure(struct sb_hub *hub, const struct sb_hub_opts *opts);

/* Frees the hub, its replay buffers and any connection still registered.
 * NULL-safe. */
void sb_hub_free(struct sb_hub *hub);

/* Registers a connection of user's device and queues its first bytes: the
 * retry line (with the stream's resume point when origin_id is set), then, when last_event_id is given, the user's later events from
 * the replay buffer (with the same exclusion and targeting rules; an id not in
 * the buffer gets a system/resync event and the whole buffer). Logs the
 * registration. Returns 0 and sets *out, SB_ELIMIT (max_connections),
 * SB_EUSERLIMIT (max_connections_per_user) or SB_ENOMEM. */
int sb_hub_register(struct sb_hub *hub, const char *user, const char *device,
                    const char *last_event_id, long long now_ms, sb_conn_wake_fn wake,
                    void *wake_ctx, struct sb_conn **out);

/* Unregisters and frees a connection with its queue; logs it. NULL-safe. */
void sb_hub_unregister(struct sb_hub *hub, struct sb_conn *conn);

/* Publishes an event frame to user: keeps it in the user's replay buffer and
 * queues it to the connections that should get it (only frame->target's if
 * set, else all but frame->source's), then evicts replay events while the
 * hub holds more than max_memory. Steals the caller's reference. Returns
 * the number of connections it was queued to. */
size_t sb_hub_publish(struct sb_hub *hub, const char *user, struct sb_frame *frame);

/* Queues frame to every connection of user except those of except_device
 * (NULL excludes none). Borrows frame. Returns the number of connections.
 * Used by the tests only: the server delivers through sb_hub_publish(). */
size_t sb_hub_broadcast(struct sb_hub *hub, const char *user, struct sb_frame *frame,
                        const char *except_device);

/* Queues frame to every connection of user's device. Borrows frame. Returns
 * the number of connections (0: the device is not connected). Used by the
 * tests only: the server delivers through sb_hub_publish(). */
size_t sb_hub_send_to_device(struct sb_hub *hub, const char *user, const char *device,
                             struct sb_frame *frame);

/* Queues a heartbeat comment to conn. Returns 0, or SB_ESTATE if closing.
 * Used by the tests only: the server's heartbeats come from sb_hub_tick(). */
int sb_hub_heartbeat(struct sb_hub *hub, struct sb_conn *conn);

/* Sends the heartbeats that are due at now_ms and ends the interest linger
 * of users whose time is up. Returns the milliseconds until the next of
 * these, or -1 when there is none. */
long long sb_hub_tick(struct sb_hub *hub, long long now_ms);

/* Asks conn to end its stream once what is queued has been read (state
 * SB_CONN_CLOSING), waking it. hub is unused. Used by the tests only: the
 * server closes every stream at once (sb_hub_close_all). */
void sb_hub_close(struct sb_hub *hub, struct sb_conn *conn);

/* Marks conn as gone (its client hung up): state SB_CONN_CUT, queue freed,
 * woken so that its carrier closes it; a no-op when already cut. hub is
 * unused. */
void sb_hub_gone(struct sb_hub *hub, struct sb_conn *conn);

/* sb_hub_close() on every connection (for a clean stop). */
void sb_hub_close_all(struct sb_hub *hub);

/* Calls fn for every user with a connection (connected 1) or in its
 * interest linger (connected 0). fn must not change the hub. */
void sb_hub_foreach_interest(const struct sb_hub *hub,
                             void (*fn)(void *ctx, const char *user, int connected), void *ctx);

/* Returns 1 if the user's replay buffer holds an event with this id. */
int sb_hub_has_event(const struct sb_hub *hub, const char *user, const char *id);

/* Starts the interest linger of a user that has no connection and is not
 * lingering (an event came for a user this instance does not hold), so that
 * on_interest(user, 0) follows after interest_linger_ms. No-op otherwise. */
void sb_hub_linger(struct sb_hub *hub, const char *user, long long now_ms);

/* Calls fn with the id (borrowed for the call) and number of connections of
 * each connected device of user, newest device first; fn must not change the
 * hub. Returns the user's number of connections (0: fn was not called). */
size_t sb_hub_foreach_device(const struct sb_hub *hub, const char *user,
                             void (*fn)(void *ctx, const char *device, size_t connections),
                             void *ctx);

/* Returns the number of connections of user (0 if unknown). */
size_t sb_hub_connection_count(const struct sb_hub *hub, const char *user);

/* Returns 1 if user has at least one connection. */
int sb_hub_is_user_connected(const struct sb_hub *hub, const char *user);

/* Returns the number of events in user's replay buffer (0 if unknown). */
size_t sb_hub_replay_count(const struct sb_hub *hub, const char *user);

/* Returns the bytes the hub holds of kind SB_MEM_REPLAY or SB_MEM_QUEUES
 * (0 for another kind), as max_memory counts them; the same numbers go to
 * the metrics' memory gauges as they change. */
size_t sb_hub_memory(const struct sb_hub *hub, enum sb_mem_kind kind);

/* Fills the hub's gauges for /metrics. */
void sb_hub_gauges(const struct sb_hub *hub, struct sb_metrics_gauges *g);

/* Copies up to max queued bytes of conn into buf and consumes them; frames
 * are batched while they fit. Returns the number of bytes copied (0: the
 * queue is empty). */
size_t sb_conn_read(struct sb_conn *conn, char *buf, size_t max);

/* Points iov (at most max_iov entries) at the queued bytes of conn, oldest
 * first, up to max_bytes in all, without consuming them; the bytes stay valid
 * until they are consumed or the connection is cut or unregistered. Returns the
 * number of entries filled and sets *bytes to their total. For a writer that
 * sends straight from the shared frames (writev). */
size_t sb_conn_peek(const struct sb_conn *conn, struct iovec *iov, size_t max_iov,
                    size_t max_bytes, size_t *bytes);

/* Consumes the first n queued bytes of conn (n at most sb_conn_queued()),
 * as sb_conn_read() would without copying them. */
void sb_conn_consume(struct sb_conn *conn, size_t n);

/* Marks conn as waiting: the next queued byte or close calls its wake
 * function once. Call it after sb_conn_read() returned 0. */
void sb_conn_wait(struct sb_conn *conn);

/* Returns the state of conn (enum sb_conn_state). */
int sb_conn_state(const struct sb_conn *conn);

/* Returns the number of bytes queued to conn. */
size_t sb_conn_queued(const struct sb_conn *conn);

/* Returns conn's user or device id; borrowed, valid until unregistered.
 * Used by the tests only. */
const char *sb_conn_user(const struct sb_conn *conn);
const char *sb_conn_device(const struct sb_conn *conn);

#endif
