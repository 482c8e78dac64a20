#include "err.h"

#include <stdarg.h>
#include <stdio.h>

const char *sb_strerror(int err)
{
  switch (err) {
  case SB_OK: return "success";
#define SB__ERR_CASE(name, code, text) case code: return text;
  SB_ERRNO_MAP(SB__ERR_CASE)
#undef SB__ERR_CASE
  default: return "unknown error";
  }
}

void sb_err_set(struct sb_err *e, const char *fmt, ...)
{
  if (!e)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  va_end(ap);
}
