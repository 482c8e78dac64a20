/* tls.h: the certificate and key of HTTPS (internal to the server).
 *
 * Reads http_tls_cert (PEM: the server's certificate first, then the chain
 * that a client needs to reach its root) and http_tls_key (PEM, unencrypted)
 * into what GnuTLS hands to a handshake, and checks that the key is the
 * certificate's. A pair is counted: the HTTP side holds the current one and
 * each TLS connection the one that was current when it was accepted, so a
 * reload that swaps the pair (SIGHUP) never frees one that a handshake under
 * way still uses. The count is atomic: a pair is read on one thread (the
 * daemon's main thread at a reload) and handed to the loop thread. */
#ifndef SB_TLS_H
#define SB_TLS_H

#include <gnutls/abstract.h>

#include "err.h"

/* Certificates read at most from http_tls_cert: the server's and its chain. */
#define SB__TLS_MAX_CHAIN 16

struct sb__tls;

/* Reads the pair from the files cert and key (paths). Returns 0 with *out a
 * pair counted once (the caller's), or SB_EIO (a file cannot be read),
 * SB_EINVAL (not PEM, not a certificate or key, or the key is not the
 * certificate's) or SB_ENOMEM, with err naming the option at fault
 * (http_tls_cert or http_tls_key) and *out NULL. Any thread. */
int sb__tls_read(const char *cert, const char *key, struct sb__tls **out, struct sb_err *err);

/* Counts one more holder of t and returns t. NULL-safe. Any thread. */
struct sb__tls *sb__tls_ref(struct sb__tls *t);

/* Drops one holder of t; the last frees it. NULL-safe. Any thread. */
void sb__tls_unref(struct sb__tls *t);

/* Returns what a log line says of t: its subject, serial and end of
 * validity. Borrowed from t. */
const char *sb__tls_describe(const struct sb__tls *t);

/* Gives what a gnutls_certificate_retrieve_function2 returns for t: the
 * chain, its length and the key, all borrowed from t (GnuTLS neither frees
 * nor changes them). The caller holds t for as long as the session that uses
 * them. */
void sb__tls_select(const struct sb__tls *t, gnutls_pcert_st **chain, unsigned *n,
                    gnutls_privkey_t *key);

#endif
