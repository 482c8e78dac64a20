/* linger.h: the lingering close of connections answered before their
 * request body was read (internal to the server).
 *
 * libmicrohttpd answers a request early (413 for a Content-Length over the
 * limit, 401, 405) and then closes the connection without reading the rest
 * of the body. Closing a socket with unread bytes makes the kernel send a
 * reset, and a client still sending reads that reset instead of the answer.
 * As nginx does, the loop keeps such a socket a little longer: it takes a
 * duplicate of it before libmicrohttpd closes its own, shuts the sending
 * side (the client reads the answer, then the end), reads and throws away
 * what still comes, and closes once the client has closed too, or after
 * SB__LINGER_MS or SB__LINGER_BYTES, whichever comes first.
 *
 * The loop's epoll watches the lingering sockets with event data
 * SB__LINGER_TAG | fd. Everything here runs on the server's loop thread. */
#ifndef SB_LINGER_H
#define SB_LINGER_H

#include <stdint.h>

#include "log.h"

/* How long, and how many bytes, a refused body is read and thrown away: by
 * a lingering close here, and by POST /api/publish for a body without
 * Content-Length that grows over the limit (api_publish.c). */
#define SB__LINGER_MS 5000
#define SB__LINGER_BYTES (64u * 1024 * 1024)

/* Sockets lingering at once at most; beyond, a socket is closed at once. */
#define SB__LINGER_MAX 256

/* The bit of the epoll event data of a lingering socket (its fd below). */
#define SB__LINGER_TAG (UINT64_C(1) << 32)

struct sb__linger;

/* Returns the lingering closes of the loop's epoll epfd, logging through log
 * (borrowed; both must outlive it), or NULL when out of memory. */
struct sb__linger *sb__linger_new(int epfd, const struct sb_log *log);

/* Marks the connection on socket fd, answered before its body was read, to
 * linger when libmicrohttpd closes it. */
void sb__linger_mark(struct sb__linger *l, int fd);

/* libmicrohttpd closes socket fd (it has not yet): if it was marked, a
 * duplicate lingers. Either way the mark is gone. */
void sb__linger_closing(struct sb__linger *l, int fd);

/* Handles an event of the loop's epoll whose data has SB__LINGER_TAG. */
void sb__linger_on_socket(struct sb__linger *l, uint64_t data, uint32_t events);

/* Closes the sockets whose time is up at now (monotonic ms). */
void sb__linger_expire(struct sb__linger *l, long long now);

/* Returns the ms from now until the next socket's time is up (0 if it is),
 * or -1 when none lingers. */
long long sb__linger_next(const struct sb__linger *l, long long now);

/* Closes every lingering socket and frees l. NULL-safe. */
void sb__linger_free(struct sb__linger *l);

#endif
