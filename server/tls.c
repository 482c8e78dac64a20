#include "tls.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

/* The largest file read: a chain of SB__TLS_MAX_CHAIN certificates with
 * large keys fits many times over. */
#define MAX_FILE_BYTES (1024 * 1024)

struct sb__tls {
  atomic_int refs;
  gnutls_pcert_st chain[SB__TLS_MAX_CHAIN];
  unsigned n;
  gnutls_privkey_t key;
  char about[192];
};

/* Reads the whole file path (at most MAX_FILE_BYTES) into *data, a heap
 * buffer with a NUL after its size bytes. Returns 0, or SB_EIO/SB_ENOMEM
 * with err saying why, naming option. */
static int read_file(const char *option, const char *path, gnutls_datum_t *data,
                     struct sb_err *err)
{
  FILE *f = fopen(path, "rb");
  struct stat st;
  size_t n;
  int rc = SB_EIO;

  data->data = NULL;
  data->size = 0;
  if (!f) {
    sb_err_set(err, "%s: cannot read %.128s: %s", option, path, strerror(errno));
    return SB_EIO;
  }
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    sb_err_set(err, "%s: %.128s is not a file", option, path);
    goto done;
  }
  if (st.st_size > MAX_FILE_BYTES) {
    sb_err_set(err, "%s: %.128s is larger than %d bytes", option, path, MAX_FILE_BYTES);
    goto done;
  }
  if (!(data->data = malloc((size_t)st.st_size + 1))) {
    rc = SB_ENOMEM;
    goto done;
  }
  n = fread(data->data, 1, (size_t)st.st_size, f);
  if (ferror(f)) {
    sb_err_set(err, "%s: cannot read %.128s: %s", option, path, strerror(errno));
    goto done;
  }
  data->data[n] = '\0';
  data->size = (unsigned)n;
  rc = 0;

done:
  fclose(f);
  if (rc) {
    free(data->data);
    data->data = NULL;
  }
  return rc;
}

/* Returns 1 if key is the private key of the public key in cert. */
static int key_matches(gnutls_privkey_t key, const gnutls_pcert_st *cert)
{
  gnutls_pubkey_t pub;
  unsigned char a[64], b[64];
  size_t na = sizeof(a), nb = sizeof(b);
  int same = 0;

  if (gnutls_pubkey_init(&pub) < 0)
    return 0;
  if (gnutls_pubkey_import_privkey(pub, key, 0, 0) == 0 &&
      gnutls_pubkey_get_key_id(pub, GNUTLS_KEYID_USE_SHA256, a, &na) == 0 &&
      gnutls_pubkey_get_key_id(cert->pubkey, GNUTLS_KEYID_USE_SHA256, b, &nb) == 0)
    same = na == nb && memcmp(a, b, na) == 0;
  gnutls_pubkey_deinit(pub);
  return same;
}

/* Fills t->about from the server's certificate: subject, serial, end. */
static void describe(struct sb__tls *t)
{
  gnutls_x509_crt_t crt;
  gnutls_datum_t dn = {NULL, 0};
  unsigned char serial[40];
  char hex[2 * sizeof(serial) + 1] = "", until[32] = "?";
  size_t n = sizeof(serial);
  time_t end;
  struct tm tm;

  snprintf(t->about, sizeof(t->about), "a certificate");
  if (gnutls_x509_crt_init(&crt) < 0)
    return;
  if (gnutls_x509_crt_import(crt, &t->chain[0].cert, GNUTLS_X509_FMT_DER) == 0) {
    gnutls_x509_crt_get_dn3(crt, &dn, 0);
    if (gnutls_x509_crt_get_serial(crt, serial, &n) == 0)
      for (size_t i = 0; i < n && i < sizeof(serial); i++)
        snprintf(hex + 2 * i, 3, "%02x", serial[i]);
    end = gnutls_x509_crt_get_expiration_time(crt);
    if (end != (time_t)-1 && gmtime_r(&end, &tm))
      strftime(until, sizeof(until), "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(t->about, sizeof(t->about), "%.80s, serial %.40s, %s %s",
             dn.data ? (const char *)dn.data : "?", hex,
             end != (time_t)-1 && end < time(NULL) ? "EXPIRED since" : "valid until", until);
  }
  gnutls_free(dn.data);
  gnutls_x509_crt_deinit(crt);
}

static void tls_free(struct sb__tls *t)
{
  for (unsigned i = 0; i < t->n; i++)
    gnutls_pcert_deinit(&t->chain[i]);
  if (t->key)
    gnutls_privkey_deinit(t->key);
  free(t);
}

int sb__tls_read(const char *cert, const char *key, struct sb__tls **out, struct sb_err *err)
{
  struct sb__tls *t = calloc(1, sizeof(*t));
  gnutls_datum_t c = {NULL, 0}, k = {NULL, 0};
  int rc, g;

  *out = NULL;
  if (!t)
    return SB_ENOMEM;
  atomic_init(&t->refs, 1);
  if ((rc = read_file("http_tls_cert", cert, &c, err)) ||
      (rc = read_file("http_tls_key", key, &k, err)))
    goto fail;
  rc = SB_EINVAL;
  t->n = SB__TLS_MAX_CHAIN;
  if ((g = gnutls_pcert_list_import_x509_raw(t->chain, &t->n, &c, GNUTLS_X509_FMT_PEM, 0)) < 0) {
    t->n = 0;
    sb_err_set(err, "http_tls_cert: %.128s holds no PEM certificate (or more than %d): %s", cert,
               SB__TLS_MAX_CHAIN, gnutls_strerror(g));
    goto fail;
  }
  if ((g = gnutls_privkey_init(&t->key)) < 0) {
    rc = SB_ENOMEM;
    goto fail;
  }
  if ((g = gnutls_privkey_import_x509_raw(t->key, &k, GNUTLS_X509_FMT_PEM, NULL, 0)) < 0) {
    sb_err_set(err, "http_tls_key: %.128s holds no unencrypted PEM private key: %s", key,
               gnutls_strerror(g));
    goto fail;
  }
  if (!key_matches(t->key, &t->chain[0])) {
    sb_err_set(err, "http_tls_key: %.100s is not the key of the certificate in %.100s", key, cert);
    goto fail;
  }
  describe(t);
  rc = 0;
  *out = t;
  t = NULL;

fail:
  if (k.data) {
    gnutls_memset(k.data, 0, k.size); /* the private key's text */
    free(k.data);
  }
  free(c.data);
  if (t)
    tls_free(t);
  return rc;
}

struct sb__tls *sb__tls_ref(struct sb__tls *t)
{
  if (t)
    atomic_fetch_add(&t->refs, 1);
  return t;
}

void sb__tls_unref(struct sb__tls *t)
{
  if (t && atomic_fetch_sub(&t->refs, 1) == 1)
    tls_free(t);
}

const char *sb__tls_describe(const struct sb__tls *t)
{
  return t->about;
}

void sb__tls_select(const struct sb__tls *t, gnutls_pcert_st **chain, unsigned *n,
                    gnutls_privkey_t *key)
{
  *chain = (gnutls_pcert_st *)t->chain;
  *n = t->n;
  *key = t->key;
}
