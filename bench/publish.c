/* publish: events out, over MQTT (a minimal MQTT 3.1.1 client on our epoll:
 * CONNECT, pipelined PUBLISH, PUBACK counted, PINGREQ) or over HTTP POST
 * (keep-alive connections, one request in flight on each). */
#include "lg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define HTTP_BUF 4096
/* MQTT: QoS 1 publishes not yet acknowledged at most (message ids are 16
 * bits). Not libmosquitto: it walks its whole list of outgoing messages on
 * every publish and every PUBACK (message__release_to_inflight), so each
 * event cost more the further the broker's acknowledgements lagged, and at
 * 80,000 events/s the tool itself collapsed (a core, 4,000 deliveries/s). */
#define MQTT_MAX_UNACKED 60000
/* What is written at once; more waits for the socket (EPOLLOUT). */
#define MQTT_OUT_FLUSH (64 * 1024)
#define MQTT_KEEPALIVE_S 60
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
  int fd, armed_out, qos, ticks;
  uint16_t mid;
  const char *topic_tmpl;
  char *out; /* packets not yet written: out[outoff..outlen) */
  size_t outlen, outoff, outcap;
  unsigned char in[4096];
  size_t inlen;
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

/* Appends n bytes to the output; -1 if out of memory. */
static int out_put(struct lg_pub *p, const void *b, size_t n)
{
  if (p->outlen + n > p->outcap) {
    size_t cap = p->outcap ? p->outcap : 64 * 1024;
    char *o;
    if (p->outoff) { /* what was written leaves room first */
      memmove(p->out, p->out + p->outoff, p->outlen - p->outoff);
      p->outlen -= p->outoff;
      p->outoff = 0;
    }
    while (p->outlen + n > cap)
      cap *= 2;
    if (cap > p->outcap) {
      if (!(o = realloc(p->out, cap)))
        return -1;
      p->out = o;
      p->outcap = cap;
    }
  }
  memcpy(p->out + p->outlen, b, n);
  p->outlen += n;
  return 0;
}

/* Appends a packet's fixed header: type and flags, remaining length. */
static int out_head(struct lg_pub *p, unsigned char first, size_t remaining)
{
  unsigned char h[5];
  size_t n = 0;

  h[n++] = first;
  do {
    unsigned char b = (unsigned char)(remaining % 128);
    remaining /= 128;
    h[n++] = (unsigned char)(b | (remaining ? 0x80 : 0));
  } while (remaining && n < sizeof(h));
  return out_put(p, h, n);
}

static int out_u16(struct lg_pub *p, size_t v)
{
  unsigned char b[2] = {(unsigned char)(v >> 8), (unsigned char)v};
  return out_put(p, b, 2);
}

static void mqtt_arm(struct lg_pub *p, int want)
{
  struct epoll_event ev;

  if (want == p->armed_out || p->fd < 0)
    return;
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLIN | (want ? EPOLLOUT : 0);
  ev.data.u64 = LG_TAG(LG_K_MQTT, 0);
  epoll_ctl(p->epfd, EPOLL_CTL_MOD, p->fd, &ev);
  p->armed_out = want;
}

static void mqtt_lost(struct lg_pub *p)
{
  if (p->fd >= 0) {
    epoll_ctl(p->epfd, EPOLL_CTL_DEL, p->fd, NULL);
    close(p->fd);
  }
  p->fd = -1;
  p->errors++;
}

/* Writes what the socket takes of the output. */
static void mqtt_flush(struct lg_pub *p)
{
  while (p->fd >= 0 && p->outoff < p->outlen) {
    ssize_t r = send(p->fd, p->out + p->outoff, p->outlen - p->outoff,
                     MSG_NOSIGNAL | MSG_DONTWAIT);
    if (r > 0) {
      p->outoff += (size_t)r;
      continue;
    }
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      mqtt_arm(p, 1);
      return;
    }
    mqtt_lost(p);
    return;
  }
  p->outlen = p->outoff = 0;
  mqtt_arm(p, 0);
}

/* Reads and counts what the broker sent: PUBACKs, PINGRESPs. */
static void mqtt_read(struct lg_pub *p)
{
  for (;;) {
    ssize_t r = read(p->fd, p->in + p->inlen, sizeof(p->in) - p->inlen);
    size_t at = 0;
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
      mqtt_lost(p);
      return;
    }
    if (r < 0)
      return;
    p->inlen += (size_t)r;
    for (;;) { /* whole packets: type, remaining length (1 to 4 bytes), body */
      size_t len = 0, mult = 1, i = at + 1;
      int whole = 0;
      while (i < p->inlen && i < at + 5) {
        unsigned char b = p->in[i++];
        len += (b & 0x7Fu) * mult;
        mult *= 128;
        if (!(b & 0x80)) {
          whole = 1;
          break;
        }
      }
      if (!whole || i + len > p->inlen)
        break;
      if ((p->in[at] >> 4) == 4 && p->unacked) /* PUBACK */
        p->unacked--;
      at = i + len;
    }
    if (at) {
      memmove(p->in, p->in + at, p->inlen - at);
      p->inlen -= at;
    }
    if (p->inlen == sizeof(p->in)) { /* a packet we do not read: too large */
      mqtt_lost(p);
      return;
    }
  }
}

struct lg_pub *lg_pub_mqtt_new(int epfd, const char *host, int port, int qos,
                               const char *topic_tmpl, char *err)
{
  struct lg_pub *p = calloc(1, sizeof(*p));
  struct sockaddr_in dst;
  struct epoll_event ev;
  struct timeval tv = {5, 0};
  unsigned char ack[4];
  char id[32];
  int one = 1;
  size_t got = 0;

  if (!p) {
    snprintf(err, 256, "out of memory");
    return NULL;
  }
  p->kind = PUB_MQTT;
  p->fd = -1;
  p->epfd = epfd;
  p->qos = qos;
  p->topic_tmpl = topic_tmpl;
  memset(&dst, 0, sizeof(dst));
  dst.sin_family = AF_INET;
  dst.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &dst.sin_addr) != 1) {
    snprintf(err, 256, "MQTT: %s is not an IPv4 address", host);
    goto fail;
  }
  if ((p->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
      connect(p->fd, (struct sockaddr *)&dst, sizeof(dst)) != 0) {
    snprintf(err, 256, "MQTT connect to %s:%d: %s", host, port, strerror(errno));
    goto fail;
  }
  /* events go out when they are due, not when the previous is acknowledged */
  setsockopt(p->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  setsockopt(p->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  snprintf(id, sizeof(id), "loadgen-%d", (int)getpid());
  if (out_head(p, 0x10, 10 + 2 + strlen(id)) || out_put(p, "\0\4MQTT\4\2", 8) ||
      out_u16(p, MQTT_KEEPALIVE_S) || out_u16(p, strlen(id)) || out_put(p, id, strlen(id)) ||
      send(p->fd, p->out, p->outlen, MSG_NOSIGNAL) != (ssize_t)p->outlen) {
    snprintf(err, 256, "MQTT CONNECT to %s:%d failed", host, port);
    goto fail;
  }
  p->outlen = 0;
  while (got < sizeof(ack)) { /* CONNACK: 0x20 2 flags rc */
    ssize_t r = read(p->fd, ack + got, sizeof(ack) - got);
    if (r <= 0)
      break;
    got += (size_t)r;
  }
  if (got < sizeof(ack) || ack[0] != 0x20 || ack[3] != 0) {
    snprintf(err, 256, "MQTT broker %s:%d did not accept the connection", host, port);
    goto fail;
  }
  fcntl(p->fd, F_SETFL, fcntl(p->fd, F_GETFL) | O_NONBLOCK);
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

/* Queues one PUBLISH of body on topic; written by the next flush (or now,
 * when much is waiting). */
static int mqtt_publish(struct lg_pub *p, const char *topic, const char *body, size_t len)
{
  size_t tlen = strlen(topic);

  if (p->fd < 0)
    return -1;
  if (out_head(p, (unsigned char)(0x30 | (p->qos << 1)), 2 + tlen + (p->qos ? 2 : 0) + len) ||
      out_u16(p, tlen) || out_put(p, topic, tlen))
    return -1;
  if (p->qos) {
    p->mid = (uint16_t)(p->mid % 65535 + 1);
    if (out_u16(p, p->mid))
      return -1;
    p->unacked++;
  }
  if (out_put(p, body, len))
    return -1;
  if (p->outlen - p->outoff >= MQTT_OUT_FLUSH)
    mqtt_flush(p);
  return 0;
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
  p->fd = -1;
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
    return p->fd >= 0 && p->unacked < MQTT_MAX_UNACKED;
  for (int i = 0; i < p->nconns; i++)
    if (p->c[i].fd >= 0 && !p->c[i].busy)
      return 1;
  return 0;
}

int lg_pub_send(struct lg_pub *p, int user, const char *body, size_t len)
{
  char where[512];

  if (p->kind == PUB_MQTT) {
    if (!expand_user(where, sizeof(where), p->topic_tmpl, user) ||
        mqtt_publish(p, where, body, len) != 0) {
      p->errors++;
      return -1;
    }
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
  if (p->fd >= 0 && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
    mqtt_read(p);
  if (p->fd >= 0 && (events & EPOLLOUT))
    mqtt_flush(p);
}

void lg_pub_flush(struct lg_pub *p)
{
  if (p->kind == PUB_MQTT)
    mqtt_flush(p);
}

void lg_pub_tick(struct lg_pub *p)
{
  if (p->kind == PUB_MQTT && p->fd >= 0 && ++p->ticks % (MQTT_KEEPALIVE_S / 3) == 0) {
    static const unsigned char ping[2] = {0xC0, 0};
    out_put(p, ping, sizeof(ping));
    mqtt_flush(p);
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
  if (p->kind == PUB_MQTT && p->fd >= 0) {
    static const unsigned char disconnect[2] = {0xE0, 0};
    send(p->fd, disconnect, sizeof(disconnect), MSG_NOSIGNAL | MSG_DONTWAIT);
    close(p->fd);
  }
  free(p->out);
  for (int i = 0; p->c && i < p->nconns; i++)
    if (p->c[i].fd >= 0)
      close(p->c[i].fd);
  free(p->c);
  free(p);
}
