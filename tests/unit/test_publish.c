/* Unit tests of publish.c: the body of POST /api/publish mapped to the MQTT
 * message the bridge publishes.
 *
 * The C cases cover each outcome: accepted (deviceId becomes sourceDeviceId,
 * the caller's own userId is taken out, the other fields are kept in order),
 * 400 (not an object, deviceId, channel, sourceDeviceId, the event's own
 * checks), 403 (another user's userId) and 413 (the body or the event over
 * max_event_bytes); test_data_cases() then runs the directories of
 * tests/data/publish/ (body, expect, user). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "data_cases.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "publish.h"

#ifndef SB_TEST_DATA
#error "SB_TEST_DATA must name the tests/data directory"
#endif

/* 2025-11-25T10:52:32.123Z, the fixed time of receipt of every case. */
#define NOW_SEC 1764067952
#define NOW_NSEC 123456789L
#define MAX_EVENT 1024

static struct sb_event_rules rules(void)
{
  struct sb_event_rules r;
  memset(&r, 0, sizeof(r));
  r.topic_prefix = "sync";
  r.max_event_bytes = MAX_EVENT;
  r.now.tv_sec = NOW_SEC;
  r.now.tv_nsec = NOW_NSEC;
  return r;
}

static const char *refusal_label(enum sb_publish_refusal r)
{
  switch (r) {
  case SB_PUBLISH_NONE:
    return "none";
  case SB_PUBLISH_BAD_REQUEST:
    return "bad_request";
  case SB_PUBLISH_FORBIDDEN:
    return "forbidden";
  case SB_PUBLISH_TOO_LARGE:
    return "too_large";
  }
  return "unknown";
}

/* Asserts that user's body (len bytes) maps to payload want on topic. */
static void expect_ok_n(const char *user, const char *body, size_t len, const char *topic,
                        const char *want)
{
  struct sb_event_rules r = rules();
  struct sb_publish out;
  struct sb_publish_error why;
  int rc = sb_publish_body(&r, user, body, len, &out, &why);

  if (rc != 0)
    fail_msg("%s: refused (rc %d, %s: %s)", body, rc, refusal_label(why.reason), why.text);
  assert_int_equal(why.reason, SB_PUBLISH_NONE);
  assert_string_equal(out.topic, topic);
  assert_string_equal(out.payload, want);
  assert_int_equal(out.payload_len, strlen(want));
  sb_publish_clear(&out);
  assert_null(out.topic);
  assert_null(out.payload);
}

static void expect_ok(const char *user, const char *body, const char *topic, const char *want)
{
  expect_ok_n(user, body, strlen(body), topic, want);
}

/* Asserts that user's body (len bytes) is refused for reason, with a text
 * holding want_text (when not NULL), and that out holds nothing. */
static void expect_refused_n(const char *user, const char *body, size_t len,
                             enum sb_publish_refusal reason, const char *want_text)
{
  struct sb_event_rules r = rules();
  struct sb_publish out;
  struct sb_publish_error why;
  int rc;

  memset(&out, 0x5a, sizeof(out)); /* the mapping must reset it */
  rc = sb_publish_body(&r, user, body, len, &out, &why);
  if (rc != SB_EINVAL || why.reason != reason)
    fail_msg("%.*s: rc %d %s (%s), want %s", (int)(len > 200 ? 200 : len), body ? body : "(null)",
             rc, refusal_label(why.reason), why.text, refusal_label(reason));
  assert_true(strlen(why.text) > 0);
  if (want_text && !strstr(why.text, want_text))
    fail_msg("%s: text '%s' does not hold '%s'", body, why.text, want_text);
  assert_null(out.topic);
  assert_null(out.payload);
  assert_int_equal(out.payload_len, 0);
}

static void expect_refused(const char *user, const char *body, enum sb_publish_refusal reason,
                           const char *want_text)
{
  expect_refused_n(user, body, strlen(body), reason, want_text);
}

/* ---- accepted -------------------------------------------------------------- */

static void test_ok_device_becomes_source(void **state)
{
  (void)state;
  expect_ok("A", "{\"channel\":\"timer\",\"type\":\"t\",\"payload\":{\"m\":1},\"deviceId\":\"a1\"}",
            "sync/A/timer",
            "{\"channel\":\"timer\",\"type\":\"t\",\"payload\":{\"m\":1},"
            "\"sourceDeviceId\":\"a1\"}");
}

static void test_ok_own_user_id_taken_out(void **state)
{
  (void)state;
  expect_ok("u1",
            "{\"userId\":\"u1\",\"deviceId\":\"d:1\",\"channel\":\"c\",\"type\":\"t\","
            "\"payload\":null}",
            "sync/u1/c",
            "{\"channel\":\"c\",\"type\":\"t\",\"payload\":null,\"sourceDeviceId\":\"d:1\"}");
}

static void test_ok_fields_kept_in_order(void **state)
{
  (void)state;
  /* id, targetDeviceId and timestamp go through as sent; nothing is added
   * but sourceDeviceId (the channel and timestamp are the event's, added by
   * whoever receives it from MQTT) */
  expect_ok("u1",
            "{ \"id\": 7, \"type\": \"moved\", \"payload\": [1, 2], \"targetDeviceId\": \"t.2\",\n"
            "  \"timestamp\": \"2025-01-01T00:00:00Z\", \"deviceId\": \"d_1\",\n"
            "  \"channel\": \"c-1\" }",
            "sync/u1/c-1",
            "{\"id\":7,\"type\":\"moved\",\"payload\":[1,2],\"targetDeviceId\":\"t.2\","
            "\"timestamp\":\"2025-01-01T00:00:00Z\",\"channel\":\"c-1\","
            "\"sourceDeviceId\":\"d_1\"}");
}

static void test_ok_at_the_size_limits(void **state)
{
  struct sb_event_rules r = rules();
  struct sb_publish_error why;
  (void)state;
  assert_int_equal(sb_publish_check_size(&r, 0, &why), 0);
  assert_int_equal(sb_publish_check_size(&r, MAX_EVENT + 1024, &why), 0);
}

/* ---- 400 ------------------------------------------------------------------- */

static void test_refuse_not_an_object(void **state)
{
  (void)state;
  expect_refused("u1", "{nope", SB_PUBLISH_BAD_REQUEST, "not a JSON object");
  expect_refused("u1", "[1]", SB_PUBLISH_BAD_REQUEST, "not a JSON object");
  expect_refused("u1", "\"x\"", SB_PUBLISH_BAD_REQUEST, "not a JSON object");
  expect_refused("u1", "", SB_PUBLISH_BAD_REQUEST, "not a JSON object");
  expect_refused_n("u1", NULL, 0, SB_PUBLISH_BAD_REQUEST, "not a JSON object");
  /* duplicate keys, and a NUL inside a string, are not taken */
  expect_refused("u1", "{\"deviceId\":\"a\",\"deviceId\":\"b\",\"channel\":\"c\"}",
                 SB_PUBLISH_BAD_REQUEST, "not a JSON object");
  expect_refused("u1",
                 "{\"deviceId\":\"a\\u0000b\",\"channel\":\"c\",\"type\":\"t\",\"payload\":1}",
                 SB_PUBLISH_BAD_REQUEST, "not a JSON object");
  expect_refused_n("u1", "{\"channel\":\"c\"}\0", 16, SB_PUBLISH_BAD_REQUEST, "not a JSON object");
}

static void test_refuse_device(void **state)
{
  (void)state;
  expect_refused("u1", "{\"channel\":\"c\",\"type\":\"t\",\"payload\":1}", SB_PUBLISH_BAD_REQUEST,
                 "deviceId");
  expect_refused("u1", "{\"deviceId\":null,\"channel\":\"c\",\"type\":\"t\",\"payload\":1}",
                 SB_PUBLISH_BAD_REQUEST, "deviceId");
  expect_refused("u1", "{\"deviceId\":5,\"channel\":\"c\",\"type\":\"t\",\"payload\":1}",
                 SB_PUBLISH_BAD_REQUEST, "deviceId");
  expect_refused("u1", "{\"deviceId\":\"a b\",\"channel\":\"c\",\"type\":\"t\",\"payload\":1}",
                 SB_PUBLISH_BAD_REQUEST, "deviceId");
  expect_refused("u1", "{\"deviceId\":\"\",\"channel\":\"c\",\"type\":\"t\",\"payload\":1}",
                 SB_PUBLISH_BAD_REQUEST, "deviceId");
}

static void test_refuse_channel(void **state)
{
  (void)state;
  expect_refused("u1", "{\"deviceId\":\"d\",\"type\":\"t\",\"payload\":1}", SB_PUBLISH_BAD_REQUEST,
                 "channel");
  expect_refused("u1", "{\"deviceId\":\"d\",\"channel\":\"a/b\",\"type\":\"t\",\"payload\":1}",
                 SB_PUBLISH_BAD_REQUEST, "channel");
  expect_refused("u1", "{\"deviceId\":\"d\",\"channel\":\"+\",\"type\":\"t\",\"payload\":1}",
                 SB_PUBLISH_BAD_REQUEST, "channel");
  expect_refused("u1", "{\"deviceId\":\"d\",\"channel\":\"#\",\"type\":\"t\",\"payload\":1}",
                 SB_PUBLISH_BAD_REQUEST, "channel");
  expect_refused("u1", "{\"deviceId\":\"d\",\"channel\":\"\",\"type\":\"t\",\"payload\":1}",
                 SB_PUBLISH_BAD_REQUEST, "channel");
  expect_refused("u1", "{\"deviceId\":\"d\",\"channel\":[\"c\"],\"type\":\"t\",\"payload\":1}",
                 SB_PUBLISH_BAD_REQUEST, "channel");
}

static void test_refuse_source_given(void **state)
{
  (void)state;
  expect_refused("u1",
                 "{\"deviceId\":\"d\",\"channel\":\"c\",\"type\":\"t\",\"payload\":1,"
                 "\"sourceDeviceId\":\"x\"}",
                 SB_PUBLISH_BAD_REQUEST, "sourceDeviceId");
  expect_refused("u1",
                 "{\"deviceId\":\"d\",\"channel\":\"c\",\"type\":\"t\",\"payload\":1,"
                 "\"sourceDeviceId\":null}",
                 SB_PUBLISH_BAD_REQUEST, "sourceDeviceId");
}

static void test_refuse_event_checks(void **state)
{
  (void)state;
  expect_refused("u1", "{\"deviceId\":\"d\",\"channel\":\"c\",\"payload\":1}",
                 SB_PUBLISH_BAD_REQUEST, "'type' is missing");
  expect_refused("u1", "{\"deviceId\":\"d\",\"channel\":\"c\",\"type\":\"\",\"payload\":1}",
                 SB_PUBLISH_BAD_REQUEST, "'type'");
  expect_refused("u1", "{\"deviceId\":\"d\",\"channel\":\"c\",\"type\":\"t\"}",
                 SB_PUBLISH_BAD_REQUEST, "'payload' is missing");
  expect_refused("u1",
                 "{\"deviceId\":\"d\",\"channel\":\"c\",\"type\":\"t\",\"payload\":1,"
                 "\"targetDeviceId\":\"a\\nb\"}",
                 SB_PUBLISH_BAD_REQUEST, "targetDeviceId");
  expect_refused("u1",
                 "{\"deviceId\":\"d\",\"channel\":\"c\",\"type\":\"t\",\"payload\":1,"
                 "\"timestamp\":\"yesterday\"}",
                 SB_PUBLISH_BAD_REQUEST, "timestamp");
  /* a user that is no topic level makes no topic */
  expect_refused("a/b", "{\"deviceId\":\"d\",\"channel\":\"c\",\"type\":\"t\",\"payload\":1}",
                 SB_PUBLISH_BAD_REQUEST, "topic");
}

/* ---- 403 ------------------------------------------------------------------- */

static void test_refuse_other_user(void **state)
{
  const char *tail = ",\"deviceId\":\"d\",\"channel\":\"c\",\"type\":\"t\",\"payload\":1}";
  char body[256];
  (void)state;
  snprintf(body, sizeof(body), "{\"userId\":\"B\"%s", tail);
  expect_refused("A", body, SB_PUBLISH_FORBIDDEN, "own events");
  snprintf(body, sizeof(body), "{\"userId\":\"a\"%s", tail); /* case matters */
  expect_refused("A", body, SB_PUBLISH_FORBIDDEN, NULL);
  snprintf(body, sizeof(body), "{\"userId\":null%s", tail);
  expect_refused("A", body, SB_PUBLISH_FORBIDDEN, NULL);
  snprintf(body, sizeof(body), "{\"userId\":1%s", tail);
  expect_refused("A", body, SB_PUBLISH_FORBIDDEN, NULL);
  snprintf(body, sizeof(body), "{\"userId\":\"\"%s", tail);
  expect_refused("A", body, SB_PUBLISH_FORBIDDEN, NULL);
}

static void test_refuse_checks_in_order(void **state)
{
  (void)state;
  /* deviceId before channel before userId before sourceDeviceId */
  expect_refused("A", "{\"userId\":\"B\",\"channel\":\"a/b\"}", SB_PUBLISH_BAD_REQUEST, "deviceId");
  expect_refused("A", "{\"userId\":\"B\",\"deviceId\":\"d\",\"channel\":\"a/b\"}",
                 SB_PUBLISH_BAD_REQUEST, "channel");
  expect_refused("A",
                 "{\"userId\":\"B\",\"deviceId\":\"d\",\"channel\":\"c\",\"sourceDeviceId\":\"x\"}",
                 SB_PUBLISH_FORBIDDEN, NULL);
}

/* ---- 413 ------------------------------------------------------------------- */

static void test_refuse_too_large(void **state)
{
  struct sb_event_rules r = rules();
  struct sb_publish_error why;
  size_t n = MAX_EVENT + 1024 + 1;
  char *body = malloc(n + 1), *big = malloc(MAX_EVENT + 1);
  char event[MAX_EVENT + 200];
  (void)state;

  assert_non_null(body);
  assert_non_null(big);
  /* the body: refused before it is parsed, and by its Content-Length */
  memset(body, ' ', n);
  body[n] = '\0';
  expect_refused_n("u1", body, n, SB_PUBLISH_TOO_LARGE, "max_event_bytes");
  assert_int_equal(sb_publish_check_size(&r, n, &why), SB_EINVAL);
  assert_int_equal(why.reason, SB_PUBLISH_TOO_LARGE);
  assert_int_equal(sb_publish_check_size(&r, (size_t)-1, &why), SB_EINVAL);
  /* the event: the body fits, what it maps to does not */
  memset(big, 'x', MAX_EVENT);
  big[MAX_EVENT] = '\0';
  snprintf(event, sizeof(event),
           "{\"deviceId\":\"d\",\"channel\":\"c\",\"type\":\"t\",\"payload\":\"%s\"}", big);
  expect_refused("u1", event, SB_PUBLISH_TOO_LARGE, "max_event_bytes");
  free(body);
  free(big);
}

static void test_clear(void **state)
{
  struct sb_publish p = {0};
  (void)state;
  sb_publish_clear(&p);
  sb_publish_clear(NULL);
}

/* ---- data-driven cases: tests/data/publish/<case>/ ------------------------- */

/* Runs one case directory. Returns NULL if it passed, else a heap message. */
static char *run_case(const char *dir, const char *name)
{
  char *body = NULL, *expect = NULL, *user = NULL, *msg = NULL, *topic, *payload;
  size_t body_len = 0, expect_len = 0, user_len = 0;
  struct sb_event_rules r = rules();
  struct sb_publish out;
  struct sb_publish_error why;
  int rc;

  if (!(body = slurp(dir, "body", &body_len)) || !(expect = slurp(dir, "expect", &expect_len))) {
    if (asprintf(&msg, "%s: needs files body and expect", name) < 0)
      msg = NULL;
    goto done;
  }
  chomp(expect, &expect_len);
  if ((user = slurp(dir, "user", &user_len)))
    chomp(user, &user_len);

  rc = sb_publish_body(&r, user ? user : "u1", body, body_len, &out, &why);
  topic = strchr(expect, '\n');
  payload = topic ? strchr(topic + 1, '\n') : NULL;
  if (strncmp(expect, "refuse ", 7) == 0 && !topic) {
    if (rc != SB_EINVAL || strcmp(refusal_label(why.reason), expect + 7) != 0 || !why.text[0]) {
      if (asprintf(&msg, "%s: got rc %d %s (%s), want refuse %s", name, rc,
                   refusal_label(why.reason), why.text, expect + 7) < 0)
        msg = NULL;
    } else if (out.topic || out.payload) {
      if (asprintf(&msg, "%s: a refusal holds a message", name) < 0)
        msg = NULL;
    }
  } else if (strncmp(expect, "ok\n", 3) == 0 && payload && !strchr(payload + 1, '\n')) {
    *payload++ = '\0';
    topic++;
    if (rc != 0) {
      if (asprintf(&msg, "%s: refused (%s: %s), want ok", name, refusal_label(why.reason),
                   why.text) < 0)
        msg = NULL;
    } else if (strcmp(out.topic, topic) != 0 || strcmp(out.payload, payload) != 0 ||
               out.payload_len != strlen(payload)) {
      if (asprintf(&msg, "%s: got\n  %s\n  %s\nwant\n  %s\n  %s", name, out.topic, out.payload,
                   topic, payload) < 0)
        msg = NULL;
    }
    sb_publish_clear(&out);
  } else if (asprintf(&msg, "%s: expect must be 'refuse <class>', or 'ok', a topic line and a "
                            "JSON line", name) < 0)
    msg = NULL;

done:
  free(body);
  free(expect);
  free(user);
  return msg;
}

static void test_data_cases(void **state)
{
  (void)state;
  run_data_cases(SB_TEST_DATA "/publish", "publish", 8, run_case);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_ok_device_becomes_source),
    cmocka_unit_test(test_ok_own_user_id_taken_out),
    cmocka_unit_test(test_ok_fields_kept_in_order),
    cmocka_unit_test(test_ok_at_the_size_limits),
    cmocka_unit_test(test_refuse_not_an_object),
    cmocka_unit_test(test_refuse_device),
    cmocka_unit_test(test_refuse_channel),
    cmocka_unit_test(test_refuse_source_given),
    cmocka_unit_test(test_refuse_event_checks),
    cmocka_unit_test(test_refuse_other_user),
    cmocka_unit_test(test_refuse_checks_in_order),
    cmocka_unit_test(test_refuse_too_large),
    cmocka_unit_test(test_clear),
    cmocka_unit_test(test_data_cases),
  };
  return cmocka_run_group_tests_name("publish", tests, NULL, NULL);
}
