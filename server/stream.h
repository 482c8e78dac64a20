/* stream.h: writes an SSE stream's queued frames straight to its socket.
 *
 * Once libmicrohttpd has sent a stream's response headers and first chunk,
 * the loop writes the rest itself: the bytes queued to the hub connection
 * (shared frames, never copied), framed as HTTP/1.1 chunks ("<HEX len>\r\n",
 * the bytes, "\r\n", as libmicrohttpd frames them), several frames to a chunk
 * and one sendmsg() for all of them. The socket is non-blocking: what it does
 * not take stays in the hub's queue, and the chunk framing in progress stays
 * here, until the socket is writable again.
 *
 * Knows nothing of libmicrohttpd or of epoll. An sb__stream_out belongs to
 * the thread that owns the hub (the server's loop thread). */
#ifndef SB_STREAM_H
#define SB_STREAM_H

#include <stddef.h>

#include "hub.h"

/* Frames (iovec entries) sent at most per sendmsg(). */
#define SB__STREAM_IOV 64

enum sb__stream_result {
  SB__STREAM_DONE = 0,  /* everything queued is in the socket */
  SB__STREAM_AGAIN = 1, /* the socket is full: write again once it is writable */
  SB__STREAM_ERROR = -1 /* the socket failed (errno says why): the client is gone */
};

/* The chunk framing of one stream between two writes. Zero it to start. */
struct sb__stream_out {
  size_t chunk_left;      /* payload bytes of the open chunk not yet sent */
  unsigned char pre_off;  /* framing bytes of pre already sent */
  unsigned char pre_len;  /* framing bytes in pre */
  char pre[30];           /* framing due before more payload: "\r\n" and/or a chunk header */
};

/* Writes what is queued to conn to the non-blocking socket fd as chunks,
 * consuming it from conn's queue as the socket takes it. Returns
 * SB__STREAM_DONE when the queue is empty and no framing is left,
 * SB__STREAM_AGAIN when the socket took less, SB__STREAM_ERROR when it failed
 * (the queue and the framing are then of no further use). Never blocks, never
 * raises SIGPIPE, allocates nothing. Loop thread. */
int sb__stream_write(struct sb__stream_out *out, int fd, struct sb_conn *conn);

/* Queues the last chunk ("0\r\n\r\n") after the framing still due; the next
 * sb__stream_write() sends it. Only between chunks (no chunk open). */
void sb__stream_end(struct sb__stream_out *out);

/* Returns 1 while a chunk is open or framing bytes are unsent. For tests:
 * the server goes by sb__stream_write()'s result. */
int sb__stream_pending(const struct sb__stream_out *out);

#endif
