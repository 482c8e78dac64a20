/* publish.h: turns the body of POST /api/publish into the MQTT message the
 * bridge publishes for it.
 *
 * The body is an SSEEvent plus the sender's deviceId (and, optionally, its
 * own userId); the message is the body less deviceId and userId, with
 * sourceDeviceId set from deviceId, on <topic_prefix>/<user>/<channel>, and
 * it must pass the checks of an event from MQTT (event.h). A refusal says
 * why, in a class the HTTP side answers with a status (400, 403, 413) and a
 * line for the client. Pure: no I/O, no clock but the rules' time; any
 * thread. */
#ifndef SB_PUBLISH_H
#define SB_PUBLISH_H

#include <stddef.h>

#include "event.h"

/* The class of a refusal: the status the HTTP side answers with. */
enum sb_publish_refusal {
  SB_PUBLISH_NONE = 0,
  SB_PUBLISH_BAD_REQUEST, /* 400: the body is not a publishable event */
  SB_PUBLISH_FORBIDDEN,       /* 403: userId names another user */
  SB_PUBLISH_TOO_LARGE        /* 413: the body or the event is over max_event_bytes */
};

/* Why a body was refused: its class and a line for the client. */
struct sb_publish_error {
  enum sb_publish_refusal reason;
  char text[160];
};

/* The message to publish. Both strings are owned by it; sb_publish_clear()
 * frees them. */
struct sb_publish {
  char *topic;   /* <topic_prefix>/<user>/<channel> */
  char *payload; /* compact JSON, NUL-terminated */
  size_t payload_len;
};

/* Checks the size of a body of len bytes against the rules' max_event_bytes
 * (the body may carry a little more than the event, for the fields the
 * bridge takes out). Returns 0, or SB_EINVAL and fills why with
 * SB_PUBLISH_TOO_LARGE. Lets the HTTP side refuse a body from its
 * Content-Length, or stop reading it, before it is whole. Pure. */
int sb_publish_check_size(const struct sb_event_rules *rules, size_t len,
                          struct sb_publish_error *why);

/* Maps body (len bytes, borrowed) that user (borrowed; authenticated by the
 * caller) posted to the message to publish. Returns 0 and fills out, or
 * SB_EINVAL and fills why (out then holds nothing), or SB_ENOMEM (out holds
 * nothing). The checks, in order: size, a JSON object, deviceId, channel,
 * userId, no sourceDeviceId, then those of sb_event_parse() with rules
 * (topic_prefix, max_event_bytes, the time of receipt). Pure; any thread. */
int sb_publish_body(const struct sb_event_rules *rules, const char *user, const char *body,
                    size_t len, struct sb_publish *out, struct sb_publish_error *why);

/* Frees the strings of p and zeroes it. NULL-safe. */
void sb_publish_clear(struct sb_publish *p);

#endif
