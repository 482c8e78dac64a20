#include "mqtt.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>

#include "err.h"

struct sb_mqtt {
  const struct sb_config *cfg;
  struct sb_bridge *b;
  const struct sb_log *log;
  struct mosquitto *mosq;
  pthread_t thread;
  int started;
  atomic_int stopping;
  atomic_int done;
  atomic_int connected;
  atomic_int was_up; /* subscribed during the current connection */
};

#define BACKOFF_MIN_S 1
#define BACKOFF_MAX_S 30

static void on_connect(struct mosquitto *mosq, void *obj, int rc)
{
  struct sb_mqtt *m = obj;
  const char *sub = sb_bridge_subscription(m->b);

  if (rc != 0) {
    SB_LOG(m->log, SB_LOG_WARNING, "[MQTT] Connection to %s:%d refused: %s", m->cfg->mqtt_host,
           m->cfg->mqtt_port, mosquitto_connack_string(rc));
    return;
  }
  SB_LOG(m->log, SB_LOG_NOTICE, "[MQTT] Connected to %s:%d, subscribing %s (QoS %d)",
         m->cfg->mqtt_host, m->cfg->mqtt_port, sub, m->cfg->mqtt_qos);
  rc = mosquitto_subscribe(mosq, NULL, sub, m->cfg->mqtt_qos);
  if (rc != MOSQ_ERR_SUCCESS)
    SB_LOG(m->log, SB_LOG_ERROR, "[MQTT] Cannot subscribe %s: %s", sub, mosquitto_strerror(rc));
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid, int qos_count,
                         const int *granted)
{
  struct sb_mqtt *m = obj;

  (void)mosq;
  (void)mid;
  if (qos_count < 1 || granted[0] > 2) {
    SB_LOG(m->log, SB_LOG_ERROR, "[MQTT] The broker refused the subscription %s",
           sb_bridge_subscription(m->b));
    return;
  }
  atomic_store(&m->connected, 1);
  atomic_store(&m->was_up, 1);
  sb_bridge_set_upstream(m->b, 1);
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc)
{
  struct sb_mqtt *m = obj;

  (void)mosq;
  atomic_store(&m->connected, 0);
  sb_bridge_set_upstream(m->b, 0);
  if (rc != 0)
    SB_LOG(m->log, SB_LOG_WARNING, "[MQTT] Lost the broker at %s:%d (%s); reconnecting",
           m->cfg->mqtt_host, m->cfg->mqtt_port, mosquitto_strerror(rc));
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg)
{
  struct sb_mqtt *m = obj;

  (void)mosq;
  /* A retained copy is an old event handed out again on every subscribe:
   * it was relayed when it was published, so it is not relayed again. */
  if (msg->retain)
    return;
  sb_bridge_ingest(m->b, msg->topic, msg->payload, (size_t)msg->payloadlen);
}

static void on_log(struct mosquitto *mosq, void *obj, int level, const char *str)
{
  struct sb_mqtt *m = obj;

  (void)mosq;
  /* libmosquitto's errors say why a connection failed (a TLS certificate
   * that does not verify, for one). */
  if (level & MOSQ_LOG_ERR)
    SB_LOG(m->log, SB_LOG_WARNING, "[MQTT] %s", str);
  else if (level & MOSQ_LOG_WARNING)
    SB_LOG(m->log, SB_LOG_DEBUG, "[MQTT] %s", str);
}

struct sb_mqtt *sb_mqtt_new(const struct sb_config *cfg, struct sb_bridge *b,
                            const struct sb_log *log, char *err)
{
  struct sb_mqtt *m = calloc(1, sizeof(*m));
  char id[128], host[64];
  const char *client_id = cfg->mqtt_client_id;
  int persistent = *client_id != '\0', rc;

  if (!m) {
    snprintf(err, SB_CONFIG_ERR_SIZE, "out of memory");
    return NULL;
  }
  m->cfg = cfg;
  m->b = b;
  m->log = log;
  mosquitto_lib_init();
  if (!persistent) {
    if (gethostname(host, sizeof(host)) != 0)
      snprintf(host, sizeof(host), "host");
    host[sizeof(host) - 1] = '\0';
    snprintf(id, sizeof(id), "mqtt-sse-bridge-%.40s-%d", host, (int)getpid());
    client_id = id;
  }
  /* A configured client id gets a persistent session, so that the broker
   * keeps QoS 1 events for the bridge while it is away. */
  if (!(m->mosq = mosquitto_new(client_id, !persistent, m))) {
    snprintf(err, SB_CONFIG_ERR_SIZE, "mqtt_client_id: cannot create an MQTT client");
    goto fail;
  }
  mosquitto_connect_callback_set(m->mosq, on_connect);
  mosquitto_subscribe_callback_set(m->mosq, on_subscribe);
  mosquitto_disconnect_callback_set(m->mosq, on_disconnect);
  mosquitto_message_callback_set(m->mosq, on_message);
  mosquitto_log_callback_set(m->mosq, on_log);
  mosquitto_reconnect_delay_set(m->mosq, 1, 30, true);
  if (*cfg->mqtt_username &&
      (rc = mosquitto_username_pw_set(m->mosq, cfg->mqtt_username,
                                      *cfg->mqtt_password ? cfg->mqtt_password : NULL))) {
    snprintf(err, SB_CONFIG_ERR_SIZE, "mqtt_username: %s", mosquitto_strerror(rc));
    goto fail;
  }
  if (*cfg->mqtt_cafile &&
      (rc = mosquitto_tls_set(m->mosq, cfg->mqtt_cafile, NULL,
                              *cfg->mqtt_certfile ? cfg->mqtt_certfile : NULL,
                              *cfg->mqtt_keyfile ? cfg->mqtt_keyfile : NULL, NULL))) {
    snprintf(err, SB_CONFIG_ERR_SIZE, "mqtt_cafile: cannot set up TLS: %s", mosquitto_strerror(rc));
    goto fail;
  }
  return m;

fail:
  sb_mqtt_free(m);
  return NULL;
}

/* Sleeps s seconds, waking early when the client is stopping. */
static void pause_s(struct sb_mqtt *m, int s)
{
  struct timespec slice = {0, 100 * 1000 * 1000};
  for (int i = 0; i < s * 10 && !atomic_load(&m->stopping); i++)
    nanosleep(&slice, NULL);
}

/* The client thread. libmosquitto's loop reconnects by itself once it has
 * been connected; the first connection (a broker not up yet) and fatal
 * errors (refused credentials, TLS) are retried here, with the same backoff. */
static void *run(void *arg)
{
  struct sb_mqtt *m = arg;
  int delay = BACKOFF_MIN_S, rc;

  while (!atomic_load(&m->stopping)) {
    rc = mosquitto_connect(m->mosq, m->cfg->mqtt_host, m->cfg->mqtt_port, 30);
    if (rc != MOSQ_ERR_SUCCESS) {
      SB_LOG(m->log, SB_LOG_WARNING, "[MQTT] Cannot reach %s:%d (%s); retrying in %d s",
             m->cfg->mqtt_host, m->cfg->mqtt_port,
             rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc), delay);
      pause_s(m, delay);
      delay = delay * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : delay * 2;
      continue;
    }
    if (atomic_load(&m->stopping))
      break;
    atomic_store(&m->was_up, 0);
    rc = mosquitto_loop_forever(m->mosq, 1000, 1);
    sb_bridge_set_upstream(m->b, 0);
    /* The backoff starts again only after a connection that worked (a TLS
     * or credentials failure happens after the TCP connect). */
    if (atomic_load(&m->was_up))
      delay = BACKOFF_MIN_S;
    if (rc != MOSQ_ERR_SUCCESS && !atomic_load(&m->stopping)) {
      SB_LOG(m->log, SB_LOG_WARNING, "[MQTT] Connection to %s:%d ended (%s); retrying in %d s",
             m->cfg->mqtt_host, m->cfg->mqtt_port, mosquitto_strerror(rc), delay);
      pause_s(m, delay);
      delay = delay * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : delay * 2;
    }
  }
  atomic_store(&m->done, 1);
  return NULL;
}

int sb_mqtt_publish(void *ctx, const char *topic, const void *payload, size_t len)
{
  struct sb_mqtt *m = ctx;
  int rc;

  if (!atomic_load(&m->connected))
    return SB_ESTATE;
  rc = mosquitto_publish(m->mosq, NULL, topic, (int)len, payload, m->cfg->mqtt_qos, false);
  if (rc != MOSQ_ERR_SUCCESS) {
    SB_LOG(m->log, SB_LOG_WARNING, "[MQTT] Cannot publish: %s", mosquitto_strerror(rc));
    return SB_EIO;
  }
  return 0;
}

int sb_mqtt_start(struct sb_mqtt *m, char *err)
{
  if (pthread_create(&m->thread, NULL, run, m) != 0) {
    snprintf(err, SB_CONFIG_ERR_SIZE, "cannot start the MQTT thread: %s", strerror(errno));
    return SB_EIO;
  }
  m->started = 1;
  return 0;
}

void sb_mqtt_stop(struct sb_mqtt *m)
{
  struct timespec slice = {0, 20 * 1000 * 1000};

  if (!m || !m->started)
    return;
  atomic_store(&m->stopping, 1);
  /* Ends loop_forever; repeated in case the thread was between connecting
   * and entering the loop. */
  while (!atomic_load(&m->done)) {
    mosquitto_disconnect(m->mosq);
    nanosleep(&slice, NULL);
  }
  pthread_join(m->thread, NULL);
  m->started = 0;
  sb_bridge_set_upstream(m->b, 0);
  SB_LOG(m->log, SB_LOG_NOTICE, "[MQTT] Disconnected from %s:%d", m->cfg->mqtt_host,
         m->cfg->mqtt_port);
}

void sb_mqtt_free(struct sb_mqtt *m)
{
  if (!m)
    return;
  sb_mqtt_stop(m);
  mosquitto_destroy(m->mosq);
  mosquitto_lib_cleanup();
  free(m);
}
