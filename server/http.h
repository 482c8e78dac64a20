/* http.h: the libmicrohttpd adapter (internal to the server).
 *
 * Routes requests (the SSE stream, /healthz, /metrics, static files) and
 * turns hub connections into streaming responses. libmicrohttpd sends a
 * stream's headers and first chunk; then the loop keeps a duplicate of the
 * socket and writes the stream's frames to it itself (stream.h), while
 * libmicrohttpd closes its connection and frees its memory (it does not shut
 * the socket down in MHD_USE_TURBO mode). Runs in libmicrohttpd's
 * external-epoll mode: every function here is called on the server's loop
 * thread, which also owns the hub. */
#ifndef SB_HTTP_H
#define SB_HTTP_H

#include <stdint.h>

#include "err.h"

#include "auth.h"
#include "config.h"
#include "hub.h"
#include "log.h"
#include "metrics.h"

struct sb__http;

/* What the HTTP side borrows from the server; all must outlive it. */
struct sb__http_env {
  const struct sb_config *cfg;
  struct sb_hub *hub;
  const struct sb_auth *auth;
  struct sb_metrics *metrics;
  const struct sb_log *log;
  int epfd; /* the loop's epoll: streams watch their sockets for hang-ups */
  /* POST /api/publish hands its event to this (NULL: answer 503) */
  int (*publish)(void *ctx, const char *topic, const void *payload, size_t len);
  void *publish_ctx;
};

/* epoll_event.data.u64 values at or above this are not stream sockets. */
#define SB__HTTP_TAG_MIN (UINT64_MAX - 15)

/* Binds and returns the HTTP side, or NULL with err. */
struct sb__http *sb__http_start(const struct sb__http_env *env, struct sb_err *err);

/* Returns the epoll fd to watch for readability, then call sb__http_run(). */
int sb__http_fd(const struct sb__http *h);

/* Returns the bound port. */
int sb__http_port(const struct sb__http *h);

/* Handles an event of the loop's epoll whose data.u64 is below
 * SB__HTTP_TAG_MIN: a stream's socket was hung up by its client, or takes
 * more bytes again (EPOLLOUT). */
void sb__http_on_socket(struct sb__http *h, uint64_t data, uint32_t events);

/* Writes what the hub queued to the streams it woke, then lets
 * libmicrohttpd do its work. Never blocks. */
void sb__http_run(struct sb__http *h);

/* Returns the longest the loop may sleep before sb__http_run(), in ms (-1:
 * no limit; 0 while streams wait to be written). */
long long sb__http_timeout(struct sb__http *h);

/* Stops accepting new connections (the streams go on). */
void sb__http_quiesce(struct sb__http *h);

/* Stops the daemon and frees h; call only once every stream has ended (the
 * hub holds no connection), or streams are cut. NULL-safe. */
void sb__http_stop(struct sb__http *h);

#endif
