/* Unit tests of auth.c: who a request is, from a JWT or (auth none) userId.
 *
 * Tokens are made here with libjwt; the RSA and EC key pairs are generated
 * once with OpenSSL's EVP API and the public keys written to temp PEM files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jwt.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "auth.h"
#include "config.h"
#include "err.h"

#define SECRET "test-secret-0123456789-0123456789"
#define NOW ((time_t)1764067952)

/* ---- keys ----------------------------------------------------------------- */

struct keypair {
  char *priv;      /* PEM private key (heap) */
  int priv_len;
  char *pub;       /* PEM public key (heap), the exact bytes of pub_path */
  int pub_len;
  char pub_path[64];
};

static struct {
  struct keypair rsa, rsa_other, ec, ec384;
  char not_a_key_path[64];
} K;

static char *bio_text(BIO *bio, int *len)
{
  char *data, *copy;
  long n = BIO_get_mem_data(bio, &data);
  if (n <= 0 || !(copy = malloc((size_t)n + 1)))
    return NULL;
  memcpy(copy, data, (size_t)n);
  copy[n] = '\0';
  *len = (int)n;
  return copy;
}

static int write_temp(char path[64], const char *text, size_t len)
{
  int fd;
  snprintf(path, 64, "/tmp/sb-test-auth-XXXXXX");
  if ((fd = mkstemp(path)) < 0)
    return -1;
  if (write(fd, text, len) != (ssize_t)len) {
    close(fd);
    return -1;
  }
  return close(fd);
}

/* Generates a key pair (EVP_PKEY_RSA with bits, or EVP_PKEY_EC with a curve
 * nid) and writes its public half to a temp file. Returns 0 or -1. */
static int make_keypair(struct keypair *kp, int type, int param)
{
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(type, NULL);
  EVP_PKEY *pkey = NULL;
  BIO *priv = BIO_new(BIO_s_mem()), *pub = BIO_new(BIO_s_mem());
  int rc = -1;

  if (!ctx || !priv || !pub || EVP_PKEY_keygen_init(ctx) <= 0)
    goto done;
  if (type == EVP_PKEY_RSA && EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, param) <= 0)
    goto done;
  if (type == EVP_PKEY_EC && EVP_PKEY_CTX_set_ec_paramgen_curve_nid(ctx, param) <= 0)
    goto done;
  if (EVP_PKEY_keygen(ctx, &pkey) <= 0)
    goto done;
  if (!PEM_write_bio_PrivateKey(priv, pkey, NULL, NULL, 0, NULL, NULL) ||
      !PEM_write_bio_PUBKEY(pub, pkey))
    goto done;
  if (!(kp->priv = bio_text(priv, &kp->priv_len)) || !(kp->pub = bio_text(pub, &kp->pub_len)))
    goto done;
  rc = write_temp(kp->pub_path, kp->pub, (size_t)kp->pub_len);

done:
  EVP_PKEY_free(pkey);
  EVP_PKEY_CTX_free(ctx);
  BIO_free(priv);
  BIO_free(pub);
  return rc;
}

static void free_keypair(struct keypair *kp)
{
  if (kp->pub_path[0])
    unlink(kp->pub_path);
  free(kp->priv);
  free(kp->pub);
}

static int group_setup(void **state)
{
  static const char junk[] = "-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n";
  (void)state;
  memset(&K, 0, sizeof(K));
  if (make_keypair(&K.rsa, EVP_PKEY_RSA, 2048) || make_keypair(&K.rsa_other, EVP_PKEY_RSA, 2048) ||
      make_keypair(&K.ec, EVP_PKEY_EC, NID_X9_62_prime256v1) ||
      make_keypair(&K.ec384, EVP_PKEY_EC, NID_secp384r1) ||
      write_temp(K.not_a_key_path, junk, strlen(junk)))
    return -1;
  return 0;
}

static int group_teardown(void **state)
{
  (void)state;
  free_keypair(&K.rsa);
  free_keypair(&K.rsa_other);
  free_keypair(&K.ec);
  free_keypair(&K.ec384);
  if (K.not_a_key_path[0])
    unlink(K.not_a_key_path);
  return 0;
}

/* ---- tokens and authenticators -------------------------------------------- */

/* Returns a signed token (heap) with the claims of a JSON object text. */
static char *token_with(jwt_alg_t alg, const void *key, int key_len, const char *claims)
{
  jwt_t *jwt = NULL;
  char *tok;

  assert_int_equal(jwt_new(&jwt), 0);
  assert_int_equal(jwt_add_grants_json(jwt, claims), 0);
  assert_int_equal(jwt_set_alg(jwt, alg, key, key_len), 0);
  tok = jwt_encode_str(jwt);
  assert_non_null(tok);
  jwt_free(jwt);
  return tok;
}

/* The same with header fields added (a JSON object text). */
static char *token_with_headers(const char *headers, const char *claims)
{
  jwt_t *jwt = NULL;
  char *tok;

  assert_int_equal(jwt_new(&jwt), 0);
  assert_int_equal(jwt_add_grants_json(jwt, claims), 0);
  assert_int_equal(jwt_add_headers_json(jwt, headers), 0);
  assert_int_equal(jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)SECRET, (int)strlen(SECRET)), 0);
  tok = jwt_encode_str(jwt);
  assert_non_null(tok);
  jwt_free(jwt);
  return tok;
}

static char *hs256(const char *claims)
{
  return token_with(JWT_ALG_HS256, SECRET, (int)strlen(SECRET), claims);
}

/* Builds a config: auth jwt with SECRET, then "key value" pairs (NULL-ended). */
static struct sb_auth *auth_with(const char *first_key, ...)
{
  struct sb_config cfg;
  struct sb_auth *a;
  struct sb_err err;
  va_list ap;
  const char *k;

  assert_int_equal(sb_config_init(&cfg), 0);
  assert_int_equal(sb_config_set(&cfg, SB_FORM_DAEMON, "jwt_secret", SECRET, &err), 0);
  va_start(ap, first_key);
  for (k = first_key; k; k = va_arg(ap, const char *)) {
    const char *v = va_arg(ap, const char *);
    if (sb_config_set(&cfg, SB_FORM_DAEMON, k, v, &err) != 0)
      fail_msg("config %s %s: %s", k, v, err.msg);
  }
  va_end(ap);
  err.msg[0] = '\0';
  a = sb_auth_new(&cfg, &err);
  if (!a)
    fail_msg("sb_auth_new: %s", err.msg);
  sb_config_free(&cfg);
  return a;
}

/* Builds an authenticator for a public key file (no shared secret). */
static struct sb_auth *auth_public_key(const char *path, struct sb_err *err)
{
  struct sb_config cfg;
  struct sb_auth *a;

  assert_int_equal(sb_config_init(&cfg), 0);
  assert_int_equal(sb_config_set(&cfg, SB_FORM_DAEMON, "jwt_public_key_file", path, err), 0);
  assert_int_equal(sb_config_finish(&cfg, err), 0);
  err->msg[0] = '\0';
  a = sb_auth_new(&cfg, err);
  sb_config_free(&cfg);
  return a;
}

static struct sb_auth_request req_header(const char *authorization)
{
  struct sb_auth_request r = {authorization, NULL, NULL, NULL};
  return r;
}

/* Asserts that req is accepted at now as user want. */
static void expect_user(const struct sb_auth *a, struct sb_auth_request req, time_t now,
                        const char *want)
{
  char *user = (char *)"unset";
  const char *reason = "unset";
  int rc = sb_auth_check(a, &req, now, &user, &reason);

  if (rc != 0)
    fail_msg("refused (%s), want user %s", reason ? reason : "(null)", want);
  assert_non_null(user);
  assert_string_equal(user, want);
  free(user);
}

/* Asserts that req is refused with SB_EAUTH and a reason; returns it. */
static const char *expect_refused(const struct sb_auth *a, struct sb_auth_request req, time_t now)
{
  char *user = (char *)"unset";
  const char *reason = NULL;
  int rc = sb_auth_check(a, &req, now, &user, &reason);

  if (rc != SB_EAUTH)
    fail_msg("rc %d user %s, want SB_EAUTH", rc, rc == 0 && user ? user : "-");
  assert_null(user);
  assert_non_null(reason);
  assert_true(strlen(reason) > 0);
  return reason;
}

static void expect_header_user(const struct sb_auth *a, const char *tok, time_t now, const char *want)
{
  char h[4096];
  snprintf(h, sizeof(h), "Bearer %s", tok);
  expect_user(a, req_header(h), now, want);
}

static const char *expect_header_refused(const struct sb_auth *a, const char *tok, time_t now)
{
  char h[4096];
  snprintf(h, sizeof(h), "Bearer %s", tok);
  return expect_refused(a, req_header(h), now);
}

/* ---- where the token comes from ------------------------------------------- */

static void test_bearer_header(void **state)
{
  struct sb_auth *a = auth_with(NULL);
  char *tok = hs256("{\"sub\":\"u1\"}");
  char h[4096];
  (void)state;

  assert_int_equal(sb_auth_is_none(a), 0);
  expect_header_user(a, tok, NOW, "u1");
  snprintf(h, sizeof(h), "bearer %s", tok);
  expect_user(a, req_header(h), NOW, "u1");
  snprintf(h, sizeof(h), "Bearer    %s", tok);
  expect_user(a, req_header(h), NOW, "u1");
  /* not a Bearer header */
  snprintf(h, sizeof(h), "Basic %s", tok);
  expect_refused(a, req_header(h), NOW);
  expect_refused(a, req_header(tok), NOW);
  expect_refused(a, req_header("Bearer"), NOW);
  expect_refused(a, req_header("Bearer "), NOW);
  expect_refused(a, req_header(""), NOW);
  free(tok);
  sb_auth_free(a);
}

static void test_cookie_and_query(void **state)
{
  struct sb_auth *a = auth_with(NULL);
  char *tok = hs256("{\"sub\":\"cookie-user\"}");
  char *tok2 = hs256("{\"sub\":\"query-user\"}");
  (void)state;

  expect_user(a, (struct sb_auth_request){NULL, tok, NULL, NULL}, NOW, "cookie-user");
  expect_user(a, (struct sb_auth_request){NULL, NULL, tok2, NULL}, NOW, "query-user");
  /* empty ones count as absent */
  expect_user(a, (struct sb_auth_request){NULL, "", tok2, NULL}, NOW, "query-user");
  /* the userId parameter is ignored with auth jwt */
  expect_user(a, (struct sb_auth_request){NULL, tok, NULL, "someone-else"}, NOW, "cookie-user");
  free(tok);
  free(tok2);
  sb_auth_free(a);
}

static void test_precedence(void **state)
{
  struct sb_auth *a = auth_with(NULL);
  char *th = hs256("{\"sub\":\"from-header\"}");
  char *tc = hs256("{\"sub\":\"from-cookie\"}");
  char *tq = hs256("{\"sub\":\"from-query\"}");
  char *bad = token_with(JWT_ALG_HS256, "wrong", 5, "{\"sub\":\"evil\"}");
  char h[4096], hbad[4096];
  (void)state;

  snprintf(h, sizeof(h), "Bearer %s", th);
  snprintf(hbad, sizeof(hbad), "Bearer %s", bad);
  expect_user(a, (struct sb_auth_request){h, tc, tq, NULL}, NOW, "from-header");
  expect_user(a, (struct sb_auth_request){h, NULL, tq, NULL}, NOW, "from-header");
  expect_user(a, (struct sb_auth_request){NULL, tc, tq, NULL}, NOW, "from-cookie");
  /* only the first token present is judged: a bad one is not passed over */
  expect_refused(a, (struct sb_auth_request){hbad, tc, tq, NULL}, NOW);
  expect_refused(a, (struct sb_auth_request){NULL, bad, tq, NULL}, NOW);
  expect_refused(a, (struct sb_auth_request){"Basic dXNlcjpwYXNz", tc, NULL, NULL}, NOW);
  /* and a bad cookie or query does not spoil a good header */
  expect_user(a, (struct sb_auth_request){h, bad, bad, NULL}, NOW, "from-header");
  free(th);
  free(tc);
  free(tq);
  free(bad);
  sb_auth_free(a);
}

static void test_missing_token(void **state)
{
  struct sb_auth *a = auth_with(NULL);
  (void)state;

  expect_refused(a, (struct sb_auth_request){NULL, NULL, NULL, NULL}, NOW);
  expect_refused(a, (struct sb_auth_request){NULL, "", "", NULL}, NOW);
  expect_refused(a, (struct sb_auth_request){NULL, NULL, NULL, "u1"}, NOW);
  sb_auth_free(a);
}

static void test_malformed_token(void **state)
{
  static const char *const bad[] = {
    "abc", "a.b.c", "a.b", "...", "eyJhbGciOiJIUzI1NiJ9", "eyJhbGciOiJIUzI1NiJ9.e30",
    "eyJhbGciOiJIUzI1NiJ9.!!!.sig", "not a token at all",
  };
  struct sb_auth *a = auth_with(NULL);
  char *tok = hs256("{\"sub\":\"u1\"}"), *cut;
  (void)state;

  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    expect_header_refused(a, bad[i], NOW);
    expect_refused(a, (struct sb_auth_request){NULL, bad[i], NULL, NULL}, NOW);
  }
  /* a good token with its signature cut short */
  cut = strdup(tok);
  assert_non_null(cut);
  cut[strlen(cut) - 3] = '\0';
  expect_header_refused(a, cut, NOW);
  /* or with a byte of the claims changed */
  strcpy(cut, tok);
  cut[strchr(cut, '.') - cut + 2] ^= 1;
  expect_header_refused(a, cut, NOW);
  free(cut);
  free(tok);
  sb_auth_free(a);
}

static void test_long_token_refused(void **state)
{
  struct sb_auth *a = auth_with(NULL);
  char claims[10000];
  char *tok;
  (void)state;

  snprintf(claims, sizeof(claims), "{\"sub\":\"u1\",\"pad\":\"%09000d\"}", 0);
  tok = hs256(claims);
  assert_true(strlen(tok) > 8192);
  expect_refused(a, (struct sb_auth_request){NULL, NULL, tok, NULL}, NOW);
  free(tok);
  sb_auth_free(a);
}

/* ---- signatures and algorithms -------------------------------------------- */

static void test_bad_signature(void **state)
{
  struct sb_auth *a = auth_with(NULL);
  char *tok = token_with(JWT_ALG_HS256, "another-secret", 14, "{\"sub\":\"u1\"}");
  (void)state;

  expect_header_refused(a, tok, NOW);
  free(tok);
  sb_auth_free(a);
}

static void test_alg_none_refused(void **state)
{
  struct sb_auth *a = auth_with(NULL);
  char *tok = token_with(JWT_ALG_NONE, NULL, 0, "{\"sub\":\"u1\"}");
  char *with_sig;
  (void)state;

  expect_header_refused(a, tok, NOW);
  expect_refused(a, (struct sb_auth_request){NULL, tok, NULL, NULL}, NOW);
  /* and with some signature glued on */
  assert_true(asprintf(&with_sig, "%sAAAA", tok) > 0);
  expect_header_refused(a, with_sig, NOW);
  free(with_sig);
  free(tok);
  sb_auth_free(a);
}

static void test_crit_header_refused(void **state)
{
  /* RFC 7515 4.1.11: the bridge understands no extension, so any crit
   * (well-formed, empty, or not even a list) refuses the token */
  static const char *const crit[] = {
    "{\"crit\":[\"exp\"]}",
    "{\"crit\":[\"b64\"],\"b64\":false}",
    "{\"crit\":[\"http://example.com/ext\"],\"http://example.com/ext\":1}",
    "{\"crit\":[]}",
    "{\"crit\":\"b64\"}",
    "{\"crit\":null}",
  };
  struct sb_auth *a = auth_with(NULL);
  const char *reason;
  char *tok;

  (void)state;
  for (size_t i = 0; i < sizeof(crit) / sizeof(crit[0]); i++) {
    tok = token_with_headers(crit[i], "{\"sub\":\"u1\"}");
    reason = expect_header_refused(a, tok, NOW);
    if (!strstr(reason, "crit"))
      fail_msg("%s: refused for %s", crit[i], reason);
    free(tok);
  }
  /* other header fields the bridge does not know are not critical */
  tok = token_with_headers("{\"kid\":\"key-1\",\"x-extra\":[1,2]}", "{\"sub\":\"u1\"}");
  expect_header_user(a, tok, NOW, "u1");
  free(tok);
  sb_auth_free(a);
}

static void test_other_hmac_alg_refused(void **state)
{
  struct sb_auth *a = auth_with(NULL);
  char *tok = token_with(JWT_ALG_HS512, SECRET, (int)strlen(SECRET), "{\"sub\":\"u1\"}");
  (void)state;

  /* right secret, but the configuration fixes HS256 */
  expect_header_refused(a, tok, NOW);
  free(tok);
  sb_auth_free(a);
}

static void test_rs256(void **state)
{
  struct sb_err err;
  struct sb_auth *a = auth_public_key(K.rsa.pub_path, &err);
  char *tok, *other, *confused, *hs;
  (void)state;

  if (!a)
    fail_msg("sb_auth_new: %s", err.msg);
  tok = token_with(JWT_ALG_RS256, K.rsa.priv, K.rsa.priv_len, "{\"sub\":\"rsa-user\"}");
  expect_header_user(a, tok, NOW, "rsa-user");
  expect_user(a, (struct sb_auth_request){NULL, tok, NULL, NULL}, NOW, "rsa-user");

  /* signed by another key */
  other = token_with(JWT_ALG_RS256, K.rsa_other.priv, K.rsa_other.priv_len, "{\"sub\":\"rsa-user\"}");
  expect_header_refused(a, other, NOW);

  /* key confusion: HS256 with the public key's PEM text as the HMAC secret */
  confused = token_with(JWT_ALG_HS256, K.rsa.pub, K.rsa.pub_len, "{\"sub\":\"attacker\"}");
  expect_header_refused(a, confused, NOW);
  /* and a plain HS256 token */
  hs = hs256("{\"sub\":\"u1\"}");
  expect_header_refused(a, hs, NOW);

  free(tok);
  free(other);
  free(confused);
  free(hs);
  sb_auth_free(a);
}

static void test_es256(void **state)
{
  struct sb_err err;
  struct sb_auth *a = auth_public_key(K.ec.pub_path, &err);
  char *tok, *rs, *confused;
  (void)state;

  if (!a)
    fail_msg("sb_auth_new: %s", err.msg);
  tok = token_with(JWT_ALG_ES256, K.ec.priv, K.ec.priv_len, "{\"sub\":\"ec-user\"}");
  expect_header_user(a, tok, NOW, "ec-user");
  rs = token_with(JWT_ALG_RS256, K.rsa.priv, K.rsa.priv_len, "{\"sub\":\"ec-user\"}");
  expect_header_refused(a, rs, NOW);
  confused = token_with(JWT_ALG_HS256, K.ec.pub, K.ec.pub_len, "{\"sub\":\"attacker\"}");
  expect_header_refused(a, confused, NOW);
  free(tok);
  free(rs);
  free(confused);
  sb_auth_free(a);
}

static void test_public_key_file_errors(void **state)
{
  struct sb_err err;
  struct sb_auth *a;
  (void)state;

  a = auth_public_key("/nonexistent/key.pem", &err);
  assert_null(a);
  assert_non_null(strstr(err.msg, "jwt_public_key_file"));
  a = auth_public_key(K.not_a_key_path, &err);
  assert_null(a);
  assert_non_null(strstr(err.msg, "jwt_public_key_file"));
  /* P-384 fixes no algorithm the bridge takes */
  a = auth_public_key(K.ec384.pub_path, &err);
  assert_null(a);
  assert_non_null(strstr(err.msg, "jwt_public_key_file"));
}

/* ---- claims --------------------------------------------------------------- */

static void test_exp_nbf(void **state)
{
  struct sb_auth *a = auth_with(NULL);
  char claims[256], *tok;
  (void)state;

#define TOK(fmt, ...)                                                 \
  (snprintf(claims, sizeof(claims), fmt, __VA_ARGS__), tok = hs256(claims))

  TOK("{\"sub\":\"u1\",\"exp\":%ld}", (long)NOW + 60);
  expect_header_user(a, tok, NOW, "u1");
  free(tok);
  TOK("{\"sub\":\"u1\",\"exp\":%ld}", (long)NOW - 10);
  expect_header_refused(a, tok, NOW);
  /* the same token was good before it expired */
  expect_header_user(a, tok, NOW - 11, "u1");
  free(tok);
  TOK("{\"sub\":\"u1\",\"exp\":%ld}", (long)NOW); /* exp is the first invalid second */
  expect_header_refused(a, tok, NOW);
  free(tok);

  TOK("{\"sub\":\"u1\",\"nbf\":%ld}", (long)NOW + 10);
  expect_header_refused(a, tok, NOW);
  expect_header_user(a, tok, NOW + 10, "u1");
  free(tok);
  TOK("{\"sub\":\"u1\",\"nbf\":%ld,\"exp\":%ld}", (long)NOW - 5, (long)NOW + 5);
  expect_header_user(a, tok, NOW, "u1");
  free(tok);

  /* claims that are not numbers */
  tok = hs256("{\"sub\":\"u1\",\"exp\":\"tomorrow\"}");
  expect_header_refused(a, tok, NOW);
  free(tok);
  tok = hs256("{\"sub\":\"u1\",\"nbf\":\"yesterday\"}");
  expect_header_refused(a, tok, NOW);
  free(tok);
  sb_auth_free(a);
#undef TOK
}

static void test_leeway(void **state)
{
  struct sb_auth *a = auth_with("jwt_leeway", "30", NULL);
  char claims[256], *tok;
  (void)state;

  snprintf(claims, sizeof(claims), "{\"sub\":\"u1\",\"exp\":%ld}", (long)NOW - 10);
  tok = hs256(claims);
  expect_header_user(a, tok, NOW, "u1");
  expect_header_refused(a, tok, NOW + 20);
  free(tok);
  snprintf(claims, sizeof(claims), "{\"sub\":\"u1\",\"nbf\":%ld}", (long)NOW + 30);
  tok = hs256(claims);
  expect_header_user(a, tok, NOW, "u1");
  expect_header_refused(a, tok, NOW - 1);
  free(tok);
  sb_auth_free(a);
}

static void test_audience(void **state)
{
  struct sb_auth *a = auth_with("jwt_audience", "sse-api", NULL);
  struct sb_auth *any = auth_with(NULL);
  char *tok;
  (void)state;

  tok = hs256("{\"sub\":\"u1\",\"aud\":\"sse-api\"}");
  expect_header_user(a, tok, NOW, "u1");
  free(tok);
  tok = hs256("{\"sub\":\"u1\",\"aud\":[\"other\",\"sse-api\"]}");
  expect_header_user(a, tok, NOW, "u1");
  free(tok);
  tok = hs256("{\"sub\":\"u1\",\"aud\":\"other\"}");
  expect_header_refused(a, tok, NOW);
  /* no audience configured: aud is not checked */
  expect_header_user(any, tok, NOW, "u1");
  free(tok);
  tok = hs256("{\"sub\":\"u1\",\"aud\":[\"other\",\"sse-api-2\"]}");
  expect_header_refused(a, tok, NOW);
  free(tok);
  tok = hs256("{\"sub\":\"u1\",\"aud\":\"sse-ap\"}");
  expect_header_refused(a, tok, NOW);
  free(tok);
  tok = hs256("{\"sub\":\"u1\",\"aud\":[]}");
  expect_header_refused(a, tok, NOW);
  free(tok);
  tok = hs256("{\"sub\":\"u1\"}");
  expect_header_refused(a, tok, NOW);
  expect_header_user(any, tok, NOW, "u1");
  free(tok);
  sb_auth_free(a);
  sb_auth_free(any);
}

static void test_issuer(void **state)
{
  struct sb_auth *a = auth_with("jwt_issuer", "https://issuer.example", NULL);
  char *tok;
  (void)state;

  tok = hs256("{\"sub\":\"u1\",\"iss\":\"https://issuer.example\"}");
  expect_header_user(a, tok, NOW, "u1");
  free(tok);
  tok = hs256("{\"sub\":\"u1\",\"iss\":\"https://evil.example\"}");
  expect_header_refused(a, tok, NOW);
  free(tok);
  tok = hs256("{\"sub\":\"u1\",\"iss\":[\"https://issuer.example\"]}");
  expect_header_refused(a, tok, NOW);
  free(tok);
  tok = hs256("{\"sub\":\"u1\"}");
  expect_header_refused(a, tok, NOW);
  free(tok);
  sb_auth_free(a);
}

static void test_user_claim(void **state)
{
  struct sb_auth *a = auth_with("jwt_user_claim", "uid", NULL);
  char *tok;
  (void)state;

  tok = hs256("{\"sub\":\"subject\",\"uid\":\"u7\"}");
  expect_header_user(a, tok, NOW, "u7");
  free(tok);
  tok = hs256("{\"sub\":\"subject\"}");
  expect_header_refused(a, tok, NOW);
  free(tok);
  sb_auth_free(a);
}

static void test_bad_user_claim(void **state)
{
  static const char *const bad[] = {
    "{\"sub\":\"a/b\"}",
    "{\"sub\":\"a+\"}",
    "{\"sub\":\"#\"}",
    "{\"sub\":\"\"}",
    "{\"sub\":\"tab\\there\"}",
    "{\"sub\":42}",
    "{\"sub\":null}",
    "{\"sub\":[\"u1\"]}",
    "{\"name\":\"no sub\"}",
  };
  struct sb_auth *a = auth_with(NULL);
  (void)state;

  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char *tok = hs256(bad[i]);
    expect_header_refused(a, tok, NOW);
    free(tok);
  }
  sb_auth_free(a);
}

/* ---- auth none ------------------------------------------------------------ */

static void test_auth_none(void **state)
{
  struct sb_config cfg;
  struct sb_auth *a;
  struct sb_err err;
  char *tok = hs256("{\"sub\":\"from-token\"}"), h[4096];
  (void)state;

  assert_int_equal(sb_config_init(&cfg), 0);
  assert_int_equal(sb_config_set(&cfg, SB_FORM_DAEMON, "auth", "none", &err), 0);
  a = sb_auth_new(&cfg, &err);
  sb_config_free(&cfg);
  assert_non_null(a);
  assert_int_equal(sb_auth_is_none(a), 1);

  expect_user(a, (struct sb_auth_request){NULL, NULL, NULL, "dev-user"}, NOW, "dev-user");
  expect_refused(a, (struct sb_auth_request){NULL, NULL, NULL, NULL}, NOW);
  expect_refused(a, (struct sb_auth_request){NULL, NULL, NULL, ""}, NOW);
  expect_refused(a, (struct sb_auth_request){NULL, NULL, NULL, "a/b"}, NOW);
  expect_refused(a, (struct sb_auth_request){NULL, NULL, NULL, "+"}, NOW);
  /* a token is no substitute for userId */
  snprintf(h, sizeof(h), "Bearer %s", tok);
  expect_refused(a, (struct sb_auth_request){h, tok, tok, NULL}, NOW);
  expect_user(a, (struct sb_auth_request){h, NULL, NULL, "dev-user"}, NOW, "dev-user");
  free(tok);
  sb_auth_free(a);
  sb_auth_free(NULL);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_bearer_header),
    cmocka_unit_test(test_cookie_and_query),
    cmocka_unit_test(test_precedence),
    cmocka_unit_test(test_missing_token),
    cmocka_unit_test(test_malformed_token),
    cmocka_unit_test(test_long_token_refused),
    cmocka_unit_test(test_bad_signature),
    cmocka_unit_test(test_alg_none_refused),
    cmocka_unit_test(test_other_hmac_alg_refused),
    cmocka_unit_test(test_rs256),
    cmocka_unit_test(test_es256),
    cmocka_unit_test(test_public_key_file_errors),
    cmocka_unit_test(test_exp_nbf),
    cmocka_unit_test(test_leeway),
    cmocka_unit_test(test_crit_header_refused),
    cmocka_unit_test(test_audience),
    cmocka_unit_test(test_issuer),
    cmocka_unit_test(test_user_claim),
    cmocka_unit_test(test_bad_user_claim),
    cmocka_unit_test(test_auth_none),
  };
  return cmocka_run_group_tests_name("auth", tests, group_setup, group_teardown);
}
