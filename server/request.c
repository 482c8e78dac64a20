#include "request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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

/* What sb__request_malformed() finds among the headers. */
struct seen {
  int hosts;
  int lengths;
  int lengths_differ;
  int transfer_encoding;
  const char *length; /* the first Content-Length */
};

static enum MHD_Result see_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
  struct seen *s = cls;

  (void)kind;
  if (!key)
    return MHD_YES;
  if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0) {
    s->hosts++;
  } else if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
    if (s->lengths++ == 0)
      s->length = value ? value : "";
    else if (strcmp(s->length, value ? value : "") != 0)
      s->lengths_differ = 1;
  } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
    s->transfer_encoding = 1;
  }
  return MHD_YES;
}

const char *sb__request_malformed(const struct sb__request *q, const char *version)
{
  struct seen s = {0, 0, 0, 0, NULL};

  MHD_get_connection_values(q->mc, MHD_HEADER_KIND, see_header, &s);
  if (s.hosts > 1)
    return "the request has more than one Host header";
  if (s.hosts == 0 && version && strcmp(version, MHD_HTTP_VERSION_1_1) == 0)
    return "an HTTP/1.1 request needs a Host header";
  if (s.lengths_differ)
    return "the request has Content-Length headers that differ";
  if (s.lengths && s.transfer_encoding)
    return "the request has both Content-Length and Transfer-Encoding";
  return NULL;
}

int sb__request_content_type_is(const struct sb__request *q, const char *type)
{
  const char *v = sb__request_value(q, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
  size_t n = strlen(type);

  if (!v)
    return 0;
  v += strspn(v, " \t");
  if (strncasecmp(v, type, n) != 0)
    return 0;
  v += n;
  v += strspn(v, " \t");
  return *v == '\0' || *v == ';';
}

int sb__request_by_cookie(const struct sb__request *q)
{
  const char *cookie;

  if (q->env->cfg->auth == SB_AUTH_NONE ||
      sb__request_value(q, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION))
    return 0;
  cookie = sb__request_value(q, MHD_COOKIE_KIND, q->env->cfg->jwt_cookie);
  return cookie && *cookie;
}

/* Returns the length of the authority a (n bytes) without its port when that
 * is the scheme's default port dflt (":80", ":443"), which browsers leave
 * out of an origin. */
static size_t without_default_port(const char *a, size_t n, const char *dflt)
{
  size_t d = strlen(dflt);
  return n > d && strncmp(a + n - d, dflt, d) == 0 ? n - d : n;
}

/* Returns 1 when origin (n bytes, "<scheme>://<host>[:<port>]") is the
 * bridge's own: the scheme it serves and the request's Host. */
static int own_origin(const struct sb__request *q, const char *origin, size_t n)
{
  const char *scheme = q->https ? "https://" : "http://", *dflt = q->https ? ":443" : ":80";
  const char *host = sb__request_value(q, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
  size_t sn = strlen(scheme), hn;

  if (!host || n <= sn || strncasecmp(origin, scheme, sn) != 0)
    return 0;
  origin += sn;
  n = without_default_port(origin, n - sn, dflt);
  hn = without_default_port(host, strlen(host), dflt);
  return n == hn && strncasecmp(origin, host, n) == 0;
}

const char *sb__request_foreign(const struct sb__request *q)
{
  const char *origin = sb__request_value(q, MHD_HEADER_KIND, "Origin");
  const char *referer, *end;
  char buf[512];
  size_t n;

  if (!origin) {
    /* the Referer's origin: up to the first '/', '?' or '#' after "://" */
    referer = sb__request_value(q, MHD_HEADER_KIND, "Referer");
    if (!referer)
      return "a request authenticated by its cookie needs an Origin or Referer header";
    if (!(end = strstr(referer, "://")))
      return "the request's Referer is not a URL";
    end += 3;
    end += strcspn(end, "/?#");
    n = (size_t)(end - referer);
    if (n >= sizeof(buf))
      return "the request's Referer is too long";
    memcpy(buf, referer, n);
    buf[n] = '\0';
    origin = buf;
  }
  if (own_origin(q, origin, strlen(origin)) || sb_cors_match(q->cors, origin) == SB_CORS_ORIGIN)
    return NULL;
  return "a request authenticated by its cookie must come from the bridge's own origin or one "
         "of cors_origins";
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
