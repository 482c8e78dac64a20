/* request.h: what every endpoint does with a request (internal to the
 * server): read its values, find its user, and answer it, with the CORS
 * headers of the parsed cors_origins list.
 *
 * A struct sb__request lives for one call of libmicrohttpd's request handler
 * on the server's loop thread; so do the functions here. */
#ifndef SB_REQUEST_H
#define SB_REQUEST_H

#include <stddef.h>

#include <microhttpd.h>

#include "cors.h"
#include "http.h"

/* A request being answered, and what its answer may use of the server; all
 * borrowed. */
struct sb__request {
  struct MHD_Connection *mc;
  const struct sb__http_env *env;
  const struct sb_cors *cors;
};

/* Returns a query parameter, header or cookie of the request (borrowed from
 * libmicrohttpd until the request ends), or NULL when absent. A value that
 * holds a NUL (sent as %00) comes back as "\x01", which every check refuses.
 * Loop thread. */
const char *sb__request_value(const struct sb__request *q, enum MHD_ValueKind kind,
                              const char *key);

/* Returns 1 when the request announces a body (a Content-Length other than
 * 0, or a Transfer-Encoding), else 0. Loop thread. */
int sb__request_has_body(const struct sb__request *q);

/* Finds the user of the request from its credentials (header, cookie, query).
 * Returns the user, a heap string the caller frees, or NULL after queueing
 * the 401 answer, whose result goes to *answered. Loop thread. */
char *sb__request_user(const struct sb__request *q, enum MHD_Result *answered);

/* Adds to r the CORS headers that the request's Origin is due. Loop thread. */
void sb__request_cors(const struct sb__request *q, struct MHD_Response *r);

/* Queues an answer of len bytes of body (copied) with the Content-Type type,
 * no-cache, the CORS headers and, when hname is not NULL, one more header;
 * counts a status of 400 or more as an HTTP error. Returns libmicrohttpd's
 * result. Loop thread. */
enum MHD_Result sb__answer(const struct sb__request *q, unsigned status, const char *type,
                           const char *body, size_t len, const char *hname, const char *hvalue);

/* Queues an error answer, {"error": "<code>", "message": "<why>"}, as
 * sb__answer() does. Loop thread. */
enum MHD_Result sb__answer_error(const struct sb__request *q, unsigned status, const char *code,
                                 const char *why, const char *hname, const char *hvalue);

/* Queues the answer to a CORS preflight (OPTIONS): 204 with the methods and
 * headers the bridge takes. Loop thread. */
enum MHD_Result sb__answer_preflight(const struct sb__request *q);

#endif
