/* Unit tests of presence.c: the records, the instance status and its will,
 * and the clearing of the records an earlier run left.
 *
 * The builders are checked byte for byte over a real hub; the sb_presence
 * object publishes through a function that records what it was given. */
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
#include "presence.h"

#define STARTED "2026-01-02T03:04:05.678Z"
#define LATER "2026-01-02T03:04:09.000Z"
#define EARLIER "2025-12-31T23:00:00.000Z"
/* a hostname may hold anything: JSON must escape these */
#define ODD_INSTANCE "we\"ird\\host\n:8080"

/* ---- fixture -------------------------------------------------------------- */

#define MAX_PUBS 16

struct fx {
  struct sb_hub *hub;
  struct sb_metrics m;
  struct sb_log log;
  struct sb_presence *p;
  char topics[MAX_PUBS][128];
  char payloads[MAX_PUBS][512];
  int npubs;
  int rc; /* what the next publish returns */
  int nlines;
};

static void count_line(void *ctx, int level, const char *line)
{
  (void)level;
  (void)line;
  ((struct fx *)ctx)->nlines++;
}

static void no_wake(void *ctx)
{
  (void)ctx;
}

static int record_publish(void *ctx, const char *topic, const char *payload, size_t len)
{
  struct fx *f = ctx;
  assert_int_equal(strlen(payload), len);
  if (f->npubs < MAX_PUBS) {
    snprintf(f->topics[f->npubs], sizeof(f->topics[0]), "%s", topic);
    snprintf(f->payloads[f->npubs], sizeof(f->payloads[0]), "%s", payload);
  }
  f->npubs++;
  return f->rc;
}

static int setup(void **state)
{
  struct fx *f = calloc(1, sizeof(*f));
  struct sb_hub_opts o = {.max_connections = 100, .max_connections_per_user = 10,
                          .replay_buffer = 4, .heartbeat_ms = 25000, .retry_ms = 1000,
                          .max_queue_bytes = 65536, .max_idle_users = 10};

  if (!f)
    return -1;
  f->log = (struct sb_log){count_line, f, SB_LOG_DEBUG};
  f->hub = sb_hub_new(&o, &f->log, &f->m);
  assert_non_null(f->hub);
  *state = f;
  return 0;
}

static int teardown(void **state)
{
  struct fx *f = *state;
  sb_presence_free(f->p);
  sb_hub_free(f->hub);
  free(f);
  return 0;
}

static struct sb_conn *reg(struct fx *f, const char *user, const char *device)
{
  struct sb_conn *c = NULL;
  assert_int_equal(sb_hub_register(f->hub, user, device, NULL, 0, no_wake, NULL, &c), 0);
  return c;
}

/* Makes f->p, started at STARTED, and starts it as instance. */
static struct sb_presence *start(struct fx *f, const char *prefix, const char *instance)
{
  struct timespec t = {1767323045, 678000000}; /* STARTED */
  struct sb_err err = {""};

  f->p = sb_presence_new(prefix, f->hub, t, &f->log, &f->m);
  assert_non_null(f->p);
  assert_int_equal(sb_presence_start(f->p, instance, record_publish, f, &err), 0);
  assert_string_equal(err.msg, "");
  return f->p;
}

static void expect_pub(struct fx *f, int i, const char *topic, const char *payload)
{
  assert_true(i < f->npubs);
  assert_string_equal(f->topics[i], topic);
  assert_string_equal(f->payloads[i], payload);
}

/* Parses text as a JSON object, failing the test if it is not one. */
static json_t *parse(const char *text)
{
  json_error_t jerr;
  json_t *o = json_loads(text, 0, &jerr);
  if (!o)
    fail_msg("not JSON (%s): %s", jerr.text, text);
  assert_true(json_is_object(o));
  return o;
}

static const char *str(json_t *o, const char *key)
{
  const char *s = json_string_value(json_object_get(o, key));
  if (!s)
    fail_msg("no string %s", key);
  return s;
}

/* ---- the builders --------------------------------------------------------- */

static void test_record_two_devices(void **state)
{
  struct fx *f = *state;
  char *text;

  reg(f, "u1", "phone");
  reg(f, "u1", "laptop");
  reg(f, "u1", "laptop");
  reg(f, "u2", "phone");
  text = sb_presence_record(f->hub, "u1", "host:8080", STARTED, LATER);
  assert_non_null(text);
  /* devices newest first, as the hub holds them */
  assert_string_equal(text, "{\"userId\":\"u1\",\"online\":true,\"connections\":3,"
                            "\"devices\":{\"laptop\":2,\"phone\":1},\"instance\":\"host:8080\","
                            "\"started\":\"" STARTED "\",\"timestamp\":\"" LATER "\"}");
  free(text);
}

static void test_record_empty_when_user_leaves(void **state)
{
  struct fx *f = *state;
  struct sb_conn *a = reg(f, "u1", "phone"), *b = reg(f, "u1", "laptop");
  char *text;

  sb_hub_unregister(f->hub, a);
  text = sb_presence_record(f->hub, "u1", "host:8080", STARTED, LATER);
  assert_string_equal(text, "{\"userId\":\"u1\",\"online\":true,\"connections\":1,"
                            "\"devices\":{\"laptop\":1},\"instance\":\"host:8080\","
                            "\"started\":\"" STARTED "\",\"timestamp\":\"" LATER "\"}");
  free(text);
  sb_hub_unregister(f->hub, b);
  text = sb_presence_record(f->hub, "u1", "host:8080", STARTED, LATER);
  assert_string_equal(text, ""); /* the empty retained message clears the record */
  free(text);
  text = sb_presence_record(f->hub, "nobody", "host:8080", STARTED, LATER);
  assert_string_equal(text, "");
  free(text);
}

static void test_user_json(void **state)
{
  struct fx *f = *state;
  json_t *o;
  char *text;

  o = sb_presence_user_json(f->hub, "u9");
  text = json_dumps(o, JSON_COMPACT);
  assert_string_equal(text, "{\"userId\":\"u9\",\"online\":false,\"connections\":0,\"devices\":{}}");
  free(text);
  json_decref(o);
  reg(f, "u9", "d\"1");
  o = sb_presence_user_json(f->hub, "u9");
  text = json_dumps(o, JSON_COMPACT);
  assert_string_equal(text, "{\"userId\":\"u9\",\"online\":true,\"connections\":1,"
                            "\"devices\":{\"d\\\"1\":1}}");
  free(text);
  json_decref(o);
}

static void test_status_and_will(void **state)
{
  char *text;

  (void)state;
  text = sb_presence_status("host:8080", STARTED, LATER);
  assert_string_equal(text, "{\"instance\":\"host:8080\",\"online\":true,\"started\":\"" STARTED
                            "\",\"timestamp\":\"" LATER "\"}");
  free(text);
  text = sb_presence_status("host:8080", STARTED, NULL);
  assert_string_equal(text,
                      "{\"instance\":\"host:8080\",\"online\":false,\"started\":\"" STARTED "\"}");
  free(text);
  assert_null(sb_presence_status("bad\xff:1", STARTED, NULL)); /* not UTF-8 */
}

/* A hostname with a quote, a backslash and a newline stays one JSON string
 * in the will, the status and a record. */
static void test_instance_is_escaped(void **state)
{
  struct fx *f = *state;
  const char *will;
  json_t *o;

  start(f, "presence", ODD_INSTANCE);
  assert_string_equal(sb_presence_will(f->p, &will), "presence");
  assert_string_equal(will, "{\"instance\":\"we\\\"ird\\\\host\\n:8080\",\"online\":false,"
                            "\"started\":\"" STARTED "\"}");
  o = parse(will);
  assert_string_equal(str(o, "instance"), ODD_INSTANCE);
  json_decref(o);

  sb_presence_publish_status(f->p, 1);
  assert_int_equal(f->npubs, 1);
  o = parse(f->payloads[0]);
  assert_string_equal(str(o, "instance"), ODD_INSTANCE);
  assert_true(json_is_true(json_object_get(o, "online")));
  assert_true(sb_event_valid_timestamp(str(o, "timestamp")));
  json_decref(o);

  reg(f, "u1", "phone");
  sb_presence_publish_user(f->p, "u1");
  assert_int_equal(f->npubs, 2);
  assert_string_equal(f->topics[1], "presence/u1");
  o = parse(f->payloads[1]);
  assert_string_equal(str(o, "instance"), ODD_INSTANCE);
  assert_string_equal(str(o, "started"), STARTED);
  json_decref(o);
  /* a record with it is recognised as this instance's */
  assert_int_equal(sb_presence_from_earlier_run(f->payloads[1], strlen(f->payloads[1]),
                                                ODD_INSTANCE, LATER),
                   1);
}

/* ---- the records of an earlier run ---------------------------------------- */

static void test_stale_decision(void **state)
{
  const char *same_run = "{\"instance\":\"h:1\",\"started\":\"" STARTED "\",\"online\":true}";
  const char *older_run = "{\"instance\":\"h:1\",\"started\":\"" EARLIER "\",\"online\":true}";
  const char *other = "{\"instance\":\"h:2\",\"started\":\"" EARLIER "\",\"online\":true}";
  const char *odd[] = {"", "not json", "[]", "{\"instance\":\"h:1\"}",
                       "{\"instance\":1,\"started\":\"" EARLIER "\"}"};

  (void)state;
  assert_int_equal(sb_presence_from_earlier_run(same_run, strlen(same_run), "h:1", STARTED), 0);
  assert_int_equal(sb_presence_from_earlier_run(older_run, strlen(older_run), "h:1", STARTED), 1);
  assert_int_equal(sb_presence_from_earlier_run(other, strlen(other), "h:1", STARTED), 0);
  for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++)
    assert_int_equal(sb_presence_from_earlier_run(odd[i], strlen(odd[i]), "h:1", STARTED), 0);
}

static void test_seen_and_cleared(void **state)
{
  struct fx *f = *state;
  const char *older = "{\"instance\":\"h:1\",\"started\":\"" EARLIER "\"}";
  const char *same = "{\"instance\":\"h:1\",\"started\":\"" STARTED "\"}";
  const char *other = "{\"instance\":\"h:2\",\"started\":\"" EARLIER "\"}";

  start(f, "presence", "h:1");
  /* kept: records of an earlier run of this instance */
  assert_int_equal(sb_presence_seen(f->p, "presence/gone", older, strlen(older)), 1);
  assert_int_equal(sb_presence_seen(f->p, "presence/back", older, strlen(older)), 1);
  assert_int_equal(sb_presence_seen(f->p, "presence/gone2", older, strlen(older)), 1);
  /* not kept: this run's, another instance's, a cleared one, elsewhere */
  assert_int_equal(sb_presence_seen(f->p, "presence/u", same, strlen(same)), 0);
  assert_int_equal(sb_presence_seen(f->p, "presence/u", other, strlen(other)), 0);
  assert_int_equal(sb_presence_seen(f->p, "presence/u", "", 0), 0);
  assert_int_equal(sb_presence_seen(f->p, "presence", older, strlen(older)), 0);
  assert_int_equal(sb_presence_seen(f->p, "presencex/u", older, strlen(older)), 0);
  assert_int_equal(sb_presence_seen(f->p, "other/u", older, strlen(older)), 0);
  assert_int_equal(sb_presence_seen(f->p, "presence/a/b", older, strlen(older)), 0);
  assert_int_equal(sb_presence_seen(f->p, "presence/", older, strlen(older)), 0);
  assert_int_equal(f->npubs, 0);

  /* the user connected again keeps the record its connection published */
  reg(f, "back", "phone");
  sb_presence_clear_stale(f->p);
  assert_int_equal(f->npubs, 2);
  expect_pub(f, 0, "presence/gone", "");
  expect_pub(f, 1, "presence/gone2", "");
  assert_int_equal(atomic_load(&f->m.presence_published), 2);
  /* each is cleared once */
  sb_presence_clear_stale(f->p);
  assert_int_equal(f->npubs, 2);
}

static void test_seen_kept_until_freed(void **state)
{
  struct fx *f = *state;
  const char *older = "{\"instance\":\"h:1\",\"started\":\"" EARLIER "\"}";

  start(f, "presence", "h:1");
  assert_int_equal(sb_presence_seen(f->p, "presence/u1", older, strlen(older)), 1);
  /* freed by teardown with the record still kept: no leak */
}

/* ---- publishing ----------------------------------------------------------- */

static void test_publish_user_and_status(void **state)
{
  struct fx *f = *state;
  struct sb_conn *a;
  json_t *o;

  start(f, "presence", "h:1");
  assert_string_equal(sb_presence_instance(f->p), "h:1");
  assert_string_equal(sb_presence_filter(f->p), "presence/+");
  a = reg(f, "u1", "phone");
  sb_presence_publish_user(f->p, "u1");
  assert_int_equal(f->npubs, 1);
  assert_string_equal(f->topics[0], "presence/u1");
  o = parse(f->payloads[0]);
  assert_int_equal(json_integer_value(json_object_get(o, "connections")), 1);
  assert_string_equal(str(o, "instance"), "h:1");
  assert_string_equal(str(o, "started"), STARTED);
  assert_true(sb_event_valid_timestamp(str(o, "timestamp")));
  json_decref(o);
  sb_hub_unregister(f->hub, a);
  sb_presence_publish_user(f->p, "u1");
  expect_pub(f, 1, "presence/u1", "");
  /* not one topic level: nothing */
  sb_presence_publish_user(f->p, "a/b");
  sb_presence_publish_user(f->p, "#");
  assert_int_equal(f->npubs, 2);

  sb_presence_publish_status(f->p, 0);
  expect_pub(f, 2, "presence",
             "{\"instance\":\"h:1\",\"online\":false,\"started\":\"" STARTED "\"}");
  assert_int_equal(atomic_load(&f->m.presence_published), 3);

  /* the MQTT side away: not counted, logged */
  f->rc = SB_ESTATE;
  f->nlines = 0;
  sb_presence_publish_status(f->p, 1);
  assert_int_equal(f->npubs, 4);
  assert_int_equal(atomic_load(&f->m.presence_published), 3);
  assert_int_equal(f->nlines, 1);
}

static void test_presence_off(void **state)
{
  struct fx *f = *state;
  const char *will;
  const char *older = "{\"instance\":\"h:1\",\"started\":\"" EARLIER "\"}";

  start(f, "", "h:1");
  assert_string_equal(sb_presence_instance(f->p), "h:1");
  assert_null(sb_presence_filter(f->p));
  assert_null(sb_presence_will(f->p, &will));
  assert_string_equal(will, "");
  reg(f, "u1", "phone");
  sb_presence_publish_user(f->p, "u1");
  sb_presence_publish_status(f->p, 1);
  sb_presence_publish_status(f->p, 0);
  assert_int_equal(sb_presence_seen(f->p, "/u1", older, strlen(older)), 0);
  assert_int_equal(f->npubs, 0);
}

static void test_before_start(void **state)
{
  struct fx *f = *state;
  struct timespec t = {1767323045, 678000000};
  struct sb_err err = {""};
  const char *will;

  f->p = sb_presence_new("presence", f->hub, t, &f->log, &f->m);
  assert_non_null(f->p);
  /* what the daemon's MQTT client reads before the server starts */
  assert_string_equal(sb_presence_instance(f->p), "");
  assert_string_equal(sb_presence_will(f->p, &will), "presence");
  assert_string_equal(will, "");
  sb_presence_publish_status(f->p, 1);
  assert_int_equal(f->npubs, 0);
  /* an instance name JSON cannot hold: start fails, naming the option */
  assert_int_equal(sb_presence_start(f->p, "bad\xff:1", record_publish, f, &err), SB_EINVAL);
  assert_non_null(strstr(err.msg, "presence_prefix"));
  assert_string_equal(sb_presence_instance(f->p), "");
  /* without a publish function: nothing is published */
  assert_int_equal(sb_presence_start(f->p, "h:1", NULL, NULL, &err), 0);
  reg(f, "u1", "phone");
  sb_presence_publish_user(f->p, "u1");
  sb_presence_publish_status(f->p, 1);
  assert_int_equal(f->npubs, 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_record_two_devices, setup, teardown),
    cmocka_unit_test_setup_teardown(test_record_empty_when_user_leaves, setup, teardown),
    cmocka_unit_test_setup_teardown(test_user_json, setup, teardown),
    cmocka_unit_test_setup_teardown(test_status_and_will, setup, teardown),
    cmocka_unit_test_setup_teardown(test_instance_is_escaped, setup, teardown),
    cmocka_unit_test_setup_teardown(test_stale_decision, setup, teardown),
    cmocka_unit_test_setup_teardown(test_seen_and_cleared, setup, teardown),
    cmocka_unit_test_setup_teardown(test_seen_kept_until_freed, setup, teardown),
    cmocka_unit_test_setup_teardown(test_publish_user_and_status, setup, teardown),
    cmocka_unit_test_setup_teardown(test_presence_off, setup, teardown),
    cmocka_unit_test_setup_teardown(test_before_start, setup, teardown),
  };
  return cmocka_run_group_tests_name("presence", tests, NULL, NULL);
}
