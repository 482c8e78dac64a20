#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "err.h"

static const char *const level_names[] = {"debug", "info", "notice", "warning", "error"};

void sb__log_write(const struct sb_log *log, int level, const char *fmt, ...)
{
  char line[1024];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  log->fn(log->ctx, level, line);
}

const char *sb_log_printable(const char *s, char *out, size_t outlen)
{
  size_t i, n;

  if (outlen == 0)
    return out;
  if (!s) {
    snprintf(out, outlen, "-");
    return out;
  }
  n = strlen(s);
  for (i = 0; i < n && i + 1 < outlen; i++) {
    unsigned char c = (unsigned char)s[i];
    out[i] = (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
  }
  out[i] = '\0';
  if (i < n && outlen >= 4)
    memcpy(out + outlen - 4, "...", 4);
  return out;
}

const char *sb_log_short(const char *id, char *out)
{
  if (id && strlen(id) > 8) {
    char head[7];
    memcpy(head, id, 6);
    head[6] = '\0';
    sb_log_printable(head, out, 7);
    memcpy(out + strlen(out), "...", 4);
    return out;
  }
  return sb_log_printable(id, out, SB_LOG_SHORT_SIZE);
}

int sb_log_level_parse(const char *s)
{
  for (int i = 0; i < (int)(sizeof(level_names) / sizeof(level_names[0])); i++)
    if (s && strcmp(s, level_names[i]) == 0)
      return i;
  if (s && strcmp(s, "warn") == 0)
    return SB_LOG_WARNING;
  return SB_EINVAL;
}

const char *sb_log_level_name(int level)
{
  if (level < 0 || level > SB_LOG_ERROR)
    return "?";
  return level_names[level];
}
