/* mosquitto_sse: the bridge as a Mosquitto 2.0 plugin (plugin API 5).
 *
 * The three entry points only: options go to the core's config, messages
 * (MOSQ_EVT_MESSAGE) to sb_server_ingest(), and log lines that the server's
 * own thread writes wait for the broker's thread (MOSQ_EVT_TICK), since only
 * that thread may call broker functions. Everything else is the core, as in
 * the daemon.
 *
 * Two edges of Mosquitto 2.0 are closed here. With per_listener_settings
 * true it never sends MOSQ_EVT_TICK (plugin__handle_tick leaves that case
 * as a FIXME) and hands a plugin only the messages of its own listener's
 * clients: the plugin reads the broker's configuration and refuses to
 * start, and until the first tick it accepts no publish (503), so nothing
 * is taken that could not be delivered. And the server's thread blocks the
 * signals the broker handles, as the daemon's threads do, so that they
 * reach the broker's thread. */
#include <dirent.h>
#include <ctype.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
  atomic_int ticking; /* the broker's thread has ticked: publishes get out */
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
  struct outgoing *o;

  /* only the tick delivers: before the first one, nothing is taken */
  if (!atomic_load(&p->ticking))
    return SB_ESTATE;
  if (!(o = malloc(sizeof(*o) + tlen + 1 + len)))
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
  struct plugin *p = userdata;

  (void)event;
  (void)event_data;
  if (!atomic_exchange(&p->ticking, 1))
    sb_server_set_upstream(p->bridge, 1); /* presence is published again */
  flush_outgoing(p, 1);
  flush_log(p);
  return MOSQ_ERR_SUCCESS;
}

/* Reads one mosquitto.conf file for per_listener_settings into *on (the
 * last line wins), and at depth 0 the files of include_dir (*.conf, in
 * mosquitto's order: sorted without regard to case). */
static void read_broker_conf(const char *path, int depth, int *on)
{
  char line[1024], *key, *value, *end;
  FILE *f = fopen(path, "re");

  if (!f)
    return;
  while (fgets(line, sizeof(line), f)) {
    for (key = line; isspace((unsigned char)*key); key++)
      ;
    if (!*key || *key == '#')
      continue;
    for (value = key; *value && !isspace((unsigned char)*value); value++)
      ;
    if (*value)
      *value++ = '\0';
    while (isspace((unsigned char)*value))
      value++;
    for (end = value + strlen(value); end > value && isspace((unsigned char)end[-1]); end--)
      ;
    *end = '\0';
    if (strcmp(key, "per_listener_settings") == 0) {
      *on = strcmp(value, "true") == 0;
    } else if (strcmp(key, "include_dir") == 0 && depth == 0) {
      struct dirent **names = NULL;
      int n = scandir(value, &names, NULL, NULL);
      char file[4096];

      for (int i = 1; i < n; i++) /* insertion sort, strcasecmp, as mosquitto */
        for (int j = i; j > 0 && strcasecmp(names[j - 1]->d_name, names[j]->d_name) > 0; j--) {
          struct dirent *t = names[j];
          names[j] = names[j - 1];
          names[j - 1] = t;
        }
      for (int i = 0; i < n; i++) {
        size_t len = strlen(names[i]->d_name);
        if (len > 5 && strcmp(names[i]->d_name + len - 5, ".conf") == 0 &&
            snprintf(file, sizeof(file), "%s/%s", value, names[i]->d_name) < (int)sizeof(file))
          read_broker_conf(file, 1, on);
        free(names[i]);
      }
      free(names);
    }
  }
  fclose(f);
}

/* Returns 1 if the broker runs with per_listener_settings true, which the
 * plugin API does not tell: the configuration file of its command line (-c
 * or --config-file, in /proc/self/cmdline) says so. 0 if it does not, or
 * cannot be read (the first tick then still guards the publishes). */
static int per_listener_settings(void)
{
  char args[16384];
  size_t n;
  int on = 0;
  FILE *f = fopen("/proc/self/cmdline", "re");

  if (!f)
    return 0;
  n = fread(args, 1, sizeof(args) - 1, f);
  fclose(f);
  args[n] = '\0';
  for (const char *a = args; a < args + n; a += strlen(a) + 1)
    if ((strcmp(a, "-c") == 0 || strcmp(a, "--config-file") == 0) && a + strlen(a) + 1 < args + n)
      read_broker_conf(a + strlen(a) + 1, 0, &on);
  return on;
}

/* Starts the server with the broker's signals blocked: its thread inherits
 * the mask, so SIGINT, SIGTERM, SIGHUP (reload) and SIGUSR1/2 are left to
 * the broker's thread. Returns like sb_server_start(). Broker's thread. */
static int start_server(struct plugin *p, struct sb_err *err)
{
  sigset_t block, old;
  int rc;

  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  sigaddset(&block, SIGHUP);
  sigaddset(&block, SIGUSR1);
  sigaddset(&block, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &block, &old);
  rc = sb_server_start(p->bridge, err);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return rc;
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
  if (per_listener_settings()) {
    sb_err_set(&err, "per_listener_settings true: Mosquitto 2.0 then sends plugins no tick, the "
                     "only moment the plugin may publish (POST /api/publish, presence), and hands "
                     "them only the messages of their own listener's clients; set it false");
    goto fail;
  }
  p->log.level = p->cfg.log_level;
  if (!(p->bridge = sb_server_new(&p->cfg, &p->log, &err)))
    goto fail;
  sb_server_set_mqtt(p->bridge, &(struct sb_mqtt_ops){publish, NULL, p});
  if (start_server(p, &err))
    goto fail;
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
