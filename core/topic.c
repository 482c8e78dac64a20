#include "topic.h"

#include <string.h>

#include "err.h"

int sb_topic_valid_level(const char *s, size_t len)
{
  if (len == 0 || len > SB_TOPIC_LEVEL_MAX)
    return 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7f || c == '/' || c == '+' || c == '#')
      return 0;
  }
  return 1;
}

int sb_topic_split(const char *prefix, const char *topic, size_t topic_len, struct sb_topic *out)
{
  size_t plen = strlen(prefix);
  const char *rest, *slash, *end = topic + topic_len;

  if (topic_len <= plen + 1 || memcmp(topic, prefix, plen) != 0 || topic[plen] != '/')
    return SB_EINVAL;
  rest = topic + plen + 1;
  slash = memchr(rest, '/', (size_t)(end - rest));
  if (!slash)
    return SB_EINVAL;
  out->user = rest;
  out->user_len = (size_t)(slash - rest);
  out->channel = slash + 1;
  out->channel_len = (size_t)(end - out->channel);
  if (!sb_topic_valid_level(out->user, out->user_len) ||
      !sb_topic_valid_level(out->channel, out->channel_len))
    return SB_EINVAL;
  return 0;
}
