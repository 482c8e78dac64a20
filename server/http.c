#include "http.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <microhttpd.h>

#include "api_publish.h"
#include "clock.h"
#include "cors.h"
#include "endpoints.h"
#include "handover.h"
#include "linger.h"
#include "request.h"
#include "tls.h"

/* libmicrohttpd's pool per connection, which bounds the request headers. It
 * is most of a stream's memory: libmicrohttpd 0.9.75 reads into half of it
 * and zeroes what it gives back, so an idle stream keeps about 2/3 of it
 * resident (bench/README.md, Profile 2). */
#ifndef CONN_MEMORY_LIMIT
#define CONN_MEMORY_LIMIT (32 * 1024)
#endif
#define REQUEST_TIMEOUT_S 30
/* HTTPS: GnuTLS's defaults but TLS 1.2 and 1.3 only. */
#define TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

struct sb__http {
  struct sb__http_env env;
  struct MHD_Daemon *d;
  int port;
  int quiesced;
  struct sb_cors *cors;     /* cors_origins, parsed */
  struct sb__handover *ho;  /* the streams */
  struct sb__linger *linger;
  struct sb__tls *tls;      /* HTTPS: the pair new connections take; else NULL */
};

/* ---- routing -------------------------------------------------------------- */

/* A request was answered on its first call, before its body (if any) was
 * read: libmicrohttpd closes the connection after the answer, which then
 * lingers (linger.h) so that a client still sending reads the answer. */
static void answered_early(struct sb__http *h, const struct sb__request *q)
{
  const union MHD_ConnectionInfo *ci;

  if (sb__request_has_body(q) &&
      (ci = MHD_get_connection_info(q->mc, MHD_CONNECTION_INFO_CONNECTION_FD)))
    sb__linger_mark(h->linger, ci->connect_fd);
}

/* Answers a request but POST /api/publish, on its first call. */
static enum MHD_Result route(struct sb__http *h, const struct sb__request *q, const char *url,
                             const char *method)
{
  int get = strcmp(method, MHD_HTTP_METHOD_GET) == 0;
  int options = strcmp(method, MHD_HTTP_METHOD_OPTIONS) == 0;

  if (strcmp(url, "/api/publish") == 0) {
    if (options)
      return sb__answer_preflight(q);
    return sb__answer_error(q, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                            "the publish endpoint answers POST (and OPTIONS)", "Allow",
                            "POST, OPTIONS");
  }
  if (strcmp(url, h->env.cfg->sse_path) == 0) {
    if (get)
      return sb__serve_stream(q, h->ho);
    if (options)
      return sb__answer_preflight(q);
    return sb__answer_error(q, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                            "the SSE endpoint answers GET (and OPTIONS)", "Allow", "GET, OPTIONS");
  }
  if (options)
    return sb__answer_preflight(q);
  if (!get && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
    return sb__answer_error(q, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                            "this resource answers GET", "Allow", "GET, HEAD, OPTIONS");
  if (strcmp(url, "/healthz") == 0)
    return sb__serve_health(q);
  if (strcmp(url, "/metrics") == 0)
    return sb__serve_metrics(q);
  if (strcmp(url, "/api/presence") == 0)
    return sb__serve_presence(q);
  return sb__serve_static(q, url);
}

/* libmicrohttpd calls this once the headers are in, then once per piece of
 * the body, then once more. A request is answered on its first call, but for
 * POST /api/publish, which reads its body first (unless it refuses it on its
 * headers); *con_cls is then its upload, and h for the others (whose body, if
 * any, is not read: libmicrohttpd closes such a connection after the
 * answer, and it lingers). */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
  struct sb__http *h = cls;
  struct sb__request q = {mc, &h->env, h->cors};
  enum MHD_Result ok;

  (void)version;
  if (strcmp(url, "/api/publish") == 0 && strcmp(method, MHD_HTTP_METHOD_POST) == 0) {
    int first = *con_cls == NULL;
    ok = sb__serve_publish(&q, upload_data, upload_data_size, con_cls);
    if (first && *con_cls == NULL)
      answered_early(h, &q); /* refused on its headers */
    return ok;
  }
  if (*con_cls == NULL) {
    *con_cls = h;
  } else if (*upload_data_size) {
    *upload_data_size = 0;
    return MHD_YES;
  } else {
    return route(h, &q, url, method); /* the body was read after all */
  }
  ok = route(h, &q, url, method);
  /* not a GET: its stream outlives libmicrohttpd's connection (handover.h) */
  if (strcmp(method, MHD_HTTP_METHOD_GET) != 0)
    answered_early(h, &q);
  return ok;
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

/* A connection starts or ends. Over HTTPS it holds the certificate pair
 * current when it started, in its socket context, until it ends. */
static void on_connection(void *cls, struct MHD_Connection *mc, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
  struct sb__http *h = cls;
  const union MHD_ConnectionInfo *ci;

  if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
    *socket_context = sb__tls_ref(h->tls);
    return;
  }
  if (toe != MHD_CONNECTION_NOTIFY_CLOSED)
    return;
  ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
  if (ci) {
    sb__handover_closed(h->ho, ci->connect_fd);
    sb__linger_closing(h->linger, ci->connect_fd);
  }
  sb__tls_unref(*socket_context);
  *socket_context = NULL;
}

/* GnuTLS asks for the certificate of a handshake: the pair its connection
 * holds. libmicrohttpd makes the connection the session's pointer. */
static int select_cert(gnutls_session_t session, const gnutls_datum_t *req_ca_dn, int nreqs,
                       const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
                       gnutls_pcert_st **chain, unsigned int *n, gnutls_privkey_t *key)
{
  struct MHD_Connection *mc = gnutls_session_get_ptr(session);
  const union MHD_ConnectionInfo *ci;

  (void)req_ca_dn;
  (void)nreqs;
  (void)pk_algos;
  (void)pk_algos_length;
  if (!mc || !(ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT)) ||
      !ci->socket_context)
    return -1;
  sb__tls_select(ci->socket_context, chain, n, key);
  return 0;
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
  struct MHD_OptionItem tls_opts[] = {
      {MHD_OPTION_END, 0, NULL}, {MHD_OPTION_END, 0, NULL}, {MHD_OPTION_END, 0, NULL}};
  int tls = *env->cfg->http_tls_cert != '\0';

  if (!h)
    goto nomem;
  if (tls) {
    if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES ||
        MHD_is_feature_supported(MHD_FEATURE_HTTPS_CERT_CALLBACK) != MHD_YES) {
      sb_err_set(err, "http_tls_cert: this libmicrohttpd has no TLS support");
      goto error;
    }
    if (sb__tls_read(env->cfg->http_tls_cert, env->cfg->http_tls_key, &h->tls, err))
      goto error;
    flags |= MHD_USE_TLS;
    /* The pair comes from select_cert, so that a reload can swap it. */
    tls_opts[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_CERT_CALLBACK, 0, (void *)select_cert};
    tls_opts[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0, TLS_PRIORITIES};
  }
  if (sb_cors_new(env->cfg->cors_origins, &h->cors) ||
      !(h->ho = sb__handover_new(env->hub, env->log, env->epfd, tls)) ||
      !(h->linger = sb__linger_new(env->epfd, env->log)))
    goto nomem;
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
      MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h, MHD_OPTION_ARRAY, tls_opts,
      MHD_OPTION_END);
  if (!h->d) {
    sb_err_set(err, "http_port: cannot listen on %s:%d (in use or not permitted)",
               env->cfg->http_bind, env->cfg->http_port);
    goto error;
  }
  info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
  h->port = info ? info->port : env->cfg->http_port;
  if (tls)
    SB_LOG(env->log, SB_LOG_NOTICE, "[HTTP] HTTPS with %s", sb__tls_describe(h->tls));
  return h;

nomem:
  sb_err_set(err, "out of memory");
error:
  if (h) {
    sb__linger_free(h->linger);
    sb__handover_free(h->ho);
    sb_cors_free(h->cors);
    sb__tls_unref(h->tls);
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

int sb__http_tls(const struct sb__http *h)
{
  return h->tls != NULL;
}

void sb__http_reload(struct sb__http *h, struct sb__tls **tls)
{
  struct sb_cors *cors;
  struct sb__tls *old;

  if (h->tls && *tls) {
    old = h->tls;
    h->tls = *tls;
    *tls = NULL;
    sb__tls_unref(old); /* connections that hold it keep it until they end */
    SB_LOG(h->env.log, SB_LOG_NOTICE, "[HTTP] Reload: HTTPS with %s", sb__tls_describe(h->tls));
  } else if (h->tls || *tls) {
    SB_LOG(h->env.log, SB_LOG_WARNING, "[SSE] Reload: http_tls_cert changed; HTTPS %s on restart",
           h->tls ? "goes off" : "comes on");
  }
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
  if (data & SB__LINGER_TAG)
    sb__linger_on_socket(h->linger, data, events);
  else
    sb__handover_on_socket(h->ho, data, events);
}

void sb__http_run(struct sb__http *h)
{
  sb__linger_expire(h->linger, sb_clock_mono_ms());
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
  long long l;

  if (sb__handover_due(h->ho))
    return 0;
  l = sb__linger_next(h->linger, sb_clock_mono_ms());
  if (MHD_get_timeout(h->d, &t) != MHD_YES)
    return l;
  return l >= 0 && (unsigned long long)l < t ? l : (long long)t;
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
  sb__linger_free(h->linger);
  sb__handover_free(h->ho);
  sb_cors_free(h->cors);
  sb__tls_unref(h->tls);
  free(h);
}
