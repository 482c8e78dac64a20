/* presence.h: what this instance tells MQTT about who is connected.
 *
 * With presence_prefix P set, the server keeps these retained messages:
 * - P/<userId>, a user's record while this instance holds connections of it:
 *   {"userId":..,"online":true,"connections":n,"devices":{"<id>":n,..},
 *    "instance":..,"started":..,"timestamp":..}; an empty message, which
 *   clears the record, once it holds none;
 * - P, the instance status: {"instance":..,"online":true,"started":..,
 *   "timestamp":..} while it runs, and the will {"instance":..,
 *   "online":false,"started":..} after a clean stop (and, set as the MQTT
 *   will, after a crash).
 * "instance" is "<hostname>:<http port>", "started" the run's start time. A
 * record that an earlier run of this instance left behind (a crash) is
 * cleared at the next start, unless its user is connected again.
 *
 * The builders (sb_presence_user_json, sb_presence_record,
 * sb_presence_status, sb_presence_from_earlier_run) are pure and write all
 * JSON through jansson. An sb_presence publishes on the server's loop thread
 * (or the thread that stops it); only sb_presence_seen may be called from any
 * thread. */
#ifndef SB_PRESENCE_H
#define SB_PRESENCE_H

#include <stddef.h>
#include <time.h>

#include "err.h"
#include "log.h"
#include "metrics.h"

struct sb_hub;
struct sb_presence;
struct json_t;

/* Publishes one retained message on topic; an empty payload clears the
 * topic's retained message. payload (len bytes) is borrowed for the call.
 * Returns 0, or a negative code: SB_ESTATE while the MQTT side is away (the
 * server publishes everything again on its return). */
typedef int (*sb_presence_publish_fn)(void *ctx, const char *topic, const char *payload,
                                      size_t len);

/* Returns what hub holds of user as a new JSON object (the caller's
 * reference): {"userId":..,"online":bool,"connections":n,"devices":{..}},
 * devices newest first; NULL when out of memory. The answer of GET
 * /api/presence and the start of a record. Pure; the hub's thread. */
struct json_t *sb_presence_user_json(const struct sb_hub *hub, const char *user);

/* Returns the retained message for <prefix>/<user> as a new string (free()
 * it): the record, stamped with instance, started and timestamp, while hub
 * holds connections of user; "" (which clears the record) when it holds none.
 * NULL when out of memory. Pure; the hub's thread. */
char *sb_presence_record(const struct sb_hub *hub, const char *user, const char *instance,
                         const char *started, const char *timestamp);

/* Returns the instance status as a new string (free() it): online, stamped
 * with timestamp; or, when timestamp is NULL, the will (offline, no
 * timestamp). NULL when out of memory or a string is not UTF-8. Pure. */
char *sb_presence_status(const char *instance, const char *started, const char *timestamp);

/* Returns 1 when payload (len bytes), a retained record, was left by an
 * earlier run of this instance: its "instance" is instance and its "started"
 * is not started. 0 otherwise, also for anything that is not such a record.
 * Pure; any thread. */
int sb_presence_from_earlier_run(const void *payload, size_t len, const char *instance,
                                 const char *started);

/* Returns the presence of a server whose hub is hub, or NULL when out of
 * memory. prefix is presence_prefix (copied; "" turns presence off: nothing
 * is then published); started is the wall-clock time of this run's start.
 * hub, log and metrics are borrowed and must outlive it. Publishes nothing
 * until sb_presence_start(). Any thread. */
struct sb_presence *sb_presence_new(const char *prefix, const struct sb_hub *hub,
                                    struct timespec started, const struct sb_log *log,
                                    struct sb_metrics *metrics);

/* Names this instance (instance is copied, at most 95 bytes are kept), sets
 * how to publish (publish NULL: never) and, with presence on, builds the
 * will. Returns 0, or SB_EINVAL with err saying why (out of memory, or an
 * instance name that is not UTF-8); nothing is then changed. Call once,
 * before the loop thread and the MQTT side start. */
int sb_presence_start(struct sb_presence *p, const char *instance, sb_presence_publish_fn publish,
                      void *ctx, struct sb_err *err);

/* Frees p and the records it still had to check. NULL-safe. */
void sb_presence_free(struct sb_presence *p);

/* Returns the instance name given to sb_presence_start(), "" before;
 * borrowed from p. Any thread once started. */
const char *sb_presence_instance(const struct sb_presence *p);

/* Returns the will's topic (the prefix; NULL when presence is off) and sets
 * *payload to the will ("" before sb_presence_start()); both borrowed from
 * p. Any thread once started. */
const char *sb_presence_will(const struct sb_presence *p, const char **payload);

/* Returns "<prefix>/+", the filter under which the records of earlier runs
 * are seen, or NULL when presence is off; borrowed from p. Any thread. */
const char *sb_presence_filter(const struct sb_presence *p);

/* Publishes user's record as the hub now holds it (or clears it: no
 * connections). Users that cannot be one topic level are skipped. Loop
 * thread. */
void sb_presence_publish_user(struct sb_presence *p, const char *user);

/* Publishes the instance status: online (stamped now) or the will. Loop
 * thread, or the thread that stopped it. */
void sb_presence_publish_status(struct sb_presence *p, int online);

/* Takes a retained message seen on the presence filter: when it is a record
 * an earlier run of this instance left, keeps its user for
 * sb_presence_clear_stale(). Returns 1 when it kept one (wake the loop
 * thread), else 0. topic is NUL-terminated; both are borrowed for the call.
 * Any thread. */
int sb_presence_seen(struct sb_presence *p, const char *topic, const void *payload, size_t len);

/* Clears the records that sb_presence_seen() kept, oldest first, except
 * those of users connected again (their current record has replaced them).
 * Loop thread. */
void sb_presence_clear_stale(struct sb_presence *p);

#endif
