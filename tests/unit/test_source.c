/* Unit tests of the server's watched source (sb_server_source_*): the
 * descriptor the daemon's MQTT client hands to the server's loop. A real
 * server runs on a free loopback port; the source is one end of a
 * socketpair, and the callbacks count what the loop thread calls. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server.h"

struct fixture {
  struct sb_config cfg;
  struct sb_log log;
  struct sb_server *b;
  int sv[2];           /* [0] the watched end, [1] the peer */
  atomic_int ready_in; /* ready() calls with SB_SOURCE_IN */
  atomic_int ready_kick;
  atomic_int ticks;
  atomic_int released;
  atomic_int unwatch_next; /* ready() stops watching the descriptor */
  atomic_int bytes;        /* read by ready() */
};

static void log_line(void *ctx, int level, const char *line)
{
  (void)ctx;
  (void)level;
  (void)line;
}

static void on_ready(void *ctx, unsigned events)
{
  struct fixture *f = ctx;
  char buf[64];
  ssize_t n;

  if (events == 0)
    atomic_fetch_add(&f->ready_kick, 1);
  if (events & SB_SOURCE_IN) {
    atomic_fetch_add(&f->ready_in, 1);
    if ((n = read(f->sv[0], buf, sizeof(buf))) > 0)
      atomic_fetch_add(&f->bytes, (int)n);
  }
  if (atomic_exchange(&f->unwatch_next, 0))
    sb_server_source_unwatch(f->b, 1);
}

static long long on_tick(void *ctx, long long now)
{
  struct fixture *f = ctx;

  (void)now;
  atomic_fetch_add(&f->ticks, 1);
  return 20;
}

static void on_released(void *ctx)
{
  struct fixture *f = ctx;
  atomic_fetch_add(&f->released, 1);
}

/* Waits up to 2 s for *v to reach at least want. */
static int wait_for(atomic_int *v, int want)
{
  struct timespec slice = {0, 5 * 1000 * 1000};

  for (int i = 0; i < 400 && atomic_load(v) < want; i++)
    nanosleep(&slice, NULL);
  return atomic_load(v) >= want;
}

static int setup(void **state)
{
  struct fixture *f = calloc(1, sizeof(*f));
  struct sb_err err = {""};

  assert_non_null(f);
  f->log = (struct sb_log){log_line, f, SB_LOG_ERROR};
  assert_int_equal(sb_config_init(&f->cfg), 0);
  assert_int_equal(sb_config_set(&f->cfg, SB_FORM_DAEMON, "auth", "none", &err), 0);
  assert_int_equal(sb_config_set(&f->cfg, SB_FORM_DAEMON, "http_bind", "127.0.0.1", &err), 0);
  assert_int_equal(sb_config_set(&f->cfg, SB_FORM_DAEMON, "http_port", "0", &err), 0);
  assert_non_null(f->b = sb_server_new(&f->cfg, &f->log, &err));
  sb_server_set_source(f->b, &(struct sb_server_source){on_ready, on_tick, on_released, f});
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, f->sv), 0);
  *state = f;
  return 0;
}

static int teardown(void **state)
{
  struct fixture *f = *state;

  sb_server_free(f->b);
  sb_config_free(&f->cfg);
  close(f->sv[0]);
  close(f->sv[1]);
  free(f);
  return 0;
}

static void test_not_watched_before_start(void **state)
{
  struct fixture *f = *state;

  assert_int_equal(sb_server_source_watch(f->b, f->sv[0], SB_SOURCE_IN), SB_ESTATE);
}

static void test_ready_tick_and_kick_on_the_loop(void **state)
{
  struct fixture *f = *state;
  struct sb_err err = {""};

  assert_int_equal(sb_server_start(f->b, &err), 0);
  assert_int_equal(sb_server_source_watch(f->b, f->sv[0], SB_SOURCE_IN), 0);
  assert_int_equal(write(f->sv[1], "abc", 3), 3);
  assert_true(wait_for(&f->bytes, 3));
  assert_true(atomic_load(&f->ready_in) >= 1);
  /* each turn of the loop asks the source while it is watched */
  assert_true(wait_for(&f->ticks, 3));
  sb_server_source_kick(f->b);
  assert_true(wait_for(&f->ready_kick, 1));
  /* watching it again only changes what it waits for */
  assert_int_equal(sb_server_source_watch(f->b, f->sv[0], SB_SOURCE_IN | SB_SOURCE_OUT), 0);
  sb_server_stop(f->b);
  /* the loop ended with the descriptor watched: handed back once */
  assert_int_equal(atomic_load(&f->released), 1);
  assert_int_equal(sb_server_source_watch(f->b, f->sv[0], SB_SOURCE_IN), SB_ESTATE);
}

static void test_unwatched_source_hears_nothing(void **state)
{
  struct fixture *f = *state;
  struct sb_err err = {""};
  struct timespec pause = {0, 100 * 1000 * 1000};
  int ticks;

  assert_int_equal(sb_server_start(f->b, &err), 0);
  assert_int_equal(sb_server_source_watch(f->b, f->sv[0], SB_SOURCE_IN), 0);
  atomic_store(&f->unwatch_next, 1);
  assert_int_equal(write(f->sv[1], "x", 1), 1);
  assert_true(wait_for(&f->bytes, 1));
  assert_int_equal(write(f->sv[1], "y", 1), 1);
  nanosleep(&pause, NULL);
  assert_int_equal(atomic_load(&f->bytes), 1); /* the second byte waits: not watched */
  ticks = atomic_load(&f->ticks);
  nanosleep(&pause, NULL);
  assert_int_equal(atomic_load(&f->ticks), ticks);
  /* watched again (as after a reconnect), it reads what waits */
  assert_int_equal(sb_server_source_watch(f->b, f->sv[0], SB_SOURCE_IN), 0);
  assert_true(wait_for(&f->bytes, 2));
  sb_server_stop(f->b);
  assert_int_equal(atomic_load(&f->released), 1);
}

static void test_not_released_when_not_watched(void **state)
{
  struct fixture *f = *state;
  struct sb_err err = {""};

  assert_int_equal(sb_server_start(f->b, &err), 0);
  sb_server_stop(f->b);
  assert_int_equal(atomic_load(&f->released), 0);
  assert_int_equal(atomic_load(&f->ready_in), 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_not_watched_before_start, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ready_tick_and_kick_on_the_loop, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unwatched_source_hears_nothing, setup, teardown),
      cmocka_unit_test_setup_teardown(test_not_released_when_not_watched, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
