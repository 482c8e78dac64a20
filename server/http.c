#include "http.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "api_publish.h"
#include "cors.h"
#include "endpoints.h"
#include "handover.h"
#include "request.h"

/* libmicrohttpd's pool per connection, which bounds the request headers. It
 * is most of a stream's memory: libmicrohttpd 0.9.75 reads into half of it
 * and zeroes what it gives back, so an idle stream keeps about 2/3 of it
 * resident (bench/README.md, Profile 2). */
#ifndef CONN_MEMORY_LIMIT
#define CONN_MEMORY_LIMIT (32 * 1024)
#endif
#define REQUEST_TIMEOUT_S 30

struct sb__http {
  struct sb__http_env env;
  struct MHD_Daemon *d;
  int port;
  int quiesced;
  struct sb_cors *cors;     /* cors_origins, parsed */
  struct sb__handover *ho;  /* the streams */
};

/* ---- routing -------------------------------------------------------------- */

/* libmicrohttpd calls this once the headers are in, then once per piece of
 * the body, then once more. A request is answered on its first call, but for
 * POST /api/publish, which reads its body first; *con_cls is then its upload,
 * and h for the others (whose body, if any, is not read: libmicrohttpd
 * closes such a connection after the answer). */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
  struct sb__http *h = cls;
  struct sb__request q = {mc, &h->env, h->cors};
  int get = strcmp(method, MHD_HTTP_METHOD_GET) == 0;
  int options = strcmp(method, MHD_HTTP_METHOD_OPTIONS) == 0;

  (void)version;
  if (strcmp(url, "/api/publish") == 0 && strcmp(method, MHD_HTTP_METHOD_POST) == 0)
    return sb__serve_publish(&q, upload_data, upload_data_size, con_cls);
  if (*con_cls == NULL) {
    *con_cls = h;
  } else if (*upload_data_size) {
    *upload_data_size = 0;
    return MHD_YES;
  }

  if (strcmp(url, "/api/publish") == 0) {
    if (options)
      return sb__answer_preflight(&q);
    return sb__answer_error(&q, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                            "the publish endpoint answers POST (and OPTIONS)", "Allow",
                            "POST, OPTIONS");
  }
  if (strcmp(url, h->env.cfg->sse_path) == 0) {
    if (get)
      return sb__serve_stream(&q, h->ho);
    if (options)
      return sb__answer_preflight(&q);
    return sb__answer_error(&q, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                            "the SSE endpoint answers GET (and OPTIONS)", "Allow", "GET, OPTIONS");
  }
  if (options)
    return sb__answer_preflight(&q);
  if (!get && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
    return sb__answer_error(&q, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                            "this resource answers GET", "Allow", "GET, HEAD, OPTIONS");
  if (strcmp(url, "/healthz") == 0)
    return sb__serve_health(&q);
  if (strcmp(url, "/metrics") == 0)
    return sb__serve_metrics(&q);
  if (strcmp(url, "/api/presence") == 0)
    return sb__serve_presence(&q);
  return sb__serve_static(&q, url);
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
  (void)mc;
  (void)toe;
  if (*con_cls != cls)
    sb__publish_upload_free(*con_cls);
  *con_cls = NULL;
}

static void on_connection(void *cls, struct MHD_Connection *mc, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
  struct sb__http *h = cls;
  const union MHD_ConnectionInfo *ci;

  (void)socket_context;
  if (toe != MHD_CONNECTION_NOTIFY_CLOSED)
    return;
  ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
  if (ci)
    sb__handover_closed(h->ho, ci->connect_fd);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
  struct sb__http *h = cls;
  char line[512];
  size_t n;

  vsnprintf(line, sizeof(line), fmt, ap);
  n = strlen(line);
  while (n && line[n - 1] == '\n')
    line[--n] = '\0';
  SB_LOG(h->env.log, SB_LOG_DEBUG, "[HTTP] %s", line);
}

/* ---- the daemon ----------------------------------------------------------- */

struct sb__http *sb__http_start(const struct sb__http_env *env, struct sb_err *err)
{
  struct sb__http *h = calloc(1, sizeof(*h));
  struct sockaddr_storage ss;
  /* MHD_USE_TURBO: libmicrohttpd closes a connection without shutting its
   * socket down, which lets a stream outlive its connection (handover.h) */
  unsigned flags = MHD_USE_EPOLL | MHD_USE_TURBO | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
  const union MHD_DaemonInfo *info;

  if (!h || sb_cors_new(env->cfg->cors_origins, &h->cors) ||
      !(h->ho = sb__handover_new(env->hub, env->log, env->epfd))) {
    sb_err_set(err, "out of memory");
    goto error;
  }
  h->env = *env;
  memset(&ss, 0, sizeof(ss));
  if (inet_pton(AF_INET, env->cfg->http_bind, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
    ((struct sockaddr_in *)&ss)->sin_family = AF_INET;
    ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)env->cfg->http_port);
  } else {
    inet_pton(AF_INET6, env->cfg->http_bind, &((struct sockaddr_in6 *)&ss)->sin6_addr);
    ((struct sockaddr_in6 *)&ss)->sin6_family = AF_INET6;
    ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)env->cfg->http_port);
    flags |= MHD_USE_IPv6;
  }
  h->d = MHD_start_daemon(
      flags, (uint16_t)env->cfg->http_port, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, &ss,
      MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)REQUEST_TIMEOUT_S, MHD_OPTION_CONNECTION_LIMIT,
      (unsigned int)(env->cfg->max_connections + 256), MHD_OPTION_CONNECTION_MEMORY_LIMIT,
      (size_t)CONN_MEMORY_LIMIT, MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int)1024,
      MHD_OPTION_NOTIFY_CONNECTION, on_connection, h, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
      MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h,
      MHD_OPTION_END);
  if (!h->d) {
    sb_err_set(err, "http_port: cannot listen on %s:%d (in use or not permitted)",
               env->cfg->http_bind, env->cfg->http_port);
    goto error;
  }
  info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
  h->port = info ? info->port : env->cfg->http_port;
  return h;

error:
  if (h) {
    sb__handover_free(h->ho);
    sb_cors_free(h->cors);
    free(h);
  }
  return NULL;
}

int sb__http_fd(const struct sb__http *h)
{
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
  return info ? info->epoll_fd : -1;
}

int sb__http_port(const struct sb__http *h)
{
  return h->port;
}

void sb__http_reload(struct sb__http *h)
{
  struct sb_cors *cors;

  if (sb_cors_new(h->env.cfg->cors_origins, &cors)) {
    SB_LOG(h->env.log, SB_LOG_WARNING,
           "[HTTP] Reload: out of memory; cors_origins stays as it was");
    return;
  }
  sb_cors_free(h->cors);
  h->cors = cors;
}

void sb__http_on_socket(struct sb__http *h, uint64_t data, uint32_t events)
{
  sb__handover_on_socket(h->ho, data, events);
}

void sb__http_run(struct sb__http *h)
{
  sb__handover_flush(h->ho);
  MHD_run(h->d);
  /* libmicrohttpd closes the connections that this run ended only at the
   * start of the next run, and its timeout does not say so: without a
   * second run, a connection refused with 431 would stay open until
   * something else happens. */
  MHD_run(h->d);
  /* streams that this run handed over with a replay still queued */
  sb__handover_flush(h->ho);
}

long long sb__http_timeout(const struct sb__http *h)
{
  MHD_UNSIGNED_LONG_LONG t;

  if (sb__handover_due(h->ho))
    return 0;
  if (MHD_get_timeout(h->d, &t) != MHD_YES)
    return -1;
  return (long long)t;
}

void sb__http_quiesce(struct sb__http *h)
{
  MHD_socket fd;

  if (h->quiesced)
    return;
  h->quiesced = 1;
  fd = MHD_quiesce_daemon(h->d);
  if (fd != MHD_INVALID_SOCKET)
    close(fd);
}

void sb__http_stop(struct sb__http *h)
{
  if (!h)
    return;
  /* Streams still written by the loop (their clients did not take the last
   * bytes in time) are cut, and libmicrohttpd closes them. */
  sb__handover_cut_all(h->ho);
  MHD_run(h->d);
  MHD_stop_daemon(h->d);
  sb__handover_free(h->ho);
  sb_cors_free(h->cors);
  free(h);
}
