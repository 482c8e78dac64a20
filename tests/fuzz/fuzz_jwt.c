/* fuzz_jwt: sb_auth_check, a request's credentials in, a user or a refusal
 * out, under five fixed configurations: HS256 with audience, issuer and a
 * leeway; HS256 with another user claim and neither; RS256 and ES256 (public
 * keys of the test keys below, written to a temporary file for sb_auth_new);
 * and `auth none`.
 *
 * Input: byte 0 picks the mode, the rest is its text (cut at a NUL, as no
 * header, cookie or query value holds one):
 *   0  raw: the text as the Authorization header (bare and after "Bearer "),
 *      as the cookie and as the token query parameter, and as the userId of
 *      `auth none`;
 *   1  claims: the text is a JSON object of claims, which the fuzzer signs
 *      with each configuration's key (and with wrong ones) and presents as
 *      header, cookie or query after byte 1;
 *   2  sources: the text split at '\n' into Authorization, cookie and token.
 *
 * Properties:
 * - a success gives a user that is a valid topic level without NUL, no
 *   reason; a refusal gives SB_EAUTH, no user and a reason;
 * - a raw token is accepted only if its signature really is the configured
 *   key's over its first two parts (checked with OpenSSL) and its header
 *   names the configured algorithm and has no crit: no forged or unsigned
 *   token passes, nor one that needs an extension (RFC 7515 4.1.11);
 * - a signed token is accepted exactly when its claims pass a reference
 *   check written from auth.h (exp and nbf with the leeway, aud, iss, the
 *   user claim a valid user id), with the claim's value as the user;
 * - a token is refused under any other configured algorithm: HS256 under
 *   RS256 or ES256 (also HS256 keyed with the RSA public key: key
 *   confusion), RS256/ES256 under HS256, alg none everywhere, HS384 under
 *   HS256, and any token with crit in its header, signed with the right key;
 * - only the first credential present is judged: header, else a non-empty
 *   cookie, else a non-empty token, whatever the others hold;
 * - `auth none` accepts a userId exactly when it is a valid topic level. */
#include <stdlib.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "auth.h"
#include "config.h"
#include "err.h"
#include "fuzz.h"
#include "topic.h"

#define NOW 1700000000
#define SECRET "fuzz-secret-0123456789abcdef-0123"
#define LEEWAY 30

/* Test keys of this fuzzer only; they protect nothing. */
static const char RSA_PEM[] =
  "-----BEGIN PRIVATE KEY-----\n"
  "MIICcwIBADANBgkqhkiG9w0BAQEFAASCAl0wggJZAgEAAoGBANhBilgX6gmpvf49\n"
  "r0qwZd+Exn4/C81zNK5CZ+5aR3s258fENc6sWCD3+h5lvg7pCQo8g6fSQm96IwSN\n"
  "/anbDXuG1c4swl++5cLzRiyQf8urRYe/ZTPZYlc/WRFjnKN1pfvOyJwk7k2QnKQu\n"
  "le5INmEtZPPTe3N+O9r5Yl2z2IsNAgMBAAECfz2qcsisCRC4VnUpIdMqeeJC+lcF\n"
  "o1fyghMu3HQbSkbYYT+Vs8I7YuYD0E7atFeMHAfPObuhOVCQg2vJEYxd6nnIWNHN\n"
  "w87AJyKuoRU7MTZtj8N5u7sfX6oJqGdJppmDieQQFkB9MfVdFIFDoWUoFEsCfKQl\n"
  "p2nknIYGEDJyTd0CQQD/EhfB2s5cis1Z1srxwpYhsTsBVSjkuQKaoMfdn+r64S1x\n"
  "8d0vfgXk+sj1IFnH5nTppOeSFvCSreSd/utmkHwbAkEA2Qs+p/p3B1DWncRemkRr\n"
  "eNZCF3+JtSvU9D+B0vKYVzcc6TDR+uJvyw8Hmy0hhamGQQPm9ra1ms8huAP8ycU3\n"
  "9wJAD3OHIOUiTxTRb7nFPXPuKEhWLLR9760NbVSEBvbjAyOU3ywpm/DkZoSSm9bD\n"
  "2YoqVuT4ai8dj6UdDj0dAW+LNQJATh/0D7biPWnltqhGfTT/kmFdLOQlh2cdokVx\n"
  "z6KvH0WhTHbcPnhfUTI5xKt8E4av4psq+cdOm0jPlFMrHN22hQJAD+VJwdJmg7MB\n"
  "U9n16siWd3fwX4LKgUL4cFUhTAmzfys9qqfASKs3qYBIZFLnXbCmb3KIZEaIz0uB\n"
  "Ju/g/9BDKw==\n"
  "-----END PRIVATE KEY-----\n";
static const char EC_PEM[] =
  "-----BEGIN PRIVATE KEY-----\n"
  "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgPWV3mcbNzqnf5J4F\n"
  "Xim7EgfMsj2uNGtwhVRlPlpcGQWhRANCAAR3eTPS/OeZ7i6F3ncLevXI4w29cq90\n"
  "qQs/lolx46RvuWt0AT+ZvqrwGcCBsGzZyq/wO3N/Lv+7MeiI7EODDtle\n"
  "-----END PRIVATE KEY-----\n";

enum { HS, HS_PLAIN, RS, ES, NCONF };

struct conf {
  const char *name;
  jwt_alg_t alg;
  const char *audience, *issuer, *claim; /* NULL: not configured */
  long leeway;
  const unsigned char *sign_key; /* what libjwt signs with */
  int sign_len;
  EVP_PKEY *pkey; /* RS, ES */
  char *pub_pem;
  struct sb_auth *auth;
};

static struct conf confs[NCONF];
static struct sb_auth *auth_none;
static char *good[NCONF]; /* a token each configuration accepts */

/* ---- setup ----------------------------------------------------------------- */

static char *public_pem(EVP_PKEY *k)
{
  BIO *b = BIO_new(BIO_s_mem());
  char *p, *out;
  long n;

  if (!b || !PEM_write_bio_PUBKEY(b, k))
    abort();
  n = BIO_get_mem_data(b, &p);
  out = strndup(p, (size_t)n);
  BIO_free(b);
  return out;
}

static struct sb_auth *make_auth(struct conf *c, int none)
{
  struct sb_config cfg;
  struct sb_err err;
  char path[] = "/tmp/fuzz_jwt_key_XXXXXX";
  struct sb_auth *a;
  int fd = -1;

  if (sb_config_init(&cfg))
    abort();
#define SET(k, v)                                                                   \
  if (sb_config_set(&cfg, SB_FORM_DAEMON, k, v, &err)) {                             \
    fprintf(stderr, "fuzz_jwt: %s\n", err.msg);                                         \
    abort();                                                                        \
  }
  if (none) {
    SET("auth", "none");
  } else {
    char leeway[16];
    snprintf(leeway, sizeof(leeway), "%ld", c->leeway);
    SET("jwt_leeway", leeway);
    SET("jwt_user_claim", c->claim);
    if (c->audience)
      SET("jwt_audience", c->audience);
    if (c->issuer)
      SET("jwt_issuer", c->issuer);
    if (c->pub_pem) {
      if ((fd = mkstemp(path)) < 0 ||
          write(fd, c->pub_pem, strlen(c->pub_pem)) != (ssize_t)strlen(c->pub_pem))
        abort();
      close(fd);
      SET("jwt_public_key_file", path);
    } else
      SET("jwt_secret", SECRET);
  }
#undef SET
  a = sb_auth_new(&cfg, &err);
  if (fd >= 0)
    unlink(path);
  if (!a) {
    fprintf(stderr, "fuzz_jwt: sb_auth_new: %s\n", err.msg);
    abort();
  }
  sb_config_free(&cfg);
  return a;
}

static EVP_PKEY *private_key(const char *pem)
{
  BIO *b = BIO_new_mem_buf(pem, -1);
  EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
  BIO_free(b);
  if (!k)
    abort();
  return k;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc;
  (void)argv;
  confs[HS] = (struct conf){"HS256", JWT_ALG_HS256, "fuzz-aud", "fuzz-iss", "sub", LEEWAY,
                            (const unsigned char *)SECRET, (int)strlen(SECRET), NULL, NULL, NULL};
  confs[HS_PLAIN] = (struct conf){"HS256/uid", JWT_ALG_HS256, NULL, NULL, "uid", 0,
                                  (const unsigned char *)SECRET, (int)strlen(SECRET), NULL, NULL, NULL};
  confs[RS] = (struct conf){"RS256", JWT_ALG_RS256, "fuzz-aud", "fuzz-iss", "sub", LEEWAY,
                            (const unsigned char *)RSA_PEM, (int)strlen(RSA_PEM), NULL, NULL, NULL};
  confs[ES] = (struct conf){"ES256", JWT_ALG_ES256, "fuzz-aud", "fuzz-iss", "sub", LEEWAY,
                            (const unsigned char *)EC_PEM, (int)strlen(EC_PEM), NULL, NULL, NULL};
  confs[RS].pkey = private_key(RSA_PEM);
  confs[ES].pkey = private_key(EC_PEM);
  confs[RS].pub_pem = public_pem(confs[RS].pkey);
  confs[ES].pub_pem = public_pem(confs[ES].pkey);
  for (int i = 0; i < NCONF; i++)
    confs[i].auth = make_auth(&confs[i], 0);
  auth_none = make_auth(NULL, 1);
  return 0;
}

static char *sign(jwt_alg_t alg, const unsigned char *key, int key_len, const char *claims);

/* Makes, on the first input, a token that each configuration accepts. */
static void make_good(void)
{
  static const char claims[] =
      "{\"sub\":\"good-user\",\"uid\":\"good-user\",\"aud\":\"fuzz-aud\",\"iss\":\"fuzz-iss\"}";
  for (int i = 0; i < NCONF; i++)
    if (!good[i] && !(good[i] = sign(confs[i].alg, confs[i].sign_key, confs[i].sign_len, claims)))
      abort();
}

/* The token sb_auth_check judges among the credentials (auth.h), or NULL. */
static const char *judged(const char *authorization, const char *cookie, const char *token)
{
  if (authorization) {
    if (strncasecmp(authorization, "Bearer ", 7) != 0)
      return NULL;
    authorization += 7;
    while (*authorization == ' ')
      authorization++;
    return authorization;
  }
  if (cookie && *cookie)
    return cookie;
  if (token && *token)
    return token;
  return NULL;
}

/* ---- references ------------------------------------------------------------ */

/* Decodes base64url (no padding, nothing else) into a heap buffer; NULL if
 * the text is not that. */
static unsigned char *b64url(const char *s, size_t n, size_t *out_len)
{
  unsigned char *out = malloc(n * 3 / 4 + 3);
  unsigned v = 0;
  int bits = 0;
  size_t o = 0;

  if (!out)
    abort();
  for (size_t i = 0; i < n; i++) {
    int d;
    char c = s[i];
    if (c >= 'A' && c <= 'Z')
      d = c - 'A';
    else if (c >= 'a' && c <= 'z')
      d = c - 'a' + 26;
    else if (c >= '0' && c <= '9')
      d = c - '0' + 52;
    else if (c == '-')
      d = 62;
    else if (c == '_')
      d = 63;
    else {
      free(out);
      return NULL;
    }
    v = (v << 6) | (unsigned)d;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (unsigned char)(v >> bits);
      v &= (1u << bits) - 1;
    }
  }
  *out_len = o;
  return out;
}

/* Returns 1 if sig (raw bytes) is c's key's signature of msg, 0 if not, -1 if
 * that cannot be said. */
static int really_signed(const struct conf *c, const char *msg, size_t mlen,
                         const unsigned char *sig, size_t slen)
{
  unsigned char mac[EVP_MAX_MD_SIZE], *der = NULL;
  unsigned maclen = 0;
  EVP_MD_CTX *ctx;
  int ok;

  if (c->alg == JWT_ALG_HS256) {
    HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const unsigned char *)msg, mlen, mac, &maclen);
    return slen == maclen && CRYPTO_memcmp(mac, sig, maclen) == 0;
  }
  if (c->alg == JWT_ALG_ES256) { /* JWS: r || s, 32 bytes each; OpenSSL wants DER */
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r, *s;
    int dlen;
    if (slen != 64) {
      ECDSA_SIG_free(es);
      return 0;
    }
    r = BN_bin2bn(sig, 32, NULL);
    s = BN_bin2bn(sig + 32, 32, NULL);
    if (!es || !r || !s || !ECDSA_SIG_set0(es, r, s))
      abort();
    if ((dlen = i2d_ECDSA_SIG(es, &der)) <= 0)
      abort();
    ECDSA_SIG_free(es);
    sig = der;
    slen = (size_t)dlen;
  }
  if (!(ctx = EVP_MD_CTX_new()) ||
      EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, c->pkey) != 1)
    abort();
  ok = EVP_DigestVerify(ctx, sig, slen, (const unsigned char *)msg, mlen);
  EVP_MD_CTX_free(ctx);
  OPENSSL_free(der);
  return ok == 1 ? 1 : ok == 0 ? 0 : -1;
}

/* A raw token was accepted under c: it must be really signed with c's key
 * and say c's algorithm. */
static void check_raw_accept(const struct conf *c, const char *token)
{
  const char *d1 = strchr(token, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
  unsigned char *sig, *head;
  size_t slen, hlen;
  json_t *h;
  int really;

  FUZZ_CHECK(d1 && d2, "%s accepted a token without two dots: %s", c->name, token);
  if (!(sig = b64url(d2 + 1, strlen(d2 + 1), &slen)))
    return; /* not plain base64url: cannot be judged here */
  really = really_signed(c, token, (size_t)(d2 - token), sig, slen);
  FUZZ_CHECK(really != 0, "%s accepted a token with a wrong signature: %s", c->name, token);
  free(sig);
  if ((head = b64url(token, (size_t)(d1 - token), &hlen))) {
    if ((h = json_loadb((const char *)head, hlen, 0, NULL))) {
      FUZZ_CHECK(json_is_string(json_object_get(h, "alg")) &&
                     strcmp(json_string_value(json_object_get(h, "alg")), jwt_alg_str(c->alg)) == 0,
                 "%s accepted a token whose header names another algorithm: %s", c->name, token);
      FUZZ_CHECK(!json_object_get(h, "crit"), "%s accepted a token with crit: %s", c->name, token);
    }
    json_decref(h);
    free(head);
  }
}

/* Returns 1 if claims pass c's rules as auth.h states them, setting *user. */
static int ref_claims(const struct conf *c, json_t *claims, const char **user)
{
  json_t *v, *e;
  size_t i;
  int found;

  *user = NULL;
  if ((v = json_object_get(claims, "exp"))) {
    if (!json_is_number(v) || (double)NOW >= json_number_value(v) + (double)c->leeway)
      return 0;
  }
  if ((v = json_object_get(claims, "nbf"))) {
    if (!json_is_number(v) || (double)NOW + (double)c->leeway < json_number_value(v))
      return 0;
  }
  if (c->audience) {
    v = json_object_get(claims, "aud");
    found = json_is_string(v) && strcmp(json_string_value(v), c->audience) == 0;
    json_array_foreach(v, i, e)
      found |= json_is_string(e) && strcmp(json_string_value(e), c->audience) == 0;
    if (!found)
      return 0;
  }
  if (c->issuer) {
    v = json_object_get(claims, "iss");
    if (!json_is_string(v) || strcmp(json_string_value(v), c->issuer) != 0)
      return 0;
  }
  v = json_object_get(claims, c->claim);
  if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v) ||
      !sb_topic_valid_level(json_string_value(v), json_string_length(v)))
    return 0;
  *user = json_string_value(v);
  return 1;
}

/* ---- checks ---------------------------------------------------------------- */

struct result {
  int rc;
  char *user;
  const char *reason;
};

static struct result check(const struct sb_auth *a, const char *authorization, const char *cookie,
                           const char *token)
{
  struct sb_auth_request req = {authorization, cookie, token, NULL};
  struct result r;

  r.rc = sb_auth_check(a, &req, NOW, &r.user, &r.reason);
  if (r.rc == 0) {
    FUZZ_CHECK(r.user && strlen(r.user) > 0 && sb_topic_valid_level(r.user, strlen(r.user)),
               "accepted user '%s' is not a valid user id", r.user ? r.user : "(null)");
  } else {
    FUZZ_CHECK(r.rc == SB_EAUTH, "sb_auth_check returned %d", r.rc);
    FUZZ_CHECK(!r.user, "a refusal sets a user");
    FUZZ_CHECK(r.reason && *r.reason, "a refusal without a reason");
  }
  return r;
}

static void same_result(struct result a, struct result b, const char *what)
{
  FUZZ_CHECK(a.rc == b.rc, "%s: %d vs %d (%s / %s)", what, a.rc, b.rc, a.reason ? a.reason : "-",
             b.reason ? b.reason : "-");
  FUZZ_CHECK((!a.user && !b.user) || (a.user && b.user && strcmp(a.user, b.user) == 0),
             "%s: other user", what);
  FUZZ_CHECK((!a.reason && !b.reason) || (a.reason && b.reason && !strcmp(a.reason, b.reason)),
             "%s: other reason (%s / %s)", what, a.reason, b.reason);
}

static void done(struct result r)
{
  free(r.user);
}

/* Only the first credential present counts. */
static void check_precedence(const struct conf *c, const char *s, const char *good)
{
  struct result alone, mixed;

  alone = check(c->auth, s, NULL, NULL);
  mixed = check(c->auth, s, good, good);
  same_result(alone, mixed, "header with cookie and token");
  done(mixed);
  done(alone);

  alone = *s ? check(c->auth, NULL, s, NULL) : check(c->auth, NULL, NULL, good);
  mixed = check(c->auth, NULL, s, good);
  same_result(alone, mixed, "cookie with token");
  done(mixed);
  done(alone);
}

/* Signs claims with alg and key, with the header fields of the JSON object
 * text headers added (NULL: none). */
static char *sign_with(jwt_alg_t alg, const unsigned char *key, int key_len, const char *claims,
                       const char *headers)
{
  jwt_t *jwt = NULL;
  char *tok = NULL;

  if (jwt_new(&jwt) == 0 && jwt_add_grants_json(jwt, claims) == 0 &&
      (!headers || jwt_add_headers_json(jwt, headers) == 0) &&
      jwt_set_alg(jwt, alg, alg == JWT_ALG_NONE ? NULL : key, alg == JWT_ALG_NONE ? 0 : key_len) == 0)
    tok = jwt_encode_str(jwt);
  jwt_free(jwt);
  return tok;
}

static char *sign(jwt_alg_t alg, const unsigned char *key, int key_len, const char *claims)
{
  return sign_with(alg, key, key_len, claims, NULL);
}

static struct result present(const struct conf *c, const char *tok, int where)
{
  char *h = NULL;
  struct result r;

  switch (where % 3) {
  case 0:
    if (asprintf(&h, "Bearer %s", tok) < 0)
      abort();
    r = check(c->auth, h, NULL, NULL);
    free(h);
    return r;
  case 1:
    return check(c->auth, NULL, tok, NULL);
  default:
    return check(c->auth, NULL, NULL, tok);
  }
}

static void expect_refused(const struct conf *c, const char *tok, int where, const char *what)
{
  struct result r;
  if (!tok)
    return;
  r = present(c, tok, where);
  FUZZ_CHECK(r.rc == SB_EAUTH, "%s accepted %s", c->name, what);
  done(r);
}

static void mode_claims(int i, const char *text, int where)
{
  const struct conf *c = &confs[i];
  json_t *claims = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
  char *compact, *tok;
  const char *user;
  struct result r;
  int want;

  if (!json_is_object(claims) || !(compact = json_dumps(claims, JSON_COMPACT))) {
    json_decref(claims);
    return;
  }
  if ((tok = sign(c->alg, c->sign_key, c->sign_len, compact))) {
    want = ref_claims(c, claims, &user);
    r = present(c, tok, where);
    FUZZ_CHECK((r.rc == 0) == want, "%s: claims %s are %s, expected %s (%s)", c->name, compact,
               r.rc == 0 ? "accepted" : "refused", want ? "accepted" : "refused",
               r.reason ? r.reason : "-");
    if (want)
      FUZZ_CHECK(strcmp(r.user, user) == 0, "%s: user '%s', claim '%s'", c->name, r.user, user);
    done(r);
    /* The same token under every other algorithm. */
    for (int j = 0; j < NCONF; j++)
      if (confs[j].alg != c->alg)
        expect_refused(&confs[j], tok, where, "a token of another algorithm");
    free(tok);
  }

  /* Tokens no configuration may accept. */
  switch (where / 3 % 5) {
  case 0:
    tok = sign(JWT_ALG_NONE, NULL, 0, compact);
    expect_refused(c, tok, where, "alg none");
    break;
  case 1:
    tok = sign(JWT_ALG_HS384, (const unsigned char *)SECRET, (int)strlen(SECRET), compact);
    expect_refused(c, tok, where, "HS384 with the secret");
    break;
  case 2:
    tok = sign_with(c->alg, c->sign_key, c->sign_len, compact, "{\"crit\":[\"exp\"]}");
    expect_refused(c, tok, where, "crit naming a registered claim");
    break;
  case 3:
    tok = sign_with(c->alg, c->sign_key, c->sign_len, compact, "{\"crit\":[\"b64\"],\"b64\":true}");
    expect_refused(c, tok, where, "crit naming an extension");
    break;
  default:
    tok = sign(JWT_ALG_HS256, (const unsigned char *)confs[RS].pub_pem,
               (int)strlen(confs[RS].pub_pem), compact);
    expect_refused(&confs[RS], tok, where, "HS256 keyed with the RSA public key");
    break;
  }
  free(tok);
  free(compact);
  json_decref(claims);
}

/* Presents c's credentials and checks a success against the signature. */
static void check_raw(const struct conf *c, const char *authorization, const char *cookie,
                      const char *token)
{
  struct result r = check(c->auth, authorization, cookie, token);
  const char *t = judged(authorization, cookie, token);

  if (r.rc == 0) {
    FUZZ_CHECK(t, "%s accepted a request without a token", c->name);
    check_raw_accept(c, t);
  }
  done(r);
}

static void mode_raw(int i, const char *s)
{
  const struct conf *c = &confs[i];
  char *bearer;
  int ref;

  if (asprintf(&bearer, "Bearer %s", s) < 0)
    abort();
  check_raw(c, bearer, NULL, NULL);
  check_raw(c, s, NULL, NULL);
  check_raw(c, NULL, s, NULL);
  check_raw(c, NULL, NULL, s);
  check_precedence(c, bearer, good[i]);
  free(bearer);

  {
    struct sb_auth_request req = {NULL, NULL, NULL, s};
    char *user;
    const char *reason;
    int rc = sb_auth_check(auth_none, &req, NOW, &user, &reason);
    ref = *s && sb_topic_valid_level(s, strlen(s));
    FUZZ_CHECK((rc == 0) == ref, "auth none: userId '%s' %s", s, rc == 0 ? "accepted" : "refused");
    if (rc == 0) {
      FUZZ_CHECK(strcmp(user, s) == 0, "auth none: user '%s' for '%s'", user, s);
      free(user);
    }
  }
}

static void mode_sources(int i, char *text)
{
  char *parts[3] = {NULL, NULL, NULL}, *p = text;
  for (int i = 0; i < 3 && p; i++) {
    parts[i] = p;
    if ((p = strchr(p, '\n')))
      *p++ = '\0';
  }
  check_raw(&confs[i], parts[0], parts[1], parts[2]);
  check_raw(&confs[i], NULL, parts[1], parts[2]);
  check_raw(&confs[i], NULL, NULL, parts[2]);
  if (parts[0])
    check_precedence(&confs[i], parts[0], good[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  uint8_t mode = fuzz_byte(&data, &size), where;
  char *text;

  make_good();
  switch (mode % 3) {
  case 0:
    text = fuzz_cstr(data, size);
    mode_raw(mode / 3 % NCONF, text);
    break;
  case 1:
    where = fuzz_byte(&data, &size);
    text = fuzz_cstr(data, size);
    mode_claims(mode / 3 % NCONF, text, where);
    break;
  default:
    text = fuzz_cstr(data, size);
    mode_sources(mode / 3 % NCONF, text);
    break;
  }
  free(text);
  return 0;
}
