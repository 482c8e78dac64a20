/* Unit tests of slots.c: the deadlines of a request's headers and body, and
 * the count of unfinished requests per client address. Each connection is
 * one end of a socketpair, so that a slot that is cut shows as the end of
 * the other one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "slots.h"

#define MAXCONN 8

struct fixture {
  struct sb_metrics m;
  struct sb_log log;
  struct sb__slots *s;
  struct sb__slot slots[MAXCONN];
  int fds[MAXCONN][2]; /* [0] the bridge's end, [1] the client's */
  int errors;          /* error lines logged */
};

static void log_line(void *ctx, int level, const char *line)
{
  struct fixture *f = ctx;
  (void)line;
  if (level == SB_LOG_ERROR)
    f->errors++;
}

static int setup(void **state)
{
  struct fixture *f = calloc(1, sizeof(*f));

  assert_non_null(f);
  f->log.fn = log_line;
  f->log.ctx = f;
  f->log.level = SB_LOG_DEBUG;
  assert_non_null(f->s = sb__slots_new(&f->m, &f->log));
  for (int i = 0; i < MAXCONN; i++)
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, f->fds[i]), 0);
  *state = f;
  return 0;
}

static int teardown(void **state)
{
  struct fixture *f = *state;

  for (int i = 0; i < MAXCONN; i++) {
    sb__slot_close(&f->slots[i]);
    close(f->fds[i][0]);
    close(f->fds[i][1]);
  }
  sb__slots_free(f->s);
  free(f);
  return 0;
}

static struct sockaddr_in v4(const char *text)
{
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  assert_int_equal(inet_pton(AF_INET, text, &a.sin_addr), 1);
  return a;
}

static struct sockaddr_in6 v6(const char *text)
{
  struct sockaddr_in6 a;
  memset(&a, 0, sizeof(a));
  a.sin6_family = AF_INET6;
  assert_int_equal(inet_pton(AF_INET6, text, &a.sin6_addr), 1);
  return a;
}

static int admit4(struct fixture *f, const char *addr, int limit)
{
  struct sockaddr_in a = v4(addr);
  return sb__slots_admit(f->s, (struct sockaddr *)&a, sizeof(a), limit);
}

static void open4(struct fixture *f, int i, const char *addr, long long now)
{
  struct sockaddr_in a = v4(addr);
  assert_int_equal(
      sb__slot_open(f->s, &f->slots[i], (struct sockaddr *)&a, sizeof(a), f->fds[i][0], now), 0);
}

/* Returns 1 when connection i was shut down (its client reads the end). */
static int was_cut(struct fixture *f, int i)
{
  char c;
  return recv(f->fds[i][1], &c, 1, MSG_DONTWAIT) == 0;
}

static unsigned long long refused(struct fixture *f, enum sb_http_refusal why)
{
  return atomic_load(&f->m.http_refused[why]);
}

static void test_limit_per_address(void **state)
{
  struct fixture *f = *state;

  assert_int_equal(admit4(f, "10.0.0.1", 2), 1);
  open4(f, 0, "10.0.0.1", 0);
  assert_int_equal(admit4(f, "10.0.0.1", 2), 1);
  open4(f, 1, "10.0.0.1", 0);
  /* the third from that address is refused, and counted; others go on */
  assert_int_equal(admit4(f, "10.0.0.1", 2), 0);
  assert_int_equal(admit4(f, "10.0.0.1", 2), 0);
  assert_int_equal(refused(f, SB_HTTP_REFUSED_PER_ADDRESS), 2);
  assert_int_equal(admit4(f, "10.0.0.2", 2), 1);
  assert_int_equal(admit4(f, "10.0.0.1", 0), 1); /* 0: no limit */
  /* an answer being sent still counts; a stream does not */
  sb__slot_move(&f->slots[0], SB__SLOT_ANSWER, 5);
  assert_int_equal(admit4(f, "10.0.0.1", 2), 0);
  sb__slot_move(&f->slots[1], SB__SLOT_STREAM, 5);
  assert_int_equal(admit4(f, "10.0.0.1", 2), 1);
  open4(f, 2, "10.0.0.1", 5);
  assert_int_equal(admit4(f, "10.0.0.1", 2), 0);
  /* a closed connection frees its place */
  sb__slot_close(&f->slots[2]);
  assert_int_equal(admit4(f, "10.0.0.1", 2), 1);
  assert_false(was_cut(f, 0) || was_cut(f, 1));
  assert_int_equal(f->errors, 0);
}

static void test_an_idle_connection_makes_room(void **state)
{
  struct fixture *f = *state;

  open4(f, 0, "10.0.0.1", 0);
  open4(f, 1, "10.0.0.1", 0);
  open4(f, 2, "10.0.0.1", 0);
  /* 0 and 2 were answered and wait idle for their next request */
  sb__slot_move(&f->slots[0], SB__SLOT_ANSWER, 1);
  sb__slot_move(&f->slots[0], SB__SLOT_IDLE, 2);
  sb__slot_move(&f->slots[2], SB__SLOT_ANSWER, 3);
  sb__slot_move(&f->slots[2], SB__SLOT_IDLE, 4);
  /* the oldest idle one makes room, then the next, then none is left */
  assert_int_equal(admit4(f, "10.0.0.1", 3), 1);
  assert_true(was_cut(f, 0));
  assert_int_equal(f->slots[0].phase, SB__SLOT_CUT);
  open4(f, 3, "10.0.0.1", 5);
  assert_int_equal(admit4(f, "10.0.0.1", 3), 1);
  assert_true(was_cut(f, 2));
  open4(f, 4, "10.0.0.1", 5);
  assert_int_equal(admit4(f, "10.0.0.1", 3), 0);
  assert_false(was_cut(f, 1) || was_cut(f, 3) || was_cut(f, 4));
  assert_int_equal(refused(f, SB_HTTP_REFUSED_PER_ADDRESS), 1);
  /* a cut slot waits for its close: no move takes it back */
  sb__slot_move(&f->slots[0], SB__SLOT_ANSWER, 6);
  assert_int_equal(f->slots[0].phase, SB__SLOT_CUT);
}

static void test_deadlines(void **state)
{
  struct fixture *f = *state;

  assert_int_equal(sb__slots_next(f->s, 0), -1);
  open4(f, 0, "10.0.0.1", 1000); /* headers due at 11000 */
  open4(f, 1, "10.0.0.2", 2000); /* headers in at 2500: body due at 32500 */
  sb__slot_move(&f->slots[1], SB__SLOT_BODY, 2500);
  open4(f, 2, "10.0.0.3", 3000); /* answered: no deadline */
  sb__slot_move(&f->slots[2], SB__SLOT_ANSWER, 3000);
  open4(f, 3, "10.0.0.4", 4000); /* a stream: no deadline */
  sb__slot_move(&f->slots[3], SB__SLOT_STREAM, 4000);
  open4(f, 4, "10.0.0.5", 4000); /* kept alive at 5000: idle until 15000 */
  sb__slot_move(&f->slots[4], SB__SLOT_ANSWER, 4000);
  sb__slot_move(&f->slots[4], SB__SLOT_IDLE, 5000);

  assert_int_equal(sb__slots_next(f->s, 4000), 7000);
  sb__slots_expire(f->s, 10999);
  assert_false(was_cut(f, 0));
  sb__slots_expire(f->s, 11000);
  assert_true(was_cut(f, 0));
  assert_int_equal(refused(f, SB_HTTP_REFUSED_DEADLINE), 1);
  assert_int_equal(sb__slots_next(f->s, 11000), 4000);
  assert_int_equal(sb__slots_next(f->s, 20000), 0); /* one is past */
  sb__slots_expire(f->s, 20000);
  assert_true(was_cut(f, 4)); /* idle too long: closed, not counted */
  assert_int_equal(refused(f, SB_HTTP_REFUSED_DEADLINE), 1);
  assert_int_equal(sb__slots_next(f->s, 20000), 12500);
  sb__slots_expire(f->s, 32499);
  assert_false(was_cut(f, 1));
  sb__slots_expire(f->s, 32500);
  assert_true(was_cut(f, 1));
  assert_int_equal(refused(f, SB_HTTP_REFUSED_DEADLINE), 2);
  assert_int_equal(sb__slots_next(f->s, 40000), -1);
  sb__slots_expire(f->s, 1000000);
  assert_false(was_cut(f, 2) || was_cut(f, 3));
  /* a stream that ends on a kept-alive connection waits for the next request */
  sb__slot_move(&f->slots[3], SB__SLOT_IDLE, 50000);
  assert_int_equal(sb__slots_next(f->s, 50000), 10000);
}

static void test_moves(void **state)
{
  struct fixture *f = *state;

  open4(f, 0, "10.0.0.1", 0);
  sb__slot_move(&f->slots[0], SB__SLOT_STREAM, 0);
  sb__slot_move(&f->slots[0], SB__SLOT_BODY, 0); /* not a move: logged, ignored */
  assert_int_equal(f->errors, 1);
  assert_int_equal(f->slots[0].phase, SB__SLOT_STREAM);
  sb__slot_move(&f->slots[0], SB__SLOT_STREAM, 0); /* the same phase: nothing */
  assert_int_equal(f->errors, 1);
  sb__slot_close(&f->slots[0]);
  sb__slot_close(&f->slots[0]); /* twice: nothing */
  sb__slot_close(NULL);
  sb__slot_move(&f->slots[0], SB__SLOT_ANSWER, 0); /* closed: nothing */
  assert_int_equal(f->errors, 1);
}

static void test_addresses(void **state)
{
  struct fixture *f = *state;
  struct sockaddr_in6 a = v6("2001:db8:1:2::1"), b = v6("2001:db8:1:2:ffff::9"),
                      c = v6("2001:db8:1:3::1"), m = v6("::ffff:10.0.0.1");

  /* IPv6 counts by the /64 */
  assert_int_equal(sb__slot_open(f->s, &f->slots[0], (struct sockaddr *)&a, sizeof(a),
                                 f->fds[0][0], 0), 0);
  assert_int_equal(sb__slots_admit(f->s, (struct sockaddr *)&b, sizeof(b), 1), 0);
  assert_int_equal(sb__slots_admit(f->s, (struct sockaddr *)&c, sizeof(c), 1), 1);
  /* an IPv4 address mapped into IPv6 is that IPv4 address */
  open4(f, 1, "10.0.0.1", 0);
  assert_int_equal(sb__slots_admit(f->s, (struct sockaddr *)&m, sizeof(m), 1), 0);
  assert_int_equal(admit4(f, "10.0.0.2", 1), 1);
}

static void test_many_addresses(void **state)
{
  struct fixture *f = *state;
  struct sb__slot *many = calloc(1000, sizeof(*many));
  char text[32];

  /* the table grows; each address keeps its own count */
  assert_non_null(many);
  for (int i = 0; i < 1000; i++) {
    struct sockaddr_in a;
    snprintf(text, sizeof(text), "10.1.%d.%d", i / 250, i % 250);
    a = v4(text);
    assert_int_equal(admit4(f, text, 2), 1);
    assert_int_equal(sb__slot_open(f->s, &many[i], (struct sockaddr *)&a, sizeof(a), -1, 0), 0);
  }
  for (int i = 0; i < 1000; i++) {
    snprintf(text, sizeof(text), "10.1.%d.%d", i / 250, i % 250);
    assert_int_equal(admit4(f, text, 1), 0);
    assert_int_equal(admit4(f, text, 2), 1);
  }
  for (int i = 0; i < 1000; i += 2)
    sb__slot_close(&many[i]);
  for (int i = 0; i < 1000; i++) {
    snprintf(text, sizeof(text), "10.1.%d.%d", i / 250, i % 250);
    assert_int_equal(admit4(f, text, 1), i % 2 == 0);
  }
  for (int i = 1; i < 1000; i += 2)
    sb__slot_close(&many[i]);
  free(many);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_limit_per_address, setup, teardown),
    cmocka_unit_test_setup_teardown(test_an_idle_connection_makes_room, setup, teardown),
    cmocka_unit_test_setup_teardown(test_deadlines, setup, teardown),
    cmocka_unit_test_setup_teardown(test_moves, setup, teardown),
    cmocka_unit_test_setup_teardown(test_addresses, setup, teardown),
    cmocka_unit_test_setup_teardown(test_many_addresses, setup, teardown),
  };
  return cmocka_run_group_tests_name("slots", tests, NULL, NULL);
}
