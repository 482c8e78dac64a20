#include "request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "auth.h"
#include "config.h"
#include "metrics.h"

/* A value of the request that holds a NUL (as %00) is replaced by this,
 * which every check refuses (a control character). */
static const char bad_value[] = "\x01";

const char *sb__request_value(const struct sb__request *q, enum MHD_ValueKind kind,
                              const char *key)
{
  const char *v = NULL;
  size_t n = 0;

  if (MHD_lookup_connection_value_n(q->mc, kind, key, strlen(key), &v, &n) != MHD_YES)
    return NULL;
  if (v && strlen(v) != n)
    return bad_value;
  return v;
}

int sb__request_has_body(const struct sb__request *q)
{
  const char *n = MHD_lookup_connection_value(q->mc, MHD_HEADER_KIND,
                                              MHD_HTTP_HEADER_CONTENT_LENGTH);

  if (MHD_lookup_connection_value(q->mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING))
    return 1;
  return n && strspn(n, "0") != strlen(n);
}

char *sb__request_user(const struct sb__request *q, enum MHD_Result *answered)
{
  struct sb_auth_request req = {
    sb__request_value(q, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
    sb__request_value(q, MHD_COOKIE_KIND, q->env->cfg->jwt_cookie),
    sb__request_value(q, MHD_GET_ARGUMENT_KIND, "token"),
    sb__request_value(q, MHD_GET_ARGUMENT_KIND, "userId"),
  };
  char *user = NULL, www[256];
  const char *reason;

  if (sb_auth_check(q->env->auth, &req, time(NULL), &user, &reason) == 0)
    return user;
  snprintf(www, sizeof(www),
           "Bearer realm=\"mqtt-sse-bridge\", error=\"invalid_token\", error_description=\"%s\"",
           reason);
  *answered = sb__answer_error(q, MHD_HTTP_UNAUTHORIZED, "unauthorized", reason,
                               "WWW-Authenticate", www);
  return NULL;
}

void sb__request_cors(const struct sb__request *q, struct MHD_Response *r)
{
  const char *origin = MHD_lookup_connection_value(q->mc, MHD_HEADER_KIND, "Origin");

  switch (sb_cors_match(q->cors, origin)) {
  case SB_CORS_ANY:
    MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
    break;
  case SB_CORS_ORIGIN:
    MHD_add_response_header(r, "Access-Control-Allow-Origin", origin);
    MHD_add_response_header(r, "Access-Control-Allow-Credentials", "true");
    MHD_add_response_header(r, "Vary", "Origin");
    break;
  case SB_CORS_NONE:
    break;
  }
}

enum MHD_Result sb__answer(const struct sb__request *q, unsigned status, const char *type,
                           const char *body, size_t len, const char *hname, const char *hvalue)
{
  struct MHD_Response *r =
      MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
  enum MHD_Result ok;

  if (!r)
    return MHD_NO;
  MHD_add_response_header(r, "Content-Type", type);
  MHD_add_response_header(r, "Cache-Control", "no-cache");
  if (hname)
    MHD_add_response_header(r, hname, hvalue);
  sb__request_cors(q, r);
  ok = MHD_queue_response(q->mc, status, r);
  MHD_destroy_response(r);
  if (status >= 400)
    sb_metrics_http_error(q->env->metrics, (int)status);
  return ok;
}

enum MHD_Result sb__answer_error(const struct sb__request *q, unsigned status, const char *code,
                                 const char *why, const char *hname, const char *hvalue)
{
  json_t *j = json_pack("{s:s, s:s}", "error", code, "message", why);
  char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
  char line[512];

  json_decref(j);
  snprintf(line, sizeof(line), "%s\n", body ? body : "{}");
  free(body);
  return sb__answer(q, status, "application/json", line, strlen(line), hname, hvalue);
}

enum MHD_Result sb__answer_preflight(const struct sb__request *q)
{
  struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
  enum MHD_Result ok;

  if (!r)
    return MHD_NO;
  sb__request_cors(q, r);
  MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
  MHD_add_response_header(r, "Access-Control-Allow-Headers",
                          "Authorization, Content-Type, Last-Event-ID");
  MHD_add_response_header(r, "Access-Control-Max-Age", "600");
  ok = MHD_queue_response(q->mc, MHD_HTTP_NO_CONTENT, r);
  MHD_destroy_response(r);
  return ok;
}
