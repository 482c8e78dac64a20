#include "http.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "err.h"
#include "event.h"
#include "presence.h"
#include "sse.h"
#include "stream.h"
#include "topic.h"
#include "webfiles.h"

/* The block of a stream's response: libmicrohttpd sends only the first chunk
 * (the retry line and what of a replay fits), the loop writes the rest. */
#ifndef STREAM_BLOCK
#define STREAM_BLOCK 256
#endif
/* libmicrohttpd's pool per connection, which bounds the request headers. It
 * is most of a stream's memory: libmicrohttpd 0.9.75 reads into half of it
 * and zeroes what it gives back, so an idle stream keeps about 2/3 of it
 * resident (bench/README.md, Profile 2). */
#ifndef CONN_MEMORY_LIMIT
#define CONN_MEMORY_LIMIT (32 * 1024)
#endif
#define REQUEST_TIMEOUT_S 30

struct stream;

/* A socket the loop's epoll watches for a hang-up (EPOLLRDHUP): libmicrohttpd
 * does not see a client leave while its stream is suspended. A direct stream
 * also watches it for EPOLLOUT while the socket is full. Indexed by fd.
 * The watch lives from the stream's start until libmicrohttpd closes the
 * socket (NOTIFY_CLOSED), which may outlive the stream (keep-alive). */
struct watch {
  struct stream *s; /* NULL once the stream has ended */
  unsigned char registered;
};

struct sb__http {
  struct sb__http_env env;
  struct MHD_Daemon *d;
  int port;
  int quiesced;
  struct watch *watches;
  size_t nwatches;
  struct stream *direct;                 /* streams the loop writes itself */
  struct stream *dirty_head, *dirty_tail; /* of those, the ones to write now */
};

/* One SSE response: the hub's connection and the libmicrohttpd connection
 * that carries it.
 *
 * libmicrohttpd sends the headers and the first chunk (the retry line, and
 * what of a replay fits in STREAM_BLOCK). When it asks for more, the stream
 * turns direct and the loop writes the queued frames to the socket itself
 * (stream.h), waiting for EPOLLOUT when it is full. Normally it also detaches:
 * the loop keeps a duplicate of the socket, libmicrohttpd closes its
 * connection (and frees its memory pool), and the loop ends the stream itself
 * (the last chunk, then the close) and frees it. Without a descriptor to spare
 * the connection stays suspended instead and libmicrohttpd is resumed once more
 * only to end it: cleanly (it sends the last chunk) or cut (socket shut down
 * first); its free callback then frees the stream. Without a watched socket a
 * stream stays with libmicrohttpd, which is resumed whenever the hub has
 * something for it. */
struct stream {
  struct sb__http *h;
  struct MHD_Connection *mc;
  struct sb_conn *conn;
  int fd;   /* the watched socket, or -1 */
  int sock; /* the socket, or -1 */
  int suspended;
  unsigned char direct;  /* written by the loop; on h->direct */
  unsigned char dirty;   /* on h->dirty_head */
  unsigned char out_armed; /* watching for EPOLLOUT */
  unsigned char served;  /* libmicrohttpd has asked for the body once */
  unsigned char detached; /* sock is our duplicate; libmicrohttpd has let go */
  unsigned char ending;  /* detached and closing: the last chunk is queued */
  struct stream *prev, *next; /* h->direct */
  struct stream *next_dirty;
  struct sb__stream_out out;
};

static long long now_ms(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* ---- answers -------------------------------------------------------------- */

static void cors_headers(struct sb__http *h, struct MHD_Connection *mc, struct MHD_Response *r)
{
  const char *origin = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Origin");
  const char *list = h->env.cfg->cors_origins;
  size_t olen;

  if (!origin || !*list)
    return;
  olen = strlen(origin);
  for (const char *p = list; *p;) {
    size_t n;
    while (*p == ' ' || *p == ',')
      p++;
    n = strcspn(p, " ,");
    if (n == 1 && *p == '*') {
      MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
      return;
    }
    if (n && n == olen && memcmp(p, origin, n) == 0) {
      MHD_add_response_header(r, "Access-Control-Allow-Origin", origin);
      MHD_add_response_header(r, "Access-Control-Allow-Credentials", "true");
      MHD_add_response_header(r, "Vary", "Origin");
      return;
    }
    p += n;
  }
}

static enum MHD_Result answer(struct sb__http *h, struct MHD_Connection *mc, unsigned status,
                              const char *type, const char *body, size_t len,
                              const char *hname, const char *hvalue)
{
  struct MHD_Response *r =
      MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
  enum MHD_Result ok;

  if (!r)
    return MHD_NO;
  MHD_add_response_header(r, "Content-Type", type);
  MHD_add_response_header(r, "Cache-Control", "no-cache");
  if (hname)
    MHD_add_response_header(r, hname, hvalue);
  cors_headers(h, mc, r);
  ok = MHD_queue_response(mc, status, r);
  MHD_destroy_response(r);
  if (status >= 400)
    sb_metrics_http_error(h->env.metrics, (int)status);
  return ok;
}

/* An error answer: {"error": "<code>", "message": "<why>"}. */
static enum MHD_Result fail(struct sb__http *h, struct MHD_Connection *mc, unsigned status,
                            const char *code, const char *why, const char *hname,
                            const char *hvalue)
{
  json_t *j = json_pack("{s:s, s:s}", "error", code, "message", why);
  char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
  char line[512];
  enum MHD_Result ok;

  json_decref(j);
  snprintf(line, sizeof(line), "%s\n", body ? body : "{}");
  free(body);
  ok = answer(h, mc, status, "application/json", line, strlen(line), hname, hvalue);
  return ok;
}

/* A value of the request that holds a NUL (as %00) is replaced by this,
 * which every check refuses (a control character). */
static const char bad_value[] = "\x01";

/* Returns a query parameter, header or cookie, or NULL when absent. */
static const char *value(struct MHD_Connection *mc, enum MHD_ValueKind kind, const char *key)
{
  const char *v = NULL;
  size_t n = 0;

  if (MHD_lookup_connection_value_n(mc, kind, key, strlen(key), &v, &n) != MHD_YES)
    return NULL;
  if (v && strlen(v) != n)
    return bad_value;
  return v;
}

/* ---- the SSE stream ------------------------------------------------------- */

/* Queues s to be written by the next sb__http_run(). */
static void mark_dirty(struct sb__http *h, struct stream *s)
{
  if (s->dirty)
    return;
  s->dirty = 1;
  s->next_dirty = NULL;
  if (h->dirty_tail)
    h->dirty_tail->next_dirty = s;
  else
    h->dirty_head = s;
  h->dirty_tail = s;
}

static void unmark_dirty(struct sb__http *h, struct stream *s)
{
  struct stream **pp = &h->dirty_head, *prev = NULL;

  if (!s->dirty)
    return;
  while (*pp != s) {
    prev = *pp;
    pp = &(*pp)->next_dirty;
  }
  *pp = s->next_dirty;
  if (h->dirty_tail == s)
    h->dirty_tail = prev;
  s->dirty = 0;
}

/* Watches the socket of a direct stream for writability too (out = 1), or
 * for a hang-up only. */
static void arm_out(struct sb__http *h, struct stream *s, int out)
{
  struct epoll_event ev;

  if (s->fd < 0 || s->out_armed == out)
    return;
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLRDHUP | (out ? EPOLLOUT : 0);
  ev.data.u64 = (uint64_t)s->fd;
  if (epoll_ctl(h->env.epfd, EPOLL_CTL_MOD, s->fd, &ev) == 0)
    s->out_armed = (unsigned char)out;
}

/* Hands a direct stream back to libmicrohttpd to end it: cleanly (it sends
 * the last chunk; everything queued has been written) or cut (the socket is
 * shut down first, and the callback answers with an error). */
static void unwatch(struct sb__http *h, int fd);

static void end_direct(struct sb__http *h, struct stream *s, int cut)
{
  unmark_dirty(h, s);
  arm_out(h, s, 0);
  if (s->prev)
    s->prev->next = s->next;
  else
    h->direct = s->next;
  if (s->next)
    s->next->prev = s->prev;
  s->prev = s->next = NULL;
  s->direct = 0;
  if (s->detached) {
    /* the stream is ours alone: close the socket (after the last chunk,
     * unless cut) and end the hub's connection */
    if (s->fd >= 0)
      unwatch(h, s->fd);
    shutdown(s->sock, cut ? SHUT_RDWR : SHUT_WR);
    close(s->sock);
    sb_hub_unregister(h->env.hub, s->conn);
    free(s);
    return;
  }
  if (cut && s->sock >= 0)
    shutdown(s->sock, SHUT_RDWR);
  s->suspended = 0;
  MHD_resume_connection(s->mc);
}

/* Writes what the hub queued to a direct stream, or ends it. */
static void flush_one(struct sb__http *h, struct stream *s)
{
  int state = sb_conn_state(s->conn), rc;

  if (state == SB_CONN_CUT) {
    end_direct(h, s, 1);
    return;
  }
  rc = sb__stream_write(&s->out, s->sock, s->conn);
  if (rc == SB__STREAM_ERROR) {
    sb_hub_gone(h->env.hub, s->conn); /* wakes s again, as cut */
    return;
  }
  if (rc == SB__STREAM_AGAIN) {
    arm_out(h, s, 1);
    return;
  }
  arm_out(h, s, 0);
  if (state != SB_CONN_CLOSING) {
    sb_conn_wait(s->conn);
  } else if (s->detached && !s->ending) {
    sb__stream_end(&s->out); /* the last chunk, then the close */
    s->ending = 1;
    flush_one(h, s);
  } else {
    end_direct(h, s, 0);
  }
}

static void flush_dirty(struct sb__http *h)
{
  struct stream *s;

  while ((s = h->dirty_head)) {
    h->dirty_head = s->next_dirty;
    if (!h->dirty_head)
      h->dirty_tail = NULL;
    s->dirty = 0;
    if (s->direct)
      flush_one(h, s);
  }
}

/* Puts s on the loop's list of streams it writes itself, and writes what it
 * has queued at the next run (or waits for the hub). */
static void go_direct(struct sb__http *h, struct stream *s)
{
  s->direct = 1;
  s->prev = NULL;
  s->next = h->direct;
  if (h->direct)
    h->direct->prev = s;
  h->direct = s;
  if (sb_conn_queued(s->conn))
    mark_dirty(h, s);
  else
    sb_conn_wait(s->conn);
}

/* The body callback's second call: libmicrohttpd has sent everything before
 * it, so the loop takes the socket over from here, the connection suspended. */
static void take_over(struct sb__http *h, struct stream *s)
{
  go_direct(h, s);
  s->suspended = 1;
  MHD_suspend_connection(s->mc);
}

static int watch_fd(struct sb__http *h, struct stream *s, int fd);

/* The body callback's second call, when the stream has a watched socket:
 * instead of keeping libmicrohttpd's connection (and its memory pool, most
 * of a stream's memory) suspended for the stream's life, the loop keeps a
 * duplicate of the socket and libmicrohttpd closes its connection. It does
 * not shut the socket down in MHD_USE_TURBO mode, so closing its descriptor
 * leaves the stream open. Returns 0, or -1 (no descriptor to spare) to keep
 * the stream suspended instead. */
static int detach(struct sb__http *h, struct stream *s)
{
  int own = fcntl(s->sock, F_DUPFD_CLOEXEC, 0);

  if (own < 0)
    return -1;
  unwatch(h, s->fd);
  if (watch_fd(h, s, own) != 0) {
    close(own);
    watch_fd(h, s, s->sock);
    return -1;
  }
  s->detached = 1;
  s->mc = NULL;
  go_direct(h, s);
  return 0;
}

static void stream_wake(void *ctx)
{
  struct stream *s = ctx;
  const union MHD_ConnectionInfo *ci;

  if (s->direct) {
    mark_dirty(s->h, s); /* written by the next run, outside the hub's call */
    return;
  }

  /* Cut: the client may not be reading, so libmicrohttpd might never get to
   * write (and close) again; end the socket itself, which it then sees. */
  if (sb_conn_state(s->conn) == SB_CONN_CUT &&
      (ci = MHD_get_connection_info(s->mc, MHD_CONNECTION_INFO_CONNECTION_FD)) &&
      ci->connect_fd >= 0)
    shutdown(ci->connect_fd, SHUT_RDWR);
  if (s->suspended) {
    s->suspended = 0;
    MHD_resume_connection(s->mc);
  }
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
  struct stream *s = cls;
  int state = sb_conn_state(s->conn);
  size_t n;

  (void)pos;
  if (state == SB_CONN_CUT)
    return MHD_CONTENT_READER_END_WITH_ERROR;
  if (state == SB_CONN_OPEN && s->served && s->fd >= 0) {
    if (detach(s->h, s) == 0)
      return MHD_CONTENT_READER_END_WITH_ERROR; /* libmicrohttpd lets go; the stream goes on */
    take_over(s->h, s);
    return 0;
  }
  s->served = 1;
  if ((n = sb_conn_read(s->conn, buf, max)) > 0)
    return (ssize_t)n;
  if (state == SB_CONN_CLOSING)
    return MHD_CONTENT_READER_END_OF_STREAM;
  sb_conn_wait(s->conn);
  s->suspended = 1;
  MHD_suspend_connection(s->mc);
  return 0;
}

static void stream_free(void *cls)
{
  struct stream *s = cls;
  if (s->detached)
    return; /* the loop's now (end_direct frees it) */
  if (s->fd >= 0)
    s->h->watches[s->fd].s = NULL;
  unmark_dirty(s->h, s);
  if (s->direct) { /* libmicrohttpd stopped with the stream suspended */
    if (s->prev)
      s->prev->next = s->next;
    else
      s->h->direct = s->next;
    if (s->next)
      s->next->prev = s->prev;
  }
  sb_hub_unregister(s->h->env.hub, s->conn);
  free(s);
}

static void unwatch(struct sb__http *h, int fd)
{
  struct watch *w = &h->watches[fd];
  if (w->registered)
    epoll_ctl(h->env.epfd, EPOLL_CTL_DEL, fd, NULL);
  if (w->s)
    w->s->fd = -1;
  w->s = NULL;
  w->registered = 0;
}

/* Watches the socket of s for a hang-up; without a watch the stream still
 * works, and a dead client is found by the next heartbeat. */
static int watch_fd(struct sb__http *h, struct stream *s, int fd)
{
  struct epoll_event ev;

  if ((size_t)fd >= h->nwatches) {
    size_t n = (size_t)fd * 2 + 64;
    struct watch *w = realloc(h->watches, n * sizeof(*w));
    if (!w)
      return -1;
    memset(w + h->nwatches, 0, (n - h->nwatches) * sizeof(*w));
    h->watches = w;
    h->nwatches = n;
  }
  if (h->watches[fd].registered)
    unwatch(h, fd);
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLRDHUP;
  ev.data.u64 = (uint64_t)fd;
  if (epoll_ctl(h->env.epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
    return -1;
  h->watches[fd].s = s;
  h->watches[fd].registered = 1;
  s->fd = fd;
  s->sock = fd;
  s->out_armed = 0;
  return 0;
}

static void watch(struct sb__http *h, struct stream *s)
{
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(s->mc, MHD_CONNECTION_INFO_CONNECTION_FD);

  if (ci && ci->connect_fd >= 0)
    watch_fd(h, s, ci->connect_fd);
}

void sb__http_on_socket(struct sb__http *h, uint64_t data, uint32_t events)
{
  struct watch *w;

  if (data >= h->nwatches)
    return;
  w = &h->watches[data];
  if (!w->registered)
    return;
  if (!(events & ~(uint32_t)EPOLLOUT)) {
    if (w->s && w->s->direct)
      mark_dirty(h, w->s); /* the socket takes more again */
    return;
  }
  if (w->s)
    sb_hub_gone(h->env.hub, w->s->conn);
  /* The stream ends now; libmicrohttpd closes the socket when it next runs.
   * Stop watching so a level-triggered hang-up does not repeat meanwhile. */
  unwatch(h, (int)data);
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
  if (ci && ci->connect_fd >= 0 && (size_t)ci->connect_fd < h->nwatches)
    unwatch(h, ci->connect_fd);
}


/* Finds the user of a request. Returns the user (a heap string), or NULL
 * after queueing the 401 answer into *answered. */
static char *authenticate(struct sb__http *h, struct MHD_Connection *mc, enum MHD_Result *answered)
{
  struct sb_auth_request req = {
    value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
    value(mc, MHD_COOKIE_KIND, h->env.cfg->jwt_cookie),
    value(mc, MHD_GET_ARGUMENT_KIND, "token"),
    value(mc, MHD_GET_ARGUMENT_KIND, "userId"),
  };
  char *user = NULL, www[256];
  const char *reason;

  if (sb_auth_check(h->env.auth, &req, time(NULL), &user, &reason) == 0)
    return user;
  snprintf(www, sizeof(www),
           "Bearer realm=\"mqtt-sse-bridge\", error=\"invalid_token\", error_description=\"%s\"",
           reason);
  *answered = fail(h, mc, MHD_HTTP_UNAUTHORIZED, "unauthorized", reason, "WWW-Authenticate", www);
  return NULL;
}

static enum MHD_Result serve_stream(struct sb__http *h, struct MHD_Connection *mc)
{
  const struct sb_config *cfg = h->env.cfg;
  const char *device = value(mc, MHD_GET_ARGUMENT_KIND, "deviceId");
  const char *last = value(mc, MHD_HEADER_KIND, "Last-Event-ID");
  char *user = NULL, retry_after[16];
  struct stream *s;
  struct MHD_Response *r;
  enum MHD_Result ok;
  int rc;

  if (!device)
    return fail(h, mc, MHD_HTTP_BAD_REQUEST, "bad_request", "deviceId query parameter is missing",
                NULL, NULL);
  if (!sb_sse_valid_device(device, strlen(device)))
    return fail(h, mc, MHD_HTTP_BAD_REQUEST, "bad_request",
                "deviceId must be 1 to 128 characters of A-Z a-z 0-9 . _ : -", NULL, NULL);
  if (!last || !*last)
    last = value(mc, MHD_GET_ARGUMENT_KIND, "lastEventId");
  if (last && *last && !sb_sse_valid_id(last, strlen(last), SB_EVENT_ID_MAX))
    return fail(h, mc, MHD_HTTP_BAD_REQUEST, "bad_request",
                "Last-Event-ID must be at most 128 characters without control characters", NULL,
                NULL);
  if (!(user = authenticate(h, mc, &ok)))
    return ok;
  if (!(s = calloc(1, sizeof(*s)))) {
    free(user);
    return MHD_NO;
  }
  s->h = h;
  s->mc = mc;
  s->fd = s->sock = -1;
  rc = sb_hub_register(h->env.hub, user, device, last, now_ms(), stream_wake, s, &s->conn);
  free(user);
  if (rc) {
    free(s);
    snprintf(retry_after, sizeof(retry_after), "%d", cfg->retry_ms / 1000 + 1);
    if (rc == SB_ELIMIT || rc == SB_EUSERLIMIT)
      return fail(h, mc, MHD_HTTP_SERVICE_UNAVAILABLE, "too_many_connections",
                  rc == SB_ELIMIT ? "the bridge holds max_connections streams"
                                  : "this user holds max_connections_per_user streams",
                  "Retry-After", retry_after);
    return fail(h, mc, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", sb_strerror(rc), "Retry-After",
                retry_after);
  }
  r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK, stream_read, s,
                                        stream_free);
  if (!r) {
    sb_hub_unregister(h->env.hub, s->conn);
    free(s);
    return MHD_NO;
  }
  MHD_add_response_header(r, "Content-Type", "text/event-stream");
  MHD_add_response_header(r, "Cache-Control", "no-cache");
  MHD_add_response_header(r, "X-Accel-Buffering", "no");
  cors_headers(h, mc, r);
  /* A stream is idle by design; it is suspended while its queue is empty,
   * and a client that stops reading is cut by max_queue_bytes. */
  MHD_set_connection_option(mc, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned int)0);
  ok = MHD_queue_response(mc, MHD_HTTP_OK, r);
  if (ok == MHD_YES)
    watch(h, s);
  MHD_destroy_response(r);
  return ok;
}

/* ---- other endpoints ------------------------------------------------------ */

static enum MHD_Result serve_health(struct sb__http *h, struct MHD_Connection *mc)
{
  struct sb_metrics_gauges g;
  char body[512];
  int up = atomic_load(&h->env.metrics->mqtt_connected);
  const char *broker = atomic_load(&h->env.metrics->mqtt_broker);

  sb_hub_gauges(h->env.hub, &g);
  snprintf(body, sizeof(body),
           "{\"status\":\"%s\",\"mqtt\":\"%s\",%s%s%s\"connections\":%zu,\"users\":%zu}\n",
           up ? "ok" : "unavailable", up ? "connected" : "disconnected",
           broker ? "\"broker\":\"" : "", broker ? broker : "", broker ? "\"," : "", g.connections,
           g.users);
  return answer(h, mc, up ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, "application/json", body,
                strlen(body), NULL, NULL);
}

/* GET /api/presence: what this instance holds of the caller's user. */
static enum MHD_Result serve_presence(struct sb__http *h, struct MHD_Connection *mc)
{
  enum MHD_Result ok = MHD_NO;
  char *user, *text = NULL;
  json_t *o;

  if (!(user = authenticate(h, mc, &ok)))
    return ok;
  if ((o = sb_presence_user_json(h->env.hub, user)) && (text = json_dumps(o, JSON_COMPACT)))
    ok = answer(h, mc, MHD_HTTP_OK, "application/json", text, strlen(text), NULL, NULL);
  free(text);
  json_decref(o);
  free(user);
  return ok;
}

static enum MHD_Result serve_metrics(struct sb__http *h, struct MHD_Connection *mc)
{
  struct sb_metrics_gauges g;
  char body[8192];
  int n;

  sb_hub_gauges(h->env.hub, &g);
  if ((n = sb_metrics_render(h->env.metrics, &g, body, sizeof(body))) < 0)
    return MHD_NO;
  return answer(h, mc, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", body, (size_t)n,
                NULL, NULL);
}

static const char *content_type(const char *name)
{
  const char *dot = strrchr(name, '.');
  if (!dot)
    return "application/octet-stream";
  if (!strcmp(dot, ".html"))
    return "text/html; charset=utf-8";
  if (!strcmp(dot, ".js") || !strcmp(dot, ".mjs"))
    return "text/javascript; charset=utf-8";
  if (!strcmp(dot, ".css"))
    return "text/css; charset=utf-8";
  if (!strcmp(dot, ".json"))
    return "application/json";
  if (!strcmp(dot, ".svg"))
    return "image/svg+xml";
  if (!strcmp(dot, ".png"))
    return "image/png";
  if (!strcmp(dot, ".ico"))
    return "image/x-icon";
  return "application/octet-stream";
}

/* Serves a file of web/: from web_root when set and the file is there, else
 * the copy built into the server; "/" is index.html. Names are limited to
 * [A-Za-z0-9._-] not starting with a dot, so no path escapes web_root. */
static enum MHD_Result serve_static(struct sb__http *h, struct MHD_Connection *mc, const char *url)
{
  const char *root = h->env.cfg->web_root, *name = url + 1;
  const struct sb_webfile *wf;
  char path[1024];
  struct stat st;
  struct MHD_Response *r = NULL;
  enum MHD_Result ok;
  int fd;

  if (!*name)
    name = "index.html";
  if (name[0] == '.' || strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                     "0123456789._-") != strlen(name))
    return fail(h, mc, MHD_HTTP_NOT_FOUND, "not_found", "no such resource", NULL, NULL);
  if (*root) {
    snprintf(path, sizeof(path), "%s/%s", root, name);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0) {
      if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
          !(r = MHD_create_response_from_fd((uint64_t)st.st_size, fd)))
        close(fd);
    }
  }
  if (!r && (wf = sb_webfile_find(name)))
    r = MHD_create_response_from_buffer(wf->len, (void *)wf->data, MHD_RESPMEM_PERSISTENT);
  if (!r)
    return fail(h, mc, MHD_HTTP_NOT_FOUND, "not_found", "no such resource", NULL, NULL);
  MHD_add_response_header(r, "Content-Type", content_type(name));
  MHD_add_response_header(r, "Cache-Control", "no-cache");
  MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
  ok = MHD_queue_response(mc, MHD_HTTP_OK, r);
  MHD_destroy_response(r);
  return ok;
}

/* ---- POST /api/publish ---------------------------------------------------- */

/* A request body being read; the request's con_cls. */
struct upload {
  char *user; /* authenticated on the first call */
  char *buf;
  size_t len, cap;
  int too_large;
};

static size_t body_limit(const struct sb__http *h)
{
  /* The event grows by the fields the bridge adds; the body may carry a
   * little more than the event itself. */
  return (size_t)h->env.cfg->max_event_bytes + 1024;
}

static void upload_free(struct upload *u)
{
  if (!u)
    return;
  free(u->user);
  free(u->buf);
  free(u);
}

static int upload_append(struct sb__http *h, struct upload *u, const char *data, size_t n)
{
  if (u->too_large || u->len + n > body_limit(h)) {
    u->too_large = 1;
    return 0;
  }
  if (u->len + n + 1 > u->cap) {
    size_t cap = (u->len + n + 1) * 2;
    char *buf = realloc(u->buf, cap);
    if (!buf)
      return SB_ENOMEM;
    u->buf = buf;
    u->cap = cap;
  }
  memcpy(u->buf + u->len, data, n);
  u->len += n;
  u->buf[u->len] = '\0';
  return 0;
}

static enum MHD_Result bad_request(struct sb__http *h, struct MHD_Connection *mc, const char *why)
{
  return fail(h, mc, MHD_HTTP_BAD_REQUEST, "bad_request", why, NULL, NULL);
}

/* Turns the body into the SSEEvent that goes to MQTT: the body less deviceId
 * and userId, with sourceDeviceId set from deviceId. */
static enum MHD_Result publish_body(struct sb__http *h, struct MHD_Connection *mc, struct upload *u)
{
  const struct sb_config *cfg = h->env.cfg;
  json_error_t jerr;
  json_t *body = NULL, *v;
  struct sb_event_rules rules = {cfg->topic_prefix, (size_t)cfg->max_event_bytes, {0, 0}};
  struct sb_event ev;
  struct sb_event_error why;
  char topic[600], *payload = NULL, reply[768], line[256];
  const char *device, *channel;
  enum MHD_Result ok;
  int rc;

  if (u->too_large)
    return fail(h, mc, MHD_HTTP_CONTENT_TOO_LARGE, "too_large", "body is over max_event_bytes",
                NULL, NULL);
  if (!u->buf || !(body = json_loadb(u->buf, u->len, JSON_REJECT_DUPLICATES, &jerr)) ||
      !json_is_object(body)) {
    json_decref(body);
    return bad_request(h, mc, "body is not a JSON object");
  }
  device = json_string_value(json_object_get(body, "deviceId"));
  channel = json_string_value(json_object_get(body, "channel"));
  if (!device || !sb_sse_valid_device(device, strlen(device))) {
    ok = bad_request(h, mc, "deviceId must be 1 to 128 characters of A-Z a-z 0-9 . _ : -");
    goto done;
  }
  if (!channel || !sb_topic_valid_level(channel, strlen(channel))) {
    ok = bad_request(h, mc, "channel must be a non-empty string without '/', '+', '#' or control "
                            "characters");
    goto done;
  }
  v = json_object_get(body, "userId");
  if (v && !(json_is_string(v) && strcmp(json_string_value(v), u->user) == 0)) {
    ok = fail(h, mc, MHD_HTTP_FORBIDDEN, "forbidden", "a user may publish only their own events",
              NULL, NULL);
    goto done;
  }
  if (json_object_get(body, "sourceDeviceId")) {
    ok = bad_request(h, mc, "sourceDeviceId is set from deviceId; do not send it");
    goto done;
  }
  snprintf(topic, sizeof(topic), "%s/%s/%s", cfg->topic_prefix, u->user, channel);
  if (json_object_set(body, "sourceDeviceId", json_object_get(body, "deviceId")) ||
      json_object_del(body, "deviceId") || (json_object_del(body, "userId"), 0) ||
      !(payload = json_dumps(body, JSON_COMPACT))) {
    ok = MHD_NO;
    goto done;
  }
  /* The same checks as a message from MQTT. */
  clock_gettime(CLOCK_REALTIME, &rules.now);
  rc = sb_event_parse(&rules, topic, strlen(topic), payload, strlen(payload), &ev, &why);
  if (rc) {
    if (rc == SB_EINVAL && why.reason == SB_DROP_TOO_LARGE)
      ok = fail(h, mc, MHD_HTTP_CONTENT_TOO_LARGE, "too_large", why.text, NULL, NULL);
    else
      ok = bad_request(h, mc, rc == SB_EINVAL ? why.text : sb_strerror(rc));
    goto done;
  }
  sb_event_clear(&ev);
  if (!h->env.publish ||
      (rc = h->env.publish(h->env.publish_ctx, topic, payload, strlen(payload))) != 0) {
    ok = fail(h, mc, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", "the MQTT side is not connected",
              "Retry-After", "1");
    goto done;
  }
  json_decref(body);
  body = json_pack("{s:s, s:s}", "status", "accepted", "topic", topic);
  {
    char *out = body ? json_dumps(body, JSON_COMPACT) : NULL;
    snprintf(reply, sizeof(reply), "%s\n", out ? out : "{\"status\":\"accepted\"}");
    free(out);
  }
  ok = answer(h, mc, MHD_HTTP_ACCEPTED, "application/json", reply, strlen(reply), NULL, NULL);
  SB_LOG(h->env.log, SB_LOG_DEBUG, "[SSE] Published over HTTP on %s",
         sb_log_printable(topic, line, sizeof(line)));

done:
  free(payload);
  json_decref(body);
  return ok;
}

static enum MHD_Result serve_publish(struct sb__http *h, struct MHD_Connection *mc,
                                     const char *upload_data, size_t *upload_data_size,
                                     void **con_cls)
{
  struct upload *u = *con_cls;
  const char *clen;
  enum MHD_Result ok = MHD_NO;

  if (!u) {
    /* First call, headers only: refuse early what can be refused. */
    clen = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (clen && strtoull(clen, NULL, 10) > body_limit(h))
      return fail(h, mc, MHD_HTTP_CONTENT_TOO_LARGE, "too_large", "body is over max_event_bytes",
                  NULL, NULL);
    if (!(u = calloc(1, sizeof(*u))))
      return MHD_NO;
    if (!(u->user = authenticate(h, mc, &ok))) {
      free(u);
      return ok;
    }
    *con_cls = u;
    return MHD_YES;
  }
  if (*upload_data_size) {
    if (upload_append(h, u, upload_data, *upload_data_size))
      return MHD_NO;
    *upload_data_size = 0;
    return MHD_YES;
  }
  return publish_body(h, mc, u);
}

static enum MHD_Result preflight(struct sb__http *h, struct MHD_Connection *mc)
{
  struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
  enum MHD_Result ok;

  if (!r)
    return MHD_NO;
  cors_headers(h, mc, r);
  MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
  MHD_add_response_header(r, "Access-Control-Allow-Headers",
                          "Authorization, Content-Type, Last-Event-ID");
  MHD_add_response_header(r, "Access-Control-Max-Age", "600");
  ok = MHD_queue_response(mc, MHD_HTTP_NO_CONTENT, r);
  MHD_destroy_response(r);
  return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
  struct sb__http *h = cls;
  int get = strcmp(method, MHD_HTTP_METHOD_GET) == 0;
  int options = strcmp(method, MHD_HTTP_METHOD_OPTIONS) == 0;

  (void)version;
  if (strcmp(url, "/api/publish") == 0) {
    if (strcmp(method, MHD_HTTP_METHOD_POST) == 0)
      return serve_publish(h, mc, upload_data, upload_data_size, con_cls);
    if (*con_cls == NULL)
      *con_cls = h;
    else if (*upload_data_size) {
      *upload_data_size = 0;
      return MHD_YES;
    }
    if (options)
      return preflight(h, mc);
    return fail(h, mc, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                "the publish endpoint answers POST (and OPTIONS)", "Allow", "POST, OPTIONS");
  }
  if (*con_cls == NULL) {
    /* Answer on the first call, once the headers are in. A request body, if
     * any, is not read: libmicrohttpd closes such a connection after the
     * answer. */
    *con_cls = h;
  } else if (*upload_data_size) {
    *upload_data_size = 0;
    return MHD_YES;
  }

  if (strcmp(url, h->env.cfg->sse_path) == 0) {
    if (get)
      return serve_stream(h, mc);
    if (options)
      return preflight(h, mc);
    return fail(h, mc, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                "the SSE endpoint answers GET (and OPTIONS)", "Allow", "GET, OPTIONS");
  }
  if (options)
    return preflight(h, mc);
  if (!get && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
    return fail(h, mc, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed", "this resource answers GET",
                "Allow", "GET, HEAD, OPTIONS");
  if (strcmp(url, "/healthz") == 0)
    return serve_health(h, mc);
  if (strcmp(url, "/metrics") == 0)
    return serve_metrics(h, mc);
  if (strcmp(url, "/api/presence") == 0)
    return serve_presence(h, mc);
  return serve_static(h, mc, url);
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
  (void)mc;
  (void)toe;
  if (*con_cls && *con_cls != cls)
    upload_free(*con_cls);
  *con_cls = NULL;
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

struct sb__http *sb__http_start(const struct sb__http_env *env, struct sb_err *err)
{
  struct sb__http *h = calloc(1, sizeof(*h));
  struct sockaddr_storage ss;
  /* MHD_USE_TURBO: libmicrohttpd closes a connection without shutting its
   * socket down, which lets a stream outlive its connection (detach) */
  unsigned flags = MHD_USE_EPOLL | MHD_USE_TURBO | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
  const union MHD_DaemonInfo *info;

  if (!h) {
    sb_err_set(err, "out of memory");
    return NULL;
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
    free(h);
    return NULL;
  }
  info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
  h->port = info ? info->port : env->cfg->http_port;
  return h;
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

void sb__http_run(struct sb__http *h)
{
  flush_dirty(h);
  MHD_run(h->d);
  /* libmicrohttpd closes the connections that this run ended only at the
   * start of the next run, and its timeout does not say so: without a
   * second run, a connection refused with 431 would stay open until
   * something else happens. */
  MHD_run(h->d);
  /* streams that this run handed over with a replay still queued */
  flush_dirty(h);
}

long long sb__http_timeout(struct sb__http *h)
{
  MHD_UNSIGNED_LONG_LONG t;
  if (h->dirty_head)
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
  while (h->direct)
    end_direct(h, h->direct, 1);
  MHD_run(h->d);
  MHD_stop_daemon(h->d);
  free(h->watches);
  free(h);
}
