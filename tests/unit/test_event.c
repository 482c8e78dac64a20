/* Unit tests of event.c: parsing, checking and normalising an SSEEvent.
 *
 * The C cases below cover every rule of the SPEC's SSEEvent table and every
 * drop reason of SB_DROP_MAP; test_data_cases() then runs the directories of
 * tests/data/events/ (topic, payload, expect; and, in a case that is ok,
 * an optional file left_out: the device whose connections do not get the
 * event, the excludeDeviceId or else the sourceDeviceId, empty for none). */
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
#include "event.h"
#include "sse.h"

#ifndef SB_TEST_DATA
#error "SB_TEST_DATA must name the tests/data directory"
#endif

/* 2025-11-25T10:52:32.123Z, the fixed time of receipt of every case. */
#define NOW_SEC 1764067952
#define NOW_NSEC 123456789L
#define NOW_TEXT "2025-11-25T10:52:32.123Z"

static struct sb_event_rules rules(const char *prefix, size_t max)
{
  struct sb_event_rules r;
  memset(&r, 0, sizeof(r));
  r.topic_prefix = prefix;
  r.max_event_bytes = max;
  r.now.tv_sec = NOW_SEC;
  r.now.tv_nsec = NOW_NSEC;
  return r;
}

/* Parses payload (a C string) on topic with prefix "sync" and the default
 * max_event_bytes. */
static int parse(const char *topic, const char *payload, struct sb_event *ev,
                 struct sb_event_error *why)
{
  struct sb_event_rules r = rules("sync", 65536);
  return sb_event_parse(&r, topic, strlen(topic), payload, strlen(payload), ev, why);
}

/* Asserts that payload on topic is accepted and serialised as want_json. */
static void expect_ok(const char *topic, const char *payload, const char *want_json)
{
  struct sb_event ev;
  struct sb_event_error why;
  int rc = parse(topic, payload, &ev, &why);

  if (rc != 0)
    fail_msg("%s %s: dropped (%s: %s)", topic, payload, sb_drop_label(why.reason), why.text);
  assert_int_equal(why.reason, SB_DROP_NONE);
  assert_non_null(ev.json);
  assert_string_equal(ev.json, want_json);
  assert_int_equal(ev.json_len, strlen(want_json));
  sb_event_clear(&ev);
}

/* Asserts that payload on topic is dropped for reason, with a log text, and
 * that the event holds nothing. */
static void expect_drop_n(const char *topic, const void *payload, size_t len, enum sb_drop reason)
{
  struct sb_event_rules r = rules("sync", 65536);
  struct sb_event ev;
  struct sb_event_error why;
  int rc;

  memset(&ev, 0x5a, sizeof(ev)); /* the parser must reset it */
  rc = sb_event_parse(&r, topic, strlen(topic), payload, len, &ev, &why);
  if (rc != SB_EINVAL || why.reason != reason)
    fail_msg("%s %.*s: rc %d reason %s (%s), want %s", topic, (int)len, (const char *)payload, rc,
             sb_drop_label(why.reason), why.text, sb_drop_label(reason));
  assert_true(strlen(why.text) > 0);
  assert_null(ev.user);
  assert_null(ev.channel);
  assert_null(ev.id);
  assert_null(ev.source);
  assert_null(ev.target);
  assert_null(ev.json);
  assert_int_equal(ev.json_len, 0);
}

static void expect_drop(const char *topic, const char *payload, enum sb_drop reason)
{
  expect_drop_n(topic, payload, strlen(payload), reason);
}

/* ---- valid events --------------------------------------------------------- */

static void test_valid_minimal(void **state)
{
  struct sb_event ev;
  struct sb_event_error why;
  (void)state;

  assert_int_equal(parse("sync/u1/timer", "{\"type\":\"updated\",\"payload\":{\"a\":1}}", &ev, &why),
                   0);
  assert_int_equal(why.reason, SB_DROP_NONE);
  assert_string_equal(ev.user, "u1");
  assert_string_equal(ev.channel, "timer");
  assert_null(ev.id);
  assert_null(ev.source);
  assert_null(ev.target);
  assert_string_equal(ev.json, "{\"type\":\"updated\",\"payload\":{\"a\":1},\"channel\":\"timer\","
                               "\"timestamp\":\"" NOW_TEXT "\"}");
  assert_int_equal(ev.json_len, strlen(ev.json));
  sb_event_clear(&ev);
}

static void test_valid_all_fields(void **state)
{
  struct sb_event ev;
  struct sb_event_error why;
  const char *payload =
      "{\"type\":\"started\",\"payload\":[1,\"two\",null],\"sourceDeviceId\":\"phone-1\","
      "\"channel\":\"timer\",\"timestamp\":\"2025-01-02T03:04:05Z\",\"targetDeviceId\":\"tab:9\","
      "\"id\":\"evt-77\"}";
  (void)state;

  assert_int_equal(parse("sync/alice/timer", payload, &ev, &why), 0);
  assert_string_equal(ev.user, "alice");
  assert_string_equal(ev.channel, "timer");
  assert_string_equal(ev.id, "evt-77");
  assert_string_equal(ev.source, "phone-1");
  assert_string_equal(ev.target, "tab:9");
  /* given channel and timestamp are kept as they are, in place */
  assert_string_equal(ev.json, payload);
  assert_int_equal(ev.json_len, strlen(payload));
  sb_event_clear(&ev);
}

static void test_valid_compacts_json(void **state)
{
  (void)state;
  /* whitespace and newlines of the publisher go; the output is one line */
  expect_ok("sync/u1/notes", "{\n  \"type\" : \"updated\",\n  \"payload\" : { \"text\" : \"a\\nb\" }\n}\n",
            "{\"type\":\"updated\",\"payload\":{\"text\":\"a\\nb\"},\"channel\":\"notes\","
            "\"timestamp\":\"" NOW_TEXT "\"}");
  /* UTF-8 stays UTF-8 */
  expect_ok("sync/u1/notes", "{\"type\":\"x\",\"payload\":\"caf\\u00e9 \xe2\x82\xac\"}",
            "{\"type\":\"x\",\"payload\":\"caf\xc3\xa9 \xe2\x82\xac\",\"channel\":\"notes\","
            "\"timestamp\":\"" NOW_TEXT "\"}");
}

static void test_valid_payload_any_value(void **state)
{
  (void)state;
  expect_ok("sync/u/c", "{\"type\":\"t\",\"payload\":null}",
            "{\"type\":\"t\",\"payload\":null,\"channel\":\"c\",\"timestamp\":\"" NOW_TEXT "\"}");
  expect_ok("sync/u/c", "{\"type\":\"t\",\"payload\":false}",
            "{\"type\":\"t\",\"payload\":false,\"channel\":\"c\",\"timestamp\":\"" NOW_TEXT "\"}");
  expect_ok("sync/u/c", "{\"type\":\"t\",\"payload\":\"s\"}",
            "{\"type\":\"t\",\"payload\":\"s\",\"channel\":\"c\",\"timestamp\":\"" NOW_TEXT "\"}");
  expect_ok("sync/u/c", "{\"type\":\"t\",\"payload\":-12}",
            "{\"type\":\"t\",\"payload\":-12,\"channel\":\"c\",\"timestamp\":\"" NOW_TEXT "\"}");
  expect_ok("sync/u/c", "{\"type\":\"t\",\"payload\":[]}",
            "{\"type\":\"t\",\"payload\":[],\"channel\":\"c\",\"timestamp\":\"" NOW_TEXT "\"}");
  expect_ok("sync/u/c", "{\"payload\":{},\"type\":\"t\"}",
            "{\"payload\":{},\"type\":\"t\",\"channel\":\"c\",\"timestamp\":\"" NOW_TEXT "\"}");
  /* unknown fields are carried along */
  expect_ok("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"extra\":{\"k\":true}}",
            "{\"type\":\"t\",\"payload\":1,\"extra\":{\"k\":true},\"channel\":\"c\","
            "\"timestamp\":\"" NOW_TEXT "\"}");
}

static void test_user_and_channel_from_topic(void **state)
{
  struct sb_event ev;
  struct sb_event_error why;
  (void)state;

  /* a "user" field in the payload does not change who gets it */
  assert_int_equal(
      parse("sync/bob/calendar", "{\"type\":\"t\",\"payload\":1,\"user\":\"mallory\"}", &ev, &why), 0);
  assert_string_equal(ev.user, "bob");
  assert_string_equal(ev.channel, "calendar");
  assert_string_equal(ev.json, "{\"type\":\"t\",\"payload\":1,\"user\":\"mallory\",\"channel\":"
                               "\"calendar\",\"timestamp\":\"" NOW_TEXT "\"}");
  sb_event_clear(&ev);
}

static void test_integer_id(void **state)
{
  struct sb_event ev;
  struct sb_event_error why;
  (void)state;

  assert_int_equal(parse("sync/u1/c", "{\"type\":\"t\",\"payload\":1,\"id\":42}", &ev, &why), 0);
  assert_string_equal(ev.id, "42");
  assert_string_equal(ev.json,
                      "{\"type\":\"t\",\"payload\":1,\"id\":42,\"channel\":\"c\",\"timestamp\":\"" NOW_TEXT "\"}");
  sb_event_clear(&ev);

  assert_int_equal(parse("sync/u1/c", "{\"type\":\"t\",\"payload\":1,\"id\":0}", &ev, &why), 0);
  assert_string_equal(ev.id, "0");
  sb_event_clear(&ev);

  assert_int_equal(
      parse("sync/u1/c", "{\"type\":\"t\",\"payload\":1,\"id\":9007199254740993}", &ev, &why), 0);
  assert_string_equal(ev.id, "9007199254740993");
  sb_event_clear(&ev);
}

static void test_null_optional_fields(void **state)
{
  struct sb_event ev;
  struct sb_event_error why;
  (void)state;

  assert_int_equal(parse("sync/u1/timer",
                         "{\"type\":\"t\",\"payload\":1,\"id\":null,\"sourceDeviceId\":null,"
                         "\"targetDeviceId\":null,\"channel\":null,\"timestamp\":null}",
                         &ev, &why),
                   0);
  assert_null(ev.id);
  assert_null(ev.source);
  assert_null(ev.target);
  assert_string_equal(ev.user, "u1");
  assert_string_equal(ev.channel, "timer");
  /* channel and timestamp are filled in where they stand */
  assert_string_equal(ev.json, "{\"type\":\"t\",\"payload\":1,\"id\":null,\"sourceDeviceId\":null,"
                               "\"targetDeviceId\":null,\"channel\":\"timer\",\"timestamp\":\"" NOW_TEXT
                               "\"}");
  sb_event_clear(&ev);
}

static void test_multilevel_prefix(void **state)
{
  struct sb_event_rules r = rules("app/sync", 65536);
  struct sb_event ev;
  struct sb_event_error why;
  const char *topic = "app/sync/u9/timer";
  const char *payload = "{\"type\":\"t\",\"payload\":1}";
  (void)state;

  assert_int_equal(
      sb_event_parse(&r, topic, strlen(topic), payload, strlen(payload), &ev, &why), 0);
  assert_string_equal(ev.user, "u9");
  assert_string_equal(ev.channel, "timer");
  assert_string_equal(ev.json,
                      "{\"type\":\"t\",\"payload\":1,\"channel\":\"timer\",\"timestamp\":\"" NOW_TEXT "\"}");
  sb_event_clear(&ev);

  /* the bare "sync" prefix is not "app/sync" */
  topic = "sync/u9/timer";
  assert_int_equal(
      sb_event_parse(&r, topic, strlen(topic), payload, strlen(payload), &ev, &why), SB_EINVAL);
  assert_int_equal(why.reason, SB_DROP_BAD_TOPIC);
  topic = "app/sync/u9/timer/x";
  assert_int_equal(
      sb_event_parse(&r, topic, strlen(topic), payload, strlen(payload), &ev, &why), SB_EINVAL);
  assert_int_equal(why.reason, SB_DROP_BAD_TOPIC);
}

static void test_valid_ids_and_devices(void **state)
{
  struct sb_event ev;
  struct sb_event_error why;
  char payload[512], id128[129];
  (void)state;

  memset(id128, 'i', 128);
  id128[128] = '\0';
  snprintf(payload, sizeof(payload),
           "{\"type\":\"t\",\"payload\":1,\"id\":\"%s\",\"sourceDeviceId\":\"%s\"}", id128, id128);
  assert_int_equal(parse("sync/u/c", payload, &ev, &why), 0);
  assert_string_equal(ev.id, id128);
  assert_string_equal(ev.source, id128);
  sb_event_clear(&ev);

  /* spaces and non-ASCII are not control characters */
  assert_int_equal(parse("sync/u/c",
                         "{\"type\":\"t\",\"payload\":1,\"id\":\"a b\",\"targetDeviceId\":\"t\xc3\xa9\"}",
                         &ev, &why),
                   0);
  assert_string_equal(ev.id, "a b");
  assert_string_equal(ev.target, "t\xc3\xa9");
  sb_event_clear(&ev);
}

static void test_valid_timestamps_kept(void **state)
{
  (void)state;
  expect_ok("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"timestamp\":\"2025-11-25\"}",
            "{\"type\":\"t\",\"payload\":1,\"timestamp\":\"2025-11-25\",\"channel\":\"c\"}");
  expect_ok("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"timestamp\":\"2025-11-25T10:52:32.5+01:00\"}",
            "{\"type\":\"t\",\"payload\":1,\"timestamp\":\"2025-11-25T10:52:32.5+01:00\",\"channel\":\"c\"}");
}

static void test_nul_in_payload_string_is_valid(void **state)
{
  (void)state;
  /* "\u0000" is valid JSON, and payload may be any JSON value */
  expect_ok("sync/u/c", "{\"type\":\"t\",\"payload\":\"a\\u0000b\"}",
            "{\"type\":\"t\",\"payload\":\"a\\u0000b\",\"channel\":\"c\",\"timestamp\":\"" NOW_TEXT "\"}");
}

/* Parses payload on sync/u/c, asserts it is accepted, and returns the device
 * left out (ev->source) as a static copy, or NULL. The JSON must be the
 * payload as published, with channel and timestamp added. */
static const char *left_out(const char *payload)
{
  static char copy[SB_EVENT_ID_MAX + 1];
  struct sb_event ev;
  struct sb_event_error why;
  const char *ret = NULL;

  if (parse("sync/u/c", payload, &ev, &why) != 0)
    fail_msg("%s: dropped (%s: %s)", payload, sb_drop_label(why.reason), why.text);
  if (ev.source) {
    snprintf(copy, sizeof(copy), "%s", ev.source);
    ret = copy;
  }
  sb_event_clear(&ev);
  return ret;
}

static void test_exclude_device(void **state)
{
  struct sb_event ev;
  struct sb_event_error why;
  const char *payload =
      "{\"type\":\"started\",\"payload\":1,\"sourceDeviceId\":\"phone\","
      "\"excludeDeviceId\":\"laptop\"}";
  (void)state;

  /* excludeDeviceId takes the source's place as the device left out; the
   * JSON keeps both fields as published */
  assert_int_equal(parse("sync/alice/timer", payload, &ev, &why), 0);
  assert_string_equal(ev.source, "laptop");
  assert_null(ev.target);
  assert_string_equal(ev.json, "{\"type\":\"started\",\"payload\":1,\"sourceDeviceId\":\"phone\","
                               "\"excludeDeviceId\":\"laptop\",\"channel\":\"timer\","
                               "\"timestamp\":\"" NOW_TEXT "\"}");
  sb_event_clear(&ev);

  /* without a source */
  assert_string_equal(left_out("{\"type\":\"t\",\"payload\":1,\"excludeDeviceId\":\"tv\"}"), "tv");
  /* before the source in the object: the same */
  assert_string_equal(
      left_out("{\"excludeDeviceId\":\"tv\",\"type\":\"t\",\"payload\":1,\"sourceDeviceId\":\"p\"}"),
      "tv");
  /* the same device as the source */
  assert_string_equal(
      left_out("{\"type\":\"t\",\"payload\":1,\"sourceDeviceId\":\"p\",\"excludeDeviceId\":\"p\"}"),
      "p");
  /* null counts as absent: the source is left out, or nobody */
  assert_string_equal(
      left_out("{\"type\":\"t\",\"payload\":1,\"sourceDeviceId\":\"p\",\"excludeDeviceId\":null}"),
      "p");
  assert_null(left_out("{\"type\":\"t\",\"payload\":1,\"excludeDeviceId\":null}"));
  assert_null(left_out("{\"type\":\"t\",\"payload\":1,\"sourceDeviceId\":null,"
                       "\"excludeDeviceId\":null}"));
  /* with a source of null, excludeDeviceId still decides */
  assert_string_equal(
      left_out("{\"type\":\"t\",\"payload\":1,\"sourceDeviceId\":null,\"excludeDeviceId\":\"x\"}"),
      "x");
  /* any characters but control characters, as the other device ids */
  assert_string_equal(left_out("{\"type\":\"t\",\"payload\":1,\"excludeDeviceId\":\"a b\\u00e9\"}"),
                      "a b\xc3\xa9");
  /* the name is case-sensitive: another field, carried along */
  assert_string_equal(
      left_out("{\"type\":\"t\",\"payload\":1,\"sourceDeviceId\":\"p\",\"ExcludeDeviceId\":\"x\"}"),
      "p");
}

static void test_exclude_device_with_target(void **state)
{
  struct sb_event ev;
  struct sb_event_error why;
  (void)state;

  /* targeting still wins (hub.c): both are kept for it to decide */
  assert_int_equal(parse("sync/u/c",
                         "{\"type\":\"t\",\"payload\":1,\"targetDeviceId\":\"tab\","
                         "\"excludeDeviceId\":\"tab\",\"sourceDeviceId\":\"s\",\"id\":\"e1\"}",
                         &ev, &why),
                   0);
  assert_string_equal(ev.target, "tab");
  assert_string_equal(ev.source, "tab");
  assert_string_equal(ev.id, "e1");
  sb_event_clear(&ev);
}

static void test_exclude_device_longest(void **state)
{
  char payload[512], id128[129], id129[130];
  (void)state;

  memset(id128, 'x', 128);
  id128[128] = '\0';
  memset(id129, 'x', 129);
  id129[129] = '\0';
  snprintf(payload, sizeof(payload), "{\"type\":\"t\",\"payload\":1,\"excludeDeviceId\":\"%s\"}",
           id128);
  assert_string_equal(left_out(payload), id128);
  snprintf(payload, sizeof(payload), "{\"type\":\"t\",\"payload\":1,\"excludeDeviceId\":\"%s\"}",
           id129);
  expect_drop("sync/u/c", payload, SB_DROP_BAD_ID);
}

static void test_drop_bad_exclude_device(void **state)
{
  (void)state;
  /* wrong JSON type: bad_field; an integer is not a device id */
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"excludeDeviceId\":5}", SB_DROP_BAD_FIELD);
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"excludeDeviceId\":false}",
              SB_DROP_BAD_FIELD);
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"excludeDeviceId\":[\"a\"]}",
              SB_DROP_BAD_FIELD);
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"excludeDeviceId\":{}}", SB_DROP_BAD_FIELD);
  /* bad value: bad_id */
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"excludeDeviceId\":\"\"}", SB_DROP_BAD_ID);
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"excludeDeviceId\":\"a\\nb\"}",
              SB_DROP_BAD_ID);
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"excludeDeviceId\":\"a\\u007f\"}",
              SB_DROP_BAD_ID);
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"excludeDeviceId\":\"a\\u0000b\"}",
              SB_DROP_BAD_ID);
  /* a good excludeDeviceId does not excuse a bad source, nor the reverse */
  expect_drop("sync/u/c",
              "{\"type\":\"t\",\"payload\":1,\"sourceDeviceId\":\"\",\"excludeDeviceId\":\"x\"}",
              SB_DROP_BAD_ID);
  expect_drop("sync/u/c",
              "{\"type\":\"t\",\"payload\":1,\"sourceDeviceId\":\"p\",\"excludeDeviceId\":\"\\t\"}",
              SB_DROP_BAD_ID);
  expect_drop("sync/u/c",
              "{\"type\":\"t\",\"payload\":1,\"sourceDeviceId\":7,\"excludeDeviceId\":\"x\"}",
              SB_DROP_BAD_FIELD);
  /* a key given twice */
  expect_drop("sync/u/c",
              "{\"type\":\"t\",\"payload\":1,\"excludeDeviceId\":\"a\",\"excludeDeviceId\":\"b\"}",
              SB_DROP_NOT_JSON);
}

/* ---- drops ---------------------------------------------------------------- */

static void test_drop_bad_topic(void **state)
{
  const char *ok = "{\"type\":\"t\",\"payload\":1}";
  (void)state;

  expect_drop("sync/u1", ok, SB_DROP_BAD_TOPIC);
  expect_drop("sync/u1/timer/x", ok, SB_DROP_BAD_TOPIC);
  expect_drop("other/u1/timer", ok, SB_DROP_BAD_TOPIC);
  expect_drop("sync//timer", ok, SB_DROP_BAD_TOPIC);
  expect_drop("sync/u1/", ok, SB_DROP_BAD_TOPIC);
  expect_drop("sync/+/timer", ok, SB_DROP_BAD_TOPIC);
  expect_drop("sync/u1/#", ok, SB_DROP_BAD_TOPIC);
  expect_drop("sync/u\x01/timer", ok, SB_DROP_BAD_TOPIC);
  expect_drop("", ok, SB_DROP_BAD_TOPIC);
  /* the topic is judged first */
  expect_drop("sync/u1", "not json", SB_DROP_BAD_TOPIC);
}

static void test_drop_too_large(void **state)
{
  struct sb_event_rules r = rules("sync", 64);
  struct sb_event ev;
  struct sb_event_error why;
  char payload[128];
  size_t n;
  (void)state;

  /* exactly 64 bytes: accepted */
  n = (size_t)snprintf(payload, sizeof(payload), "{\"type\":\"t\",\"payload\":\"%s\"}",
                       "012345678901234567890123456789012345678");
  assert_int_equal(n, 64);
  assert_int_equal(sb_event_parse(&r, "sync/u/c", 8, payload, n, &ev, &why), 0);
  sb_event_clear(&ev);

  /* 65 bytes: too large */
  n = (size_t)snprintf(payload, sizeof(payload), "{\"type\":\"t\",\"payload\":\"%s\"}",
                       "0123456789012345678901234567890123456789");
  assert_int_equal(n, 65);
  assert_int_equal(sb_event_parse(&r, "sync/u/c", 8, payload, n, &ev, &why), SB_EINVAL);
  assert_int_equal(why.reason, SB_DROP_TOO_LARGE);
  assert_true(strlen(why.text) > 0);
  assert_null(ev.json);

  /* judged before parsing: garbage over the limit is too_large, not not_json */
  memset(payload, 'x', 100);
  assert_int_equal(sb_event_parse(&r, "sync/u/c", 8, payload, 100, &ev, &why), SB_EINVAL);
  assert_int_equal(why.reason, SB_DROP_TOO_LARGE);
}

static void test_drop_not_json(void **state)
{
  (void)state;
  expect_drop("sync/u/c", "", SB_DROP_NOT_JSON);
  expect_drop("sync/u/c", "not json", SB_DROP_NOT_JSON);
  expect_drop("sync/u/c", "{", SB_DROP_NOT_JSON);
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1", SB_DROP_NOT_JSON);
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1} trailing", SB_DROP_NOT_JSON);
  expect_drop("sync/u/c", "{'type':'t','payload':1}", SB_DROP_NOT_JSON);
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,}", SB_DROP_NOT_JSON);
  /* a key given twice is ambiguous */
  expect_drop("sync/u/c", "{\"type\":\"t\",\"type\":\"u\",\"payload\":1}", SB_DROP_NOT_JSON);
  /* invalid UTF-8 */
  expect_drop("sync/u/c", "{\"type\":\"\xff\",\"payload\":1}", SB_DROP_NOT_JSON);
  /* a NUL byte inside the payload bytes */
  expect_drop_n("sync/u/c", "{\"type\":\"t\",\0\"payload\":1}", 25, SB_DROP_NOT_JSON);
}

static void test_drop_not_object(void **state)
{
  (void)state;
  expect_drop("sync/u/c", "[{\"type\":\"t\",\"payload\":1}]", SB_DROP_NOT_OBJECT);
  expect_drop("sync/u/c", "[]", SB_DROP_NOT_OBJECT);
}

static void test_drop_not_object_scalar(void **state)
{
  (void)state;
  /* valid JSON texts (RFC 8259) that are not objects: not_object, as the
   * SPEC's "payload is not a JSON object" log line says */
  expect_drop("sync/u/c", "\"string\"", SB_DROP_NOT_OBJECT);
  expect_drop("sync/u/c", "42", SB_DROP_NOT_OBJECT);
  expect_drop("sync/u/c", "null", SB_DROP_NOT_OBJECT);
  expect_drop("sync/u/c", "true", SB_DROP_NOT_OBJECT);
}

static void test_drop_missing_type(void **state)
{
  (void)state;
  expect_drop("sync/u/c", "{\"payload\":1}", SB_DROP_MISSING_TYPE);
  expect_drop("sync/u/c", "{}", SB_DROP_MISSING_TYPE);
  expect_drop("sync/u/c", "{\"Type\":\"t\",\"payload\":1}", SB_DROP_MISSING_TYPE);
}

static void test_drop_bad_type(void **state)
{
  (void)state;
  expect_drop("sync/u/c", "{\"type\":\"\",\"payload\":1}", SB_DROP_BAD_TYPE);
  expect_drop("sync/u/c", "{\"type\":1,\"payload\":1}", SB_DROP_BAD_TYPE);
  expect_drop("sync/u/c", "{\"type\":null,\"payload\":1}", SB_DROP_BAD_TYPE);
  expect_drop("sync/u/c", "{\"type\":true,\"payload\":1}", SB_DROP_BAD_TYPE);
  expect_drop("sync/u/c", "{\"type\":[\"t\"],\"payload\":1}", SB_DROP_BAD_TYPE);
  expect_drop("sync/u/c", "{\"type\":{},\"payload\":1}", SB_DROP_BAD_TYPE);
}

static void test_drop_missing_payload(void **state)
{
  (void)state;
  expect_drop("sync/u/c", "{\"type\":\"t\"}", SB_DROP_MISSING_PAYLOAD);
  expect_drop("sync/u/c", "{\"type\":\"t\",\"Payload\":1}", SB_DROP_MISSING_PAYLOAD);
  /* type is judged before payload */
  expect_drop("sync/u/c", "{}", SB_DROP_MISSING_TYPE);
}

static void test_drop_bad_field(void **state)
{
  (void)state;
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"channel\":5}", SB_DROP_BAD_FIELD);
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"channel\":[\"c\"]}", SB_DROP_BAD_FIELD);
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"sourceDeviceId\":5}", SB_DROP_BAD_FIELD);
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"sourceDeviceId\":true}",
              SB_DROP_BAD_FIELD);
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"targetDeviceId\":[\"x\"]}",
              SB_DROP_BAD_FIELD);
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"targetDeviceId\":{}}", SB_DROP_BAD_FIELD);
  /* id: a string or a non-negative integer only */
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"id\":1.5}", SB_DROP_BAD_FIELD);
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"id\":-1}", SB_DROP_BAD_FIELD);
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"id\":false}", SB_DROP_BAD_FIELD);
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"id\":{\"a\":1}}", SB_DROP_BAD_FIELD);
}

static void test_drop_channel_mismatch(void **state)
{
  (void)state;
  expect_drop("sync/u/timer", "{\"type\":\"t\",\"payload\":1,\"channel\":\"notes\"}",
              SB_DROP_CHANNEL_MISMATCH);
  expect_drop("sync/u/timer", "{\"type\":\"t\",\"payload\":1,\"channel\":\"Timer\"}",
              SB_DROP_CHANNEL_MISMATCH);
  expect_drop("sync/u/timer", "{\"type\":\"t\",\"payload\":1,\"channel\":\"time\"}",
              SB_DROP_CHANNEL_MISMATCH);
  expect_drop("sync/u/timer", "{\"type\":\"t\",\"payload\":1,\"channel\":\"timers\"}",
              SB_DROP_CHANNEL_MISMATCH);
  expect_drop("sync/u/timer", "{\"type\":\"t\",\"payload\":1,\"channel\":\"\"}",
              SB_DROP_CHANNEL_MISMATCH);
}

static void test_drop_bad_timestamp(void **state)
{
  (void)state;
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"timestamp\":\"yesterday\"}",
              SB_DROP_BAD_TIMESTAMP);
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"timestamp\":1764067952}",
              SB_DROP_BAD_TIMESTAMP);
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"timestamp\":\"\"}", SB_DROP_BAD_TIMESTAMP);
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"timestamp\":\"2025/11/25\"}",
              SB_DROP_BAD_TIMESTAMP);
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"timestamp\":\"2025-11-25T\"}",
              SB_DROP_BAD_TIMESTAMP);
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"timestamp\":\"2025-11-25T10:52:32Zx\"}",
              SB_DROP_BAD_TIMESTAMP);
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"timestamp\":{}}", SB_DROP_BAD_TIMESTAMP);
}

static void test_drop_bad_id(void **state)
{
  char payload[512], id129[130];
  (void)state;

  /* control characters in each of the three id fields */
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"id\":\"a\\nb\"}", SB_DROP_BAD_ID);
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"id\":\"a\\rb\"}", SB_DROP_BAD_ID);
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"id\":\"\\u0001\"}", SB_DROP_BAD_ID);
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"sourceDeviceId\":\"ph\\none\"}",
              SB_DROP_BAD_ID);
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"sourceDeviceId\":\"a\\u007fb\"}",
              SB_DROP_BAD_ID);
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"targetDeviceId\":\"tab\\t1\"}",
              SB_DROP_BAD_ID);
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"targetDeviceId\":\"x\\r\\n\"}",
              SB_DROP_BAD_ID);
  /* empty */
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"id\":\"\"}", SB_DROP_BAD_ID);
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"sourceDeviceId\":\"\"}", SB_DROP_BAD_ID);
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"targetDeviceId\":\"\"}", SB_DROP_BAD_ID);
  /* over SB_EVENT_ID_MAX */
  memset(id129, 'i', 129);
  id129[129] = '\0';
  snprintf(payload, sizeof(payload), "{\"type\":\"t\",\"payload\":1,\"id\":\"%s\"}", id129);
  expect_drop("sync/u/c", payload, SB_DROP_BAD_ID);
  snprintf(payload, sizeof(payload), "{\"type\":\"t\",\"payload\":1,\"targetDeviceId\":\"%s\"}",
           id129);
  expect_drop("sync/u/c", payload, SB_DROP_BAD_ID);
}

static void test_drop_bad_id_nul(void **state)
{
  (void)state;
  /* valid JSON whose id holds a NUL: a control character, so bad_id */
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"id\":\"a\\u0000b\"}", SB_DROP_BAD_ID);
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"sourceDeviceId\":\"\\u0000\"}",
              SB_DROP_BAD_ID);
}

/* ---- helpers -------------------------------------------------------------- */

static void test_drop_labels(void **state)
{
  (void)state;
  assert_string_equal(sb_drop_label(SB_DROP_NONE), "none");
  assert_string_equal(sb_drop_label(SB_DROP_BAD_TOPIC), "bad_topic");
  assert_string_equal(sb_drop_label(SB_DROP_TOO_LARGE), "too_large");
  assert_string_equal(sb_drop_label(SB_DROP_NOT_JSON), "not_json");
  assert_string_equal(sb_drop_label(SB_DROP_NOT_OBJECT), "not_object");
  assert_string_equal(sb_drop_label(SB_DROP_MISSING_TYPE), "missing_type");
  assert_string_equal(sb_drop_label(SB_DROP_BAD_TYPE), "bad_type");
  assert_string_equal(sb_drop_label(SB_DROP_MISSING_PAYLOAD), "missing_payload");
  assert_string_equal(sb_drop_label(SB_DROP_BAD_FIELD), "bad_field");
  assert_string_equal(sb_drop_label(SB_DROP_CHANNEL_MISMATCH), "channel_mismatch");
  assert_string_equal(sb_drop_label(SB_DROP_BAD_TIMESTAMP), "bad_timestamp");
  assert_string_equal(sb_drop_label(SB_DROP_BAD_ID), "bad_id");
  assert_string_equal(sb_drop_label(SB_DROP_MEMORY), "memory");
  assert_int_equal(SB_DROP_COUNT, 13);
  assert_string_equal(sb_drop_label(SB_DROP_COUNT), "unknown");
  assert_string_equal(sb_drop_label((enum sb_drop)-1), "unknown");
}

static void test_format_time(void **state)
{
  char out[32];
  struct timespec t;
  (void)state;

  t.tv_sec = NOW_SEC;
  t.tv_nsec = NOW_NSEC;
  sb_event_format_time(t, out);
  assert_string_equal(out, NOW_TEXT);

  t.tv_sec = 0;
  t.tv_nsec = 0;
  sb_event_format_time(t, out);
  assert_string_equal(out, "1970-01-01T00:00:00.000Z");

  t.tv_sec = 951782400; /* 2000-02-29 */
  t.tv_nsec = 999999999;
  sb_event_format_time(t, out);
  assert_string_equal(out, "2000-02-29T00:00:00.999Z");

  t.tv_nsec = 1000000;
  sb_event_format_time(t, out);
  assert_string_equal(out, "2000-02-29T00:00:00.001Z");
}

static void test_valid_timestamp(void **state)
{
  static const char *const good[] = {
    "2025-11-25",
    "2025-11-25T10:52:32Z",
    "2025-11-25T10:52:32.123Z",
    "2025-11-25T10:52:32,5Z",
    "2025-11-25t10:52:32z",
    "2025-11-25 10:52:32",
    "2025-11-25T10:52:32",
    "2025-11-25T10:52Z",
    "2025-11-25T10:52:32+01:00",
    "2025-11-25T10:52:32-0530",
    "2025-11-25T10:52:32+01",
    "2025-11-25T10:52:32.123456789+00:00",
  };
  static const char *const bad[] = {
    "",
    "2025",
    "2025-11",
    "25-11-25",
    "2025-1-25",
    "2025-11-25T",
    "2025-11-25T10",
    "2025-11-25T10:5",
    "2025-11-25T10:52:3",
    "2025-11-25T10:52:32.",
    "2025-11-25T10:52:32.Z",
    "2025-11-25T10:52:32Z ",
    "2025-11-25T10:52:32ZZ",
    "2025-11-25X10:52:32Z",
    "2025-11-25T10:52:32+",
    "2025-11-25T10:52:32+1",
    "2025-11-25T10:52:32+01:0",
    "2025-11-25T10:52:32+01:00:00",
    " 2025-11-25",
    "2025-11-25x",
  };
  (void)state;

  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
    if (sb_event_valid_timestamp(good[i]) != 1)
      fail_msg("'%s' should be a valid timestamp", good[i]);
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    if (sb_event_valid_timestamp(bad[i]) != 0)
      fail_msg("'%s' should not be a valid timestamp", bad[i]);
}

static void test_timestamp_offset_cut_after_colon(void **state)
{
  (void)state;
  /* "+01:" is an offset cut short, not an ISO 8601 offset */
  assert_int_equal(sb_event_valid_timestamp("2025-11-25T10:52:32+01:"), 0);
  assert_int_equal(sb_event_valid_timestamp("2025-11-25T10:52+01:"), 0);
  expect_drop("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"timestamp\":\"2025-11-25T10:52:32+01:\"}",
              SB_DROP_BAD_TIMESTAMP);
}

static void test_event_clear(void **state)
{
  struct sb_event ev;
  struct sb_event_error why;
  (void)state;

  assert_int_equal(parse("sync/u/c", "{\"type\":\"t\",\"payload\":1,\"id\":\"i\",\"sourceDeviceId\":"
                                     "\"s\",\"targetDeviceId\":\"x\",\"excludeDeviceId\":\"e\"}",
                         &ev, &why),
                   0);
  sb_event_clear(&ev);
  assert_null(ev.user);
  assert_null(ev.channel);
  assert_null(ev.id);
  assert_null(ev.source);
  assert_null(ev.target);
  assert_null(ev.json);
  assert_int_equal(ev.json_len, 0);
  sb_event_clear(&ev); /* twice is harmless */
  sb_event_clear(NULL);
}

/* ---- no inflation --------------------------------------------------------- */

/* The payload of the red-team review: 60,824 bytes of 0.1s came out of
 * jansson as a 320,085-byte line (17 digits a number). The event must keep
 * the numbers as written: its json is the payload and the two fields added,
 * and its frame the json and the SSE lines around it. */
static void test_no_inflation(void **state)
{
  static const char added[] = ",\"channel\":\"timer\",\"timestamp\":\"" NOW_TEXT "\"";
  char *payload = malloc(61000), *want = malloc(61000);
  size_t n, w, numbers;
  struct sb_event_rules r = rules("sync", 65536);
  struct sb_event ev;
  struct sb_event_error why;
  struct sb_frame *f;
  (void)state;

  assert_non_null(payload);
  assert_non_null(want);
  n = (size_t)sprintf(payload, "{\"type\":\"t\",\"payload\":[0.1");
  while (n + 4 + 2 <= 60824)
    n += (size_t)sprintf(payload + n, ",0.1");
  numbers = n;
  while (n + 2 < 60824) /* spaces to the size of the review's payload */
    payload[n++] = ' ';
  n += (size_t)sprintf(payload + n, "]}");
  assert_int_equal(n, 60824);
  memcpy(want, payload, numbers);
  w = numbers + (size_t)sprintf(want + numbers, "]%s}", added);

  assert_int_equal(sb_event_parse(&r, "sync/u1/timer", 13, payload, n, &ev, &why), 0);
  /* the spaces go, the numbers stay as written, channel and timestamp come in */
  assert_int_equal(ev.json_len, w);
  assert_string_equal(ev.json, want);
  assert_true(ev.json_len <= n + strlen(added));
  assert_true(ev.json_len <= sb_event_json_bound(n, 5));
  f = sb_frame_event("1764067952123-1", NULL, NULL, ev.json, ev.json_len);
  assert_non_null(f);
  assert_int_equal(f->len, strlen("id: 1764067952123-1\ndata: ") + ev.json_len + 2);
  assert_true(f->len < n + 128);
  sb_frame_unref(f);
  sb_event_clear(&ev);
  free(payload);
  free(want);
}

/* ---- data-driven cases: tests/data/events/<case>/ ------------------------- */

/* Runs one case directory. Returns NULL if it passed, else a heap message. */
static char *run_case(const char *dir, const char *name)
{
  char *topic = NULL, *payload = NULL, *expect = NULL, *prefix = NULL, *out = NULL, *msg = NULL;
  char *id = NULL;
  size_t topic_len = 0, payload_len = 0, expect_len = 0, prefix_len = 0, out_len = 0, id_len = 0;
  struct sb_event ev;
  struct sb_event_error why;
  struct sb_event_rules r;
  char *nl;
  int rc;

  if (!(topic = slurp(dir, "topic", &topic_len)) || !(payload = slurp(dir, "payload", &payload_len)) ||
      !(expect = slurp(dir, "expect", &expect_len))) {
    if (asprintf(&msg, "%s: needs files topic, payload and expect", name) < 0)
      msg = NULL;
    goto done;
  }
  chomp(topic, &topic_len);
  chomp(expect, &expect_len);
  if ((prefix = slurp(dir, "prefix", &prefix_len)))
    chomp(prefix, &prefix_len);
  if ((out = slurp(dir, "left_out", &out_len)))
    chomp(out, &out_len);
  if ((id = slurp(dir, "id", &id_len)))
    chomp(id, &id_len);
  r = rules(prefix ? prefix : "sync", 1024);

  rc = sb_event_parse(&r, topic, topic_len, payload, payload_len, &ev, &why);
  nl = strchr(expect, '\n');
  if (strncmp(expect, "drop ", 5) == 0 && !nl) {
    if (rc != SB_EINVAL || strcmp(sb_drop_label(why.reason), expect + 5) != 0 || !why.text[0]) {
      if (asprintf(&msg, "%s: got rc %d reason %s (%s), want drop %s", name, rc,
                   sb_drop_label(why.reason), why.text, expect + 5) < 0)
        msg = NULL;
    } else if (ev.json || ev.user) {
      if (asprintf(&msg, "%s: a dropped event holds data", name) < 0)
        msg = NULL;
    }
  } else if (strncmp(expect, "ok\n", 3) == 0 && !strchr(expect + 3, '\n')) {
    if (rc != 0) {
      if (asprintf(&msg, "%s: dropped (%s: %s), want ok", name, sb_drop_label(why.reason),
                   why.text) < 0)
        msg = NULL;
    } else if (strcmp(ev.json, expect + 3) != 0 || ev.json_len != strlen(expect + 3)) {
      if (asprintf(&msg, "%s: got\n  %s\nwant\n  %s", name, ev.json, expect + 3) < 0)
        msg = NULL;
    } else if (out && (out_len ? !ev.source || strcmp(ev.source, out) != 0 : ev.source != NULL)) {
      if (asprintf(&msg, "%s: the device left out is '%s', want '%s'", name,
                   ev.source ? ev.source : "(none)", out_len ? out : "(none)") < 0)
        msg = NULL;
    } else if (id && (id_len ? !ev.id || strcmp(ev.id, id) != 0 : ev.id != NULL)) {
      if (asprintf(&msg, "%s: the id is '%s', want '%s'", name, ev.id ? ev.id : "(none)",
                   id_len ? id : "(none)") < 0)
        msg = NULL;
    } else if (ev.json_len > sb_event_json_bound(payload_len, strlen(ev.channel))) {
      if (asprintf(&msg, "%s: %zu bytes of json, over the bound %zu", name, ev.json_len,
                   sb_event_json_bound(payload_len, strlen(ev.channel))) < 0)
        msg = NULL;
    }
    sb_event_clear(&ev);
  } else if (asprintf(&msg, "%s: expect must be 'drop <reason>' or 'ok' and a JSON line", name) < 0)
    msg = NULL;

done:
  free(topic);
  free(payload);
  free(expect);
  free(prefix);
  free(out);
  free(id);
  return msg;
}

static void test_data_cases(void **state)
{
  (void)state;
  run_data_cases(SB_TEST_DATA "/events", "event", 15, run_case);
}

/* sb_event_compact_object: the members as written, some left out, one added. */
static void expect_compact(const char *json, const char *extra, const char *want)
{
  static const char *const drop[] = {"deviceId", "userId", NULL};
  size_t n = 0;
  char *got = sb_event_compact_object(json, strlen(json), drop, extra, &n);

  assert_non_null(got);
  assert_string_equal(got, want);
  assert_int_equal(n, strlen(want));
  assert_true(n <= strlen(json) + (extra ? strlen(extra) : 0) + 3);
  free(got);
}

static void test_compact_object(void **state)
{
  (void)state;
  /* numbers, true, false and null exactly as written; whitespace gone */
  expect_compact(" { \"a\" : 0.1 , \"b\" : [ 1E+2 , -0.0 , true , null ] } ", NULL,
                 "{\"a\":0.1,\"b\":[1E+2,-0.0,true,null]}");
  expect_compact("{\"n\":123456789012345678901234567890}", NULL,
                 "{\"n\":123456789012345678901234567890}");
  /* dropped first, in the middle and last, with their commas */
  expect_compact("{\"deviceId\":\"d\",\"a\":1,\"userId\":\"u\",\"b\":2,\"deviceId2\":3}", NULL,
                 "{\"a\":1,\"b\":2,\"deviceId2\":3}");
  expect_compact("{\"a\":{\"deviceId\":1},\"userId\":[1,2]}", NULL, "{\"a\":{\"deviceId\":1}}");
  /* a key is compared as jansson reads it: escapes decoded */
  expect_compact("{\"device\\u0049d\":\"d\",\"a\":\"\\u00e9\\/\"}", NULL, "{\"a\":\"\xc3\xa9/\"}");
  /* the added member comes last, after a comma only if something precedes */
  expect_compact("{\"a\":1}", "\"s\":\"d\"", "{\"a\":1,\"s\":\"d\"}");
  expect_compact("{\"deviceId\":\"d\"}", "\"s\":\"d\"", "{\"s\":\"d\"}");
  expect_compact("{}", NULL, "{}");
  expect_compact("{ }", "\"s\":1", "{\"s\":1}");
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_valid_minimal),
    cmocka_unit_test(test_valid_all_fields),
    cmocka_unit_test(test_valid_compacts_json),
    cmocka_unit_test(test_valid_payload_any_value),
    cmocka_unit_test(test_user_and_channel_from_topic),
    cmocka_unit_test(test_integer_id),
    cmocka_unit_test(test_null_optional_fields),
    cmocka_unit_test(test_multilevel_prefix),
    cmocka_unit_test(test_valid_ids_and_devices),
    cmocka_unit_test(test_valid_timestamps_kept),
    cmocka_unit_test(test_nul_in_payload_string_is_valid),
    cmocka_unit_test(test_exclude_device),
    cmocka_unit_test(test_exclude_device_with_target),
    cmocka_unit_test(test_exclude_device_longest),
    cmocka_unit_test(test_drop_bad_exclude_device),
    cmocka_unit_test(test_drop_bad_topic),
    cmocka_unit_test(test_drop_too_large),
    cmocka_unit_test(test_drop_not_json),
    cmocka_unit_test(test_drop_not_object),
    cmocka_unit_test(test_drop_not_object_scalar),
    cmocka_unit_test(test_drop_missing_type),
    cmocka_unit_test(test_drop_bad_type),
    cmocka_unit_test(test_drop_missing_payload),
    cmocka_unit_test(test_drop_bad_field),
    cmocka_unit_test(test_drop_channel_mismatch),
    cmocka_unit_test(test_drop_bad_timestamp),
    cmocka_unit_test(test_drop_bad_id),
    cmocka_unit_test(test_drop_bad_id_nul),
    cmocka_unit_test(test_drop_labels),
    cmocka_unit_test(test_format_time),
    cmocka_unit_test(test_valid_timestamp),
    cmocka_unit_test(test_timestamp_offset_cut_after_colon),
    cmocka_unit_test(test_event_clear),
    cmocka_unit_test(test_no_inflation),
    cmocka_unit_test(test_compact_object),
    cmocka_unit_test(test_data_cases),
  };
  return cmocka_run_group_tests_name("event", tests, NULL, NULL);
}
