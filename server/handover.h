/* handover.h: the life of an SSE stream, from libmicrohttpd to the loop
 * (internal to the server).
 *
 * libmicrohttpd sends a stream's headers and first chunk. When it asks for
 * more, the loop takes the stream over and writes the hub's frames to the
 * socket itself (stream.h), waiting for EPOLLOUT when the socket is full.
 * Normally it detaches: the loop keeps a duplicate of the socket and
 * libmicrohttpd closes its connection and frees its memory (it does not shut
 * the socket down in MHD_USE_TURBO mode); the loop then ends the stream
 * itself (the last chunk, then the close). Without a descriptor to spare
 * the connection stays suspended instead, and libmicrohttpd is resumed once
 * more only to end it. Without a watched socket a stream stays with
 * libmicrohttpd, which is resumed whenever the hub has something for it.
 *
 * Over HTTPS every stream stays with libmicrohttpd that way: it holds the
 * TLS session, so the loop cannot write to the socket. Its socket is still
 * watched for a hang-up; a stream cut off (a slow reader) has its socket
 * shut down, which libmicrohttpd sees at its next write.
 *
 * The loop's epoll watches each stream's socket for a hang-up (EPOLLRDHUP),
 * which libmicrohttpd does not see while a stream is suspended, with the fd
 * as the event's data. Everything here runs on the server's loop thread,
 * which also owns the hub. */
#ifndef SB_HANDOVER_H
#define SB_HANDOVER_H

#include <stdint.h>

#include <microhttpd.h>

#include "hub.h"
#include "log.h"

struct sb__handover;

/* Returns the streams' keeper for hub (borrowed, must outlive it), logging
 * through log (borrowed) and watching sockets on the epoll epfd, or NULL when
 * out of memory. keep (HTTPS): every stream stays with libmicrohttpd, which
 * writes it. Loop thread. */
struct sb__handover *sb__handover_new(struct sb_hub *hub, const struct sb_log *log, int epfd,
                                      int keep);

/* Registers with the hub a stream of user's device (Last-Event-ID last, or
 * NULL) for the request mc, and returns in *r the response that carries it,
 * its stream headers set (the caller adds the CORS headers, queues it and
 * drops its reference; the response owns the stream). Returns 0, or
 * SB_ELIMIT, SB_EUSERLIMIT or SB_ENOMEM with nothing registered and *r NULL.
 * Loop thread. */
int sb__handover_open(struct sb__handover *ho, struct MHD_Connection *mc, const char *user,
                      const char *device, const char *last, struct MHD_Response **r);

/* Forgets the socket fd, which libmicrohttpd has closed (it may outlive its
 * stream: keep-alive). Loop thread. */
void sb__handover_closed(struct sb__handover *ho, int fd);

/* Handles an event of the loop's epoll for a watched socket (data is its
 * fd): a hang-up ends its stream; EPOLLOUT alone has it written again. Loop
 * thread. */
void sb__handover_on_socket(struct sb__handover *ho, uint64_t data, uint32_t events);

/* Writes what the hub queued to the streams the loop writes, and ends those
 * that are done. Never blocks. Loop thread. */
void sb__handover_flush(struct sb__handover *ho);

/* Returns 1 while streams wait for sb__handover_flush(), else 0. Loop
 * thread. */
int sb__handover_due(const struct sb__handover *ho);

/* Cuts every stream the loop writes: a detached one is closed and freed, a
 * suspended one is handed back to libmicrohttpd to close. Before stopping
 * libmicrohttpd. Loop thread. */
void sb__handover_cut_all(struct sb__handover *ho);

/* Frees ho, once libmicrohttpd has stopped (it frees the streams it holds,
 * through ho). NULL-safe. */
void sb__handover_free(struct sb__handover *ho);

#endif
