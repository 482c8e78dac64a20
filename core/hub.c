#include "hub.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "list.h"

struct queue {
  struct sb_frame **items; /* ring of frame references, cap a power of two */
  unsigned cap, head, count;
  size_t offset; /* bytes of items[head] already read */
  size_t bytes;  /* unread bytes in the queue */
};

struct device;

struct sb_conn {
  struct device *dev;
  struct sb_list dev_link; /* on dev->conns */
  struct sb_list hb_link;  /* on hub->heartbeats */
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
  struct sb_list user_link; /* on user->devices */
  struct sb_list conns;     /* its connections (sb_conn.dev_link), newest first */
  unsigned nconns;
  char id[];
};

struct user {
  struct user *hnext;     /* hash chain */
  struct sb_list devices; /* its connected devices (device.user_link), newest first */
  unsigned ndevices, nconns;
  struct sb_frame **ring; /* replay buffer: replay_buffer slots, oldest at ring_head */
  unsigned ring_head, ring_count;
  struct sb_list idle_link;   /* on hub->idle while kept without connections */
  struct sb_list linger_link; /* on hub->lingering during its interest linger */
  long long linger_until;
  uint32_t hash;
  char id[];
};

struct sb_hub {
  struct sb_hub_opts o;
  const struct sb_log *log;
  struct sb_metrics *m;
  struct user **buckets;
  size_t nbuckets, nusers, nconnected_users, nconns, nidle;
  struct sb_list heartbeats; /* every connection (sb_conn.hb_link), next due first */
  struct sb_list idle;       /* idle users (user.idle_link), least recently used first */
  struct sb_list lingering;  /* lingering users (user.linger_link), soonest end first */
  long long now;             /* the latest time a call brought */
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
  sb_list_init(&u->devices);
  sb_list_init(&u->idle_link);
  sb_list_init(&u->linger_link);
  if (hub->nusers >= hub->nbuckets)
    user_grow(hub);
  u->hnext = hub->buckets[u->hash & (hub->nbuckets - 1)];
  hub->buckets[u->hash & (hub->nbuckets - 1)] = u;
  hub->nusers++;
  return u;
}

static struct device *device_find(const struct user *u, const char *id)
{
  struct sb_list *l;

  sb_list_foreach(l, &u->devices) {
    struct device *d = sb_list_entry(l, struct device, user_link);
    if (strcmp(d->id, id) == 0)
      return d;
  }
  return NULL;
}

static int is_idle(const struct user *u)
{
  return sb_list_linked(&u->idle_link);
}

static int is_lingering(const struct user *u)
{
  return sb_list_linked(&u->linger_link);
}

static void idle_unlink(struct sb_hub *hub, struct user *u)
{
  if (!is_idle(u))
    return;
  sb_list_remove(&u->idle_link);
  hub->nidle--;
}

/* The most recently used goes last. */
static void idle_push(struct sb_hub *hub, struct user *u)
{
  sb_list_push_back(&hub->idle, &u->idle_link);
  hub->nidle++;
}

static void linger_unlink(struct user *u)
{
  sb_list_remove(&u->linger_link);
}

/* The linger is the same length for everyone: appending keeps the order. */
static void linger_push(struct sb_hub *hub, struct user *u, long long now_ms)
{
  u->linger_until = now_ms + hub->o.interest_linger_ms;
  sb_list_push_back(&hub->lingering, &u->linger_link);
}

static void user_free(struct sb_hub *hub, struct user *u)
{
  struct user **pp = &hub->buckets[u->hash & (hub->nbuckets - 1)];
  while (*pp != u)
    pp = &(*pp)->hnext;
  *pp = u->hnext;
  idle_unlink(hub, u);
  linger_unlink(u);
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
  struct sb_list *oldest;

  if (u->nconns > 0 || is_lingering(u))
    return;
  if (u->ring_count == 0) {
    user_free(hub, u);
    return;
  }
  if (!is_idle(u))
    idle_push(hub, u);
  while (hub->nidle > hub->o.max_idle_users && (oldest = sb_list_first(&hub->idle)))
    user_free(hub, sb_list_entry(oldest, struct user, idle_link));
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
  sb_list_init(&hub->heartbeats);
  sb_list_init(&hub->idle);
  sb_list_init(&hub->lingering);
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
  struct sb_list *l;

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
    sb_list_foreach(l, &hub->heartbeats)
      sb_list_entry(l, struct sb_conn, hb_link)->next_hb = hub->now + opts->heartbeat_ms;
  }
  hub->o.retry_ms = opts->retry_ms;
  hub->o.max_queue_bytes = opts->max_queue_bytes;
  return 0;
}

void sb_hub_free(struct sb_hub *hub)
{
  struct sb_list *dl, *dtmp, *cl, *ctmp;

  if (!hub)
    return;
  for (size_t i = 0; hub->buckets && i < hub->nbuckets; i++) {
    while (hub->buckets[i]) {
      struct user *u = hub->buckets[i];
      sb_list_foreach_safe(dl, dtmp, &u->devices) {
        struct device *d = sb_list_entry(dl, struct device, user_link);
        sb_list_foreach_safe(cl, ctmp, &d->conns) {
          struct sb_conn *c = sb_list_entry(cl, struct sb_conn, dev_link);
          queue_clear(&c->q);
          free(c);
        }
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
  rs = hub->o.resync ? hub->o.resync(hub->o.cb_ctx, last_id,
                                     found ? "replay_truncated" : "unknown_last_event_id")
                     : NULL;
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
  if (!(d = device_find(u, device))) {
    size_t len = strlen(device);
    if (!(d = calloc(1, sizeof(*d) + len + 1)))
      goto nomem;
    memcpy(d->id, device, len + 1);
    d->user = u;
    sb_list_init(&d->conns);
    sb_list_push_front(&u->devices, &d->user_link);
    u->ndevices++;
  }
  if (!(c = calloc(1, sizeof(*c)))) {
    if (d->nconns == 0) {
      sb_list_remove(&d->user_link);
      u->ndevices--;
      free(d);
    }
    goto nomem;
  }
  c->dev = d;
  c->wake = wake;
  c->wake_ctx = wake_ctx;
  sb_list_push_front(&d->conns, &c->dev_link);
  d->nconns++;
  if (u->nconns++ == 0) {
    hub->nconnected_users++;
    idle_unlink(hub, u);
    if (is_lingering(u))
      linger_unlink(u);
    else if (hub->o.on_interest)
      hub->o.on_interest(hub->o.cb_ctx, u->id, 1);
  }
  hub->nconns++;
  c->next_hb = now_ms + hub->o.heartbeat_ms;
  sb_list_push_back(&hub->heartbeats, &c->hb_link);

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
  sb_list_remove(&c->dev_link);
  sb_list_remove(&c->hb_link);
  queue_clear(&c->q);
  free(c);
  hub->nconns--;
  atomic_fetch_add(&hub->m->connections_closed, 1);
  if (--d->nconns == 0) {
    sb_list_remove(&d->user_link);
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
  if (!hub->o.on_interest || (u && (u->nconns > 0 || is_lingering(u))))
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
      if (u->nconns > 0 || is_lingering(u))
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

size_t sb_hub_foreach_device(const struct sb_hub *hub, const char *user,
                             void (*fn)(void *ctx, const char *device, size_t connections),
                             void *ctx)
{
  const struct user *u = user_find(hub, user);
  struct sb_list *l;

  if (!u)
    return 0;
  sb_list_foreach(l, &u->devices) {
    const struct device *d = sb_list_entry(l, struct device, user_link);
    fn(ctx, d->id, d->nconns);
  }
  return u->nconns;
}

static size_t deliver(struct sb_hub *hub, struct user *u, struct sb_frame *f, const char *only,
                      const char *except)
{
  struct sb_list *dl, *cl, *ctmp;
  size_t n = 0;

  sb_list_foreach(dl, &u->devices) {
    struct device *d = sb_list_entry(dl, struct device, user_link);
    if ((only && strcmp(d->id, only) != 0) || (except && strcmp(d->id, except) == 0))
      continue;
    /* an enqueue may cut c, which stays on the list until unregistered */
    sb_list_foreach_safe(cl, ctmp, &d->conns)
      n += (size_t)enqueue(hub, sb_list_entry(cl, struct sb_conn, dev_link), f, 1);
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

/* Returns the user whose interest linger ends first, or NULL. */
static struct user *first_lingering(const struct sb_hub *hub)
{
  struct sb_list *l = sb_list_first(&hub->lingering);
  return l ? sb_list_entry(l, struct user, linger_link) : NULL;
}

/* Returns the connection whose heartbeat is due first, or NULL. */
static struct sb_conn *first_heartbeat(const struct sb_hub *hub)
{
  struct sb_list *l = sb_list_first(&hub->heartbeats);
  return l ? sb_list_entry(l, struct sb_conn, hb_link) : NULL;
}

long long sb_hub_tick(struct sb_hub *hub, long long now_ms)
{
  struct sb_conn *c;
  struct user *u;
  long long next;

  hub->now = now_ms;
  while ((u = first_lingering(hub)) && u->linger_until <= now_ms) {
    linger_unlink(u);
    hub->o.on_interest(hub->o.cb_ctx, u->id, 0);
    user_settle(hub, u);
  }
  /* every interval is the same: the one due goes last, keeping the order */
  while ((c = first_heartbeat(hub)) && c->next_hb <= now_ms) {
    c->next_hb = now_ms + hub->o.heartbeat_ms;
    sb_list_remove(&c->hb_link);
    sb_list_push_back(&hub->heartbeats, &c->hb_link);
    sb_hub_heartbeat(hub, c);
  }
  next = (c = first_heartbeat(hub)) ? c->next_hb - now_ms : -1;
  if ((u = first_lingering(hub)) && (next < 0 || u->linger_until - now_ms < next))
    next = u->linger_until - now_ms;
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
  struct sb_list *l;

  sb_list_foreach(l, &hub->heartbeats)
    sb_hub_close(hub, sb_list_entry(l, struct sb_conn, hb_link));
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
