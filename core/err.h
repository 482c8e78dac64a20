/* err.h: the one table of error codes of the bridge, and the one buffer
 * that carries an error's message to the caller.
 *
 * Every function that can fail returns an int: 0 on success, or one of the
 * negative codes below. sb_strerror() names a code for a log line. Functions
 * whose failure a person must read (a bad option, a port in use) also fill a
 * caller's struct sb_err with a message naming what was at fault. */
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

enum sb_errno {
  SB_OK = 0,
#define SB__ERR_ENUM(name, code, text) SB_E##name = code,
  SB_ERRNO_MAP(SB__ERR_ENUM)
#undef SB__ERR_ENUM
};

/* Bytes of an error message, with its NUL. */
#define SB_ERR_MSG_SIZE 256

/* An error message for a person: what failed and why, naming the option or
 * file at fault. Owned by the caller, usually on its stack; "" when unset. */
struct sb_err {
  char msg[SB_ERR_MSG_SIZE];
};

/* Formats a message into e (cut to fit; NULL-safe: then it does nothing).
 * Any thread. */
void sb_err_set(struct sb_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Returns a static, human-readable text for an error code. Any thread. */
const char *sb_strerror(int err);

#endif
