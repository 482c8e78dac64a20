/* Unit tests of metrics.c: the Prometheus text of the counters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "err.h"
#include "event.h"
#include "metrics.h"

/* Returns 1 if text holds line as a whole line. */
static int has_line(const char *text, const char *line)
{
  size_t n = strlen(line);
  for (const char *p = text; (p = strstr(p, line)); p++)
    if ((p == text || p[-1] == '\n') && p[n] == '\n')
      return 1;
  return 0;
}

static void expect_line(const char *text, const char *line)
{
  if (!has_line(text, line))
    fail_msg("missing line: %s\n--- got:\n%s", line, text);
}

static size_t count_lines(const char *text)
{
  size_t n = 0;
  for (; *text; text++)
    n += *text == '\n';
  return n;
}

static void test_render_values(void **state)
{
  static struct sb_metrics m; /* zeroed */
  struct sb_metrics_gauges g = {7, 3, 5};
  char buf[16384];
  int n;
  (void)state;

  memset(&m, 0, sizeof(m));
  atomic_store(&m.events_received, 20);
  atomic_store(&m.events_accepted, 14);
  atomic_store(&m.events_dropped[SB_DROP_NOT_JSON], 3);
  atomic_store(&m.events_dropped[SB_DROP_BAD_ID], 2);
  atomic_store(&m.events_dropped[SB_DROP_TOO_LARGE], 1);
  atomic_store(&m.deliveries, 40);
  atomic_store(&m.replayed, 6);
  atomic_store(&m.heartbeats, 11);
  atomic_store(&m.connections_opened, 9);
  atomic_store(&m.connections_closed, 2);
  atomic_store(&m.slow_disconnects, 1);
  atomic_store(&m.mqtt_connected, 1);
  atomic_store(&m.mqtt_subscriptions, 4);
  atomic_store(&m.events_duplicate, 5);
  atomic_store(&m.presence_published, 8);
  atomic_store(&m.journal_damaged, 3);
  atomic_store(&m.journal_refused, 4);
  atomic_store(&m.events_dropped[SB_DROP_MEMORY], 12);
  atomic_store(&m.memory[SB_MEM_REPLAY], 1000);
  atomic_store(&m.memory[SB_MEM_QUEUES], 200);
  atomic_store(&m.memory[SB_MEM_PENDING], 30);
  atomic_store(&m.memory_budget, 33554432);
  atomic_store(&m.evicted[SB_EVICTED_IDLE], 17);
  atomic_store(&m.evicted[SB_EVICTED_CONNECTED], 2);
  sb_metrics_http_error(&m, 401);
  sb_metrics_http_error(&m, 401);
  sb_metrics_http_error(&m, 503);
  sb_metrics_http_error(&m, 500); /* not a counted code */
  sb_metrics_http_error(&m, 200);

  memset(buf, '#', sizeof(buf));
  n = sb_metrics_render(&m, &g, buf, sizeof(buf));
  assert_true(n > 0);
  assert_int_equal((size_t)n, strlen(buf));

  expect_line(buf, "# TYPE mqtt_sse_bridge_connections gauge");
  expect_line(buf, "mqtt_sse_bridge_connections 7");
  expect_line(buf, "mqtt_sse_bridge_users 3");
  expect_line(buf, "mqtt_sse_bridge_replay_users 5");
  expect_line(buf, "mqtt_sse_bridge_mqtt_connected 1");
  expect_line(buf, "# TYPE mqtt_sse_bridge_events_received_total counter");
  expect_line(buf, "mqtt_sse_bridge_events_received_total 20");
  expect_line(buf, "mqtt_sse_bridge_events_accepted_total 14");
  expect_line(buf, "# TYPE mqtt_sse_bridge_events_dropped_total counter");
  expect_line(buf, "mqtt_sse_bridge_events_dropped_total{reason=\"bad_topic\"} 0");
  expect_line(buf, "mqtt_sse_bridge_events_dropped_total{reason=\"too_large\"} 1");
  expect_line(buf, "mqtt_sse_bridge_events_dropped_total{reason=\"not_json\"} 3");
  expect_line(buf, "mqtt_sse_bridge_events_dropped_total{reason=\"not_object\"} 0");
  expect_line(buf, "mqtt_sse_bridge_events_dropped_total{reason=\"missing_type\"} 0");
  expect_line(buf, "mqtt_sse_bridge_events_dropped_total{reason=\"bad_type\"} 0");
  expect_line(buf, "mqtt_sse_bridge_events_dropped_total{reason=\"missing_payload\"} 0");
  expect_line(buf, "mqtt_sse_bridge_events_dropped_total{reason=\"bad_field\"} 0");
  expect_line(buf, "mqtt_sse_bridge_events_dropped_total{reason=\"channel_mismatch\"} 0");
  expect_line(buf, "mqtt_sse_bridge_events_dropped_total{reason=\"bad_timestamp\"} 0");
  expect_line(buf, "mqtt_sse_bridge_events_dropped_total{reason=\"bad_id\"} 2");
  expect_line(buf, "mqtt_sse_bridge_events_dropped_total{reason=\"memory\"} 12");
  expect_line(buf, "# TYPE mqtt_sse_bridge_memory_bytes gauge");
  expect_line(buf, "mqtt_sse_bridge_memory_bytes{kind=\"replay\"} 1000");
  expect_line(buf, "mqtt_sse_bridge_memory_bytes{kind=\"queues\"} 200");
  expect_line(buf, "mqtt_sse_bridge_memory_bytes{kind=\"pending\"} 30");
  expect_line(buf, "# TYPE mqtt_sse_bridge_memory_budget_bytes gauge");
  expect_line(buf, "mqtt_sse_bridge_memory_budget_bytes 33554432");
  expect_line(buf, "# TYPE mqtt_sse_bridge_memory_evicted_total counter");
  expect_line(buf, "mqtt_sse_bridge_memory_evicted_total{from=\"idle\"} 17");
  expect_line(buf, "mqtt_sse_bridge_memory_evicted_total{from=\"connected\"} 2");
  expect_line(buf, "mqtt_sse_bridge_events_delivered_total 40");
  expect_line(buf, "mqtt_sse_bridge_events_replayed_total 6");
  expect_line(buf, "mqtt_sse_bridge_heartbeats_total 11");
  expect_line(buf, "mqtt_sse_bridge_connections_opened_total 9");
  expect_line(buf, "mqtt_sse_bridge_connections_closed_total 2");
  expect_line(buf, "mqtt_sse_bridge_slow_disconnects_total 1");
  expect_line(buf, "mqtt_sse_bridge_mqtt_subscriptions 4");
  expect_line(buf, "mqtt_sse_bridge_events_duplicate_total 5");
  expect_line(buf, "mqtt_sse_bridge_journal_errors_total 0");
  expect_line(buf, "# TYPE mqtt_sse_bridge_journal_damaged_total counter");
  expect_line(buf, "mqtt_sse_bridge_journal_damaged_total 3");
  expect_line(buf, "mqtt_sse_bridge_journal_refused_total 4");
  expect_line(buf, "# TYPE mqtt_sse_bridge_presence_published_total counter");
  expect_line(buf, "mqtt_sse_bridge_presence_published_total 8");
  expect_line(buf, "# TYPE mqtt_sse_bridge_http_errors_total counter");
  expect_line(buf, "mqtt_sse_bridge_http_errors_total{code=\"400\"} 0");
  expect_line(buf, "mqtt_sse_bridge_http_errors_total{code=\"401\"} 2");
  expect_line(buf, "mqtt_sse_bridge_http_errors_total{code=\"503\"} 1");
  /* no "none" reason, no uncounted codes */
  assert_null(strstr(buf, "reason=\"none\""));
  assert_null(strstr(buf, "code=\"500\""));
  assert_null(strstr(buf, "code=\"200\""));
  /* 6 gauges and 13 plain counters of 3 lines each, the memory family
   * (2 + 3 lines), the evicted family (2 + 2), the dropped family (2 + 12
   * lines) and the http family (2 + 8 lines) */
  assert_int_equal(count_lines(buf), 19 * 3 + 5 + 4 + 14 + 10);
  /* the text ends with a newline, every line is HELP, TYPE or a sample */
  assert_int_equal(buf[n - 1], '\n');
}

static void test_render_zero(void **state)
{
  struct sb_metrics m;
  struct sb_metrics_gauges g = {0, 0, 0};
  char buf[16384];
  (void)state;

  memset(&m, 0, sizeof(m));
  assert_true(sb_metrics_render(&m, &g, buf, sizeof(buf)) > 0);
  expect_line(buf, "mqtt_sse_bridge_connections 0");
  expect_line(buf, "mqtt_sse_bridge_mqtt_connected 0");
  expect_line(buf, "mqtt_sse_bridge_events_dropped_total{reason=\"not_json\"} 0");
  expect_line(buf, "mqtt_sse_bridge_events_received_total 0");
}

static void test_render_too_small(void **state)
{
  struct sb_metrics m;
  struct sb_metrics_gauges g = {1, 1, 1};
  char buf[16384];
  int need;
  (void)state;

  memset(&m, 0, sizeof(m));
  need = sb_metrics_render(&m, &g, buf, sizeof(buf));
  assert_true(need > 100);
  assert_int_equal(sb_metrics_render(&m, &g, buf, 0), SB_ELIMIT);
  assert_int_equal(sb_metrics_render(&m, &g, buf, 10), SB_ELIMIT);
  assert_int_equal(sb_metrics_render(&m, &g, buf, (size_t)need - 1), SB_ELIMIT);
  /* cut in the middle of the dropped family, too */
  assert_int_equal(sb_metrics_render(&m, &g, buf, (size_t)need - 200), SB_ELIMIT);
  assert_int_equal(sb_metrics_render(&m, &g, buf, (size_t)need + 1), need);
}

static void test_http_error_codes(void **state)
{
  static const int codes[] = {400, 401, 403, 404, 405, 413, 429, 503};
  struct sb_metrics m;
  (void)state;

  memset(&m, 0, sizeof(m));
  for (int i = 0; i < SB_HTTP_ERROR_COUNT; i++)
    for (int k = 0; k <= i; k++)
      sb_metrics_http_error(&m, codes[i]);
  sb_metrics_http_error(&m, 0);
  sb_metrics_http_error(&m, 500);
  sb_metrics_http_error(&m, -1);
  for (int i = 0; i < SB_HTTP_ERROR_COUNT; i++)
    assert_int_equal(atomic_load(&m.http_errors[i]), (unsigned long long)i + 1);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_render_values),
    cmocka_unit_test(test_render_zero),
    cmocka_unit_test(test_render_too_small),
    cmocka_unit_test(test_http_error_codes),
  };
  return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
