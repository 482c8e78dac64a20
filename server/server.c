#include "server.h"

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
#include "journal.h"
#include "metrics.h"
#include "sse.h"

#include <jansson.h>

/* The longest the loop sleeps between two runs of libmicrohttpd. */
#define HTTP_POLL_MS 500
/* How long a clean stop waits for streams to flush their last bytes. */
#define STOP_GRACE_MS 2000
/* Users without connections whose replay buffer is kept (least recently
 * published-to are dropped first). */
#define MAX_IDLE_USERS 10000
/* subscribe_mode per_user: how long a user's subscription outlives its last
 * connection, so that a reload or a reconnect misses nothing. */
#define INTEREST_LINGER_MS 60000
/* The replay journal rotates at this size (it holds one to two of them). */
#define JOURNAL_ROTATE_BYTES (32u * 1024 * 1024)

/* epoll data of the loop's own descriptors (stream sockets use their fd). */
#define TAG_INTAKE (UINT64_MAX)
#define TAG_HTTP (UINT64_MAX - 1)

/* An event on its way from the intake thread to the loop thread. */
struct pending {
  struct pending *next;
  struct sb_frame *frame;
  int publisher_id; /* the id came with the event: drop it if already held */
  char user[];
};

/* A user whose retained presence record comes from an earlier run of this
 * instance (a crash left it): cleared unless the user is connected now. */
struct stale {
  struct stale *next;
  char user[];
};

/* A configuration reload waiting for the loop thread. */
struct reload {
  struct sb_config *cfg; /* the new settings; gets the old strings back */
  struct sb_auth *auth;  /* likewise */
  int done;
};

struct sb_server {
  struct sb_config cfg;
  struct sb_log log;
  struct sb_metrics metrics;
  struct sb_auth *auth;
  struct sb_hub *hub;       /* loop thread only, once started */
  struct sb__http *http;    /* loop thread only, once started */
  char subscription[256];
  long long boot_ms;        /* wall-clock start, the first part of assigned ids */
  atomic_ullong seq;        /* the second part */

  struct sb_mqtt_ops ops;
  struct sb_journal *journal; /* NULL: replay in memory only */
  char instance[96];          /* "<hostname>:<http port>" */
  char will[192];             /* the instance's offline record */
  char started_at[32];        /* ISO 8601 time of this run's start */
  char presence_filter[256];  /* "<presence_prefix>/+", or "" */
  atomic_int republish;       /* the MQTT side came up: announce again */

  pthread_t thread;
  int started;
  int epfd, evfd;
  atomic_int stopping;

  pthread_mutex_t lock;     /* guards the pending queue, the journal and reload */
  pthread_cond_t reloaded;
  struct pending *head, *tail;
  struct reload *reload;
  struct stale *stale;        /* presence records of an earlier run to check */
};

static long long mono_ms(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void hub_opts(const struct sb_config *cfg, struct sb_hub_opts *ho)
{
  memset(ho, 0, sizeof(*ho));
  ho->max_connections = cfg->max_connections;
  ho->max_connections_per_user = cfg->max_connections_per_user;
  ho->replay_buffer = cfg->replay_buffer;
  ho->heartbeat_ms = cfg->heartbeat_interval * 1000;
  ho->retry_ms = cfg->retry_ms;
  ho->max_queue_bytes = (size_t)cfg->max_queue_bytes;
  ho->max_idle_users = MAX_IDLE_USERS;
}

/* ---- presence and per-user subscriptions (loop thread) -------------------- */

/* A user id can be one level of a topic filter only without these. */
static int topic_level_ok(const char *user)
{
  return *user && !strpbrk(user, "/+#");
}

static void publish_retained(struct sb_server *b, const char *topic, const char *payload)
{
  int rc = b->ops.publish(b->ops.ctx, topic, payload, strlen(payload), SB_PUBLISH_RETAIN);
  /* while the broker is away every record is published again on its return */
  if (rc)
    SB_LOG(&b->log, rc == SB_ESTATE ? SB_LOG_DEBUG : SB_LOG_WARNING,
           "[SSE] Cannot publish presence on %s: %s", topic, sb_strerror(rc));
  else
    atomic_fetch_add(&b->metrics.presence_published, 1);
}

/* Publishes what this instance holds of user on <presence_prefix>/<user>:
 * the record while it has connections, an empty retained message (which
 * clears the record) once it has none. */
static void presence_user(struct sb_server *b, const char *user)
{
  char topic[512], ts[32];
  json_t *o;
  char *text = NULL;
  struct timespec now;

  if (!*b->cfg.presence_prefix || !b->ops.publish || !topic_level_ok(user) ||
      (size_t)snprintf(topic, sizeof(topic), "%s/%s", b->cfg.presence_prefix, user) >= sizeof(topic))
    return;
  if (!sb_hub_is_user_connected(b->hub, user)) {
    publish_retained(b, topic, "");
    return;
  }
  clock_gettime(CLOCK_REALTIME, &now);
  sb_event_format_time(now, ts);
  if ((o = sb_hub_presence(b->hub, user)) &&
      json_object_set_new(o, "instance", json_string(b->instance)) == 0 &&
      json_object_set_new(o, "started", json_string(b->started_at)) == 0 &&
      json_object_set_new(o, "timestamp", json_string(ts)) == 0 &&
      (text = json_dumps(o, JSON_COMPACT)))
    publish_retained(b, topic, text);
  free(text);
  json_decref(o);
}

static void on_presence(void *ctx, const char *user)
{
  presence_user(ctx, user);
}

static void on_interest(void *ctx, const char *user, int on)
{
  struct sb_server *b = ctx;
  char filter[512];
  int rc;

  if (!b->ops.subscribe || !topic_level_ok(user) ||
      (size_t)snprintf(filter, sizeof(filter), "%s/%s/+", b->cfg.topic_prefix, user) >= sizeof(filter))
    return;
  if ((rc = b->ops.subscribe(b->ops.ctx, filter, on)) != 0)
    SB_LOG(&b->log, SB_LOG_WARNING, "[MQTT] Cannot %ssubscribe %s: %s", on ? "" : "un", filter,
           sb_strerror(rc));
}

static void instance_status(struct sb_server *b, int online)
{
  char text[256], ts[32];
  struct timespec now;

  if (!*b->cfg.presence_prefix || !b->ops.publish)
    return;
  if (!online) {
    publish_retained(b, b->cfg.presence_prefix, b->will);
    return;
  }
  clock_gettime(CLOCK_REALTIME, &now);
  sb_event_format_time(now, ts);
  snprintf(text, sizeof(text),
           "{\"instance\":\"%s\",\"online\":true,\"started\":\"%s\",\"timestamp\":\"%s\"}",
           b->instance, b->started_at, ts);
  publish_retained(b, b->cfg.presence_prefix, text);
}

static void announce_user(void *ctx, const char *user, int connected)
{
  struct sb_server *b = ctx;
  if (connected)
    presence_user(b, user);
  on_interest(b, user, 1);
}

/* The MQTT side came (back) up: the broker may have lost retained records and
 * subscriptions (a restart without persistence), so say it all again. */
static void announce(struct sb_server *b)
{
  instance_status(b, 1);
  sb_hub_foreach_interest(b->hub, announce_user, b);
}

/* ---- the replay journal --------------------------------------------------- */

static char *dup_n(const char *s, size_t n)
{
  char *d = malloc(n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

static void journal_event(void *ctx, const struct sb_journal_rec *r)
{
  struct sb_server *b = ctx;
  char *user = dup_n(r->user, r->user_len), *id = dup_n(r->id, r->id_len);
  char *src = r->source_len ? dup_n(r->source, r->source_len) : NULL;
  char *tgt = r->target_len ? dup_n(r->target, r->target_len) : NULL;
  struct sb_frame *f;

  if (user && id && (src || !r->source_len) && (tgt || !r->target_len) &&
      !((r->flags & SB_JOURNAL_PUBLISHER_ID) && sb_hub_has_event(b->hub, user, id)) &&
      (f = sb_frame_event(id, src, tgt, r->json, r->json_len)))
    sb_hub_publish(b->hub, user, f);
  free(user);
  free(id);
  free(src);
  free(tgt);
}

static int open_journal(struct sb_server *b, struct sb_err *err)
{
  size_t n, bad;

  if (!*b->cfg.replay_dir)
    return 0;
  if (sb_journal_open(b->cfg.replay_dir, JOURNAL_ROTATE_BYTES, &b->journal, err))
    return SB_EIO;
  n = sb_journal_replay(b->journal, journal_event, b, &bad);
  SB_LOG(&b->log, SB_LOG_NOTICE, "[SSE] Replay journal %s: %zu event%s read back%s",
         b->cfg.replay_dir, n, n == 1 ? "" : "s", bad ? " (a damaged end was cut off)" : "");
  return 0;
}

/* ---- life ----------------------------------------------------------------- */

struct sb_server *sb_server_new(const struct sb_config *cfg, const struct sb_log *log, struct sb_err *err)
{
  struct sb_server *b = calloc(1, sizeof(*b));
  struct sb_hub_opts ho;
  struct timespec now;

  if (!b) {
    sb_err_set(err, "out of memory");
    return NULL;
  }
  b->epfd = b->evfd = -1;
  pthread_mutex_init(&b->lock, NULL);
  pthread_cond_init(&b->reloaded, NULL);
  if (sb_config_copy(&b->cfg, cfg)) {
    sb_err_set(err, "out of memory");
    pthread_cond_destroy(&b->reloaded);
    pthread_mutex_destroy(&b->lock);
    free(b);
    return NULL;
  }
  b->log = *log;
  b->log.level = cfg->log_level;
  clock_gettime(CLOCK_REALTIME, &now);
  b->boot_ms = (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
  sb_event_format_time(now, b->started_at);
  if (*cfg->presence_prefix)
    snprintf(b->presence_filter, sizeof(b->presence_filter), "%s/+", cfg->presence_prefix);
  snprintf(b->subscription, sizeof(b->subscription), "%s/+/+", cfg->topic_prefix);
  if (!(b->auth = sb_auth_new(&b->cfg, err)))
    goto fail;
  hub_opts(cfg, &ho);
  ho.on_presence = on_presence;
  if (cfg->subscribe_mode == SB_SUBSCRIBE_PER_USER) {
    ho.on_interest = on_interest;
    ho.interest_linger_ms = INTEREST_LINGER_MS;
  }
  ho.cb_ctx = b;
  if (!(b->hub = sb_hub_new(&ho, &b->log, &b->metrics))) {
    sb_err_set(err, "out of memory");
    goto fail;
  }
  if (open_journal(b, err))
    goto fail;
  return b;

fail:
  sb_server_free(b);
  return NULL;
}

void sb_server_set_mqtt(struct sb_server *b, const struct sb_mqtt_ops *ops)
{
  b->ops = *ops;
}

const char *sb_server_subscription(const struct sb_server *b)
{
  return b->subscription;
}

const char *sb_server_instance(const struct sb_server *b)
{
  return b->instance;
}

const char *sb_server_will(const struct sb_server *b, const char **payload)
{
  *payload = b->will;
  return *b->cfg.presence_prefix ? b->cfg.presence_prefix : NULL;
}

static void wake_loop(struct sb_server *b)
{
  uint64_t one = 1;
  if (b->evfd >= 0 && write(b->evfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
    SB_LOG(&b->log, SB_LOG_ERROR, "[SSE] cannot wake the server loop: %s", strerror(errno));
}

const char *sb_server_presence_filter(const struct sb_server *b)
{
  return *b->presence_filter ? b->presence_filter : NULL;
}

void sb_server_presence_seen(struct sb_server *b, const char *topic, const void *payload,
                             size_t len)
{
  size_t plen = strlen(b->cfg.presence_prefix), ulen;
  const char *instance, *started, *user = topic + plen + 1;
  json_t *o;
  struct stale *st;
  int ours;

  if (!*b->presence_filter || len == 0 || strncmp(topic, b->cfg.presence_prefix, plen) != 0 ||
      topic[plen] != '/' || !topic_level_ok(user))
    return;
  if (!(o = json_loadb(payload, len, 0, NULL)))
    return;
  ours = json_unpack(o, "{s:s, s:s}", "instance", &instance, "started", &started) == 0 &&
         strcmp(instance, b->instance) == 0 && strcmp(started, b->started_at) != 0;
  json_decref(o);
  ulen = strlen(user);
  if (!ours || !(st = malloc(sizeof(*st) + ulen + 1)))
    return;
  memcpy(st->user, user, ulen + 1);
  pthread_mutex_lock(&b->lock);
  st->next = b->stale;
  b->stale = st;
  pthread_mutex_unlock(&b->lock);
  wake_loop(b);
}

int sb_server_http_port(const struct sb_server *b)
{
  return b->http ? sb__http_port(b->http) : -1;
}

void sb_server_set_upstream(struct sb_server *b, int connected)
{
  int was = atomic_exchange(&b->metrics.mqtt_connected, connected ? 1 : 0);
  if (connected && !was) {
    atomic_store(&b->republish, 1);
    wake_loop(b);
  }
}

void sb_server_set_subscriptions(struct sb_server *b, int n)
{
  atomic_store(&b->metrics.mqtt_subscriptions, n);
}

void sb_server_ingest(struct sb_server *b, const char *topic, const void *payload, size_t len)
{
  struct sb_event_rules rules = {b->cfg.topic_prefix, (size_t)b->cfg.max_event_bytes, {0, 0}};
  struct sb_event ev;
  struct sb_event_error why;
  struct sb_journal_rec rec;
  struct pending *p;
  char idbuf[48], shown[96];
  const char *id;
  size_t ulen;
  int was_empty, rc, jrc = 0;

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
  p->publisher_id = ev.id != NULL;
  rec = (struct sb_journal_rec){ev.id ? SB_JOURNAL_PUBLISHER_ID : 0,
                                ev.user, id, ev.source, ev.target, ev.json,
                                ulen, strlen(id), ev.source ? strlen(ev.source) : 0,
                                ev.target ? strlen(ev.target) : 0, ev.json_len};
  atomic_fetch_add(&b->metrics.events_accepted, 1);

  /* The journal is written before this returns, and so before the broker
   * gets its acknowledgement: an event it holds is never lost by a crash. */
  pthread_mutex_lock(&b->lock);
  if (b->journal)
    jrc = sb_journal_append(b->journal, &rec);
  was_empty = b->head == NULL;
  if (b->tail)
    b->tail->next = p;
  else
    b->head = p;
  b->tail = p;
  pthread_mutex_unlock(&b->lock);
  if (jrc) {
    atomic_fetch_add(&b->metrics.journal_errors, 1);
    SB_LOG(&b->log, SB_LOG_ERROR, "[SSE] Replay journal: cannot write the event on %s: %s",
           sb_log_printable(topic, shown, sizeof(shown)),
           jrc == SB_EIO ? strerror(errno) : sb_strerror(jrc));
  }
  sb_event_clear(&ev);
  if (was_empty)
    wake_loop(b);
}

/* Loop thread: takes a configuration reload (see sb_server_reload). */
static void apply_reload(struct sb_server *b, struct reload *r)
{
  struct sb_hub_opts ho;
  char *t;

  hub_opts(r->cfg, &ho);
  if (sb_hub_reconfigure(b->hub, &ho) == 0) {
    b->cfg.heartbeat_interval = r->cfg->heartbeat_interval;
    b->cfg.retry_ms = r->cfg->retry_ms;
    b->cfg.max_connections = r->cfg->max_connections;
    b->cfg.max_connections_per_user = r->cfg->max_connections_per_user;
    b->cfg.max_queue_bytes = r->cfg->max_queue_bytes;
  }
  sb_auth_swap(b->auth, r->auth);
#define SWAP_STR(f) (t = b->cfg.f, b->cfg.f = r->cfg->f, r->cfg->f = t)
  SWAP_STR(cors_origins);
  SWAP_STR(jwt_secret);
  SWAP_STR(jwt_secret_file);
  SWAP_STR(jwt_public_key_file);
  SWAP_STR(jwt_audience);
  SWAP_STR(jwt_issuer);
  SWAP_STR(jwt_user_claim);
  SWAP_STR(jwt_cookie);
#undef SWAP_STR
  if (b->http)
    sb__http_reload(b->http);
  b->cfg.jwt_leeway = r->cfg->jwt_leeway;
  b->cfg.auth = r->cfg->auth;
  b->cfg.log_level = r->cfg->log_level;
  b->log.level = r->cfg->log_level;
}

/* Loop thread: publishes every queued event, in arrival order, and takes a
 * reload or a new MQTT connection. */
static void drain(struct sb_server *b)
{
  struct pending *p, *next;
  struct reload *r;
  struct stale *st;
  uint64_t n;
  long long now = mono_ms();
  int per_user = b->cfg.subscribe_mode == SB_SUBSCRIBE_PER_USER;

  if (read(b->evfd, &n, sizeof(n)) < 0 && errno != EAGAIN)
    return;
  pthread_mutex_lock(&b->lock);
  p = b->head;
  b->head = b->tail = NULL;
  r = b->reload;
  st = b->stale;
  b->stale = NULL;
  pthread_mutex_unlock(&b->lock);
  /* a record an earlier run left: cleared, unless the user is here again
   * (announce() has then published the current one) */
  for (struct stale *next; st; st = next) {
    next = st->next;
    if (!sb_hub_is_user_connected(b->hub, st->user))
      presence_user(b, st->user);
    free(st);
  }
  for (; p; p = next) {
    next = p->next;
    if (p->publisher_id && sb_hub_has_event(b->hub, p->user, p->frame->id)) {
      atomic_fetch_add(&b->metrics.events_duplicate, 1);
      sb_frame_unref(p->frame);
    } else {
      /* per_user: an event for a user this instance does not hold comes from
       * a subscription of an earlier run; it ends after the linger */
      if (per_user && !sb_hub_is_user_connected(b->hub, p->user))
        sb_hub_linger(b->hub, p->user, now);
      sb_hub_publish(b->hub, p->user, p->frame);
    }
    free(p);
  }
  if (r && !r->done) {
    apply_reload(b, r);
    pthread_mutex_lock(&b->lock);
    r->done = 1;
    b->reload = NULL;
    pthread_cond_broadcast(&b->reloaded);
    pthread_mutex_unlock(&b->lock);
  }
  if (atomic_exchange(&b->republish, 0))
    announce(b);
}

static void free_pending(struct sb_server *b)
{
  struct pending *p = b->head, *next;
  struct stale *st = b->stale, *snext;

  for (; st; st = snext) {
    snext = st->next;
    free(st);
  }
  b->stale = NULL;
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
  struct sb_server *b = arg;
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

/* POST /api/publish, through the MQTT side. */
static int http_publish(void *ctx, const char *topic, const void *payload, size_t len)
{
  struct sb_server *b = ctx;
  return b->ops.publish(b->ops.ctx, topic, payload, len, SB_PUBLISH_EVENT);
}

int sb_server_start(struct sb_server *b, struct sb_err *err)
{
  struct sb__http_env env = {&b->cfg, b->hub,    b->auth, &b->metrics,
                             &b->log, -1,        b->ops.publish ? http_publish : NULL, b};
  struct epoll_event ev;
  char host[64];

  if (b->started) {
    sb_err_set(err, "already started");
    return SB_ESTATE;
  }
  if (b->cfg.auth == SB_AUTH_NONE)
    SB_LOG(&b->log, SB_LOG_WARNING,
           "[SSE] auth none: the userId query parameter is trusted; for development only");
  if ((b->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
      (b->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
    sb_err_set(err, "cannot create the event loop: %s", strerror(errno));
    return SB_EIO;
  }
  env.epfd = b->epfd;
  if (!(b->http = sb__http_start(&env, err)))
    return SB_EIO;
  if (gethostname(host, sizeof(host)) != 0)
    snprintf(host, sizeof(host), "localhost");
  host[sizeof(host) - 1] = '\0';
  snprintf(b->instance, sizeof(b->instance), "%.60s:%d", host, sb__http_port(b->http));
  snprintf(b->will, sizeof(b->will), "{\"instance\":\"%s\",\"online\":false,\"started\":\"%s\"}",
           b->instance, b->started_at);
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLIN;
  ev.data.u64 = TAG_INTAKE;
  epoll_ctl(b->epfd, EPOLL_CTL_ADD, b->evfd, &ev);
  ev.data.u64 = TAG_HTTP;
  if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, sb__http_fd(b->http), &ev) != 0 ||
      pthread_create(&b->thread, NULL, loop, b) != 0) {
    sb_err_set(err, "cannot start the server thread: %s", strerror(errno));
    sb__http_stop(b->http);
    b->http = NULL;
    return SB_EIO;
  }
  b->started = 1;
  SB_LOG(&b->log, SB_LOG_NOTICE, "[SSE] Listening on http://%s%s%s:%d%s", 
         strchr(b->cfg.http_bind, ':') ? "[" : "", b->cfg.http_bind,
         strchr(b->cfg.http_bind, ':') ? "]" : "", sb__http_port(b->http), b->cfg.sse_path);
  if (atomic_load(&b->metrics.mqtt_connected)) {
    atomic_store(&b->republish, 1);
    wake_loop(b);
  }
  return 0;
}

/* Options that only a restart changes: a reload names those that differ. */
static void restart_only(struct sb_server *b, const struct sb_config *n)
{
  const struct sb_config *o = &b->cfg;
#define STR_DIFF(f) (strcmp(o->f, n->f) != 0)
#define NOTE(f)                                                                            \
  SB_LOG(&b->log, SB_LOG_WARNING, "[SSE] Reload: %s changed; it takes effect on restart", #f)
  if (STR_DIFF(http_bind)) NOTE(http_bind);
  if (o->http_port != n->http_port) NOTE(http_port);
  if (STR_DIFF(sse_path)) NOTE(sse_path);
  if (STR_DIFF(web_root)) NOTE(web_root);
  if (STR_DIFF(topic_prefix)) NOTE(topic_prefix);
  if (o->max_event_bytes != n->max_event_bytes) NOTE(max_event_bytes);
  if (o->replay_buffer != n->replay_buffer) NOTE(replay_buffer);
  if (STR_DIFF(presence_prefix)) NOTE(presence_prefix);
  if (STR_DIFF(replay_dir)) NOTE(replay_dir);
  if (STR_DIFF(mqtt_host)) NOTE(mqtt_host);
  if (o->mqtt_port != n->mqtt_port) NOTE(mqtt_port);
  if (STR_DIFF(mqtt_username)) NOTE(mqtt_username);
  if (STR_DIFF(mqtt_password)) NOTE(mqtt_password);
  if (STR_DIFF(mqtt_client_id)) NOTE(mqtt_client_id);
  if (o->mqtt_qos != n->mqtt_qos) NOTE(mqtt_qos);
  if (STR_DIFF(mqtt_cafile)) NOTE(mqtt_cafile);
  if (STR_DIFF(mqtt_certfile)) NOTE(mqtt_certfile);
  if (STR_DIFF(mqtt_keyfile)) NOTE(mqtt_keyfile);
  if (o->subscribe_mode != n->subscribe_mode) NOTE(subscribe_mode);
#undef NOTE
#undef STR_DIFF
}

int sb_server_reload(struct sb_server *b, const struct sb_config *cfg, struct sb_err *err)
{
  struct sb_config copy;
  struct reload r = {&copy, NULL, 0};

  if (sb_config_copy(&copy, cfg)) {
    sb_err_set(err, "out of memory");
    return SB_ENOMEM;
  }
  if (!(r.auth = sb_auth_new(&copy, err))) {
    sb_config_free(&copy);
    return SB_EINVAL;
  }
  restart_only(b, &copy);
  if (!b->started) {
    apply_reload(b, &r);
  } else {
    pthread_mutex_lock(&b->lock);
    b->reload = &r;
    pthread_mutex_unlock(&b->lock);
    wake_loop(b);
    pthread_mutex_lock(&b->lock);
    while (!r.done)
      pthread_cond_wait(&b->reloaded, &b->lock);
    pthread_mutex_unlock(&b->lock);
  }
  sb_auth_free(r.auth);
  sb_config_free(&copy);
  SB_LOG(&b->log, SB_LOG_NOTICE, "[SSE] Reloaded configuration");
  return 0;
}

void sb_server_stop(struct sb_server *b)
{
  if (!b || !b->started)
    return;
  atomic_store(&b->stopping, 1);
  wake_loop(b);
  pthread_join(b->thread, NULL);
  b->started = 0;
  /* Streams that did not end in the grace time are unregistered by their
   * free callbacks as libmicrohttpd closes them; any still suspended are
   * resumed first (libmicrohttpd must not stop with suspended connections). */
  sb_hub_close_all(b->hub);
  sb__http_run(b->http);
  sb__http_stop(b->http);
  b->http = NULL;
  /* every user's record was cleared as its streams ended */
  instance_status(b, 0);
  SB_LOG(&b->log, SB_LOG_NOTICE, "[SSE] Stopped");
}

void sb_server_free(struct sb_server *b)
{
  if (!b)
    return;
  sb_server_stop(b);
  free_pending(b);
  sb_hub_free(b->hub);
  sb_auth_free(b->auth);
  sb_journal_close(b->journal);
  if (b->epfd >= 0)
    close(b->epfd);
  if (b->evfd >= 0)
    close(b->evfd);
  sb_config_free(&b->cfg);
  pthread_cond_destroy(&b->reloaded);
  pthread_mutex_destroy(&b->lock);
  free(b);
}
