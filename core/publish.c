#include "publish.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "err.h"
#include "sse.h"
#include "topic.h"

/* Bytes a body may carry beyond max_event_bytes: the event grows by the
 * fields the bridge adds, and the body holds deviceId and userId besides. */
#define BODY_SLACK 1024

static int refuse(struct sb_publish_error *why, enum sb_publish_refusal reason, const char *text)
{
  why->reason = reason;
  snprintf(why->text, sizeof(why->text), "%s", text);
  return SB_EINVAL;
}

int sb_publish_check_size(const struct sb_event_rules *rules, size_t len,
                          struct sb_publish_error *why)
{
  if (len > rules->max_event_bytes + BODY_SLACK)
    return refuse(why, SB_PUBLISH_TOO_LARGE, "body is over max_event_bytes");
  return 0;
}

/* Returns "<prefix>/<user>/<channel>" (a heap string), or NULL. */
static char *make_topic(const char *prefix, const char *user, const char *channel)
{
  size_t n = strlen(prefix) + strlen(user) + strlen(channel) + 3;
  char *t = malloc(n);

  if (t)
    snprintf(t, n, "%s/%s/%s", prefix, user, channel);
  return t;
}

int sb_publish_body(const struct sb_event_rules *rules, const char *user, const char *body,
                    size_t len, struct sb_publish *out, struct sb_publish_error *why)
{
  json_error_t jerr;
  json_t *root = NULL, *v;
  struct sb_event ev;
  struct sb_event_error evwhy;
  static const char *const dropped[] = {"deviceId", "userId", NULL};
  const char *device, *channel;
  char source[160]; /* "sourceDeviceId":"<deviceId, at most 128 characters>" */
  int rc;

  memset(out, 0, sizeof(*out));
  why->reason = SB_PUBLISH_NONE;
  why->text[0] = '\0';
  if ((rc = sb_publish_check_size(rules, len, why)))
    return rc;
  /* numbers as reals: the message keeps them as written (below), so only
   * their syntax matters here, as for a message from MQTT */
  if (!body ||
      !(root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &jerr)) ||
      !json_is_object(root)) {
    rc = refuse(why, SB_PUBLISH_BAD_REQUEST, "body is not a JSON object");
    goto error;
  }
  device = json_string_value(json_object_get(root, "deviceId"));
  channel = json_string_value(json_object_get(root, "channel"));
  if (!device || !sb_sse_valid_device(device, strlen(device))) {
    rc = refuse(why, SB_PUBLISH_BAD_REQUEST,
                "deviceId must be 1 to 128 characters of A-Z a-z 0-9 . _ : -");
    goto error;
  }
  if (!channel || !sb_topic_valid_level(channel, strlen(channel))) {
    rc = refuse(why, SB_PUBLISH_BAD_REQUEST,
                "channel must be a non-empty string without '/', '+', '#' or control characters");
    goto error;
  }
  v = json_object_get(root, "userId");
  if (v && !(json_is_string(v) && strcmp(json_string_value(v), user) == 0)) {
    rc = refuse(why, SB_PUBLISH_FORBIDDEN, "a user may publish only their own events");
    goto error;
  }
  if (json_object_get(root, "sourceDeviceId")) {
    rc = refuse(why, SB_PUBLISH_BAD_REQUEST, "sourceDeviceId is set from deviceId; do not send it");
    goto error;
  }

  /* The body's own text made compact, numbers as written (jansson would
   * print 0.1 as 0.10000000000000001), without deviceId and userId, and
   * sourceDeviceId last: deviceId is of a character set that needs no
   * escaping. */
  rc = SB_ENOMEM;
  snprintf(source, sizeof(source), "\"sourceDeviceId\":\"%s\"", device);
  if (!(out->topic = make_topic(rules->topic_prefix, user, channel)) ||
      !(out->payload = sb_event_compact_object(body, len, dropped, source, &out->payload_len)))
    goto error;

  /* The same checks as a message from MQTT. */
  rc = sb_event_parse(rules, out->topic, strlen(out->topic), out->payload, out->payload_len, &ev,
                      &evwhy);
  if (rc == SB_EINVAL)
    refuse(why, evwhy.reason == SB_DROP_TOO_LARGE ? SB_PUBLISH_TOO_LARGE : SB_PUBLISH_BAD_REQUEST,
           evwhy.text);
  if (rc)
    goto error;
  sb_event_clear(&ev);
  json_decref(root);
  return 0;

error:
  json_decref(root);
  sb_publish_clear(out);
  return rc;
}

void sb_publish_clear(struct sb_publish *p)
{
  if (!p)
    return;
  free(p->topic);
  free(p->payload);
  memset(p, 0, sizeof(*p));
}
