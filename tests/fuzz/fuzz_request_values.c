/* fuzz_request_values: the checks of what a request carries, and the SSE
 * framing of what goes back.
 *
 * Input: byte 0 is a limit for sb_sse_valid_id, byte 1 the length of an id
 * taken from the front of the rest, byte 2 picks an output size for a short
 * sb_sse_format_event call and the source and target of a frame; the rest is
 * the value: a deviceId, a Last-Event-ID, a user id, and (after the id) the
 * data of an event.
 *
 * Properties:
 * - sb_sse_valid_device, sb_sse_valid_id and sb_topic_valid_level agree with
 *   references written from their headers; a valid device id is also a valid
 *   SSE id and a valid user id (topic level), so it can go on the wire and
 *   in a topic as it is;
 * - sb_sse_format_event sizes and then fills exactly that many bytes (a
 *   buffer of exactly that size, and a shorter one that gets the same
 *   prefix); the output is the id line, one "data: " line per line of data
 *   (split on CR, LF and CRLF), and a blank line: exactly that many lines,
 *   no CR anywhere and no LF inside a line, and the data lines joined with LF
 *   give the data with its line ends made LF;
 * - read by a client as the WHATWG EventSource parser reads a stream, the
 *   output is exactly one event with that id and that data;
 * - sb_frame_event holds the same bytes, NUL-terminated, and copies id,
 *   source and target;
 * - sb_log_short and sb_log_printable (how ids reach log lines) give short,
 *   printable text. */
#include "err.h"
#include "event.h"
#include "fuzz.h"
#include "log.h"
#include "sse.h"
#include "topic.h"

static int ref_device(const uint8_t *s, size_t n)
{
  if (n < 1 || n > SB_SSE_DEVICE_MAX)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
          (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '_' || s[i] == ':' ||
          s[i] == '-'))
      return 0;
  return 1;
}

static int ref_id(const uint8_t *s, size_t n, size_t max)
{
  if (n < 1 || n > max)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (s[i] < 0x20 || s[i] == 0x7f)
      return 0;
  return 1;
}

static int ref_level(const uint8_t *s, size_t n)
{
  return ref_id(s, n, SB_TOPIC_LEVEL_MAX) && !memchr(s, '/', n) && !memchr(s, '+', n) &&
         !memchr(s, '#', n);
}

static void check_values(uint8_t max, const uint8_t *data, size_t size)
{
  char *s = fuzz_copy(data, size);
  int dev = sb_sse_valid_device(s, size), id = sb_sse_valid_id(s, size, max),
      id128 = sb_sse_valid_id(s, size, SB_EVENT_ID_MAX), level = sb_topic_valid_level(s, size);

  FUZZ_CHECK(dev == ref_device(data, size), "sb_sse_valid_device says %d", dev);
  FUZZ_CHECK(id == ref_id(data, size, max), "sb_sse_valid_id(max %u) says %d", max, id);
  FUZZ_CHECK(id128 == ref_id(data, size, SB_EVENT_ID_MAX), "sb_sse_valid_id(128) says %d",
             id128);
  FUZZ_CHECK(level == ref_level(data, size), "sb_topic_valid_level says %d", level);
  if (dev)
    FUZZ_CHECK(id128 && level, "a valid device id is not a valid SSE id or topic level");
  FUZZ_CHECK(!sb_sse_valid_device(NULL, 0) && !sb_sse_valid_id(NULL, 0, max), "NULL accepted");
  free(s);
}

/* The data with CRLF, CR and LF each made one LF; returns its length. */
static size_t normalise(const char *data, size_t len, char *out, size_t *lines)
{
  size_t n = 0;
  *lines = 1;
  for (size_t i = 0; i < len; i++) {
    if (data[i] == '\r' || data[i] == '\n') {
      if (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n')
        i++;
      out[n++] = '\n';
      (*lines)++;
    } else
      out[n++] = data[i];
  }
  return n;
}

/* Reads out as the WHATWG "event stream interpretation" does (bytes, not
 * decoded text) and checks that it dispatches exactly one event, with id and
 * data. */
static void whatwg_read(const char *out, size_t n, const char *id, const char *want, size_t want_len)
{
  char *buf = malloc(n + 1), *last_id = NULL;
  size_t blen = 0, events = 0, pos = 0;

  if (!buf)
    abort();
  while (pos < n) {
    size_t end = pos, vlen;
    const char *line, *colon, *value;

    while (end < n && out[end] != '\r' && out[end] != '\n')
      end++;
    FUZZ_CHECK(end < n, "the stream ends inside a line");
    line = out + pos;
    if (end == pos) { /* dispatch */
      if (blen > 0) {
        if (buf[blen - 1] == '\n')
          blen--;
        events++;
        FUZZ_CHECK(blen == want_len && memcmp(buf, want, want_len) == 0,
                   "the client reads other data (%zu bytes, want %zu)", blen, want_len);
      }
      blen = 0;
    } else if (line[0] != ':') {
      colon = memchr(line, ':', end - pos);
      size_t flen = colon ? (size_t)(colon - line) : end - pos;
      value = colon ? colon + 1 : line + (end - pos);
      if (colon && value < out + end && *value == ' ')
        value++;
      vlen = (size_t)(out + end - value);
      if (flen == 4 && memcmp(line, "data", 4) == 0) {
        memcpy(buf + blen, value, vlen);
        blen += vlen;
        buf[blen++] = '\n';
      } else if (flen == 2 && memcmp(line, "id", 2) == 0) {
        if (!memchr(value, '\0', vlen)) {
          free(last_id);
          last_id = strndup(value, vlen);
        }
      } else
        FUZZ_CHECK(0, "the client sees a field that is not data or id: %.*s", (int)flen, line);
    }
    pos = end + (out[end] == '\r' && end + 1 < n && out[end + 1] == '\n' ? 2 : 1);
  }
  FUZZ_CHECK(events == 1, "the client reads %zu events", events);
  FUZZ_CHECK((!id && !last_id) || (id && last_id && strcmp(id, last_id) == 0),
             "the client reads id '%s', want '%s'", last_id ? last_id : "(none)",
             id ? id : "(none)");
  free(last_id);
  free(buf);
}

static void check_format(const char *id, const char *data, size_t len, uint8_t pick)
{
  size_t n = sb_sse_format_event(NULL, 0, id, data, len), m, short_len, lines, nlen, at, count;
  char *out = malloc(n), *part, *norm = malloc(len + 1), *joined;
  static const char *const devices[] = {NULL, "phone", "laptop:1"};
  const char *source = devices[pick % 3], *target = devices[(pick / 3) % 3];
  struct sb_frame *f;

  if (!out || !norm)
    abort();
  m = sb_sse_format_event(out, n, id, data, len);
  FUZZ_CHECK(m == n, "sized %zu bytes, filled %zu", n, m);
  nlen = normalise(data, len, norm, &lines);
  FUZZ_CHECK(n == (id ? 4 + strlen(id) + 1 : 0) + lines * 7 + nlen - (lines - 1) + 1,
             "%zu bytes for %zu lines of data", n, lines);

  /* A shorter buffer gets the same first bytes and nothing past its end. */
  short_len = n ? (size_t)pick * n / 256 : 0;
  part = malloc(short_len ? short_len : 1);
  if (!part)
    abort();
  FUZZ_CHECK(sb_sse_format_event(part, short_len, id, data, len) == n,
             "a short buffer changes the size");
  FUZZ_CHECK(memcmp(part, out, short_len) == 0, "a short buffer gets other bytes");
  free(part);

  /* Lines: the id line, one data line per line of data, the blank line. */
  FUZZ_CHECK(!memchr(out, '\r', n), "CR in the output");
  FUZZ_CHECK(n >= 2 && out[n - 1] == '\n' && out[n - 2] == '\n', "no blank line at the end");
  at = 0;
  count = 0;
  joined = malloc(nlen + 1);
  if (!joined)
    abort();
  if (id) {
    size_t il = strlen(id);
    FUZZ_CHECK(memcmp(out, "id: ", 4) == 0 && memcmp(out + 4, id, il) == 0 && out[4 + il] == '\n',
               "no id line");
    at = 4 + il + 1;
  }
  {
    size_t j = 0;
    while (at < n - 1) {
      const char *nl = memchr(out + at, '\n', n - at);
      size_t ll;
      FUZZ_CHECK(nl, "an unterminated line");
      ll = (size_t)(nl - (out + at));
      FUZZ_CHECK(ll >= 6 && memcmp(out + at, "data: ", 6) == 0, "a line that is not data");
      if (count)
        joined[j++] = '\n';
      memcpy(joined + j, out + at + 6, ll - 6);
      j += ll - 6;
      count++;
      at += ll + 1;
    }
    FUZZ_CHECK(count == lines, "%zu data lines for %zu lines of data", count, lines);
    FUZZ_CHECK(j == nlen && memcmp(joined, norm, nlen) == 0, "data lines do not give the data");
  }
  free(joined);
  whatwg_read(out, n, id, norm, nlen);

  if ((f = sb_frame_event(id, source, target, data, len))) {
    FUZZ_CHECK(f->len == n && memcmp(f->bytes, out, n) == 0 && f->bytes[n] == '\0',
               "the frame holds other bytes");
    FUZZ_CHECK((!id && !f->id) || (id && f->id && strcmp(id, f->id) == 0), "frame id");
    FUZZ_CHECK((!source && !f->source) || (source && f->source && !strcmp(source, f->source)),
               "frame source");
    FUZZ_CHECK((!target && !f->target) || (target && f->target && !strcmp(target, f->target)),
               "frame target");
    FUZZ_CHECK(sb_frame_ref(f) == f && f->refs == 2, "ref");
    sb_frame_unref(f);
    sb_frame_unref(f);
  }
  free(norm);
  free(out);
}

static void check_log(const uint8_t *data, size_t size, uint8_t pick)
{
  char *s = fuzz_cstr(data, size), short_[SB_LOG_SHORT_SIZE], *p;
  size_t outlen = pick % 40;

  sb_log_short(s, short_);
  FUZZ_CHECK(strlen(short_) <= 9, "short id '%s' too long", short_);
  FUZZ_CHECK(strlen(s) > 8 ? strlen(short_) == 9 && !strcmp(short_ + 6, "...")
                           : strlen(short_) == strlen(s),
             "short id '%s' is not the id or its first 6 characters and '...'", short_);
  for (const char *c = short_; *c; c++)
    FUZZ_CHECK(*c >= 0x20 && *c < 0x7f, "unprintable byte in a short id");
  if ((p = malloc(outlen ? outlen : 1))) {
    sb_log_printable(s, p, outlen);
    if (outlen) {
      FUZZ_CHECK(strlen(p) < outlen, "printable text overflows");
      for (const char *c = p; *c; c++)
        FUZZ_CHECK(*c >= 0x20 && *c < 0x7f, "unprintable byte in printable text");
    }
    free(p);
  }
  free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  uint8_t max = fuzz_byte(&data, &size), idlen = fuzz_byte(&data, &size),
          pick = fuzz_byte(&data, &size);
  char *id = NULL, *body;
  size_t k = idlen < size ? idlen : size;

  check_values(max, data, size);
  check_log(data, size, pick);

  /* An id goes on the wire only once checked, as the bridge does. */
  if (k > 0 && sb_sse_valid_id((const char *)data, k, SB_EVENT_ID_MAX))
    id = fuzz_cstr(data, k);
  body = fuzz_copy(data + k, size - k);
  check_format(id, body, size - k, pick);
  free(body);
  free(id);
  return 0;
}
