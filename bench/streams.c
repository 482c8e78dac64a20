/* streams: many SSE connections on one epoll set.
 *
 * Each stream binds a loopback source address before it connects (so the
 * ephemeral ports of one source do not run out), sends one GET, reads the
 * response headers, then decodes the body (chunked or not) into SSE lines.
 * A `data:` line carrying "bq":<seq> and "bt":<ns> is one delivery. */
#include "lg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

enum { CH_SIZE, CH_DATA, CH_CRLF };

int64_t lg_now_ns(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

int lg_streams_init(struct lg_streams *ss, int epfd, int users, int devices,
                    const struct sockaddr_in *dst, const struct in_addr *src, int nsrc,
                    const char *path_tmpl, const char *host_header, lg_deliver_fn deliver,
                    void *ctx)
{
  memset(ss, 0, offsetof(struct lg_streams, rbuf));
  ss->n = (size_t)users * (size_t)devices;
  if (!(ss->s = calloc(ss->n, sizeof(*ss->s))))
    return -1;
  for (size_t i = 0; i < ss->n; i++) {
    ss->s[i].fd = -1;
    ss->s[i].user = (int)(i / (size_t)devices);
    ss->s[i].hi = -1;
  }
  ss->users = users;
  ss->devices = devices;
  ss->epfd = epfd;
  ss->dst = *dst;
  ss->nsrc = nsrc > LG_MAX_SOURCES ? LG_MAX_SOURCES : nsrc;
  memcpy(ss->src, src, (size_t)ss->nsrc * sizeof(*src));
  ss->path_tmpl = path_tmpl;
  ss->host_header = host_header;
  ss->deliver = deliver;
  ss->ctx = ctx;
  return 0;
}

/* Writes tmpl with {u} and {d} replaced into out. Returns the length, or 0
 * if it does not fit. */
static size_t expand(char *out, size_t cap, const char *tmpl, int user, int device)
{
  size_t n = 0;
  for (const char *p = tmpl; *p;) {
    int w;
    if (!strncmp(p, "{u}", 3) || !strncmp(p, "{d}", 3)) {
      w = snprintf(out + n, cap - n, "%d", p[1] == 'u' ? user : device);
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

static void finish(struct lg_streams *ss, struct lg_stream *st)
{
  if (st->state == LG_ST_CONNECTING || st->state == LG_ST_HEADERS) {
    ss->connecting--;
    ss->failed++;
  } else if (st->state == LG_ST_OPEN) {
    ss->open--;
    ss->lost++;
  }
  if (st->fd >= 0) {
    epoll_ctl(ss->epfd, EPOLL_CTL_DEL, st->fd, NULL);
    close(st->fd);
  }
  st->fd = -1;
  st->state = LG_ST_DONE;
  free(st->line);
  st->line = NULL;
}

static void send_request(struct lg_streams *ss, size_t idx)
{
  struct lg_stream *st = &ss->s[idx];
  char path[512], req[1024];
  struct epoll_event ev;
  int n;

  if (!expand(path, sizeof(path), ss->path_tmpl, st->user, (int)(idx % (size_t)ss->devices))) {
    finish(ss, st);
    return;
  }
  n = snprintf(req, sizeof(req),
               "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n"
               "Cache-Control: no-cache\r\n\r\n",
               path, ss->host_header);
  /* A fresh loopback socket takes a request this small at once. */
  if (n <= 0 || (size_t)n >= sizeof(req) || send(st->fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
    finish(ss, st);
    return;
  }
  st->state = LG_ST_HEADERS;
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLIN | EPOLLRDHUP;
  ev.data.u64 = LG_TAG(LG_K_STREAM, idx);
  epoll_ctl(ss->epfd, EPOLL_CTL_MOD, st->fd, &ev);
}

static int open_one(struct lg_streams *ss, size_t idx)
{
  struct lg_stream *st = &ss->s[idx];
  struct sockaddr_in src;
  struct epoll_event ev;
  int one = 1, fd;

  memset(&src, 0, sizeof(src));
  src.sin_family = AF_INET;
  src.sin_addr = ss->src[idx % (size_t)ss->nsrc];
  if (!(st->line = malloc(LG_LINE_CAP)) ||
      (fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0) {
    free(st->line);
    st->line = NULL;
    st->state = LG_ST_DONE;
    ss->failed++;
    return -1;
  }
  st->fd = fd;
  st->state = LG_ST_CONNECTING;
  ss->connecting++;
  setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
  if (bind(fd, (struct sockaddr *)&src, sizeof(src)) != 0 ||
      (connect(fd, (struct sockaddr *)&ss->dst, sizeof(ss->dst)) != 0 && errno != EINPROGRESS)) {
    if (ss->failed < 3)
      fprintf(stderr, "loadgen: connect from %s: %s\n", inet_ntoa(src.sin_addr), strerror(errno));
    st->fd = -1;
    close(fd);
    finish(ss, st);
    return -1;
  }
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLOUT;
  ev.data.u64 = LG_TAG(LG_K_STREAM, idx);
  if (epoll_ctl(ss->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
    finish(ss, st);
    return -1;
  }
  return 0;
}

void lg_streams_pump(struct lg_streams *ss, size_t max_connecting)
{
  while (ss->next < ss->n && ss->connecting < max_connecting)
    open_one(ss, ss->next++);
}

/* ---- parsing -------------------------------------------------------------- */

/* Reads the non-negative integer after key in [p, p+n), or -1. */
static int64_t number_after(const char *p, size_t n, const char *key, size_t klen)
{
  const char *k = memmem(p, n, key, klen), *end = p + n;
  int64_t v = 0;

  if (!k)
    return -1;
  k += klen;
  if (k >= end || *k < '0' || *k > '9')
    return -1;
  for (; k < end && *k >= '0' && *k <= '9'; k++)
    v = v * 10 + (*k - '0');
  return v;
}

static void header_line(struct lg_streams *ss, size_t idx, const char *p, size_t n)
{
  struct lg_stream *st = &ss->s[idx];

  if (n && p[n - 1] == '\r')
    n--;
  if (n == 0) {
    if (!st->status_ok) {
      finish(ss, st);
      return;
    }
    st->state = LG_ST_OPEN;
    ss->connecting--;
    ss->open++;
    return;
  }
  if (n > 9 && !strncmp(p, "HTTP/1.", 7)) {
    st->status_ok = n >= 12 && !memcmp(p + 8, " 200", 4);
    return;
  }
  if (n > 18 && !strncasecmp(p, "transfer-encoding:", 18) && memmem(p, n, "chunked", 7))
    st->chunked = 1;
}

static void sse_line(struct lg_streams *ss, size_t idx, const char *p, size_t n, int64_t now)
{
  int64_t seq, sent;

  if (n < 6 || memcmp(p, "data:", 5) != 0)
    return;
  if ((seq = number_after(p, n, "\"bq\":", 5)) < 0 || (sent = number_after(p, n, "\"bt\":", 5)) < 0)
    return;
  ss->deliver(ss->ctx, idx, seq, sent, now);
}

/* Splits bytes into lines; hands each to the header or SSE handler. */
static void lines(struct lg_streams *ss, size_t idx, const char *p, size_t n, int64_t now,
                  int headers)
{
  struct lg_stream *st = &ss->s[idx];

  while (n) {
    const char *nl = memchr(p, '\n', n);
    size_t k = nl ? (size_t)(nl - p) : n;

    if (!nl) {
      if (st->len + k > LG_LINE_CAP)
        st->overlong = 1;
      else {
        memcpy(st->line + st->len, p, k);
        st->len = (uint16_t)(st->len + k);
      }
      return;
    }
    if (st->overlong) {
      st->overlong = 0;
      st->len = 0;
    } else if (st->len) {
      if (st->len + k <= LG_LINE_CAP) {
        memcpy(st->line + st->len, p, k);
        if (headers)
          header_line(ss, idx, st->line, st->len + k);
        else
          sse_line(ss, idx, st->line, st->len + k, now);
      }
      st->len = 0;
    } else if (headers)
      header_line(ss, idx, p, k);
    else
      sse_line(ss, idx, p, k, now);
    p += k + 1;
    n -= k + 1;
    if (headers && st->state != LG_ST_HEADERS)
      return; /* the body starts here: feed() goes on with it */
  }
}

static int hexval(char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Decodes the body: chunked framing, if any, then SSE lines. */
static void body(struct lg_streams *ss, size_t idx, const char *p, size_t n, int64_t now)
{
  struct lg_stream *st = &ss->s[idx];

  if (!st->chunked) {
    lines(ss, idx, p, n, now, 0);
    return;
  }
  while (n && st->state == LG_ST_OPEN) {
    if (st->cstate == CH_SIZE) {
      char c = *p++;
      n--;
      if (c == '\n') {
        if (st->chunk_left == 0) {
          finish(ss, st); /* the last chunk: the stream ended */
          return;
        }
        st->cstate = CH_DATA;
        st->hex_done = 0;
      } else if (!st->hex_done) {
        int v = hexval(c);
        if (v < 0)
          st->hex_done = 1;
        else
          st->chunk_left = st->chunk_left * 16 + (uint32_t)v;
      }
    } else if (st->cstate == CH_DATA) {
      size_t take = n < st->chunk_left ? n : st->chunk_left;
      lines(ss, idx, p, take, now, 0);
      p += take;
      n -= take;
      st->chunk_left -= (uint32_t)take;
      if (st->chunk_left == 0)
        st->cstate = CH_CRLF;
    } else {
      char c = *p++;
      n--;
      if (c == '\n')
        st->cstate = CH_SIZE;
    }
  }
}

/* Feeds what was read: headers first, then the body. */
static void feed(struct lg_streams *ss, size_t idx, const char *p, size_t n, int64_t now)
{
  struct lg_stream *st = &ss->s[idx];

  while (n && st->state == LG_ST_HEADERS) {
    const char *nl = memchr(p, '\n', n);
    size_t k = nl ? (size_t)(nl - p) + 1 : n;
    lines(ss, idx, p, k, now, 1);
    p += k;
    n -= k;
  }
  if (n && st->state == LG_ST_OPEN)
    body(ss, idx, p, n, now);
}

void lg_streams_on_event(struct lg_streams *ss, size_t idx, uint32_t events)
{
  struct lg_stream *st = &ss->s[idx];
  ssize_t r;

  if (idx >= ss->n || st->fd < 0)
    return;
  if (st->state == LG_ST_CONNECTING) {
    int err = 0;
    socklen_t len = sizeof(err);
    if ((events & (EPOLLERR | EPOLLHUP)) ||
        getsockopt(st->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err) {
      finish(ss, st);
      return;
    }
    if (events & EPOLLOUT)
      send_request(ss, idx);
    return;
  }
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    r = read(st->fd, ss->rbuf, sizeof(ss->rbuf));
    if (r > 0) {
      feed(ss, idx, ss->rbuf, (size_t)r, lg_now_ns());
      return;
    }
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
      return;
    finish(ss, st);
  }
}

void lg_streams_free(struct lg_streams *ss)
{
  for (size_t i = 0; ss->s && i < ss->n; i++) {
    if (ss->s[i].fd >= 0)
      close(ss->s[i].fd);
    free(ss->s[i].line);
  }
  free(ss->s);
  ss->s = NULL;
  ss->n = 0;
}
