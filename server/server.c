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
#include <unistd.h>

#include "auth.h"
#include "clock.h"
#include "err.h"
#include "event.h"
#include "http.h"
#include "hub.h"
#include "journal.h"
#include "list.h"
#include "metrics.h"
#include "presence.h"
#include "sse.h"
#include "tls.h"
#include "topic.h"

/* The longest the loop sleeps between two runs of libmicrohttpd. */
#define HTTP_POLL_MS 500
/* How long a clean stop waits for streams to flush their last bytes. */
#define STOP_GRACE_MS 2000
/* Under memory pressure, the events each connected user keeps (its newest)
 * while older events of others can go: see sb_hub_opts.max_memory. */
#define REPLAY_FLOOR 16
/* The least time between two log lines about events refused for memory. */
#define REFUSAL_LOG_MS 10000
/* subscribe_mode per_user: how long a user's subscription outlives its last
 * connection, so that a reload or a reconnect misses nothing. */
#define INTEREST_LINGER_MS 60000
/* The replay journal rotates at this size (it holds one to two of them). */
#define JOURNAL_ROTATE_BYTES (32u * 1024 * 1024)

/* epoll data of the loop's own descriptors (stream sockets use their fd). */
#define TAG_INTAKE (UINT64_MAX)
#define TAG_HTTP (UINT64_MAX - 1)
#define TAG_SOURCE (UINT64_MAX - 2)

/* The source's descriptor (sb_server_source_watch), under the lock. */
enum source_state { SOURCE_NONE, SOURCE_WATCHED, SOURCE_CLOSED /* the loop has ended */ };

/* An event on its way from the intake thread to the loop thread. */
struct pending {
  struct sb_list link; /* on sb_server.pending */
  size_t cost;         /* its bytes under max_memory, frame included */
  struct sb_frame *frame;
  int publisher_id; /* the id came with the event: drop it if already held */
  char user[];
};

/* A configuration reload waiting for the loop thread. */
struct reload {
  struct sb_config *cfg; /* the new settings; gets the old strings back */
  struct sb_auth *auth;  /* likewise */
  struct sb__tls *tls;   /* http_tls_cert and http_tls_key read again, or NULL;
                            the HTTP side takes it */
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
  struct sb_journal *journal;   /* NULL: replay in memory only */
  struct sb_presence *presence; /* records and status; loop thread once started */
  atomic_int republish;         /* the MQTT side came up: announce again */

  pthread_t thread;
  int started;
  int epfd, evfd;
  atomic_int stopping;

  pthread_mutex_t lock;     /* guards the pending queue, the journal and reload */
  pthread_cond_t reloaded;
  struct sb_list pending;   /* struct pending, oldest first */
  struct reload *reload;
  atomic_int held;          /* sb_server_ingest_hold: wake-ups wait for the release */
  atomic_int owed;          /* a wake-up held back */

  struct sb_server_source source;
  atomic_int source_state;  /* enum source_state; changed under the lock */
  int source_fd;
  atomic_int source_kicked;
  atomic_int in_source;     /* the loop is in the source's ready(): ingest takes at once */

  atomic_llong refusal_logged;       /* monotonic ms of the last refusal line; 0: none */
  atomic_ullong refusals_unlogged;   /* events refused for memory since that line */
};

/* The part of max_memory kept for the intake queue: the hub evicts down to
 * the rest, so that a burst of events finds room while the loop catches up.
 * An eighth of the budget, and at least two of the largest events (the
 * configuration keeps that under half of it). */
static size_t intake_reserve(const struct sb_config *cfg)
{
  size_t budget = (size_t)cfg->max_memory, two = 2 * ((size_t)cfg->max_event_bytes + 1024);
  size_t r = budget / 8 > two ? budget / 8 : two;
  return r < budget / 2 ? r : budget / 2;
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
  ho->max_idle_users = SIZE_MAX; /* idle users are bounded by their bytes */
  ho->max_memory = (size_t)cfg->max_memory - intake_reserve(cfg);
  ho->replay_floor = REPLAY_FLOOR;
}

/* ---- the hub's callbacks (loop thread) ------------------------------------ */

/* Presence: a retained presence record or status, through the MQTT side. */
static int publish_retained(void *ctx, const char *topic, const char *payload, size_t len)
{
  struct sb_server *b = ctx;
  return b->ops.publish(b->ops.ctx, topic, payload, len, SB_PUBLISH_RETAIN);
}

static void on_presence(void *ctx, const char *user)
{
  struct sb_server *b = ctx;
  sb_presence_publish_user(b->presence, user);
}

/* The resync event, stamped with the wall clock now. */
static struct sb_frame *resync(void *ctx, const char *last_id, const char *reason)
{
  (void)ctx;
  return sb_event_resync(last_id, reason, sb_clock_wall());
}

/* subscribe_mode per_user: subscribes (on 1) or unsubscribes the user's
 * topics. */
static void on_interest(void *ctx, const char *user, int on)
{
  struct sb_server *b = ctx;
  char filter[512];
  int rc;

  if (!b->ops.subscribe || !sb_topic_valid_level(user, strlen(user)) ||
      (size_t)snprintf(filter, sizeof(filter), "%s/%s/+", b->cfg.topic_prefix, user) >= sizeof(filter))
    return;
  if ((rc = b->ops.subscribe(b->ops.ctx, filter, on)) != 0)
    SB_LOG(&b->log, SB_LOG_WARNING, "[MQTT] Cannot %ssubscribe %s: %s", on ? "" : "un", filter,
           sb_strerror(rc));
}

static void announce_user(void *ctx, const char *user, int connected)
{
  struct sb_server *b = ctx;
  if (connected)
    sb_presence_publish_user(b->presence, user);
  on_interest(b, user, 1);
}

/* The MQTT side came (back) up: the broker may have lost retained records and
 * subscriptions (a restart without persistence), so say it all again. */
static void announce(struct sb_server *b)
{
  sb_presence_publish_status(b->presence, 1);
  sb_hub_foreach_interest(b->hub, announce_user, b);
}

/* ---- the replay journal --------------------------------------------------- */

/* Records refused on reading back that are named one by one in the log; the
 * rest are only counted. */
#define JOURNAL_REFUSALS_LOGGED 5

struct readback {
  struct sb_server *b;
  size_t refused;
};

/* Each record read back is checked as a live event is (sb_journal_event):
 * a journal that was damaged or written by someone else cannot put on a
 * stream anything that MQTT intake would not. */
static void journal_event(void *ctx, const struct sb_journal_rec *r)
{
  struct readback *rb = ctx;
  struct sb_server *b = rb->b;
  struct sb_event ev;
  struct sb_event_error why;
  struct sb_frame *f;
  char user[64], shown[SB_LOG_SHORT_SIZE];
  int rc;

  rc = sb_journal_event(r, b->cfg.topic_prefix, (size_t)b->cfg.max_event_bytes, &ev, &why);
  if (rc) {
    atomic_fetch_add(&b->metrics.journal_refused, 1);
    if (++rb->refused <= JOURNAL_REFUSALS_LOGGED) {
      snprintf(user, sizeof(user), "%.*s", (int)(r->user_len < 63 ? r->user_len : 63), r->user);
      SB_LOG(&b->log, SB_LOG_WARNING, "[SSE] Replay journal: refused a record of user %s: %s",
             sb_log_short(user, shown), rc == SB_EINVAL ? why.text : sb_strerror(rc));
    }
    return;
  }
  if (!((r->flags & SB_JOURNAL_PUBLISHER_ID) && sb_hub_has_event(b->hub, ev.user, ev.id)) &&
      (f = sb_frame_event(ev.id, ev.source, ev.target, ev.json, ev.json_len)))
    sb_hub_publish(b->hub, ev.user, f);
  sb_event_clear(&ev);
}

static int open_journal(struct sb_server *b, struct sb_err *err)
{
  struct readback rb = {b, 0};
  struct sb_journal_stats st;
  const char *dir = b->cfg.replay_dir;

  if (!*dir)
    return 0;
  if (sb_journal_open(dir, JOURNAL_ROTATE_BYTES, &b->journal, err) ||
      sb_journal_replay(b->journal, journal_event, &rb, &st, err))
    return SB_EIO;
  for (int i = 0; i < 2; i++)
    if (st.aside[i])
      SB_LOG(&b->log, SB_LOG_WARNING,
             "[SSE] Replay journal %s: %s is not a journal of this version (an earlier version's, "
             "or not a journal): moved aside to %s" SB_JOURNAL_ASIDE ", its events not read back",
             dir, i ? SB_JOURNAL_FILE : SB_JOURNAL_OLD, i ? SB_JOURNAL_FILE : SB_JOURNAL_OLD);
  if (st.damaged) {
    atomic_fetch_add(&b->metrics.journal_damaged, st.damaged);
    SB_LOG(&b->log, SB_LOG_WARNING,
           "[SSE] Replay journal %s: damaged: %zu record%s lost, %zu byte%s skipped; the records "
           "around %s were read back%s",
           dir, st.damaged, st.damaged == 1 ? "" : "s", st.damaged_bytes,
           st.damaged_bytes == 1 ? "" : "s", st.damaged == 1 ? "it" : "them",
           st.cut_bytes > st.torn_bytes ? " (damage at the end was cut off)" : "");
  }
  if (st.torn_bytes)
    SB_LOG(&b->log, SB_LOG_NOTICE,
           "[SSE] Replay journal %s: the last record was cut short (%zu bytes of a write not "
           "finished) and was cut off", dir, st.torn_bytes);
  if (rb.refused)
    SB_LOG(&b->log, SB_LOG_WARNING,
           "[SSE] Replay journal %s: %zu record%s refused (not %s)", dir, rb.refused,
           rb.refused == 1 ? "" : "s", rb.refused == 1 ? "a valid event" : "valid events");
  SB_LOG(&b->log, SB_LOG_NOTICE, "[SSE] Replay journal %s: %zu event%s read back", dir,
         st.records - rb.refused, st.records - rb.refused == 1 ? "" : "s");
  return 0;
}

/* ---- life ----------------------------------------------------------------- */

struct sb_server *sb_server_new(const struct sb_config *cfg, const struct sb_log *log, struct sb_err *err)
{
  struct sb_server *b = calloc(1, sizeof(*b));
  struct sb_hub_opts ho;
  struct timespec now = sb_clock_wall();
  char origin[32];

  if (!b) {
    sb_err_set(err, "out of memory");
    return NULL;
  }
  b->epfd = b->evfd = -1;
  b->source_state = SOURCE_CLOSED; /* until the loop runs */
  sb_list_init(&b->pending);
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
  b->boot_ms = sb_clock_ms(now);
  snprintf(b->subscription, sizeof(b->subscription), "%s/+/+", cfg->topic_prefix);
  if (!(b->auth = sb_auth_new(&b->cfg, err)))
    goto fail;
  hub_opts(cfg, &ho);
  ho.on_presence = on_presence;
  if (cfg->subscribe_mode == SB_SUBSCRIBE_PER_USER) {
    ho.on_interest = on_interest;
    ho.interest_linger_ms = INTEREST_LINGER_MS;
  }
  ho.resync = resync;
  ho.cb_ctx = b;
  snprintf(origin, sizeof(origin), "%lld-0", b->boot_ms);
  ho.origin_id = origin;
  atomic_store(&b->metrics.memory_budget, (unsigned long long)cfg->max_memory);
  if (!(b->hub = sb_hub_new(&ho, &b->log, &b->metrics)) ||
      !(b->presence = sb_presence_new(cfg->presence_prefix, b->hub, now, &b->log, &b->metrics))) {
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

void sb_server_set_source(struct sb_server *b, const struct sb_server_source *src)
{
  b->source = *src;
}

static uint32_t epoll_events(unsigned events)
{
  return ((events & SB_SOURCE_IN) ? EPOLLIN : 0) | ((events & SB_SOURCE_OUT) ? EPOLLOUT : 0);
}

int sb_server_source_watch(struct sb_server *b, int fd, unsigned events)
{
  struct epoll_event ev = {.events = epoll_events(events), .data.u64 = TAG_SOURCE};
  int rc = 0;

  pthread_mutex_lock(&b->lock);
  if (b->source_state == SOURCE_WATCHED && b->source_fd == fd) {
    /* a change of what it waits for, also while the loop is ending */
    if (epoll_ctl(b->epfd, EPOLL_CTL_MOD, fd, &ev) != 0)
      rc = SB_EIO;
  } else if (atomic_load(&b->stopping) || b->source_state == SOURCE_CLOSED || !b->source.ready) {
    rc = SB_ESTATE;
  } else if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
    rc = SB_EIO;
  } else {
    b->source_fd = fd;
    b->source_state = SOURCE_WATCHED;
  }
  pthread_mutex_unlock(&b->lock);
  return rc;
}

void sb_server_source_unwatch(struct sb_server *b, int open)
{
  pthread_mutex_lock(&b->lock);
  if (b->source_state == SOURCE_WATCHED) {
    if (open)
      epoll_ctl(b->epfd, EPOLL_CTL_DEL, b->source_fd, NULL);
    b->source_state = SOURCE_NONE;
  }
  pthread_mutex_unlock(&b->lock);
}

const char *sb_server_subscription(const struct sb_server *b)
{
  return b->subscription;
}

const char *sb_server_instance(const struct sb_server *b)
{
  return sb_presence_instance(b->presence);
}

const char *sb_server_will(const struct sb_server *b, const char **payload)
{
  return sb_presence_will(b->presence, payload);
}

static void wake_loop(struct sb_server *b)
{
  uint64_t one = 1;
  if (b->evfd >= 0 && write(b->evfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
    SB_LOG(&b->log, SB_LOG_ERROR, "[SSE] cannot wake the server loop: %s", strerror(errno));
}

void sb_server_source_kick(struct sb_server *b)
{
  atomic_store(&b->source_kicked, 1);
  wake_loop(b);
}

const char *sb_server_presence_filter(const struct sb_server *b)
{
  return sb_presence_filter(b->presence);
}

void sb_server_presence_seen(struct sb_server *b, const char *topic, const void *payload,
                             size_t len)
{
  if (sb_presence_seen(b->presence, topic, payload, len))
    wake_loop(b);
}

void sb_server_set_upstream(struct sb_server *b, int connected)
{
  int was = atomic_exchange(&b->metrics.mqtt_connected, connected ? 1 : 0);
  if (connected && !was) {
    atomic_store(&b->republish, 1);
    wake_loop(b);
  }
}

void sb_server_set_broker(struct sb_server *b, const char *broker)
{
  atomic_store(&b->metrics.mqtt_broker, broker);
}

void sb_server_set_subscriptions(struct sb_server *b, int n)
{
  atomic_store(&b->metrics.mqtt_subscriptions, n);
}

/* Takes cost bytes for the intake queue if the budget has room for them
 * beside what the hub holds. Returns 1 if taken, 0 if not. Any thread. */
static int take_pending(struct sb_server *b, size_t cost)
{
  struct sb_metrics *m = &b->metrics;
  unsigned long long budget = atomic_load(&m->memory_budget), held;
  unsigned long long pending = atomic_load(&m->memory[SB_MEM_PENDING]);

  do {
    held = atomic_load(&m->memory[SB_MEM_REPLAY]) + atomic_load(&m->memory[SB_MEM_QUEUES]);
    if (budget && held + pending + cost > budget)
      return 0;
  } while (!atomic_compare_exchange_weak(&m->memory[SB_MEM_PENDING], &pending, pending + cost));
  return 1;
}

/* Counts an event refused for memory and logs it, one line per
 * REFUSAL_LOG_MS at most (with the number refused meanwhile). Any thread. */
static void refuse_for_memory(struct sb_server *b, const char *topic, size_t len)
{
  struct sb_metrics *m = &b->metrics;
  long long now = sb_clock_mono_ms(), last = atomic_load(&b->refusal_logged);
  unsigned long long n;
  char shown[96];

  atomic_fetch_add(&m->events_dropped[SB_DROP_MEMORY], 1);
  atomic_fetch_add(&b->refusals_unlogged, 1);
  if ((last && now - last < REFUSAL_LOG_MS) ||
      !atomic_compare_exchange_strong(&b->refusal_logged, &last, now))
    return;
  n = atomic_exchange(&b->refusals_unlogged, 0);
  SB_LOG(&b->log, SB_LOG_WARNING,
         "[SSE] Memory budget reached: dropped %llu event%s (the latest on %s, %zu bytes); "
         "max_memory %llu, held: replay %llu, queues %llu, pending %llu",
         n, n == 1 ? "" : "s", sb_log_printable(topic, shown, sizeof(shown)), len,
         atomic_load(&m->memory_budget), atomic_load(&m->memory[SB_MEM_REPLAY]),
         atomic_load(&m->memory[SB_MEM_QUEUES]), atomic_load(&m->memory[SB_MEM_PENDING]));
}

static void take(struct sb_server *b);

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
  rules.now = sb_clock_wall();
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
  p->publisher_id = ev.id != NULL;
  p->cost = sb_mem_cost(sizeof(*p) + ulen + 1) + p->frame->cost;
  if (!take_pending(b, p->cost)) {
    sb_frame_unref(p->frame);
    free(p);
    sb_event_clear(&ev);
    refuse_for_memory(b, topic, len);
    return;
  }
  rec = (struct sb_journal_rec){ev.id ? SB_JOURNAL_PUBLISHER_ID : 0, ev.user, ev.channel, id,
                                ev.json, ulen, strlen(ev.channel), strlen(id), ev.json_len};
  atomic_fetch_add(&b->metrics.events_accepted, 1);

  /* The journal is written before this returns, and so before the broker
   * gets its acknowledgement: an event it holds is never lost by a crash. */
  pthread_mutex_lock(&b->lock);
  if (b->journal)
    jrc = sb_journal_append(b->journal, &rec);
  was_empty = sb_list_empty(&b->pending);
  sb_list_push_back(&b->pending, &p->link);
  pthread_mutex_unlock(&b->lock);
  if (jrc) {
    atomic_fetch_add(&b->metrics.journal_errors, 1);
    SB_LOG(&b->log, SB_LOG_ERROR, "[SSE] Replay journal: cannot write the event on %s: %s",
           sb_log_printable(topic, shown, sizeof(shown)),
           jrc == SB_EIO ? strerror(errno) : sb_strerror(jrc));
  }
  sb_event_clear(&ev);
  /* On the loop thread (the daemon's socket on the loop): the event goes to
   * the hub now, where the budget evicts for it, rather than after the whole
   * batch, which could otherwise fill the intake's share of max_memory. */
  if (atomic_load(&b->in_source)) {
    take(b);
    return;
  }
  if (!was_empty)
    return;
  if (atomic_load(&b->held))
    atomic_store(&b->owed, 1);
  else
    wake_loop(b);
}

void sb_server_ingest_hold(struct sb_server *b)
{
  atomic_store(&b->held, 1);
}

void sb_server_ingest_release(struct sb_server *b)
{
  atomic_store(&b->held, 0);
  if (atomic_exchange(&b->owed, 0))
    wake_loop(b);
}

/* Loop thread: takes a configuration reload (see sb_server_reload): every
 * option whose table row says a reload applies it moves from r->cfg into
 * b->cfg (r->cfg gets the old value, freed with it), the hub takes its limits
 * and auth its new state. If the hub cannot take the limits (SB_ENOMEM), it
 * keeps the old ones and so does b->cfg for the options of SB_RELOAD_HUB;
 * the rest is applied all the same. */
static void apply_reload(struct sb_server *b, struct reload *r)
{
  struct sb_hub_opts ho;
  const struct sb_option *opts;
  size_t n;
  int hub_took;

  hub_opts(r->cfg, &ho);
  hub_took = sb_hub_reconfigure(b->hub, &ho) == 0;
  sb_auth_swap(b->auth, r->auth);
  opts = sb_config_options(&n);
  for (size_t i = 0; i < n; i++)
    if (opts[i].reload == SB_RELOAD_APPLY || (opts[i].reload == SB_RELOAD_HUB && hub_took))
      sb_config_swap(&b->cfg, r->cfg, &opts[i]);
  atomic_store(&b->metrics.memory_budget, (unsigned long long)b->cfg.max_memory);
  b->log.level = b->cfg.log_level;
  if (b->http)
    sb__http_reload(b->http, &r->tls); /* cors_origins is parsed once, there */
}

/* Moves every element of from, in order, to the list head to (which need not
 * be initialised), leaving from empty; O(1). */
static void list_take_all(struct sb_list *from, struct sb_list *to)
{
  sb_list_init(to);
  if (sb_list_empty(from))
    return;
  /* to joins the ring as an element after the last, then from leaves it */
  sb_list_push_back(from, to);
  sb_list_remove(from);
}

/* Loop thread: publishes every queued event, in arrival order, and takes a
 * reload or a new MQTT connection. */
static void take(struct sb_server *b)
{
  struct sb_list queue, *l, *tmp;
  struct reload *r;
  long long now = sb_clock_mono_ms();
  int per_user = b->cfg.subscribe_mode == SB_SUBSCRIBE_PER_USER;

  pthread_mutex_lock(&b->lock);
  list_take_all(&b->pending, &queue);
  r = b->reload;
  pthread_mutex_unlock(&b->lock);
  /* records an earlier run left: cleared, unless their user is here again
   * (announce() has then published the current one) */
  sb_presence_clear_stale(b->presence);
  sb_list_foreach_safe(l, tmp, &queue) {
    struct pending *p = sb_list_entry(l, struct pending, link);
    /* the hub counts the frame from here on */
    atomic_fetch_sub(&b->metrics.memory[SB_MEM_PENDING], p->cost);
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

/* Loop thread: the source's descriptor is ready. What it ingests goes to the
 * hub at once, one event at a time (ingest sees in_source): no wake-up, and
 * the budget evicts for each event before the next is read. */
static void run_source(struct sb_server *b, uint32_t events)
{
  unsigned ev = ((events & EPOLLIN) ? SB_SOURCE_IN : 0) | ((events & EPOLLOUT) ? SB_SOURCE_OUT : 0) |
                ((events & (EPOLLERR | EPOLLHUP)) ? SB_SOURCE_ERR : 0);

  atomic_store(&b->in_source, 1);
  b->source.ready(b->source.ctx, ev);
  atomic_store(&b->in_source, 0);
}

/* Loop thread: the loop was woken (an event queued by another thread, a
 * reload, a kick of the source). */
static void drain(struct sb_server *b)
{
  uint64_t n;

  if (read(b->evfd, &n, sizeof(n)) < 0 && errno != EAGAIN)
    return;
  take(b);
  if (atomic_exchange(&b->source_kicked, 0) && b->source_state == SOURCE_WATCHED)
    run_source(b, 0);
}

/* Loop thread, as the loop ends: the source's descriptor is handed back. */
static void close_source(struct sb_server *b)
{
  int was;

  pthread_mutex_lock(&b->lock);
  was = b->source_state == SOURCE_WATCHED;
  if (was)
    epoll_ctl(b->epfd, EPOLL_CTL_DEL, b->source_fd, NULL);
  b->source_state = SOURCE_CLOSED;
  pthread_mutex_unlock(&b->lock);
  if (was)
    b->source.released(b->source.ctx);
}

static void free_pending(struct sb_server *b)
{
  struct sb_list *l, *tmp;

  sb_list_foreach_safe(l, tmp, &b->pending) {
    struct pending *p = sb_list_entry(l, struct pending, link);
    sb_list_remove(l);
    atomic_fetch_sub(&b->metrics.memory[SB_MEM_PENDING], p->cost);
    sb_frame_unref(p->frame);
    free(p);
  }
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
    now = sb_clock_mono_ms();
    sb_hub_tick(b->hub, now);
    sb__http_run(b->http);
    /* Asked again, as that run may have registered streams. */
    t = sb_hub_tick(b->hub, now);
    if (b->source_state == SOURCE_WATCHED && b->source.tick) {
      /* it may read (see run_source) */
      atomic_store(&b->in_source, 1);
      h = b->source.tick(b->source.ctx, now);
      atomic_store(&b->in_source, 0);
      if (h >= 0 && (t < 0 || h < t))
        t = h;
    }
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
      else if (evs[i].data.u64 == TAG_SOURCE)
        run_source(b, evs[i].events);
      else if (evs[i].data.u64 < SB__HTTP_TAG_MIN)
        sb__http_on_socket(b->http, evs[i].data.u64, evs[i].events);
    }
    if (atomic_load(&b->stopping) && deadline == 0) {
      sb__http_quiesce(b->http);
      sb_hub_close_all(b->hub);
      deadline = sb_clock_mono_ms() + STOP_GRACE_MS;
    }
  }
  close_source(b);
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
  char host[64], instance[96];

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
  snprintf(instance, sizeof(instance), "%.60s:%d", host, sb__http_port(b->http));
  if (sb_presence_start(b->presence, instance, b->ops.publish ? publish_retained : NULL, b, err)) {
    sb__http_stop(b->http);
    b->http = NULL;
    return SB_EINVAL;
  }
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLIN;
  ev.data.u64 = TAG_INTAKE;
  epoll_ctl(b->epfd, EPOLL_CTL_ADD, b->evfd, &ev);
  ev.data.u64 = TAG_HTTP;
  /* the source may be watched from now on; the loop's end closes it */
  b->source_state = SOURCE_NONE;
  if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, sb__http_fd(b->http), &ev) != 0 ||
      pthread_create(&b->thread, NULL, loop, b) != 0) {
    b->source_state = SOURCE_CLOSED;
    sb_err_set(err, "cannot start the server thread: %s", strerror(errno));
    sb__http_stop(b->http);
    b->http = NULL;
    return SB_EIO;
  }
  b->started = 1;
  SB_LOG(&b->log, SB_LOG_NOTICE, "[SSE] Listening on %s://%s%s%s:%d%s",
         sb__http_tls(b->http) ? "https" : "http", strchr(b->cfg.http_bind, ':') ? "[" : "",
         b->cfg.http_bind,
         strchr(b->cfg.http_bind, ':') ? "]" : "", sb__http_port(b->http), b->cfg.sse_path);
  if (atomic_load(&b->metrics.mqtt_connected)) {
    atomic_store(&b->republish, 1);
    wake_loop(b);
  }
  return 0;
}

static void note_restart(void *ctx, const struct sb_option *o)
{
  struct sb_server *b = ctx;

  if (o->reload == SB_RELOAD_RESTART)
    SB_LOG(&b->log, SB_LOG_WARNING, "[SSE] Reload: %s changed; it takes effect on restart",
           o->name);
}

/* Names each option that differs in n and that only a restart applies (its
 * table row says so). Reads b->cfg, which the loop changes only in
 * apply_reload(), so not while a reload is under way. */
static void restart_only(struct sb_server *b, const struct sb_config *n)
{
  sb_config_diff(&b->cfg, n, note_restart, b);
}

int sb_server_reload(struct sb_server *b, const struct sb_config *cfg, struct sb_err *err)
{
  struct sb_config copy;
  struct reload r = {&copy, NULL, NULL, 0};
  int rc;

  if (sb_config_copy(&copy, cfg)) {
    sb_err_set(err, "out of memory");
    return SB_ENOMEM;
  }
  if (!(r.auth = sb_auth_new(&copy, err))) {
    sb_config_free(&copy);
    return SB_EINVAL;
  }
  /* the certificate files, read again even when their names stay (renewal) */
  if (*copy.http_tls_cert && (rc = sb__tls_read(copy.http_tls_cert, copy.http_tls_key, &r.tls, err))) {
    sb_auth_free(r.auth);
    sb_config_free(&copy);
    return rc;
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
  sb__tls_unref(r.tls);
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
  sb_presence_publish_status(b->presence, 0);
  SB_LOG(&b->log, SB_LOG_NOTICE, "[SSE] Stopped");
}

void sb_server_free(struct sb_server *b)
{
  if (!b)
    return;
  sb_server_stop(b);
  free_pending(b);
  sb_presence_free(b->presence);
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
