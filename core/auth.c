#include "auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "err.h"
#include "topic.h"

struct sb_auth {
  int none;
  jwt_alg_t alg;
  unsigned char *key;
  int key_len;
  char *audience, *issuer, *claim;
  long leeway;
};

void sb_auth_swap(struct sb_auth *a, struct sb_auth *b)
{
  struct sb_auth t = *a;
  *a = *b;
  *b = t;
}

static char *dup_or_null(const char *s)
{
  return (s && *s) ? strdup(s) : NULL;
}

static unsigned char *read_file(const char *path, int *len)
{
  FILE *f = fopen(path, "rb");
  unsigned char *buf = NULL;
  long n;

  if (!f)
    return NULL;
  if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && n < 1 << 20 &&
      fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1))) {
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
      free(buf);
      buf = NULL;
    } else {
      buf[n] = '\0';
      *len = (int)n;
    }
  }
  fclose(f);
  return buf;
}

/* The algorithm a public key fixes: RS256 for RSA, ES256 for P-256. */
static jwt_alg_t key_alg(const unsigned char *pem, int len)
{
  BIO *bio = BIO_new_mem_buf(pem, len);
  EVP_PKEY *pkey = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
  jwt_alg_t alg = JWT_ALG_INVAL;

  if (pkey) {
    if (EVP_PKEY_base_id(pkey) == EVP_PKEY_RSA)
      alg = JWT_ALG_RS256;
    else if (EVP_PKEY_base_id(pkey) == EVP_PKEY_EC && EVP_PKEY_bits(pkey) == 256)
      alg = JWT_ALG_ES256;
  }
  EVP_PKEY_free(pkey);
  BIO_free(bio);
  return alg;
}

struct sb_auth *sb_auth_new(const struct sb_config *cfg, struct sb_err *err)
{
  struct sb_auth *a = calloc(1, sizeof(*a));

  if (!a) {
    sb_err_set(err, "out of memory");
    return NULL;
  }
  a->none = cfg->auth == SB_AUTH_NONE;
  a->leeway = cfg->jwt_leeway;
  a->claim = strdup(cfg->jwt_user_claim);
  a->audience = dup_or_null(cfg->jwt_audience);
  a->issuer = dup_or_null(cfg->jwt_issuer);
  if (!a->claim)
    goto nomem;
  if (a->none)
    return a;
  if (*cfg->jwt_public_key_file) {
    if (!(a->key = read_file(cfg->jwt_public_key_file, &a->key_len))) {
      sb_err_set(err, "jwt_public_key_file: cannot read %.128s: %s",
               cfg->jwt_public_key_file, errno ? strerror(errno) : "empty or too large");
      goto fail;
    }
    if ((a->alg = key_alg(a->key, a->key_len)) == JWT_ALG_INVAL) {
      sb_err_set(err,
               "jwt_public_key_file: %.128s is not a PEM RSA or P-256 EC public key",
               cfg->jwt_public_key_file);
      goto fail;
    }
  } else {
    a->alg = JWT_ALG_HS256;
    a->key_len = (int)strlen(cfg->jwt_secret);
    if (!(a->key = (unsigned char *)strdup(cfg->jwt_secret)))
      goto nomem;
  }
  return a;

nomem:
  sb_err_set(err, "out of memory");
fail:
  sb_auth_free(a);
  return NULL;
}

void sb_auth_free(struct sb_auth *a)
{
  if (!a)
    return;
  if (a->key)
    memset(a->key, 0, (size_t)a->key_len);
  free(a->key);
  free(a->audience);
  free(a->issuer);
  free(a->claim);
  free(a);
}

int sb_auth_is_none(const struct sb_auth *a)
{
  return a->none;
}

static int number_claim(json_t *claims, const char *name, double *out)
{
  json_t *v = json_object_get(claims, name);
  if (!v)
    return 0;
  if (!json_is_number(v))
    return SB_EINVAL;
  *out = json_number_value(v);
  return 1;
}

static int audience_ok(json_t *claims, const char *want)
{
  json_t *aud = json_object_get(claims, "aud"), *v;
  size_t i;

  if (json_is_string(aud))
    return strcmp(json_string_value(aud), want) == 0;
  json_array_foreach(aud, i, v)
    if (json_is_string(v) && strcmp(json_string_value(v), want) == 0)
      return 1;
  return 0;
}

/* Checks the claims of a verified token; on success *user is set. */
static int check_claims(const struct sb_auth *a, json_t *claims, time_t now, char **user,
                        const char **reason)
{
  double t;
  int has;
  json_t *v;

  if ((has = number_claim(claims, "exp", &t)) < 0) {
    *reason = "exp claim is not a number";
    return SB_EAUTH;
  }
  if (has && (double)now >= t + (double)a->leeway) {
    *reason = "token has expired";
    return SB_EAUTH;
  }
  if ((has = number_claim(claims, "nbf", &t)) < 0) {
    *reason = "nbf claim is not a number";
    return SB_EAUTH;
  }
  if (has && (double)now + (double)a->leeway < t) {
    *reason = "token is not valid yet";
    return SB_EAUTH;
  }
  if (a->audience && !audience_ok(claims, a->audience)) {
    *reason = "token audience does not match";
    return SB_EAUTH;
  }
  if (a->issuer) {
    v = json_object_get(claims, "iss");
    if (!json_is_string(v) || strcmp(json_string_value(v), a->issuer) != 0) {
      *reason = "token issuer does not match";
      return SB_EAUTH;
    }
  }
  v = json_object_get(claims, a->claim);
  if (!json_is_string(v)) {
    *reason = "token has no user claim";
    return SB_EAUTH;
  }
  if (!sb_topic_valid_level(json_string_value(v), json_string_length(v)) ||
      strlen(json_string_value(v)) != json_string_length(v)) {
    *reason = "token user claim is not a valid user id";
    return SB_EAUTH;
  }
  if (!(*user = strdup(json_string_value(v)))) {
    *reason = "out of memory";
    return SB_EAUTH;
  }
  return 0;
}

static const char *bearer(const char *h)
{
  if (!h || strncasecmp(h, "Bearer ", 7) != 0)
    return NULL;
  h += 7;
  while (*h == ' ')
    h++;
  return h;
}

int sb_auth_check(const struct sb_auth *a, const struct sb_auth_request *req, time_t now,
                  char **user, const char **reason)
{
  const char *token;
  jwt_t *jwt = NULL;
  char *grants = NULL, *crit = NULL;
  json_t *claims = NULL;
  int rc = SB_EAUTH;

  *user = NULL;
  *reason = NULL;
  if (a->none) {
    if (!req->user || !*req->user) {
      *reason = "userId query parameter is required (auth none)";
      return SB_EAUTH;
    }
    if (!sb_topic_valid_level(req->user, strlen(req->user))) {
      *reason = "userId is not a valid user id";
      return SB_EAUTH;
    }
    if (!(*user = strdup(req->user))) {
      *reason = "out of memory";
      return SB_EAUTH;
    }
    return 0;
  }

  if (req->authorization) {
    if (!(token = bearer(req->authorization))) {
      *reason = "Authorization header is not a Bearer token";
      return SB_EAUTH;
    }
  } else if (req->cookie && *req->cookie)
    token = req->cookie;
  else if (req->token && *req->token)
    token = req->token;
  else {
    *reason = "no token";
    return SB_EAUTH;
  }
  if (strlen(token) > 8192) {
    *reason = "token is too long";
    return SB_EAUTH;
  }
  if (jwt_decode(&jwt, token, a->key, a->key_len) != 0 || !jwt) {
    *reason = "token is malformed or its signature is invalid";
    goto done;
  }
  if (jwt_get_alg(jwt) != a->alg) {
    *reason = "token algorithm is not the configured one";
    goto done;
  }
  /* RFC 7515 4.1.11: a token whose crit names an extension the recipient
   * does not understand is refused; the bridge understands none, so crit in
   * any form (even empty or malformed) refuses the token */
  if ((crit = jwt_get_headers_json(jwt, "crit"))) {
    *reason = "token header has crit (an extension the bridge does not understand)";
    goto done;
  }
  if (!(grants = jwt_get_grants_json(jwt, NULL)) ||
      !(claims = json_loads(grants, 0, NULL)) || !json_is_object(claims)) {
    *reason = "token claims are not a JSON object";
    goto done;
  }
  rc = check_claims(a, claims, now, user, reason);

done:
  json_decref(claims);
  free(crit);
  free(grants);
  jwt_free(jwt);
  return rc;
}
