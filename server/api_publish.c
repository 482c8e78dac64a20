#include "api_publish.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "clock.h"
#include "err.h"
#include "linger.h"
#include "log.h"
#include "publish.h"

/* A request body being read; the request's con_cls. */
struct upload {
  char *user; /* authenticated on the first call */
  char *buf;
  size_t len, cap;
  int refused; /* the body grew over the limit: why says so, buf stops */
  struct sb_publish_error why;
  long long refused_ms; /* when (monotonic) */
  size_t thrown;        /* bytes thrown away since */
};

static struct sb_event_rules rules_of(const struct sb__request *q)
{
  struct sb_event_rules r = {q->env->cfg->topic_prefix, (size_t)q->env->cfg->max_event_bytes,
                             {0, 0}};
  return r;
}

void sb__publish_upload_free(void *upload)
{
  struct upload *u = upload;

  if (!u)
    return;
  free(u->user);
  free(u->buf);
  free(u);
}

/* Adds n bytes of the body to u. A body that grows over the limit (sent
 * without Content-Length, or refused before) is read on and thrown away, so
 * that the client reads the 413 after it, for SB__LINGER_MS and
 * SB__LINGER_BYTES at most. Returns 0, SB_ELIMIT past those (the connection
 * is then closed) or SB_ENOMEM. */
static int upload_append(const struct sb__request *q, struct upload *u, const char *data, size_t n)
{
  struct sb_event_rules rules = rules_of(q);

  if (!u->refused && sb_publish_check_size(&rules, u->len + n, &u->why)) {
    u->refused = 1;
    u->refused_ms = sb_clock_mono_ms();
  }
  if (u->refused) {
    u->thrown += n;
    if (u->thrown > SB__LINGER_BYTES || sb_clock_mono_ms() - u->refused_ms > SB__LINGER_MS) {
      SB_LOG(q->env->log, SB_LOG_DEBUG,
             "[HTTP] A body over max_event_bytes goes on too long; closing its connection");
      return SB_ELIMIT;
    }
    return 0;
  }
  if (u->len + n + 1 > u->cap) {
    size_t cap = (u->len + n + 1) * 2;
    char *buf = realloc(u->buf, cap);
    if (!buf)
      return SB_ENOMEM;
    u->buf = buf;
    u->cap = cap;
  }
  memcpy(u->buf + u->len, data, n);
  u->len += n;
  u->buf[u->len] = '\0';
  return 0;
}

/* Answers a refusal of the core with its status. */
static enum MHD_Result refuse(const struct sb__request *q, const struct sb_publish_error *why)
{
  switch (why->reason) {
  case SB_PUBLISH_FORBIDDEN:
    return sb__answer_error(q, MHD_HTTP_FORBIDDEN, "forbidden", why->text, NULL, NULL);
  case SB_PUBLISH_TOO_LARGE:
    return sb__answer_error(q, MHD_HTTP_CONTENT_TOO_LARGE, "too_large", why->text, NULL, NULL);
  default:
    return sb__answer_error(q, MHD_HTTP_BAD_REQUEST, "bad_request", why->text, NULL, NULL);
  }
}

/* The whole body is in: maps it and publishes the message. */
static enum MHD_Result publish(const struct sb__request *q, struct upload *u)
{
  const struct sb__http_env *env = q->env;
  struct sb_event_rules rules = rules_of(q);
  struct sb_publish msg;
  struct sb_publish_error why;
  static const char accepted[] = "{\"status\":\"accepted\"}\n";
  char *reply = NULL, line[256];
  size_t len;
  json_t *o;
  enum MHD_Result ok;
  int rc;

  if (u->refused)
    return refuse(q, &u->why);
  rules.now = sb_clock_wall();
  rc = sb_publish_body(&rules, u->user, u->buf, u->len, &msg, &why);
  if (rc == SB_EINVAL)
    return refuse(q, &why);
  if (rc)
    return MHD_NO;
  if (!env->publish || env->publish(env->publish_ctx, msg.topic, msg.payload, msg.payload_len)) {
    ok = sb__answer_error(q, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable",
                          "the MQTT side is not connected", "Retry-After", "1");
    goto done;
  }
  o = json_pack("{s:s, s:s}", "status", "accepted", "topic", msg.topic);
  reply = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  if (reply) {
    len = strlen(reply);
    reply[len++] = '\n'; /* the answer is the JSON and a newline, without the NUL */
    ok = sb__answer(q, MHD_HTTP_ACCEPTED, "application/json", reply, len, NULL, NULL);
  } else {
    ok = sb__answer(q, MHD_HTTP_ACCEPTED, "application/json", accepted, sizeof(accepted) - 1, NULL,
                    NULL);
  }
  SB_LOG(env->log, SB_LOG_DEBUG, "[SSE] Published over HTTP on %s",
         sb_log_printable(msg.topic, line, sizeof(line)));

done:
  free(reply);
  sb_publish_clear(&msg);
  return ok;
}

enum MHD_Result sb__serve_publish(const struct sb__request *q, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
  struct sb_event_rules rules = rules_of(q);
  struct sb_publish_error why;
  struct upload *u = *con_cls;
  const char *clen;
  unsigned long long n;
  enum MHD_Result ok = MHD_NO;

  if (!u) {
    /* First call, headers only: refuse early what can be refused. */
    clen = MHD_lookup_connection_value(q->mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    n = clen ? strtoull(clen, NULL, 10) : 0;
    if (sb_publish_check_size(&rules, n > SIZE_MAX ? SIZE_MAX : (size_t)n, &why))
      return refuse(q, &why);
    if (!(u = calloc(1, sizeof(*u))))
      return MHD_NO;
    if (!(u->user = sb__request_user(q, &ok))) {
      free(u);
      return ok;
    }
    *con_cls = u;
    return MHD_YES;
  }
  if (*upload_data_size) {
    if (upload_append(q, u, upload_data, *upload_data_size))
      return MHD_NO;
    *upload_data_size = 0;
    return MHD_YES;
  }
  return publish(q, u);
}
