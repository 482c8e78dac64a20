/* metrics.h: the counters behind GET /metrics, in Prometheus text format.
 *
 * Counters are C11 atomics: the intake thread (MQTT) and the server's loop
 * thread both add to them without a lock. Gauges that the hub knows
 * (connections, users) are passed in at render time. A struct sb_metrics is
 * a plain value owned by the server; zero it to start. */
#ifndef SB_METRICS_H
#define SB_METRICS_H

#include <stdatomic.h>
#include <stddef.h>

#include "event.h"

#define SB_HTTP_ERROR_MAP(XX) XX(400) XX(401) XX(403) XX(404) XX(405) XX(413) XX(429) XX(503)

enum sb_http_error {
#define SB__HTTP_ENUM(code) SB_HTTP_E##code,
  SB_HTTP_ERROR_MAP(SB__HTTP_ENUM)
#undef SB__HTTP_ENUM
  SB_HTTP_ERROR_COUNT
};

/* What the memory budget (max_memory) counts, by kind: each a label of the
 * gauge mqtt_sse_bridge_memory_bytes. */
#define SB_MEM_MAP(XX)       \
  XX(REPLAY, "replay")       \
  XX(QUEUES, "queues")       \
  XX(PENDING, "pending")

enum sb_mem_kind {
#define SB__MEM_ENUM(name, label) SB_MEM_##name,
  SB_MEM_MAP(SB__MEM_ENUM)
#undef SB__MEM_ENUM
  SB_MEM_KINDS
};

/* Whose replay events the hub evicted to keep to the budget: users without
 * connections, or users with connections (above their floor first). */
enum sb_evicted { SB_EVICTED_IDLE = 0, SB_EVICTED_CONNECTED = 1, SB_EVICTED_KINDS };

struct sb_metrics {
  atomic_ullong events_received;  /* messages that reached the bridge */
  atomic_ullong events_accepted;  /* of those, valid events */
  atomic_ullong events_dropped[SB_DROP_COUNT];
  atomic_ullong deliveries;       /* event frames queued to a connection */
  atomic_ullong replayed;         /* of those, sent from the replay buffer */
  atomic_ullong heartbeats;
  atomic_ullong connections_opened;
  atomic_ullong connections_closed;
  atomic_ullong slow_disconnects; /* connections cut off at max_queue_bytes */
  atomic_ullong events_duplicate; /* publisher ids already in the replay buffer */
  atomic_ullong journal_errors;   /* events the replay journal could not keep */
  atomic_ullong journal_damaged;  /* records the journal lost to damage on reading back */
  atomic_ullong journal_refused;  /* records read back that were not valid events */
  atomic_ullong presence_published; /* presence records published */
  atomic_ullong http_errors[SB_HTTP_ERROR_COUNT];
  /* Bytes held by kind: the hub sets replay and queues (its thread), the
   * server's intake adds and takes pending. */
  atomic_ullong memory[SB_MEM_KINDS];
  atomic_ullong memory_budget;    /* max_memory; 0: no budget */
  atomic_ullong evicted[SB_EVICTED_KINDS]; /* replay events evicted for the budget */
  atomic_int mqtt_connected;
  atomic_int mqtt_subscriptions;  /* topic filters the broker acknowledged */
  /* the broker in use, "host:port" (the daemon's mqtt_host entry), or NULL:
   * borrowed from the MQTT side, which keeps it while it is set */
  _Atomic(const char *) mqtt_broker;
};

struct sb_metrics_gauges {
  size_t connections;
  size_t users;          /* users with at least one connection */
  size_t replay_users;   /* users whose replay buffer is kept */
};

/* Counts one HTTP error answer by status code; other codes are ignored. */
void sb_metrics_http_error(struct sb_metrics *m, int status);

/* Writes the Prometheus text of m and g into buf (len bytes). Returns the
 * length written, or SB_ELIMIT when buf is too small. Any thread. */
int sb_metrics_render(struct sb_metrics *m, const struct sb_metrics_gauges *g, char *buf,
                      size_t len);

#endif
