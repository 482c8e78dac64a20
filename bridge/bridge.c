#include "bridge.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "err.h"
#include "event.h"
#include "http.h"
#include "hub.h"
#include "metrics.h"
#include "sse.h"

/* The longest the loop sleeps between two runs of libmicrohttpd. */
#define HTTP_POLL_MS 500
/* How long a clean stop waits for streams to flush their last bytes. */
#define STOP_GRACE_MS 2000
/* Users without connections whose replay buffer is kept (least recently
 * published-to are dropped first). */
#define MAX_IDLE_USERS 10000

/* epoll data of the loop's own descriptors (stream sockets use their fd). */
#define TAG_INTAKE (UINT64_MAX)
#define TAG_HTTP (UINT64_MAX - 1)

/* An event on its way from the intake thread to the loop thread. */
struct pending {
  struct pending *next;
  struct sb_frame *frame;
  char user[];
};

struct sb_bridge {
  struct sb_config cfg;
  struct sb_log log;
  struct sb_metrics metrics;
  struct sb_auth *auth;
  struct sb_hub *hub;       /* loop thread only, once started */
  struct sb__http *http;    /* loop thread only, once started */
  char subscription[256];
  long long boot_ms;        /* wall-clock start, the first part of assigned ids */
  atomic_ullong seq;        /* the second part */

  sb_publish_fn publish;
  void *publish_ctx;

  pthread_t thread;
  int started;
  int epfd, evfd;
  atomic_int stopping;

  pthread_mutex_t lock;     /* guards the pending queue */
  struct pending *head, *tail;
};

static long long mono_ms(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

struct sb_bridge *sb_bridge_new(const struct sb_config *cfg, const struct sb_log *log, char *err)
{
  struct sb_bridge *b = calloc(1, sizeof(*b));
  struct sb_hub_opts ho;
  struct timespec now;

  if (!b) {
    snprintf(err, SB_CONFIG_ERR_SIZE, "out of memory");
    return NULL;
  }
  b->epfd = b->evfd = -1;
  pthread_mutex_init(&b->lock, NULL);
  if (sb_config_copy(&b->cfg, cfg)) {
    snprintf(err, SB_CONFIG_ERR_SIZE, "out of memory");
    free(b);
    return NULL;
  }
  b->log = *log;
  b->log.level = cfg->log_level;
  clock_gettime(CLOCK_REALTIME, &now);
  b->boot_ms = (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
  snprintf(b->subscription, sizeof(b->subscription), "%s/+/+", cfg->topic_prefix);
  if (!(b->auth = sb_auth_new(&b->cfg, err)))
    goto fail;
  ho.max_connections = cfg->max_connections;
  ho.max_connections_per_user = cfg->max_connections_per_user;
  ho.replay_buffer = cfg->replay_buffer;
  ho.heartbeat_ms = cfg->heartbeat_interval * 1000;
  ho.retry_ms = cfg->retry_ms;
  ho.max_queue_bytes = (size_t)cfg->max_queue_bytes;
  ho.max_idle_users = MAX_IDLE_USERS;
  if (!(b->hub = sb_hub_new(&ho, &b->log, &b->metrics))) {
    snprintf(err, SB_CONFIG_ERR_SIZE, "out of memory");
    goto fail;
  }
  return b;

fail:
  sb_bridge_free(b);
  return NULL;
}

void sb_bridge_set_publisher(struct sb_bridge *b, sb_publish_fn fn, void *ctx)
{
  b->publish = fn;
  b->publish_ctx = ctx;
}

const char *sb_bridge_subscription(const struct sb_bridge *b)
{
  return b->subscription;
}

int sb_bridge_http_port(const struct sb_bridge *b)
{
  return b->http ? sb__http_port(b->http) : -1;
}

void sb_bridge_set_upstream(struct sb_bridge *b, int connected)
{
  atomic_store(&b->metrics.mqtt_connected, connected ? 1 : 0);
}

void sb_bridge_ingest(struct sb_bridge *b, const char *topic, const void *payload, size_t len)
{
  struct sb_event_rules rules = {b->cfg.topic_prefix, (size_t)b->cfg.max_event_bytes, {0, 0}};
  struct sb_event ev;
  struct sb_event_error why;
  struct pending *p;
  char idbuf[48], shown[96];
  const char *id;
  size_t ulen;
  int was_empty, rc;

  atomic_fetch_add(&b->metrics.events_received, 1);
  clock_gettime(CLOCK_REALTIME, &rules.now);
  rc = sb_event_parse(&rules, topic, strlen(topic), payload, len, &ev, &why);
  if (rc == SB_EINVAL) {
    atomic_fetch_add(&b->metrics.events_dropped[why.reason], 1);
    SB_LOG(&b->log, SB_LOG_WARNING, "[SSE] Dropped message on %s: %s",
           sb_log_printable(topic, shown, sizeof(shown)), why.text);
    return;
  }
  if (rc) {
    SB_LOG(&b->log, SB_LOG_ERROR, "[SSE] Dropped message on %s: %s",
           sb_log_printable(topic, shown, sizeof(shown)), sb_strerror(rc));
    return;
  }
  id = ev.id;
  if (!id) {
    snprintf(idbuf, sizeof(idbuf), "%lld-%llu", b->boot_ms,
             (unsigned long long)atomic_fetch_add(&b->seq, 1) + 1);
    id = idbuf;
  }
  ulen = strlen(ev.user);
  if (!(p = malloc(sizeof(*p) + ulen + 1)) ||
      !(p->frame = sb_frame_event(id, ev.source, ev.target, ev.json, ev.json_len))) {
    free(p);
    sb_event_clear(&ev);
    SB_LOG(&b->log, SB_LOG_ERROR, "[SSE] Dropped message on %s: out of memory",
           sb_log_printable(topic, shown, sizeof(shown)));
    return;
  }
  memcpy(p->user, ev.user, ulen + 1);
  p->next = NULL;
  sb_event_clear(&ev);
  atomic_fetch_add(&b->metrics.events_accepted, 1);

  pthread_mutex_lock(&b->lock);
  was_empty = b->head == NULL;
  if (b->tail)
    b->tail->next = p;
  else
    b->head = p;
  b->tail = p;
  pthread_mutex_unlock(&b->lock);
  if (was_empty && b->evfd >= 0) {
    uint64_t one = 1;
    if (write(b->evfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
      SB_LOG(&b->log, SB_LOG_ERROR, "[SSE] cannot wake the server loop: %s", strerror(errno));
  }
}

/* Loop thread: publishes every queued event, in arrival order. */
static void drain(struct sb_bridge *b)
{
  struct pending *p, *next;
  uint64_t n;

  if (read(b->evfd, &n, sizeof(n)) < 0 && errno != EAGAIN)
    return;
  pthread_mutex_lock(&b->lock);
  p = b->head;
  b->head = b->tail = NULL;
  pthread_mutex_unlock(&b->lock);
  for (; p; p = next) {
    next = p->next;
    sb_hub_publish(b->hub, p->user, p->frame);
    free(p);
  }
}

static void free_pending(struct sb_bridge *b)
{
  struct pending *p = b->head, *next;
  for (; p; p = next) {
    next = p->next;
    sb_frame_unref(p->frame);
    free(p);
  }
  b->head = b->tail = NULL;
}

/* The loop thread. Each turn: send the heartbeats that are due, let
 * libmicrohttpd write what is queued, sleep until the next heartbeat, the
 * next libmicrohttpd timeout, the stop deadline or an event, then take the
 * intake queue and hang-ups. */
static void *loop(void *arg)
{
  struct sb_bridge *b = arg;
  struct epoll_event evs[64];
  long long deadline = 0, now, t, h;
  struct sb_metrics_gauges g;

  for (;;) {
    now = mono_ms();
    sb_hub_tick(b->hub, now);
    sb__http_run(b->http);
    /* Asked again, as that run may have registered streams. */
    t = sb_hub_tick(b->hub, now);
    if (deadline) {
      sb_hub_gauges(b->hub, &g);
      if (g.connections == 0 || now >= deadline)
        break;
      if (t < 0 || deadline - now < t)
        t = deadline - now;
    }
    h = sb__http_timeout(b->http);
    if (h >= 0 && (t < 0 || h < t))
      t = h;
    /* libmicrohttpd (0.9.75, external epoll) sometimes leaves a request
     * that overflowed its memory pool unprocessed until it next runs, and
     * its timeout does not say so: wake at least this often. */
    if (t > HTTP_POLL_MS || t < 0)
      t = HTTP_POLL_MS;
    int n = epoll_wait(b->epfd, evs, 64, (int)t);
    for (int i = 0; i < n; i++) {
      if (evs[i].data.u64 == TAG_INTAKE)
        drain(b);
      else if (evs[i].data.u64 < SB__HTTP_TAG_MIN)
        sb__http_on_socket(b->http, evs[i].data.u64, evs[i].events);
    }
    if (atomic_load(&b->stopping) && deadline == 0) {
      sb__http_quiesce(b->http);
      sb_hub_close_all(b->hub);
      deadline = mono_ms() + STOP_GRACE_MS;
    }
  }
  sb_hub_gauges(b->hub, &g);
  if (g.connections)
    SB_LOG(&b->log, SB_LOG_WARNING, "[SSE] %zu stream(s) did not end in time; closing them",
           g.connections);
  return NULL;
}

int sb_bridge_start(struct sb_bridge *b, char *err)
{
  struct sb__http_env env = {&b->cfg, b->hub,    b->auth,          &b->metrics,
                             &b->log, -1,        b->publish, b->publish_ctx};
  struct epoll_event ev;

  if (b->started) {
    snprintf(err, SB_CONFIG_ERR_SIZE, "already started");
    return SB_ESTATE;
  }
  if (b->cfg.auth == SB_AUTH_NONE)
    SB_LOG(&b->log, SB_LOG_WARNING,
           "[SSE] auth none: the userId query parameter is trusted; for development only");
  if ((b->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
      (b->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
    snprintf(err, SB_CONFIG_ERR_SIZE, "cannot create the event loop: %s", strerror(errno));
    return SB_EIO;
  }
  env.epfd = b->epfd;
  if (!(b->http = sb__http_start(&env, err)))
    return SB_EIO;
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLIN;
  ev.data.u64 = TAG_INTAKE;
  epoll_ctl(b->epfd, EPOLL_CTL_ADD, b->evfd, &ev);
  ev.data.u64 = TAG_HTTP;
  if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, sb__http_fd(b->http), &ev) != 0 ||
      pthread_create(&b->thread, NULL, loop, b) != 0) {
    snprintf(err, SB_CONFIG_ERR_SIZE, "cannot start the server thread: %s", strerror(errno));
    sb__http_stop(b->http);
    b->http = NULL;
    return SB_EIO;
  }
  b->started = 1;
  SB_LOG(&b->log, SB_LOG_NOTICE, "[SSE] Listening on http://%s%s%s:%d%s", 
         strchr(b->cfg.http_bind, ':') ? "[" : "", b->cfg.http_bind,
         strchr(b->cfg.http_bind, ':') ? "]" : "", sb__http_port(b->http), b->cfg.sse_path);
  return 0;
}

void sb_bridge_stop(struct sb_bridge *b)
{
  uint64_t one = 1;

  if (!b || !b->started)
    return;
  atomic_store(&b->stopping, 1);
  if (write(b->evfd, &one, sizeof(one)) < 0)
    SB_LOG(&b->log, SB_LOG_ERROR, "[SSE] cannot wake the server loop: %s", strerror(errno));
  pthread_join(b->thread, NULL);
  b->started = 0;
  /* Streams that did not end in the grace time are unregistered by their
   * free callbacks as libmicrohttpd closes them; any still suspended are
   * resumed first (libmicrohttpd must not stop with suspended connections). */
  sb_hub_close_all(b->hub);
  sb__http_run(b->http);
  sb__http_stop(b->http);
  b->http = NULL;
  SB_LOG(&b->log, SB_LOG_NOTICE, "[SSE] Stopped");
}

void sb_bridge_free(struct sb_bridge *b)
{
  if (!b)
    return;
  sb_bridge_stop(b);
  free_pending(b);
  sb_hub_free(b->hub);
  sb_auth_free(b->auth);
  if (b->epfd >= 0)
    close(b->epfd);
  if (b->evfd >= 0)
    close(b->evfd);
  sb_config_free(&b->cfg);
  pthread_mutex_destroy(&b->lock);
  free(b);
}
