/* mqtt.h: the daemon's libmosquitto adapter.
 *
 * Subscribes <topic_prefix>/+/+ (or, in per_user mode, what the server asks)
 * at mqtt_qos on any MQTT broker in a persistent session, feeds every message
 * to the server, publishes for it (events of POST /api/publish at mqtt_qos,
 * retained presence records at QoS 1), reports whether the broker is up and
 * which one it is on, and reconnects when the broker goes away. mqtt_host is
 * a list: the client connects to the first broker that answers and, when a
 * connection is lost, goes on with the next ones in turn (at once after a
 * connection that lasted, then 1 s doubling to 30 s after each round of the
 * list that found none), always with the same client id, so that a cluster
 * that keeps the persistent session hands it over.
 * The client connects, and reconnects, on a thread of its own; once the
 * broker has accepted the connection it hands the socket to the server's
 * loop (sb_server_source_watch), which reads the messages, journals and
 * delivers their events and writes their acknowledgements on its own thread,
 * and gives the socket back when the connection or the loop ends.
 * libmosquitto's publish and subscribe are called from the server's loop
 * thread (threaded mode: they queue, the socket's owner writes).
 * The functions below are for the daemon's main thread. */
#ifndef SB_MQTT_H
#define SB_MQTT_H

#include "server.h"
#include "config.h"
#include "log.h"

struct sb_mqtt;

/* Returns a client for cfg feeding b (it registers itself as b's source:
 * call before sb_server_start()), not yet connecting, or NULL with err
 * naming the option at fault (a bad mqtt_host entry among them). cfg, b and log are borrowed and must outlive
 * the client; free it with sb_mqtt_free(). */
struct sb_mqtt *sb_mqtt_new(const struct sb_config *cfg, struct sb_server *b,
                            const struct sb_log *log, struct sb_err *err);

/* Fills ops with what the server may ask of this client (publishing; in
 * per_user mode subscribing), for sb_server_set_mqtt(); ops->ctx borrows m. */
void sb_mqtt_ops(struct sb_mqtt *m, struct sb_mqtt_ops *ops);

/* Starts connecting on the client's thread, once the server is started: the
 * default client id is "mqtt-sse-bridge-<hostname>-<http port>". A broker that
 * is not there yet is not an error: the client keeps trying. Returns 0, or
 * SB_EINVAL or SB_EIO with err (the client is then not started). */
int sb_mqtt_start(struct sb_mqtt *m, struct sb_err *err);

/* Waits up to 2 s for the broker to acknowledge the last publishes,
 * disconnects and joins the client's thread. NULL-safe; safe to call when
 * not started and more than once. */
void sb_mqtt_stop(struct sb_mqtt *m);

/* Stops the client if it runs (as sb_mqtt_stop) and frees it. NULL-safe. */
void sb_mqtt_free(struct sb_mqtt *m);

#endif
