/* Unit tests of journal.c: the record format and its checksums, walking
 * damage, reading back in order, rotation, a torn end, damage in the middle
 * and at the end, a sparse file, a journal of the earlier format, symbolic
 * links, and the check of each record as a live event. Files live in a fresh
 * directory under /tmp. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "event.h"
#include "journal.h"

static struct sb_journal_rec rec(const char *user, const char *channel, const char *id,
                                 const char *json, unsigned flags)
{
  struct sb_journal_rec r = {flags, user, channel, id, json,
                             strlen(user), strlen(channel), strlen(id), strlen(json)};
  return r;
}

/* What sb_journal_replay() hands out, as "user|channel|id|json|flags". */
struct seen {
  char lines[64][160];
  int n;
};

static void collect(void *ctx, const struct sb_journal_rec *r)
{
  struct seen *s = ctx;
  if (s->n < 64)
    snprintf(s->lines[s->n], sizeof(s->lines[0]), "%.*s|%.*s|%.*s|%.*s|%u", (int)r->user_len,
             r->user, (int)r->channel_len, r->channel, (int)r->id_len, r->id, (int)r->json_len,
             r->json, r->flags);
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
  char *dir = *state, path[512];
  DIR *d = opendir(dir);
  struct dirent *e;

  while (d && (e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
      snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
      unlink(path);
    }
  if (d)
    closedir(d);
  rmdir(dir);
  free(dir);
  return 0;
}

static void path_of(char *out, size_t n, const char *dir, const char *name)
{
  snprintf(out, n, "%s/%s", dir, name);
}

static long file_size(const char *path)
{
  struct stat st;
  return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* Opens dir's journal and reads it back into seen. */
static struct sb_journal *reopen(const char *dir, size_t rotate, struct seen *seen,
                                 struct sb_journal_stats *st)
{
  struct sb_journal *j;
  struct sb_err err = {""};

  if (sb_journal_open(dir, rotate, &j, &err) != 0)
    fail_msg("open: %s", err.msg);
  seen->n = 0;
  if (sb_journal_replay(j, collect, seen, st, &err) != 0)
    fail_msg("replay: %s", err.msg);
  return j;
}

/* Appends n records of user u1, ids e00.., json {"n":"00"}..: all of one
 * length. */
static void append_n(struct sb_journal *j, int from, int n)
{
  char id[16], json[32];
  struct sb_journal_rec r;

  for (int i = from; i < from + n; i++) {
    snprintf(id, sizeof(id), "e%02d", i);
    snprintf(json, sizeof(json), "{\"n\":\"%02d\"}", i);
    r = rec("u1", "timer", id, json, 0);
    assert_int_equal(sb_journal_append(j, &r), 0);
  }
}

/* ---- the format ------------------------------------------------------------ */

static void test_crc32c(void **state)
{
  (void)state;
  assert_int_equal(sb_journal_crc32c(0, "123456789", 9), 0xe3069283u); /* the check value */
  assert_int_equal(sb_journal_crc32c(sb_journal_crc32c(0, "1234", 4), "56789", 5), 0xe3069283u);
  assert_int_equal(sb_journal_crc32c(0, "", 0), 0);
}

static void test_encode_and_next(void **state)
{
  struct sb_journal_rec in = rec("u1", "timer", "1700-1", "{\"type\":\"x\"}", 0);
  struct sb_journal_step st;
  char buf[256], two[512];
  long n;

  (void)state;
  n = sb_journal_encode(&in, NULL, 0);
  assert_int_equal(n, SB_JOURNAL_HEAD + 2 + 5 + 6 + 12);
  assert_int_equal(sb_journal_encode(&in, buf, sizeof(buf)), n);
  assert_memory_equal(buf, "\xff\xfeJR", 4);
  sb_journal_next(buf, (size_t)n, 1, &st);
  assert_int_equal(st.found, SB_JOURNAL_RECORD);
  assert_int_equal(st.len, n);
  assert_memory_equal(st.rec.user, "u1", 2);
  assert_memory_equal(st.rec.channel, "timer", 5);
  assert_memory_equal(st.rec.id, "1700-1", 6);
  assert_int_equal(st.rec.json_len, 12);
  assert_int_equal(st.rec.flags, 0);
  /* every shorter prefix: more is needed, or at the end a torn record */
  for (long i = 1; i < n; i++) {
    sb_journal_next(buf, (size_t)i, 0, &st);
    assert_int_equal(st.found, SB_JOURNAL_MORE);
    assert_true(st.len > (size_t)i && st.len <= (size_t)n);
    sb_journal_next(buf, (size_t)i, 1, &st);
    assert_int_equal(st.found, SB_JOURNAL_TORN);
    assert_int_equal(st.len, i);
  }
  sb_journal_next(buf, 0, 1, &st);
  assert_int_equal(st.found, SB_JOURNAL_END);

  /* junk before a record is skipped up to its mark */
  memcpy(two, "junk\xff junk", 10);
  memcpy(two + 10, buf, (size_t)n);
  sb_journal_next(two, 10 + (size_t)n, 1, &st);
  assert_int_equal(st.found, SB_JOURNAL_SKIP);
  assert_int_equal(st.len, 10);
  assert_int_equal(st.at_mark, 0);
  /* a mark cut by the end of the bytes: stop before it, unless at the end */
  sb_journal_next(two, 12, 0, &st);
  assert_int_equal(st.found, SB_JOURNAL_SKIP);
  assert_int_equal(st.len, 10);
  sb_journal_next(two + 10, 2, 0, &st);
  assert_int_equal(st.found, SB_JOURNAL_MORE);

  /* a damaged length: the head's checksum fails, one byte is skipped */
  buf[12] ^= 0x40;
  sb_journal_next(buf, (size_t)n, 1, &st);
  assert_int_equal(st.found, SB_JOURNAL_SKIP);
  assert_int_equal(st.len, 1);
  assert_int_equal(st.at_mark, 1);
  buf[12] ^= 0x40;
  /* a damaged body: the body's checksum fails */
  buf[n - 3] ^= 1;
  sb_journal_next(buf, (size_t)n, 1, &st);
  assert_int_equal(st.found, SB_JOURNAL_SKIP);
  assert_int_equal(st.at_mark, 1);
  buf[n - 3] ^= 1;
  /* a head that holds but claims bytes past the end is a torn record when
   * it is the last thing, damage when another record follows */
  {
    char json[100], big[256];
    struct sb_journal_rec b = rec("u1", "timer", "1700-2", "", 0);
    memset(json, 'a', sizeof(json));
    b.json = json;
    b.json_len = sizeof(json);
    assert_true(sb_journal_encode(&b, big, sizeof(big)) > 40);
    memcpy(two, big, 40);
    memcpy(two + 40, buf, (size_t)n);
    sb_journal_next(two, 40, 1, &st);
    assert_int_equal(st.found, SB_JOURNAL_TORN);
    assert_int_equal(st.len, 40);
    sb_journal_next(two, 40 + (size_t)n, 1, &st);
    assert_int_equal(st.found, SB_JOURNAL_SKIP);
    assert_int_equal(st.len, 1);
    assert_int_equal(st.at_mark, 1);
    sb_journal_next(two + 1, 39 + (size_t)n, 1, &st);
    assert_int_equal(st.found, SB_JOURNAL_SKIP);
    assert_int_equal(st.len, 39);
  }

  /* nothing empty, too long or unknown is written */
  in = rec("", "c", "1", "{}", 0);
  assert_int_equal(sb_journal_encode(&in, buf, sizeof(buf)), SB_EINVAL);
  in = rec("u", "", "1", "{}", 0);
  assert_int_equal(sb_journal_encode(&in, buf, sizeof(buf)), SB_EINVAL);
  in = rec("u", "c", "", "{}", 0);
  assert_int_equal(sb_journal_encode(&in, buf, sizeof(buf)), SB_EINVAL);
  in = rec("u", "c", "1", "", 0);
  assert_int_equal(sb_journal_encode(&in, buf, sizeof(buf)), SB_EINVAL);
  in = rec("u", "c", "1", "{}", 8);
  assert_int_equal(sb_journal_encode(&in, buf, sizeof(buf)), SB_EINVAL);
  in = rec("u", "c", "1", "{}", 0);
  in.user_len = 70000;
  assert_int_equal(sb_journal_encode(&in, NULL, 0), SB_EINVAL);
}

/* ---- files ----------------------------------------------------------------- */

static void test_append_and_replay_in_order(void **state)
{
  const char *dir = *state;
  struct sb_journal *j;
  struct sb_journal_rec r;
  struct sb_journal_stats st;
  struct seen seen = {0};
  char path[256], head[8];
  int fd;

  j = reopen(dir, 1 << 20, &seen, &st);
  assert_int_equal(st.records, 0);
  assert_int_equal(seen.n, 0);
  r = rec("u1", "timer", "e1", "{\"a\":1}", 0);
  assert_int_equal(sb_journal_append(j, &r), 0);
  r = rec("u2", "chat", "pub-7", "{\"a\":2}", SB_JOURNAL_PUBLISHER_ID);
  assert_int_equal(sb_journal_append(j, &r), 0);
  sb_journal_close(j);

  /* the file starts with the magic */
  path_of(path, sizeof(path), dir, SB_JOURNAL_FILE);
  fd = open(path, O_RDONLY);
  assert_int_equal(read(fd, head, 8), 8);
  close(fd);
  assert_memory_equal(head, SB_JOURNAL_MAGIC, 8);

  j = reopen(dir, 1 << 20, &seen, &st);
  assert_int_equal(st.records, 2);
  assert_int_equal(st.damaged + st.damaged_bytes + st.cut_bytes + st.torn_bytes, 0);
  assert_string_equal(seen.lines[0], "u1|timer|e1|{\"a\":1}|0");
  assert_string_equal(seen.lines[1], "u2|chat|pub-7|{\"a\":2}|1");
  /* appends after a reopen follow the earlier records */
  r = rec("u1", "timer", "e3", "{\"a\":3}", 0);
  assert_int_equal(sb_journal_append(j, &r), 0);
  sb_journal_close(j);
  j = reopen(dir, 1 << 20, &seen, &st);
  assert_int_equal(seen.n, 3);
  assert_string_equal(seen.lines[2], "u1|timer|e3|{\"a\":3}|0");
  sb_journal_close(j);
}

static void test_rotation_keeps_latest(void **state)
{
  const char *dir = *state;
  struct sb_journal *j;
  struct sb_journal_rec r = rec("u1", "timer", "e00", "{\"n\":\"00\"}", 0);
  struct sb_journal_stats st;
  struct seen seen = {0};
  char id[16], path[256], head[8];
  size_t one = (size_t)sb_journal_encode(&r, NULL, 0), limit = SB_JOURNAL_MAGIC_LEN + 4 * one;
  int fd;

  /* a file holds 4 records: 10 appends leave the last 2 in the new file and
   * the 4 before them in the old one */
  j = reopen(dir, limit, &seen, &st);
  append_n(j, 0, 10);
  sb_journal_close(j);
  j = reopen(dir, limit, &seen, &st);
  assert_int_equal(st.records, 6);
  assert_int_equal(st.damaged, 0);
  for (int i = 0; i < 6; i++) {
    snprintf(id, sizeof(id), "u1|timer|e%02d|", i + 4);
    assert_memory_equal(seen.lines[i], id, strlen(id));
  }
  /* both files start with the magic, and the new one keeps it after a reopen */
  path_of(path, sizeof(path), dir, SB_JOURNAL_OLD);
  assert_int_equal(file_size(path), (long)limit);
  fd = open(path, O_RDONLY);
  assert_int_equal(read(fd, head, 8), 8);
  close(fd);
  assert_memory_equal(head, SB_JOURNAL_MAGIC, 8);
  append_n(j, 10, 3);
  sb_journal_close(j);
  j = reopen(dir, limit, &seen, &st);
  assert_int_equal(st.records, 5);
  assert_memory_equal(seen.lines[0], "u1|timer|e08|", 13);
  assert_memory_equal(seen.lines[4], "u1|timer|e12|", 13);
  sb_journal_close(j);
}

static void test_torn_end_is_cut(void **state)
{
  const char *dir = *state;
  struct sb_journal *j;
  struct sb_journal_rec r = rec("u1", "timer", "e1", "{\"a\":1}", 0);
  struct sb_journal_stats st;
  struct seen seen = {0};
  char path[256], whole[128];
  long n = sb_journal_encode(&r, whole, sizeof(whole)), before;
  int fd;

  j = reopen(dir, 1 << 20, &seen, &st);
  assert_int_equal(sb_journal_append(j, &r), 0);
  sb_journal_close(j);
  /* a crash in the middle of the next write */
  path_of(path, sizeof(path), dir, SB_JOURNAL_FILE);
  before = file_size(path);
  fd = open(path, O_WRONLY | O_APPEND);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, whole, (size_t)n - 5), n - 5);
  close(fd);

  j = reopen(dir, 1 << 20, &seen, &st);
  assert_int_equal(st.records, 1);
  assert_int_equal(st.torn_bytes, n - 5);
  assert_int_equal(st.cut_bytes, n - 5);
  assert_int_equal(st.damaged, 0);
  assert_int_equal(file_size(path), before);
  r = rec("u1", "timer", "e2", "{\"a\":2}", 0);
  assert_int_equal(sb_journal_append(j, &r), 0);
  sb_journal_close(j);
  j = reopen(dir, 1 << 20, &seen, &st);
  assert_int_equal(st.records, 2);
  assert_int_equal(st.torn_bytes + st.damaged, 0);
  assert_string_equal(seen.lines[1], "u1|timer|e2|{\"a\":2}|0");
  sb_journal_close(j);
}

/* Returns the file offset of record i (of records all one bytes long). */
static off_t at_record(int i, size_t one)
{
  return (off_t)(SB_JOURNAL_MAGIC_LEN + (size_t)i * one);
}

static void test_damage_in_the_middle_loses_only_it(void **state)
{
  const char *dir = *state;
  struct sb_journal *j;
  struct sb_journal_stats st;
  struct sb_journal_rec r = rec("u1", "timer", "e00", "{\"n\":\"00\"}", 0);
  struct seen seen = {0};
  size_t one = (size_t)sb_journal_encode(&r, NULL, 0);
  char path[256], zeros[200] = {0}, b;
  int fd;

  j = reopen(dir, 1 << 20, &seen, &st);
  append_n(j, 0, 45);
  sb_journal_close(j);
  path_of(path, sizeof(path), dir, SB_JOURNAL_FILE);
  fd = open(path, O_RDWR);
  assert_true(fd >= 0);
  /* record 20's json length grows by 0x4000 */
  assert_int_equal(pread(fd, &b, 1, at_record(20, one) + 13), 1);
  b ^= 0x40;
  assert_int_equal(pwrite(fd, &b, 1, at_record(20, one) + 13), 1);
  close(fd);

  j = reopen(dir, 1 << 20, &seen, &st);
  assert_int_equal(st.records, 44);
  assert_int_equal(st.damaged, 1);
  assert_int_equal(st.damaged_bytes, one);
  assert_int_equal(st.cut_bytes, 0);
  assert_memory_equal(seen.lines[19], "u1|timer|e19|", 13);
  assert_memory_equal(seen.lines[20], "u1|timer|e21|", 13);
  assert_memory_equal(seen.lines[43], "u1|timer|e44|", 13);
  sb_journal_close(j);

  /* zeros over records 30 to 33 and their marks lose those four (counted as
   * one: with the marks gone, the count is "at least"); a flipped bit in
   * record 40's body loses it alone; record 20 is still damaged */
  fd = open(path, O_RDWR);
  assert_int_equal(pwrite(fd, zeros, 3 * one + 5, at_record(30, one) + 2), (ssize_t)(3 * one + 5));
  assert_int_equal(pread(fd, &b, 1, at_record(40, one) + SB_JOURNAL_HEAD + 1), 1);
  b ^= 1;
  assert_int_equal(pwrite(fd, &b, 1, at_record(40, one) + SB_JOURNAL_HEAD + 1), 1);
  close(fd);
  j = reopen(dir, 1 << 20, &seen, &st);
  assert_int_equal(st.records, 39);
  assert_int_equal(st.damaged, 3);
  assert_int_equal(st.damaged_bytes, 6 * one);
  assert_memory_equal(seen.lines[28], "u1|timer|e29|", 13);
  assert_memory_equal(seen.lines[29], "u1|timer|e34|", 13);
  assert_memory_equal(seen.lines[34], "u1|timer|e39|", 13);
  assert_memory_equal(seen.lines[35], "u1|timer|e41|", 13);
  sb_journal_close(j);
}

static void test_damage_at_the_end_is_cut(void **state)
{
  const char *dir = *state;
  struct sb_journal *j;
  struct sb_journal_stats st;
  struct seen seen = {0};
  char path[256], junk[100];
  long before;
  int fd;

  j = reopen(dir, 1 << 20, &seen, &st);
  append_n(j, 0, 3);
  sb_journal_close(j);
  path_of(path, sizeof(path), dir, SB_JOURNAL_FILE);
  before = file_size(path);
  memset(junk, 'x', sizeof(junk));
  fd = open(path, O_WRONLY | O_APPEND);
  assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
  close(fd);
  j = reopen(dir, 1 << 20, &seen, &st);
  assert_int_equal(st.records, 3);
  assert_int_equal(st.damaged, 1);
  assert_int_equal(st.damaged_bytes, 100);
  assert_int_equal(st.cut_bytes, 100);
  assert_int_equal(st.torn_bytes, 0);
  assert_int_equal(file_size(path), before);
  sb_journal_close(j);
}

static long max_rss_kb(void)
{
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

static void test_sparse_file_is_streamed(void **state)
{
  const char *dir = *state;
  struct sb_journal *j;
  struct sb_journal_stats st;
  struct sb_journal_rec r = rec("u1", "timer", "e99", "{\"n\":\"99\"}", 0);
  struct seen seen = {0};
  char path[256], buf[128];
  long n = sb_journal_encode(&r, buf, sizeof(buf)), rss;
  off_t gib = 1L << 30, size;
  struct timespec t0, t1;
  int fd;

  j = reopen(dir, 1 << 20, &seen, &st);
  append_n(j, 0, 3);
  sb_journal_close(j);
  /* a hole of 1 GiB, then a record */
  path_of(path, sizeof(path), dir, SB_JOURNAL_FILE);
  fd = open(path, O_WRONLY);
  size = lseek(fd, 0, SEEK_END);
  assert_int_equal(pwrite(fd, buf, (size_t)n, size + gib), n);
  close(fd);

  rss = max_rss_kb();
  clock_gettime(CLOCK_MONOTONIC, &t0);
  j = reopen(dir, 1 << 20, &seen, &st);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  assert_int_equal(st.records, 4);
  assert_memory_equal(seen.lines[3], "u1|timer|e99|", 13);
  assert_int_equal(st.damaged, 1);
  assert_int_equal(st.damaged_bytes, (size_t)gib);
  assert_true(max_rss_kb() - rss < 16 * 1024);
  assert_true((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 < 2000);
  sb_journal_close(j);

  /* a sparse file of 1 GiB and nothing else is no journal: moved aside */
  unlink(path);
  fd = open(path, O_WRONLY | O_CREAT, 0640);
  assert_int_equal(ftruncate(fd, gib), 0);
  close(fd);
  j = reopen(dir, 1 << 20, &seen, &st);
  assert_int_equal(st.records, 0);
  assert_int_equal(st.aside[1], 1);
  assert_true(max_rss_kb() - rss < 16 * 1024);
  assert_int_equal(file_size(path), SB_JOURNAL_MAGIC_LEN);
  sb_journal_close(j);
}

static void test_old_format_is_moved_aside(void **state)
{
  const char *dir = *state;
  struct sb_journal *j;
  struct sb_journal_stats st;
  struct seen seen = {0};
  char path[256], aside[300], opath[256];
  /* two records of the first format: u32 body length, flags, four u16
   * lengths, u32 json length, then the bytes */
  static const char v1[] = "\x1d\0\0\0" "\0" "\x02\0" "\x02\0" "\0\0" "\0\0" "\x0c\0\0\0"
                           "u1" "e1" "{\"type\":\"x\"}";
  int fd;

  path_of(path, sizeof(path), dir, SB_JOURNAL_FILE);
  path_of(opath, sizeof(opath), dir, SB_JOURNAL_OLD);
  snprintf(aside, sizeof(aside), "%s" SB_JOURNAL_ASIDE, path);
  fd = open(path, O_WRONLY | O_CREAT, 0640);
  assert_int_equal(write(fd, v1, sizeof(v1) - 1), (ssize_t)sizeof(v1) - 1);
  assert_int_equal(write(fd, v1, sizeof(v1) - 1), (ssize_t)sizeof(v1) - 1);
  close(fd);
  fd = open(opath, O_WRONLY | O_CREAT, 0640);
  assert_int_equal(write(fd, v1, sizeof(v1) - 1), (ssize_t)sizeof(v1) - 1);
  close(fd);

  j = reopen(dir, 1 << 20, &seen, &st);
  assert_int_equal(st.records, 0);
  assert_int_equal(st.aside[0], 1);
  assert_int_equal(st.aside[1], 1);
  assert_int_equal(file_size(aside), 2 * (long)(sizeof(v1) - 1));
  snprintf(aside, sizeof(aside), "%s" SB_JOURNAL_ASIDE, opath);
  assert_int_equal(file_size(aside), (long)(sizeof(v1) - 1));
  assert_int_equal(file_size(opath), -1);
  append_n(j, 0, 2);
  sb_journal_close(j);
  j = reopen(dir, 1 << 20, &seen, &st);
  assert_int_equal(st.records, 2);
  assert_int_equal(st.aside[0] + st.aside[1], 0);
  sb_journal_close(j);
}

static void test_links_and_odd_files_are_refused(void **state)
{
  const char *dir = *state;
  struct sb_journal *j = NULL;
  struct sb_err err = {""};
  char path[256], target[256];
  int fd;

  path_of(target, sizeof(target), dir, "elsewhere");
  fd = open(target, O_WRONLY | O_CREAT, 0640);
  close(fd);
  path_of(path, sizeof(path), dir, SB_JOURNAL_FILE);
  assert_int_equal(symlink(target, path), 0);
  assert_int_equal(sb_journal_open(dir, 1024, &j, &err), SB_EIO);
  assert_null(j);
  assert_non_null(strstr(err.msg, "replay_dir"));
  assert_non_null(strstr(err.msg, "symbolic link"));
  assert_int_equal(file_size(target), 0); /* nothing written through it */
  unlink(path);

  /* a dangling link is refused the same way, not followed to create */
  unlink(target);
  assert_int_equal(symlink(target, path), 0);
  assert_int_equal(sb_journal_open(dir, 1024, &j, &err), SB_EIO);
  assert_non_null(strstr(err.msg, "symbolic link"));
  assert_int_equal(file_size(target), -1);
  unlink(path);

  /* a link at the old file's name, and a FIFO (which would block) */
  path_of(path, sizeof(path), dir, SB_JOURNAL_OLD);
  assert_int_equal(symlink(target, path), 0);
  assert_int_equal(sb_journal_open(dir, 1024, &j, &err), SB_EIO);
  assert_non_null(strstr(err.msg, "replay_dir"));
  assert_non_null(strstr(err.msg, "symbolic link"));
  unlink(path);
  path_of(path, sizeof(path), dir, SB_JOURNAL_FILE);
  assert_int_equal(mkfifo(path, 0600), 0);
  assert_int_equal(sb_journal_open(dir, 1024, &j, &err), SB_EIO);
  assert_non_null(strstr(err.msg, "not a regular file"));
  unlink(path);
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

/* ---- records checked as live events ---------------------------------------- */

/* Checks rec as the bridge does; returns 0 or the drop reason. */
static int check(const char *user, const char *channel, const char *id, const char *json,
                 unsigned flags, struct sb_event *ev)
{
  struct sb_journal_rec r = rec(user, channel, id, json, flags);
  struct sb_event_error why;
  int rc = sb_journal_event(&r, "sync", 1024, ev, &why);

  if (rc == 0)
    return 0;
  assert_int_equal(rc, SB_EINVAL);
  assert_true(why.reason != SB_DROP_NONE && why.text[0]);
  assert_null(ev->json);
  return (int)why.reason;
}

static void test_records_are_checked_as_live_events(void **state)
{
  struct sb_event ev;
  char big[1200];

  (void)state;
  /* a stored event, with an id of the bridge or of the publisher */
  assert_int_equal(check("u1", "timer", "1700-1",
                         "{\"type\":\"t\",\"payload\":1,\"channel\":\"timer\","
                         "\"timestamp\":\"2026-01-01T00:00:00.000Z\",\"sourceDeviceId\":\"d1\"}",
                         0, &ev), 0);
  assert_string_equal(ev.user, "u1");
  assert_string_equal(ev.id, "1700-1");
  assert_string_equal(ev.source, "d1");
  assert_null(strchr(ev.json, '\n'));
  sb_event_clear(&ev);
  assert_int_equal(check("u1", "timer", "p-1", "{\"type\":\"t\",\"payload\":1,\"id\":\"p-1\"}",
                         SB_JOURNAL_PUBLISHER_ID, &ev), 0);
  assert_string_equal(ev.id, "p-1");
  sb_event_clear(&ev);
  /* lines in the json are only JSON whitespace: it comes out on one line */
  assert_int_equal(check("u1", "timer", "1-1", "{\"type\":\"t\",\n\"payload\":\"x\"}", 0, &ev), 0);
  assert_null(strchr(ev.json, '\n'));
  sb_event_clear(&ev);

  /* crafted records: lines injected through the id, the json, a device */
  assert_int_equal(check("u1", "timer", "1\n\nevent: evil\ndata: {}",
                         "{\"type\":\"t\",\"payload\":1}", 0, &ev), SB_DROP_BAD_ID);
  assert_int_equal(check("u1", "timer", "1-1", "{\"type\":\"t\",\"payload\":1}\n\nevent: evil\ndata: x",
                         0, &ev), SB_DROP_NOT_JSON);
  assert_int_equal(check("u1", "timer", "1-1", "data: x", 0, &ev), SB_DROP_NOT_JSON);
  assert_int_equal(check("u1", "timer", "1-1",
                         "{\"type\":\"t\",\"payload\":1,\"targetDeviceId\":\"a\\nevent: x\"}", 0,
                         &ev), SB_DROP_BAD_ID);
  /* what intake refuses: not an object, no type, another channel, a bad
   * timestamp, too large */
  assert_int_equal(check("u1", "timer", "1-1", "[1]", 0, &ev), SB_DROP_NOT_OBJECT);
  assert_int_equal(check("u1", "timer", "1-1", "{\"payload\":1}", 0, &ev), SB_DROP_MISSING_TYPE);
  assert_int_equal(check("u1", "timer", "1-1", "{\"type\":\"t\",\"payload\":1,\"channel\":\"chat\"}",
                         0, &ev), SB_DROP_CHANNEL_MISMATCH);
  assert_int_equal(check("u1", "timer", "1-1", "{\"type\":\"t\",\"payload\":1,\"timestamp\":\"soon\"}",
                         0, &ev), SB_DROP_BAD_TIMESTAMP);
  memset(big, ' ', sizeof(big));
  memcpy(big, "{\"type\":\"t\",\"payload\":1}", 24);
  big[sizeof(big) - 1] = '\0';
  assert_int_equal(check("u1", "timer", "1-1", big, 0, &ev), SB_DROP_TOO_LARGE);
  /* a user or channel that is not one topic level */
  assert_int_equal(check("u1/x", "timer", "1-1", "{\"type\":\"t\",\"payload\":1}", 0, &ev),
                   SB_DROP_BAD_TOPIC);
  assert_int_equal(check("u1", "a/b", "1-1", "{\"type\":\"t\",\"payload\":1}", 0, &ev),
                   SB_DROP_BAD_TOPIC);
  assert_int_equal(check("u+", "timer", "1-1", "{\"type\":\"t\",\"payload\":1}", 0, &ev),
                   SB_DROP_BAD_TOPIC);
  /* ids that disagree with the event */
  assert_int_equal(check("u1", "timer", "p-2", "{\"type\":\"t\",\"payload\":1,\"id\":\"p-1\"}",
                         SB_JOURNAL_PUBLISHER_ID, &ev), SB_DROP_BAD_ID);
  assert_int_equal(check("u1", "timer", "p-2", "{\"type\":\"t\",\"payload\":1}",
                         SB_JOURNAL_PUBLISHER_ID, &ev), SB_DROP_BAD_ID);
  assert_int_equal(check("u1", "timer", "1-1", "{\"type\":\"t\",\"payload\":1,\"id\":\"p-1\"}", 0,
                         &ev), SB_DROP_BAD_ID);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_crc32c),
    cmocka_unit_test(test_encode_and_next),
    cmocka_unit_test_setup_teardown(test_append_and_replay_in_order, make_dir, remove_dir),
    cmocka_unit_test_setup_teardown(test_rotation_keeps_latest, make_dir, remove_dir),
    cmocka_unit_test_setup_teardown(test_torn_end_is_cut, make_dir, remove_dir),
    cmocka_unit_test_setup_teardown(test_damage_in_the_middle_loses_only_it, make_dir, remove_dir),
    cmocka_unit_test_setup_teardown(test_damage_at_the_end_is_cut, make_dir, remove_dir),
    cmocka_unit_test_setup_teardown(test_sparse_file_is_streamed, make_dir, remove_dir),
    cmocka_unit_test_setup_teardown(test_old_format_is_moved_aside, make_dir, remove_dir),
    cmocka_unit_test_setup_teardown(test_links_and_odd_files_are_refused, make_dir, remove_dir),
    cmocka_unit_test(test_open_fails_with_the_option_named),
    cmocka_unit_test(test_records_are_checked_as_live_events),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
