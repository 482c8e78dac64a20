#include "event.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "err.h"
#include "sse.h"
#include "topic.h"

static const char *const drop_labels[] = {
  "none",
#define SB__DROP_LABEL(name, label) label,
  SB_DROP_MAP(SB__DROP_LABEL)
#undef SB__DROP_LABEL
};

const char *sb_drop_label(enum sb_drop reason)
{
  if ((int)reason < 0 || reason >= SB_DROP_COUNT)
    return "unknown";
  return drop_labels[reason];
}

void sb_event_format_time(struct timespec t, char out[32])
{
  struct tm tm;
  size_t n;

  gmtime_r(&t.tv_sec, &tm);
  n = strftime(out, 24, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + n, 32 - n, ".%03dZ", (int)((t.tv_nsec / 1000000) % 1000));
}

struct sb_frame *sb_event_resync(const char *last_id, const char *reason, struct timespec now)
{
  char ts[32], *json;
  json_t *ev;
  struct sb_frame *f = NULL;

  sb_event_format_time(now, ts);
  ev = json_pack("{s:s, s:s, s:{s:s, s:s}, s:s}", "channel", "system", "type", "resync",
                 "payload", "lastEventId", last_id, "reason", reason, "timestamp", ts);
  if (ev && (json = json_dumps(ev, JSON_COMPACT))) {
    f = sb_frame_event(NULL, NULL, NULL, json, strlen(json));
    free(json);
  }
  json_decref(ev);
  return f;
}

/* Reads n digits at *p as a number from min to max; returns 0 if not. */
static int number(const char **p, int n, int min, int max)
{
  int v = 0;
  for (int i = 0; i < n; i++, (*p)++) {
    if (!isdigit((unsigned char)**p))
      return 0;
    v = v * 10 + (**p - '0');
  }
  return v >= min && v <= max;
}

static int days_in_month(int year, int month)
{
  static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return month == 2 && leap ? 29 : days[month - 1];
}

int sb_event_valid_timestamp(const char *s)
{
  const char *p = s;
  int year, month;

  if (!number(&p, 4, 0, 9999) || *p++ != '-' || !number(&p, 2, 1, 12) || *p++ != '-')
    return 0;
  year = atoi(s);
  month = atoi(s + 5);
  if (!number(&p, 2, 1, days_in_month(year, month)))
    return 0;
  if (*p == '\0')
    return 1;
  if (*p != 'T' && *p != 't' && *p != ' ')
    return 0;
  p++;
  if (!number(&p, 2, 0, 23) || *p++ != ':' || !number(&p, 2, 0, 59))
    return 0;
  if (*p == ':') {
    p++;
    if (!number(&p, 2, 0, 60)) /* 60: a leap second */
      return 0;
    if (*p == '.' || *p == ',') {
      p++;
      if (!isdigit((unsigned char)*p))
        return 0;
      while (isdigit((unsigned char)*p))
        p++;
    }
  }
  if (*p == 'Z' || *p == 'z')
    return p[1] == '\0';
  if (*p == '+' || *p == '-') {
    p++;
    if (!number(&p, 2, 0, 23))
      return 0;
    if (*p == ':') {
      p++;
      if (!number(&p, 2, 0, 59))
        return 0;
    } else if (*p && !number(&p, 2, 0, 59))
      return 0;
  }
  return *p == '\0';
}

static int fail(struct sb_event_error *why, enum sb_drop reason, const char *fmt, const char *arg)
{
  why->reason = reason;
  snprintf(why->text, sizeof(why->text), fmt, arg ? arg : "");
  return SB_EINVAL;
}

/* Reads an optional string field that must be a safe id; "absent" covers a
 * missing key and null. Returns 0, or fills why. */
static int id_field(json_t *obj, const char *key, int allow_int, char **out,
                    struct sb_event_error *why)
{
  json_t *v = json_object_get(obj, key);
  char buf[32];
  const char *s;
  size_t n;

  *out = NULL;
  if (!v || json_is_null(v))
    return 0;
  if (allow_int && json_is_integer(v) && json_integer_value(v) >= 0) {
    snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
    s = buf;
    n = strlen(buf);
  } else if (json_is_string(v)) {
    s = json_string_value(v);
    n = json_string_length(v);
  } else
    return fail(why, SB_DROP_BAD_FIELD,
                allow_int ? "field '%s' must be a string or a non-negative integer"
                          : "field '%s' must be a string",
                key);
  if (!sb_sse_valid_id(s, n, SB_EVENT_ID_MAX) || strlen(s) != n)
    return fail(why, SB_DROP_BAD_ID,
                "field '%s' must be 1 to 128 characters without control characters", key);
  if (!(*out = strdup(s)))
    return SB_ENOMEM;
  return 0;
}

int sb_event_parse(const struct sb_event_rules *rules, const char *topic, size_t topic_len,
                   const void *payload, size_t len, struct sb_event *ev,
                   struct sb_event_error *why)
{
  struct sb_topic t;
  json_error_t jerr;
  json_t *root = NULL, *v;
  char *exclude = NULL;
  int rc = SB_EINVAL;
  char ts[32];

  memset(ev, 0, sizeof(*ev));
  why->reason = SB_DROP_NONE;
  why->text[0] = '\0';

  if (sb_topic_split(rules->topic_prefix, topic, topic_len, &t))
    return fail(why, SB_DROP_BAD_TOPIC, "topic is not %s/<userId>/<channel>",
                rules->topic_prefix);
  if (len > rules->max_event_bytes)
    return fail(why, SB_DROP_TOO_LARGE, "payload is over max_event_bytes%s", NULL);

  root = json_loadb(payload, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
  if (!root)
    return fail(why, SB_DROP_NOT_JSON, "payload is not valid JSON: %.100s", jerr.text);
  if (!json_is_object(root)) {
    rc = fail(why, SB_DROP_NOT_OBJECT, "payload is not a JSON object%s", NULL);
    goto error;
  }

  v = json_object_get(root, "type");
  if (!v) {
    rc = fail(why, SB_DROP_MISSING_TYPE, "field 'type' is missing%s", NULL);
    goto error;
  }
  if (!json_is_string(v) || json_string_length(v) == 0) {
    rc = fail(why, SB_DROP_BAD_TYPE, "field 'type' must be a non-empty string%s", NULL);
    goto error;
  }
  if (!json_object_get(root, "payload")) {
    rc = fail(why, SB_DROP_MISSING_PAYLOAD, "field 'payload' is missing%s", NULL);
    goto error;
  }

  v = json_object_get(root, "channel");
  if (v && !json_is_null(v)) {
    if (!json_is_string(v)) {
      rc = fail(why, SB_DROP_BAD_FIELD, "field 'channel' must be a string%s", NULL);
      goto error;
    }
    if (json_string_length(v) != t.channel_len ||
        memcmp(json_string_value(v), t.channel, t.channel_len) != 0) {
      rc = fail(why, SB_DROP_CHANNEL_MISMATCH, "field 'channel' differs from the topic's channel%s",
                NULL);
      goto error;
    }
  }

  v = json_object_get(root, "timestamp");
  if (v && !json_is_null(v)) {
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v) ||
        !sb_event_valid_timestamp(json_string_value(v))) {
      rc = fail(why, SB_DROP_BAD_TIMESTAMP, "field 'timestamp' must be an ISO 8601 string%s", NULL);
      goto error;
    }
  }

  if ((rc = id_field(root, "id", 1, &ev->id, why)) ||
      (rc = id_field(root, "sourceDeviceId", 0, &ev->source, why)) ||
      (rc = id_field(root, "targetDeviceId", 0, &ev->target, why)) ||
      (rc = id_field(root, "excludeDeviceId", 0, &exclude, why)))
    goto error;
  /* the device left out: excludeDeviceId where given, else the source */
  if (exclude) {
    free(ev->source);
    ev->source = exclude;
    exclude = NULL;
  }

  rc = SB_ENOMEM;
  if (!(ev->user = strndup(t.user, t.user_len)) ||
      !(ev->channel = strndup(t.channel, t.channel_len)))
    goto error;
  if (!json_is_string(json_object_get(root, "channel")) &&
      json_object_set_new(root, "channel", json_stringn(t.channel, t.channel_len)))
    goto error;
  if (!json_is_string(json_object_get(root, "timestamp"))) {
    sb_event_format_time(rules->now, ts);
    if (json_object_set_new(root, "timestamp", json_string(ts)))
      goto error;
  }
  if (!(ev->json = json_dumps(root, JSON_COMPACT)))
    goto error;
  ev->json_len = strlen(ev->json);
  json_decref(root);
  return 0;

error:
  free(exclude);
  json_decref(root);
  sb_event_clear(ev);
  return rc;
}

void sb_event_clear(struct sb_event *ev)
{
  if (!ev)
    return;
  free(ev->user);
  free(ev->channel);
  free(ev->id);
  free(ev->source);
  free(ev->target);
  free(ev->json);
  memset(ev, 0, sizeof(*ev));
}
