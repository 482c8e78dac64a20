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

/* ---- the compact text ------------------------------------------------------ *
 *
 * The event's json is the payload's own text made compact: the whitespace
 * between tokens goes, strings are written as jansson writes them (escapes
 * decoded to UTF-8, then only '"', '\\' and control characters escaped), and
 * numbers, true, false and null stay exactly as written. Re-serialising with
 * jansson would print every real with 17 significant digits (0.1 became
 * 0.10000000000000001, five times the bytes of a payload of 0.1s) and refuse
 * integers beyond 64 bits. The text is written only after jansson has
 * accepted the payload, so the writer below trusts its syntax; it never
 * writes more than the payload and the fields it adds (sb_event_json_bound),
 * and says so if it ever would. */

struct text {
  char *p;
  size_t len, cap;
  int over; /* a write did not fit */
};

static void put(struct text *t, const char *s, size_t n)
{
  if (t->over || n > t->cap - t->len) {
    t->over = 1;
    return;
  }
  memcpy(t->p + t->len, s, n);
  t->len += n;
}

static void put_char(struct text *t, char c)
{
  put(t, &c, 1);
}

/* Writes code point c inside a string, as jansson does. */
static void put_codepoint(struct text *t, unsigned c)
{
  char buf[8];

  switch (c) {
  case '"':  put(t, "\\\"", 2); return;
  case '\\': put(t, "\\\\", 2); return;
  case '\b': put(t, "\\b", 2); return;
  case '\f': put(t, "\\f", 2); return;
  case '\n': put(t, "\\n", 2); return;
  case '\r': put(t, "\\r", 2); return;
  case '\t': put(t, "\\t", 2); return;
  }
  if (c < 0x20) {
    snprintf(buf, sizeof(buf), "\\u%04X", c);
    put(t, buf, 6);
  } else if (c < 0x80) {
    put_char(t, (char)c);
  } else if (c < 0x800) {
    buf[0] = (char)(0xC0 | (c >> 6));
    buf[1] = (char)(0x80 | (c & 0x3F));
    put(t, buf, 2);
  } else if (c < 0x10000) {
    buf[0] = (char)(0xE0 | (c >> 12));
    buf[1] = (char)(0x80 | ((c >> 6) & 0x3F));
    buf[2] = (char)(0x80 | (c & 0x3F));
    put(t, buf, 3);
  } else {
    buf[0] = (char)(0xF0 | (c >> 18));
    buf[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    buf[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    buf[3] = (char)(0x80 | (c & 0x3F));
    put(t, buf, 4);
  }
}

/* Writes n bytes of UTF-8 text as a JSON string. */
static void put_string(struct text *t, const char *s, size_t n)
{
  put_char(t, '"');
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == '"' || c == '\\')
      put_codepoint(t, c); /* never part of a multi-byte sequence */
    else
      put_char(t, (char)c);
  }
  put_char(t, '"');
}

static unsigned hex4(const char *p)
{
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    v = v * 16 + (unsigned)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
  }
  return v;
}

/* Skips whitespace, and NUL bytes: jansson takes a raw NUL right after a
 * number or a literal (its reader sees the end of the text there, then
 * reads on), and nowhere else. */
static const char *skip_ws(const char *p, const char *end)
{
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\0'))
    p++;
  return p;
}

/* Writes the string at p (its opening quote) and returns what follows its
 * closing quote. */
static const char *copy_string(struct text *t, const char *p, const char *end)
{
  put_char(t, '"');
  for (p++; p < end && *p != '"';) {
    unsigned c;
    if (*p != '\\') {
      put_char(t, *p++); /* UTF-8 as written (jansson checked it) */
      continue;
    }
    if (end - p < 2)
      break;
    switch (p[1]) {
    case 'b': c = '\b'; break;
    case 'f': c = '\f'; break;
    case 'n': c = '\n'; break;
    case 'r': c = '\r'; break;
    case 't': c = '\t'; break;
    case 'u':
      if (end - p < 6)
        return end;
      c = hex4(p + 2);
      if (c >= 0xD800 && c < 0xDC00 && end - p >= 12 && p[6] == '\\' && p[7] == 'u') {
        unsigned lo = hex4(p + 8);
        if (lo >= 0xDC00 && lo < 0xE000) {
          c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
          p += 6;
        }
      }
      p += 4;
      break;
    default: c = (unsigned char)p[1]; break; /* '"', '\\' or '/' */
    }
    p += 2;
    put_codepoint(t, c);
  }
  put_char(t, '"');
  return p < end ? p + 1 : end;
}

/* Writes the JSON value at p without whitespace between its tokens and
 * returns what follows it. */
static const char *copy_value(struct text *t, const char *p, const char *end)
{
  int depth = 0;

  do {
    p = skip_ws(p, end);
    if (p == end)
      break;
    switch (*p) {
    case '"':
      p = copy_string(t, p, end);
      break;
    case '{':
    case '[':
      depth++;
      put_char(t, *p++);
      break;
    case '}':
    case ']':
      depth--;
      put_char(t, *p++);
      break;
    case ',':
    case ':':
      put_char(t, *p++);
      break;
    default: { /* a number, true, false or null, as written */
      const char *start = p;
      while (p < end && !strchr(" \t\n\r,:]}", *p))
        p++;
      put(t, start, (size_t)(p - start));
    }
    }
  } while (depth > 0);
  return p;
}

/* What compact_event() found of the payload's own members. */
struct members {
  int channel, timestamp; /* present (a null one was filled in) */
  size_t id_at, id_len;   /* where the value of "id" went in the text; id_len 0: none */
};

/* Writes the event's compact text: the members of the payload object (a
 * JSON object that jansson accepted) in their order, a null channel or
 * timestamp replaced by chan (a JSON string) or ts (likewise), and those
 * missing appended, channel first. */
static void compact_event(struct text *t, const char *p, const char *end, const char *chan,
                          size_t chan_len, const char *ts, size_t ts_len, struct members *m)
{
  int first = 1;

  memset(m, 0, sizeof(*m));
  p = skip_ws(p, end);
  put_char(t, '{');
  for (p++;;) {
    size_t key_at;
    const char *fill = NULL;
    size_t fill_len = 0;
    int *seen = NULL;

    p = skip_ws(p, end);
    if (p >= end || *p == '}')
      break;
    if (*p == ',') {
      put_char(t, *p++);
      continue;
    }
    key_at = t->len;
    p = copy_string(t, p, end);
    if (!t->over && t->len - key_at == 9 && memcmp(t->p + key_at, "\"channel\"", 9) == 0) {
      seen = &m->channel;
      fill = chan;
      fill_len = chan_len;
    } else if (!t->over && t->len - key_at == 11 &&
               memcmp(t->p + key_at, "\"timestamp\"", 11) == 0) {
      seen = &m->timestamp;
      fill = ts;
      fill_len = ts_len;
    }
    p = skip_ws(p, end);
    if (p < end)
      p++; /* the ':' */
    put_char(t, ':');
    p = skip_ws(p, end);
    if (seen)
      *seen = 1;
    if (seen && end - p >= 4 && memcmp(p, "null", 4) == 0) {
      put(t, fill, fill_len);
      p += 4;
    } else {
      size_t at = t->len;
      int is_id = !t->over && t->len - key_at == 5 && memcmp(t->p + key_at, "\"id\":", 5) == 0;
      p = copy_value(t, p, end);
      if (is_id) {
        m->id_at = at;
        m->id_len = t->len - at;
      }
    }
    first = 0;
  }
  if (!m->channel) {
    put(t, first ? "\"channel\":" : ",\"channel\":", first ? 10 : 11);
    put(t, chan, chan_len);
    first = 0;
  }
  if (!m->timestamp) {
    put(t, first ? "\"timestamp\":" : ",\"timestamp\":", first ? 12 : 13);
    put(t, ts, ts_len);
  }
  put_char(t, '}');
}

char *sb_event_compact_object(const char *json, size_t len, const char *const *drop,
                              const char *extra, size_t *out_len)
{
  const char *p = json, *end = json + len;
  size_t extra_len = extra ? strlen(extra) : 0;
  struct text t = {NULL, 0, len + extra_len + 3, 0};
  int first = 1;

  if (!(t.p = malloc(t.cap + 1)))
    return NULL;
  /* Nothing it copies grows (escapes only shrink or stay), and a comma is
   * written only where the text had one: the bound holds. */
  p = skip_ws(p, end);
  if (p < end)
    p++; /* the '{' */
  put_char(&t, '{');
  for (;;) {
    size_t mark = t.len, key_at;
    int dropped = 0;

    p = skip_ws(p, end);
    if (p >= end || *p == '}')
      break;
    if (*p == ',') {
      p++;
      continue;
    }
    if (!first)
      put_char(&t, ',');
    key_at = t.len;
    p = copy_string(&t, p, end);
    for (const char *const *d = drop; d && *d && !t.over; d++) {
      size_t n = strlen(*d);
      if (t.len - key_at == n + 2 && memcmp(t.p + key_at + 1, *d, n) == 0)
        dropped = 1;
    }
    p = skip_ws(p, end);
    if (p < end)
      p++; /* the ':' */
    put_char(&t, ':');
    p = copy_value(&t, p, end);
    if (dropped)
      t.len = mark; /* taken back, comma and all */
    else
      first = 0;
  }
  if (extra_len) {
    if (!first)
      put_char(&t, ',');
    put(&t, extra, extra_len);
  }
  put_char(&t, '}');
  if (t.over) { /* the bound holds by construction: a bug if not */
    free(t.p);
    return NULL;
  }
  t.p[t.len] = '\0';
  *out_len = t.len;
  return t.p;
}

size_t sb_event_json_bound(size_t payload_len, size_t channel_len)
{
  /* ,"channel":"<channel, each byte escaped to at most 6>" and
   * ,"timestamp":"<24 characters>" */
  return payload_len + 11 + 2 + 6 * channel_len + 13 + 2 + 24;
}

static int fail(struct sb_event_error *why, enum sb_drop reason, const char *fmt, const char *arg)
{
  why->reason = reason;
  snprintf(why->text, sizeof(why->text), fmt, arg ? arg : "");
  return SB_EINVAL;
}

/* Returns 1 if the n bytes at s are a non-negative integer as JSON writes
 * it (digits only). */
static int digits(const char *s, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (!isdigit((unsigned char)s[i]))
      return 0;
  return n > 0;
}

/* Reads an optional string field that must be a safe id; "absent" covers a
 * missing key and null. num (num_len bytes) is the field's text when it may
 * also be a non-negative integer (the id, as written: numbers are decoded as
 * reals, of any size); NULL otherwise. Returns 0, or fills why. */
static int id_field(json_t *obj, const char *key, const char *num, size_t num_len, char **out,
                    struct sb_event_error *why)
{
  json_t *v = json_object_get(obj, key);
  int allow_int = num != NULL;
  const char *s;
  size_t n;

  *out = NULL;
  if (!v || json_is_null(v))
    return 0;
  if (allow_int && json_is_number(v) && digits(num, num_len)) {
    s = num;
    n = num_len;
  } else if (json_is_string(v)) {
    s = json_string_value(v);
    n = json_string_length(v);
  } else
    return fail(why, SB_DROP_BAD_FIELD,
                allow_int ? "field '%s' must be a string or a non-negative integer"
                          : "field '%s' must be a string",
                key);
  if (!sb_sse_valid_id(s, n, SB_EVENT_ID_MAX) || memchr(s, '\0', n))
    return fail(why, SB_DROP_BAD_ID,
                "field '%s' must be 1 to 128 characters without control characters", key);
  if (!(*out = strndup(s, n)))
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
  char ts[32], ts_json[40], *chan_json = NULL;
  struct text text = {NULL, 0, 0, 0}, chan = {NULL, 0, 0, 0};
  struct members m;

  memset(ev, 0, sizeof(*ev));
  why->reason = SB_DROP_NONE;
  why->text[0] = '\0';

  if (sb_topic_split(rules->topic_prefix, topic, topic_len, &t))
    return fail(why, SB_DROP_BAD_TOPIC, "topic is not %s/<userId>/<channel>",
                rules->topic_prefix);
  if (len > rules->max_event_bytes)
    return fail(why, SB_DROP_TOO_LARGE, "payload is over max_event_bytes%s", NULL);

  /* numbers as reals: only their syntax matters, and the text keeps them */
  root = json_loadb(payload, len,
                    JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL |
                        JSON_DECODE_INT_AS_REAL,
                    &jerr);
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

  /* the text: the payload's members as written, channel and timestamp
   * filled in where null or missing */
  rc = SB_ENOMEM;
  v = json_stringn(t.channel, t.channel_len); /* checks that it is UTF-8 */
  if (!v) {
    rc = fail(why, SB_DROP_BAD_TOPIC, "topic is not UTF-8%s", NULL);
    goto error;
  }
  json_decref(v);
  chan.cap = 2 + 6 * t.channel_len;
  if (!(chan_json = chan.p = malloc(chan.cap)))
    goto error;
  put_string(&chan, t.channel, t.channel_len);
  sb_event_format_time(rules->now, ts);
  snprintf(ts_json, sizeof(ts_json), "\"%s\"", ts);
  text.cap = sb_event_json_bound(len, t.channel_len);
  if (!(text.p = malloc(text.cap + 1)))
    goto error;
  compact_event(&text, payload, (const char *)payload + len, chan.p, chan.len, ts_json,
                strlen(ts_json), &m);
  if (text.over || chan.over) { /* the bound holds by construction: a bug if not */
    rc = fail(why, SB_DROP_TOO_LARGE, "the event would grow past its bound%s", NULL);
    goto error;
  }
  text.p[text.len] = '\0';

  if ((rc = id_field(root, "id", text.p + m.id_at, m.id_len, &ev->id, why)) ||
      (rc = id_field(root, "sourceDeviceId", NULL, 0, &ev->source, why)) ||
      (rc = id_field(root, "targetDeviceId", NULL, 0, &ev->target, why)) ||
      (rc = id_field(root, "excludeDeviceId", NULL, 0, &exclude, why)))
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
  ev->json = text.p;
  ev->json_len = text.len;
  free(chan_json);
  json_decref(root);
  return 0;

error:
  free(exclude);
  free(chan_json);
  free(text.p);
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
