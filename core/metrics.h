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

#define SB_HTTP_ERROR_MAP(XX) \
  XX(400) XX(401) XX(403) XX(404) XX(405) XX(413) XX(415) XX(429) XX(503)

enum sb_http_error {
#define SB__HTTP_ENUM(code) SB_HTTP_E##code,
  SB_HTTP_ERROR_MAP(SB__HTTP_ENUM)
#undef SB__HTTP_ENUM
  SB_HTTP_ERROR_COUNT
};

/* Why the HTTP side closed a connection without an answer (the label
 * reason of mqtt_sse_bridge_http_refused_total). */
enum sb_http_refusal {
  SB_HTTP_REFUSED_PER_ADDRESS, /* its address held max_pending_per_address */
  SB_HTTP_REFUSED_DEADLINE,    /* its request's headers or body came too late */
  SB_HTTP_REFUSED_COUNT
};

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
  atomic_ullong presence_published; /* presence records published */
  atomic_ullong http_errors[SB_HTTP_ERROR_COUNT];
  atomic_ullong http_refused[SB_HTTP_REFUSED_COUNT];
  atomic_int mqtt_connected;
  atomic_int mqtt_subscriptions;  /* topic filters the broker acknowledged */
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
