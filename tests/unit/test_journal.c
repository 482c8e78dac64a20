/* Unit tests of journal.c: the record format, reading back in order,
 * rotation, and a torn end. Files live in a fresh directory under /tmp. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "err.h"
#include "journal.h"

static struct sb_journal_rec rec(const char *user, const char *id, const char *src,
                                 const char *tgt, const char *json, unsigned flags)
{
  struct sb_journal_rec r = {flags, user, id, src, tgt, json,
                             strlen(user), strlen(id), src ? strlen(src) : 0,
                             tgt ? strlen(tgt) : 0, strlen(json)};
  return r;
}

/* What sb_journal_replay() hands out, as "user|id|source|target|json|flags". */
struct seen {
  char lines[64][160];
  int n;
};

static void collect(void *ctx, const struct sb_journal_rec *r)
{
  struct seen *s = ctx;
  if (s->n < 64)
    snprintf(s->lines[s->n], sizeof(s->lines[0]), "%.*s|%.*s|%.*s|%.*s|%.*s|%u",
             (int)r->user_len, r->user, (int)r->id_len, r->id, (int)r->source_len, r->source,
             (int)r->target_len, r->target, (int)r->json_len, r->json, r->flags);
  s->n++;
}

static int make_dir(void **state)
{
  char *dir = strdup("/tmp/sb-journal-XXXXXX");
  if (!dir || !mkdtemp(dir))
    return -1;
  *state = dir;
  return 0;
}

static int remove_dir(void **state)
{
  char *dir = *state, path[256];
  snprintf(path, sizeof(path), "%s/" SB_JOURNAL_FILE, dir);
  unlink(path);
  snprintf(path, sizeof(path), "%s/" SB_JOURNAL_OLD, dir);
  unlink(path);
  rmdir(dir);
  free(dir);
  return 0;
}

static void test_encode_decode(void **state)
{
  struct sb_journal_rec in = rec("u1", "1700-1", "phone", NULL, "{\"type\":\"x\"}", 0), out;
  char buf[256];
  long n;

  (void)state;
  n = sb_journal_encode(&in, NULL, 0);
  assert_true(n > 0 && n < (long)sizeof(buf));
  assert_int_equal(sb_journal_encode(&in, buf, sizeof(buf)), n);
  assert_int_equal(sb_journal_decode(buf, (size_t)n, &out), n);
  assert_int_equal(out.user_len, 2);
  assert_memory_equal(out.user, "u1", 2);
  assert_memory_equal(out.id, "1700-1", 6);
  assert_memory_equal(out.source, "phone", 5);
  assert_int_equal(out.target_len, 0);
  assert_int_equal(out.json_len, strlen("{\"type\":\"x\"}"));
  assert_int_equal(out.flags, 0);
  /* every shorter prefix is "not yet a record", never a record */
  for (long i = 0; i < n; i++)
    assert_int_equal(sb_journal_decode(buf, (size_t)i, &out), 0);
  /* damaged lengths are refused */
  buf[5] = 100; /* the user length no longer adds up */
  assert_int_equal(sb_journal_decode(buf, (size_t)n, &out), SB_EINVAL);
  memset(buf, 0xff, 4); /* a body over the limit */
  assert_int_equal(sb_journal_decode(buf, (size_t)n, &out), SB_EINVAL);
  memset(buf, 0, 4); /* a body under the header */
  assert_int_equal(sb_journal_decode(buf, (size_t)n, &out), SB_EINVAL);
  /* nothing empty where it must not be */
  in = rec("", "1", NULL, NULL, "{}", 0);
  assert_int_equal(sb_journal_encode(&in, buf, sizeof(buf)), SB_EINVAL);
  in = rec("u", "1", NULL, NULL, "", 0);
  assert_int_equal(sb_journal_encode(&in, buf, sizeof(buf)), SB_EINVAL);
  in = rec("u", "1", NULL, NULL, "{}", 8);
  assert_int_equal(sb_journal_encode(&in, buf, sizeof(buf)), SB_EINVAL);
}

static void test_append_and_replay_in_order(void **state)
{
  const char *dir = *state;
  struct sb_journal *j;
  struct sb_journal_rec r;
  struct seen seen = {0};
  struct sb_err err;
  size_t bad = 9;

  assert_int_equal(sb_journal_open(dir, 1 << 20, &j, &err), 0);
  assert_int_equal(sb_journal_replay(j, collect, &seen, &bad), 0);
  assert_int_equal(bad, 0);
  r = rec("u1", "e1", NULL, NULL, "{\"a\":1}", 0);
  assert_int_equal(sb_journal_append(j, &r), 0);
  r = rec("u2", "pub-7", "phone", "laptop", "{\"a\":2}", SB_JOURNAL_PUBLISHER_ID);
  assert_int_equal(sb_journal_append(j, &r), 0);
  sb_journal_close(j);

  assert_int_equal(sb_journal_open(dir, 1 << 20, &j, &err), 0);
  assert_int_equal(sb_journal_replay(j, collect, &seen, &bad), 2);
  assert_int_equal(bad, 0);
  assert_string_equal(seen.lines[0], "u1|e1|||{\"a\":1}|0");
  assert_string_equal(seen.lines[1], "u2|pub-7|phone|laptop|{\"a\":2}|1");
  /* appends after a reopen follow the earlier records */
  r = rec("u1", "e3", NULL, NULL, "{\"a\":3}", 0);
  assert_int_equal(sb_journal_append(j, &r), 0);
  sb_journal_close(j);
  seen.n = 0;
  assert_int_equal(sb_journal_open(dir, 1 << 20, &j, &err), 0);
  assert_int_equal(sb_journal_replay(j, collect, &seen, &bad), 3);
  assert_string_equal(seen.lines[2], "u1|e3|||{\"a\":3}|0");
  sb_journal_close(j);
}

static void test_rotation_keeps_latest(void **state)
{
  const char *dir = *state;
  struct sb_journal *j;
  struct sb_journal_rec r;
  struct seen seen = {0};
  struct sb_err err;
  char id[16];
  size_t bad, one;

  r = rec("u1", "e00", NULL, NULL, "{\"n\":0}", 0);
  one = (size_t)sb_journal_encode(&r, NULL, 0);
  /* a file holds 4 records: 10 appends leave the last 2 in the new file and
   * the 4 before them in the old one */
  assert_int_equal(sb_journal_open(dir, 4 * one, &j, &err), 0);
  for (int i = 0; i < 10; i++) {
    snprintf(id, sizeof(id), "e%02d", i);
    r = rec("u1", id, NULL, NULL, "{\"n\":0}", 0);
    assert_int_equal(sb_journal_append(j, &r), 0);
  }
  sb_journal_close(j);
  assert_int_equal(sb_journal_open(dir, 4 * one, &j, &err), 0);
  assert_int_equal(sb_journal_replay(j, collect, &seen, &bad), 6);
  for (int i = 0; i < 6; i++) {
    snprintf(id, sizeof(id), "u1|e%02d|", i + 4);
    assert_memory_equal(seen.lines[i], id, strlen(id));
  }
  sb_journal_close(j);
}

static void test_torn_end_is_cut(void **state)
{
  const char *dir = *state;
  struct sb_journal *j;
  struct sb_journal_rec r = rec("u1", "e1", NULL, NULL, "{\"a\":1}", 0);
  struct seen seen = {0};
  struct sb_err err;
  char path[256], half[8];
  size_t bad;
  int fd;

  assert_int_equal(sb_journal_open(dir, 1 << 20, &j, &err), 0);
  assert_int_equal(sb_journal_append(j, &r), 0);
  sb_journal_close(j);
  /* a crash in the middle of the next write */
  snprintf(path, sizeof(path), "%s/" SB_JOURNAL_FILE, dir);
  fd = open(path, O_WRONLY | O_APPEND);
  assert_true(fd >= 0);
  sb_journal_encode(&r, half, sizeof(half)); /* too small: nothing written */
  memset(half, 0, sizeof(half));
  half[0] = 40; /* a body length, then too few bytes */
  assert_int_equal(write(fd, half, sizeof(half)), (ssize_t)sizeof(half));
  close(fd);

  assert_int_equal(sb_journal_open(dir, 1 << 20, &j, &err), 0);
  assert_int_equal(sb_journal_replay(j, collect, &seen, &bad), 1);
  r = rec("u1", "e2", NULL, NULL, "{\"a\":2}", 0);
  assert_int_equal(sb_journal_append(j, &r), 0);
  sb_journal_close(j);
  seen.n = 0;
  assert_int_equal(sb_journal_open(dir, 1 << 20, &j, &err), 0);
  assert_int_equal(sb_journal_replay(j, collect, &seen, &bad), 2);
  assert_int_equal(bad, 0);
  assert_string_equal(seen.lines[1], "u1|e2|||{\"a\":2}|0");
  sb_journal_close(j);
}

static void test_open_fails_with_the_option_named(void **state)
{
  struct sb_journal *j = (struct sb_journal *)1;
  struct sb_err err = {""};

  (void)state;
  assert_int_equal(sb_journal_open("/proc/no/such/dir", 1024, &j, &err), SB_EIO);
  assert_null(j);
  assert_non_null(strstr(err.msg, "replay_dir"));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_encode_decode),
    cmocka_unit_test_setup_teardown(test_append_and_replay_in_order, make_dir, remove_dir),
    cmocka_unit_test_setup_teardown(test_rotation_keeps_latest, make_dir, remove_dir),
    cmocka_unit_test_setup_teardown(test_torn_end_is_cut, make_dir, remove_dir),
    cmocka_unit_test(test_open_fails_with_the_option_named),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
