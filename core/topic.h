/* topic.h: splits and checks MQTT topics of the form <prefix>/<userId>/<channel>.
 * Pure functions over caller-owned buffers; any thread. */
#ifndef SB_TOPIC_H
#define SB_TOPIC_H

#include <stddef.h>

/* Longest user id or channel the bridge accepts, in bytes. */
#define SB_TOPIC_LEVEL_MAX 256

/* Spans into the caller's topic string; nothing is owned. */
struct sb_topic {
  const char *user;
  size_t user_len;
  const char *channel;
  size_t channel_len;
};

/* Splits topic (topic_len bytes, need not be NUL-terminated) into user and
 * channel after prefix. Returns 0, or SB_EINVAL when the topic is not exactly
 * prefix + two non-empty levels free of wildcards and control characters. */
int sb_topic_split(const char *prefix, const char *topic, size_t topic_len, struct sb_topic *out);

/* Returns 1 if s (len bytes) may be one topic level naming a user or a
 * channel: 1 to SB_TOPIC_LEVEL_MAX bytes, no '/', '+', '#' or control
 * characters. Pure. */
int sb_topic_valid_level(const char *s, size_t len);

#endif
