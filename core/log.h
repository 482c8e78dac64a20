/* log.h: level-checked logging through a callback.
 *
 * The core never writes to stderr itself: the daemon routes lines to stderr,
 * the plugin to the broker's log. A struct sb_log is a plain value owned by
 * whoever embeds it; the callback may be called from any thread, so it must be
 * thread-safe (a single fprintf or a queue). */
#ifndef SB_LOG_H
#define SB_LOG_H

#include <stdatomic.h>
#include <stddef.h>

enum sb_log_level {
  SB_LOG_DEBUG = 0,
  SB_LOG_INFO = 1,
  SB_LOG_NOTICE = 2,
  SB_LOG_WARNING = 3,
  SB_LOG_ERROR = 4
};

/* Size of a buffer for sb_log_short(): 8 visible characters, "..." and NUL. */
#define SB_LOG_SHORT_SIZE 16

/* Receives one finished log line, without a trailing newline. */
typedef void (*sb_log_fn)(void *ctx, int level, const char *line);

struct sb_log {
  sb_log_fn fn;
  void *ctx;
  /* lines below this level are not formatted at all; atomic, as a reload
   * may change it while other threads log */
  _Atomic int level;
};

#define SB_LOG(log, lvl, ...)                                        \
  do {                                                               \
    const struct sb_log *sb__l = (log);                              \
    if (sb__l && sb__l->fn && (lvl) >= sb__l->level)                 \
      sb__log_write(sb__l, (lvl), __VA_ARGS__);                      \
  } while (0)

/* Formats and hands one line to log->fn. Use SB_LOG, which checks the level
 * first. Any thread. */
void sb__log_write(const struct sb_log *log, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes a shortened, printable form of id into out (SB_LOG_SHORT_SIZE bytes)
 * and returns out: ids of up to 8 characters are kept whole, longer ones cut
 * to 6 characters and "...". Control and non-ASCII bytes become '?'. NULL
 * gives "-". Pure; any thread. */
const char *sb_log_short(const char *id, char *out);

/* Writes a printable copy of s (at most outlen-1 bytes, cut with "...") into
 * out and returns out, for echoing untrusted text such as a topic. Pure. */
const char *sb_log_printable(const char *s, char *out, size_t outlen);

/* Returns the level named by s ("debug", "info", "notice", "warning",
 * "error"), or SB_EINVAL. Pure. */
int sb_log_level_parse(const char *s);

/* Returns the name of a level. Pure. */
const char *sb_log_level_name(int level);

#endif
