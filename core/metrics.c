#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>

#include "err.h"

static const int http_codes[] = {
#define SB__HTTP_CODE(code) code,
  SB_HTTP_ERROR_MAP(SB__HTTP_CODE)
#undef SB__HTTP_CODE
};

void sb_metrics_http_error(struct sb_metrics *m, int status)
{
  for (int i = 0; i < SB_HTTP_ERROR_COUNT; i++)
    if (http_codes[i] == status)
      atomic_fetch_add(&m->http_errors[i], 1);
}

static const char *const mem_labels[] = {
#define SB__MEM_LABEL(name, label) label,
  SB_MEM_MAP(SB__MEM_LABEL)
#undef SB__MEM_LABEL
};

struct out {
  char *buf;
  size_t len, at;
  int full;
};

__attribute__((format(printf, 2, 3))) static void emit(struct out *o, const char *fmt, ...)
{
  va_list ap;
  int n;

  if (o->full)
    return;
  va_start(ap, fmt);
  n = vsnprintf(o->buf + o->at, o->len - o->at, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= o->len - o->at)
    o->full = 1;
  else
    o->at += (size_t)n;
}

static void counter(struct out *o, const char *name, const char *help, unsigned long long v)
{
  emit(o, "# HELP mqtt_sse_bridge_%s %s\n# TYPE mqtt_sse_bridge_%s counter\nmqtt_sse_bridge_%s %llu\n",
       name, help, name, name, v);
}

static void gauge(struct out *o, const char *name, const char *help, unsigned long long v)
{
  emit(o, "# HELP mqtt_sse_bridge_%s %s\n# TYPE mqtt_sse_bridge_%s gauge\nmqtt_sse_bridge_%s %llu\n",
       name, help, name, name, v);
}

int sb_metrics_render(struct sb_metrics *m, const struct sb_metrics_gauges *g, char *buf,
                      size_t len)
{
  struct out o = {buf, len, 0, 0};
  const char *broker;

  gauge(&o, "connections", "Open SSE connections.", g->connections);
  gauge(&o, "users", "Users with at least one open SSE connection.", g->users);
  gauge(&o, "replay_users", "Users the hub holds: connected, or idle with a replay buffer.", g->replay_users);
  gauge(&o, "mqtt_connected", "1 while the MQTT side is up.",
        (unsigned long long)atomic_load(&m->mqtt_connected));
  if ((broker = atomic_load(&m->mqtt_broker)))
    emit(&o, "# HELP mqtt_sse_bridge_mqtt_broker_info The MQTT broker in use (mqtt_host).\n"
             "# TYPE mqtt_sse_bridge_mqtt_broker_info gauge\n"
             "mqtt_sse_bridge_mqtt_broker_info{broker=\"%s\"} 1\n", broker);
  gauge(&o, "mqtt_subscriptions", "Topic filters subscribed and acknowledged by the broker.",
        (unsigned long long)atomic_load(&m->mqtt_subscriptions));
  emit(&o, "# HELP mqtt_sse_bridge_memory_bytes Bytes held under max_memory, by kind.\n"
           "# TYPE mqtt_sse_bridge_memory_bytes gauge\n");
  for (int k = 0; k < SB_MEM_KINDS; k++)
    emit(&o, "mqtt_sse_bridge_memory_bytes{kind=\"%s\"} %llu\n", mem_labels[k],
         atomic_load(&m->memory[k]));
  gauge(&o, "memory_budget_bytes", "max_memory: the bytes the bridge keeps to (0: no budget).",
        atomic_load(&m->memory_budget));
  emit(&o, "# HELP mqtt_sse_bridge_memory_evicted_total Replay events evicted to keep to "
           "max_memory, by whose they were.\n"
           "# TYPE mqtt_sse_bridge_memory_evicted_total counter\n");
  emit(&o, "mqtt_sse_bridge_memory_evicted_total{from=\"idle\"} %llu\n",
       atomic_load(&m->evicted[SB_EVICTED_IDLE]));
  emit(&o, "mqtt_sse_bridge_memory_evicted_total{from=\"connected\"} %llu\n",
       atomic_load(&m->evicted[SB_EVICTED_CONNECTED]));
  counter(&o, "events_received_total", "MQTT messages received.", atomic_load(&m->events_received));
  counter(&o, "events_accepted_total", "Valid events relayed.", atomic_load(&m->events_accepted));
  emit(&o, "# HELP mqtt_sse_bridge_events_dropped_total Messages dropped, by reason.\n"
           "# TYPE mqtt_sse_bridge_events_dropped_total counter\n");
  for (int r = 1; r < SB_DROP_COUNT; r++)
    emit(&o, "mqtt_sse_bridge_events_dropped_total{reason=\"%s\"} %llu\n", sb_drop_label(r),
         atomic_load(&m->events_dropped[r]));
  counter(&o, "events_duplicate_total",
          "Events dropped because their publisher id is already in the replay buffer.",
          atomic_load(&m->events_duplicate));
  counter(&o, "journal_errors_total", "Events the replay journal could not write.",
          atomic_load(&m->journal_errors));
  counter(&o, "journal_damaged_total",
          "Records of the replay journal lost to damage (skipped on reading back).",
          atomic_load(&m->journal_damaged));
  counter(&o, "journal_refused_total",
          "Records of the replay journal read back but refused: not valid events.",
          atomic_load(&m->journal_refused));
  counter(&o, "presence_published_total", "Presence records published.",
          atomic_load(&m->presence_published));
  counter(&o, "events_delivered_total", "Events queued to an SSE connection.",
          atomic_load(&m->deliveries));
  counter(&o, "events_replayed_total", "Events sent from the replay buffer.",
          atomic_load(&m->replayed));
  counter(&o, "heartbeats_total", "Heartbeat comments sent.", atomic_load(&m->heartbeats));
  counter(&o, "connections_opened_total", "SSE connections opened.",
          atomic_load(&m->connections_opened));
  counter(&o, "connections_closed_total", "SSE connections closed.",
          atomic_load(&m->connections_closed));
  counter(&o, "slow_disconnects_total", "Connections cut off for exceeding max_queue_bytes.",
          atomic_load(&m->slow_disconnects));
  emit(&o, "# HELP mqtt_sse_bridge_http_errors_total HTTP error answers, by status.\n"
           "# TYPE mqtt_sse_bridge_http_errors_total counter\n");
  for (int i = 0; i < SB_HTTP_ERROR_COUNT; i++)
    emit(&o, "mqtt_sse_bridge_http_errors_total{code=\"%d\"} %llu\n", http_codes[i],
         atomic_load(&m->http_errors[i]));
  return o.full ? SB_ELIMIT : (int)o.at;
}
