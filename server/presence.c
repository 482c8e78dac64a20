#include "presence.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "clock.h"
#include "err.h"
#include "event.h"
#include "hub.h"
#include "list.h"
#include "topic.h"

/* A record an earlier run of this instance left for user, to clear unless
 * the user is connected again. */
struct stale {
  struct sb_list link; /* on sb_presence.stale */
  char user[];
};

struct sb_presence {
  const struct sb_hub *hub;
  const struct sb_log *log;
  struct sb_metrics *metrics;
  sb_presence_publish_fn publish; /* NULL: publishes nothing */
  void *publish_ctx;
  char *prefix;      /* presence_prefix; "": presence is off */
  char filter[256];  /* "<prefix>/+", or "" */
  char instance[96]; /* "<hostname>:<http port>", "" until started */
  char started[32];  /* ISO 8601 time of this run's start */
  char *will;        /* the offline status; NULL until started */
  pthread_mutex_t lock; /* guards stale */
  struct sb_list stale; /* struct stale, oldest first */
};

/* ---- the records (pure) --------------------------------------------------- */

struct devices_json {
  json_t *devices;
  int failed;
};

static void add_device(void *ctx, const char *device, size_t connections)
{
  struct devices_json *d = ctx;
  if (json_object_set_new(d->devices, device, json_integer((json_int_t)connections)) != 0)
    d->failed = 1;
}

json_t *sb_presence_user_json(const struct sb_hub *hub, const char *user)
{
  struct devices_json d = {json_object(), 0};
  size_t n;

  if (!d.devices)
    return NULL;
  n = sb_hub_foreach_device(hub, user, add_device, &d);
  if (d.failed) {
    json_decref(d.devices);
    return NULL;
  }
  return json_pack("{s:s, s:b, s:I, s:o}", "userId", user, "online", n > 0, "connections",
                   (json_int_t)n, "devices", d.devices);
}

char *sb_presence_record(const struct sb_hub *hub, const char *user, const char *instance,
                         const char *started, const char *timestamp)
{
  json_t *o;
  char *text = NULL;

  if (!sb_hub_is_user_connected(hub, user))
    return strdup("");
  if ((o = sb_presence_user_json(hub, user)) &&
      json_object_set_new(o, "instance", json_string(instance)) == 0 &&
      json_object_set_new(o, "started", json_string(started)) == 0 &&
      json_object_set_new(o, "timestamp", json_string(timestamp)) == 0)
    text = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  return text;
}

char *sb_presence_status(const char *instance, const char *started, const char *timestamp)
{
  json_t *o = timestamp ? json_pack("{s:s, s:b, s:s, s:s}", "instance", instance, "online", 1,
                                    "started", started, "timestamp", timestamp)
                        : json_pack("{s:s, s:b, s:s}", "instance", instance, "online", 0,
                                    "started", started);
  char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;

  json_decref(o);
  return text;
}

int sb_presence_from_earlier_run(const void *payload, size_t len, const char *instance,
                                 const char *started)
{
  json_t *o = json_loadb(payload, len, 0, NULL);
  const char *their_instance, *their_started;
  int earlier;

  if (!o)
    return 0;
  earlier = json_unpack(o, "{s:s, s:s}", "instance", &their_instance, "started",
                        &their_started) == 0 &&
            strcmp(their_instance, instance) == 0 && strcmp(their_started, started) != 0;
  json_decref(o);
  return earlier;
}

/* ---- publishing (loop thread) --------------------------------------------- */

/* Returns 1 when presence is on and there is a way to publish it. */
static int publishing(const struct sb_presence *p)
{
  return *p->prefix && p->publish;
}

static void publish(struct sb_presence *p, const char *topic, const char *payload)
{
  int rc = p->publish(p->publish_ctx, topic, payload, strlen(payload));
  /* while the broker is away every record is published again on its return */
  if (rc)
    SB_LOG(p->log, rc == SB_ESTATE ? SB_LOG_DEBUG : SB_LOG_WARNING,
           "[SSE] Cannot publish presence on %s: %s", topic, sb_strerror(rc));
  else
    atomic_fetch_add(&p->metrics->presence_published, 1);
}

/* Writes the wall-clock time now into ts, as a record's timestamp. */
static void stamp(char ts[32])
{
  sb_event_format_time(sb_clock_wall(), ts);
}

void sb_presence_publish_user(struct sb_presence *p, const char *user)
{
  char topic[512], ts[32], *text;

  if (!publishing(p) || !sb_topic_valid_level(user, strlen(user)) ||
      (size_t)snprintf(topic, sizeof(topic), "%s/%s", p->prefix, user) >= sizeof(topic))
    return;
  stamp(ts);
  if ((text = sb_presence_record(p->hub, user, p->instance, p->started, ts)))
    publish(p, topic, text);
  free(text);
}

void sb_presence_publish_status(struct sb_presence *p, int online)
{
  char ts[32], *text;

  if (!publishing(p) || !p->will)
    return;
  if (!online) {
    publish(p, p->prefix, p->will);
    return;
  }
  stamp(ts);
  if ((text = sb_presence_status(p->instance, p->started, ts)))
    publish(p, p->prefix, text);
  free(text);
}

/* ---- the records of an earlier run ---------------------------------------- */

int sb_presence_seen(struct sb_presence *p, const char *topic, const void *payload, size_t len)
{
  size_t plen = strlen(p->prefix), ulen;
  const char *user;
  struct stale *st;

  if (!*p->prefix || len == 0 || strncmp(topic, p->prefix, plen) != 0 || topic[plen] != '/')
    return 0;
  user = topic + plen + 1;
  ulen = strlen(user);
  if (!sb_topic_valid_level(user, ulen) ||
      !sb_presence_from_earlier_run(payload, len, p->instance, p->started) ||
      !(st = malloc(sizeof(*st) + ulen + 1)))
    return 0;
  memcpy(st->user, user, ulen + 1);
  pthread_mutex_lock(&p->lock);
  sb_list_push_back(&p->stale, &st->link);
  pthread_mutex_unlock(&p->lock);
  return 1;
}

/* Takes the oldest kept record off the list, or returns NULL. */
static struct stale *take_stale(struct sb_presence *p)
{
  struct sb_list *l;

  pthread_mutex_lock(&p->lock);
  if ((l = sb_list_first(&p->stale)))
    sb_list_remove(l);
  pthread_mutex_unlock(&p->lock);
  return l ? sb_list_entry(l, struct stale, link) : NULL;
}

void sb_presence_clear_stale(struct sb_presence *p)
{
  struct stale *st;

  while ((st = take_stale(p))) {
    if (!sb_hub_is_user_connected(p->hub, st->user))
      sb_presence_publish_user(p, st->user); /* no connections: clears it */
    free(st);
  }
}

/* ---- life ----------------------------------------------------------------- */

struct sb_presence *sb_presence_new(const char *prefix, const struct sb_hub *hub,
                                    struct timespec started, const struct sb_log *log,
                                    struct sb_metrics *metrics)
{
  struct sb_presence *p = calloc(1, sizeof(*p));

  if (!p || !(p->prefix = strdup(prefix))) {
    free(p);
    return NULL;
  }
  p->hub = hub;
  p->log = log;
  p->metrics = metrics;
  if (*prefix)
    snprintf(p->filter, sizeof(p->filter), "%s/+", prefix);
  sb_event_format_time(started, p->started);
  pthread_mutex_init(&p->lock, NULL);
  sb_list_init(&p->stale);
  return p;
}

int sb_presence_start(struct sb_presence *p, const char *instance, sb_presence_publish_fn publish,
                      void *ctx, struct sb_err *err)
{
  char name[sizeof(p->instance)];
  char *will = NULL;

  snprintf(name, sizeof(name), "%s", instance);
  if (*p->prefix && !(will = sb_presence_status(name, p->started, NULL))) {
    sb_err_set(err, "presence_prefix: cannot write the will of instance '%s' "
                    "(out of memory, or not UTF-8)", name);
    return SB_EINVAL;
  }
  memcpy(p->instance, name, sizeof(name));
  p->publish = publish;
  p->publish_ctx = ctx;
  free(p->will);
  p->will = will;
  return 0;
}

void sb_presence_free(struct sb_presence *p)
{
  struct stale *st;

  if (!p)
    return;
  while ((st = take_stale(p)))
    free(st);
  pthread_mutex_destroy(&p->lock);
  free(p->will);
  free(p->prefix);
  free(p);
}

const char *sb_presence_instance(const struct sb_presence *p)
{
  return p->instance;
}

const char *sb_presence_will(const struct sb_presence *p, const char **payload)
{
  *payload = p->will ? p->will : "";
  return *p->prefix ? p->prefix : NULL;
}

const char *sb_presence_filter(const struct sb_presence *p)
{
  return *p->filter ? p->filter : NULL;
}
