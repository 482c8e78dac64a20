/* mqtt.h: the daemon's libmosquitto adapter.
 *
 * Subscribes <topic_prefix>/+/+ (or, in per_user mode, what the server asks)
 * at mqtt_qos on any MQTT broker in a persistent session, feeds every message
 * to the bridge, publishes for it (POST /api/publish, presence), reports
 * whether the broker is up, and reconnects with backoff (1 s doubling to
 * 30 s) when the broker goes away. The client runs on libmosquitto's own
 * thread; sb_server_ingest() is thread-safe, and libmosquitto's publish and
 * subscribe may be called from the server's loop thread. */
#ifndef SB_MQTT_H
#define SB_MQTT_H

#include "server.h"
#include "config.h"
#include "log.h"

struct sb_mqtt;

/* Returns a client for cfg feeding b, or NULL with err naming
 * the option at fault. cfg, b and log are borrowed and must
 * outlive the client. */
struct sb_mqtt *sb_mqtt_new(const struct sb_config *cfg, struct sb_server *b,
                            const struct sb_log *log, struct sb_err *err);

/* Fills ops with what the server may ask of this client (publishing; in
 * per_user mode subscribing), for sb_server_set_mqtt(). */
void sb_mqtt_ops(struct sb_mqtt *m, struct sb_mqtt_ops *ops);

/* Starts connecting in the background, once the bridge is started: the
 * default client id is "mqtt-sse-bridge-<hostname>-<http port>". A broker that
 * is not there yet is not an error: the client keeps trying. Returns 0 or a
 * negative code with err. */
int sb_mqtt_start(struct sb_mqtt *m, struct sb_err *err);

/* Disconnects and joins the client thread. Safe to call more than once. */
void sb_mqtt_stop(struct sb_mqtt *m);

/* Frees a stopped client. NULL-safe. */
void sb_mqtt_free(struct sb_mqtt *m);

#endif
