/* fuzz_publish: sb_publish_body, the body of POST /api/publish in, the MQTT
 * message it publishes out.
 *
 * Input: one byte that picks the authenticated user (its low three bits:
 * "u1", "A", "B", a user of 256 characters, or "a/b", which is no topic
 * level) and max_event_bytes (the next two bits: 64, 256, 1024 or 4000),
 * then the body.
 *
 * Properties, beyond "no crash, no leak, no undefined behaviour":
 * - the result is 0 or SB_EINVAL; a refusal has one class (bad_request,
 *   forbidden, too_large) and a text, and leaves the message empty;
 * - the checks before the event's own agree with a reference written from
 *   publish.h, in its order: a body over max_event_bytes + 1024 is
 *   too_large, one that is not a JSON object (duplicate keys refused) is
 *   bad_request, then deviceId (1 to 128 of A-Z a-z 0-9 . _ : -) and
 *   channel (one topic level) are bad_request, a userId other than the
 *   user's string is forbidden, a sourceDeviceId is bad_request;
 * - past those, the payload is the body made compact by
 *   sb_event_compact_object() (deviceId and userId left out, sourceDeviceId
 *   last), which means the same JSON as jansson's own rewrite of the body
 *   (numbers compared as reals) and is no longer than the body and the added
 *   member; the outcome is sb_event_parse()'s on the reference's topic and
 *   that payload: accepted exactly when it accepts, too_large exactly when
 *   it drops too_large;
 * - an accepted message's topic is <prefix>/<user>/<channel>; its payload is
 *   that compact text: one line, an object holding every field of the body
 *   but deviceId and userId, unchanged and in order, then sourceDeviceId, the
 *   body's deviceId; payload_len is its length;
 * - sb_publish_check_size agrees with the size rule. */
#include <jansson.h>

#include "err.h"
#include "event.h"
#include "fuzz.h"
#include "publish.h"

#define PREFIX "sync"
/* numbers as reals, as the bridge reads them: only their syntax matters */
#define LOAD_FLAGS (JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL)
/* 2025-11-25T10:52:32.123Z */
static const struct timespec NOW = {1764067952, 123456789};

static const size_t max_events[] = {64, 256, 1024, 4000};

static const char *pick_user(unsigned b, char *longuser)
{
  switch (b % 5) {
  case 0:
    return "u1";
  case 1:
    return "A";
  case 2:
    return "B";
  case 3:
    memset(longuser, 'x', 256);
    longuser[256] = '\0';
    return longuser;
  default:
    return "a/b";
  }
}

static int ref_device(const char *s)
{
  size_t n = s ? strlen(s) : 0;

  if (n < 1 || n > 128)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-", s[i]))
      return 0;
  return 1;
}

static int ref_level(const char *s)
{
  size_t n = s ? strlen(s) : 0;

  if (n < 1 || n > 256)
    return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7f || c == '/' || c == '+' || c == '#')
      return 0;
  }
  return 1;
}

/* The reference: the outcome of the checks before the event's own, or
 * SB_PUBLISH_NONE when they all pass. */
static enum sb_publish_refusal reference(json_t *root, size_t len, size_t max, const char *user)
{
  json_t *v;

  if (len > max + 1024)
    return SB_PUBLISH_TOO_LARGE;
  if (!root || !json_is_object(root))
    return SB_PUBLISH_BAD_REQUEST;
  if (!ref_device(json_string_value(json_object_get(root, "deviceId"))))
    return SB_PUBLISH_BAD_REQUEST;
  if (!ref_level(json_string_value(json_object_get(root, "channel"))))
    return SB_PUBLISH_BAD_REQUEST;
  v = json_object_get(root, "userId");
  if (v && (!json_is_string(v) || strcmp(json_string_value(v), user) != 0))
    return SB_PUBLISH_FORBIDDEN;
  if (json_object_get(root, "sourceDeviceId"))
    return SB_PUBLISH_BAD_REQUEST;
  return SB_PUBLISH_NONE;
}

/* Checks an accepted message against the body it came from. */
static void check_accepted(const struct sb_publish *out, json_t *root, const char *user,
                           const struct sb_event_rules *rules)
{
  const char *channel = json_string_value(json_object_get(root, "channel"));
  const char *device = json_string_value(json_object_get(root, "deviceId"));
  json_t *msg, *v;
  json_error_t jerr;
  const char *key;
  void *it;
  size_t n = 0, want = 0;
  char topic[600];

  snprintf(topic, sizeof(topic), "%s/%s/%s", PREFIX, user, channel);
  FUZZ_CHECK(strcmp(out->topic, topic) == 0, "topic '%s', want '%s'", out->topic, topic);
  FUZZ_CHECK(out->payload_len == strlen(out->payload), "payload_len %zu, strlen %zu",
             out->payload_len, strlen(out->payload));
  FUZZ_CHECK(!strchr(out->payload, '\n'), "payload is not one line: %s", out->payload);
  FUZZ_CHECK(out->payload_len <= rules->max_event_bytes, "payload of %zu bytes over %zu",
             out->payload_len, rules->max_event_bytes);
  msg = json_loadb(out->payload, out->payload_len, LOAD_FLAGS, &jerr);
  FUZZ_CHECK(msg && json_is_object(msg), "payload does not parse back: %s", jerr.text);
  FUZZ_CHECK(!json_object_get(msg, "deviceId"), "deviceId left in %s", out->payload);
  FUZZ_CHECK(!json_object_get(msg, "userId"), "userId left in %s", out->payload);
  v = json_object_get(msg, "sourceDeviceId");
  FUZZ_CHECK(json_is_string(v) && strcmp(json_string_value(v), device) == 0,
             "sourceDeviceId is not deviceId '%s' in %s", device, out->payload);

  /* every other field, unchanged and in the body's order, then sourceDeviceId */
  it = json_object_iter(msg);
  json_object_foreach(root, key, v) {
    if (!strcmp(key, "deviceId") || !strcmp(key, "userId"))
      continue;
    want++;
    FUZZ_CHECK(it && !strcmp(json_object_iter_key(it), key), "field '%s' moved or missing in %s",
               key, out->payload);
    FUZZ_CHECK(json_equal(json_object_iter_value(it), v), "field '%s' changed in %s", key,
               out->payload);
    it = json_object_iter_next(msg, it);
  }
  FUZZ_CHECK(it && !strcmp(json_object_iter_key(it), "sourceDeviceId") &&
                 !json_object_iter_next(msg, it),
             "sourceDeviceId is not the last and only added field of %s", out->payload);
  n = json_object_size(msg);
  FUZZ_CHECK(n == want + 1, "%zu fields, want %zu", n, want + 1);
  json_decref(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  unsigned pick = fuzz_byte(&data, &size);
  char longuser[257];
  const char *user = pick_user(pick & 7, longuser);
  struct sb_event_rules rules = {PREFIX, max_events[(pick >> 3) & 3], NOW};
  char *body = fuzz_copy(data, size);
  struct sb_publish out;
  struct sb_publish_error why, szwhy;
  struct sb_event ev;
  struct sb_event_error evwhy;
  enum sb_publish_refusal want;
  json_error_t jerr;
  json_t *root;
  int rc, sz;

  root = json_loadb(body, size, LOAD_FLAGS, &jerr);
  want = reference(root, size, rules.max_event_bytes, user);
  rc = sb_publish_body(&rules, user, body, size, &out, &why);
  FUZZ_CHECK(rc == 0 || rc == SB_EINVAL, "rc %d", rc);

  sz = sb_publish_check_size(&rules, size, &szwhy);
  FUZZ_CHECK((sz == SB_EINVAL) == (size > rules.max_event_bytes + 1024), "size check %d for %zu",
             sz, size);
  FUZZ_CHECK(sz == 0 || szwhy.reason == SB_PUBLISH_TOO_LARGE, "size refusal %d", szwhy.reason);

  if (rc) {
    FUZZ_CHECK(why.reason == SB_PUBLISH_BAD_REQUEST || why.reason == SB_PUBLISH_FORBIDDEN ||
                   why.reason == SB_PUBLISH_TOO_LARGE,
               "refusal class %d", why.reason);
    FUZZ_CHECK(why.text[0] && memchr(why.text, '\0', sizeof(why.text)), "refusal without a text");
    FUZZ_CHECK(!out.topic && !out.payload && !out.payload_len, "a refusal holds a message");
  } else {
    FUZZ_CHECK(why.reason == SB_PUBLISH_NONE && !why.text[0], "accepted with a refusal");
  }

  if (want != SB_PUBLISH_NONE) {
    FUZZ_CHECK(rc == SB_EINVAL && why.reason == want, "class %d (%s), reference %d", why.reason,
               why.text, want);
  } else {
    /* past the reference's checks, the event's decide */
    static const char *const dropped[] = {"deviceId", "userId", NULL};
    char topic[600], source[160];
    json_t *copy = json_deep_copy(root), *a, *b;
    char *payload, *compact;
    size_t compact_len = 0;
    int erc;

    snprintf(topic, sizeof(topic), "%s/%s/%s", PREFIX, user,
             json_string_value(json_object_get(root, "channel")));
    json_object_set(copy, "sourceDeviceId", json_object_get(copy, "deviceId"));
    json_object_del(copy, "deviceId");
    json_object_del(copy, "userId");
    payload = json_dumps(copy, JSON_COMPACT);
    FUZZ_CHECK(payload, "reference payload");
    snprintf(source, sizeof(source), "\"sourceDeviceId\":\"%s\"",
             json_string_value(json_object_get(root, "deviceId")));
    compact = sb_event_compact_object(body, size, dropped, source, &compact_len);
    FUZZ_CHECK(compact && compact_len == strlen(compact) &&
                   compact_len <= size + strlen(source) + 3,
               "compact text of %zu bytes for a body of %zu", compact_len, size);
    a = json_loadb(compact, compact_len, LOAD_FLAGS, &jerr);
    b = json_loads(payload, LOAD_FLAGS, &jerr);
    FUZZ_CHECK(a && b && json_equal(a, b), "compact %s means other than jansson's %s", compact,
               payload);
    json_decref(a);
    json_decref(b);
    erc = sb_event_parse(&rules, topic, strlen(topic), compact, compact_len, &ev, &evwhy);
    FUZZ_CHECK((erc == 0) == (rc == 0), "event check %d (%s), publish %d (%s)", erc, evwhy.text, rc,
               why.text);
    if (erc == SB_EINVAL)
      FUZZ_CHECK((evwhy.reason == SB_DROP_TOO_LARGE) == (why.reason == SB_PUBLISH_TOO_LARGE),
                 "event drop %s, publish class %d", sb_drop_label(evwhy.reason), why.reason);
    if (rc == 0) {
      FUZZ_CHECK(strcmp(out.payload, compact) == 0, "payload %s, reference %s", out.payload,
                 compact);
      check_accepted(&out, root, user, &rules);
    }
    sb_event_clear(&ev);
    free(compact);
    free(payload);
    json_decref(copy);
  }

  sb_publish_clear(&out);
  json_decref(root);
  free(body);
  return 0;
}
