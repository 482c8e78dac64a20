/* fuzz_topic: sb_topic_split and sb_topic_valid_level.
 *
 * Input: a prefix, a NUL byte, then the topic (not NUL-terminated, as the
 * parser takes a length). An input without a NUL is a topic under "sync".
 *
 * Properties: both functions agree with a reference written from their
 * header (a topic is exactly prefix "/" user "/" channel, each level 1 to
 * SB_TOPIC_LEVEL_MAX bytes free of '/', '+', '#' and control characters);
 * a split gives spans inside the topic that put back together give the
 * topic. */
#include "err.h"
#include "fuzz.h"
#include "topic.h"

static int ref_level(const unsigned char *s, size_t n)
{
  if (n < 1 || n > SB_TOPIC_LEVEL_MAX)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (s[i] <= 0x1f || s[i] == 0x7f || s[i] == '/' || s[i] == '+' || s[i] == '#')
      return 0;
  return 1;
}

/* Returns the offset of the one '/' between user and channel, or -1. */
static long ref_split(const char *prefix, const unsigned char *topic, size_t len)
{
  size_t plen = strlen(prefix), slashes = 0, at = 0;

  if (len < plen + 1 || memcmp(topic, prefix, plen) != 0 || topic[plen] != '/')
    return -1;
  for (size_t i = plen + 1; i < len; i++)
    if (topic[i] == '/') {
      slashes++;
      at = i;
    }
  if (slashes != 1 || !ref_level(topic + plen + 1, at - plen - 1) ||
      !ref_level(topic + at + 1, len - at - 1))
    return -1;
  return (long)at;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  const uint8_t *nul = memchr(data, 0, size);
  char *prefix, *topic;
  size_t len;
  struct sb_topic t;
  long at;
  int rc, valid;

  if (nul) {
    prefix = fuzz_cstr(data, size);
    len = size - (size_t)(nul - data) - 1;
    topic = fuzz_copy(nul + 1, len);
  } else {
    prefix = fuzz_cstr((const uint8_t *)"sync", 4);
    len = size;
    topic = fuzz_copy(data, size);
  }

  valid = sb_topic_valid_level(topic, len);
  FUZZ_CHECK(valid == ref_level((const unsigned char *)topic, len),
             "sb_topic_valid_level says %d for %zu bytes", valid, len);

  memset(&t, 0xa5, sizeof(t));
  rc = sb_topic_split(prefix, topic, len, &t);
  at = ref_split(prefix, (const unsigned char *)topic, len);
  if (at < 0) {
    FUZZ_CHECK(rc == SB_EINVAL, "split accepted a topic the reference refuses (rc %d)", rc);
  } else {
    size_t plen = strlen(prefix);
    FUZZ_CHECK(rc == 0, "split refused a valid topic (rc %d)", rc);
    FUZZ_CHECK(t.user == topic + plen + 1 && t.user_len == (size_t)at - plen - 1,
               "user span is wrong");
    FUZZ_CHECK(t.channel == topic + at + 1 && t.channel_len == len - (size_t)at - 1,
               "channel span is wrong");
    FUZZ_CHECK(plen + 1 + t.user_len + 1 + t.channel_len == len,
               "prefix/user/channel do not make up the topic");
    FUZZ_CHECK(sb_topic_valid_level(t.user, t.user_len) &&
                   sb_topic_valid_level(t.channel, t.channel_len),
               "a split level is not a valid level");
  }
  free(prefix);
  free(topic);
  return 0;
}
