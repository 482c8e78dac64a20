/* slots.h: fair connection slots (internal to the server).
 *
 * libmicrohttpd holds a connection from its accept to its close, and it has
 * only so many (max_connections + 256). Its timeout counts inactivity, so a
 * client that sends its request a byte at a time keeps a slot for as long
 * as it likes, and a few hundred such sockets used to lock everyone out.
 * Two bounds keep the slots for everyone, as nginx's client_header_timeout,
 * client_body_timeout and limit_conn do:
 *
 * - a deadline for the whole request: its headers must be in within
 *   SB__SLOT_HEADER_MS of the accept (or of the previous answer, on a
 *   kept-alive connection), its body within SB__SLOT_BODY_MS of the headers.
 *   Past it the socket is shut down, and libmicrohttpd closes it;
 * - a limit of unfinished requests per client address (max_pending_per_address;
 *   an IPv6 address counts by its /64): a connection counts from its accept
 *   until its answer is sent, and again while it waits for its next request.
 *   An established SSE stream does not count (the tabs of many users may
 *   come from one NAT address), and neither does a connection being closed.
 *   A new connection from an address at the limit takes the place of the
 *   address's oldest kept-alive connection that waits idle, or else is closed
 *   at once, at its accept.
 *
 * Refusals at the accept and deadlines missed are counted in
 * mqtt_sse_bridge_http_refused_total{reason="per_address"|"deadline"}; a
 * kept-alive connection that waited idle until its deadline is not. (With
 * libmicrohttpd 0.9.75 only a connection whose answer came after its body,
 * a publish, is kept alive.)
 *
 * A connection's slot lives in the socket context that http.c gives each
 * libmicrohttpd connection. Everything here runs on the server's loop
 * thread. */
#ifndef SB_SLOTS_H
#define SB_SLOTS_H

#include <sys/socket.h>

#include "list.h"
#include "log.h"
#include "metrics.h"

/* The request deadlines, in monotonic ms. */
#define SB__SLOT_HEADER_MS 10000
#define SB__SLOT_BODY_MS 30000

/* The phases of a connection's slot, and the only moves between them:
 *
 *   HEADERS --+--> BODY ---> ANSWER ---> IDLE
 *   or IDLE   +------------> ANSWER
 *             +------------> STREAM ---> IDLE
 *
 * and CUT from HEADERS, IDLE and BODY (a deadline passed, or an IDLE slot
 * made room), CLOSED from every phase. */
enum sb__slot_phase {
  SB__SLOT_HEADERS, /* the request's headers are due (counts; header deadline) */
  SB__SLOT_IDLE,    /* kept alive after an answer: the next request's headers
                       are due (counts; header deadline; may make room) */
  SB__SLOT_BODY,    /* its body is being read (counts; body deadline) */
  SB__SLOT_ANSWER,  /* answered; the answer is being sent (counts) */
  SB__SLOT_STREAM,  /* carries an established SSE stream (does not count) */
  SB__SLOT_CUT,     /* shut down; libmicrohttpd closes it (does not count) */
  SB__SLOT_CLOSED   /* libmicrohttpd closed it */
};

struct sb__slots;
struct sb__slot_addr;

/* One connection's slot, in memory its caller owns (the socket context),
 * from sb__slot_open() to sb__slot_close(). */
struct sb__slot {
  struct sb__slots *owner;
  struct sb__slot_addr *addr; /* its client address's count */
  enum sb__slot_phase phase;
  int fd;
  int nul;            /* the URL of the request being read held a %00 */
  long long deadline; /* monotonic ms, in HEADERS, IDLE and BODY */
  struct sb_list due;  /* on the owner's list of its deadline (HEADERS, IDLE, BODY) */
  struct sb_list idle; /* on its address's list of idle slots (IDLE) */
};

/* Returns the slots of the HTTP side, counting refusals in metrics and
 * logging through log (both borrowed, must outlive it), or NULL when out of
 * memory. */
struct sb__slots *sb__slots_new(struct sb_metrics *metrics, const struct sb_log *log);

/* Frees s, once every slot is closed. NULL-safe. */
void sb__slots_free(struct sb__slots *s);

/* Decides on a connection accepted from sa (len bytes): returns 1 to take
 * it, or 0 (counted, and logged once per address until its count drops) when
 * its address holds limit unfinished requests and none idle to make room
 * for it (an idle one is then shut down). limit 0: no limit. */
int sb__slots_admit(struct sb__slots *s, const struct sockaddr *sa, socklen_t len, int limit);

/* Opens the slot of a connection from sa on socket fd, at now (monotonic ms):
 * phase HEADERS. Returns 0, or SB_ENOMEM (then slot is not open). */
int sb__slot_open(struct sb__slots *s, struct sb__slot *slot, const struct sockaddr *sa,
                  socklen_t len, int fd, long long now);

/* Moves an open slot to phase to at now: a move the diagram above does not
 * have is logged as an error and ignored, and a CUT slot stays CUT until it
 * is closed. CLOSED is sb__slot_close(). */
void sb__slot_move(struct sb__slot *slot, enum sb__slot_phase to, long long now);

/* libmicrohttpd closed the slot's connection: the slot is off the books.
 * NULL-safe, and a no-op on a slot that is not open. */
void sb__slot_close(struct sb__slot *slot);

/* Shuts down the sockets whose deadline is at or before now (monotonic ms),
 * counting each. */
void sb__slots_expire(struct sb__slots *s, long long now);

/* Returns the ms from now until the next deadline (0 if one passed), or -1
 * when none is due. */
long long sb__slots_next(const struct sb__slots *s, long long now);

#endif
