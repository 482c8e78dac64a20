/* Unit tests of stream.c: the chunked writer of a direct SSE stream.
 *
 * Each test queues frames to a hub connection, writes them with
 * sb__stream_write() to one end of a non-blocking UNIX socket pair, reads the
 * other end, and decodes the HTTP/1.1 chunks byte for byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hub.h"
#include "sse.h"
#include "stream.h"

#define RETRY "retry: 1000\n\n"

struct fx {
  struct sb_metrics m;
  struct sb_log log;
  struct sb_hub *hub;
  struct sb_conn *c;
  int sv[2]; /* sv[0] written by the stream, sv[1] read by the test */
  char wire[1 << 20];
  size_t nwire;
};

static void quiet(void *ctx, int level, const char *line)
{
  (void)ctx;
  (void)level;
  (void)line;
}

static void no_wake(void *ctx)
{
  (void)ctx;
}

static int setup(void **state)
{
  struct fx *f = calloc(1, sizeof(*f));
  struct sb_hub_opts o = {.max_connections = 100, .max_connections_per_user = 10,
                          .replay_buffer = 0, .heartbeat_ms = 25000, .retry_ms = 1000,
                          .max_queue_bytes = 1 << 20, .max_idle_users = 10};
  int small = 4096;

  f->log.level = SB_LOG_ERROR;
  f->log.fn = quiet;
  assert_non_null(f->hub = sb_hub_new(&o, &f->log, &f->m));
  assert_int_equal(sb_hub_register(f->hub, "u", "d", NULL, 0, no_wake, NULL, &f->c), 0);
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, f->sv), 0);
  setsockopt(f->sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
  setsockopt(f->sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  *state = f;
  return 0;
}

static int teardown(void **state)
{
  struct fx *f = *state;
  sb_hub_free(f->hub);
  if (f->sv[0] >= 0)
    close(f->sv[0]);
  close(f->sv[1]);
  free(f);
  return 0;
}

/* Reads what the socket holds into f->wire. */
static void take(struct fx *f)
{
  ssize_t n;
  while ((n = recv(f->sv[1], f->wire + f->nwire, sizeof(f->wire) - f->nwire, MSG_DONTWAIT)) > 0)
    f->nwire += (size_t)n;
}

/* Decodes f->wire as complete chunks; returns their payload (static) and
 * the number of chunks in *chunks. Fails on any malformed byte. */
static const char *dechunk(const struct fx *f, int *chunks)
{
  static char out[1 << 20];
  size_t i = 0, n = 0;

  *chunks = 0;
  while (i < f->nwire) {
    char *end;
    unsigned long len = strtoul(f->wire + i, &end, 16);
    assert_true(end > f->wire + i);
    for (const char *p = f->wire + i; p < end; p++)
      assert_true((*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'F')); /* as libmicrohttpd */
    assert_memory_equal(end, "\r\n", 2);
    assert_true(len > 0);
    i = (size_t)(end - f->wire) + 2;
    assert_true(i + len + 2 <= f->nwire);
    memcpy(out + n, f->wire + i, len);
    n += len;
    i += len;
    assert_memory_equal(f->wire + i, "\r\n", 2);
    i += 2;
    (*chunks)++;
  }
  out[n] = '\0';
  return out;
}

static void queue_event(struct fx *f, int i)
{
  char data[160];
  struct sb_frame *fr;
  char id[16];

  snprintf(id, sizeof(id), "%d", i);
  snprintf(data, sizeof(data), "{\"n\":%d,\"pad\":\"%0100d\"}", i, i);
  assert_non_null(fr = sb_frame_event(id, NULL, NULL, data, strlen(data)));
  assert_int_equal(sb_hub_broadcast(f->hub, "u", fr, NULL), 1);
  sb_frame_unref(fr);
}

static void test_one_frame_exact_bytes(void **state)
{
  struct fx *f = *state;
  struct sb__stream_out out = {0};

  assert_int_equal(sb__stream_write(&out, f->sv[0], f->c), SB__STREAM_DONE);
  assert_false(sb__stream_pending(&out));
  assert_int_equal(sb_conn_queued(f->c), 0);
  take(f);
  assert_int_equal(f->nwire, strlen("D\r\n" RETRY "\r\n"));
  assert_memory_equal(f->wire, "D\r\n" RETRY "\r\n", f->nwire);
  /* nothing queued: nothing written */
  assert_int_equal(sb__stream_write(&out, f->sv[0], f->c), SB__STREAM_DONE);
  take(f);
  assert_int_equal(f->nwire, strlen("D\r\n" RETRY "\r\n"));
}

static void test_last_chunk(void **state)
{
  struct fx *f = *state;
  struct sb__stream_out out = {0};

  assert_int_equal(sb__stream_write(&out, f->sv[0], f->c), SB__STREAM_DONE);
  sb__stream_end(&out);
  assert_true(sb__stream_pending(&out));
  assert_int_equal(sb__stream_write(&out, f->sv[0], f->c), SB__STREAM_DONE);
  assert_false(sb__stream_pending(&out));
  take(f);
  assert_int_equal(f->nwire, strlen("D\r\n" RETRY "\r\n0\r\n\r\n"));
  assert_memory_equal(f->wire, "D\r\n" RETRY "\r\n0\r\n\r\n", f->nwire);
}

static void test_frames_batched_in_one_chunk(void **state)
{
  struct fx *f = *state;
  struct sb__stream_out out = {0};
  const char *body;
  int chunks;

  queue_event(f, 1);
  queue_event(f, 2);
  assert_int_equal(sb__stream_write(&out, f->sv[0], f->c), SB__STREAM_DONE);
  take(f);
  body = dechunk(f, &chunks);
  assert_int_equal(chunks, 1);
  assert_true(strncmp(body, RETRY "id: 1\ndata: {\"n\":1,", strlen(RETRY) + 18) == 0);
  assert_non_null(strstr(body, "\n\nid: 2\ndata: {\"n\":2,"));
}

/* The socket takes part of the stream at a time: every byte still arrives
 * once, in order, inside well-formed chunks, whatever the cut points. */
static void test_partial_writes(void **state)
{
  struct fx *f = *state;
  struct sb__stream_out out = {0};
  char want[1 << 18];
  size_t nwant = 0;
  int rc, again = 0, chunks;

  nwant += (size_t)snprintf(want, sizeof(want), "%s", RETRY);
  for (int i = 0; i < 600; i++) {
    char data[160];
    queue_event(f, i);
    snprintf(data, sizeof(data), "{\"n\":%d,\"pad\":\"%0100d\"}", i, i);
    nwant += (size_t)snprintf(want + nwant, sizeof(want) - nwant, "id: %d\ndata: %s\n\n", i, data);
  }
  while ((rc = sb__stream_write(&out, f->sv[0], f->c)) == SB__STREAM_AGAIN) {
    again++;
    assert_true(sb_conn_queued(f->c) > 0 || sb__stream_pending(&out));
    take(f);
  }
  assert_int_equal(rc, SB__STREAM_DONE);
  assert_true(again > 0);
  assert_int_equal(sb_conn_queued(f->c), 0);
  take(f);
  assert_string_equal(dechunk(f, &chunks), want);
  assert_true(chunks > 1);
}

static void test_peer_gone(void **state)
{
  struct fx *f = *state;
  struct sb__stream_out out = {0};

  close(f->sv[1]);
  f->sv[1] = dup(f->sv[0]); /* teardown closes something valid */
  shutdown(f->sv[0], SHUT_RDWR);
  assert_int_equal(sb__stream_write(&out, f->sv[0], f->c), SB__STREAM_ERROR);
}

static void test_peek_and_consume(void **state)
{
  struct fx *f = *state;
  struct iovec iov[4];
  size_t bytes, k;

  queue_event(f, 7);
  k = sb_conn_peek(f->c, iov, 4, 5, &bytes);
  assert_int_equal(k, 1);
  assert_int_equal(bytes, 5);
  assert_memory_equal(iov[0].iov_base, "retry", 5);
  sb_conn_consume(f->c, strlen(RETRY) + 3);
  k = sb_conn_peek(f->c, iov, 4, (size_t)-1, &bytes);
  assert_int_equal(k, 1);
  assert_int_equal(bytes, sb_conn_queued(f->c));
  assert_memory_equal(iov[0].iov_base, " 7\ndata:", 8);
  sb_conn_consume(f->c, bytes);
  assert_int_equal(sb_conn_queued(f->c), 0);
  assert_int_equal(sb_conn_peek(f->c, iov, 4, (size_t)-1, &bytes), 0);
  assert_int_equal(bytes, 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_one_frame_exact_bytes, setup, teardown),
    cmocka_unit_test_setup_teardown(test_last_chunk, setup, teardown),
    cmocka_unit_test_setup_teardown(test_frames_batched_in_one_chunk, setup, teardown),
    cmocka_unit_test_setup_teardown(test_partial_writes, setup, teardown),
    cmocka_unit_test_setup_teardown(test_peer_gone, setup, teardown),
    cmocka_unit_test_setup_teardown(test_peek_and_consume, setup, teardown),
  };
  return cmocka_run_group_tests_name("stream", tests, NULL, NULL);
}
