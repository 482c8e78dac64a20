/* mqtt.h: the daemon's libmosquitto adapter.
 *
 * Subscribes <topic_prefix>/+/+ at mqtt_qos on any MQTT broker, feeds every
 * message to the bridge, reports whether the broker is up, and reconnects
 * with backoff (1 s doubling to 30 s) when the broker goes away. The client
 * runs on libmosquitto's own thread; sb_bridge_ingest() is thread-safe. */
#ifndef SB_MQTT_H
#define SB_MQTT_H

#include "bridge.h"
#include "config.h"
#include "log.h"

struct sb_mqtt;

/* Returns a client for cfg feeding b, or NULL with err (SB_CONFIG_ERR_SIZE
 * bytes) naming the option at fault. cfg, b and log are borrowed and must
 * outlive the client. */
struct sb_mqtt *sb_mqtt_new(const struct sb_config *cfg, struct sb_bridge *b,
                            const struct sb_log *log, char *err);

/* Starts connecting in the background. A broker that is not there yet is not
 * an error: the client keeps trying. Returns 0 or SB_EIO with err. */
int sb_mqtt_start(struct sb_mqtt *m, char *err);

/* Publishes an event for POST /api/publish (an sb_publish_fn; ctx is the
 * client). Returns 0, or SB_ESTATE while the broker is away. Any thread. */
int sb_mqtt_publish(void *ctx, const char *topic, const void *payload, size_t len);

/* Disconnects and joins the client thread. Safe to call more than once. */
void sb_mqtt_stop(struct sb_mqtt *m);

/* Frees a stopped client. NULL-safe. */
void sb_mqtt_free(struct sb_mqtt *m);

#endif
