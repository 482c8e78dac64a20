/* mosquitto_sse: the bridge as a Mosquitto 2.0 plugin (plugin API 5).
 *
 * The three entry points only: options go to the core's config, messages
 * (MOSQ_EVT_MESSAGE) to sb_server_ingest(), and log lines that the server's
 * own thread writes wait for the broker's thread (MOSQ_EVT_TICK), since only
 * that thread may call broker functions. Everything else is the core, as in
 * the daemon. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#include "server.h"
#include "config.h"
#include "err.h"
#include "log.h"

#define SB_EXPORT __attribute__((visibility("default")))

struct log_line {
  struct log_line *next;
  int level;
  char text[];
};

/* An event from POST /api/publish, or a presence record, waiting for the
 * broker's thread. */
struct outgoing {
  struct outgoing *next;
  size_t len;
  int retain;
  char *payload; /* after topic, in the same allocation */
  char topic[];
};

struct plugin {
  mosquitto_plugin_id_t *id;
  struct sb_config cfg;
  struct sb_log log;
  struct sb_server *bridge;
  pthread_t broker_thread;
  pthread_mutex_t lock; /* guards what waits for the broker's thread */
  struct log_line *head, *tail;
  struct outgoing *out_head, *out_tail;
};

static int broker_level(int level)
{
  switch (level) {
  case SB_LOG_DEBUG: return MOSQ_LOG_DEBUG;
  case SB_LOG_INFO: return MOSQ_LOG_INFO;
  case SB_LOG_NOTICE: return MOSQ_LOG_NOTICE;
  case SB_LOG_WARNING: return MOSQ_LOG_WARNING;
  default: return MOSQ_LOG_ERR;
  }
}

static void flush_log(struct plugin *p)
{
  struct log_line *l, *next;

  pthread_mutex_lock(&p->lock);
  l = p->head;
  p->head = p->tail = NULL;
  pthread_mutex_unlock(&p->lock);
  for (; l; l = next) {
    next = l->next;
    mosquitto_log_printf(broker_level(l->level), "%s", l->text);
    free(l);
  }
}

static void log_line(void *ctx, int level, const char *text)
{
  struct plugin *p = ctx;
  size_t n = strlen(text);
  struct log_line *l;

  if (pthread_equal(pthread_self(), p->broker_thread)) {
    flush_log(p);
    mosquitto_log_printf(broker_level(level), "%s", text);
    return;
  }
  if (!(l = malloc(sizeof(*l) + n + 1)))
    return;
  l->next = NULL;
  l->level = level;
  memcpy(l->text, text, n + 1);
  pthread_mutex_lock(&p->lock);
  if (p->tail)
    p->tail->next = l;
  else
    p->head = l;
  p->tail = l;
  pthread_mutex_unlock(&p->lock);
}

/* The server's publisher (loop thread). The broker's own subscribers get the
 * message when the broker's thread next ticks; SSE gets an event now, since a
 * plugin's own publish does not raise MOSQ_EVT_MESSAGE (so it is not
 * relayed twice). */
static int publish(void *ctx, const char *topic, const void *payload, size_t len, unsigned flags)
{
  struct plugin *p = ctx;
  size_t tlen = strlen(topic);
  struct outgoing *o = malloc(sizeof(*o) + tlen + 1 + len);

  if (!o)
    return SB_ENOMEM;
  if (flags & SB_PUBLISH_EVENT)
    sb_server_ingest(p->bridge, topic, payload, len);
  o->next = NULL;
  o->len = len;
  o->retain = (flags & SB_PUBLISH_RETAIN) != 0;
  memcpy(o->topic, topic, tlen + 1);
  o->payload = o->topic + tlen + 1;
  memcpy(o->payload, payload, len);
  pthread_mutex_lock(&p->lock);
  if (p->out_tail)
    p->out_tail->next = o;
  else
    p->out_head = o;
  p->out_tail = o;
  pthread_mutex_unlock(&p->lock);
  return 0;
}

/* Broker's thread: publishes (send) or drops what publish() queued: events
 * of POST /api/publish and presence records, all at QoS 1. */
static void flush_outgoing(struct plugin *p, int send)
{
  struct outgoing *o, *next;

  pthread_mutex_lock(&p->lock);
  o = p->out_head;
  p->out_head = p->out_tail = NULL;
  pthread_mutex_unlock(&p->lock);
  for (; o; o = next) {
    next = o->next;
    if (send)
      mosquitto_broker_publish_copy(NULL, o->topic, (int)o->len, o->payload, 1, o->retain, NULL);
    free(o);
  }
}

static int on_message(int event, void *event_data, void *userdata)
{
  struct mosquitto_evt_message *ed = event_data;
  struct plugin *p = userdata;
  bool match = false;

  (void)event;
  /* Only what the daemon would subscribe (<prefix>/+/+); the message itself
   * is left as it is for the broker's other subscribers. */
  if (mosquitto_topic_matches_sub(sb_server_subscription(p->bridge), ed->topic, &match) ==
          MOSQ_ERR_SUCCESS &&
      match)
    sb_server_ingest(p->bridge, ed->topic, ed->payload, ed->payloadlen);
  return MOSQ_ERR_SUCCESS;
}

static int on_tick(int event, void *event_data, void *userdata)
{
  (void)event;
  (void)event_data;
  flush_outgoing(userdata, 1);
  flush_log(userdata);
  return MOSQ_ERR_SUCCESS;
}

static void plugin_free(struct plugin *p)
{
  if (!p)
    return;
  sb_server_free(p->bridge);
  flush_outgoing(p, 0);
  flush_log(p);
  sb_config_free(&p->cfg);
  pthread_mutex_destroy(&p->lock);
  free(p);
}

/* Returns 5, the plugin API this file speaks, if the broker offers it, else
 * -1 (the broker then refuses the plugin). Broker's thread. */
SB_EXPORT int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
  for (int i = 0; i < supported_version_count; i++)
    if (supported_versions[i] == 5)
      return 5;
  return -1;
}

/* Reads the plugin_opt_ options into the core's config, starts the server and
 * registers the message and tick callbacks. Returns MOSQ_ERR_SUCCESS with
 * *userdata owning the plugin, or MOSQ_ERR_NOMEM/MOSQ_ERR_INVAL after logging
 * why (nothing is left running). Broker's thread. */
SB_EXPORT int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
                                    struct mosquitto_opt *options, int option_count)
{
  struct plugin *p = calloc(1, sizeof(*p));
  struct sb_err err = {""};

  if (!p)
    return MOSQ_ERR_NOMEM;
  p->id = identifier;
  p->broker_thread = pthread_self();
  pthread_mutex_init(&p->lock, NULL);
  p->log = (struct sb_log){log_line, p, SB_LOG_INFO};
  if (sb_config_init(&p->cfg)) {
    free(p);
    return MOSQ_ERR_NOMEM;
  }
  for (int i = 0; i < option_count; i++)
    if (sb_config_set(&p->cfg, SB_FORM_PLUGIN, options[i].key, options[i].value, &err))
      goto fail;
  if (sb_config_finish(&p->cfg, &err))
    goto fail;
  p->log.level = p->cfg.log_level;
  if (!(p->bridge = sb_server_new(&p->cfg, &p->log, &err)))
    goto fail;
  sb_server_set_mqtt(p->bridge, &(struct sb_mqtt_ops){publish, NULL, p});
  if (sb_server_start(p->bridge, &err))
    goto fail;
  sb_server_set_upstream(p->bridge, 1);
  if (mosquitto_callback_register(identifier, MOSQ_EVT_MESSAGE, on_message, NULL, p) ||
      mosquitto_callback_register(identifier, MOSQ_EVT_TICK, on_tick, NULL, p)) {
    sb_err_set(&err, "cannot register the plugin's callbacks");
    mosquitto_callback_unregister(identifier, MOSQ_EVT_MESSAGE, on_message, NULL);
    goto fail;
  }
  *userdata = p;
  return MOSQ_ERR_SUCCESS;

fail:
  mosquitto_log_printf(MOSQ_LOG_ERR, "mosquitto_sse: %s", err.msg);
  plugin_free(p);
  return MOSQ_ERR_INVAL;
}

/* Unregisters the callbacks, stops the server (every stream ends cleanly),
 * publishes what the streams' end said and frees the plugin that userdata
 * owns. Returns MOSQ_ERR_SUCCESS. Broker's thread. */
SB_EXPORT int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options,
                                       int option_count)
{
  struct plugin *p = userdata;

  (void)options;
  (void)option_count;
  if (!p)
    return MOSQ_ERR_SUCCESS;
  mosquitto_callback_unregister(p->id, MOSQ_EVT_MESSAGE, on_message, NULL);
  mosquitto_callback_unregister(p->id, MOSQ_EVT_TICK, on_tick, NULL);
  sb_server_set_upstream(p->bridge, 0);
  sb_server_stop(p->bridge);
  /* what the streams' end said (presence cleared, the instance offline) */
  flush_outgoing(p, 1);
  plugin_free(p);
  return MOSQ_ERR_SUCCESS;
}
