#include "endpoints.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "err.h"
#include "event.h"
#include "presence.h"
#include "sse.h"
#include "webfiles.h"

enum MHD_Result sb__serve_stream(const struct sb__request *q, struct sb__handover *ho)
{
  const char *device = sb__request_value(q, MHD_GET_ARGUMENT_KIND, "deviceId");
  const char *last = sb__request_value(q, MHD_HEADER_KIND, "Last-Event-ID");
  char *user = NULL, retry_after[16];
  struct MHD_Response *r;
  enum MHD_Result ok;
  int rc;

  if (!device)
    return sb__answer_error(q, MHD_HTTP_BAD_REQUEST, "bad_request",
                            "deviceId query parameter is missing", NULL, NULL);
  if (!sb_sse_valid_device(device, strlen(device)))
    return sb__answer_error(q, MHD_HTTP_BAD_REQUEST, "bad_request",
                            "deviceId must be 1 to 128 characters of A-Z a-z 0-9 . _ : -", NULL,
                            NULL);
  if (!last || !*last)
    last = sb__request_value(q, MHD_GET_ARGUMENT_KIND, "lastEventId");
  if (last && *last && !sb_sse_valid_id(last, strlen(last), SB_EVENT_ID_MAX))
    return sb__answer_error(q, MHD_HTTP_BAD_REQUEST, "bad_request",
                            "Last-Event-ID must be at most 128 characters without control "
                            "characters",
                            NULL, NULL);
  if (!(user = sb__request_user(q, &ok)))
    return ok;
  rc = sb__handover_open(ho, q->mc, user, device, last, &r);
  free(user);
  if (rc) {
    snprintf(retry_after, sizeof(retry_after), "%d", q->env->cfg->retry_ms / 1000 + 1);
    if (rc == SB_ELIMIT || rc == SB_EUSERLIMIT)
      return sb__answer_error(q, MHD_HTTP_SERVICE_UNAVAILABLE, "too_many_connections",
                              rc == SB_ELIMIT ? "the bridge holds max_connections streams"
                                              : "this user holds max_connections_per_user streams",
                              "Retry-After", retry_after);
    return sb__answer_error(q, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", sb_strerror(rc),
                            "Retry-After", retry_after);
  }
  sb__request_cors(q, r);
  ok = MHD_queue_response(q->mc, MHD_HTTP_OK, r);
  MHD_destroy_response(r);
  return ok;
}

enum MHD_Result sb__serve_health(const struct sb__request *q)
{
  struct sb_metrics_gauges g;
  char body[512];
  int up = atomic_load(&q->env->metrics->mqtt_connected);
  const char *broker = atomic_load(&q->env->metrics->mqtt_broker);

  sb_hub_gauges(q->env->hub, &g);
  snprintf(body, sizeof(body),
           "{\"status\":\"%s\",\"mqtt\":\"%s\",%s%s%s\"connections\":%zu,\"users\":%zu}\n",
           up ? "ok" : "unavailable", up ? "connected" : "disconnected",
           broker ? "\"broker\":\"" : "", broker ? broker : "", broker ? "\"," : "", g.connections,
           g.users);
  return sb__answer(q, up ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, "application/json", body,
                    strlen(body), NULL, NULL);
}

enum MHD_Result sb__serve_presence(const struct sb__request *q)
{
  enum MHD_Result ok = MHD_NO;
  char *user, *text = NULL;
  json_t *o;

  if (!(user = sb__request_user(q, &ok)))
    return ok;
  if ((o = sb_presence_user_json(q->env->hub, user)) && (text = json_dumps(o, JSON_COMPACT)))
    ok = sb__answer(q, MHD_HTTP_OK, "application/json", text, strlen(text), NULL, NULL);
  free(text);
  json_decref(o);
  free(user);
  return ok;
}

enum MHD_Result sb__serve_metrics(const struct sb__request *q)
{
  struct sb_metrics_gauges g;
  char body[8192];
  int n;

  sb_hub_gauges(q->env->hub, &g);
  if ((n = sb_metrics_render(q->env->metrics, &g, body, sizeof(body))) < 0)
    return MHD_NO;
  return sb__answer(q, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", body, (size_t)n,
                    NULL, NULL);
}

static const char *content_type(const char *name)
{
  const char *dot = strrchr(name, '.');
  if (!dot)
    return "application/octet-stream";
  if (!strcmp(dot, ".html"))
    return "text/html; charset=utf-8";
  if (!strcmp(dot, ".js") || !strcmp(dot, ".mjs"))
    return "text/javascript; charset=utf-8";
  if (!strcmp(dot, ".css"))
    return "text/css; charset=utf-8";
  if (!strcmp(dot, ".json"))
    return "application/json";
  if (!strcmp(dot, ".svg"))
    return "image/svg+xml";
  if (!strcmp(dot, ".png"))
    return "image/png";
  if (!strcmp(dot, ".ico"))
    return "image/x-icon";
  return "application/octet-stream";
}

enum MHD_Result sb__serve_static(const struct sb__request *q, const char *url)
{
  const char *root = q->env->cfg->web_root, *name = url + 1;
  const struct sb_webfile *wf;
  char path[1024];
  struct stat st;
  struct MHD_Response *r = NULL;
  enum MHD_Result ok;
  int fd;

  if (!*name)
    name = "index.html";
  if (name[0] == '.' || strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                     "0123456789._-") != strlen(name))
    return sb__answer_error(q, MHD_HTTP_NOT_FOUND, "not_found", "no such resource", NULL, NULL);
  if (*root) {
    snprintf(path, sizeof(path), "%s/%s", root, name);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0) {
      if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
          !(r = MHD_create_response_from_fd((uint64_t)st.st_size, fd)))
        close(fd);
    }
  }
  if (!r && (wf = sb_webfile_find(name)))
    r = MHD_create_response_from_buffer(wf->len, (void *)wf->data, MHD_RESPMEM_PERSISTENT);
  if (!r)
    return sb__answer_error(q, MHD_HTTP_NOT_FOUND, "not_found", "no such resource", NULL, NULL);
  MHD_add_response_header(r, "Content-Type", content_type(name));
  MHD_add_response_header(r, "Cache-Control", "no-cache");
  MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
  ok = MHD_queue_response(q->mc, MHD_HTTP_OK, r);
  MHD_destroy_response(r);
  return ok;
}
