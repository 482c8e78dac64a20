#include "mqtt.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>

#include "err.h"

struct sb_mqtt {
  const struct sb_config *cfg;
  struct sb_server *b;
  const struct sb_log *log;
  struct mosquitto *mosq;
  pthread_t thread;
  int started;
  atomic_int stopping;
  atomic_int done;
  atomic_int connected;
  atomic_int was_up; /* subscribed during the current connection */
  int per_user;      /* subscribe_mode per_user: the server asks per user */
  int subscriptions; /* filters acknowledged (the socket's owner) */
  int presence_mid;  /* the look at our retained presence records (not counted) */
  int presence_unsub_mid;
  int wakefd;        /* eventfd: publishes, subscribes and stop wake the client's poll */
  int messages;      /* on_message calls in the current read (the socket's owner) */
  /* Who drives the socket once connected: the client thread, or the
   * server's loop (hand_over), which gives it back when the connection ends
   * (loop_rc says how) or when the loop itself ends (loop_released). */
  atomic_int owner;
  atomic_int loop_released;
  int loop_rc;
  int loop_gone;     /* the loop ended or refused the socket (client thread only) */
  /* the server's loop thread only, while it owns the socket */
  int loop_fd;
  unsigned loop_events;
  int write_due;     /* something was queued for the broker */
  int read_more;     /* the last batch stopped at READ_BATCH */
  long long next_misc;
  /* publishes at QoS 1 or 2 the broker has not acknowledged yet; libmosquitto
   * also calls on_publish for a QoS 0 publish once written, which counts
   * down as well (with mqtt_qos 0, stop may wait less than it should) */
  atomic_int unacked;
  char client_id[160];
  /* the brokers of mqtt_host, in order, and their "host:port" labels (for
   * the log, /healthz and /metrics; they live as long as the client) */
  struct sb_host *hosts;
  char (*labels)[SB_HOST_ENTRY_MAX];
  size_t nhosts;
  size_t current; /* the broker in use or being tried (client thread only) */
};

/* The server's loop drives the connected socket (below). */
static void on_ready(void *ctx, unsigned events);
static long long on_tick(void *ctx, long long now);
static void on_released(void *ctx);

#define BACKOFF_MIN_S 1
#define BACKOFF_MAX_S 30
/* A connection that lasted this long is followed by an attempt on the next
 * broker at once; a shorter one (refused credentials, a broker that drops
 * us) by the backoff, so that two clients never chase each other. */
#define STABLE_S 5
#define KEEPALIVE_S 30
/* How long a stop waits for the broker to acknowledge the last publishes. */
#define FLUSH_MS 2000
/* The most packets the client reads before it writes what they queued (the
 * PUBACKs among them) and looks at the rest of its work again. */
#define READ_BATCH 64
/* How often the loop gives libmosquitto's keepalive a look. */
#define MISC_MS 1000

enum { OWNER_THREAD, OWNER_LOOP };

/* " (mqtt_host entry i of n)" when there is more than one broker, else "". */
static const char *which(struct sb_mqtt *m)
{
  static _Thread_local char buf[48];

  if (m->nhosts < 2)
    return "";
  snprintf(buf, sizeof(buf), " (mqtt_host entry %zu of %zu)", m->current + 1, m->nhosts);
  return buf;
}

static void on_connect(struct mosquitto *mosq, void *obj, int rc)
{
  struct sb_mqtt *m = obj;
  const char *sub = sb_server_subscription(m->b);

  if (rc != 0) {
    SB_LOG(m->log, SB_LOG_WARNING, "[MQTT] Connection to %s refused: %s", m->labels[m->current],
           mosquitto_connack_string(rc));
    return;
  }
  sb_server_set_broker(m->b, m->labels[m->current]);
  m->subscriptions = 0;
  sb_server_set_subscriptions(m->b, 0);
  /* publishing works from now on; /healthz waits for the subscription */
  atomic_store(&m->connected, 1);
  /* the retained records of this instance's earlier runs: a crash may have
   * left some (sb_server_presence_seen clears them) */
  if (sb_server_presence_filter(m->b))
    mosquitto_subscribe(mosq, &m->presence_mid, sb_server_presence_filter(m->b), 1);
  if (m->per_user) {
    /* the server subscribes each user it holds as it learns it is up */
    SB_LOG(m->log, SB_LOG_NOTICE, "[MQTT] Connected to %s%s as %s, subscribing per user (QoS %d)",
           m->labels[m->current], which(m), m->client_id, m->cfg->mqtt_qos);
    /* a session that was once in wildcard mode would still get everything */
    mosquitto_unsubscribe(mosq, NULL, sub);
    atomic_store(&m->was_up, 1);
    sb_server_set_upstream(m->b, 1);
    return;
  }
  SB_LOG(m->log, SB_LOG_NOTICE, "[MQTT] Connected to %s%s as %s, subscribing %s (QoS %d)",
         m->labels[m->current], which(m), m->client_id, sub, m->cfg->mqtt_qos);
  rc = mosquitto_subscribe(mosq, NULL, sub, m->cfg->mqtt_qos);
  if (rc != MOSQ_ERR_SUCCESS)
    SB_LOG(m->log, SB_LOG_ERROR, "[MQTT] Cannot subscribe %s: %s", sub, mosquitto_strerror(rc));
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid, int qos_count,
                         const int *granted)
{
  struct sb_mqtt *m = obj;

  if (mid == m->presence_mid) {
    /* the retained records come right after the SUBACK, before the broker
     * reads the UNSUBSCRIBE; then no echo of our own records follows */
    mosquitto_unsubscribe(mosq, &m->presence_unsub_mid, sb_server_presence_filter(m->b));
    return;
  }
  if (qos_count < 1 || granted[0] > 2) {
    SB_LOG(m->log, SB_LOG_ERROR, "[MQTT] The broker refused a subscription (%s)",
           m->per_user ? "per user" : sb_server_subscription(m->b));
    return;
  }
  sb_server_set_subscriptions(m->b, ++m->subscriptions);
  if (m->per_user)
    return;
  atomic_store(&m->was_up, 1);
  sb_server_set_upstream(m->b, 1);
}

static void on_unsubscribe(struct mosquitto *mosq, void *obj, int mid)
{
  struct sb_mqtt *m = obj;

  (void)mosq;
  if (mid == m->presence_unsub_mid)
    return;
  if (m->subscriptions > 0)
    sb_server_set_subscriptions(m->b, --m->subscriptions);
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid)
{
  struct sb_mqtt *m = obj;

  (void)mosq;
  (void)mid;
  if (atomic_load(&m->unacked) > 0)
    atomic_fetch_sub(&m->unacked, 1);
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc)
{
  struct sb_mqtt *m = obj;

  (void)mosq;
  atomic_store(&m->connected, 0);
  sb_server_set_upstream(m->b, 0);
  sb_server_set_broker(m->b, NULL);
  m->subscriptions = 0;
  sb_server_set_subscriptions(m->b, 0);
  (void)rc; /* the client thread says why (run) */
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg)
{
  struct sb_mqtt *m = obj;

  const char *pf = sb_server_presence_filter(m->b);
  bool presence = false;

  (void)mosq;
  m->messages++;
  if (pf && mosquitto_topic_matches_sub(pf, msg->topic, &presence) == MOSQ_ERR_SUCCESS &&
      presence) {
    if (msg->retain)
      sb_server_presence_seen(m->b, msg->topic, msg->payload, (size_t)msg->payloadlen);
    return;
  }
  /* A retained copy is an old event handed out again on every subscribe:
   * it was relayed when it was published, so it is not relayed again. */
  if (msg->retain)
    return;
  sb_server_ingest(m->b, msg->topic, msg->payload, (size_t)msg->payloadlen);
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

/* Sets up the client under id: a persistent session (clean_session false),
 * so that the broker queues the events of the subscription while the bridge
 * is away (at mqtt_qos 1 or 2; at 0 they are not kept); the callbacks,
 * credentials, TLS and, with presence, the will (retained, QoS 1). */
static int configure(struct sb_mqtt *m, const char *id, struct sb_err *err)
{
  const struct sb_config *cfg = m->cfg;
  const char *will, *will_payload;
  int rc;

  snprintf(m->client_id, sizeof(m->client_id), "%s", id);
  if (!m->mosq ? !(m->mosq = mosquitto_new(id, false, m))
               : mosquitto_reinitialise(m->mosq, id, false, m) != MOSQ_ERR_SUCCESS) {
    sb_err_set(err, "mqtt_client_id: cannot create an MQTT client as '%.64s'", id);
    return SB_EINVAL;
  }
  /* The client's loop runs on a thread of ours (run, turn) and the server's loop
   * publishes and subscribes from another: without this, libmosquitto writes
   * a packet on the calling thread, interleaved with its own thread's writes. It also
   * carries the durability promise: libmosquitto 2.0.11 builds the PUBACK of
   * a QoS 1 message before it calls on_message, and only in threaded mode is
   * that PUBACK queued (written after on_message, and so after the journal)
   * rather than written at once. */
  mosquitto_threaded_set(m->mosq, true);
  mosquitto_connect_callback_set(m->mosq, on_connect);
  mosquitto_subscribe_callback_set(m->mosq, on_subscribe);
  mosquitto_unsubscribe_callback_set(m->mosq, on_unsubscribe);
  mosquitto_publish_callback_set(m->mosq, on_publish);
  mosquitto_disconnect_callback_set(m->mosq, on_disconnect);
  mosquitto_message_callback_set(m->mosq, on_message);
  mosquitto_log_callback_set(m->mosq, on_log);
  if (*cfg->mqtt_username &&
      (rc = mosquitto_username_pw_set(m->mosq, cfg->mqtt_username,
                                      *cfg->mqtt_password ? cfg->mqtt_password : NULL))) {
    sb_err_set(err, "mqtt_username: %s", mosquitto_strerror(rc));
    return SB_EINVAL;
  }
  if (*cfg->mqtt_cafile &&
      (rc = mosquitto_tls_set(m->mosq, cfg->mqtt_cafile, NULL,
                              *cfg->mqtt_certfile ? cfg->mqtt_certfile : NULL,
                              *cfg->mqtt_keyfile ? cfg->mqtt_keyfile : NULL, NULL))) {
    sb_err_set(err, "mqtt_cafile: cannot set up TLS: %s", mosquitto_strerror(rc));
    return SB_EINVAL;
  }
  if ((will = sb_server_will(m->b, &will_payload)) && *sb_server_instance(m->b) &&
      (rc = mosquitto_will_set(m->mosq, will, (int)strlen(will_payload), will_payload, 1, true))) {
    sb_err_set(err, "presence_prefix: cannot set the will: %s",
             mosquitto_strerror(rc));
    return SB_EINVAL;
  }
  return 0;
}

/* Reads mqtt_host into m->hosts and m->labels. Returns 0, or SB_EINVAL or
 * SB_ENOMEM with err. */
static int parse_hosts(struct sb_mqtt *m, struct sb_err *err)
{
  const char *list = m->cfg->mqtt_host;
  struct sb_host h;
  size_t n = 0;
  int rc;

  while ((rc = sb_config_next_host(&list, m->cfg->mqtt_port, &h, err)) == 1)
    n++;
  if (rc < 0)
    return rc;
  if (n == 0) {
    sb_err_set(err, "mqtt_host: must not be empty");
    return SB_EINVAL;
  }
  if (!(m->hosts = calloc(n, sizeof(*m->hosts))) || !(m->labels = calloc(n, sizeof(*m->labels)))) {
    sb_err_set(err, "out of memory");
    return SB_ENOMEM;
  }
  list = m->cfg->mqtt_host;
  for (m->nhosts = 0; m->nhosts < n; m->nhosts++) {
    sb_config_next_host(&list, m->cfg->mqtt_port, &m->hosts[m->nhosts], err);
    sb_config_host_label(&m->hosts[m->nhosts], m->labels[m->nhosts], sizeof(m->labels[0]));
  }
  return 0;
}

struct sb_mqtt *sb_mqtt_new(const struct sb_config *cfg, struct sb_server *b,
                            const struct sb_log *log, struct sb_err *err)
{
  struct sb_mqtt *m = calloc(1, sizeof(*m));

  if (!m) {
    sb_err_set(err, "out of memory");
    return NULL;
  }
  m->cfg = cfg;
  m->b = b;
  m->log = log;
  m->per_user = cfg->subscribe_mode == SB_SUBSCRIBE_PER_USER;
  if ((m->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
    sb_err_set(err, "cannot create the MQTT client's wake-up: %s", strerror(errno));
    free(m);
    return NULL;
  }
  if (parse_hosts(m, err))
    goto fail;
  sb_server_set_source(b, &(struct sb_server_source){on_ready, on_tick, on_released, m});
  mosquitto_lib_init();
  /* the final id may need the bound HTTP port: set again at start */
  if (configure(m, *cfg->mqtt_client_id ? cfg->mqtt_client_id : "mqtt-sse-bridge", err))
    goto fail;
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

/* Seconds of CLOCK_MONOTONIC. */
static double now_s(void)
{
  struct timespec t;

  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Why libmosquitto returned rc. */
static const char *reason(int rc)
{
  return rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc);
}

/* "" for no wait, else " in N s" (a buffer of the calling thread). */
static const char *in_s(int wait)
{
  static _Thread_local char buf[24];

  if (wait <= 0)
    return "";
  snprintf(buf, sizeof(buf), " in %d s", wait);
  return buf;
}

/* Chooses the broker after m->current and how long to wait before trying
 * it: nothing within a round of the list, *delay at the end of a round
 * (which then doubles, up to BACKOFF_MAX_S). Client thread. */
static int next_broker(struct sb_mqtt *m, size_t *round_start, int *delay)
{
  int wait = 0;

  m->current = (m->current + 1) % m->nhosts;
  if (m->current == *round_start) {
    wait = *delay;
    *delay = *delay * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : *delay * 2;
  }
  return wait;
}

/* Wakes the client's poll (turn): something was queued for the broker. Any
 * thread. */
static void wake(struct sb_mqtt *m)
{
  uint64_t one = 1;

  if (write(m->wakefd, &one, sizeof(one)) < 0) {
    /* the counter is full: the client is awake already */
  }
}

/* Reads what the broker sent, up to READ_BATCH packets; stops early at a
 * read that delivered no message (the socket may be drained: poll says).
 * m->read_more says whether it stopped at READ_BATCH instead.
 * libmosquitto, in threaded mode, queues the PUBACK of each message after
 * on_message has journaled it; they are all written after the batch.
 * Returns a libmosquitto code. The socket's owner. */
static int read_batch(struct sb_mqtt *m)
{
  int rc = MOSQ_ERR_SUCCESS;

  m->read_more = 1;
  for (int i = 0; i < READ_BATCH; i++) {
    m->messages = 0;
    rc = mosquitto_loop_read(m->mosq, 1);
    if (rc != MOSQ_ERR_SUCCESS || m->messages == 0) {
      m->read_more = 0;
      break;
    }
  }
  return rc;
}

/* One turn of the client's loop once the broker has accepted the connection
 * while the server's loop does not drive it (before the hand-over, after the
 * server's loop ended; mosquitto_loop does the connecting, TLS handshake
 * included): waits up to a
 * second for the socket or a wake-up, reads a batch, keeps the connection
 * alive and writes what is queued. Unlike mosquitto_loop, which reads one
 * packet per wake-up and waits again before it writes the PUBACK, a burst of
 * messages costs one poll and one write pass. Returns a libmosquitto code
 * (not MOSQ_ERR_SUCCESS: the connection is over). Client thread. */
static int turn(struct sb_mqtt *m)
{
  struct pollfd p[2] = {{mosquitto_socket(m->mosq), POLLIN, 0}, {m->wakefd, POLLIN, 0}};
  uint64_t n;
  int rc;

  if (p[0].fd < 0)
    return MOSQ_ERR_NO_CONN;
  if (mosquitto_want_write(m->mosq))
    p[0].events |= POLLOUT;
  if (poll(p, 2, 1000) < 0 && errno != EINTR)
    return MOSQ_ERR_ERRNO;
  if ((p[1].revents & POLLIN) && read(m->wakefd, &n, sizeof(n)) < 0) {
    /* taken by nobody else: EAGAIN cannot happen after POLLIN */
  }
  if (p[0].revents & (POLLIN | POLLERR | POLLHUP)) {
    /* the batch's events reach the server's loop with one wake-up */
    sb_server_ingest_hold(m->b);
    rc = read_batch(m);
    sb_server_ingest_release(m->b);
    if (rc != MOSQ_ERR_SUCCESS)
      return rc;
  }
  if ((rc = mosquitto_loop_misc(m->mosq)) != MOSQ_ERR_SUCCESS)
    return rc;
  if (mosquitto_want_write(m->mosq))
    return mosquitto_loop_write(m->mosq, 1);
  return MOSQ_ERR_SUCCESS;
}

/* ---- the connection on the server's loop ----------------------------------
 *
 * Once the broker has accepted the connection, the client thread hands the
 * socket to the server's loop (hand_over), which reads the messages, and so
 * journals and delivers their events, and writes the PUBACKs, all on its own
 * thread: a message costs no hop between threads and no wake-up of its own.
 * The loop gives the socket back when the connection ends (give_back); the
 * client thread then reconnects as before. Ownership moves through m->owner
 * only: the other thread does not touch the socket meanwhile. */

/* Loop thread: the connection ended on the loop (rc, or the socket was
 * closed: a DISCONNECT written, a keepalive missed): the client thread takes
 * over to reconnect. */
static void give_back(struct sb_mqtt *m, int rc)
{
  sb_server_source_unwatch(m->b, mosquitto_socket(m->mosq) == m->loop_fd);
  m->loop_rc = rc == MOSQ_ERR_SUCCESS ? MOSQ_ERR_NO_CONN : rc;
  atomic_store(&m->owner, OWNER_THREAD);
  wake(m);
}

/* Loop thread: writes what is queued for the broker and watches the socket
 * for writing while some of it waits. Returns a libmosquitto code. */
static int flush(struct sb_mqtt *m)
{
  unsigned ev;
  int rc = MOSQ_ERR_SUCCESS;

  m->write_due = 0;
  if (mosquitto_want_write(m->mosq))
    rc = mosquitto_loop_write(m->mosq, 1);
  if (rc != MOSQ_ERR_SUCCESS || mosquitto_socket(m->mosq) != m->loop_fd)
    return rc;
  ev = SB_SOURCE_IN | (mosquitto_want_write(m->mosq) ? SB_SOURCE_OUT : 0);
  if (ev != m->loop_events && sb_server_source_watch(m->b, m->loop_fd, ev) == 0)
    m->loop_events = ev;
  return rc;
}

/* Loop thread: the socket is ready. A batch is read (each event goes to the
 * hub as it is read); the PUBACKs it queued are written on the loop's next
 * turn (tick), after the events went out to their streams. */
static void on_ready(void *ctx, unsigned events)
{
  struct sb_mqtt *m = ctx;
  int rc = MOSQ_ERR_SUCCESS;

  if (atomic_load(&m->owner) != OWNER_LOOP)
    return;
  if (events & (SB_SOURCE_IN | SB_SOURCE_ERR)) {
    rc = read_batch(m);
    m->write_due = 1;
  }
  if (rc == MOSQ_ERR_SUCCESS && (events & SB_SOURCE_OUT || events == 0))
    rc = flush(m);
  if (rc != MOSQ_ERR_SUCCESS || mosquitto_socket(m->mosq) != m->loop_fd)
    give_back(m, rc);
}

/* Loop thread, each turn: reads on where a batch stopped at its cap, writes
 * what was queued (PUBACKs, publishes, subscriptions) and, every MISC_MS,
 * lets libmosquitto keep the connection alive and reads once whatever the
 * socket said: with TLS, messages already taken from the socket may wait
 * decrypted in OpenSSL's buffer, where epoll does not see them. */
static long long on_tick(void *ctx, long long now)
{
  struct sb_mqtt *m = ctx;
  int rc = MOSQ_ERR_SUCCESS;

  if (atomic_load(&m->owner) != OWNER_LOOP)
    return -1;
  if (m->read_more || now >= m->next_misc) {
    rc = read_batch(m);
    m->write_due = 1;
  }
  if (rc == MOSQ_ERR_SUCCESS && now >= m->next_misc) {
    m->next_misc = now + MISC_MS;
    rc = mosquitto_loop_misc(m->mosq);
  }
  if (rc == MOSQ_ERR_SUCCESS && m->write_due)
    rc = flush(m);
  if (rc != MOSQ_ERR_SUCCESS || mosquitto_socket(m->mosq) != m->loop_fd) {
    give_back(m, rc);
    return -1;
  }
  return m->read_more ? 0 : m->next_misc - now;
}

/* Loop thread: the server's loop ends with the socket in hand; the client
 * thread drives it from now on (the last presence records of a stop go out
 * that way). */
static void on_released(void *ctx)
{
  struct sb_mqtt *m = ctx;

  atomic_store(&m->loop_released, 1);
  atomic_store(&m->owner, OWNER_THREAD);
  wake(m);
}

/* Client thread: hands the connected socket to the server's loop. Returns 1
 * if the loop took it, 0 if the client thread keeps it (the loop has ended
 * or is ending: it never takes it again). */
static int hand_over(struct sb_mqtt *m)
{
  int fd = mosquitto_socket(m->mosq), rc;

  if (fd < 0)
    return 0;
  m->loop_fd = fd;
  m->write_due = 1;
  m->next_misc = 0;
  /* watched for writing too at first: what was queued before the loop owned
   * the socket is written at once (flush then watches for reading only) */
  m->loop_events = SB_SOURCE_IN | SB_SOURCE_OUT;
  atomic_store(&m->owner, OWNER_LOOP);
  if ((rc = sb_server_source_watch(m->b, fd, SB_SOURCE_IN | SB_SOURCE_OUT)) == 0)
    return 1;
  atomic_store(&m->owner, OWNER_THREAD);
  m->loop_gone = 1;
  if (rc != SB_ESTATE) /* not the loop ending: say why the thread keeps it */
    SB_LOG(m->log, SB_LOG_WARNING,
           "[MQTT] The server's loop cannot watch the broker connection (%s); "
           "the MQTT thread drives it", strerror(errno));
  return 0;
}

/* Client thread, while the loop owns the socket: waits up to a second for
 * it to give the socket back. Returns MOSQ_ERR_SUCCESS while the connection
 * lasts, else how it ended. A stop meanwhile asks the loop to write the
 * DISCONNECT (sb_mqtt_stop queued it). */
static int await_loop(struct sb_mqtt *m)
{
  struct pollfd p = {m->wakefd, POLLIN, 0};
  uint64_t n;

  if (atomic_load(&m->owner) == OWNER_LOOP && poll(&p, 1, 1000) > 0 &&
      read(m->wakefd, &n, sizeof(n)) < 0) {
    /* taken by nobody else: EAGAIN cannot happen after POLLIN */
  }
  if (atomic_load(&m->owner) == OWNER_LOOP)
    return MOSQ_ERR_SUCCESS;
  if (atomic_load(&m->loop_released)) {
    m->loop_gone = 1;
    return MOSQ_ERR_SUCCESS;
  }
  return m->loop_rc;
}

/* The client thread. It connects to the first broker of mqtt_host that
 * answers and runs libmosquitto's loop (mosquitto_loop until the broker
 * accepts the connection, then turn) until the connection ends; then it goes on with the next broker, the same client id and so the
 * same persistent session, wherever the broker (or cluster) keeps it. A
 * round of the list that finds no broker is followed by the backoff; a
 * connection that was up for STABLE_S or more by the next broker at once. */
static void *run(void *arg)
{
  struct sb_mqtt *m = arg;
  int delay = BACKOFF_MIN_S, wait, rc;
  size_t round_start = 0, lost;
  double since;

  m->current = 0;
  while (!atomic_load(&m->stopping)) {
    rc = mosquitto_connect(m->mosq, m->hosts[m->current].name, m->hosts[m->current].port,
                           KEEPALIVE_S);
    if (rc != MOSQ_ERR_SUCCESS) {
      size_t failed = m->current;
      const char *why = reason(rc);

      wait = next_broker(m, &round_start, &delay);
      SB_LOG(m->log, SB_LOG_WARNING, "[MQTT] Cannot reach %s (%s); trying %s%s", m->labels[failed],
             why, m->labels[m->current], in_s(wait));
      pause_s(m, wait);
      continue;
    }
    if (atomic_load(&m->stopping))
      break;
    atomic_store(&m->was_up, 0);
    since = now_s();
    do {
      if (atomic_load(&m->owner) == OWNER_LOOP)
        rc = await_loop(m);
      else if (!atomic_load(&m->connected))
        rc = mosquitto_loop(m->mosq, 1000, 1);
      else if ((rc = turn(m)) == MOSQ_ERR_SUCCESS && !m->loop_gone && !atomic_load(&m->stopping))
        hand_over(m);
    } while (rc == MOSQ_ERR_SUCCESS);
    sb_server_set_upstream(m->b, 0);
    sb_server_set_broker(m->b, NULL);
    if (atomic_load(&m->stopping))
      break;
    /* A connection that worked for a while: a new round starts at the next
     * broker at once, with the backoff from its start. */
    lost = m->current;
    if (atomic_load(&m->was_up) && now_s() - since >= STABLE_S) {
      delay = BACKOFF_MIN_S;
      m->current = (m->current + 1) % m->nhosts;
      round_start = m->current;
      wait = 0;
    } else {
      /* A short one (refused, a TLS failure, dropped at once) counts as a
       * failed attempt: the round and its backoff go on. */
      wait = next_broker(m, &round_start, &delay);
    }
    SB_LOG(m->log, SB_LOG_WARNING, "[MQTT] Lost the broker at %s (%s); trying %s%s",
           m->labels[lost], reason(rc), m->labels[m->current], in_s(wait));
    pause_s(m, wait);
  }
  atomic_store(&m->done, 1);
  return NULL;
}

/* Something was queued for the broker by the server's loop thread (or the
 * thread that stopped it): whoever drives the socket writes it, the loop on
 * its next turn, else the client thread, woken. */
static void queued(struct sb_mqtt *m)
{
  if (atomic_load(&m->owner) == OWNER_LOOP)
    m->write_due = 1;
  else
    wake(m);
}

/* The server's publisher (its loop thread): an event of POST /api/publish
 * at mqtt_qos, a retained presence record at QoS 1. Returns 0, SB_ESTATE
 * while the broker is away, or SB_EIO. */
static int publish(void *ctx, const char *topic, const void *payload, size_t len, unsigned flags)
{
  struct sb_mqtt *m = ctx;
  int retain = (flags & SB_PUBLISH_RETAIN) != 0, qos = retain ? 1 : m->cfg->mqtt_qos, rc;

  if (!atomic_load(&m->connected))
    return SB_ESTATE;
  if (qos > 0)
    atomic_fetch_add(&m->unacked, 1);
  rc = mosquitto_publish(m->mosq, NULL, topic, (int)len, payload, qos, retain);
  queued(m);
  if (rc != MOSQ_ERR_SUCCESS) {
    if (qos > 0)
      atomic_fetch_sub(&m->unacked, 1);
    SB_LOG(m->log, SB_LOG_WARNING, "[MQTT] Cannot publish on %s: %s", topic, mosquitto_strerror(rc));
    return SB_EIO;
  }
  return 0;
}

/* The server's per_user subscriptions (its loop thread), at mqtt_qos. While
 * the broker is away it does nothing: the server subscribes again once the
 * client is up. */
static int subscribe(void *ctx, const char *filter, int on)
{
  struct sb_mqtt *m = ctx;
  int rc;

  if (!atomic_load(&m->connected))
    return 0; /* the server subscribes again once connected */
  rc = on ? mosquitto_subscribe(m->mosq, NULL, filter, m->cfg->mqtt_qos)
          : mosquitto_unsubscribe(m->mosq, NULL, filter);
  queued(m);
  if (rc == MOSQ_ERR_NO_CONN)
    return 0;
  return rc == MOSQ_ERR_SUCCESS ? 0 : SB_EIO;
}

void sb_mqtt_ops(struct sb_mqtt *m, struct sb_mqtt_ops *ops)
{
  ops->publish = publish;
  ops->subscribe = m->per_user ? subscribe : NULL;
  ops->ctx = m;
}

int sb_mqtt_start(struct sb_mqtt *m, struct sb_err *err)
{
  char id[160];

  /* Stable across restarts, distinct between instances of one host: the
   * broker keeps the session (and what was published meanwhile) for it. */
  if (*m->cfg->mqtt_client_id) {
    snprintf(id, sizeof(id), "%s", m->cfg->mqtt_client_id);
  } else {
    snprintf(id, sizeof(id), "mqtt-sse-bridge-%s", sb_server_instance(m->b));
    for (char *c = id; *c; c++)
      if (*c == ':')
        *c = '-';
  }
  if (configure(m, id, err))
    return SB_EINVAL;
  if (pthread_create(&m->thread, NULL, run, m) != 0) {
    sb_err_set(err, "cannot start the MQTT thread: %s", strerror(errno));
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
  /* What the server said last (presence cleared, the instance offline) is
   * acknowledged first: libmosquitto closes the socket right after the
   * DISCONNECT, and a close with unread data (a reset) may throw away what
   * the broker has not read yet. */
  for (int i = 0; i < FLUSH_MS / 20 && atomic_load(&m->connected) && atomic_load(&m->unacked) > 0;
       i++)
    nanosleep(&slice, NULL);
  atomic_store(&m->stopping, 1);
  /* Ends the loop (run) once the DISCONNECT is written; repeated in case
   * the thread was between connecting and entering the loop. */
  while (!atomic_load(&m->done)) {
    mosquitto_disconnect(m->mosq);
    wake(m);
    sb_server_source_kick(m->b); /* the loop writes it, if it owns the socket */
    nanosleep(&slice, NULL);
  }
  pthread_join(m->thread, NULL);
  m->started = 0;
  sb_server_set_upstream(m->b, 0);
  sb_server_set_broker(m->b, NULL);
  SB_LOG(m->log, SB_LOG_NOTICE, "[MQTT] Disconnected from %s", m->labels[m->current]);
}

void sb_mqtt_free(struct sb_mqtt *m)
{
  if (!m)
    return;
  sb_mqtt_stop(m);
  mosquitto_destroy(m->mosq);
  mosquitto_lib_cleanup();
  free(m->hosts);
  free(m->labels);
  close(m->wakefd);
  free(m);
}
