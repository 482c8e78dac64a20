/* fuzz_hub: the hub driven by a sequence of operations, against a model.
 *
 * Input: six bytes of options (max_connections 1-8, max_connections_per_user
 * 1-4, replay_buffer 0-5, max_queue_bytes 64-2104, max_idle_users 0-3 or,
 * with the high bit, 100, heartbeat_ms 1-64 and with the two high bits of
 * that byte max_memory: none, 2, 4 or 16 KiB, replay_floor 2), then
 * operations, one byte each
 * (modulo 14) plus their arguments:
 * register (user, device, Last-Event-ID: none, empty, an id in the user's
 * buffer, an unknown one, a duplicated one), unregister, publish, broadcast,
 * send to a device, read (1-512 bytes), wait, tick, heartbeat, close, gone
 * (the client hung up), close all, advance the clock, and queries. Users,
 * devices and connections are small pools, so that they meet; the time only
 * goes forward, as a monotonic clock does. A user byte picks one of four
 * users, or with its high bit one of a hundred (so that the user table
 * grows).
 *
 * The model is written from hub.h and the docs: what every connection must
 * have read, byte for byte (the retry line; replay after Last-Event-ID: the
 * newest wanted events after that id that fit in max_queue_bytes, after a
 * resync event when the id is unknown or the replay was cut; live events
 * with targeting over exclusion; heartbeats), its state, its wake-ups (once
 * per wait for new bytes or a close, always on a cut), and the users whose
 * replay buffers are kept (idle users, least recently published-to evicted
 * first past max_idle_users). After every operation the hub must agree with
 * it: bytes read, sb_conn_queued, sb_conn_state, wake-ups, return values,
 * connection counts, gauges and counters. Beyond that:
 * - live traffic never leaves a queue over max_queue_bytes (the connection
 *   is cut instead), and a replay's events fit in what the retry line left;
 * - a connection only ever reads its own user's events (each event's data
 *   names its user);
 * - log lines are printable and single-line, whatever the ids;
 * - the memory the hub counts is what its gauges say; once every connection
 *   is gone no queue bytes are left; with max_memory, the model follows the
 *   hub's evictions (sb_hub_replay_count) and checks them: only the oldest
 *   events of a user go (the bytes replayed after would differ), a connected
 *   user keeps its newest event, connected users lose events only when no
 *   idle user holds any, and after a publish or a register the hub is
 *   within max_memory unless nothing more could go;
 * - no leak, use after free or undefined behaviour, also when the hub is
 *   freed with connections still registered. */
#include <jansson.h>

#include "err.h"
#include "event.h"
#include "fuzz.h"
#include "hub.h"
#include "log.h"
#include "metrics.h"
#include "sse.h"

#define NUSERS 100 /* the first 4 meet often; all of them make the user table grow */
#define NDEVICES 3
#define NSLOTS 10
#define MAX_RING 5
#define RESYNC_TS "TTTTTTTTTTTTTTTTTTTTTTTT" /* where the time of a resync goes */

static const char *users[NUSERS] = {"alice", "bob", "\xc3\xbcser-with-a-long-id-0123456789", "d"};
static char user_names[NUSERS][16];
static const char *const devices[NDEVICES] = {"A", "B", "a-long-device-id:0123456789"};
static const char *const last_ids[] = {"unknown-id", "dup"};

/* Unread bytes a connection must read; any[i] marks a byte of a time. */
struct expect {
  char *bytes;
  unsigned char *any;
  size_t len, cap;
};

struct mconn {
  int used;
  struct sb_conn *c;
  int user, device;
  int state, waiting;
  long long next_hb;
  struct expect q;
  unsigned wakes, want_wakes;
};

struct muser {
  int exists, nconns, idle;
  unsigned long idle_seq;
  struct sb_frame *ring[MAX_RING]; /* oldest first */
  int ring_count;
};

static struct {
  struct sb_hub_opts o;
  struct sb_metrics m;
  struct sb_log log;
  struct sb_hub *hub;
  long long now;
  struct mconn conns[NSLOTS];
  struct muser users[NUSERS];
  int hb[NSLOTS], nhb; /* heartbeat order */
  unsigned long long deliveries, replayed, heartbeats, opened, closed, slow, evicted;
  unsigned long idle_seq;
  unsigned long long evicted_connected;
  unsigned next_id;
  size_t retry_len;
} S;

/* ---- plumbing ---------------------------------------------------------------- */

/* FUZZ_HUB_TRACE=1 in the environment prints each operation (to replay a
 * reproducer by hand). */
static int trace;
#define TRACE(...)                    \
  do {                                \
    if (trace)                        \
      fprintf(stderr, __VA_ARGS__);   \
  } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc;
  (void)argv;
  trace = getenv("FUZZ_HUB_TRACE") != NULL;
  for (int i = 4; i < NUSERS; i++) {
    snprintf(user_names[i], sizeof(user_names[i]), "user-%d", i);
    users[i] = user_names[i];
  }
  return 0;
}

static void on_log(void *ctx, int level, const char *line)
{
  (void)ctx;
  (void)level;
  FUZZ_CHECK(strlen(line) < 1024, "log line too long");
  for (const unsigned char *p = (const unsigned char *)line; *p; p++)
    FUZZ_CHECK(*p >= 0x20 && *p < 0x7f, "unprintable byte 0x%02x in log line: %s", *p, line);
}

static void on_wake(void *ctx)
{
  struct mconn *mc = ctx;
  FUZZ_CHECK(mc->used, "woke a connection that is not registered");
  mc->wakes++;
}

static void expect_put(struct expect *e, const char *bytes, size_t len, const char *ts)
{
  if (e->len + len > e->cap) {
    e->cap = (e->len + len) * 2;
    if (!(e->bytes = realloc(e->bytes, e->cap)) || !(e->any = realloc(e->any, e->cap)))
      abort();
  }
  memcpy(e->bytes + e->len, bytes, len);
  memset(e->any + e->len, 0, len);
  if (ts) {
    const char *at = memmem(bytes, len, ts, strlen(ts));
    FUZZ_CHECK(at, "no time in a resync frame");
    memset(e->any + e->len + (size_t)(at - bytes), 1, strlen(ts));
  }
  e->len += len;
}

static void expect_take(struct expect *e, size_t n)
{
  memmove(e->bytes, e->bytes + n, e->len - n);
  memmove(e->any, e->any + n, e->len - n);
  e->len -= n;
}

static void expect_free(struct expect *e)
{
  free(e->bytes);
  free(e->any);
  memset(e, 0, sizeof(*e));
}

static int wants(const struct sb_frame *f, const char *device)
{
  if (f->target)
    return strcmp(f->target, device) == 0;
  return !f->source || strcmp(f->source, device) != 0;
}

/* ---- the model --------------------------------------------------------------- */

static void model_cut(struct mconn *mc, int slow)
{
  mc->state = SB_CONN_CUT;
  mc->q.len = 0;
  mc->waiting = 0;
  mc->want_wakes++;
  if (slow)
    S.slow++;
}

/* Queues bytes to mc as the hub must; limit: max_queue_bytes applies (live
 * traffic). Returns 1 if queued. */
static int model_enqueue(struct mconn *mc, const char *bytes, size_t len, const char *ts, int limit)
{
  if (mc->state != SB_CONN_OPEN)
    return 0;
  if (limit && mc->q.len + len > S.o.max_queue_bytes) {
    model_cut(mc, 1);
    return 0;
  }
  expect_put(&mc->q, bytes, len, ts);
  if (limit)
    FUZZ_CHECK(mc->q.len <= S.o.max_queue_bytes, "live traffic over max_queue_bytes");
  if (mc->waiting) {
    mc->waiting = 0;
    mc->want_wakes++;
  }
  return 1;
}

static size_t model_deliver(int u, const struct sb_frame *f, const char *only, const char *except)
{
  size_t n = 0;
  for (int i = 0; i < NSLOTS; i++) {
    struct mconn *mc = &S.conns[i];
    const char *dev = devices[mc->device];
    if (!mc->used || mc->user != u || (only && strcmp(dev, only) != 0) ||
        (except && strcmp(dev, except) == 0))
      continue;
    n += (size_t)model_enqueue(mc, f->bytes, f->len, NULL, 1);
  }
  S.deliveries += n;
  return n;
}

static void user_drop(struct muser *mu)
{
  for (int i = 0; i < mu->ring_count; i++)
    sb_frame_unref(mu->ring[i]);
  memset(mu, 0, sizeof(*mu));
}

static int nidle(void)
{
  int n = 0;
  for (int i = 0; i < NUSERS; i++)
    n += S.users[i].idle;
  return n;
}

/* A user without connections keeps its buffer while there is room among the
 * idle users; the least recently used one goes first. */
static void model_settle(struct muser *mu)
{
  if (mu->nconns > 0)
    return;
  if (mu->ring_count == 0) {
    user_drop(mu);
    return;
  }
  if (!mu->idle) {
    mu->idle = 1;
    mu->idle_seq = ++S.idle_seq;
  }
  while ((size_t)nidle() > S.o.max_idle_users) {
    struct muser *old = NULL;
    for (int i = 0; i < NUSERS; i++)
      if (S.users[i].idle && (!old || S.users[i].idle_seq < old->idle_seq))
        old = &S.users[i];
    user_drop(old);
  }
}

static void model_ring_push(struct muser *mu, struct sb_frame *f)
{
  if (mu->ring_count == S.o.replay_buffer) {
    sb_frame_unref(mu->ring[0]);
    memmove(mu->ring, mu->ring + 1, (size_t)(mu->ring_count - 1) * sizeof(mu->ring[0]));
    mu->ring_count--;
  }
  mu->ring[mu->ring_count++] = sb_frame_ref(f);
}

static struct sb_frame *resync_frame(const char *last_id, const char *reason)
{
  json_t *ev = json_pack("{s:s, s:s, s:{s:s, s:s}, s:s}", "channel", "system", "type", "resync",
                         "payload", "lastEventId", last_id, "reason", reason, "timestamp",
                         RESYNC_TS);
  char *json = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
  struct sb_frame *f;

  if (!json)
    abort();
  f = sb_frame_event(NULL, NULL, NULL, json, strlen(json));
  free(json);
  json_decref(ev);
  if (!f)
    abort();
  return f;
}

/* The hub's resync function, as the server's: the event stamped with the
 * time of the call (here the fuzzer's clock, read as wall-clock
 * milliseconds). */
static struct sb_frame *hub_resync(void *ctx, const char *last_id, const char *reason)
{
  (void)ctx;
  return sb_event_resync(last_id, reason,
                         (struct timespec){S.now / 1000, (S.now % 1000) * 1000000});
}

/* Replay after last_id: the newest events device wants after the newest
 * event with that id, as many as fit in what is left of max_queue_bytes
 * less room for a resync, after a resync when the id is unknown or events
 * were left out; so the queue never ends up over max_queue_bytes. */
static void model_replay(struct mconn *mc, const char *last_id)
{
  struct muser *mu = &S.users[mc->user];
  const char *dev = devices[mc->device];
  size_t budget = S.o.max_queue_bytes > mc->q.len ? S.o.max_queue_bytes - mc->q.len : 0, sum = 0;
  int start = 0, found = 0, cut = 0, first = mu->ring_count;

  for (int i = mu->ring_count - 1; i >= 0; i--)
    if (mu->ring[i]->id && strcmp(mu->ring[i]->id, last_id) == 0) {
      found = 1;
      start = i + 1;
      break;
    }
  struct sb_frame *rs = resync_frame(last_id, found ? "replay_truncated" : "unknown_last_event_id");
  budget = budget > rs->len ? budget - rs->len : 0;
  for (int i = mu->ring_count - 1; i >= start; i--) {
    if (!wants(mu->ring[i], dev))
      continue;
    if (sum + mu->ring[i]->len > budget) {
      cut = 1;
      break;
    }
    sum += mu->ring[i]->len;
    first = i;
  }
  FUZZ_CHECK(sum <= budget, "replay over max_queue_bytes");
  if (!found || cut)
    model_enqueue(mc, rs->bytes, rs->len, RESYNC_TS, 0);
  sb_frame_unref(rs);
  for (int i = first; i < mu->ring_count; i++)
    if (wants(mu->ring[i], dev) && model_enqueue(mc, mu->ring[i]->bytes, mu->ring[i]->len, NULL, 0)) {
      S.deliveries++;
      S.replayed++;
    }
}

static void hb_remove(int slot)
{
  for (int i = 0; i < S.nhb; i++)
    if (S.hb[i] == slot) {
      memmove(S.hb + i, S.hb + i + 1, (size_t)(S.nhb - i - 1) * sizeof(S.hb[0]));
      S.nhb--;
      return;
    }
}

static int total_conns(void)
{
  int n = 0;
  for (int i = 0; i < NSLOTS; i++)
    n += S.conns[i].used;
  return n;
}

/* ---- the memory budget ------------------------------------------------------ */

static int holds_idle_events(void)
{
  for (int i = 0; i < NUSERS; i++)
    if (S.users[i].exists && S.users[i].nconns == 0 && S.users[i].ring_count > 0)
      return 1;
  return 0;
}

/* After an operation that may evict (publish, register): the model drops
 * the oldest events the hub evicted, and the order of eviction and the
 * budget are checked. */
static void model_evictions(void)
{
  unsigned long long connected = atomic_load(&S.m.evicted[SB_EVICTED_CONNECTED]);
  unsigned long long total = connected + atomic_load(&S.m.evicted[SB_EVICTED_IDLE]);
  size_t held = sb_hub_memory(S.hub, SB_MEM_REPLAY) + sb_hub_memory(S.hub, SB_MEM_QUEUES);
  unsigned long long dropped = 0;

  for (int i = 0; i < NUSERS; i++) {
    struct muser *mu = &S.users[i];
    size_t n = sb_hub_replay_count(S.hub, users[i]);
    FUZZ_CHECK(n <= (size_t)mu->ring_count, "user %d has %zu events, the model %d", i, n,
               mu->ring_count);
    FUZZ_CHECK(!S.o.max_memory ? n == (size_t)mu->ring_count : 1, "an eviction without a budget");
    FUZZ_CHECK(mu->nconns == 0 || mu->ring_count == 0 || n >= 1,
               "connected user %d lost its newest event", i);
    while ((size_t)mu->ring_count > n) {
      sb_frame_unref(mu->ring[0]);
      memmove(mu->ring, mu->ring + 1, (size_t)(mu->ring_count - 1) * sizeof(mu->ring[0]));
      mu->ring_count--;
      dropped++;
    }
    if (mu->exists && mu->nconns == 0 && mu->ring_count == 0)
      user_drop(mu); /* an idle user goes with its last event */
  }
  FUZZ_CHECK(dropped == total - S.evicted, "%llu events gone, %llu counted as evicted", dropped,
             total - S.evicted);
  S.evicted = total;
  if (connected > S.evicted_connected)
    FUZZ_CHECK(!holds_idle_events(), "a connected user lost events while an idle one held some");
  S.evicted_connected = connected;
  if (S.o.max_memory && held > S.o.max_memory)
    FUZZ_CHECK(!holds_idle_events(), "over max_memory (%zu of %zu) with idle events left", held,
               S.o.max_memory);
}

/* ---- operations -------------------------------------------------------------- */

/* One of the first four users, or with the high bit any of them. */
static int pick_user(uint8_t b)
{
  return (b & 0x80) ? (b & 0x7f) % NUSERS : b % 4;
}

static int pick_slot(uint8_t b, int used)
{
  for (int i = 0; i < NSLOTS; i++) {
    int s = (b + i) % NSLOTS;
    if (S.conns[s].used == used)
      return s;
  }
  return -1;
}

static void op_register(const uint8_t **data, size_t *size)
{
  uint8_t ub = fuzz_byte(data, size), b = fuzz_byte(data, size), l = fuzz_byte(data, size);
  int u = pick_user(ub), d = b % NDEVICES, slot = pick_slot(b, 0), rc, want;
  struct muser *mu = &S.users[u];
  struct mconn *mc;
  const char *last = NULL;

  if (slot < 0)
    return;
  mc = &S.conns[slot];
  switch (l % 5) {
  case 0:
    break;
  case 1:
    last = "";
    break;
  case 2:
    last = mu->ring_count ? mu->ring[(l / 5) % mu->ring_count]->id : NULL;
    last = last ? last : "unknown-id";
    break;
  default:
    last = last_ids[l % 2];
    break;
  }

  rc = sb_hub_register(S.hub, users[u], devices[d], last, S.now, on_wake, mc, &mc->c);
  TRACE("register slot %d user %d device %d last %s: %d\n", slot, u, d, last ? last : "-", rc);
  if (total_conns() >= S.o.max_connections)
    want = SB_ELIMIT;
  else {
    mu->exists = 1;
    want = mu->nconns >= S.o.max_connections_per_user ? SB_EUSERLIMIT : 0;
  }
  FUZZ_CHECK(rc == want, "register returned %d, expected %d", rc, want);
  if (rc) {
    FUZZ_CHECK(!mc->c, "a refused register sets a connection");
    return;
  }
  FUZZ_CHECK(mc->c, "no connection");
  mc->used = 1;
  mc->user = u;
  mc->device = d;
  mc->state = SB_CONN_OPEN;
  mc->waiting = 0;
  mc->wakes = mc->want_wakes = 0;
  mc->next_hb = S.now + S.o.heartbeat_ms;
  S.hb[S.nhb++] = slot;
  if (mu->nconns++ == 0)
    mu->idle = 0;
  S.opened++;
  {
    char retry[48];
    snprintf(retry, sizeof(retry), "retry: %d\n\n", S.o.retry_ms);
    model_enqueue(mc, retry, strlen(retry), NULL, 0);
  }
  if (last && *last)
    model_replay(mc, last);
  model_evictions();
}

static void op_unregister(uint8_t b)
{
  int slot = pick_slot(b, 1);
  struct mconn *mc;
  struct muser *mu;

  if (slot < 0)
    return;
  mc = &S.conns[slot];
  mu = &S.users[mc->user];
  sb_hub_unregister(S.hub, mc->c);
  TRACE("unregister slot %d\n", slot);
  hb_remove(slot);
  expect_free(&mc->q);
  memset(mc, 0, sizeof(*mc));
  S.closed++;
  if (--mu->nconns == 0)
    model_settle(mu);
}

/* Makes an event frame from the input; its data names its user. */
static struct sb_frame *make_frame(int u, const uint8_t **data, size_t *size)
{
  uint8_t b = fuzz_byte(data, size), n = fuzz_byte(data, size) % 80;
  char id[16], body[128];
  const char *idp, *source, *target;
  size_t len;
  struct sb_frame *f;

  switch (b % 4) {
  case 0:
    idp = NULL;
    break;
  case 1:
    idp = "dup";
    break;
  default:
    snprintf(id, sizeof(id), "e%u", ++S.next_id);
    idp = id;
  }
  source = (b / 4) % 3 ? devices[(b / 4) % 3 - 1] : NULL;
  target = (b / 12) % 4 ? devices[(b / 12) % 4 - 1] : NULL;
  len = (size_t)snprintf(body, sizeof(body), "{\"user\":\"%d\",\"x\":\"", u);
  for (uint8_t i = 0; i < n && *size; i++)
    body[len++] = (char)fuzz_byte(data, size); /* any byte, newlines too */
  if (!(f = sb_frame_event(idp, source, target, body, len)))
    abort();
  return f;
}

static void op_publish(const uint8_t **data, size_t *size)
{
  int u = pick_user(fuzz_byte(data, size));
  struct muser *mu = &S.users[u];
  struct sb_frame *f = make_frame(u, data, size);
  size_t n = 0, got;

  if (!mu->exists && S.o.replay_buffer > 0)
    mu->exists = 1;
  if (mu->exists) {
    if (S.o.replay_buffer > 0)
      model_ring_push(mu, f);
    n = model_deliver(u, f, f->target, f->target ? NULL : f->source);
    if (mu->nconns == 0) {
      mu->idle = 0;
      model_settle(mu);
    }
  }
  TRACE("publish user %d id %s source %s target %s %zu bytes\n", u, f->id ? f->id : "-",
        f->source ? f->source : "-", f->target ? f->target : "-", f->len);
  got = sb_hub_publish(S.hub, users[u], f); /* steals our reference */
  TRACE("  queued to %zu\n", got);
  FUZZ_CHECK(got == n, "publish queued to %zu connections, expected %zu", got, n);
  model_evictions();
}

static void op_broadcast(const uint8_t **data, size_t *size, int to_device)
{
  int u = pick_user(fuzz_byte(data, size)), d = fuzz_byte(data, size) % (NDEVICES + 1);
  const char *dev = d ? devices[d - 1] : NULL;
  struct sb_frame *f = make_frame(u, data, size);
  size_t n = 0, got;

  if (to_device && !dev)
    dev = devices[0];
  if (S.users[u].exists)
    n = to_device ? model_deliver(u, f, dev, NULL) : model_deliver(u, f, NULL, dev);
  got = to_device ? sb_hub_send_to_device(S.hub, users[u], dev, f)
                  : sb_hub_broadcast(S.hub, users[u], f, dev);
  TRACE("%s user %d device %s: %zu\n", to_device ? "send_to_device" : "broadcast", u,
        dev ? dev : "-", got);
  FUZZ_CHECK(got == n, "%s queued to %zu connections, expected %zu",
             to_device ? "send_to_device" : "broadcast", got, n);
  sb_frame_unref(f);
}

static void op_read(const uint8_t **data, size_t *size)
{
  int slot = pick_slot(fuzz_byte(data, size), 1);
  size_t max = 1 + (size_t)fuzz_byte(data, size) * 2, n, want;
  struct mconn *mc;
  char *buf;

  if (slot < 0)
    return;
  mc = &S.conns[slot];
  buf = malloc(max);
  if (!buf)
    abort();
  n = sb_conn_read(mc->c, buf, max);
  TRACE("read slot %d max %zu: %zu bytes: %.*s\n", slot, max, n, (int)n, buf);
  want = mc->q.len < max ? mc->q.len : max;
  FUZZ_CHECK(n == want, "read %zu bytes, expected %zu", n, want);
  for (size_t i = 0; i < n; i++) {
    if (mc->q.any[i])
      FUZZ_CHECK(strchr("0123456789-:.TZ", buf[i]) && buf[i], "bad byte in a resync time");
    else
      FUZZ_CHECK(buf[i] == mc->q.bytes[i], "byte %zu read is '%c', expected '%c' (%.*s)", i,
                 buf[i], mc->q.bytes[i], (int)n, buf);
  }
  expect_take(&mc->q, n);
  free(buf);
}

static void op_wait(uint8_t b)
{
  int slot = pick_slot(b, 1);
  struct mconn *mc;

  if (slot < 0)
    return;
  mc = &S.conns[slot];
  /* As the carrier does: only an open stream whose read gave nothing waits. */
  if (mc->state != SB_CONN_OPEN || mc->q.len)
    return;
  sb_conn_wait(mc->c);
  mc->waiting = 1;
}

static void model_heartbeat(struct mconn *mc)
{
  if (mc->state == SB_CONN_OPEN && model_enqueue(mc, SB_SSE_HEARTBEAT, strlen(SB_SSE_HEARTBEAT),
                                                 NULL, 1))
    S.heartbeats++;
}

static void op_tick(uint8_t b)
{
  long long next, want;

  S.now += b;
  next = sb_hub_tick(S.hub, S.now);
  TRACE("tick at %lld: next in %lld\n", S.now, next);
  while (S.nhb && S.conns[S.hb[0]].next_hb <= S.now) {
    int slot = S.hb[0];
    S.conns[slot].next_hb = S.now + S.o.heartbeat_ms;
    memmove(S.hb, S.hb + 1, (size_t)(S.nhb - 1) * sizeof(S.hb[0]));
    S.hb[S.nhb - 1] = slot;
    model_heartbeat(&S.conns[slot]);
  }
  want = S.nhb ? S.conns[S.hb[0]].next_hb - S.now : -1;
  FUZZ_CHECK(next == want, "tick says next in %lld ms, expected %lld", next, want);
  FUZZ_CHECK(next == -1 || next > 0, "tick left a heartbeat due");
}

static void op_heartbeat(uint8_t b)
{
  int slot = pick_slot(b, 1), rc;
  struct mconn *mc;

  if (slot < 0)
    return;
  mc = &S.conns[slot];
  rc = sb_hub_heartbeat(S.hub, mc->c);
  FUZZ_CHECK(rc == (mc->state == SB_CONN_OPEN ? 0 : SB_ESTATE), "heartbeat returned %d", rc);
  model_heartbeat(mc);
}

static void model_close(struct mconn *mc)
{
  if (mc->state == SB_CONN_OPEN)
    mc->state = SB_CONN_CLOSING;
  if (mc->waiting) {
    mc->waiting = 0;
    mc->want_wakes++;
  }
}

static void op_close(uint8_t b, int gone)
{
  int slot = pick_slot(b, 1);
  struct mconn *mc;

  if (slot < 0)
    return;
  mc = &S.conns[slot];
  TRACE("%s slot %d\n", gone ? "gone" : "close", slot);
  if (gone) {
    sb_hub_gone(S.hub, mc->c);
    if (mc->state != SB_CONN_CUT)
      model_cut(mc, 0);
  } else {
    sb_hub_close(S.hub, mc->c);
    model_close(mc);
  }
}

static void op_close_all(void)
{
  sb_hub_close_all(S.hub);
  for (int i = 0; i < S.nhb; i++)
    model_close(&S.conns[S.hb[i]]);
}

static void check_queries(void)
{
  struct sb_metrics_gauges g;
  size_t users_connected = 0, users_kept = 0;

  for (int i = 0; i < NUSERS; i++) {
    struct muser *mu = &S.users[i];
    FUZZ_CHECK(sb_hub_connection_count(S.hub, users[i]) == (size_t)mu->nconns,
               "user %d has %zu connections, expected %d", i,
               sb_hub_connection_count(S.hub, users[i]), mu->nconns);
    FUZZ_CHECK(sb_hub_is_user_connected(S.hub, users[i]) == (mu->nconns > 0), "is_user_connected");
    users_connected += mu->nconns > 0;
    users_kept += mu->exists;
  }
  FUZZ_CHECK(sb_hub_connection_count(S.hub, "nobody") == 0, "an unknown user has connections");
  sb_hub_gauges(S.hub, &g);
  FUZZ_CHECK(g.connections == (size_t)total_conns(), "gauge connections %zu", g.connections);
  FUZZ_CHECK(g.users == users_connected, "gauge users %zu, expected %zu", g.users, users_connected);
  FUZZ_CHECK(g.replay_users == (S.o.replay_buffer > 0 ? users_kept : 0),
             "gauge replay_users %zu, expected %zu", g.replay_users, users_kept);
  for (int i = 0; i < NSLOTS; i++)
    if (S.conns[i].used) {
      FUZZ_CHECK(strcmp(sb_conn_user(S.conns[i].c), users[S.conns[i].user]) == 0, "conn user");
      FUZZ_CHECK(strcmp(sb_conn_device(S.conns[i].c), devices[S.conns[i].device]) == 0,
                 "conn device");
    }
}

/* What must hold after every operation. */
static void check_state(void)
{
  for (int i = 0; i < NSLOTS; i++) {
    struct mconn *mc = &S.conns[i];
    if (!mc->used)
      continue;
    FUZZ_CHECK(sb_conn_state(mc->c) == mc->state, "slot %d is in state %d, expected %d", i,
               sb_conn_state(mc->c), mc->state);
    FUZZ_CHECK(sb_conn_queued(mc->c) == mc->q.len, "slot %d has %zu bytes queued, expected %zu", i,
               sb_conn_queued(mc->c), mc->q.len);
    FUZZ_CHECK(mc->wakes == mc->want_wakes, "slot %d woken %u times, expected %u", i, mc->wakes,
               mc->want_wakes);
  }
#define SAME(counter, model)                                                               \
  FUZZ_CHECK(atomic_load(&S.m.counter) == S.model, #counter " is %llu, expected %llu",    \
             (unsigned long long)atomic_load(&S.m.counter), (unsigned long long)S.model)
  SAME(deliveries, deliveries);
  SAME(replayed, replayed);
  SAME(heartbeats, heartbeats);
  SAME(connections_opened, opened);
  SAME(connections_closed, closed);
  SAME(slow_disconnects, slow);
#undef SAME
  for (int k = 0; k < SB_MEM_KINDS; k++)
    FUZZ_CHECK(atomic_load(&S.m.memory[k]) == sb_hub_memory(S.hub, k),
               "memory gauge %d is %llu, the hub holds %zu", k,
               (unsigned long long)atomic_load(&S.m.memory[k]), sb_hub_memory(S.hub, k));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 6)
    return 0;
  memset(&S, 0, sizeof(S));
  S.o.max_connections = 1 + data[0] % 8;
  S.o.max_connections_per_user = 1 + data[1] % 4;
  S.o.replay_buffer = data[2] % (MAX_RING + 1);
  S.o.max_queue_bytes = 64 + (size_t)data[3] * 8;
  S.o.max_idle_users = (data[4] & 0x80) ? NUSERS : data[4] % 4;
  S.o.heartbeat_ms = 1 + data[5] % 64;
  S.o.max_memory = (size_t[]){0, 2048, 4096, 16384}[data[5] >> 6];
  S.o.replay_floor = 2;
  S.o.retry_ms = 1000;
  S.o.resync = hub_resync;
  S.log = (struct sb_log){on_log, NULL, SB_LOG_DEBUG};
  S.now = 1000000;
  data += 6;
  size -= 6;
  if (!(S.hub = sb_hub_new(&S.o, &S.log, &S.m)))
    return 0;

  while (size) {
    uint8_t op = fuzz_byte(&data, &size);
    switch (op % 14) {
    case 0:
    case 1:
      op_register(&data, &size);
      break;
    case 2:
      op_unregister(fuzz_byte(&data, &size));
      break;
    case 3:
    case 4:
      op_publish(&data, &size);
      break;
    case 5:
      op_broadcast(&data, &size, 0);
      break;
    case 6:
      op_broadcast(&data, &size, 1);
      break;
    case 7:
    case 8:
      op_read(&data, &size);
      break;
    case 9:
      op_wait(fuzz_byte(&data, &size));
      break;
    case 10:
      op_tick(fuzz_byte(&data, &size));
      break;
    case 11:
      op_heartbeat(fuzz_byte(&data, &size));
      break;
    case 12:
      op_close(fuzz_byte(&data, &size), op & 0x80);
      break;
    default:
      if (op & 0x80)
        op_close_all();
      else
        S.now += fuzz_byte(&data, &size);
      check_queries();
      break;
    }
    check_state();
  }

  /* Half the time unregister everything first, else free with them open. */
  if (S.now & 1) {
    for (int i = 0; i < NSLOTS; i++)
      if (S.conns[i].used)
        op_unregister((uint8_t)i);
    FUZZ_CHECK(sb_hub_memory(S.hub, SB_MEM_QUEUES) == 0, "%zu queue bytes left with no connection",
               sb_hub_memory(S.hub, SB_MEM_QUEUES));
  }
  sb_hub_free(S.hub);
  for (int i = 0; i < NSLOTS; i++)
    expect_free(&S.conns[i].q);
  for (int i = 0; i < NUSERS; i++)
    user_drop(&S.users[i]);
  return 0;
}
