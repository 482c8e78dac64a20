/* publish: events out, over MQTT (libmosquitto driven from our epoll, no
 * thread of its own) or over HTTP POST (keep-alive connections, one request in
 * flight on each). */
#include "lg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <mosquitto.h>

#define HTTP_BUF 4096

enum { PUB_MQTT, PUB_HTTP };

struct httpconn {
  int fd;
  int busy;          /* a request is waiting for its answer */
  size_t len;        /* bytes of the answer read so far */
  size_t outlen, outoff;
  char in[HTTP_BUF];
  char out[HTTP_BUF]; /* what send() did not take at once */
};

struct lg_pub {
  int kind;
  int epfd;
  size_t errors, unacked;
  /* MQTT */
  struct mosquitto *m;
  int fd, armed_out, qos, connected;
  const char *topic_tmpl;
  /* HTTP */
  struct sockaddr_in dst;
  const char *path_tmpl;
  char host[64];
  int nconns;
  struct httpconn *c;
};

static size_t expand_user(char *out, size_t cap, const char *tmpl, int user)
{
  size_t n = 0;
  for (const char *p = tmpl; *p;) {
    int w;
    if (!strncmp(p, "{u}", 3)) {
      w = snprintf(out + n, cap - n, "%d", user);
      p += 3;
    } else {
      w = 1;
      if (n + 1 < cap)
        out[n] = *p;
      p++;
    }
    if (w < 0 || n + (size_t)w >= cap)
      return 0;
    n += (size_t)w;
  }
  out[n] = '\0';
  return n;
}

/* ---- MQTT ----------------------------------------------------------------- */

static void on_connect(struct mosquitto *m, void *ctx, int rc)
{
  struct lg_pub *p = ctx;
  (void)m;
  p->connected = rc == 0 ? 1 : -1;
}

static void on_publish(struct mosquitto *m, void *ctx, int mid)
{
  struct lg_pub *p = ctx;
  (void)m;
  (void)mid;
  if (p->unacked)
    p->unacked--;
}

static void mqtt_arm(struct lg_pub *p)
{
  int want = mosquitto_want_write(p->m) ? 1 : 0;
  struct epoll_event ev;

  if (want == p->armed_out)
    return;
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLIN | (want ? EPOLLOUT : 0);
  ev.data.u64 = LG_TAG(LG_K_MQTT, 0);
  epoll_ctl(p->epfd, EPOLL_CTL_MOD, p->fd, &ev);
  p->armed_out = want;
}

struct lg_pub *lg_pub_mqtt_new(int epfd, const char *host, int port, int qos,
                               const char *topic_tmpl, char *err)
{
  struct lg_pub *p = calloc(1, sizeof(*p));
  struct epoll_event ev;
  int rc;

  if (!p) {
    snprintf(err, 256, "out of memory");
    return NULL;
  }
  p->kind = PUB_MQTT;
  p->epfd = epfd;
  p->qos = qos;
  p->topic_tmpl = topic_tmpl;
  mosquitto_lib_init();
  if (!(p->m = mosquitto_new(NULL, true, p))) {
    snprintf(err, 256, "mosquitto_new failed");
    goto fail;
  }
  mosquitto_connect_callback_set(p->m, on_connect);
  mosquitto_publish_callback_set(p->m, on_publish);
  mosquitto_max_inflight_messages_set(p->m, 0);
  if ((rc = mosquitto_connect(p->m, host, port, 60)) != MOSQ_ERR_SUCCESS) {
    snprintf(err, 256, "MQTT connect to %s:%d: %s", host, port, mosquitto_strerror(rc));
    goto fail;
  }
  for (int i = 0; i < 50 && p->connected == 0; i++)
    mosquitto_loop(p->m, 100, 1);
  if (p->connected != 1) {
    snprintf(err, 256, "MQTT broker %s:%d did not accept the connection", host, port);
    goto fail;
  }
  p->fd = mosquitto_socket(p->m);
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLIN;
  ev.data.u64 = LG_TAG(LG_K_MQTT, 0);
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, p->fd, &ev) != 0) {
    snprintf(err, 256, "epoll: %s", strerror(errno));
    goto fail;
  }
  return p;

fail:
  lg_pub_free(p);
  return NULL;
}

/* ---- HTTP ----------------------------------------------------------------- */

static int http_connect(struct lg_pub *p, int i)
{
  struct httpconn *c = &p->c[i];
  struct epoll_event ev;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

  if (fd < 0)
    return -1;
  if (connect(fd, (struct sockaddr *)&p->dst, sizeof(p->dst)) != 0) {
    close(fd);
    return -1;
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLIN;
  ev.data.u64 = LG_TAG(LG_K_HTTPPUB, i);
  epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &ev);
  c->fd = fd;
  c->busy = 0;
  c->len = c->outlen = c->outoff = 0;
  return 0;
}

static void http_drop(struct lg_pub *p, int i)
{
  struct httpconn *c = &p->c[i];
  if (c->fd >= 0) {
    epoll_ctl(p->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
  }
  if (c->busy) {
    p->errors++;
    if (p->unacked)
      p->unacked--;
  }
  c->fd = -1;
  c->busy = 0;
}

struct lg_pub *lg_pub_http_new(int epfd, const char *host, int port, const char *path_tmpl,
                               int nconns, char *err)
{
  struct lg_pub *p = calloc(1, sizeof(*p));

  if (!p || !(p->c = calloc((size_t)nconns, sizeof(*p->c)))) {
    free(p);
    snprintf(err, 256, "out of memory");
    return NULL;
  }
  p->kind = PUB_HTTP;
  p->epfd = epfd;
  p->path_tmpl = path_tmpl;
  p->nconns = nconns;
  snprintf(p->host, sizeof(p->host), "%s:%d", host, port);
  p->dst.sin_family = AF_INET;
  p->dst.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &p->dst.sin_addr) != 1) {
    snprintf(err, 256, "%s: not an IPv4 address", host);
    goto fail;
  }
  for (int i = 0; i < nconns; i++) {
    p->c[i].fd = -1;
    if (http_connect(p, i) != 0) {
      snprintf(err, 256, "HTTP connect to %s: %s", p->host, strerror(errno));
      goto fail;
    }
  }
  return p;

fail:
  lg_pub_free(p);
  return NULL;
}

/* Takes the answers that are complete off c's buffer. */
static void http_answers(struct lg_pub *p, int i)
{
  struct httpconn *c = &p->c[i];

  for (;;) {
    char *end = memmem(c->in, c->len, "\r\n\r\n", 4), *cl;
    size_t head, total, clen = 0;
    int status;

    if (!end)
      return;
    head = (size_t)(end - c->in) + 4;
    c->in[head - 1] = '\0'; /* was '\n': lets strcasestr stop here */
    if ((cl = strcasestr(c->in, "\ncontent-length:")))
      clen = strtoul(cl + 16, NULL, 10);
    total = head + clen;
    if (total > sizeof(c->in)) {
      http_drop(p, i);
      return;
    }
    if (c->len < total) {
      c->in[head - 1] = '\n';
      return;
    }
    status = c->len > 12 ? atoi(c->in + 9) : 0;
    if (status < 200 || status > 299)
      p->errors++;
    memmove(c->in, c->in + total, c->len - total);
    c->len -= total;
    if (c->busy) {
      c->busy = 0;
      if (p->unacked)
        p->unacked--;
    }
  }
}

static void http_event(struct lg_pub *p, int i, uint32_t events)
{
  struct httpconn *c = &p->c[i];
  ssize_t r;

  if (c->fd < 0)
    return;
  if ((events & EPOLLOUT) && c->outlen > c->outoff) {
    r = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL);
    if (r > 0)
      c->outoff += (size_t)r;
    if (c->outoff == c->outlen) {
      struct epoll_event ev = {.events = EPOLLIN, .data.u64 = LG_TAG(LG_K_HTTPPUB, i)};
      epoll_ctl(p->epfd, EPOLL_CTL_MOD, c->fd, &ev);
      c->outlen = c->outoff = 0;
    }
  }
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    r = read(c->fd, c->in + c->len, sizeof(c->in) - c->len);
    if (r > 0) {
      c->len += (size_t)r;
      http_answers(p, i);
      return;
    }
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
      return;
    /* The server closed a keep-alive connection: open another. */
    http_drop(p, i);
    if (http_connect(p, i) != 0)
      p->errors++;
  }
}

/* ---- either --------------------------------------------------------------- */

int lg_pub_ready(const struct lg_pub *p)
{
  if (p->kind == PUB_MQTT)
    return 1;
  for (int i = 0; i < p->nconns; i++)
    if (p->c[i].fd >= 0 && !p->c[i].busy)
      return 1;
  return 0;
}

int lg_pub_send(struct lg_pub *p, int user, const char *body, size_t len)
{
  char where[512];

  if (p->kind == PUB_MQTT) {
    int rc;
    if (!expand_user(where, sizeof(where), p->topic_tmpl, user))
      return -1;
    rc = mosquitto_publish(p->m, NULL, where, (int)len, body, p->qos, false);
    if (rc != MOSQ_ERR_SUCCESS) {
      p->errors++;
      return -1;
    }
    p->unacked++;
    mqtt_arm(p);
    return 0;
  }
  for (int i = 0; i < p->nconns; i++) {
    struct httpconn *c = &p->c[i];
    char head[700];
    int n;
    ssize_t r;

    if (c->fd < 0 || c->busy)
      continue;
    if (!expand_user(where, sizeof(where), p->path_tmpl, user))
      return -1;
    n = snprintf(head, sizeof(head),
                 "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                 "Content-Length: %zu\r\n\r\n",
                 where, p->host, len);
    if (n <= 0 || (size_t)n + len > sizeof(c->out))
      return -1;
    memcpy(c->out, head, (size_t)n);
    memcpy(c->out + n, body, len);
    c->outlen = (size_t)n + len;
    c->outoff = 0;
    r = send(c->fd, c->out, c->outlen, MSG_NOSIGNAL);
    if (r < 0 && errno != EAGAIN) {
      http_drop(p, i);
      http_connect(p, i);
      p->errors++;
      return -1;
    }
    c->outoff = r > 0 ? (size_t)r : 0;
    if (c->outoff < c->outlen) {
      struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u64 = LG_TAG(LG_K_HTTPPUB, i)};
      epoll_ctl(p->epfd, EPOLL_CTL_MOD, c->fd, &ev);
    } else
      c->outlen = c->outoff = 0;
    c->busy = 1;
    p->unacked++;
    return 0;
  }
  return -1;
}

void lg_pub_on_event(struct lg_pub *p, size_t idx, uint32_t events)
{
  if (p->kind == PUB_HTTP) {
    if (idx < (size_t)p->nconns)
      http_event(p, (int)idx, events);
    return;
  }
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
    mosquitto_loop_read(p->m, 1);
  if (events & EPOLLOUT)
    mosquitto_loop_write(p->m, 1);
  mqtt_arm(p);
}

void lg_pub_tick(struct lg_pub *p)
{
  if (p->kind == PUB_MQTT) {
    mosquitto_loop_misc(p->m);
    mqtt_arm(p);
  }
}

size_t lg_pub_errors(const struct lg_pub *p)
{
  return p->errors;
}

size_t lg_pub_unacked(const struct lg_pub *p)
{
  return p->unacked;
}

void lg_pub_free(struct lg_pub *p)
{
  if (!p)
    return;
  if (p->m) {
    if (p->connected == 1) {
      mosquitto_disconnect(p->m);
      mosquitto_loop_write(p->m, 1);
    }
    mosquitto_destroy(p->m);
    mosquitto_lib_cleanup();
  }
  for (int i = 0; p->c && i < p->nconns; i++)
    if (p->c[i].fd >= 0)
      close(p->c[i].fd);
  free(p->c);
  free(p);
}
