#include "hub.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "err.h"
#include "event.h"

struct queue {
  struct sb_frame **items; /* ring of frame references, cap a power of two */
  unsigned cap, head, count;
  size_t offset; /* bytes of items[head] already read */
  size_t bytes;  /* unread bytes in the queue */
};

struct device;

struct sb_conn {
  struct sb_hub *hub;
  struct device *dev;
  struct sb_conn *prev, *next;       /* the device's connections */
  struct sb_conn *hb_prev, *hb_next; /* heartbeat order */
  long long next_hb;
  struct queue q;
  sb_conn_wake_fn wake;
  void *wake_ctx;
  unsigned char waiting;
  unsigned char state;
};

struct user;

struct device {
  struct user *user;
  struct device *prev, *next;
  struct sb_conn *conns;
  unsigned nconns;
  char id[];
};

struct user {
  struct user *hnext; /* hash chain */
  struct device *devices;
  unsigned ndevices, nconns;
  struct sb_frame **ring; /* replay buffer: replay_buffer slots, oldest at ring_head */
  unsigned ring_head, ring_count;
  struct user *idle_prev, *idle_next;
  struct user *lg_prev, *lg_next; /* interest linger, soonest end first */
  long long linger_until;
  unsigned char idle, lingering;
  uint32_t hash;
  char id[];
};

struct sb_hub {
  struct sb_hub_opts o;
  const struct sb_log *log;
  struct sb_metrics *m;
  struct user **buckets;
  size_t nbuckets, nusers, nconnected_users, nconns, nidle;
  struct sb_conn *hb_head, *hb_tail;
  struct user *idle_head, *idle_tail; /* least recently used first */
  struct user *lg_head, *lg_tail;     /* lingering users, soonest end first */
  long long now;                      /* the latest time a call brought */
  struct sb_frame *heartbeat, *retry;
};

/* ---- users ---------------------------------------------------------------- */

static uint32_t hash_str(const char *s)
{
  uint32_t h = 2166136261u;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

static struct user *user_find(const struct sb_hub *hub, const char *id)
{
  uint32_t h = hash_str(id);
  for (struct user *u = hub->buckets[h & (hub->nbuckets - 1)]; u; u = u->hnext)
    if (u->hash == h && strcmp(u->id, id) == 0)
      return u;
  return NULL;
}

static void user_grow(struct sb_hub *hub)
{
  size_t n = hub->nbuckets * 2;
  struct user **b = calloc(n, sizeof(*b));
  if (!b)
    return; /* longer chains, still correct */
  for (size_t i = 0; i < hub->nbuckets; i++) {
    struct user *u = hub->buckets[i], *next;
    for (; u; u = next) {
      next = u->hnext;
      u->hnext = b[u->hash & (n - 1)];
      b[u->hash & (n - 1)] = u;
    }
  }
  free(hub->buckets);
  hub->buckets = b;
  hub->nbuckets = n;
}

static struct user *user_add(struct sb_hub *hub, const char *id)
{
  size_t len = strlen(id);
  struct user *u = calloc(1, sizeof(*u) + len + 1);
  if (!u)
    return NULL;
  memcpy(u->id, id, len + 1);
  u->hash = hash_str(id);
  if (hub->nusers >= hub->nbuckets)
    user_grow(hub);
  u->hnext = hub->buckets[u->hash & (hub->nbuckets - 1)];
  hub->buckets[u->hash & (hub->nbuckets - 1)] = u;
  hub->nusers++;
  return u;
}

static void idle_unlink(struct sb_hub *hub, struct user *u)
{
  if (!u->idle)
    return;
  if (u->idle_prev)
    u->idle_prev->idle_next = u->idle_next;
  else
    hub->idle_head = u->idle_next;
  if (u->idle_next)
    u->idle_next->idle_prev = u->idle_prev;
  else
    hub->idle_tail = u->idle_prev;
  u->idle_prev = u->idle_next = NULL;
  u->idle = 0;
  hub->nidle--;
}

static void linger_unlink(struct sb_hub *hub, struct user *u)
{
  if (!u->lingering)
    return;
  if (u->lg_prev)
    u->lg_prev->lg_next = u->lg_next;
  else
    hub->lg_head = u->lg_next;
  if (u->lg_next)
    u->lg_next->lg_prev = u->lg_prev;
  else
    hub->lg_tail = u->lg_prev;
  u->lg_prev = u->lg_next = NULL;
  u->lingering = 0;
}

/* The linger is the same length for everyone: appending keeps the order. */
static void linger_push(struct sb_hub *hub, struct user *u, long long now_ms)
{
  u->linger_until = now_ms + hub->o.interest_linger_ms;
  u->lg_prev = hub->lg_tail;
  u->lg_next = NULL;
  if (hub->lg_tail)
    hub->lg_tail->lg_next = u;
  else
    hub->lg_head = u;
  hub->lg_tail = u;
  u->lingering = 1;
}

static void idle_push(struct sb_hub *hub, struct user *u)
{
  u->idle_prev = hub->idle_tail;
  u->idle_next = NULL;
  if (hub->idle_tail)
    hub->idle_tail->idle_next = u;
  else
    hub->idle_head = u;
  hub->idle_tail = u;
  u->idle = 1;
  hub->nidle++;
}

static void user_free(struct sb_hub *hub, struct user *u)
{
  struct user **pp = &hub->buckets[u->hash & (hub->nbuckets - 1)];
  while (*pp != u)
    pp = &(*pp)->hnext;
  *pp = u->hnext;
  idle_unlink(hub, u);
  linger_unlink(hub, u);
  for (unsigned i = 0; i < u->ring_count; i++)
    sb_frame_unref(u->ring[(u->ring_head + i) % (unsigned)hub->o.replay_buffer]);
  free(u->ring);
  free(u);
  hub->nusers--;
}

/* Keeps an idle user (no connections) while it has replay events and there is
 * room; frees it otherwise. */
static void user_settle(struct sb_hub *hub, struct user *u)
{
  if (u->nconns > 0 || u->lingering)
    return;
  if (u->ring_count == 0) {
    user_free(hub, u);
    return;
  }
  if (!u->idle)
    idle_push(hub, u);
  while (hub->nidle > hub->o.max_idle_users && hub->idle_head)
    user_free(hub, hub->idle_head);
}

static void ring_push(struct sb_hub *hub, struct user *u, struct sb_frame *f)
{
  unsigned cap = (unsigned)hub->o.replay_buffer;

  if (!u->ring && !(u->ring = calloc(cap, sizeof(*u->ring))))
    return;
  if (u->ring_count == cap) {
    sb_frame_unref(u->ring[u->ring_head]);
    u->ring[u->ring_head] = sb_frame_ref(f);
    u->ring_head = (u->ring_head + 1) % cap;
  } else {
    u->ring[(u->ring_head + u->ring_count) % cap] = sb_frame_ref(f);
    u->ring_count++;
  }
}

/* ---- queues --------------------------------------------------------------- */

static void queue_clear(struct queue *q)
{
  for (unsigned i = 0; i < q->count; i++)
    sb_frame_unref(q->items[(q->head + i) & (q->cap - 1)]);
  free(q->items);
  memset(q, 0, sizeof(*q));
}

static int queue_push(struct queue *q, struct sb_frame *f)
{
  if (q->count == q->cap) {
    unsigned ncap = q->cap ? q->cap * 2 : 8;
    struct sb_frame **items = malloc(ncap * sizeof(*items));
    if (!items)
      return SB_ENOMEM;
    for (unsigned i = 0; i < q->count; i++)
      items[i] = q->items[(q->head + i) & (q->cap - 1)];
    free(q->items);
    q->items = items;
    q->cap = ncap;
    q->head = 0;
  }
  q->items[(q->head + q->count) & (q->cap - 1)] = sb_frame_ref(f);
  q->count++;
  q->bytes += f->len;
  return 0;
}

static void conn_wake(struct sb_conn *c)
{
  if (c->waiting) {
    c->waiting = 0;
    c->wake(c->wake_ctx);
  }
}

/* Tells the carrier of c that the stream must end now, waiting or not: a
 * client that stopped reading has a full socket and would never be read
 * from again. */
static void conn_end(struct sb_conn *c)
{
  c->waiting = 0;
  c->wake(c->wake_ctx);
}

static void conn_cut(struct sb_hub *hub, struct sb_conn *c, const char *why)
{
  char us[SB_LOG_SHORT_SIZE], ds[SB_LOG_SHORT_SIZE];

  c->state = SB_CONN_CUT;
  queue_clear(&c->q);
  atomic_fetch_add(&hub->m->slow_disconnects, 1);
  SB_LOG(hub->log, SB_LOG_WARNING, "[SSE] Connection cut off: user=%s device=%s (%s)",
         sb_log_short(c->dev->user->id, us), sb_log_short(c->dev->id, ds), why);
  conn_end(c);
}

/* Queues f to c. limit: whether max_queue_bytes applies (not to replay).
 * Returns 1 if queued. */
static int enqueue(struct sb_hub *hub, struct sb_conn *c, struct sb_frame *f, int limit)
{
  if (c->state != SB_CONN_OPEN)
    return 0;
  if (limit && c->q.bytes + f->len > hub->o.max_queue_bytes) {
    conn_cut(hub, c, "queue over max_queue_bytes");
    return 0;
  }
  if (queue_push(&c->q, f)) {
    conn_cut(hub, c, "out of memory");
    return 0;
  }
  conn_wake(c);
  return 1;
}

static int wants(const struct sb_frame *f, const char *device)
{
  if (f->target)
    return strcmp(f->target, device) == 0;
  return !f->source || strcmp(f->source, device) != 0;
}

/* ---- the hub -------------------------------------------------------------- */

struct sb_hub *sb_hub_new(const struct sb_hub_opts *opts, const struct sb_log *log,
                          struct sb_metrics *metrics)
{
  struct sb_hub *hub = calloc(1, sizeof(*hub));
  char retry[48];

  if (!hub)
    return NULL;
  hub->o = *opts;
  hub->log = log;
  hub->m = metrics;
  hub->nbuckets = 64;
  snprintf(retry, sizeof(retry), "retry: %d\n\n", opts->retry_ms);
  if (!(hub->buckets = calloc(hub->nbuckets, sizeof(*hub->buckets))) ||
      !(hub->heartbeat = sb_frame_raw(SB_SSE_HEARTBEAT, strlen(SB_SSE_HEARTBEAT))) ||
      !(hub->retry = sb_frame_raw(retry, strlen(retry)))) {
    sb_hub_free(hub);
    return NULL;
  }
  return hub;
}

int sb_hub_reconfigure(struct sb_hub *hub, const struct sb_hub_opts *opts)
{
  char text[48];
  struct sb_frame *retry;

  snprintf(text, sizeof(text), "retry: %d\n\n", opts->retry_ms);
  if (!(retry = sb_frame_raw(text, strlen(text))))
    return SB_ENOMEM;
  sb_frame_unref(hub->retry);
  hub->retry = retry;
  hub->o.max_connections = opts->max_connections;
  hub->o.max_connections_per_user = opts->max_connections_per_user;
  if (opts->heartbeat_ms != hub->o.heartbeat_ms) {
    /* the schedule is a queue in due order: restart it whole, every
     * connection's next heartbeat one new interval from now */
    hub->o.heartbeat_ms = opts->heartbeat_ms;
    for (struct sb_conn *c = hub->hb_head; c; c = c->hb_next)
      c->next_hb = hub->now + opts->heartbeat_ms;
  }
  hub->o.retry_ms = opts->retry_ms;
  hub->o.max_queue_bytes = opts->max_queue_bytes;
  return 0;
}

void sb_hub_free(struct sb_hub *hub)
{
  if (!hub)
    return;
  for (size_t i = 0; hub->buckets && i < hub->nbuckets; i++) {
    while (hub->buckets[i]) {
      struct user *u = hub->buckets[i];
      while (u->devices) {
        struct device *d = u->devices;
        while (d->conns) {
          struct sb_conn *c = d->conns;
          d->conns = c->next;
          queue_clear(&c->q);
          free(c);
        }
        u->devices = d->next;
        free(d);
      }
      user_free(hub, u);
    }
  }
  free(hub->buckets);
  sb_frame_unref(hub->heartbeat);
  sb_frame_unref(hub->retry);
  free(hub);
}

static struct sb_frame *resync_frame(const char *last_id, const char *reason)
{
  struct timespec now;
  char ts[32], *json;
  json_t *ev;
  struct sb_frame *f = NULL;

  clock_gettime(CLOCK_REALTIME, &now);
  sb_event_format_time(now, ts);
  ev = json_pack("{s:s, s:s, s:{s:s, s:s}, s:s}", "channel", "system", "type", "resync",
                 "payload", "lastEventId", last_id, "reason", reason, "timestamp", ts);
  if (ev && (json = json_dumps(ev, JSON_COMPACT))) {
    f = sb_frame_event(NULL, NULL, NULL, json, strlen(json));
    free(json);
  }
  json_decref(ev);
  return f;
}

/* Queues the user's events after last_id that c wants. What does not fit in
 * max_queue_bytes is left out, oldest first; an id not in the buffer, or a
 * replay cut short, is announced with a system/resync event first. */
static void replay(struct sb_hub *hub, struct sb_conn *c, const char *last_id)
{
  struct user *u = c->dev->user;
  unsigned cap = (unsigned)hub->o.replay_buffer, start = 0, first, i;
  size_t budget = hub->o.max_queue_bytes > c->q.bytes ? hub->o.max_queue_bytes - c->q.bytes : 0;
  size_t sum = 0;
  struct sb_frame *rs;
  int found = 0, cut = 0;

  for (i = u->ring_count; i-- > 0;) {
    const struct sb_frame *f = u->ring[(u->ring_head + i) % cap];
    if (f->id && strcmp(f->id, last_id) == 0) {
      found = 1;
      start = i + 1;
      break;
    }
  }
  /* a resync may have to come first: keep room for it in any case */
  rs = resync_frame(last_id, found ? "replay_truncated" : "unknown_last_event_id");
  if (rs)
    budget = budget > rs->len ? budget - rs->len : 0;
  first = u->ring_count;
  for (i = u->ring_count; i-- > start;) {
    const struct sb_frame *f = u->ring[(u->ring_head + i) % cap];
    if (!wants(f, c->dev->id))
      continue;
    if (sum + f->len > budget) {
      cut = 1;
      break;
    }
    sum += f->len;
    first = i;
  }
  if (rs && (!found || cut))
    enqueue(hub, c, rs, 0);
  sb_frame_unref(rs);
  for (i = first; i < u->ring_count; i++) {
    struct sb_frame *f = u->ring[(u->ring_head + i) % cap];
    if (wants(f, c->dev->id) && enqueue(hub, c, f, 0)) {
      atomic_fetch_add(&hub->m->deliveries, 1);
      atomic_fetch_add(&hub->m->replayed, 1);
    }
  }
}

int sb_hub_register(struct sb_hub *hub, const char *user, const char *device,
                    const char *last_event_id, long long now_ms, sb_conn_wake_fn wake,
                    void *wake_ctx, struct sb_conn **out)
{
  struct user *u;
  struct device *d;
  struct sb_conn *c;
  char us[SB_LOG_SHORT_SIZE], ds[SB_LOG_SHORT_SIZE];
  int created = 0;

  *out = NULL;
  hub->now = now_ms;
  if (hub->nconns >= (size_t)hub->o.max_connections)
    return SB_ELIMIT;
  if (!(u = user_find(hub, user))) {
    if (!(u = user_add(hub, user)))
      return SB_ENOMEM;
    created = 1;
  }
  if (u->nconns >= (unsigned)hub->o.max_connections_per_user)
    return SB_EUSERLIMIT;
  for (d = u->devices; d && strcmp(d->id, device) != 0; d = d->next)
    ;
  if (!d) {
    size_t len = strlen(device);
    if (!(d = calloc(1, sizeof(*d) + len + 1)))
      goto nomem;
    memcpy(d->id, device, len + 1);
    d->user = u;
    d->next = u->devices;
    if (u->devices)
      u->devices->prev = d;
    u->devices = d;
    u->ndevices++;
  }
  if (!(c = calloc(1, sizeof(*c)))) {
    if (d->nconns == 0) {
      if (d->next)
        d->next->prev = NULL;
      u->devices = d->next;
      u->ndevices--;
      free(d);
    }
    goto nomem;
  }
  c->hub = hub;
  c->dev = d;
  c->wake = wake;
  c->wake_ctx = wake_ctx;
  c->next = d->conns;
  if (d->conns)
    d->conns->prev = c;
  d->conns = c;
  d->nconns++;
  if (u->nconns++ == 0) {
    hub->nconnected_users++;
    idle_unlink(hub, u);
    if (u->lingering)
      linger_unlink(hub, u);
    else if (hub->o.on_interest)
      hub->o.on_interest(hub->o.cb_ctx, u->id, 1);
  }
  hub->nconns++;
  c->next_hb = now_ms + hub->o.heartbeat_ms;
  c->hb_prev = hub->hb_tail;
  if (hub->hb_tail)
    hub->hb_tail->hb_next = c;
  else
    hub->hb_head = c;
  hub->hb_tail = c;

  enqueue(hub, c, hub->retry, 0);
  if (last_event_id && *last_event_id)
    replay(hub, c, last_event_id);
  atomic_fetch_add(&hub->m->connections_opened, 1);
  SB_LOG(hub->log, SB_LOG_INFO, "[SSE] Connection registered: user=%s device=%s (%u device%s)",
         sb_log_short(user, us), sb_log_short(device, ds), u->ndevices, u->ndevices == 1 ? "" : "s");
  *out = c;
  if (hub->o.on_presence)
    hub->o.on_presence(hub->o.cb_ctx, u->id);
  return 0;

nomem:
  if (created)
    user_free(hub, u);
  return SB_ENOMEM;
}

void sb_hub_unregister(struct sb_hub *hub, struct sb_conn *c)
{
  struct device *d;
  struct user *u;
  char us[SB_LOG_SHORT_SIZE], ds[SB_LOG_SHORT_SIZE];

  if (!c)
    return;
  d = c->dev;
  u = d->user;
  SB_LOG(hub->log, SB_LOG_INFO, "[SSE] Connection unregistered: user=%s device=%s",
         sb_log_short(u->id, us), sb_log_short(d->id, ds));
  if (c->prev)
    c->prev->next = c->next;
  else
    d->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  if (c->hb_prev)
    c->hb_prev->hb_next = c->hb_next;
  else
    hub->hb_head = c->hb_next;
  if (c->hb_next)
    c->hb_next->hb_prev = c->hb_prev;
  else
    hub->hb_tail = c->hb_prev;
  queue_clear(&c->q);
  free(c);
  hub->nconns--;
  atomic_fetch_add(&hub->m->connections_closed, 1);
  if (--d->nconns == 0) {
    if (d->prev)
      d->prev->next = d->next;
    else
      u->devices = d->next;
    if (d->next)
      d->next->prev = d->prev;
    u->ndevices--;
    free(d);
  }
  u->nconns--;
  if (hub->o.on_presence)
    hub->o.on_presence(hub->o.cb_ctx, u->id);
  if (u->nconns == 0) {
    hub->nconnected_users--;
    if (hub->o.on_interest) {
      if (hub->o.interest_linger_ms > 0)
        linger_push(hub, u, hub->now);
      else
        hub->o.on_interest(hub->o.cb_ctx, u->id, 0);
    }
    user_settle(hub, u);
  }
}

void sb_hub_linger(struct sb_hub *hub, const char *user, long long now_ms)
{
  struct user *u = user_find(hub, user);

  hub->now = now_ms;
  if (!hub->o.on_interest || (u && (u->nconns > 0 || u->lingering)))
    return;
  if (!u && !(u = user_add(hub, user)))
    return;
  idle_unlink(hub, u);
  linger_push(hub, u, now_ms);
}

void sb_hub_foreach_interest(const struct sb_hub *hub,
                             void (*fn)(void *ctx, const char *user, int connected), void *ctx)
{
  for (size_t i = 0; i < hub->nbuckets; i++)
    for (const struct user *u = hub->buckets[i]; u; u = u->hnext)
      if (u->nconns > 0 || u->lingering)
        fn(ctx, u->id, u->nconns > 0);
}

int sb_hub_has_event(const struct sb_hub *hub, const char *user, const char *id)
{
  const struct user *u = user_find(hub, user);
  unsigned cap = (unsigned)hub->o.replay_buffer;

  for (unsigned i = 0; u && i < u->ring_count; i++) {
    const struct sb_frame *f = u->ring[(u->ring_head + i) % cap];
    if (f->id && strcmp(f->id, id) == 0)
      return 1;
  }
  return 0;
}

json_t *sb_hub_presence(const struct sb_hub *hub, const char *user)
{
  const struct user *u = user_find(hub, user);
  json_t *devices = json_object(), *o;

  for (const struct device *d = u ? u->devices : NULL; devices && d; d = d->next)
    json_object_set_new(devices, d->id, json_integer(d->nconns));
  o = json_pack("{s:s, s:b, s:i, s:o}", "userId", user, "online", u && u->nconns > 0,
                "connections", u ? (json_int_t)u->nconns : 0, "devices", devices);
  return o;
}

static size_t deliver(struct sb_hub *hub, struct user *u, struct sb_frame *f, const char *only,
                      const char *except)
{
  size_t n = 0;

  for (struct device *d = u->devices; d; d = d->next) {
    if ((only && strcmp(d->id, only) != 0) || (except && strcmp(d->id, except) == 0))
      continue;
    for (struct sb_conn *c = d->conns, *next; c; c = next) {
      next = c->next;
      n += (size_t)enqueue(hub, c, f, 1);
    }
  }
  atomic_fetch_add(&hub->m->deliveries, n);
  return n;
}

size_t sb_hub_broadcast(struct sb_hub *hub, const char *user, struct sb_frame *frame,
                        const char *except_device)
{
  struct user *u = user_find(hub, user);
  return u ? deliver(hub, u, frame, NULL, except_device) : 0;
}

size_t sb_hub_send_to_device(struct sb_hub *hub, const char *user, const char *device,
                             struct sb_frame *frame)
{
  struct user *u = user_find(hub, user);
  return u ? deliver(hub, u, frame, device, NULL) : 0;
}

size_t sb_hub_publish(struct sb_hub *hub, const char *user, struct sb_frame *frame)
{
  struct user *u = user_find(hub, user);
  size_t n = 0;

  if (!u && hub->o.replay_buffer > 0)
    u = user_add(hub, user);
  if (u) {
    if (hub->o.replay_buffer > 0)
      ring_push(hub, u, frame);
    n = deliver(hub, u, frame, frame->target, frame->target ? NULL : frame->source);
    if (u->nconns == 0) {
      idle_unlink(hub, u); /* most recently used goes last */
      user_settle(hub, u);
    }
  }
  sb_frame_unref(frame);
  return n;
}

int sb_hub_heartbeat(struct sb_hub *hub, struct sb_conn *conn)
{
  if (conn->state != SB_CONN_OPEN)
    return SB_ESTATE;
  if (enqueue(hub, conn, hub->heartbeat, 1))
    atomic_fetch_add(&hub->m->heartbeats, 1);
  return 0;
}

long long sb_hub_tick(struct sb_hub *hub, long long now_ms)
{
  struct sb_conn *c;
  struct user *u;
  long long next;

  hub->now = now_ms;
  while ((u = hub->lg_head) && u->linger_until <= now_ms) {
    linger_unlink(hub, u);
    hub->o.on_interest(hub->o.cb_ctx, u->id, 0);
    user_settle(hub, u);
  }
  while ((c = hub->hb_head) && c->next_hb <= now_ms) {
    c->next_hb = now_ms + hub->o.heartbeat_ms;
    if (c != hub->hb_tail) {
      hub->hb_head = c->hb_next;
      hub->hb_head->hb_prev = NULL;
      c->hb_prev = hub->hb_tail;
      c->hb_next = NULL;
      hub->hb_tail->hb_next = c;
      hub->hb_tail = c;
    }
    sb_hub_heartbeat(hub, c);
  }
  next = hub->hb_head ? hub->hb_head->next_hb - now_ms : -1;
  if (hub->lg_head && (next < 0 || hub->lg_head->linger_until - now_ms < next))
    next = hub->lg_head->linger_until - now_ms;
  return next;
}

void sb_hub_close(struct sb_hub *hub, struct sb_conn *conn)
{
  (void)hub;
  if (conn->state == SB_CONN_OPEN)
    conn->state = SB_CONN_CLOSING;
  conn_wake(conn);
}

void sb_hub_gone(struct sb_hub *hub, struct sb_conn *conn)
{
  (void)hub;
  if (conn->state == SB_CONN_CUT)
    return;
  conn->state = SB_CONN_CUT;
  queue_clear(&conn->q);
  conn_end(conn);
}

void sb_hub_close_all(struct sb_hub *hub)
{
  for (struct sb_conn *c = hub->hb_head; c; c = c->hb_next)
    sb_hub_close(hub, c);
}

size_t sb_hub_connection_count(const struct sb_hub *hub, const char *user)
{
  const struct user *u = user_find(hub, user);
  return u ? u->nconns : 0;
}

int sb_hub_is_user_connected(const struct sb_hub *hub, const char *user)
{
  return sb_hub_connection_count(hub, user) > 0;
}

void sb_hub_gauges(const struct sb_hub *hub, struct sb_metrics_gauges *g)
{
  g->connections = hub->nconns;
  g->users = hub->nconnected_users;
  g->replay_users = hub->o.replay_buffer > 0 ? hub->nusers : 0;
}

size_t sb_conn_read(struct sb_conn *c, char *buf, size_t max)
{
  struct queue *q = &c->q;
  size_t n = 0;

  while (q->count && n < max) {
    struct sb_frame *f = q->items[q->head];
    size_t take = f->len - q->offset;
    if (take > max - n)
      take = max - n;
    memcpy(buf + n, f->bytes + q->offset, take);
    n += take;
    q->offset += take;
    if (q->offset == f->len) {
      sb_frame_unref(f);
      q->head = (q->head + 1) & (q->cap - 1);
      q->count--;
      q->offset = 0;
    }
  }
  q->bytes -= n;
  return n;
}

size_t sb_conn_peek(const struct sb_conn *c, struct iovec *iov, size_t max_iov,
                    size_t max_bytes, size_t *bytes)
{
  const struct queue *q = &c->q;
  size_t k = 0, n = 0, off = q->offset;

  for (unsigned i = 0; i < q->count && k < max_iov && n < max_bytes; i++, off = 0) {
    const struct sb_frame *f = q->items[(q->head + i) & (q->cap - 1)];
    size_t take = f->len - off;
    if (take > max_bytes - n)
      take = max_bytes - n;
    iov[k].iov_base = (void *)(f->bytes + off);
    iov[k].iov_len = take;
    k++;
    n += take;
  }
  *bytes = n;
  return k;
}

void sb_conn_consume(struct sb_conn *c, size_t n)
{
  struct queue *q = &c->q;

  if (n > q->bytes)
    n = q->bytes;
  q->bytes -= n;
  while (n) {
    struct sb_frame *f = q->items[q->head];
    size_t take = f->len - q->offset;
    if (take > n)
      take = n;
    n -= take;
    q->offset += take;
    if (q->offset == f->len) {
      sb_frame_unref(f);
      q->head = (q->head + 1) & (q->cap - 1);
      q->count--;
      q->offset = 0;
    }
  }
}

void sb_conn_wait(struct sb_conn *conn)
{
  conn->waiting = 1;
}

int sb_conn_state(const struct sb_conn *conn)
{
  return conn->state;
}

size_t sb_conn_queued(const struct sb_conn *conn)
{
  return conn->q.bytes;
}

const char *sb_conn_user(const struct sb_conn *conn)
{
  return conn->dev->user->id;
}

const char *sb_conn_device(const struct sb_conn *conn)
{
  return conn->dev->id;
}
