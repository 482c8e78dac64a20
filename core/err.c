#include "err.h"

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
