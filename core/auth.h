/* auth.h: who a request is, from its credentials.
 *
 * With `auth jwt` the user is the jwt_user_claim of a JWT whose algorithm is
 * fixed by configuration (HS256 for a shared secret; RS256 or ES256 after the
 * type of jwt_public_key_file), with exp and nbf enforced and aud and iss
 * checked when configured; a token whose header has `crit` is refused (RFC
 * 7515 4.1.11: the bridge understands no extension). With `auth none` the user is the userId query
 * parameter (development only). An sb_auth does not change after sb_auth_new()
 * except through sb_auth_swap(), so any thread may use it between swaps. */
#ifndef SB_AUTH_H
#define SB_AUTH_H

#include <time.h>

#include "err.h"

#include "config.h"

struct sb_auth;

/* The credentials a request carries; any may be NULL. Borrowed. */
struct sb_auth_request {
  const char *authorization; /* the Authorization header */
  const char *cookie;        /* the value of the jwt_cookie cookie */
  const char *token;         /* the token query parameter */
  const char *user;          /* the userId query parameter (auth none) */
};

/* Returns an authenticator for cfg (which it copies what it needs from), or
 * NULL with err naming the option at fault. */
struct sb_auth *sb_auth_new(const struct sb_config *cfg, struct sb_err *err);

/* Frees a. NULL-safe. */
void sb_auth_free(struct sb_auth *a);

/* Authenticates req at time now. Returns 0 and sets *user (a heap string the
 * caller frees), or SB_EAUTH and sets *reason to a short static text that
 * names what failed (never the key). The token is taken from the
 * Authorization header, else the cookie, else the query; only the first one
 * present is judged. Any thread. */
int sb_auth_check(const struct sb_auth *a, const struct sb_auth_request *req, time_t now,
                  char **user, const char **reason);

/* Exchanges the settings of a and b (a configuration reload builds b, swaps,
 * and frees b). Only on the thread that uses a. */
void sb_auth_swap(struct sb_auth *a, struct sb_auth *b);

/* Returns 1 if auth is `none`. */
int sb_auth_is_none(const struct sb_auth *a);

#endif
