/* fuzz_event: sb_event_parse, an MQTT message in, a normalised event out.
 *
 * Input: the topic, a NUL byte, then the payload. An input without a NUL is
 * all payload, published on "sync/u1/chat" (and is also given, as a C
 * string, to sb_event_valid_timestamp).
 *
 * Properties, beyond "no crash, no leak, no undefined behaviour":
 * - a refused message names one drop reason, leaves the event empty, and a
 *   topic that does not split is always bad_topic;
 * - an accepted event's user and channel are the topic's levels; its json is
 *   one line with no NUL, re-parses to an object whose channel is the
 *   topic's, whose timestamp is a valid ISO 8601 string (the receipt time
 *   when the payload had none), whose type is a non-empty string and which
 *   has a payload; every field of the payload is kept as it was, only
 *   channel and timestamp are filled in; id, sourceDeviceId and
 *   targetDeviceId are safe SSE ids and the same values as in the json;
 * - numbers are kept as written: the json is never longer than
 *   sb_event_json_bound() (the payload and the fields added), and where
 *   jansson would write every number as it was written (integers of 64 bits,
 *   no -0, no reals) the json is exactly jansson's compact text of the
 *   payload with channel and timestamp filled in;
 * - normalising is idempotent: the json, parsed again on the same topic,
 *   gives the same event;
 * - framed for the wire (sb_frame_event), the event is exactly one id line,
 *   one data line and a blank line. */
#include <ctype.h>
#include <time.h>

#include <jansson.h>

#include "err.h"
#include "event.h"
#include "fuzz.h"
#include "sse.h"
#include "topic.h"

#define PREFIX "sync"
#define DEFAULT_TOPIC "sync/u1/chat"
#define MAX_EVENT_BYTES 4000
/* 2025-11-25T10:52:32.123Z */
static const struct timespec NOW = {1764067952, 123456789};
#define NOW_TEXT "2025-11-25T10:52:32.123Z"

static int leap(int y)
{
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* An independent, coarse check of what sb_event_valid_timestamp accepted:
 * a real calendar date first, then only the characters of a time and zone. */
static int plausible_timestamp(const char *s, size_t len)
{
  static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int y, m, d;

  if (len < 10 || strlen(s) != len)
    return 0;
  for (int i = 0; i < 10; i++)
    if (i == 4 || i == 7 ? s[i] != '-' : !isdigit((unsigned char)s[i]))
      return 0;
  y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
  m = (s[5] - '0') * 10 + (s[6] - '0');
  d = (s[8] - '0') * 10 + (s[9] - '0');
  if (m < 1 || m > 12 || d < 1 || d > (m == 2 && leap(y) ? 29 : mdays[m - 1]))
    return 0;
  for (size_t i = 10; i < len; i++)
    if (!strchr("0123456789-:TtZz+., ", s[i]))
      return 0;
  return 1;
}

/* Checks that field key of obj holds the id the parser kept (obj decoded
 * with numbers as reals: an integer id is kept as its digits). */
static void check_id(json_t *obj, const char *key, const char *kept, int allow_int)
{
  json_t *v = json_object_get(obj, key);

  if (!kept) {
    FUZZ_CHECK(!v || json_is_null(v), "%s dropped but present in the json", key);
    return;
  }
  FUZZ_CHECK(sb_sse_valid_id(kept, strlen(kept), SB_EVENT_ID_MAX), "%s '%s' is not a safe id", key,
             kept);
  if (allow_int && json_is_number(v)) {
    FUZZ_CHECK(strspn(kept, "0123456789") == strlen(kept), "%s: kept %s for a number", key, kept);
    FUZZ_CHECK(strtod(kept, NULL) == json_number_value(v), "%s: json %g, kept %s", key,
               json_number_value(v), kept);
    return;
  }
  FUZZ_CHECK(json_is_string(v), "%s kept but not a string in the json", key);
  FUZZ_CHECK(json_string_length(v) == strlen(kept) && strcmp(json_string_value(v), kept) == 0,
             "%s differs between the json and the event", key);
}

/* Every field of the payload is in the event as it was, but a null or
 * missing channel and timestamp, which are filled in; nothing else is added. */
static void check_kept(json_t *in, json_t *out)
{
  const char *key;
  json_t *v;

  json_object_foreach(in, key, v) {
    int filled = (strcmp(key, "channel") == 0 || strcmp(key, "timestamp") == 0) && json_is_null(v);
    FUZZ_CHECK(filled || json_equal(v, json_object_get(out, key)),
               "field '%s' changed between payload and event", key);
  }
  json_object_foreach(out, key, v)
    FUZZ_CHECK(json_object_get(in, key) || strcmp(key, "channel") == 0 ||
                   strcmp(key, "timestamp") == 0,
               "field '%s' added to the event", key);
}

static void check_accepted(const struct sb_event_rules *rules, const char *topic, size_t topic_len,
                           const char *payload, size_t len, const struct sb_event *ev)
{
  struct sb_topic t;
  json_error_t jerr;
  json_t *in, *out, *v;
  int had_timestamp;

  FUZZ_CHECK(sb_topic_split(PREFIX, topic, topic_len, &t) == 0, "accepted on a bad topic");
  FUZZ_CHECK(len <= rules->max_event_bytes, "accepted a payload over max_event_bytes");
  FUZZ_CHECK(ev->user && strlen(ev->user) == t.user_len &&
                 memcmp(ev->user, t.user, t.user_len) == 0,
             "user is not the topic's user");
  FUZZ_CHECK(ev->channel && strlen(ev->channel) == t.channel_len &&
                 memcmp(ev->channel, t.channel, t.channel_len) == 0,
             "channel is not the topic's channel");
  FUZZ_CHECK(ev->json && strlen(ev->json) == ev->json_len, "json has a NUL byte or a wrong length");
  FUZZ_CHECK(!memchr(ev->json, '\n', ev->json_len) && !memchr(ev->json, '\r', ev->json_len),
             "json is more than one line: %s", ev->json);

  FUZZ_CHECK(ev->json_len <= sb_event_json_bound(len, t.channel_len),
             "json of %zu bytes from a payload of %zu: over the bound %zu", ev->json_len, len,
             sb_event_json_bound(len, t.channel_len));
  out = json_loadb(ev->json, ev->json_len,
                   JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &jerr);
  FUZZ_CHECK(json_is_object(out), "json does not re-parse to an object: %s", jerr.text);

  v = json_object_get(out, "channel");
  FUZZ_CHECK(json_is_string(v) && json_string_length(v) == t.channel_len &&
                 memcmp(json_string_value(v), t.channel, t.channel_len) == 0,
             "json channel is not the topic's channel");

  in = json_loadb(payload, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL,
                  NULL);
  FUZZ_CHECK(json_is_object(in), "accepted a payload that is not a JSON object");
  had_timestamp = json_is_string(json_object_get(in, "timestamp"));
  check_kept(in, out);
  json_decref(in);
  v = json_object_get(out, "timestamp");
  FUZZ_CHECK(json_is_string(v), "json timestamp is not a string");
  FUZZ_CHECK(sb_event_valid_timestamp(json_string_value(v)) &&
                 plausible_timestamp(json_string_value(v), json_string_length(v)),
             "json timestamp is not a valid ISO 8601 string (%zu bytes: %.60s)",
             json_string_length(v), json_string_value(v));
  if (!had_timestamp)
    FUZZ_CHECK(strcmp(json_string_value(v), NOW_TEXT) == 0, "missing timestamp not set to now");

  v = json_object_get(out, "type");
  FUZZ_CHECK(json_is_string(v) && json_string_length(v) > 0, "type is not a non-empty string");
  FUZZ_CHECK(json_object_get(out, "payload"), "payload field is missing");
  check_id(out, "id", ev->id, 1);
  /* the device left out: excludeDeviceId when given, else sourceDeviceId */
  v = json_object_get(out, "excludeDeviceId");
  check_id(out, v && !json_is_null(v) ? "excludeDeviceId" : "sourceDeviceId", ev->source, 0);
  check_id(out, "targetDeviceId", ev->target, 0);
  json_decref(out);
}

static int has_real(json_t *v)
{
  const char *key;
  json_t *x;
  size_t i;

  if (json_is_real(v))
    return 1;
  if (json_is_object(v)) {
    json_object_foreach(v, key, x) {
      if (has_real(x))
        return 1;
    }
  }
  if (json_is_array(v)) {
    json_array_foreach(v, i, x) {
      if (has_real(x))
        return 1;
    }
  }
  return 0;
}

/* Where jansson writes every number as it was written, the json is what
 * jansson makes of the payload with channel and timestamp filled in (what
 * the bridge sent before it kept the payload's text). */
static void check_as_jansson(const char *topic, size_t topic_len, const char *payload, size_t len,
                             const struct sb_event *ev)
{
  json_t *root = json_loadb(payload, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
  struct sb_topic t;
  char *want;

  if (!root || has_real(root) || memmem(payload, len, "-0", 2) ||
      sb_topic_split(PREFIX, topic, topic_len, &t)) {
    json_decref(root);
    return;
  }
  if (!json_is_string(json_object_get(root, "channel")))
    json_object_set_new(root, "channel", json_stringn(t.channel, t.channel_len));
  if (!json_is_string(json_object_get(root, "timestamp")))
    json_object_set_new(root, "timestamp", json_string(NOW_TEXT));
  want = json_dumps(root, JSON_COMPACT);
  if (want)
    FUZZ_CHECK(strcmp(want, ev->json) == 0, "json differs from jansson's:\n  jansson: %s\n  event:   %s",
               want, ev->json);
  free(want);
  json_decref(root);
}

static int same(const char *a, const char *b)
{
  return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Normalising twice changes nothing. */
static void check_idempotent(const struct sb_event_rules *rules, const char *topic, size_t topic_len,
                             const struct sb_event *ev)
{
  struct sb_event again;
  struct sb_event_error why;
  char *copy;
  int rc;

  if (ev->json_len > rules->max_event_bytes)
    return;
  copy = fuzz_copy((const uint8_t *)ev->json, ev->json_len);
  rc = sb_event_parse(rules, topic, topic_len, copy, ev->json_len, &again, &why);
  if (rc == SB_ENOMEM) {
    free(copy);
    return;
  }
  FUZZ_CHECK(rc == 0, "the normalised event is refused (%s: %s): %s", sb_drop_label(why.reason),
             why.text, ev->json);
  FUZZ_CHECK(again.json_len == ev->json_len && memcmp(again.json, ev->json, ev->json_len) == 0,
             "normalising is not idempotent:\n  once:  %s\n  twice: %s", ev->json, again.json);
  FUZZ_CHECK(same(again.user, ev->user) && same(again.channel, ev->channel) &&
                 same(again.id, ev->id) && same(again.source, ev->source) &&
                 same(again.target, ev->target),
             "fields differ after a second parse");
  sb_event_clear(&again);
  free(copy);
}

/* The framed event is "id: <id>\n", one data line holding the json, "\n". */
static void check_frame(const struct sb_event *ev)
{
  const char *id = ev->id ? ev->id : "1764067952123-1";
  struct sb_frame *f = sb_frame_event(id, ev->source, ev->target, ev->json, ev->json_len);
  size_t idlen = strlen(id), want = 4 + idlen + 1 + 6 + ev->json_len + 2;

  if (!f)
    return;
  FUZZ_CHECK(f->len == want, "frame is %zu bytes, expected %zu", f->len, want);
  FUZZ_CHECK(memcmp(f->bytes, "id: ", 4) == 0 && memcmp(f->bytes + 4, id, idlen) == 0 &&
                 memcmp(f->bytes + 4 + idlen, "\ndata: ", 7) == 0 &&
                 memcmp(f->bytes + 11 + idlen, ev->json, ev->json_len) == 0 &&
                 memcmp(f->bytes + want - 2, "\n\n", 2) == 0,
             "frame is not one id line and one data line: %.200s", f->bytes);
  FUZZ_CHECK(same(f->id, id) && same(f->source, ev->source) && same(f->target, ev->target),
             "frame routing fields differ from the event");
  sb_frame_unref(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct sb_event_rules rules = {PREFIX, MAX_EVENT_BYTES, NOW};
  struct sb_event ev;
  struct sb_event_error why;
  struct sb_topic t;
  const uint8_t *nul = memchr(data, 0, size);
  char *topic, *payload;
  size_t topic_len, len;
  int rc;

  if (nul) {
    topic_len = (size_t)(nul - data);
    topic = fuzz_copy(data, topic_len);
    len = size - topic_len - 1;
    payload = fuzz_copy(nul + 1, len);
  } else {
    char *s = fuzz_cstr(data, size);
    topic_len = strlen(DEFAULT_TOPIC);
    topic = fuzz_copy((const uint8_t *)DEFAULT_TOPIC, topic_len);
    len = size;
    payload = fuzz_copy(data, size);
    if (sb_event_valid_timestamp(s))
      FUZZ_CHECK(plausible_timestamp(s, strlen(s)), "accepted timestamp '%.60s'", s);
    free(s);
  }

  memset(&why, 0x55, sizeof(why));
  rc = sb_event_parse(&rules, topic, topic_len, payload, len, &ev, &why);
  if (rc == 0) {
    FUZZ_CHECK(why.reason == SB_DROP_NONE, "accepted with a drop reason");
    check_accepted(&rules, topic, topic_len, payload, len, &ev);
    check_as_jansson(topic, topic_len, payload, len, &ev);
    check_idempotent(&rules, topic, topic_len, &ev);
    check_frame(&ev);
  } else {
    static const struct sb_event zero;
    FUZZ_CHECK(rc == SB_EINVAL || rc == SB_ENOMEM, "unexpected return %d", rc);
    FUZZ_CHECK(memcmp(&ev, &zero, sizeof(ev)) == 0, "a refused event is not empty");
    if (rc == SB_EINVAL) {
      FUZZ_CHECK(why.reason > SB_DROP_NONE && why.reason < SB_DROP_COUNT, "drop reason %d",
                 (int)why.reason);
      FUZZ_CHECK(memchr(why.text, '\0', sizeof(why.text)) && why.text[0], "why.text unset");
      FUZZ_CHECK(strcmp(sb_drop_label(why.reason), "unknown") != 0, "unlabelled drop reason");
      if (sb_topic_split(PREFIX, topic, topic_len, &t) != 0)
        FUZZ_CHECK(why.reason == SB_DROP_BAD_TOPIC, "bad topic dropped as %s",
                   sb_drop_label(why.reason));
      else if (len > rules.max_event_bytes)
        FUZZ_CHECK(why.reason == SB_DROP_TOO_LARGE, "large payload dropped as %s",
                   sb_drop_label(why.reason));
    }
  }
  sb_event_clear(&ev);
  free(topic);
  free(payload);
  return 0;
}
