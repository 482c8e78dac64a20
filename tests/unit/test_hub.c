/* Unit tests of hub.c: connections, routing, replay, heartbeats and limits.
 *
 * Each test builds a hub over a zeroed struct sb_metrics and a log that
 * records its lines, registers connections whose wake function counts, and
 * reads what each connection got with sb_conn_read(), byte for byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "err.h"
#include "event.h"
#include "hub.h"
#include "sse.h"

#define RETRY "retry: 1000\n\n"
#define HB ": heartbeat\n\n"
#define EV(id, data) "id: " id "\ndata: " data "\n\n"

/* ---- fixture -------------------------------------------------------------- */

#define MAX_LINES 64

struct fx {
  struct sb_hub_opts o;
  struct sb_metrics m;
  struct sb_log log;
  struct sb_hub *hub;
  char lines[MAX_LINES][256];
  int levels[MAX_LINES];
  int nlines;
};

struct waker {
  int wakes;
};

static void record_line(void *ctx, int level, const char *line)
{
  struct fx *f = ctx;
  if (f->nlines < MAX_LINES) {
    snprintf(f->lines[f->nlines], sizeof(f->lines[0]), "%s", line);
    f->levels[f->nlines] = level;
  }
  f->nlines++;
}

static void count_wake(void *ctx)
{
  ((struct waker *)ctx)->wakes++;
}

/* The resync event as the server makes it, stamped with a fixed time: the
 * hub reads no clock. */
static struct sb_frame *make_resync(void *ctx, const char *last_id, const char *reason)
{
  (void)ctx;
  return sb_event_resync(last_id, reason, (struct timespec){1700000000, 123000000});
}

static struct sb_hub_opts default_opts(void)
{
  struct sb_hub_opts o;
  memset(&o, 0, sizeof(o));
  o.resync = make_resync;
  o.max_connections = 100;
  o.max_connections_per_user = 10;
  o.replay_buffer = 8;
  o.heartbeat_ms = 25000;
  o.retry_ms = 1000;
  o.max_queue_bytes = 65536;
  o.max_idle_users = 16;
  return o;
}

/* Allocates a fixture; the hub is made by start() so a test can change the
 * options first. */
static int setup(void **state)
{
  struct fx *f = calloc(1, sizeof(*f));
  if (!f)
    return -1;
  f->o = default_opts();
  f->log.fn = record_line;
  f->log.ctx = f;
  f->log.level = SB_LOG_DEBUG;
  *state = f;
  return 0;
}

static int teardown(void **state)
{
  struct fx *f = *state;
  sb_hub_free(f->hub);
  free(f);
  return 0;
}

static struct sb_hub *start(struct fx *f)
{
  f->hub = sb_hub_new(&f->o, &f->log, &f->m);
  assert_non_null(f->hub);
  return f->hub;
}

static struct sb_conn *reg_at(struct fx *f, const char *user, const char *device,
                              const char *last_id, long long now, struct waker *w)
{
  struct sb_conn *c = NULL;
  int rc = sb_hub_register(f->hub, user, device, last_id, now, count_wake, w, &c);
  if (rc != 0)
    fail_msg("register %s/%s: %s", user, device, sb_strerror(rc));
  assert_non_null(c);
  return c;
}

static struct sb_conn *reg(struct fx *f, const char *user, const char *device, const char *last_id,
                           struct waker *w)
{
  return reg_at(f, user, device, last_id, 0, w);
}

/* Reads everything queued to c into a static buffer and returns it as a
 * string (frames never hold NUL bytes here). */
static const char *drain(struct sb_conn *c)
{
  static char buf[65536];
  size_t n = 0, got;

  while ((got = sb_conn_read(c, buf + n, sizeof(buf) - 1 - n)) > 0)
    n += got;
  buf[n] = '\0';
  assert_int_equal(sb_conn_queued(c), 0);
  return buf;
}

/* Reads the retry line that every new connection gets first. */
static void skip_retry(struct sb_conn *c)
{
  assert_string_equal(drain(c), RETRY);
}

static struct sb_frame *frame(const char *id, const char *source, const char *target,
                              const char *data)
{
  struct sb_frame *fr = sb_frame_event(id, source, target, data, strlen(data));
  assert_non_null(fr);
  return fr;
}

static size_t publish(struct fx *f, const char *user, const char *id, const char *source,
                      const char *target, const char *data)
{
  return sb_hub_publish(f->hub, user, frame(id, source, target, data));
}

/* Broadcasts a fresh frame of data and drops the caller's reference. */
static size_t broadcast(struct fx *f, const char *user, const char *data, const char *except)
{
  struct sb_frame *fr = frame(NULL, NULL, NULL, data);
  size_t n = sb_hub_broadcast(f->hub, user, fr, except);
  sb_frame_unref(fr);
  return n;
}

static unsigned long long load(atomic_ullong *v)
{
  return atomic_load(v);
}

static void assert_gauges(struct fx *f, size_t connections, size_t users, size_t replay_users)
{
  struct sb_metrics_gauges g;
  memset(&g, 0xff, sizeof(g));
  sb_hub_gauges(f->hub, &g);
  assert_int_equal(g.connections, connections);
  assert_int_equal(g.users, users);
  assert_int_equal(g.replay_users, replay_users);
}

/* ---- registration and logs ------------------------------------------------ */

static void test_first_bytes_retry(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};
  struct sb_conn *c;

  start(f);
  c = reg(f, "u1", "d1", NULL, &w);
  assert_int_equal(sb_conn_state(c), SB_CONN_OPEN);
  assert_int_equal(sb_conn_queued(c), strlen(RETRY));
  assert_string_equal(sb_conn_user(c), "u1");
  assert_string_equal(sb_conn_device(c), "d1");
  assert_string_equal(drain(c), RETRY);
  assert_int_equal(sb_conn_read(c, (char[8]){0}, 8), 0);
  assert_int_equal(w.wakes, 0); /* not waiting: no wake for the retry line */
}

static void test_retry_ms_option(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};
  struct sb_conn *c;

  f->o.retry_ms = 2500;
  start(f);
  c = reg(f, "u1", "d1", NULL, &w);
  assert_string_equal(drain(c), "retry: 2500\n\n");
}

static void test_log_lines(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};
  struct sb_conn *a, *b, *b2;

  start(f);
  a = reg(f, "abc123", "dev1", NULL, &w);
  assert_int_equal(f->nlines, 1);
  assert_string_equal(f->lines[0], "[SSE] Connection registered: user=abc123 device=dev1 (1 device)");
  assert_int_equal(f->levels[0], SB_LOG_INFO);

  /* ids over 8 characters are cut to 6 and "..." */
  b = reg(f, "abc123", "def4567890", NULL, &w);
  assert_int_equal(f->nlines, 2);
  assert_string_equal(f->lines[1],
                      "[SSE] Connection registered: user=abc123 device=def456... (2 devices)");
  /* a second tab of the same device: still two devices */
  b2 = reg(f, "abc123", "def4567890", NULL, &w);
  assert_string_equal(f->lines[2],
                      "[SSE] Connection registered: user=abc123 device=def456... (2 devices)");

  sb_hub_unregister(f->hub, b2);
  assert_string_equal(f->lines[3], "[SSE] Connection unregistered: user=abc123 device=def456...");
  assert_int_equal(f->levels[3], SB_LOG_INFO);
  sb_hub_unregister(f->hub, b);
  assert_string_equal(f->lines[4], "[SSE] Connection unregistered: user=abc123 device=def456...");
  sb_hub_unregister(f->hub, a);
  assert_string_equal(f->lines[5], "[SSE] Connection unregistered: user=abc123 device=dev1");
  assert_int_equal(f->nlines, 6);

  /* exactly 8 characters are kept whole; 9 are shortened */
  a = reg(f, "abcdefgh", "123456789", NULL, &w);
  assert_string_equal(f->lines[6],
                      "[SSE] Connection registered: user=abcdefgh device=123456... (1 device)");
  b = reg(f, "user-0123456789abcdef", "x", NULL, &w);
  assert_string_equal(f->lines[7], "[SSE] Connection registered: user=user-0... device=x (1 device)");
  sb_hub_unregister(f->hub, a);
  sb_hub_unregister(f->hub, b);
  assert_string_equal(f->lines[8], "[SSE] Connection unregistered: user=abcdefgh device=123456...");
  assert_string_equal(f->lines[9], "[SSE] Connection unregistered: user=user-0... device=x");
  assert_int_equal(f->nlines, 10);
}

static void test_log_level_filter(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};

  f->log.level = SB_LOG_WARNING;
  start(f);
  sb_hub_unregister(f->hub, reg(f, "u1", "d1", NULL, &w));
  assert_int_equal(f->nlines, 0); /* info lines are below the level */
}

/* ---- routing -------------------------------------------------------------- */

static void test_publish_excludes_source_device(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};
  struct sb_conn *a1, *a2, *b, *c;

  start(f);
  a1 = reg(f, "u1", "A", NULL, &w);
  a2 = reg(f, "u1", "A", NULL, &w); /* a second tab of device A */
  b = reg(f, "u1", "B", NULL, &w);
  c = reg(f, "u1", "C", NULL, &w);
  skip_retry(a1);
  skip_retry(a2);
  skip_retry(b);
  skip_retry(c);

  assert_int_equal(publish(f, "u1", "1", "A", NULL, "{\"n\":1}"), 2);
  assert_string_equal(drain(a1), "");
  assert_string_equal(drain(a2), "");
  assert_string_equal(drain(b), EV("1", "{\"n\":1}"));
  assert_string_equal(drain(c), EV("1", "{\"n\":1}"));

  /* no source: everyone */
  assert_int_equal(publish(f, "u1", "2", NULL, NULL, "{\"n\":2}"), 4);
  assert_string_equal(drain(a1), EV("2", "{\"n\":2}"));
  assert_string_equal(drain(a2), EV("2", "{\"n\":2}"));
  assert_string_equal(drain(b), EV("2", "{\"n\":2}"));
  assert_string_equal(drain(c), EV("2", "{\"n\":2}"));

  /* a source that is not connected excludes nobody */
  assert_int_equal(publish(f, "u1", "3", "Z", NULL, "{\"n\":3}"), 4);
  assert_string_equal(drain(a1), EV("3", "{\"n\":3}"));
  assert_string_equal(drain(c), EV("3", "{\"n\":3}"));

  /* device ids are compared whole: "A" is not "AB" */
  assert_int_equal(publish(f, "u1", "4", "AB", NULL, "x"), 4);
  assert_int_equal(load(&f->m.deliveries), 2 + 4 + 4 + 4);
}

static void test_publish_target_device(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};
  struct sb_conn *a, *b1, *b2, *c;

  start(f);
  a = reg(f, "u1", "A", NULL, &w);
  b1 = reg(f, "u1", "B", NULL, &w);
  b2 = reg(f, "u1", "B", NULL, &w);
  c = reg(f, "u1", "C", NULL, &w);
  skip_retry(a);
  skip_retry(b1);
  skip_retry(b2);
  skip_retry(c);

  assert_int_equal(publish(f, "u1", "t1", NULL, "B", "to-b"), 2);
  assert_string_equal(drain(a), "");
  assert_string_equal(drain(b1), EV("t1", "to-b"));
  assert_string_equal(drain(b2), EV("t1", "to-b"));
  assert_string_equal(drain(c), "");

  /* target wins over source, even when they name the same device */
  assert_int_equal(publish(f, "u1", "t2", "B", "B", "self"), 2);
  assert_string_equal(drain(b1), EV("t2", "self"));
  assert_string_equal(drain(b2), EV("t2", "self"));
  assert_int_equal(publish(f, "u1", "t3", "A", "C", "a-to-c"), 1);
  assert_string_equal(drain(a), "");
  assert_string_equal(drain(c), EV("t3", "a-to-c"));
  assert_string_equal(drain(b1), "");

  /* a target that is not connected: nobody */
  assert_int_equal(publish(f, "u1", "t4", NULL, "Z", "none"), 0);
  assert_string_equal(drain(a), "");
  assert_string_equal(drain(b1), "");
  assert_string_equal(drain(b2), "");
  assert_string_equal(drain(c), "");
}

static void test_no_cross_user_delivery(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};
  struct sb_conn *u1, *u10, *u2;

  start(f);
  u1 = reg(f, "u1", "same-device", NULL, &w);
  u10 = reg(f, "u10", "same-device", NULL, &w);
  u2 = reg(f, "u2", "other", NULL, &w);
  skip_retry(u1);
  skip_retry(u10);
  skip_retry(u2);

  assert_int_equal(publish(f, "u1", "1", NULL, NULL, "for-u1"), 1);
  assert_int_equal(publish(f, "u10", "2", NULL, "same-device", "for-u10"), 1);
  assert_int_equal(publish(f, "nobody", "3", NULL, NULL, "for-nobody"), 0);
  assert_string_equal(drain(u1), EV("1", "for-u1"));
  assert_string_equal(drain(u10), EV("2", "for-u10"));
  assert_string_equal(drain(u2), "");
  assert_int_equal(broadcast(f, "u2", "x", NULL), 1);
  assert_string_equal(drain(u2), "data: x\n\n");
  assert_string_equal(drain(u1), "");
}

static void test_broadcast(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};
  struct sb_conn *a, *b1, *b2, *o;
  struct sb_frame *fr;

  start(f);
  a = reg(f, "u1", "A", NULL, &w);
  b1 = reg(f, "u1", "B", NULL, &w);
  b2 = reg(f, "u1", "B", NULL, &w);
  o = reg(f, "u2", "A", NULL, &w);
  skip_retry(a);
  skip_retry(b1);
  skip_retry(b2);
  skip_retry(o);

  fr = frame("b1", NULL, NULL, "hello");
  assert_int_equal(sb_hub_broadcast(f->hub, "u1", fr, "B"), 1);
  assert_int_equal(fr->refs, 2); /* borrowed: the caller's and a's queue */
  assert_string_equal(drain(a), EV("b1", "hello"));
  assert_int_equal(fr->refs, 1);
  assert_string_equal(drain(b1), "");
  assert_string_equal(drain(b2), "");

  assert_int_equal(sb_hub_broadcast(f->hub, "u1", fr, NULL), 3);
  assert_int_equal(fr->refs, 4);
  assert_string_equal(drain(a), EV("b1", "hello"));
  assert_string_equal(drain(b1), EV("b1", "hello"));
  assert_string_equal(drain(b2), EV("b1", "hello"));
  assert_string_equal(drain(o), "");
  assert_int_equal(fr->refs, 1);

  assert_int_equal(sb_hub_broadcast(f->hub, "nobody", fr, NULL), 0);
  assert_int_equal(fr->refs, 1);
  sb_frame_unref(fr);
  assert_int_equal(load(&f->m.deliveries), 4);

  /* a broadcast is not kept for replay */
  struct sb_conn *late = reg(f, "u1", "C", "b1", &w);
  const char *got = drain(late);
  assert_non_null(strstr(got, "\"type\":\"resync\""));
  assert_null(strstr(got, "hello"));
}

static void test_send_to_device(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};
  struct sb_conn *a, *b1, *b2;
  struct sb_frame *fr;

  start(f);
  a = reg(f, "u1", "A", NULL, &w);
  b1 = reg(f, "u1", "B", NULL, &w);
  b2 = reg(f, "u1", "B", NULL, &w);
  skip_retry(a);
  skip_retry(b1);
  skip_retry(b2);

  fr = frame(NULL, NULL, NULL, "{\"ping\":true}");
  assert_int_equal(sb_hub_send_to_device(f->hub, "u1", "B", fr), 2);
  assert_string_equal(drain(a), "");
  assert_string_equal(drain(b1), "data: {\"ping\":true}\n\n");
  assert_string_equal(drain(b2), "data: {\"ping\":true}\n\n");
  assert_int_equal(sb_hub_send_to_device(f->hub, "u1", "A", fr), 1);
  assert_string_equal(drain(a), "data: {\"ping\":true}\n\n");
  assert_int_equal(sb_hub_send_to_device(f->hub, "u1", "Z", fr), 0);
  assert_int_equal(sb_hub_send_to_device(f->hub, "u2", "A", fr), 0);
  assert_int_equal(fr->refs, 1);
  sb_frame_unref(fr);
  assert_int_equal(load(&f->m.deliveries), 3);
}

static void test_event_order(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};
  struct sb_conn *a, *b;

  start(f);
  a = reg(f, "u1", "A", NULL, &w);
  b = reg(f, "u1", "B", NULL, &w);
  skip_retry(a);
  skip_retry(b);

  publish(f, "u1", "1", NULL, NULL, "one");
  publish(f, "u1", "2", "A", NULL, "two");
  publish(f, "u1", "3", NULL, "A", "three");
  publish(f, "u1", "4", NULL, NULL, "four");
  assert_int_equal(broadcast(f, "u1", "five", NULL), 2);
  publish(f, "u1", "6", "B", NULL, "six");
  assert_string_equal(drain(a), EV("1", "one") EV("3", "three") EV("4", "four") "data: five\n\n"
                                    EV("6", "six"));
  assert_string_equal(drain(b), EV("1", "one") EV("2", "two") EV("4", "four") "data: five\n\n");
}

static void test_frames_are_shared(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};
  struct sb_conn *a, *b, *c;
  struct sb_frame *fr;

  start(f);
  a = reg(f, "u1", "A", NULL, &w);
  b = reg(f, "u1", "B", NULL, &w);
  c = reg(f, "u1", "C", NULL, &w);
  fr = frame("1", "C", NULL, "shared");
  assert_int_equal(sb_hub_publish(f->hub, "u1", fr), 2);
  /* the caller's reference was stolen: replay buffer + two queues */
  assert_int_equal(fr->refs, 3);
  assert_string_equal(drain(a), RETRY EV("1", "shared"));
  assert_int_equal(fr->refs, 2);
  assert_string_equal(drain(b), RETRY EV("1", "shared"));
  assert_int_equal(fr->refs, 1);
  assert_string_equal(drain(c), RETRY);
}

/* ---- replay --------------------------------------------------------------- */

/* Five events of u1: e2 from device B, e4 for device C only, e5 from C.
 * Returns the sum of the connections they were queued to. */
static size_t publish_history(struct fx *f)
{
  return publish(f, "u1", "e1", NULL, NULL, "one") + publish(f, "u1", "e2", "B", NULL, "two") +
         publish(f, "u1", "e3", NULL, NULL, "three") + publish(f, "u1", "e4", NULL, "C", "four") +
         publish(f, "u1", "e5", "C", NULL, "five");
}

static void test_replay_after_last_event_id(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};
  struct sb_conn *keep, *b, *b2, *c, *d, *e;

  start(f);
  keep = reg(f, "u1", "K", NULL, &w);
  /* K is excluded from nothing but targeted by nothing either */
  assert_int_equal(publish_history(f), 4);
  assert_string_equal(drain(keep), RETRY EV("e1", "one") EV("e2", "two") EV("e3", "three")
                                       EV("e5", "five"));
  assert_int_equal(load(&f->m.deliveries), 4);

  /* B: e2 came from B, e4 is for C only */
  b = reg(f, "u1", "B", "e1", &w);
  assert_string_equal(drain(b), RETRY EV("e3", "three") EV("e5", "five"));
  /* a second tab of B, from further back: still without e2 */
  b2 = reg(f, "u1", "B", "e2", &w);
  assert_string_equal(drain(b2), RETRY EV("e3", "three") EV("e5", "five"));
  /* C: gets its targeted e4, not its own e5 */
  c = reg(f, "u1", "C", "e1", &w);
  assert_string_equal(drain(c), RETRY EV("e2", "two") EV("e3", "three") EV("e4", "four"));
  /* up to date: nothing but the retry line */
  d = reg(f, "u1", "D", "e5", &w);
  assert_string_equal(drain(d), RETRY);
  e = reg(f, "u1", "E", "e4", &w);
  assert_string_equal(drain(e), RETRY EV("e5", "five"));
  /* an empty last_event_id is no last_event_id */
  e = reg(f, "u1", "F", "", &w);
  assert_string_equal(drain(e), RETRY);

  assert_int_equal(load(&f->m.replayed), 2 + 2 + 3 + 0 + 1);
  assert_int_equal(load(&f->m.deliveries), 4 + 8);

  /* live events continue after the replay */
  assert_int_equal(publish(f, "u1", "e6", NULL, NULL, "six"), 7);
  assert_string_equal(drain(b), EV("e6", "six"));
  assert_string_equal(drain(c), EV("e6", "six"));
}

/* Checks a resync frame at the start of *p and moves *p past it. */
static void expect_resync_reason(const char **p, const char *last_id, const char *reason)
{
  const char *s = *p, *end;
  json_t *j, *payload;
  json_error_t jerr;

  if (strncmp(s, "data: ", 6) != 0)
    fail_msg("no resync frame at: %.80s", s);
  s += 6;
  end = strstr(s, "\n\n");
  assert_non_null(end);
  assert_null(memchr(s, '\n', (size_t)(end - s))); /* one data line */
  j = json_loadb(s, (size_t)(end - s), 0, &jerr);
  if (!j)
    fail_msg("resync data is not JSON: %s", jerr.text);
  assert_string_equal(json_string_value(json_object_get(j, "channel")), "system");
  assert_string_equal(json_string_value(json_object_get(j, "type")), "resync");
  payload = json_object_get(j, "payload");
  assert_true(json_is_object(payload));
  assert_string_equal(json_string_value(json_object_get(payload, "lastEventId")), last_id);
  assert_string_equal(json_string_value(json_object_get(payload, "reason")), reason);
  assert_true(json_is_string(json_object_get(j, "timestamp")));
  assert_int_equal(sb_event_valid_timestamp(json_string_value(json_object_get(j, "timestamp"))), 1);
  assert_int_equal(json_object_size(j), 4);
  json_decref(j);
  *p = end + 2;
}

static void expect_resync(const char **p, const char *last_id)
{
  expect_resync_reason(p, last_id, "unknown_last_event_id");
}

/* A replay that would not fit in max_queue_bytes keeps the newest events that
 * fit and says so with a resync, so the next live event does not cut the
 * connection. */
#define DATA40 "0123456789012345678901234567890123456789"
#define DATA200 DATA40 DATA40 DATA40 DATA40 DATA40

static void test_replay_truncated_to_queue_limit(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};
  struct sb_conn *c;
  const char *got;
  size_t ev_len = strlen(EV("e1", DATA200));

  /* room for the retry line, two events and the resync (about 130 bytes) */
  f->o.max_queue_bytes = strlen(RETRY) + 2 * ev_len + 160;
  start(f);
  publish(f, "u1", "e0", NULL, NULL, DATA200);
  publish(f, "u1", "e1", NULL, NULL, DATA200);
  publish(f, "u1", "e2", NULL, NULL, DATA200);
  publish(f, "u1", "e3", NULL, NULL, DATA200);

  c = reg(f, "u1", "A", "e0", &w);
  assert_true(sb_conn_queued(c) <= f->o.max_queue_bytes);
  got = drain(c);
  assert_true(strncmp(got, RETRY, strlen(RETRY)) == 0);
  got += strlen(RETRY);
  expect_resync_reason(&got, "e0", "replay_truncated");
  assert_string_equal(got, EV("e2", DATA200) EV("e3", DATA200));
  assert_int_equal(load(&f->m.replayed), 2);

  /* the connection is open and takes the next live event */
  assert_int_equal(publish(f, "u1", "e4", NULL, NULL, "0123456789"), 1);
  assert_int_equal(sb_conn_state(c), SB_CONN_OPEN);
  assert_string_equal(drain(c), EV("e4", "0123456789"));
}

static void test_replay_unknown_id_resyncs(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};
  struct sb_conn *b, *c;
  const char *got;

  start(f);
  assert_int_equal(publish_history(f), 0);

  b = reg(f, "u1", "B", "gone", &w);
  got = drain(b);
  assert_true(strncmp(got, RETRY, strlen(RETRY)) == 0);
  got += strlen(RETRY);
  expect_resync(&got, "gone");
  /* the whole buffer, with B's exclusion and C's targeting */
  assert_string_equal(got, EV("e1", "one") EV("e3", "three") EV("e5", "five"));

  c = reg(f, "u1", "C", "e0", &w);
  got = drain(c) + strlen(RETRY);
  expect_resync(&got, "e0");
  assert_string_equal(got, EV("e1", "one") EV("e2", "two") EV("e3", "three") EV("e4", "four"));

  /* a new user with a last id: a resync and nothing else */
  c = reg(f, "u9", "A", "x", &w);
  got = drain(c) + strlen(RETRY);
  expect_resync(&got, "x");
  assert_string_equal(got, "");

  /* resync frames are not counted as replayed events */
  assert_int_equal(load(&f->m.replayed), 3 + 4);
}

/* The resync event comes from the caller's function, with the time it
 * stamps; the hub reads no clock. Without one, a replay goes without it. */
static void test_resync_from_caller(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};
  struct sb_conn *c;

  start(f);
  c = reg(f, "u1", "A", "x", &w);
  assert_string_equal(drain(c), RETRY "data: {\"channel\":\"system\",\"type\":\"resync\","
                                "\"payload\":{\"lastEventId\":\"x\",\"reason\":"
                                "\"unknown_last_event_id\"},\"timestamp\":"
                                "\"2023-11-14T22:13:20.123Z\"}\n\n");
  sb_hub_free(f->hub);
  f->o.resync = NULL;
  start(f);
  assert_int_equal(publish_history(f), 0);
  c = reg(f, "u1", "A", "gone", &w);
  assert_string_equal(drain(c), RETRY EV("e1", "one") EV("e2", "two") EV("e3", "three")
                                    EV("e5", "five"));
}

/* With an origin id, a stream's first bytes carry its resume point: the
 * newest id of its user's buffer, or the origin when the buffer is empty. A
 * stream that comes back with the origin gets the whole buffer with no
 * resync while the buffer holds every event since the start, and a resync
 * once events were lost (ring overflow, or users with events dropped). */
static void test_resume_point(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};
  struct sb_conn *c;
  const char *got;
  char user[16];

  f->o.origin_id = "1700000000000-0";
  f->o.replay_buffer = 3;
  start(f);
  c = reg(f, "u1", "A", NULL, &w);
  assert_string_equal(drain(c), "retry: 1000\nid: 1700000000000-0\n\n");
  sb_hub_unregister(f->hub, c);

  /* back with the origin: everything since, excluded ones left out */
  publish(f, "u1", "e1", NULL, NULL, "one");
  publish(f, "u1", "e2", "A", NULL, "two");
  c = reg(f, "u1", "A", "1700000000000-0", &w);
  assert_string_equal(drain(c), "retry: 1000\nid: e2\n\n" EV("e1", "one"));
  sb_hub_unregister(f->hub, c);
  c = reg(f, "u1", "B", NULL, &w);
  assert_string_equal(drain(c), "retry: 1000\nid: e2\n\n");
  sb_hub_unregister(f->hub, c);

  /* the ring overflowed: the origin cannot be placed any more */
  publish(f, "u1", "e3", NULL, NULL, "three");
  publish(f, "u1", "e4", NULL, NULL, "four");
  c = reg(f, "u1", "B", "1700000000000-0", &w);
  got = drain(c);
  assert_int_equal(strncmp(got, "retry: 1000\nid: e4\n\n", 20), 0);
  got += 20;
  expect_resync_reason(&got, "1700000000000-0", "unknown_last_event_id");
  assert_string_equal(got, EV("e2", "two") EV("e3", "three") EV("e4", "four"));
  sb_hub_unregister(f->hub, c);

  /* idle users with events were dropped: a new user may have lost events */
  for (int i = 0; i < 20; i++) {
    snprintf(user, sizeof(user), "idle%d", i);
    publish(f, user, "x", NULL, NULL, "x");
  }
  publish(f, "fresh", "f1", NULL, NULL, "one");
  c = reg(f, "fresh", "A", "1700000000000-0", &w);
  got = drain(c);
  assert_int_equal(strncmp(got, "retry: 1000\nid: f1\n\n", 20), 0);
  got += 20;
  expect_resync_reason(&got, "1700000000000-0", "unknown_last_event_id");
  assert_string_equal(got, EV("f1", "one"));
}

static void test_replay_buffer_capacity(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};
  struct sb_conn *c;
  const char *got;

  f->o.replay_buffer = 3;
  start(f);
  publish(f, "u1", "e1", NULL, NULL, "one");
  publish(f, "u1", "e2", NULL, NULL, "two");
  publish(f, "u1", "e3", NULL, NULL, "three");
  publish(f, "u1", "e4", NULL, NULL, "four");
  publish(f, "u1", "e5", NULL, NULL, "five");

  /* e1 and e2 fell out: e1 is unknown now */
  c = reg(f, "u1", "A", "e1", &w);
  got = drain(c) + strlen(RETRY);
  expect_resync(&got, "e1");
  assert_string_equal(got, EV("e3", "three") EV("e4", "four") EV("e5", "five"));
  c = reg(f, "u1", "B", "e2", &w);
  got = drain(c) + strlen(RETRY);
  expect_resync(&got, "e2");
  assert_string_equal(got, EV("e3", "three") EV("e4", "four") EV("e5", "five"));
  /* the oldest kept one is still found */
  c = reg(f, "u1", "C", "e3", &w);
  assert_string_equal(drain(c), RETRY EV("e4", "four") EV("e5", "five"));

  /* one more pushes out e3 */
  publish(f, "u1", "e6", NULL, NULL, "six");
  c = reg(f, "u1", "D", "e4", &w);
  assert_string_equal(drain(c), RETRY EV("e5", "five") EV("e6", "six"));
  c = reg(f, "u1", "E", "e3", &w);
  got = drain(c) + strlen(RETRY);
  expect_resync(&got, "e3");
  assert_string_equal(got, EV("e4", "four") EV("e5", "five") EV("e6", "six"));
}

static void test_replay_buffer_zero(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};
  struct sb_conn *a, *b;
  const char *got;

  f->o.replay_buffer = 0;
  start(f);
  /* no one listening and nothing kept */
  assert_int_equal(publish(f, "u1", "e1", NULL, NULL, "one"), 0);
  assert_gauges(f, 0, 0, 0);

  a = reg(f, "u1", "A", NULL, &w);
  skip_retry(a);
  assert_int_equal(publish(f, "u1", "e2", NULL, NULL, "two"), 1);
  assert_string_equal(drain(a), EV("e2", "two"));

  /* nothing to replay: a resync only */
  b = reg(f, "u1", "B", "e2", &w);
  got = drain(b) + strlen(RETRY);
  expect_resync(&got, "e2");
  assert_string_equal(got, "");
  assert_int_equal(load(&f->m.replayed), 0);
  assert_gauges(f, 2, 1, 0);

  sb_hub_unregister(f->hub, a);
  sb_hub_unregister(f->hub, b);
  assert_gauges(f, 0, 0, 0);
}

static void test_idle_user_keeps_replay(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};
  struct sb_conn *a;

  start(f);
  a = reg(f, "u1", "A", NULL, &w);
  publish(f, "u1", "e1", NULL, NULL, "one");
  publish(f, "u1", "e2", NULL, NULL, "two");
  assert_string_equal(drain(a), RETRY EV("e1", "one") EV("e2", "two"));
  sb_hub_unregister(f->hub, a);
  assert_int_equal(sb_hub_connection_count(f->hub, "u1"), 0);
  assert_int_equal(sb_hub_is_user_connected(f->hub, "u1"), 0);
  assert_gauges(f, 0, 0, 1);

  /* published while no one is connected: kept too */
  assert_int_equal(publish(f, "u1", "e3", NULL, NULL, "three"), 0);
  assert_int_equal(publish(f, "u1", "e4", "A", NULL, "four"), 0);

  a = reg(f, "u1", "A", "e2", &w);
  assert_string_equal(drain(a), RETRY EV("e3", "three"));
  assert_gauges(f, 1, 1, 1);
  sb_hub_unregister(f->hub, a);

  a = reg(f, "u1", "B", "e1", &w);
  assert_string_equal(drain(a), RETRY EV("e2", "two") EV("e3", "three") EV("e4", "four"));
  sb_hub_unregister(f->hub, a);

  /* a user never connected gets a buffer by being published to */
  publish(f, "u2", "x1", NULL, NULL, "first");
  assert_gauges(f, 0, 0, 2);
  a = reg(f, "u2", "A", "x0", &w);
  const char *got = drain(a) + strlen(RETRY);
  expect_resync(&got, "x0");
  assert_string_equal(got, EV("x1", "first"));
}

static void test_idle_users_bounded(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};
  struct sb_conn *c;
  const char *got;

  f->o.max_idle_users = 2;
  start(f);
  publish(f, "u1", "a1", NULL, NULL, "A");
  publish(f, "u2", "b1", NULL, NULL, "B");
  publish(f, "u1", "a2", NULL, NULL, "AA"); /* u1 is now the most recent */
  publish(f, "u3", "c1", NULL, NULL, "C");  /* pushes out u2, the least recent */
  assert_gauges(f, 0, 0, 2);

  c = reg(f, "u1", "d", "a1", &w);
  assert_string_equal(drain(c), RETRY EV("a2", "AA"));
  sb_hub_unregister(f->hub, c);
  c = reg(f, "u3", "d", "c0", &w);
  got = drain(c) + strlen(RETRY);
  expect_resync(&got, "c0");
  assert_string_equal(got, EV("c1", "C"));
  sb_hub_unregister(f->hub, c);
  c = reg(f, "u2", "d", "b1", &w);
  got = drain(c) + strlen(RETRY);
  expect_resync(&got, "b1");
  assert_string_equal(got, "");
}

/* ---- counts and limits ---------------------------------------------------- */

static void test_counts_and_gauges(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};
  struct sb_conn *a1, *a2, *b, *c;

  start(f);
  assert_int_equal(sb_hub_connection_count(f->hub, "u1"), 0);
  assert_int_equal(sb_hub_is_user_connected(f->hub, "u1"), 0);
  assert_gauges(f, 0, 0, 0);

  a1 = reg(f, "u1", "A", NULL, &w);
  a2 = reg(f, "u1", "A", NULL, &w);
  b = reg(f, "u1", "B", NULL, &w);
  c = reg(f, "u2", "A", NULL, &w);
  assert_int_equal(sb_hub_connection_count(f->hub, "u1"), 3);
  assert_int_equal(sb_hub_connection_count(f->hub, "u2"), 1);
  assert_int_equal(sb_hub_connection_count(f->hub, "u3"), 0);
  assert_int_equal(sb_hub_is_user_connected(f->hub, "u1"), 1);
  assert_int_equal(sb_hub_is_user_connected(f->hub, "u2"), 1);
  assert_int_equal(sb_hub_is_user_connected(f->hub, "u3"), 0);
  assert_gauges(f, 4, 2, 2);
  assert_int_equal(load(&f->m.connections_opened), 4);

  sb_hub_unregister(f->hub, a1);
  assert_int_equal(sb_hub_connection_count(f->hub, "u1"), 2);
  sb_hub_unregister(f->hub, b);
  sb_hub_unregister(f->hub, a2);
  assert_int_equal(sb_hub_connection_count(f->hub, "u1"), 0);
  assert_int_equal(sb_hub_is_user_connected(f->hub, "u1"), 0);
  /* u1 had no events: nothing is kept of it */
  assert_gauges(f, 1, 1, 1);
  sb_hub_unregister(f->hub, c);
  assert_gauges(f, 0, 0, 0);
  assert_int_equal(load(&f->m.connections_closed), 4);
  sb_hub_unregister(f->hub, NULL);
  assert_int_equal(load(&f->m.connections_closed), 4);
}

static void test_max_connections(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};
  struct sb_conn *c[3], *x = (struct sb_conn *)&w;

  f->o.max_connections = 3;
  start(f);
  c[0] = reg(f, "u1", "A", NULL, &w);
  c[1] = reg(f, "u2", "A", NULL, &w);
  c[2] = reg(f, "u3", "A", NULL, &w);
  assert_int_equal(sb_hub_register(f->hub, "u4", "A", NULL, 0, count_wake, &w, &x), SB_ELIMIT);
  assert_null(x);
  assert_int_equal(sb_hub_register(f->hub, "u1", "B", NULL, 0, count_wake, &w, &x), SB_ELIMIT);
  assert_null(x);
  assert_gauges(f, 3, 3, 3);
  assert_int_equal(sb_hub_connection_count(f->hub, "u4"), 0);
  assert_int_equal(load(&f->m.connections_opened), 3);
  /* no registration line for a refused connection */
  assert_int_equal(f->nlines, 3);

  sb_hub_unregister(f->hub, c[1]);
  c[1] = reg(f, "u4", "A", NULL, &w);
  assert_int_equal(sb_hub_connection_count(f->hub, "u4"), 1);
  assert_int_equal(sb_hub_connection_count(f->hub, "u2"), 0);
}

static void test_max_connections_per_user(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};
  struct sb_conn *a, *b, *x = (struct sb_conn *)&w;

  f->o.max_connections_per_user = 2;
  start(f);
  a = reg(f, "u1", "A", NULL, &w);
  b = reg(f, "u1", "A", NULL, &w);
  assert_int_equal(sb_hub_register(f->hub, "u1", "A", NULL, 0, count_wake, &w, &x), SB_EUSERLIMIT);
  assert_null(x);
  assert_int_equal(sb_hub_register(f->hub, "u1", "B", NULL, 0, count_wake, &w, &x), SB_EUSERLIMIT);
  assert_null(x);
  assert_int_equal(sb_hub_connection_count(f->hub, "u1"), 2);
  /* other users are not limited by u1 */
  reg(f, "u2", "A", NULL, &w);
  reg(f, "u2", "B", NULL, &w);
  assert_gauges(f, 4, 2, 2);
  /* the refused one gets nothing published to u1 */
  assert_int_equal(publish(f, "u1", "1", NULL, NULL, "x"), 2);

  sb_hub_unregister(f->hub, a);
  a = reg(f, "u1", "B", NULL, &w);
  assert_int_equal(sb_hub_connection_count(f->hub, "u1"), 2);
  (void)b;
}

/* ---- wake-ups ------------------------------------------------------------- */

static void test_wake(void **state)
{
  struct fx *f = *state;
  struct waker wa = {0}, wb = {0};
  struct sb_conn *a, *b;
  char buf[256];

  start(f);
  a = reg(f, "u1", "A", NULL, &wa);
  b = reg(f, "u1", "B", NULL, &wb);
  skip_retry(a);
  skip_retry(b);

  /* not waiting: queued without a wake */
  publish(f, "u1", "1", NULL, NULL, "x");
  assert_int_equal(wa.wakes, 0);
  assert_int_equal(wb.wakes, 0);
  drain(a);
  drain(b);

  /* waiting: one wake for the first frame, none for the next ones */
  assert_int_equal(sb_conn_read(a, buf, sizeof(buf)), 0);
  sb_conn_wait(a);
  publish(f, "u1", "2", NULL, NULL, "x");
  assert_int_equal(wa.wakes, 1);
  assert_int_equal(wb.wakes, 0);
  publish(f, "u1", "3", NULL, NULL, "x");
  assert_int_equal(wa.wakes, 1);
  assert_string_equal(drain(a), EV("2", "x") EV("3", "x"));

  /* an event a is excluded from does not wake it */
  sb_conn_wait(a);
  publish(f, "u1", "4", "A", NULL, "x");
  publish(f, "u1", "5", NULL, "B", "x");
  {
    struct sb_frame *fr = frame(NULL, NULL, NULL, "y");
    assert_int_equal(sb_hub_send_to_device(f->hub, "u1", "B", fr), 1);
    sb_frame_unref(fr);
  }
  assert_int_equal(wa.wakes, 1);
  /* but a broadcast does, and a heartbeat, once */
  assert_int_equal(broadcast(f, "u1", "z", "B"), 1);
  assert_int_equal(wa.wakes, 2);
  sb_conn_wait(a);
  assert_int_equal(sb_hub_heartbeat(f->hub, a), 0);
  assert_int_equal(wa.wakes, 3);
  assert_int_equal(sb_hub_heartbeat(f->hub, a), 0);
  assert_int_equal(wa.wakes, 3);

  /* closing wakes a waiting connection */
  sb_conn_wait(a);
  sb_hub_close(f->hub, a);
  assert_int_equal(wa.wakes, 4);
  /* and not one that is not waiting */
  sb_hub_close(f->hub, b);
  assert_int_equal(wb.wakes, 0);
  drain(b);
}

/* ---- heartbeats ----------------------------------------------------------- */

static void test_tick_heartbeats(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};
  struct sb_conn *a, *b;

  start(f);
  assert_int_equal(sb_hub_tick(f->hub, 0), -1);
  a = reg_at(f, "u1", "A", NULL, 0, &w);
  b = reg_at(f, "u2", "B", NULL, 10000, &w);
  skip_retry(a);
  skip_retry(b);

  assert_int_equal(sb_hub_tick(f->hub, 10000), 15000);
  assert_int_equal(sb_hub_tick(f->hub, 24999), 1);
  assert_string_equal(drain(a), "");
  assert_string_equal(drain(b), "");

  assert_int_equal(sb_hub_tick(f->hub, 25000), 10000); /* a is due; b at 35000 */
  assert_string_equal(drain(a), HB);
  assert_string_equal(drain(b), "");
  assert_int_equal(load(&f->m.heartbeats), 1);

  assert_int_equal(sb_hub_tick(f->hub, 35000), 15000); /* b is due; a at 50000 */
  assert_string_equal(drain(a), "");
  assert_string_equal(drain(b), HB);
  assert_int_equal(load(&f->m.heartbeats), 2);

  /* late tick: both due, one heartbeat each, not one per missed interval */
  assert_int_equal(sb_hub_tick(f->hub, 100000), 25000);
  assert_string_equal(drain(a), HB);
  assert_string_equal(drain(b), HB);
  assert_int_equal(load(&f->m.heartbeats), 4);

  /* a waiting connection is woken by its heartbeat */
  sb_conn_wait(a);
  assert_int_equal(sb_hub_tick(f->hub, 125000), 25000);
  assert_int_equal(w.wakes, 1);
  assert_string_equal(drain(a), HB);
  assert_string_equal(drain(b), HB);

  sb_hub_unregister(f->hub, a);
  assert_int_equal(sb_hub_tick(f->hub, 130000), 20000);
  sb_hub_unregister(f->hub, b);
  assert_int_equal(sb_hub_tick(f->hub, 130000), -1);
  assert_int_equal(load(&f->m.heartbeats), 6);
}

static void test_heartbeat_on_closing(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};
  struct sb_conn *a;

  start(f);
  a = reg(f, "u1", "A", NULL, &w);
  sb_hub_close(f->hub, a);
  assert_int_equal(sb_hub_heartbeat(f->hub, a), SB_ESTATE);
  assert_int_equal(sb_hub_tick(f->hub, 25000), 25000);
  assert_string_equal(drain(a), RETRY);
  assert_int_equal(load(&f->m.heartbeats), 0);
}

/* ---- slow connections, closing, reading ----------------------------------- */


static void test_slow_connection_cut(void **state)
{
  struct fx *f = *state;
  struct waker ws = {0}, wf = {0};
  struct sb_conn *slow, *fast, *other;
  char buf[64];

  /* the retry line (13) and three 55-byte events fit in 200; a fourth does not */
  f->o.max_queue_bytes = 200;
  start(f);
  slow = reg(f, "u1", "slow", NULL, &ws);
  fast = reg(f, "u1", "fast", NULL, &wf);
  other = reg(f, "u2", "slow", NULL, &wf);
  skip_retry(fast);
  skip_retry(other);
  f->nlines = 0;

  assert_int_equal(publish(f, "u1", "e1", NULL, NULL, DATA40), 2);
  assert_int_equal(publish(f, "u1", "e2", NULL, NULL, DATA40), 2);
  assert_int_equal(publish(f, "u1", "e3", NULL, NULL, DATA40), 2);
  assert_int_equal(sb_conn_queued(slow), 13 + 3 * 55);
  assert_int_equal(sb_conn_state(slow), SB_CONN_OPEN);
  assert_string_equal(drain(fast), EV("e1", DATA40) EV("e2", DATA40) EV("e3", DATA40));

  sb_conn_wait(slow);
  assert_int_equal(publish(f, "u1", "e4", NULL, NULL, DATA40), 1);
  assert_int_equal(sb_conn_state(slow), SB_CONN_CUT);
  assert_int_equal(sb_conn_queued(slow), 0);
  assert_int_equal(sb_conn_read(slow, buf, sizeof(buf)), 0);
  assert_int_equal(ws.wakes, 1); /* woken so the server ends the stream */
  assert_int_equal(load(&f->m.slow_disconnects), 1);
  assert_int_equal(f->nlines, 1);
  assert_string_equal(f->lines[0],
                      "[SSE] Connection cut off: user=u1 device=slow (queue over max_queue_bytes)");
  assert_int_equal(f->levels[0], SB_LOG_WARNING);

  /* the others are unaffected */
  assert_int_equal(sb_conn_state(fast), SB_CONN_OPEN);
  assert_string_equal(drain(fast), EV("e4", DATA40));

  assert_int_equal(publish(f, "u1", "e5", NULL, NULL, "x"), 1);
  assert_string_equal(drain(fast), EV("e5", "x"));
  assert_int_equal(sb_conn_read(slow, buf, sizeof(buf)), 0);
  assert_int_equal(publish(f, "u2", "o1", NULL, NULL, "y"), 1);
  assert_string_equal(drain(other), EV("o1", "y"));
  assert_int_equal(sb_conn_state(other), SB_CONN_OPEN);
  assert_int_equal(load(&f->m.slow_disconnects), 1);
  assert_int_equal(load(&f->m.deliveries), 3 * 2 + 1 + 1 + 1);

  /* a cut connection gets no heartbeat and is counted until unregistered */
  assert_int_equal(sb_hub_heartbeat(f->hub, slow), SB_ESTATE);
  assert_int_equal(sb_hub_connection_count(f->hub, "u1"), 2);
  sb_hub_close(f->hub, slow);
  assert_int_equal(sb_conn_state(slow), SB_CONN_CUT);
  sb_hub_unregister(f->hub, slow);
  assert_int_equal(sb_hub_connection_count(f->hub, "u1"), 1);
}

/* A cut wakes the carrier even when the connection was not waiting: a client
 * that stopped reading is never read from again, so it must be dropped now. */
static void test_cut_wakes_when_not_waiting(void **state)
{
  struct fx *f = *state;
  struct waker wn = {0};
  struct sb_conn *stuck;

  f->o.max_queue_bytes = 200;
  start(f);
  stuck = reg(f, "u3", "stuck", NULL, &wn);
  for (int i = 0; i < 3; i++)
    publish(f, "u3", "s", NULL, NULL, DATA40);
  assert_int_equal(sb_conn_state(stuck), SB_CONN_OPEN);
  assert_int_equal(wn.wakes, 0);
  publish(f, "u3", "s", NULL, NULL, DATA40);
  assert_int_equal(sb_conn_state(stuck), SB_CONN_CUT);
  assert_int_equal(wn.wakes, 1);
  sb_hub_gone(f->hub, stuck); /* already cut: no second wake */
  assert_int_equal(wn.wakes, 1);
  assert_int_equal(load(&f->m.slow_disconnects), 1);
}

static void test_queue_limit_reading_keeps_open(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};
  struct sb_conn *c;

  f->o.max_queue_bytes = 200;
  start(f);
  c = reg(f, "u1", "A", NULL, &w);
  skip_retry(c);
  /* a reader that keeps up is never cut, however much passes */
  for (int i = 0; i < 50; i++) {
    assert_int_equal(publish(f, "u1", "e", NULL, NULL, DATA40 DATA40), 1);
    assert_string_equal(drain(c), EV("e", DATA40 DATA40));
  }
  assert_int_equal(sb_conn_state(c), SB_CONN_OPEN);
  assert_int_equal(load(&f->m.slow_disconnects), 0);
  /* exactly at the limit is allowed: 2 x 94 = 188, + 12 = 200 */
  assert_int_equal(publish(f, "u1", "e", NULL, NULL, DATA40 DATA40), 1);
  assert_int_equal(publish(f, "u1", "e", NULL, NULL, DATA40 DATA40), 1);
  assert_int_equal(sb_conn_queued(c), 188);
  assert_int_equal(publish(f, "u1", NULL, NULL, NULL, "abcd"), 1);
  assert_int_equal(sb_conn_queued(c), 200);
  assert_int_equal(sb_conn_state(c), SB_CONN_OPEN);
  /* one byte more is too many */
  assert_int_equal(publish(f, "u1", NULL, NULL, NULL, ""), 0);
  assert_int_equal(sb_conn_state(c), SB_CONN_CUT);
  assert_int_equal(sb_conn_queued(c), 0);
  assert_int_equal(load(&f->m.slow_disconnects), 1);
}

static void test_close_keeps_queued_bytes(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};
  struct sb_conn *a, *b;

  start(f);
  a = reg(f, "u1", "A", NULL, &w);
  b = reg(f, "u1", "B", NULL, &w);
  publish(f, "u1", "1", NULL, NULL, "before");
  sb_conn_wait(a);
  sb_hub_close(f->hub, a);
  assert_int_equal(sb_conn_state(a), SB_CONN_CLOSING);
  assert_int_equal(w.wakes, 1);
  /* nothing more is queued to a closing connection */
  assert_int_equal(publish(f, "u1", "2", NULL, NULL, "after"), 1);
  assert_string_equal(drain(a), RETRY EV("1", "before"));
  assert_string_equal(drain(b), RETRY EV("1", "before") EV("2", "after"));
  assert_int_equal(sb_conn_state(a), SB_CONN_CLOSING);
  sb_hub_close(f->hub, a); /* twice is harmless */
  assert_int_equal(sb_conn_state(a), SB_CONN_CLOSING);

  sb_hub_close_all(f->hub);
  assert_int_equal(sb_conn_state(b), SB_CONN_CLOSING);
  assert_int_equal(publish(f, "u1", "3", NULL, NULL, "late"), 0);
  assert_string_equal(drain(b), "");
}

static void test_partial_reads(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};
  struct sb_conn *c;
  char buf[64];
  char all[512];
  size_t n, at = 0;
  const char *want = RETRY EV("1", "first") EV("2", "second") HB;

  start(f);
  c = reg(f, "u1", "A", NULL, &w);
  publish(f, "u1", "1", NULL, NULL, "first");
  publish(f, "u1", "2", NULL, NULL, "second");
  sb_hub_heartbeat(f->hub, c);
  assert_int_equal(sb_conn_queued(c), strlen(want));

  /* 5 bytes at a time, across frame boundaries */
  assert_int_equal(sb_conn_read(c, buf, 5), 5);
  assert_memory_equal(buf, "retry", 5);
  assert_int_equal(sb_conn_queued(c), strlen(want) - 5);
  assert_int_equal(sb_conn_read(c, buf, 5), 5);
  assert_memory_equal(buf, ": 100", 5);
  assert_int_equal(sb_conn_read(c, buf, 5), 5);
  assert_memory_equal(buf, "0\n\nid", 5); /* the end of one frame and the start of the next */
  at = 0;
  memcpy(all, "retry: 1000\n\nid", 15);
  at = 15;
  while ((n = sb_conn_read(c, buf, 7)) > 0) {
    assert_true(n <= 7);
    memcpy(all + at, buf, n);
    at += n;
  }
  assert_int_equal(at, strlen(want));
  assert_memory_equal(all, want, at);
  assert_int_equal(sb_conn_queued(c), 0);

  /* a read of 0 bytes takes nothing */
  publish(f, "u1", "3", NULL, NULL, "third");
  assert_int_equal(sb_conn_read(c, buf, 0), 0);
  assert_int_equal(sb_conn_queued(c), strlen(EV("3", "third")));
  /* one byte at a time */
  at = 0;
  while ((n = sb_conn_read(c, buf, 1)) > 0) {
    assert_int_equal(n, 1);
    all[at++] = buf[0];
  }
  assert_int_equal(at, strlen(EV("3", "third")));
  assert_memory_equal(all, EV("3", "third"), at);

  /* a large read batches whole frames */
  publish(f, "u1", "4", NULL, NULL, "a");
  publish(f, "u1", "5", NULL, NULL, "b");
  n = sb_conn_read(c, all, sizeof(all));
  assert_int_equal(n, strlen(EV("4", "a") EV("5", "b")));
  assert_memory_equal(all, EV("4", "a") EV("5", "b"), n);
}

static void test_many_frames_queue_growth(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};
  struct sb_conn *c;
  char want[8192], id[16], data[16];
  size_t at = 0;

  start(f);
  c = reg(f, "u1", "A", NULL, &w);
  at += (size_t)snprintf(want + at, sizeof(want) - at, RETRY);
  /* more than the queue's first capacity, read in between to wrap it around */
  for (int i = 0; i < 40; i++) {
    snprintf(id, sizeof(id), "%d", i);
    snprintf(data, sizeof(data), "d%d", i);
    publish(f, "u1", id, NULL, NULL, data);
    at += (size_t)snprintf(want + at, sizeof(want) - at, "id: %s\ndata: %s\n\n", id, data);
    if (i == 5) {
      char buf[64];
      size_t n = sb_conn_read(c, buf, 30);
      assert_int_equal(n, 30);
      assert_memory_equal(buf, want, 30);
      memmove(want, want + 30, at - 30);
      at -= 30;
    }
  }
  want[at] = '\0';
  assert_string_equal(drain(c), want);
  assert_int_equal(load(&f->m.deliveries), 40);
}

/* ---- metrics -------------------------------------------------------------- */

static void test_metrics_counted(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};
  struct sb_conn *a, *b, *c;
  struct sb_frame *fr;

  start(f);
  a = reg(f, "u1", "A", NULL, &w);
  b = reg(f, "u1", "B", NULL, &w);
  publish(f, "u1", "1", NULL, NULL, "x");      /* 2 */
  publish(f, "u1", "2", "A", NULL, "x");       /* 1 */
  publish(f, "u1", "3", NULL, "A", "x");       /* 1 */
  publish(f, "u2", "4", NULL, NULL, "x");      /* 0 */
  fr = frame(NULL, NULL, NULL, "b");
  sb_hub_broadcast(f->hub, "u1", fr, NULL);    /* 2 */
  sb_hub_send_to_device(f->hub, "u1", "B", fr); /* 1 */
  sb_frame_unref(fr);
  assert_int_equal(load(&f->m.deliveries), 7);
  assert_int_equal(load(&f->m.replayed), 0);

  c = reg(f, "u1", "C", "1", &w);              /* replays 2 and 3? 3 is for A: only 2 */
  assert_string_equal(drain(c), RETRY EV("2", "x"));
  assert_int_equal(load(&f->m.replayed), 1);
  assert_int_equal(load(&f->m.deliveries), 8);

  sb_hub_heartbeat(f->hub, a);
  sb_hub_heartbeat(f->hub, b);
  sb_hub_heartbeat(f->hub, c);
  assert_int_equal(load(&f->m.heartbeats), 3);
  assert_int_equal(load(&f->m.connections_opened), 3);
  assert_int_equal(load(&f->m.connections_closed), 0);
  assert_int_equal(load(&f->m.slow_disconnects), 0);
  sb_hub_unregister(f->hub, c);
  assert_int_equal(load(&f->m.connections_closed), 1);
  /* the hub never touches the intake counters */
  assert_int_equal(load(&f->m.events_received), 0);
  assert_int_equal(load(&f->m.events_accepted), 0);
}

/* ---- freeing -------------------------------------------------------------- */

static void test_free_with_connections_and_queues(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};

  /* everything left registered and unread is freed by sb_hub_free (ASan
   * reports a leak otherwise) */
  f->o.max_connections = 1000;
  start(f);
  reg(f, "u1", "A", NULL, &w);
  reg(f, "u1", "A", NULL, &w);
  reg(f, "u1", "B", NULL, &w);
  reg(f, "u2", "A", NULL, &w);
  for (int i = 0; i < 20; i++)
    publish(f, "u1", "e", NULL, NULL, "x");
  publish(f, "idle", "e", NULL, NULL, "x");
  assert_gauges(f, 4, 2, 3);
  /* many users: past the first hash table size */
  for (int i = 0; i < 200; i++) {
    char user[16];
    snprintf(user, sizeof(user), "user%d", i);
    reg(f, user, "d", NULL, &w);
  }
  assert_gauges(f, 204, 202, 203);
  for (int i = 0; i < 200; i++) {
    char user[16];
    snprintf(user, sizeof(user), "user%d", i);
    assert_int_equal(sb_hub_connection_count(f->hub, user), 1);
  }
  sb_hub_free(NULL);
}

/* ---- presence, interest, duplicates, reconfiguration ---------------------- */

#define MAX_CALLS 32

struct calls {
  char what[MAX_CALLS][64];
  int n;
};

static void on_presence_rec(void *ctx, const char *user)
{
  struct calls *c = ctx;
  if (c->n < MAX_CALLS)
    snprintf(c->what[c->n], sizeof(c->what[0]), "presence %s", user);
  c->n++;
}

static void on_interest_rec(void *ctx, const char *user, int on)
{
  struct calls *c = ctx;
  if (c->n < MAX_CALLS)
    snprintf(c->what[c->n], sizeof(c->what[0]), "%s %s", on ? "interest" : "no-interest", user);
  c->n++;
}

static void expect_calls(struct calls *c, int n, ...)
{
  va_list ap;
  va_start(ap, n);
  for (int i = 0; i < n; i++) {
    const char *want = va_arg(ap, const char *);
    if (i >= c->n)
      fail_msg("call %d missing: want '%s'", i, want);
    assert_string_equal(c->what[i], want);
  }
  va_end(ap);
  assert_int_equal(c->n, n);
  c->n = 0;
}

static void add_device(void *ctx, const char *device, size_t connections)
{
  assert_int_equal(json_object_set_new(ctx, device, json_integer((json_int_t)connections)), 0);
}

/* Checks what the hub holds of user, written as the presence JSON
 * (server/presence.c) would: {"userId","online","connections","devices"}. */
static void assert_presence(struct fx *f, const char *user, const char *want)
{
  json_t *devices = json_object(), *o;
  size_t n;
  char *text;

  assert_non_null(devices);
  n = sb_hub_foreach_device(f->hub, user, add_device, devices);
  assert_int_equal(n, sb_hub_connection_count(f->hub, user));
  o = json_pack("{s:s, s:b, s:I, s:o}", "userId", user, "online", n > 0, "connections",
                (json_int_t)n, "devices", devices);
  assert_non_null(o);
  text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
  assert_non_null(text);
  assert_string_equal(text, want);
  free(text);
  json_decref(o);
}

static void test_presence_calls_and_record(void **state)
{
  struct fx *f = *state;
  struct calls calls = {0};
  struct waker w = {0};
  struct sb_conn *a, *b, *c;

  f->o.on_presence = on_presence_rec;
  f->o.cb_ctx = &calls;
  start(f);
  assert_presence(f, "u1", "{\"connections\":0,\"devices\":{},\"online\":false,\"userId\":\"u1\"}");
  a = reg(f, "u1", "phone", NULL, &w);
  b = reg(f, "u1", "laptop", NULL, &w);
  c = reg(f, "u1", "laptop", NULL, &w);
  reg(f, "u2", "phone", NULL, &w);
  expect_calls(&calls, 4, "presence u1", "presence u1", "presence u1", "presence u2");
  assert_presence(f, "u1",
                  "{\"connections\":3,\"devices\":{\"laptop\":2,\"phone\":1},\"online\":true,"
                  "\"userId\":\"u1\"}");
  sb_hub_unregister(f->hub, c);
  sb_hub_unregister(f->hub, a);
  expect_calls(&calls, 2, "presence u1", "presence u1");
  assert_presence(f, "u1",
                  "{\"connections\":1,\"devices\":{\"laptop\":1},\"online\":true,\"userId\":\"u1\"}");
  sb_hub_unregister(f->hub, b);
  expect_calls(&calls, 1, "presence u1");
  assert_presence(f, "u1", "{\"connections\":0,\"devices\":{},\"online\":false,\"userId\":\"u1\"}");
}

static void test_interest_linger(void **state)
{
  struct fx *f = *state;
  struct calls calls = {0};
  struct waker w = {0};
  struct sb_conn *a, *b;

  f->o.on_interest = on_interest_rec;
  f->o.cb_ctx = &calls;
  f->o.interest_linger_ms = 1000;
  f->o.heartbeat_ms = 100000;
  start(f);
  a = reg_at(f, "u1", "phone", NULL, 0, &w);
  b = reg_at(f, "u1", "laptop", NULL, 0, &w);
  expect_calls(&calls, 1, "interest u1"); /* once per user, not per connection */
  sb_hub_unregister(f->hub, a);
  sb_hub_unregister(f->hub, b);
  expect_calls(&calls, 0);
  /* lingering: the next wake-up is the linger's end */
  assert_int_equal(sb_hub_tick(f->hub, 400), 600);
  expect_calls(&calls, 0);
  /* back within the linger: no new interest, and the linger is off */
  a = reg_at(f, "u1", "phone", NULL, 500, &w);
  assert_int_equal(sb_hub_tick(f->hub, 2000), 100000 + 500 - 2000);
  expect_calls(&calls, 0);
  sb_hub_unregister(f->hub, a);
  sb_hub_tick(f->hub, 2500);
  expect_calls(&calls, 0);
  sb_hub_tick(f->hub, 3000);
  expect_calls(&calls, 1, "no-interest u1");
  assert_gauges(f, 0, 0, 0);
  assert_int_equal(sb_hub_tick(f->hub, 4000), -1);
  /* an event for a user held nowhere here: linger, then no interest; its
   * replay stays as for any idle user */
  publish(f, "u9", "e1", NULL, NULL, "{}");
  sb_hub_linger(f->hub, "u9", 5000);
  sb_hub_linger(f->hub, "u9", 5500); /* already lingering: unchanged */
  sb_hub_tick(f->hub, 5999);
  expect_calls(&calls, 0);
  sb_hub_tick(f->hub, 6000);
  expect_calls(&calls, 1, "no-interest u9");
  assert_true(sb_hub_has_event(f->hub, "u9", "e1"));
  /* a held user does not linger */
  a = reg_at(f, "u2", "phone", NULL, 7000, &w);
  expect_calls(&calls, 1, "interest u2");
  sb_hub_linger(f->hub, "u2", 7000);
  sb_hub_tick(f->hub, 9000);
  expect_calls(&calls, 0);
}

static void test_interest_without_linger(void **state)
{
  struct fx *f = *state;
  struct calls calls = {0};
  struct waker w = {0};
  struct sb_conn *a;

  f->o.on_interest = on_interest_rec;
  f->o.cb_ctx = &calls;
  start(f);
  a = reg(f, "u1", "phone", NULL, &w);
  sb_hub_unregister(f->hub, a);
  expect_calls(&calls, 2, "interest u1", "no-interest u1");
}

static void test_has_event(void **state)
{
  struct fx *f = *state;

  f->o.replay_buffer = 2;
  start(f);
  assert_false(sb_hub_has_event(f->hub, "u1", "a"));
  publish(f, "u1", "a", NULL, NULL, "{}");
  publish(f, "u1", "b", NULL, NULL, "{}");
  assert_true(sb_hub_has_event(f->hub, "u1", "a"));
  assert_true(sb_hub_has_event(f->hub, "u1", "b"));
  assert_false(sb_hub_has_event(f->hub, "u2", "a"));
  publish(f, "u1", "c", NULL, NULL, "{}"); /* pushes a out */
  assert_false(sb_hub_has_event(f->hub, "u1", "a"));
  assert_true(sb_hub_has_event(f->hub, "u1", "c"));
}

static void test_reconfigure(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};
  struct sb_hub_opts o;
  struct sb_conn *c, *x;

  start(f);
  c = reg(f, "u1", "a", NULL, &w);
  skip_retry(c);
  o = f->o;
  o.retry_ms = 2500;
  o.max_connections = 1;
  assert_int_equal(sb_hub_reconfigure(f->hub, &o), 0);
  assert_int_equal(sb_hub_register(f->hub, "u2", "a", NULL, 0, count_wake, &w, &x), SB_ELIMIT);
  o.max_connections = 10;
  assert_int_equal(sb_hub_reconfigure(f->hub, &o), 0);
  x = reg(f, "u2", "a", NULL, &w);
  assert_string_equal(drain(x), "retry: 2500\n\n");
  /* a shorter heartbeat: both connections are due one new interval on */
  assert_int_equal(sb_hub_tick(f->hub, 1000), 25000 - 1000);
  o.heartbeat_ms = 2000;
  assert_int_equal(sb_hub_reconfigure(f->hub, &o), 0);
  assert_int_equal(sb_hub_tick(f->hub, 1500), 1500);
  sb_hub_tick(f->hub, 3000);
  assert_string_equal(drain(c), HB);
  assert_string_equal(drain(x), HB);
}


/* ---- the memory budget ---------------------------------------------------- */

static size_t held(struct fx *f, enum sb_mem_kind k)
{
  size_t n = sb_hub_memory(f->hub, k);
  /* the gauges follow the hub's numbers */
  assert_int_equal(load(&f->m.memory[k]), n);
  return n;
}

static size_t held_all(struct fx *f)
{
  return held(f, SB_MEM_REPLAY) + held(f, SB_MEM_QUEUES);
}

/* Sets max_memory as a reload would (the hub evicts at once). */
static void set_budget(struct fx *f, size_t max_memory)
{
  f->o.max_memory = max_memory;
  assert_int_equal(sb_hub_reconfigure(f->hub, &f->o), 0);
}

/* The heap bytes of a replay buffer of its first capacity (4 slots). */
#define RING4 sb_mem_cost(4 * sizeof(void *))

static void test_memory_counts_a_frame_once(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};
  struct sb_conn *a, *b, *c;
  struct sb_frame *fr;
  size_t r1, q1, cost;

  start(f);
  assert_int_equal(held(f, SB_MEM_QUEUES), 0);
  assert_int_equal(held(f, SB_MEM_PENDING), 0); /* not the hub's */
  a = reg(f, "u1", "A", NULL, &w);
  b = reg(f, "u1", "B", NULL, &w);
  c = reg(f, "u1", "C", NULL, &w);
  skip_retry(a);
  skip_retry(b);
  skip_retry(c);
  r1 = held(f, SB_MEM_REPLAY);
  q1 = held(f, SB_MEM_QUEUES);
  assert_true(q1 > 3 * sizeof(void *)); /* connections, devices, queue slots */

  /* kept in the replay buffer and queued three times: counted once, as replay */
  fr = frame("e1", NULL, NULL, "one");
  cost = fr->cost;
  assert_true(cost >= fr->len);
  sb_hub_publish(f->hub, "u1", fr);
  assert_int_equal(held(f, SB_MEM_REPLAY), r1 + cost + RING4);
  assert_int_equal(held(f, SB_MEM_QUEUES), q1);
  drain(a);
  drain(b);
  assert_int_equal(held(f, SB_MEM_REPLAY), r1 + cost + RING4);
  assert_int_equal(held(f, SB_MEM_QUEUES), q1);
  drain(c);
  assert_int_equal(held(f, SB_MEM_QUEUES), q1);
}

static void test_memory_queues_without_replay(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};
  struct sb_conn *a, *b;
  struct sb_frame *fr;
  size_t r1, q1, cost;
  char part[8];

  f->o.replay_buffer = 0;
  start(f);
  a = reg(f, "u1", "A", NULL, &w);
  b = reg(f, "u1", "B", NULL, &w);
  skip_retry(a);
  skip_retry(b);
  r1 = held(f, SB_MEM_REPLAY);
  q1 = held(f, SB_MEM_QUEUES);
  fr = frame("e1", NULL, NULL, "one");
  cost = fr->cost;
  sb_hub_publish(f->hub, "u1", fr);
  /* in two queues, counted once, as queues, while either holds it */
  assert_int_equal(held(f, SB_MEM_QUEUES), q1 + cost);
  assert_int_equal(held(f, SB_MEM_REPLAY), r1);
  assert_int_equal(sb_conn_read(a, part, 3), 3); /* partly read: still held */
  assert_int_equal(held(f, SB_MEM_QUEUES), q1 + cost);
  drain(a);
  assert_int_equal(held(f, SB_MEM_QUEUES), q1 + cost);
  drain(b);
  assert_int_equal(held(f, SB_MEM_QUEUES), q1);
}

static void test_memory_back_to_start(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};
  struct sb_conn *a, *b, *slow, *many[90];
  size_t r0;
  char big[2048], user[16];

  f->o.max_idle_users = 0; /* idle users go at once */
  f->o.max_queue_bytes = 4096;
  f->o.max_connections = 100;
  start(f);
  r0 = held(f, SB_MEM_REPLAY); /* the user table */
  assert_true(r0 > 0);
  assert_int_equal(held(f, SB_MEM_QUEUES), 0);
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  a = reg(f, "u1", "A", NULL, &w);
  b = reg(f, "u1", "B", "unknown", &w); /* a resync frame */
  slow = reg(f, "u2", "S", NULL, &w);
  for (int i = 0; i < 12; i++) {
    publish(f, "u1", NULL, NULL, NULL, big);
    publish(f, "u2", NULL, NULL, NULL, big); /* cut at max_queue_bytes */
  }
  for (int i = 0; i < 90; i++) { /* the user table grows */
    snprintf(user, sizeof(user), "x%d", i);
    many[i] = reg(f, user, "d", NULL, &w);
  }
  for (int i = 0; i < 90; i++)
    sb_hub_unregister(f->hub, many[i]);
  sb_hub_heartbeat(f->hub, a);
  assert_int_equal(sb_conn_state(slow), SB_CONN_CUT);
  assert_true(held_all(f) > 12 * sizeof(big));
  sb_hub_unregister(f->hub, a);
  sb_hub_unregister(f->hub, b);
  sb_hub_unregister(f->hub, slow);
  assert_gauges(f, 0, 0, 0);
  assert_int_equal(held(f, SB_MEM_QUEUES), 0);
  assert_true(held(f, SB_MEM_REPLAY) > r0); /* only the larger table is left */
  assert_true(held(f, SB_MEM_REPLAY) < r0 + 4096);
}

static void test_memory_eviction_order(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};
  struct sb_conn *c;
  const char *got;

  f->o.replay_floor = 2;
  start(f);
  c = reg(f, "C", "A", NULL, &w);
  publish(f, "I1", "i1a", NULL, NULL, "idle one a");
  publish(f, "C", "c1", NULL, NULL, "c one");
  publish(f, "I1", "i1b", NULL, NULL, "idle one b");
  publish(f, "C", "c2", NULL, NULL, "c two");
  publish(f, "I2", "i2a", NULL, NULL, "idle two a");
  publish(f, "C", "c3", NULL, NULL, "c three");
  publish(f, "C", "c4", NULL, NULL, "c four");
  assert_gauges(f, 1, 1, 3);

  /* one byte too many: one event goes, the oldest of the idle user
   * published to least recently */
  set_budget(f, held_all(f) - 1);
  assert_false(sb_hub_has_event(f->hub, "I1", "i1a"));
  assert_true(sb_hub_has_event(f->hub, "I1", "i1b"));
  assert_int_equal(load(&f->m.evicted[SB_EVICTED_IDLE]), 1);
  assert_true(held_all(f) <= f->o.max_memory);
  /* then the rest of that user, which goes with its last event */
  set_budget(f, held_all(f) - 1);
  assert_int_equal(sb_hub_replay_count(f->hub, "I1"), 0);
  assert_gauges(f, 1, 1, 2);
  /* then the next idle user */
  set_budget(f, held_all(f) - 1);
  assert_gauges(f, 1, 1, 1);
  assert_int_equal(load(&f->m.evicted[SB_EVICTED_IDLE]), 3);
  assert_int_equal(load(&f->m.evicted[SB_EVICTED_CONNECTED]), 0);
  /* no idle user left. The connected user's events are still queued to
   * its stream: evicting them would free nothing, so they stay */
  set_budget(f, held_all(f) - 1);
  assert_int_equal(sb_hub_replay_count(f->hub, "C"), 4);
  assert_int_equal(load(&f->m.evicted[SB_EVICTED_CONNECTED]), 0);
  /* read, its events beyond its floor of 2 go, oldest first */
  assert_string_equal(drain(c), RETRY EV("c1", "c one") EV("c2", "c two") EV("c3", "c three")
                                    EV("c4", "c four"));
  set_budget(f, held_all(f) - 1);
  assert_int_equal(sb_hub_replay_count(f->hub, "C"), 3);
  assert_false(sb_hub_has_event(f->hub, "C", "c1"));
  set_budget(f, held_all(f) - 1);
  assert_int_equal(sb_hub_replay_count(f->hub, "C"), 2);
  /* then the floor itself, down to the newest event */
  set_budget(f, held_all(f) - 1);
  assert_int_equal(sb_hub_replay_count(f->hub, "C"), 1);
  assert_true(sb_hub_has_event(f->hub, "C", "c4"));
  assert_int_equal(load(&f->m.evicted[SB_EVICTED_CONNECTED]), 3);
  /* never the newest: over the budget, and nothing else goes */
  set_budget(f, 1);
  assert_int_equal(sb_hub_replay_count(f->hub, "C"), 1);
  assert_int_equal(load(&f->m.evicted[SB_EVICTED_CONNECTED]), 3);
  assert_int_equal(sb_conn_state(c), SB_CONN_OPEN);
  /* what was evicted is unknown to a resuming stream */
  sb_hub_unregister(f->hub, reg(f, "C", "B", "c3", &w));
  c = reg(f, "C", "B", "c2", &w);
  got = drain(c) + strlen(RETRY);
  expect_resync(&got, "c2");
  assert_string_equal(got, EV("c4", "c four"));
}

static void test_memory_floor_per_connected_user(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};
  struct sb_conn *a, *b;
  char id[8];

  f->o.replay_floor = 3;
  start(f);
  a = reg(f, "A", "d", NULL, &w);
  b = reg(f, "B", "d", NULL, &w);
  for (int i = 1; i <= 6; i++) {
    snprintf(id, sizeof(id), "a%d", i);
    publish(f, "A", id, NULL, NULL, "an event of A");
  }
  for (int i = 1; i <= 6; i++) {
    snprintf(id, sizeof(id), "b%d", i);
    publish(f, "B", id, NULL, NULL, "an event of B");
  }
  drain(a);
  drain(b);
  /* four events must go: A (published to least recently) down to its
   * floor, then the oldest of B */
  for (int i = 0; i < 4; i++)
    set_budget(f, held_all(f) - 1);
  assert_int_equal(sb_hub_replay_count(f->hub, "A"), 3);
  assert_int_equal(sb_hub_replay_count(f->hub, "B"), 5);
  assert_false(sb_hub_has_event(f->hub, "B", "b1"));
  /* a connected user published to goes last again: B is first now */
  set_budget(f, 0);
  publish(f, "A", "a7", NULL, NULL, "an event of A");
  drain(a);
  set_budget(f, held_all(f) - 1);
  assert_int_equal(sb_hub_replay_count(f->hub, "A"), 4);
  assert_int_equal(sb_hub_replay_count(f->hub, "B"), 4);
  set_budget(f, held_all(f) - 1);
  set_budget(f, held_all(f) - 1);
  assert_int_equal(sb_hub_replay_count(f->hub, "A"), 3);
  assert_int_equal(sb_hub_replay_count(f->hub, "B"), 3);
  assert_true(sb_hub_has_event(f->hub, "A", "a5"));
  assert_true(sb_hub_has_event(f->hub, "B", "b4"));
  assert_int_equal(load(&f->m.evicted[SB_EVICTED_CONNECTED]), 7);
  /* both at their floors: they shrink together, one event a user a round */
  set_budget(f, held_all(f) - 1);
  assert_int_equal(sb_hub_replay_count(f->hub, "A") + sb_hub_replay_count(f->hub, "B"), 5);
  set_budget(f, held_all(f) - 1);
  assert_int_equal(sb_hub_replay_count(f->hub, "A"), 2);
  assert_int_equal(sb_hub_replay_count(f->hub, "B"), 2);
  set_budget(f, 1);
  assert_int_equal(sb_hub_replay_count(f->hub, "A"), 1);
  assert_int_equal(sb_hub_replay_count(f->hub, "B"), 1);
  assert_true(sb_hub_has_event(f->hub, "A", "a7"));
  assert_true(sb_hub_has_event(f->hub, "B", "b6"));
  /* unregistered, A is idle: its last event goes first */
  sb_hub_unregister(f->hub, a);
  publish(f, "B", "b7", NULL, NULL, "an event of B");
  drain(b);
  set_budget(f, 1);
  assert_int_equal(sb_hub_replay_count(f->hub, "A"), 0);
  assert_int_equal(sb_hub_replay_count(f->hub, "B"), 1);
  assert_true(sb_hub_has_event(f->hub, "B", "b7"));
  sb_hub_unregister(f->hub, b);
}

static void test_memory_lingering_before_connected(void **state)
{
  struct fx *f = *state;
  struct calls calls = {0};
  struct waker w = {0};
  struct sb_conn *l, *c;

  f->o.on_interest = on_interest_rec;
  f->o.cb_ctx = &calls;
  f->o.interest_linger_ms = 1000;
  f->o.replay_floor = 0;
  start(f);
  c = reg(f, "C", "d", NULL, &w);
  l = reg(f, "L", "d", NULL, &w);
  publish(f, "C", "c1", NULL, NULL, "one");
  publish(f, "L", "l1", NULL, NULL, "one");
  publish(f, "L", "l2", NULL, NULL, "two");
  sb_hub_unregister(f->hub, l); /* lingers, with its events */
  set_budget(f, held_all(f) - 1);
  set_budget(f, held_all(f) - 1);
  assert_int_equal(sb_hub_replay_count(f->hub, "L"), 0);
  assert_int_equal(sb_hub_replay_count(f->hub, "C"), 1);
  assert_int_equal(load(&f->m.evicted[SB_EVICTED_IDLE]), 2);
  /* still lingering: no loss of interest before its time */
  calls.n = 0;
  sb_hub_tick(f->hub, 999);
  expect_calls(&calls, 0);
  sb_hub_tick(f->hub, 1000);
  expect_calls(&calls, 1, "no-interest L");
  sb_hub_unregister(f->hub, c);
}

static void test_memory_budget_while_publishing(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};
  struct sb_conn *c;
  char user[16], data[512];
  int lines = 0;

  f->o.replay_floor = 4;
  f->o.max_memory = 64 * 1024;
  f->o.max_idle_users = SIZE_MAX; /* the budget alone */
  start(f);
  memset(data, 'x', sizeof(data) - 1);
  data[sizeof(data) - 1] = '\0';
  c = reg_at(f, "keeper", "d", NULL, 1, &w);
  publish(f, "keeper", "k1", NULL, NULL, "one");
  publish(f, "keeper", "k2", NULL, NULL, "two");
  for (int i = 0; i < 2000; i++) {
    snprintf(user, sizeof(user), "fresh%d", i);
    publish(f, user, NULL, NULL, NULL, data);
    assert_true(held_all(f) <= f->o.max_memory);
    if (i == 1000)
      sb_hub_tick(f->hub, 10001); /* time for the next log line */
  }
  assert_true(load(&f->m.evicted[SB_EVICTED_IDLE]) > 1800);
  assert_int_equal(load(&f->m.evicted[SB_EVICTED_CONNECTED]), 0);
  assert_string_equal(drain(c), RETRY EV("k1", "one") EV("k2", "two"));
  assert_int_equal(sb_hub_replay_count(f->hub, "keeper"), 2);
  /* one line, then one more once 10 s have passed, not one per event */
  for (int i = 0; i < f->nlines && i < MAX_LINES; i++)
    if (strncmp(f->lines[i], "[SSE] Memory budget: evicted ", 29) == 0) {
      lines++;
      assert_int_equal(f->levels[i], SB_LOG_NOTICE);
    }
  assert_int_equal(lines, 2);
}

static void test_memory_ring_grows_after_eviction(void **state)
{
  struct fx *f = *state;
  struct waker w = {0};
  struct sb_conn *c;
  char id[8];

  f->o.replay_buffer = 16;
  start(f);
  c = reg(f, "u1", "A", NULL, &w);
  for (int i = 1; i <= 4; i++) {
    snprintf(id, sizeof(id), "e%d", i);
    publish(f, "u1", id, NULL, NULL, id);
  }
  drain(c);
  /* two evicted: the buffer's oldest slot moves on, then it fills and grows */
  set_budget(f, held_all(f) - 1);
  set_budget(f, held_all(f) - 1);
  set_budget(f, 0);
  for (int i = 5; i <= 9; i++) {
    snprintf(id, sizeof(id), "e%d", i);
    publish(f, "u1", id, NULL, NULL, id);
  }
  assert_int_equal(sb_hub_replay_count(f->hub, "u1"), 7);
  sb_hub_unregister(f->hub, c);
  c = reg(f, "u1", "B", "e3", &w);
  assert_string_equal(drain(c), RETRY EV("e4", "e4") EV("e5", "e5") EV("e6", "e6") EV("e7", "e7")
                                    EV("e8", "e8") EV("e9", "e9"));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_first_bytes_retry, setup, teardown),
    cmocka_unit_test_setup_teardown(test_presence_calls_and_record, setup, teardown),
    cmocka_unit_test_setup_teardown(test_interest_linger, setup, teardown),
    cmocka_unit_test_setup_teardown(test_interest_without_linger, setup, teardown),
    cmocka_unit_test_setup_teardown(test_has_event, setup, teardown),
    cmocka_unit_test_setup_teardown(test_reconfigure, setup, teardown),
    cmocka_unit_test_setup_teardown(test_retry_ms_option, setup, teardown),
    cmocka_unit_test_setup_teardown(test_log_lines, setup, teardown),
    cmocka_unit_test_setup_teardown(test_log_level_filter, setup, teardown),
    cmocka_unit_test_setup_teardown(test_publish_excludes_source_device, setup, teardown),
    cmocka_unit_test_setup_teardown(test_publish_target_device, setup, teardown),
    cmocka_unit_test_setup_teardown(test_no_cross_user_delivery, setup, teardown),
    cmocka_unit_test_setup_teardown(test_broadcast, setup, teardown),
    cmocka_unit_test_setup_teardown(test_send_to_device, setup, teardown),
    cmocka_unit_test_setup_teardown(test_event_order, setup, teardown),
    cmocka_unit_test_setup_teardown(test_frames_are_shared, setup, teardown),
    cmocka_unit_test_setup_teardown(test_replay_after_last_event_id, setup, teardown),
    cmocka_unit_test_setup_teardown(test_replay_unknown_id_resyncs, setup, teardown),
    cmocka_unit_test_setup_teardown(test_replay_truncated_to_queue_limit, setup, teardown),
    cmocka_unit_test_setup_teardown(test_resync_from_caller, setup, teardown),
    cmocka_unit_test_setup_teardown(test_resume_point, setup, teardown),
    cmocka_unit_test_setup_teardown(test_replay_buffer_capacity, setup, teardown),
    cmocka_unit_test_setup_teardown(test_replay_buffer_zero, setup, teardown),
    cmocka_unit_test_setup_teardown(test_idle_user_keeps_replay, setup, teardown),
    cmocka_unit_test_setup_teardown(test_idle_users_bounded, setup, teardown),
    cmocka_unit_test_setup_teardown(test_counts_and_gauges, setup, teardown),
    cmocka_unit_test_setup_teardown(test_max_connections, setup, teardown),
    cmocka_unit_test_setup_teardown(test_max_connections_per_user, setup, teardown),
    cmocka_unit_test_setup_teardown(test_wake, setup, teardown),
    cmocka_unit_test_setup_teardown(test_tick_heartbeats, setup, teardown),
    cmocka_unit_test_setup_teardown(test_heartbeat_on_closing, setup, teardown),
    cmocka_unit_test_setup_teardown(test_slow_connection_cut, setup, teardown),
    cmocka_unit_test_setup_teardown(test_cut_wakes_when_not_waiting, setup, teardown),
    cmocka_unit_test_setup_teardown(test_queue_limit_reading_keeps_open, setup, teardown),
    cmocka_unit_test_setup_teardown(test_close_keeps_queued_bytes, setup, teardown),
    cmocka_unit_test_setup_teardown(test_partial_reads, setup, teardown),
    cmocka_unit_test_setup_teardown(test_many_frames_queue_growth, setup, teardown),
    cmocka_unit_test_setup_teardown(test_metrics_counted, setup, teardown),
    cmocka_unit_test_setup_teardown(test_free_with_connections_and_queues, setup, teardown),
    cmocka_unit_test_setup_teardown(test_memory_counts_a_frame_once, setup, teardown),
    cmocka_unit_test_setup_teardown(test_memory_queues_without_replay, setup, teardown),
    cmocka_unit_test_setup_teardown(test_memory_back_to_start, setup, teardown),
    cmocka_unit_test_setup_teardown(test_memory_eviction_order, setup, teardown),
    cmocka_unit_test_setup_teardown(test_memory_floor_per_connected_user, setup, teardown),
    cmocka_unit_test_setup_teardown(test_memory_lingering_before_connected, setup, teardown),
    cmocka_unit_test_setup_teardown(test_memory_budget_while_publishing, setup, teardown),
    cmocka_unit_test_setup_teardown(test_memory_ring_grows_after_eviction, setup, teardown),
  };
  return cmocka_run_group_tests_name("hub", tests, NULL, NULL);
}
