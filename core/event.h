/* event.h: parses, checks and normalises one SSEEvent from an MQTT message.
 *
 * The topic is authoritative for user and channel. A valid event comes out
 * with channel and timestamp filled in and serialised once as compact,
 * one-line JSON, ready to be framed: the payload's own text without the
 * whitespace between tokens, numbers exactly as written, strings as jansson
 * writes them. So its size follows the size of the MQTT message, never more
 * than sb_event_json_bound(). Pure: the caller passes the time. */
#ifndef SB_EVENT_H
#define SB_EVENT_H

#include <stddef.h>
#include <time.h>

struct sb_frame;

/* Longest id, sourceDeviceId, targetDeviceId or excludeDeviceId accepted,
 * in bytes. */
#define SB_EVENT_ID_MAX 128

/* Why a message was dropped; each is a label of the dropped counter. memory:
 * the server's intake refused it at max_memory (sb_event_parse never says
 * so). */
#define SB_DROP_MAP(XX)                                   \
  XX(BAD_TOPIC, "bad_topic")                              \
  XX(TOO_LARGE, "too_large")                              \
  XX(NOT_JSON, "not_json")                                \
  XX(NOT_OBJECT, "not_object")                            \
  XX(MISSING_TYPE, "missing_type")                        \
  XX(BAD_TYPE, "bad_type")                                \
  XX(MISSING_PAYLOAD, "missing_payload")                  \
  XX(BAD_FIELD, "bad_field")                              \
  XX(CHANNEL_MISMATCH, "channel_mismatch")                \
  XX(BAD_TIMESTAMP, "bad_timestamp")                      \
  XX(BAD_ID, "bad_id")                                    \
  XX(MEMORY, "memory")

enum sb_drop {
  SB_DROP_NONE = 0,
#define SB__DROP_ENUM(name, label) SB_DROP_##name,
  SB_DROP_MAP(SB__DROP_ENUM)
#undef SB__DROP_ENUM
  SB_DROP_COUNT
};

struct sb_event_rules {
  const char *topic_prefix;
  size_t max_event_bytes;
  struct timespec now; /* time of receipt, for a missing timestamp */
};

/* A parsed event. Every string is owned by the event; sb_event_clear() frees. */
struct sb_event {
  char *user;
  char *channel;
  char *id;     /* the publisher's id, or NULL: the caller assigns one */
  char *source; /* the device left out: excludeDeviceId where given, else
                   sourceDeviceId, else NULL (no device is left out) */
  char *target; /* targetDeviceId or NULL */
  char *json;   /* compact JSON of the whole event, NUL-terminated; at most
                   sb_event_json_bound(payload length, channel length) bytes */
  size_t json_len;
};

/* Why an event was refused: a reason for the counter and a line for the log. */
struct sb_event_error {
  enum sb_drop reason;
  char text[160];
};

/* Parses payload (len bytes) published on topic (topic_len bytes). Returns 0
 * and fills ev, or SB_EINVAL and fills why (ev then holds nothing), or
 * SB_ENOMEM. sourceDeviceId and excludeDeviceId are both checked; ev->source
 * names the one that decides exclusion, while ev->json keeps both fields as
 * published. Pure; any thread. */
int sb_event_parse(const struct sb_event_rules *rules, const char *topic, size_t topic_len,
                   const void *payload, size_t len, struct sb_event *ev,
                   struct sb_event_error *why);

/* Returns the most bytes the json of an event parsed from a payload of
 * payload_len bytes on a topic whose channel has channel_len bytes can have:
 * the payload (made compact, it only shrinks) plus the channel and timestamp
 * fields the bridge adds. sb_event_parse() checks the json it makes against
 * it. Pure. */
size_t sb_event_json_bound(size_t payload_len, size_t channel_len);

/* Writes the JSON object json (len bytes, which jansson accepted as an
 * object) compact, as an event's text is written: no whitespace between
 * tokens, strings as jansson writes them, numbers, true, false and null
 * exactly as written. Its members keep their order, but those whose key is
 * in drop (a NULL-terminated list) are left out, and extra (members' text,
 * "\"key\":value", or NULL) comes last. Returns a heap string of *out_len
 * bytes (at most len + strlen(extra) + 3), or NULL when out of memory. Pure. */
char *sb_event_compact_object(const char *json, size_t len, const char *const *drop,
                              const char *extra, size_t *out_len);

/* Frees the strings of ev and zeroes it. NULL-safe. */
void sb_event_clear(struct sb_event *ev);

/* Returns the counter label of a drop reason ("not_json"...). Pure. */
const char *sb_drop_label(enum sb_drop reason);

/* Writes an ISO 8601 UTC time with milliseconds ("2026-11-25T10:52:32.123Z",
 * 25 bytes with the NUL) into out. Pure. */
void sb_event_format_time(struct timespec t, char out[32]);

/* Returns a new frame (one reference, the caller's) of the system/resync
 * event that tells a connection its replay is incomplete:
 * {"channel":"system","type":"resync","payload":{"lastEventId":last_id,
 * "reason":reason},"timestamp":now}; NULL when out of memory or last_id is
 * not UTF-8. Pure: the caller passes the time. Any thread. */
struct sb_frame *sb_event_resync(const char *last_id, const char *reason, struct timespec now);

/* Returns 1 if s looks like an ISO 8601 date or date-time. Pure. */
int sb_event_valid_timestamp(const char *s);

#endif
