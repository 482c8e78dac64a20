#include "mqtt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mosquitto.h>

#include "err.h"

struct sb_mqtt {
  const struct sb_config *cfg;
  struct sb_bridge *b;
  const struct sb_log *log;
  struct mosquitto *mosq;
  int started;
};

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
  sb_bridge_set_upstream(m->b, 1);
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc)
{
  struct sb_mqtt *m = obj;

  (void)mosq;
  sb_bridge_set_upstream(m->b, 0);
  if (rc != 0)
    SB_LOG(m->log, SB_LOG_WARNING, "[MQTT] Lost the broker at %s:%d (%s); reconnecting",
           m->cfg->mqtt_host, m->cfg->mqtt_port, mosquitto_strerror(rc));
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg)
{
  struct sb_mqtt *m = obj;

  (void)mosq;
  sb_bridge_ingest(m->b, msg->topic, msg->payload, (size_t)msg->payloadlen);
}

static void on_log(struct mosquitto *mosq, void *obj, int level, const char *str)
{
  struct sb_mqtt *m = obj;

  (void)mosq;
  if (level & (MOSQ_LOG_ERR | MOSQ_LOG_WARNING))
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

int sb_mqtt_start(struct sb_mqtt *m, char *err)
{
  int rc = mosquitto_connect_async(m->mosq, m->cfg->mqtt_host, m->cfg->mqtt_port, 30);

  if (rc == MOSQ_ERR_INVAL) {
    snprintf(err, SB_CONFIG_ERR_SIZE, "mqtt_host: cannot connect to %s:%d: %s", m->cfg->mqtt_host,
             m->cfg->mqtt_port, mosquitto_strerror(rc));
    return SB_EIO;
  }
  if (rc != MOSQ_ERR_SUCCESS)
    SB_LOG(m->log, SB_LOG_WARNING, "[MQTT] Cannot reach %s:%d yet (%s); retrying",
           m->cfg->mqtt_host, m->cfg->mqtt_port, mosquitto_strerror(rc));
  if ((rc = mosquitto_loop_start(m->mosq)) != MOSQ_ERR_SUCCESS) {
    snprintf(err, SB_CONFIG_ERR_SIZE, "cannot start the MQTT thread: %s", mosquitto_strerror(rc));
    return SB_EIO;
  }
  m->started = 1;
  return 0;
}

void sb_mqtt_stop(struct sb_mqtt *m)
{
  if (!m || !m->started)
    return;
  mosquitto_disconnect(m->mosq);
  mosquitto_loop_stop(m->mosq, false);
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
