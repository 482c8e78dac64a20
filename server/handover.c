#include "handover.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "err.h"
#include "list.h"
#include "stream.h"

/* The block of a stream's response: libmicrohttpd sends only the first chunk
 * (the retry line and what of a replay fits), the loop writes the rest. */
#ifndef STREAM_BLOCK
#define STREAM_BLOCK 256
#endif

/* The phases of a stream's life, and the only moves between them (move()):
 *
 *   NEW -----> SERVED ---> DETACHED ---> ENDING ---> GONE   (the loop frees it)
 *    |          ^ |  |
 *    |          | v  +---> TAKEN ---> RETURNED ---> GONE    (libmicrohttpd frees it)
 *    +-------> PAUSED
 *
 * and, from every phase that libmicrohttpd holds (all but DETACHED and
 * ENDING), GONE when it frees the stream: it ended, or libmicrohttpd stopped.
 * The loop writes the stream in TAKEN, DETACHED and ENDING (it is then on the
 * direct list); the connection is suspended in PAUSED and TAKEN. Over HTTPS
 * (keep) a stream moves only between SERVED and PAUSED before GONE. */
enum phase {
  PHASE_NEW,      /* libmicrohttpd sends the headers; it has not asked for the body */
  PHASE_SERVED,   /* libmicrohttpd writes the body: the first chunk, or all of it
                     when the socket is not watched or over HTTPS */
  PHASE_PAUSED,   /* libmicrohttpd's, suspended until the hub has something */
  PHASE_TAKEN,    /* the loop writes to libmicrohttpd's socket, the connection
                     suspended (no descriptor to spare for a duplicate) */
  PHASE_DETACHED, /* the loop writes to its duplicate; libmicrohttpd has let go */
  PHASE_ENDING,   /* detached and closing: the last chunk is queued */
  PHASE_RETURNED, /* resumed once more, for libmicrohttpd to end it */
  PHASE_GONE      /* freed */
};

#define BIT(p) (1u << (p))
#define DIRECT (BIT(PHASE_TAKEN) | BIT(PHASE_DETACHED) | BIT(PHASE_ENDING))
#define SUSPENDED (BIT(PHASE_PAUSED) | BIT(PHASE_TAKEN))

static const unsigned moves[] = {
  [PHASE_NEW] = BIT(PHASE_SERVED) | BIT(PHASE_PAUSED) | BIT(PHASE_GONE),
  [PHASE_SERVED] = BIT(PHASE_PAUSED) | BIT(PHASE_TAKEN) | BIT(PHASE_DETACHED) | BIT(PHASE_GONE),
  [PHASE_PAUSED] = BIT(PHASE_SERVED) | BIT(PHASE_GONE),
  [PHASE_TAKEN] = BIT(PHASE_RETURNED) | BIT(PHASE_GONE),
  [PHASE_DETACHED] = BIT(PHASE_ENDING) | BIT(PHASE_GONE),
  [PHASE_ENDING] = BIT(PHASE_GONE),
  [PHASE_RETURNED] = BIT(PHASE_GONE),
  [PHASE_GONE] = 0,
};

static const char *const phase_names[] = {
  "new", "served", "paused", "taken", "detached", "ending", "returned", "gone",
};

struct stream;

/* A socket the loop's epoll watches, indexed by fd: for a hang-up
 * (EPOLLRDHUP), and for EPOLLOUT while a stream the loop writes finds it
 * full. The watch lives from the stream's start until libmicrohttpd closes
 * the socket (or the loop its duplicate), which may outlive the stream. */
struct watch {
  struct stream *s; /* NULL once the stream has ended */
  unsigned char registered;
  unsigned char out; /* watching for EPOLLOUT too */
};

struct sb__handover {
  struct sb_hub *hub;
  const struct sb_log *log;
  int epfd;
  struct watch *watches;
  size_t nwatches;
  int keep;              /* HTTPS: libmicrohttpd writes every stream */
  struct sb_list direct; /* streams the loop writes (struct stream.link) */
  struct sb_list dirty;  /* of those, the ones to write now (struct stream.dirty) */
};

/* One SSE response: the hub's connection and the libmicrohttpd connection
 * that carries it, in one phase of its life. */
struct stream {
  struct sb__handover *ho;
  struct MHD_Connection *mc; /* NULL once detached */
  struct sb_conn *conn;
  enum phase phase;
  int fd;   /* the watched socket, or -1 */
  int sock; /* the socket written to, or -1 */
  struct sb_list link;  /* on ho->direct while the loop writes the stream */
  struct sb_list dirty; /* on ho->dirty */
  struct sb__stream_out out;
};

/* ---- the watched sockets -------------------------------------------------- */

static void unwatch(struct sb__handover *ho, int fd)
{
  struct watch *w = &ho->watches[fd];

  if (w->registered)
    epoll_ctl(ho->epfd, EPOLL_CTL_DEL, fd, NULL);
  if (w->s)
    w->s->fd = -1;
  w->s = NULL;
  w->registered = 0;
  w->out = 0;
}

/* Watches the socket fd of s for a hang-up. Returns 0, or -1: without a
 * watch the stream still works, and a dead client is found by the next
 * heartbeat. */
static int watch_fd(struct sb__handover *ho, struct stream *s, int fd)
{
  struct epoll_event ev;

  if ((size_t)fd >= ho->nwatches) {
    size_t n = (size_t)fd * 2 + 64;
    struct watch *w = realloc(ho->watches, n * sizeof(*w));
    if (!w)
      return -1;
    memset(w + ho->nwatches, 0, (n - ho->nwatches) * sizeof(*w));
    ho->watches = w;
    ho->nwatches = n;
  }
  if (ho->watches[fd].registered)
    unwatch(ho, fd);
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLRDHUP;
  ev.data.u64 = (uint64_t)fd;
  if (epoll_ctl(ho->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
    return -1;
  ho->watches[fd].s = s;
  ho->watches[fd].registered = 1;
  s->fd = fd;
  s->sock = fd;
  return 0;
}

/* Watches the socket of s for writability too (out = 1), or for a hang-up
 * only. */
static void arm_out(struct stream *s, int out)
{
  struct watch *w;
  struct epoll_event ev;

  if (s->fd < 0 || (w = &s->ho->watches[s->fd])->out == out)
    return;
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLRDHUP | (out ? EPOLLOUT : 0);
  ev.data.u64 = (uint64_t)s->fd;
  if (epoll_ctl(s->ho->epfd, EPOLL_CTL_MOD, s->fd, &ev) == 0)
    w->out = (unsigned char)out;
}

/* ---- the phases ----------------------------------------------------------- */

/* Moves s to phase to, which must be one of the moves of its phase (else the
 * streams' bookkeeping is broken: abort rather than free a stream twice).
 * Keeps what follows from the phase: the direct list (and the dirty list,
 * left with it) and libmicrohttpd's suspension of the connection. */
static void move(struct stream *s, enum phase to)
{
  enum phase from = s->phase;

  if (!(moves[from] & BIT(to))) {
    SB_LOG(s->ho->log, SB_LOG_ERROR, "[HTTP] A stream cannot move from %s to %s",
           phase_names[from], phase_names[to]);
    abort();
  }
  s->phase = to;
  if ((DIRECT & BIT(from)) && !(DIRECT & BIT(to))) {
    arm_out(s, 0);
    sb_list_remove(&s->dirty);
    sb_list_remove(&s->link);
  } else if (!(DIRECT & BIT(from)) && (DIRECT & BIT(to))) {
    sb_list_push_front(&s->ho->direct, &s->link);
  }
  if (SUSPENDED & BIT(to))
    MHD_suspend_connection(s->mc);
  else if ((SUSPENDED & BIT(from)) && to != PHASE_GONE)
    MHD_resume_connection(s->mc);
}

/* Queues s, which the loop writes, to be written by the next flush. */
static void mark_dirty(struct stream *s)
{
  if (!sb_list_linked(&s->dirty))
    sb_list_push_back(&s->ho->dirty, &s->dirty);
}

/* Has the loop write s from now on (it moved to TAKEN or DETACHED): at the
 * next flush if frames are queued, else when the hub has some. */
static void went_direct(struct stream *s)
{
  if (sb_conn_queued(s->conn))
    mark_dirty(s);
  else
    sb_conn_wait(s->conn);
}

/* libmicrohttpd asks for the body again: it has sent the first chunk. The
 * loop keeps a duplicate of the socket and libmicrohttpd closes its
 * connection (and frees its memory pool, most of a stream's memory); it does
 * not shut the socket down in MHD_USE_TURBO mode, so closing its descriptor
 * leaves the stream open. Returns 0, or -1 (no descriptor to spare) with
 * nothing changed. */
static int detach(struct stream *s)
{
  struct sb__handover *ho = s->ho;
  int own = fcntl(s->sock, F_DUPFD_CLOEXEC, 0);

  if (own < 0)
    return -1;
  unwatch(ho, s->fd);
  if (watch_fd(ho, s, own) != 0) {
    close(own);
    watch_fd(ho, s, s->sock);
    return -1;
  }
  s->mc = NULL;
  move(s, PHASE_DETACHED);
  went_direct(s);
  return 0;
}

/* Ends a stream the loop writes: cleanly (everything queued, with the last
 * chunk when detached, has been written) or cut. A detached stream is the
 * loop's alone: its socket is closed (after the last chunk, unless cut) and
 * it is freed. A taken one goes back to libmicrohttpd, which sends the last
 * chunk, or, cut, finds the socket shut down; its free callback frees it. */
static void end_direct(struct stream *s, int cut)
{
  struct sb__handover *ho = s->ho;

  if (s->phase == PHASE_TAKEN) {
    if (cut && s->sock >= 0)
      shutdown(s->sock, SHUT_RDWR);
    move(s, PHASE_RETURNED);
    return;
  }
  move(s, PHASE_GONE);
  if (s->fd >= 0)
    unwatch(ho, s->fd);
  shutdown(s->sock, cut ? SHUT_RDWR : SHUT_WR);
  close(s->sock);
  sb_hub_unregister(ho->hub, s->conn);
  free(s);
}

/* Writes what the hub queued to a stream the loop writes, or ends it. */
static void flush_one(struct stream *s)
{
  int state = sb_conn_state(s->conn), rc;

  if (state == SB_CONN_CUT) {
    end_direct(s, 1);
    return;
  }
  rc = sb__stream_write(&s->out, s->sock, s->conn);
  if (rc == SB__STREAM_ERROR) {
    sb_hub_gone(s->ho->hub, s->conn); /* wakes s again, as cut */
    return;
  }
  if (rc == SB__STREAM_AGAIN) {
    arm_out(s, 1);
    return;
  }
  arm_out(s, 0);
  if (state != SB_CONN_CLOSING) {
    sb_conn_wait(s->conn);
  } else if (s->phase == PHASE_DETACHED) {
    sb__stream_end(&s->out); /* the last chunk, then the close */
    move(s, PHASE_ENDING);
    flush_one(s);
  } else {
    end_direct(s, 0);
  }
}

/* ---- libmicrohttpd's and the hub's callbacks ------------------------------ */

static void stream_wake(void *ctx)
{
  struct stream *s = ctx;
  const union MHD_ConnectionInfo *ci;

  if (DIRECT & BIT(s->phase)) {
    mark_dirty(s); /* written by the next flush, outside the hub's call */
    return;
  }
  /* Cut: the client may not be reading, so libmicrohttpd might never get to
   * write (and close) again; end the socket itself, which it then sees. */
  if (sb_conn_state(s->conn) == SB_CONN_CUT &&
      (ci = MHD_get_connection_info(s->mc, MHD_CONNECTION_INFO_CONNECTION_FD)) &&
      ci->connect_fd >= 0)
    shutdown(ci->connect_fd, SHUT_RDWR);
  if (s->phase == PHASE_PAUSED)
    move(s, PHASE_SERVED);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
  struct stream *s = cls;
  int state = sb_conn_state(s->conn);
  size_t n;

  (void)pos;
  if (state == SB_CONN_CUT)
    return MHD_CONTENT_READER_END_WITH_ERROR;
  if (s->phase == PHASE_SERVED && state == SB_CONN_OPEN && s->fd >= 0 && !s->ho->keep) {
    /* the first chunk is out: the loop takes the socket over */
    if (detach(s) == 0)
      return MHD_CONTENT_READER_END_WITH_ERROR; /* libmicrohttpd lets go; the stream goes on */
    move(s, PHASE_TAKEN);
    went_direct(s);
    return 0;
  }
  if (s->phase == PHASE_NEW)
    move(s, PHASE_SERVED);
  if ((n = sb_conn_read(s->conn, buf, max)) > 0)
    return (ssize_t)n;
  if (state == SB_CONN_CLOSING || s->phase == PHASE_RETURNED)
    return MHD_CONTENT_READER_END_OF_STREAM;
  sb_conn_wait(s->conn);
  move(s, PHASE_PAUSED);
  return 0;
}

static void stream_free(void *cls)
{
  struct stream *s = cls;

  if (s->phase == PHASE_DETACHED || s->phase == PHASE_ENDING)
    return; /* the loop's now (end_direct frees it) */
  if (s->fd >= 0)
    s->ho->watches[s->fd].s = NULL;
  move(s, PHASE_GONE); /* off the lists when libmicrohttpd stopped with it taken */
  sb_hub_unregister(s->ho->hub, s->conn);
  free(s);
}

/* ---- the keeper ----------------------------------------------------------- */

struct sb__handover *sb__handover_new(struct sb_hub *hub, const struct sb_log *log, int epfd,
                                      int keep)
{
  struct sb__handover *ho = calloc(1, sizeof(*ho));

  if (!ho)
    return NULL;
  ho->hub = hub;
  ho->log = log;
  ho->epfd = epfd;
  ho->keep = keep;
  sb_list_init(&ho->direct);
  sb_list_init(&ho->dirty);
  return ho;
}

int sb__handover_open(struct sb__handover *ho, struct MHD_Connection *mc, const char *user,
                      const char *device, const char *last, struct MHD_Response **r)
{
  const union MHD_ConnectionInfo *ci;
  struct stream *s = calloc(1, sizeof(*s));
  int rc;

  *r = NULL;
  if (!s)
    return SB_ENOMEM;
  s->ho = ho;
  s->mc = mc;
  s->phase = PHASE_NEW;
  s->fd = s->sock = -1;
  sb_list_init(&s->link);
  sb_list_init(&s->dirty);
  if ((rc = sb_hub_register(ho->hub, user, device, last, sb_clock_mono_ms(), stream_wake, s, &s->conn))) {
    free(s);
    return rc;
  }
  /* from here the response owns s: its free callback frees it */
  if (!(*r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK, stream_read, s,
                                               stream_free))) {
    sb_hub_unregister(ho->hub, s->conn);
    free(s);
    return SB_ENOMEM;
  }
  MHD_add_response_header(*r, "Content-Type", "text/event-stream");
  MHD_add_response_header(*r, "Cache-Control", "no-cache");
  MHD_add_response_header(*r, "X-Accel-Buffering", "no");
  /* A stream is idle by design; it is suspended while its queue is empty,
   * and a client that stops reading is cut by max_queue_bytes. */
  MHD_set_connection_option(mc, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned int)0);
  ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
  if (ci && ci->connect_fd >= 0)
    watch_fd(ho, s, ci->connect_fd);
  return 0;
}

void sb__handover_closed(struct sb__handover *ho, int fd)
{
  if (fd >= 0 && (size_t)fd < ho->nwatches)
    unwatch(ho, fd);
}

void sb__handover_on_socket(struct sb__handover *ho, uint64_t data, uint32_t events)
{
  struct watch *w;

  if (data >= ho->nwatches)
    return;
  w = &ho->watches[data];
  if (!w->registered)
    return;
  if (!(events & ~(uint32_t)EPOLLOUT)) {
    if (w->s && (DIRECT & BIT(w->s->phase)))
      mark_dirty(w->s); /* the socket takes more again */
    return;
  }
  if (w->s)
    sb_hub_gone(ho->hub, w->s->conn);
  /* The stream ends now; libmicrohttpd closes the socket when it next runs.
   * Stop watching so a level-triggered hang-up does not repeat meanwhile. */
  unwatch(ho, (int)data);
}

void sb__handover_flush(struct sb__handover *ho)
{
  struct sb_list *l;
  struct stream *s;

  while ((l = sb_list_first(&ho->dirty))) {
    sb_list_remove(l);
    s = sb_list_entry(l, struct stream, dirty);
    if (DIRECT & BIT(s->phase))
      flush_one(s);
  }
}

int sb__handover_due(const struct sb__handover *ho)
{
  return !sb_list_empty(&ho->dirty);
}

void sb__handover_cut_all(struct sb__handover *ho)
{
  struct sb_list *l;

  while ((l = sb_list_first(&ho->direct)))
    end_direct(sb_list_entry(l, struct stream, link), 1);
}

void sb__handover_free(struct sb__handover *ho)
{
  if (!ho)
    return;
  free(ho->watches);
  free(ho);
}
