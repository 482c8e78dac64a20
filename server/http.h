/* http.h: the libmicrohttpd adapter (internal to the server).
 *
 * Runs libmicrohttpd's daemon and routes its requests: GET <sse_path> (the
 * SSE stream, endpoints.h, whose life handover.h follows), POST /api/publish
 * (api_publish.h), GET /healthz, /metrics, /api/presence and the web files
 * (endpoints.h), and the CORS preflight (OPTIONS) of each; over HTTPS when
 * http_tls_cert and http_tls_key are set (tls.h). A request answered before
 * its body was read has a lingering close (linger.h). Runs in
 * libmicrohttpd's external-epoll mode: every function here is called on the
 * server's loop thread, which also owns the hub. */
#ifndef SB_HTTP_H
#define SB_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#include "auth.h"
#include "config.h"
#include "hub.h"
#include "log.h"
#include "metrics.h"

/* epoll_event.data.u64 values at or above this are not the HTTP side's
 * sockets (streams' and lingering ones). */
#define SB__HTTP_TAG_MIN (UINT64_MAX - 15)

/* Hands the message of POST /api/publish to the MQTT side: payload (len
 * bytes) on topic, both borrowed for the call, not retained. Returns 0, or a
 * negative code while MQTT cannot take it (answered 503). */
typedef int (*sb__http_publish_fn)(void *ctx, const char *topic, const void *payload, size_t len);

struct sb__http;
struct sb__tls;

/* What the HTTP side borrows from the server; all must outlive it. */
struct sb__http_env {
  const struct sb_config *cfg;
  struct sb_hub *hub;
  const struct sb_auth *auth;
  struct sb_metrics *metrics;
  const struct sb_log *log;
  int epfd; /* the loop's epoll: streams watch their sockets for hang-ups */
  sb__http_publish_fn publish; /* NULL: POST /api/publish answers 503 */
  void *publish_ctx;
};

/* Binds and returns the HTTP side, or NULL with err (a bad certificate or
 * key names http_tls_cert or http_tls_key). Loop thread (or before the loop
 * starts). */
struct sb__http *sb__http_start(const struct sb__http_env *env, struct sb_err *err);

/* Returns libmicrohttpd's epoll fd, for the loop to watch for readability and
 * then call sb__http_run(). */
int sb__http_fd(const struct sb__http *h);

/* Returns the bound port. */
int sb__http_port(const struct sb__http *h);

/* Returns 1 when h serves HTTPS, else 0. */
int sb__http_tls(const struct sb__http *h);

/* Takes again from the config what a reload may change of the HTTP side:
 * cors_origins, parsed once here (when out of memory the previous list stays,
 * and a warning says so), and the certificate pair *tls, read again
 * (sb__tls_read), which it takes (*tls is then NULL) when h serves HTTPS:
 * new handshakes use it, open connections keep theirs. HTTPS goes on or
 * off only with a restart: a warning says so, and *tls stays the caller's.
 * Loop thread. */
void sb__http_reload(struct sb__http *h, struct sb__tls **tls);

/* Handles an event of the loop's epoll whose data.u64 is below
 * SB__HTTP_TAG_MIN: a stream's socket was hung up by its client, or takes
 * more bytes again (EPOLLOUT), or a lingering socket has bytes or ended. */
void sb__http_on_socket(struct sb__http *h, uint64_t data, uint32_t events);

/* Writes what the hub queued to the streams it woke, then lets
 * libmicrohttpd do its work. Never blocks. */
void sb__http_run(struct sb__http *h);

/* Returns the longest the loop may sleep before sb__http_run(), in ms (-1:
 * no limit; 0 while streams wait to be written). */
long long sb__http_timeout(const struct sb__http *h);

/* Stops accepting new connections (the streams go on). */
void sb__http_quiesce(struct sb__http *h);

/* Stops the daemon and frees h; call only once every stream has ended (the
 * hub holds no connection), or streams are cut. NULL-safe. */
void sb__http_stop(struct sb__http *h);

#endif
