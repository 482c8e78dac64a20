#include "slots.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "err.h"

#define BIT(p) (1u << (p))
/* the phases that count against their address */
#define COUNTED \
  (BIT(SB__SLOT_HEADERS) | BIT(SB__SLOT_IDLE) | BIT(SB__SLOT_BODY) | BIT(SB__SLOT_ANSWER))
#define WAITING_HEADERS (BIT(SB__SLOT_HEADERS) | BIT(SB__SLOT_IDLE))

static const unsigned moves[] = {
  [SB__SLOT_HEADERS] = BIT(SB__SLOT_BODY) | BIT(SB__SLOT_ANSWER) | BIT(SB__SLOT_STREAM) |
                       BIT(SB__SLOT_CUT) | BIT(SB__SLOT_CLOSED),
  [SB__SLOT_IDLE] = BIT(SB__SLOT_BODY) | BIT(SB__SLOT_ANSWER) | BIT(SB__SLOT_STREAM) |
                    BIT(SB__SLOT_CUT) | BIT(SB__SLOT_CLOSED),
  [SB__SLOT_BODY] = BIT(SB__SLOT_ANSWER) | BIT(SB__SLOT_CUT) | BIT(SB__SLOT_CLOSED),
  [SB__SLOT_ANSWER] = BIT(SB__SLOT_IDLE) | BIT(SB__SLOT_CLOSED),
  [SB__SLOT_STREAM] = BIT(SB__SLOT_IDLE) | BIT(SB__SLOT_CLOSED),
  [SB__SLOT_CUT] = BIT(SB__SLOT_CLOSED),
  [SB__SLOT_CLOSED] = 0,
};

static const char *const phase_names[] = {
  "headers", "idle", "body", "answer", "stream", "cut", "closed",
};

/* A client address: an IPv4 address, or the /64 of an IPv6 one (an IPv4
 * address mapped into IPv6 is the IPv4 address). */
struct key {
  unsigned char len; /* 4, 8, or 0 for an address of another family */
  unsigned char b[8];
};

/* The open slots of one client address; freed with its last slot. */
struct sb__slot_addr {
  struct key key;
  uint32_t hash;
  struct sb__slot_addr *next; /* hash chain */
  unsigned slots;             /* open slots, in any phase */
  unsigned pending;           /* of those, the ones that count */
  int refused;                /* a refusal was logged since pending last fell */
  struct sb_list idle;        /* its IDLE slots (struct sb__slot.idle), oldest first */
};

struct sb__slots {
  struct sb_metrics *metrics;
  const struct sb_log *log;
  struct sb__slot_addr **buckets;
  size_t nbuckets, naddrs;
  struct sb_list headers; /* HEADERS and IDLE slots, by deadline (struct sb__slot.due) */
  struct sb_list bodies;  /* BODY slots, by deadline */
};

/* ---- addresses ------------------------------------------------------------ */

static void key_of(const struct sockaddr *sa, socklen_t len, struct key *k)
{
  static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  const struct sockaddr_in6 *s6;

  memset(k, 0, sizeof(*k));
  if (!sa)
    return;
  if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
    k->len = 4;
    memcpy(k->b, &((const struct sockaddr_in *)sa)->sin_addr, 4);
  } else if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
    s6 = (const struct sockaddr_in6 *)sa;
    if (memcmp(s6->sin6_addr.s6_addr, mapped, sizeof(mapped)) == 0) {
      k->len = 4;
      memcpy(k->b, s6->sin6_addr.s6_addr + 12, 4);
    } else {
      k->len = 8;
      memcpy(k->b, s6->sin6_addr.s6_addr, 8);
    }
  }
}

static uint32_t hash_key(const struct key *k)
{
  uint32_t h = 2166136261u ^ k->len; /* FNV-1a */
  for (unsigned i = 0; i < k->len; i++)
    h = (h ^ k->b[i]) * 16777619u;
  return h;
}

/* Writes k as text into buf (size n), for log lines. */
static const char *key_text(const struct key *k, char *buf, size_t n)
{
  unsigned char six[16] = {0};

  if (k->len == 4)
    return inet_ntop(AF_INET, k->b, buf, (socklen_t)n) ? buf : "?";
  if (k->len == 8) {
    memcpy(six, k->b, 8);
    if (inet_ntop(AF_INET6, six, buf, (socklen_t)n - 3)) {
      strcat(buf, "/64");
      return buf;
    }
  }
  return "?";
}

static struct sb__slot_addr *find(const struct sb__slots *s, const struct key *k, uint32_t h)
{
  for (struct sb__slot_addr *a = s->buckets[h & (s->nbuckets - 1)]; a; a = a->next)
    if (a->hash == h && a->key.len == k->len && memcmp(a->key.b, k->b, k->len) == 0)
      return a;
  return NULL;
}

/* Doubles the buckets; keeps the old ones when out of memory (chains grow). */
static void grow(struct sb__slots *s)
{
  size_t n = s->nbuckets * 2;
  struct sb__slot_addr **b = calloc(n, sizeof(*b));

  if (!b)
    return;
  for (size_t i = 0; i < s->nbuckets; i++) {
    struct sb__slot_addr *a = s->buckets[i], *next;
    for (; a; a = next) {
      next = a->next;
      a->next = b[a->hash & (n - 1)];
      b[a->hash & (n - 1)] = a;
    }
  }
  free(s->buckets);
  s->buckets = b;
  s->nbuckets = n;
}

static struct sb__slot_addr *addr_get(struct sb__slots *s, const struct key *k)
{
  uint32_t h = hash_key(k);
  struct sb__slot_addr *a = find(s, k, h);

  if (a)
    return a;
  if (!(a = calloc(1, sizeof(*a))))
    return NULL;
  a->key = *k;
  a->hash = h;
  sb_list_init(&a->idle);
  if (s->naddrs >= s->nbuckets)
    grow(s);
  a->next = s->buckets[h & (s->nbuckets - 1)];
  s->buckets[h & (s->nbuckets - 1)] = a;
  s->naddrs++;
  return a;
}

static void addr_put(struct sb__slots *s, struct sb__slot_addr *a)
{
  struct sb__slot_addr **p;

  if (--a->slots)
    return;
  for (p = &s->buckets[a->hash & (s->nbuckets - 1)]; *p != a; p = &(*p)->next)
    ;
  *p = a->next;
  s->naddrs--;
  free(a);
}

/* ---- slots ---------------------------------------------------------------- */

struct sb__slots *sb__slots_new(struct sb_metrics *metrics, const struct sb_log *log)
{
  struct sb__slots *s = calloc(1, sizeof(*s));

  if (!s || !(s->buckets = calloc(64, sizeof(*s->buckets)))) {
    free(s);
    return NULL;
  }
  s->nbuckets = 64;
  s->metrics = metrics;
  s->log = log;
  sb_list_init(&s->headers);
  sb_list_init(&s->bodies);
  return s;
}

void sb__slots_free(struct sb__slots *s)
{
  if (!s)
    return;
  for (size_t i = 0; i < s->nbuckets; i++) {
    struct sb__slot_addr *a = s->buckets[i], *next;
    for (; a; a = next) {
      next = a->next;
      free(a); /* only if a slot was never closed */
    }
  }
  free(s->buckets);
  free(s);
}

/* Moves slot to phase to: keeps its address's count, the deadline lists and
 * the address's idle list in step with the phase. */
static void set_phase(struct sb__slot *slot, enum sb__slot_phase to, long long now)
{
  struct sb__slots *s = slot->owner;
  struct sb__slot_addr *a = slot->addr;
  int was = (COUNTED & BIT(slot->phase)) != 0, counts = (COUNTED & BIT(to)) != 0;

  sb_list_remove(&slot->due);
  sb_list_remove(&slot->idle);
  if (was && !counts) {
    a->pending--;
    a->refused = 0;
  } else if (!was && counts) {
    a->pending++;
  }
  slot->phase = to;
  if (WAITING_HEADERS & BIT(to)) {
    slot->deadline = now + SB__SLOT_HEADER_MS;
    sb_list_push_back(&s->headers, &slot->due);
  } else if (to == SB__SLOT_BODY) {
    slot->deadline = now + SB__SLOT_BODY_MS;
    sb_list_push_back(&s->bodies, &slot->due);
  }
  if (to == SB__SLOT_IDLE)
    sb_list_push_back(&a->idle, &slot->idle);
}

/* Shuts the slot's socket down, which libmicrohttpd sees as the client's
 * end and closes: the slot no longer counts. */
static void cut(struct sb__slot *slot, long long now)
{
  shutdown(slot->fd, SHUT_RDWR);
  set_phase(slot, SB__SLOT_CUT, now);
}

int sb__slots_admit(struct sb__slots *s, const struct sockaddr *sa, socklen_t len, int limit)
{
  struct sb__slot_addr *a;
  struct key k;
  char text[INET6_ADDRSTRLEN + 4];

  if (limit <= 0)
    return 1;
  key_of(sa, len, &k);
  if (!(a = find(s, &k, hash_key(&k))) || a->pending < (unsigned)limit)
    return 1;
  if (!sb_list_empty(&a->idle)) {
    struct sb__slot *oldest = sb_list_entry(a->idle.next, struct sb__slot, idle);
    SB_LOG(s->log, SB_LOG_DEBUG,
           "[HTTP] %s holds %d unfinished requests: an idle kept-alive connection makes room",
           key_text(&k, text, sizeof(text)), limit);
    cut(oldest, 0);
    return 1;
  }
  atomic_fetch_add(&s->metrics->http_refused[SB_HTTP_REFUSED_PER_ADDRESS], 1);
  if (!a->refused) {
    a->refused = 1;
    SB_LOG(s->log, SB_LOG_NOTICE,
           "[HTTP] %s holds %d unfinished requests (max_pending_per_address): its new "
           "connections are closed until one ends",
           key_text(&k, text, sizeof(text)), limit);
  }
  return 0;
}

int sb__slot_open(struct sb__slots *s, struct sb__slot *slot, const struct sockaddr *sa,
                  socklen_t len, int fd, long long now)
{
  struct key k;

  key_of(sa, len, &k);
  memset(slot, 0, sizeof(*slot));
  sb_list_init(&slot->due);
  sb_list_init(&slot->idle);
  if (!(slot->addr = addr_get(s, &k)))
    return SB_ENOMEM;
  slot->owner = s;
  slot->fd = fd;
  slot->addr->slots++;
  slot->phase = SB__SLOT_CLOSED; /* not counted yet */
  set_phase(slot, SB__SLOT_HEADERS, now);
  return 0;
}

void sb__slot_move(struct sb__slot *slot, enum sb__slot_phase to, long long now)
{
  if (!slot->owner || slot->phase == to || slot->phase == SB__SLOT_CUT || to == SB__SLOT_CLOSED)
    return;
  if (!(moves[slot->phase] & BIT(to))) {
    SB_LOG(slot->owner->log, SB_LOG_ERROR, "[HTTP] A connection's slot cannot move from %s to %s",
           phase_names[slot->phase], phase_names[to]);
    return;
  }
  set_phase(slot, to, now);
}

void sb__slot_close(struct sb__slot *slot)
{
  if (!slot || !slot->owner)
    return;
  set_phase(slot, SB__SLOT_CLOSED, 0);
  addr_put(slot->owner, slot->addr);
  slot->owner = NULL;
  slot->addr = NULL;
}

/* Cuts the slots of list (ordered by deadline) whose deadline is at or
 * before now. A kept-alive connection that waited idle so long ends as
 * such connections do, uncounted; but then so does one whose next request
 * trickled in that long (libmicrohttpd does not tell them apart). */
static void expire_list(struct sb__slots *s, struct sb_list *list, long long now)
{
  while (!sb_list_empty(list)) {
    struct sb__slot *slot = sb_list_entry(list->next, struct sb__slot, due);
    if (slot->deadline > now)
      break;
    if (slot->phase != SB__SLOT_IDLE) {
      SB_LOG(s->log, SB_LOG_DEBUG, "[HTTP] A request's %s did not come in time: closing it",
             slot->phase == SB__SLOT_BODY ? "body" : "headers");
      atomic_fetch_add(&s->metrics->http_refused[SB_HTTP_REFUSED_DEADLINE], 1);
    }
    cut(slot, now);
  }
}

void sb__slots_expire(struct sb__slots *s, long long now)
{
  expire_list(s, &s->headers, now);
  expire_list(s, &s->bodies, now);
}

long long sb__slots_next(const struct sb__slots *s, long long now)
{
  const struct sb_list *lists[] = {&s->headers, &s->bodies};
  long long next = -1, d;

  for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
    if (sb_list_empty(lists[i]))
      continue;
    d = sb_list_entry(lists[i]->next, struct sb__slot, due)->deadline - now;
    if (d < 0)
      d = 0;
    if (next < 0 || d < next)
      next = d;
  }
  return next;
}
