#include "linger.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "list.h"

/* Bytes thrown away per epoll event at most, so that one fast sender does
 * not hold the loop (the level-triggered event comes back). */
#define READ_PER_EVENT (4u * 1024 * 1024)

/* A duplicate of a socket that libmicrohttpd has closed, read until its
 * client closes too or its time is up. */
struct lingering {
  struct sb_list link; /* on sb__linger.active, oldest first */
  int fd;
  long long deadline; /* monotonic ms */
  size_t bytes;       /* thrown away so far */
};

struct sb__linger {
  int epfd;
  const struct sb_log *log;
  unsigned char *marked; /* by fd: to linger when libmicrohttpd closes it */
  size_t nmarked;
  struct sb_list active; /* struct lingering, by deadline (all linger as long) */
  size_t count;
};

struct sb__linger *sb__linger_new(int epfd, const struct sb_log *log)
{
  struct sb__linger *l = calloc(1, sizeof(*l));

  if (!l)
    return NULL;
  l->epfd = epfd;
  l->log = log;
  sb_list_init(&l->active);
  return l;
}

void sb__linger_mark(struct sb__linger *l, int fd)
{
  if (fd < 0)
    return;
  if ((size_t)fd >= l->nmarked) {
    size_t n = (size_t)fd * 2 + 64;
    unsigned char *m = realloc(l->marked, n);
    if (!m)
      return; /* closed at once, as without a lingering close */
    memset(m + l->nmarked, 0, n - l->nmarked);
    l->marked = m;
    l->nmarked = n;
  }
  l->marked[fd] = 1;
}

static void finish(struct sb__linger *l, struct lingering *g)
{
  epoll_ctl(l->epfd, EPOLL_CTL_DEL, g->fd, NULL);
  close(g->fd);
  sb_list_remove(&g->link);
  l->count--;
  free(g);
}

void sb__linger_closing(struct sb__linger *l, int fd)
{
  struct lingering *g;
  struct epoll_event ev;

  if (fd < 0 || (size_t)fd >= l->nmarked || !l->marked[fd])
    return;
  l->marked[fd] = 0;
  if (l->count >= SB__LINGER_MAX || !(g = calloc(1, sizeof(*g))))
    return;
  /* libmicrohttpd has written the answer; its close of fd leaves the socket
   * open for the duplicate (it does not shut it down: MHD_USE_TURBO) */
  if ((g->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) {
    free(g);
    return;
  }
  shutdown(g->fd, SHUT_WR);
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLIN | EPOLLRDHUP;
  ev.data.u64 = SB__LINGER_TAG | (uint64_t)g->fd;
  if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, g->fd, &ev) != 0) {
    close(g->fd);
    free(g);
    return;
  }
  g->deadline = sb_clock_mono_ms() + SB__LINGER_MS;
  sb_list_push_back(&l->active, &g->link);
  l->count++;
  SB_LOG(l->log, SB_LOG_DEBUG, "[HTTP] Lingering close of a connection answered before its "
         "body was read");
}

void sb__linger_on_socket(struct sb__linger *l, uint64_t data, uint32_t events)
{
  int fd = (int)(data & ~SB__LINGER_TAG);
  struct sb_list *pos;
  struct lingering *g = NULL;
  size_t round = 0;
  ssize_t n;

  (void)events;
  sb_list_foreach(pos, &l->active) {
    if (sb_list_entry(pos, struct lingering, link)->fd == fd) {
      g = sb_list_entry(pos, struct lingering, link);
      break;
    }
  }
  if (!g)
    return;
  for (;;) {
    /* MSG_TRUNC: TCP throws the bytes away without copying them */
    n = recv(fd, NULL, 1024 * 1024, MSG_TRUNC | MSG_DONTWAIT);
    if (n > 0) {
      g->bytes += (size_t)n;
      round += (size_t)n;
      if (g->bytes >= SB__LINGER_BYTES) {
        finish(l, g);
        return;
      }
      if (round >= READ_PER_EVENT)
        return;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return;
    if (n < 0 && errno == EINTR)
      continue;
    finish(l, g); /* the client closed (or failed): done */
    return;
  }
}

void sb__linger_expire(struct sb__linger *l, long long now)
{
  struct sb_list *first;
  struct lingering *g;

  while ((first = sb_list_first(&l->active))) {
    g = sb_list_entry(first, struct lingering, link);
    if (g->deadline > now)
      return;
    finish(l, g);
  }
}

long long sb__linger_next(const struct sb__linger *l, long long now)
{
  struct sb_list *first = sb_list_first(&l->active);
  long long at;

  if (!first)
    return -1;
  at = sb_list_entry(first, struct lingering, link)->deadline;
  return at > now ? at - now : 0;
}

void sb__linger_free(struct sb__linger *l)
{
  struct sb_list *first;

  if (!l)
    return;
  while ((first = sb_list_first(&l->active)))
    finish(l, sb_list_entry(first, struct lingering, link));
  free(l->marked);
  free(l);
}
