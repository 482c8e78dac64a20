/* err.h: the one table of error codes of the bridge.
 *
 * Every function that can fail returns an int: 0 on success, or one of the
 * negative codes below. sb_strerror() names a code for a log line. */
#ifndef SB_ERR_H
#define SB_ERR_H

#define SB_ERRNO_MAP(XX)                                              \
  XX(NOMEM, -1, "out of memory")                                      \
  XX(INVAL, -2, "invalid argument")                                   \
  XX(LIMIT, -3, "limit reached")                                      \
  XX(NOTFOUND, -4, "not found")                                       \
  XX(IO, -5, "input/output error")                                    \
  XX(STATE, -6, "wrong state")                                        \
  XX(AUTH, -7, "not authenticated")                                   \
  XX(USERLIMIT, -8, "per-user connection limit reached")

enum sb_err {
  SB_OK = 0,
#define SB__ERR_ENUM(name, code, text) SB_E##name = code,
  SB_ERRNO_MAP(SB__ERR_ENUM)
#undef SB__ERR_ENUM
};

/* Returns a static, human-readable text for an error code. Any thread. */
const char *sb_strerror(int err);

#endif
