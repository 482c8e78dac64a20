/* Unit tests of topic.c: sb_topic_split and sb_topic_valid_level. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "err.h"
#include "topic.h"

/* Splits a NUL-terminated topic; returns the result code. */
static int split(const char *prefix, const char *topic, struct sb_topic *t)
{
  memset(t, 0, sizeof(*t));
  return sb_topic_split(prefix, topic, strlen(topic), t);
}

static void assert_span(const char *s, size_t len, const char *want)
{
  assert_int_equal(len, strlen(want));
  assert_memory_equal(s, want, len);
}

static void test_split_good(void **state)
{
  struct sb_topic t;
  (void)state;

  assert_int_equal(split("sync", "sync/u1/timer", &t), 0);
  assert_span(t.user, t.user_len, "u1");
  assert_span(t.channel, t.channel_len, "timer");

  assert_int_equal(split("sync", "sync/user-42@example.com/notes.v2", &t), 0);
  assert_span(t.user, t.user_len, "user-42@example.com");
  assert_span(t.channel, t.channel_len, "notes.v2");

  /* one-character levels */
  assert_int_equal(split("sync", "sync/a/b", &t), 0);
  assert_span(t.user, t.user_len, "a");
  assert_span(t.channel, t.channel_len, "b");

  /* spans point into the caller's string */
  const char *topic = "sync/abc/def";
  assert_int_equal(sb_topic_split("sync", topic, strlen(topic), &t), 0);
  assert_ptr_equal(t.user, topic + 5);
  assert_ptr_equal(t.channel, topic + 9);
}

static void test_split_multilevel_prefix(void **state)
{
  struct sb_topic t;
  (void)state;

  assert_int_equal(split("app/sync", "app/sync/u1/timer", &t), 0);
  assert_span(t.user, t.user_len, "u1");
  assert_span(t.channel, t.channel_len, "timer");

  assert_int_equal(split("a/b/c", "a/b/c/u/ch", &t), 0);
  assert_span(t.user, t.user_len, "u");
  assert_span(t.channel, t.channel_len, "ch");

  /* the prefix's levels must all be there */
  assert_int_equal(split("app/sync", "app/u1/timer", &t), SB_EINVAL);
  assert_int_equal(split("app/sync", "sync/u1/timer", &t), SB_EINVAL);
  assert_int_equal(split("app/sync", "app/sync/u1", &t), SB_EINVAL);
}

static void test_split_not_nul_terminated(void **state)
{
  struct sb_topic t;
  char buf[32];
  (void)state;

  /* topic_len bytes only: whatever follows is not part of the topic */
  memcpy(buf, "sync/u1/timerXXXX", 17);
  assert_int_equal(sb_topic_split("sync", buf, 13, &t), 0);
  assert_span(t.user, t.user_len, "u1");
  assert_span(t.channel, t.channel_len, "timer");

  /* a shorter length cuts the channel */
  assert_int_equal(sb_topic_split("sync", buf, 9, &t), 0);
  assert_span(t.channel, t.channel_len, "t");
  /* ...and one that ends at the second slash leaves it empty */
  assert_int_equal(sb_topic_split("sync", buf, 8, &t), SB_EINVAL);
}

static void test_split_wrong_prefix(void **state)
{
  struct sb_topic t;
  (void)state;

  assert_int_equal(split("sync", "other/u1/timer", &t), SB_EINVAL);
  assert_int_equal(split("sync", "Sync/u1/timer", &t), SB_EINVAL);
  assert_int_equal(split("sync", "syn/u1/timer", &t), SB_EINVAL);
  /* the prefix must be followed by a slash, not just start the topic */
  assert_int_equal(split("sync", "syncx/u1/timer", &t), SB_EINVAL);
  assert_int_equal(split("sync", "syncxu1/timer", &t), SB_EINVAL);
  assert_int_equal(split("sync", "sync_u1/timer", &t), SB_EINVAL);
  assert_int_equal(split("sync", "sync", &t), SB_EINVAL);
  assert_int_equal(split("sync", "sync/", &t), SB_EINVAL);
  assert_int_equal(split("sync", "/sync/u1/timer", &t), SB_EINVAL);
  assert_int_equal(split("sync", "", &t), SB_EINVAL);
}

static void test_split_level_count(void **state)
{
  struct sb_topic t;
  (void)state;

  /* too few */
  assert_int_equal(split("sync", "sync/u1", &t), SB_EINVAL);
  assert_int_equal(split("sync", "sync/u1/", &t), SB_EINVAL);
  /* too many */
  assert_int_equal(split("sync", "sync/u1/timer/extra", &t), SB_EINVAL);
  assert_int_equal(split("sync", "sync/u1/timer/", &t), SB_EINVAL);
  assert_int_equal(split("sync", "sync/u1/a/b/c", &t), SB_EINVAL);
}

static void test_split_empty_levels(void **state)
{
  struct sb_topic t;
  (void)state;

  assert_int_equal(split("sync", "sync//timer", &t), SB_EINVAL);
  assert_int_equal(split("sync", "sync/u1/", &t), SB_EINVAL);
  assert_int_equal(split("sync", "sync//", &t), SB_EINVAL);
  assert_int_equal(split("sync", "sync///", &t), SB_EINVAL);
}

static void test_split_wildcards(void **state)
{
  struct sb_topic t;
  (void)state;

  assert_int_equal(split("sync", "sync/+/timer", &t), SB_EINVAL);
  assert_int_equal(split("sync", "sync/u1/+", &t), SB_EINVAL);
  assert_int_equal(split("sync", "sync/u1/#", &t), SB_EINVAL);
  assert_int_equal(split("sync", "sync/#", &t), SB_EINVAL);
  assert_int_equal(split("sync", "sync/u+1/timer", &t), SB_EINVAL);
  assert_int_equal(split("sync", "sync/u1/ti#mer", &t), SB_EINVAL);
}

static void test_split_control_chars(void **state)
{
  struct sb_topic t;
  (void)state;

  assert_int_equal(split("sync", "sync/u\x01/timer", &t), SB_EINVAL);
  assert_int_equal(split("sync", "sync/u1/tim\ner", &t), SB_EINVAL);
  assert_int_equal(split("sync", "sync/u1/timer\r", &t), SB_EINVAL);
  assert_int_equal(split("sync", "sync/u\x7f/timer", &t), SB_EINVAL);
  assert_int_equal(split("sync", "sync/u\t1/timer", &t), SB_EINVAL);
  /* an embedded NUL inside topic_len */
  assert_int_equal(sb_topic_split("sync", "sync/u\0001/timer", 14, &t), SB_EINVAL);
}

static void test_split_long_levels(void **state)
{
  struct sb_topic t;
  char topic[5 + SB_TOPIC_LEVEL_MAX + 1 + 1 + 8];
  (void)state;

  /* exactly SB_TOPIC_LEVEL_MAX bytes of user: accepted */
  memcpy(topic, "sync/", 5);
  memset(topic + 5, 'u', SB_TOPIC_LEVEL_MAX);
  memcpy(topic + 5 + SB_TOPIC_LEVEL_MAX, "/c", 3);
  assert_int_equal(split("sync", topic, &t), 0);
  assert_int_equal(t.user_len, SB_TOPIC_LEVEL_MAX);
  assert_int_equal(t.channel_len, 1);

  /* one more: refused */
  memset(topic + 5, 'u', SB_TOPIC_LEVEL_MAX + 1);
  memcpy(topic + 5 + SB_TOPIC_LEVEL_MAX + 1, "/c", 3);
  assert_int_equal(split("sync", topic, &t), SB_EINVAL);

  /* the same for the channel */
  memcpy(topic, "sync/u/", 7);
  memset(topic + 7, 'c', SB_TOPIC_LEVEL_MAX);
  topic[7 + SB_TOPIC_LEVEL_MAX] = '\0';
  assert_int_equal(split("sync", topic, &t), 0);
  assert_int_equal(t.channel_len, SB_TOPIC_LEVEL_MAX);
  memset(topic + 7, 'c', SB_TOPIC_LEVEL_MAX + 1);
  topic[7 + SB_TOPIC_LEVEL_MAX + 1] = '\0';
  assert_int_equal(split("sync", topic, &t), SB_EINVAL);
}

static void test_valid_level(void **state)
{
  char big[SB_TOPIC_LEVEL_MAX + 1];
  (void)state;

  assert_int_equal(sb_topic_valid_level("u1", 2), 1);
  assert_int_equal(sb_topic_valid_level("a", 1), 1);
  assert_int_equal(sb_topic_valid_level("user@example.com", 16), 1);
  assert_int_equal(sb_topic_valid_level("with space", 10), 1);
  assert_int_equal(sb_topic_valid_level("caf\xc3\xa9", 5), 1); /* UTF-8 */
  assert_int_equal(sb_topic_valid_level("~!$%&*()", 8), 1);

  assert_int_equal(sb_topic_valid_level("", 0), 0);
  assert_int_equal(sb_topic_valid_level("a/b", 3), 0);
  assert_int_equal(sb_topic_valid_level("+", 1), 0);
  assert_int_equal(sb_topic_valid_level("#", 1), 0);
  assert_int_equal(sb_topic_valid_level("a+", 2), 0);
  assert_int_equal(sb_topic_valid_level("a\x1f", 2), 0);
  assert_int_equal(sb_topic_valid_level("a\x7f", 2), 0);
  assert_int_equal(sb_topic_valid_level("a\0b", 3), 0);
  assert_int_equal(sb_topic_valid_level("a\n", 2), 0);
  /* only len bytes are judged */
  assert_int_equal(sb_topic_valid_level("ab/cd", 2), 1);

  memset(big, 'x', sizeof(big));
  assert_int_equal(sb_topic_valid_level(big, SB_TOPIC_LEVEL_MAX), 1);
  assert_int_equal(sb_topic_valid_level(big, SB_TOPIC_LEVEL_MAX + 1), 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_split_good),
    cmocka_unit_test(test_split_multilevel_prefix),
    cmocka_unit_test(test_split_not_nul_terminated),
    cmocka_unit_test(test_split_wrong_prefix),
    cmocka_unit_test(test_split_level_count),
    cmocka_unit_test(test_split_empty_levels),
    cmocka_unit_test(test_split_wildcards),
    cmocka_unit_test(test_split_control_chars),
    cmocka_unit_test(test_split_long_levels),
    cmocka_unit_test(test_valid_level),
  };
  return cmocka_run_group_tests_name("topic", tests, NULL, NULL);
}
