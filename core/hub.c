#include "hub.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "list.h"

/* The least time between two log lines about evictions. */
#define EVICT_LOG_MS 10000
/* The first capacity of a replay buffer; it doubles up to replay_buffer, so
 * that a user with one event does not pay for replay_buffer slots. */
#define RING_FIRST_CAP 4

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
  struct sb_frame **ring; /* replay buffer: ring_cap slots, oldest at ring_head */
  unsigned ring_cap, ring_head, ring_count;
  int whole; /* the ring holds every event of the user since the hub began */
  struct sb_list idle_link;   /* on hub->idle while kept without connections */
  struct sb_list conn_link;   /* on hub->connected while it has connections */
  struct sb_list spare_link;  /* on hub->spare while connected with events over the floor */
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
  struct sb_list connected;  /* users with connections (user.conn_link) */
  struct sb_list spare;      /* connected users holding more than replay_floor events
                              * (user.spare_link), least recently published-to first */
  size_t mem[SB_MEM_KINDS];  /* bytes held: SB_MEM_REPLAY and SB_MEM_QUEUES */
  size_t evicted[SB_EVICTED_KINDS]; /* evictions not yet logged */
  long long evict_logged;    /* when evictions were last logged; 0: never */
  long long now;             /* the latest time a call brought */
  char *origin_id;           /* opts.origin_id, owned; NULL when unset */
  size_t lost_users;         /* users freed that held events or had some evicted */
  struct sb_frame *heartbeat, *retry;
};

/* ---- memory --------------------------------------------------------------- */

static void mem_add(struct sb_hub *hub, enum sb_mem_kind k, size_t n)
{
  hub->mem[k] += n;
  atomic_store_explicit(&hub->m->memory[k], hub->mem[k], memory_order_relaxed);
}

static void mem_sub(struct sb_hub *hub, enum sb_mem_kind k, size_t n)
{
  hub->mem[k] -= n;
  atomic_store_explicit(&hub->m->memory[k], hub->mem[k], memory_order_relaxed);
}

static size_t mem_held(const struct sb_hub *hub)
{
  return hub->mem[SB_MEM_REPLAY] + hub->mem[SB_MEM_QUEUES];
}

/* A replay slot takes a reference to f: its cost counts as replay from the
 * first slot on (moving from queues if queued). Returns f. */
static struct sb_frame *ring_hold(struct sb_hub *hub, struct sb_frame *f)
{
  if (f->rings++ == 0) {
    if (f->queues)
      mem_sub(hub, SB_MEM_QUEUES, f->cost);
    mem_add(hub, SB_MEM_REPLAY, f->cost);
  }
  return sb_frame_ref(f);
}

/* A replay slot drops its reference to f. */
static void ring_release(struct sb_hub *hub, struct sb_frame *f)
{
  if (--f->rings == 0) {
    mem_sub(hub, SB_MEM_REPLAY, f->cost);
    if (f->queues)
      mem_add(hub, SB_MEM_QUEUES, f->cost);
  }
  sb_frame_unref(f);
}

/* A queue entry takes a reference to f: its cost counts as queues while no
 * replay slot holds it. Returns f. */
static struct sb_frame *queue_hold(struct sb_hub *hub, struct sb_frame *f)
{
  if (f->queues++ == 0 && f->rings == 0)
    mem_add(hub, SB_MEM_QUEUES, f->cost);
  return sb_frame_ref(f);
}

/* A queue entry drops its reference to f. */
static void queue_release(struct sb_hub *hub, struct sb_frame *f)
{
  if (--f->queues == 0 && f->rings == 0)
    mem_sub(hub, SB_MEM_QUEUES, f->cost);
  sb_frame_unref(f);
}

/* The i-th event of u's replay buffer, oldest first. */
static struct sb_frame *ring_at(const struct user *u, unsigned i)
{
  return u->ring[(u->ring_head + i) % u->ring_cap];
}

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
  mem_sub(hub, SB_MEM_REPLAY, sb_mem_cost(hub->nbuckets * sizeof(*b)));
  mem_add(hub, SB_MEM_REPLAY, sb_mem_cost(n * sizeof(*b)));
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
  u->whole = hub->lost_users == 0;
  sb_list_init(&u->devices);
  sb_list_init(&u->idle_link);
  sb_list_init(&u->linger_link);
  sb_list_init(&u->conn_link);
  sb_list_init(&u->spare_link);
  mem_add(hub, SB_MEM_REPLAY, sb_mem_cost(sizeof(*u) + len + 1));
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
  sb_list_remove(&u->conn_link);
  sb_list_remove(&u->spare_link);
  /* events lost with it, or evicted before: a new user of this id, or any
   * new user, cannot know it has them all */
  if (u->ring_count > 0 || !u->whole)
    hub->lost_users++;
  for (unsigned i = 0; i < u->ring_count; i++)
    ring_release(hub, ring_at(u, i));
  if (u->ring)
    mem_sub(hub, SB_MEM_REPLAY, sb_mem_cost(u->ring_cap * sizeof(*u->ring)));
  free(u->ring);
  mem_sub(hub, SB_MEM_REPLAY, sb_mem_cost(sizeof(*u) + strlen(u->id) + 1));
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

/* Doubles u's replay buffer, up to replay_buffer slots. Returns 0 or
 * SB_ENOMEM (the buffer stays as it was). */
static int ring_grow(struct sb_hub *hub, struct user *u)
{
  unsigned ncap = u->ring_cap ? u->ring_cap * 2 : RING_FIRST_CAP;
  struct sb_frame **r;

  if (ncap > (unsigned)hub->o.replay_buffer)
    ncap = (unsigned)hub->o.replay_buffer;
  if (!(r = malloc(ncap * sizeof(*r))))
    return SB_ENOMEM;
  for (unsigned i = 0; i < u->ring_count; i++)
    r[i] = ring_at(u, i);
  if (u->ring)
    mem_sub(hub, SB_MEM_REPLAY, sb_mem_cost(u->ring_cap * sizeof(*r)));
  mem_add(hub, SB_MEM_REPLAY, sb_mem_cost(ncap * sizeof(*r)));
  free(u->ring);
  u->ring = r;
  u->ring_cap = ncap;
  u->ring_head = 0;
  return 0;
}

/* Keeps u on hub->spare while it has connections and more events than the
 * floor; touched: it was just published to (it goes last). */
static void spare_update(struct sb_hub *hub, struct user *u, int touched)
{
  int over = u->nconns > 0 && u->ring_count > (unsigned)hub->o.replay_floor;

  if (sb_list_linked(&u->spare_link) && (!over || touched))
    sb_list_remove(&u->spare_link);
  if (over && !sb_list_linked(&u->spare_link))
    sb_list_push_back(&hub->spare, &u->spare_link);
}

static void ring_push(struct sb_hub *hub, struct user *u, struct sb_frame *f)
{
  if (u->ring_count == u->ring_cap && u->ring_cap < (unsigned)hub->o.replay_buffer &&
      ring_grow(hub, u) && !u->ring_cap)
    return;
  if (u->ring_count == u->ring_cap) {
    u->whole = 0;
    ring_release(hub, u->ring[u->ring_head]);
    u->ring[u->ring_head] = ring_hold(hub, f);
    u->ring_head = (u->ring_head + 1) % u->ring_cap;
  } else {
    u->ring[(u->ring_head + u->ring_count) % u->ring_cap] = ring_hold(hub, f);
    u->ring_count++;
  }
  spare_update(hub, u, 1);
}

/* ---- the memory budget ---------------------------------------------------- */

/* Drops the oldest event of u's replay buffer to keep to max_memory. */
static void evict_oldest(struct sb_hub *hub, struct user *u, enum sb_evicted from)
{
  ring_release(hub, u->ring[u->ring_head]);
  u->ring_head = (u->ring_head + 1) % u->ring_cap;
  u->ring_count--;
  u->whole = 0;
  hub->evicted[from]++;
  atomic_fetch_add(&hub->m->evicted[from], 1);
}

/* Returns 1 if evicting the oldest event of u would free its bytes: no
 * queue holds it still (then it would only move to queues). */
static int evictable(const struct user *u)
{
  return u->ring_count > 0 && ring_at(u, 0)->queues == 0;
}

/* Evicts the oldest event of each connected user holding more than one
 * (and whose oldest is not queued), one user after the other, until the
 * hub is within max_memory or every user had its turn; a user that had its
 * turn goes last, so that the next call starts with the next one. Returns
 * how many it evicted. */
static size_t squeeze_floors(struct sb_hub *hub)
{
  size_t n = 0;

  for (size_t i = 0; i < hub->nconnected_users && mem_held(hub) > hub->o.max_memory; i++) {
    struct sb_list *l = sb_list_first(&hub->connected);
    struct user *u = sb_list_entry(l, struct user, conn_link);
    sb_list_remove(l);
    sb_list_push_back(&hub->connected, l);
    if (u->ring_count > 1 && evictable(u)) {
      evict_oldest(hub, u, SB_EVICTED_CONNECTED);
      n++;
    }
  }
  return n;
}

/* Logs the evictions since the last line, at most every EVICT_LOG_MS. */
static void log_evictions(struct sb_hub *hub)
{
  size_t idle = hub->evicted[SB_EVICTED_IDLE], conn = hub->evicted[SB_EVICTED_CONNECTED];

  if (idle + conn == 0 || (hub->evict_logged && hub->now - hub->evict_logged < EVICT_LOG_MS))
    return;
  SB_LOG(hub->log, SB_LOG_NOTICE,
         "[SSE] Memory budget: evicted %zu replay event%s of idle users and %zu of connected "
         "users to keep the hub within %zu bytes (replay %zu, queues %zu)",
         idle, idle == 1 ? "" : "s", conn, hub->o.max_memory, hub->mem[SB_MEM_REPLAY],
         hub->mem[SB_MEM_QUEUES]);
  hub->evicted[SB_EVICTED_IDLE] = hub->evicted[SB_EVICTED_CONNECTED] = 0;
  hub->evict_logged = hub->now ? hub->now : 1;
}

/* Evicts replay events while the hub holds more than max_memory, in the
 * order hub.h gives; stops when nothing is left to evict. An event still
 * queued to a connection of its user is not evicted (that would free
 * nothing), nor are the events after it. */
static void keep_to_budget(struct sb_hub *hub)
{
  struct sb_list *l, *next;
  struct user *u;

  if (!hub->o.max_memory || mem_held(hub) <= hub->o.max_memory)
    return;
  /* users without connections, least recently published-to first */
  while (mem_held(hub) > hub->o.max_memory && (l = sb_list_first(&hub->idle))) {
    u = sb_list_entry(l, struct user, idle_link);
    evict_oldest(hub, u, SB_EVICTED_IDLE);
    if (u->ring_count == 0)
      user_free(hub, u);
  }
  /* lingering users (no connections either), kept while they linger */
  sb_list_foreach(l, &hub->lingering) {
    u = sb_list_entry(l, struct user, linger_link);
    while (mem_held(hub) > hub->o.max_memory && u->ring_count > 0)
      evict_oldest(hub, u, SB_EVICTED_IDLE);
  }
  /* connected users beyond their floor, least recently published-to first */
  for (l = hub->spare.next; l != &hub->spare && mem_held(hub) > hub->o.max_memory; l = next) {
    next = l->next;
    u = sb_list_entry(l, struct user, spare_link);
    while (mem_held(hub) > hub->o.max_memory &&
           u->ring_count > (unsigned)hub->o.replay_floor && evictable(u))
      evict_oldest(hub, u, SB_EVICTED_CONNECTED);
    spare_update(hub, u, 0);
  }
  /* the floors, one event a user a round, down to each one's newest */
  while (mem_held(hub) > hub->o.max_memory && squeeze_floors(hub))
    ;
  log_evictions(hub);
}

/* ---- queues --------------------------------------------------------------- */

static void queue_clear(struct sb_hub *hub, struct queue *q)
{
  for (unsigned i = 0; i < q->count; i++)
    queue_release(hub, q->items[(q->head + i) & (q->cap - 1)]);
  if (q->items)
    mem_sub(hub, SB_MEM_QUEUES, sb_mem_cost(q->cap * sizeof(*q->items)));
  free(q->items);
  memset(q, 0, sizeof(*q));
}

static int queue_push(struct sb_hub *hub, struct queue *q, struct sb_frame *f)
{
  if (q->count == q->cap) {
    unsigned ncap = q->cap ? q->cap * 2 : 8;
    struct sb_frame **items = malloc(ncap * sizeof(*items));
    if (!items)
      return SB_ENOMEM;
    for (unsigned i = 0; i < q->count; i++)
      items[i] = q->items[(q->head + i) & (q->cap - 1)];
    if (q->items)
      mem_sub(hub, SB_MEM_QUEUES, sb_mem_cost(q->cap * sizeof(*items)));
    mem_add(hub, SB_MEM_QUEUES, sb_mem_cost(ncap * sizeof(*items)));
    free(q->items);
    q->items = items;
    q->cap = ncap;
    q->head = 0;
  }
  q->items[(q->head + q->count) & (q->cap - 1)] = queue_hold(hub, f);
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
  queue_clear(hub, &c->q);
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
  if (queue_push(hub, &c->q, f)) {
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

static void device_free(struct sb_hub *hub, struct device *d)
{
  sb_list_remove(&d->user_link);
  d->user->ndevices--;
  mem_sub(hub, SB_MEM_QUEUES, sb_mem_cost(sizeof(*d) + strlen(d->id) + 1));
  free(d);
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
  sb_list_init(&hub->connected);
  sb_list_init(&hub->spare);
  snprintf(retry, sizeof(retry), "retry: %d\n\n", opts->retry_ms);
  if (!(hub->buckets = calloc(hub->nbuckets, sizeof(*hub->buckets))) ||
      !(hub->heartbeat = sb_frame_raw(SB_SSE_HEARTBEAT, strlen(SB_SSE_HEARTBEAT))) ||
      !(hub->retry = sb_frame_raw(retry, strlen(retry))) ||
      (opts->origin_id && !(hub->origin_id = strdup(opts->origin_id)))) {
    sb_hub_free(hub);
    return NULL;
  }
  hub->o.origin_id = hub->origin_id;
  mem_add(hub, SB_MEM_REPLAY, sb_mem_cost(hub->nbuckets * sizeof(*hub->buckets)));
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
  hub->o.max_memory = opts->max_memory;
  keep_to_budget(hub);
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
          queue_clear(hub, &c->q);
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
  free(hub->origin_id);
  free(hub);
}

/* Queues the user's events after last_id that c wants. What does not fit in
 * max_queue_bytes is left out, oldest first; an id not in the buffer, or a
 * replay cut short, is announced with a system/resync event first. */
static void replay(struct sb_hub *hub, struct sb_conn *c, const char *last_id)
{
  struct user *u = c->dev->user;
  unsigned start = 0, first, i;
  size_t budget = hub->o.max_queue_bytes > c->q.bytes ? hub->o.max_queue_bytes - c->q.bytes : 0;
  size_t sum = 0;
  struct sb_frame *rs;
  int found = 0, cut = 0;

  if (hub->origin_id && strcmp(last_id, hub->origin_id) == 0) {
    found = u->whole; /* from the beginning: all of the buffer, if it is all */
  } else {
    for (i = u->ring_count; i-- > 0;) {
      const struct sb_frame *f = ring_at(u, i);
      if (f->id && strcmp(f->id, last_id) == 0) {
        found = 1;
        start = i + 1;
        break;
      }
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
    const struct sb_frame *f = ring_at(u, i);
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
    struct sb_frame *f = ring_at(u, i);
    if (wants(f, c->dev->id) && enqueue(hub, c, f, 0)) {
      atomic_fetch_add(&hub->m->deliveries, 1);
      atomic_fetch_add(&hub->m->replayed, 1);
    }
  }
}

/* Queues the retry line, with the stream's resume point when the hub has an
 * origin id: the newest event id of u's buffer, else the origin. */
static void first_bytes(struct sb_hub *hub, struct sb_conn *c, const struct user *u)
{
  const char *id = hub->origin_id;
  struct sb_frame *f = NULL;
  char text[384];

  if (id && u->ring_count > 0) {
    const struct sb_frame *newest = ring_at(u, u->ring_count - 1);
    if (newest->id)
      id = newest->id;
  }
  if (id) {
    int n = snprintf(text, sizeof(text), "retry: %d\nid: %s\n\n", hub->o.retry_ms, id);
    if (n > 0 && (size_t)n < sizeof(text))
      f = sb_frame_raw(text, (size_t)n);
  }
  enqueue(hub, c, f ? f : hub->retry, 0);
  sb_frame_unref(f);
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
    mem_add(hub, SB_MEM_QUEUES, sb_mem_cost(sizeof(*d) + len + 1));
  }
  if (!(c = calloc(1, sizeof(*c)))) {
    if (d->nconns == 0)
      device_free(hub, d);
    goto nomem;
  }
  mem_add(hub, SB_MEM_QUEUES, sb_mem_cost(sizeof(*c)));
  c->hub = hub;
  c->dev = d;
  c->wake = wake;
  c->wake_ctx = wake_ctx;
  sb_list_push_front(&d->conns, &c->dev_link);
  d->nconns++;
  if (u->nconns++ == 0) {
    hub->nconnected_users++;
    idle_unlink(hub, u);
    sb_list_push_back(&hub->connected, &u->conn_link);
    spare_update(hub, u, 0);
    if (is_lingering(u))
      linger_unlink(u);
    else if (hub->o.on_interest)
      hub->o.on_interest(hub->o.cb_ctx, u->id, 1);
  }
  hub->nconns++;
  c->next_hb = now_ms + hub->o.heartbeat_ms;
  sb_list_push_back(&hub->heartbeats, &c->hb_link);

  first_bytes(hub, c, u);
  if (last_event_id && *last_event_id)
    replay(hub, c, last_event_id);
  keep_to_budget(hub);
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
  queue_clear(hub, &c->q);
  mem_sub(hub, SB_MEM_QUEUES, sb_mem_cost(sizeof(*c)));
  free(c);
  hub->nconns--;
  atomic_fetch_add(&hub->m->connections_closed, 1);
  if (--d->nconns == 0)
    device_free(hub, d);
  if (--u->nconns == 0) {
    sb_list_remove(&u->conn_link);
    sb_list_remove(&u->spare_link);
  }
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

  for (unsigned i = 0; u && i < u->ring_count; i++) {
    const struct sb_frame *f = ring_at(u, i);
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
  keep_to_budget(hub);
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
  queue_clear(conn->hub, &conn->q);
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

size_t sb_hub_replay_count(const struct sb_hub *hub, const char *user)
{
  const struct user *u = user_find(hub, user);
  return u ? u->ring_count : 0;
}

size_t sb_hub_memory(const struct sb_hub *hub, enum sb_mem_kind kind)
{
  return kind == SB_MEM_REPLAY || kind == SB_MEM_QUEUES ? hub->mem[kind] : 0;
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
      queue_release(c->hub, f);
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
      queue_release(c->hub, f);
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
