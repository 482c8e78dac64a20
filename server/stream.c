#include "stream.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static const char crlf[] = "\r\n";

/* Opens a chunk of len bytes: its header goes after any framing still due. */
static void open_chunk(struct sb__stream_out *o, size_t len)
{
  size_t left = (size_t)(o->pre_len - o->pre_off);
  int n;

  memmove(o->pre, o->pre + o->pre_off, left);
  n = snprintf(o->pre + left, sizeof(o->pre) - left, "%zX\r\n", len);
  o->pre_off = 0;
  o->pre_len = (unsigned char)(left + (size_t)n);
  o->chunk_left = len;
}

int sb__stream_write(struct sb__stream_out *o, int fd, struct sb_conn *conn)
{
  struct iovec iov[SB__STREAM_IOV];
  struct msghdr mh;

  for (;;) {
    size_t k = 0, pre, payload = 0, total, sent, t;
    ssize_t n;
    int trailer;

    if (o->chunk_left == 0 && sb_conn_queued(conn) > 0) {
      /* the chunk is as many frames as one sendmsg() carries with its framing */
      sb_conn_peek(conn, iov, SB__STREAM_IOV - 2, (size_t)-1, &payload);
      open_chunk(o, payload);
    }
    pre = (size_t)(o->pre_len - o->pre_off);
    if (pre) {
      iov[k].iov_base = o->pre + o->pre_off;
      iov[k++].iov_len = pre;
    }
    payload = 0;
    if (o->chunk_left) {
      k += sb_conn_peek(conn, iov + k, SB__STREAM_IOV - 1 - k, o->chunk_left, &payload);
      if (payload == 0)
        return SB__STREAM_ERROR; /* the queue no longer holds the chunk (cut) */
    }
    trailer = o->chunk_left && payload == o->chunk_left;
    if (trailer) {
      iov[k].iov_base = (void *)crlf;
      iov[k++].iov_len = 2;
    }
    if (k == 0)
      return SB__STREAM_DONE;
    total = pre + payload + (trailer ? 2 : 0);
    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = iov;
    mh.msg_iovlen = k;
    n = sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return errno == EAGAIN || errno == EWOULDBLOCK ? SB__STREAM_AGAIN : SB__STREAM_ERROR;
    }
    sent = (size_t)n;
    t = sent < pre ? sent : pre;
    o->pre_off = (unsigned char)(o->pre_off + t);
    sent -= t;
    if (o->pre_off == o->pre_len)
      o->pre_off = o->pre_len = 0;
    t = sent < payload ? sent : payload;
    if (t) {
      sb_conn_consume(conn, t);
      o->chunk_left -= t;
      sent -= t;
    }
    if (trailer && o->chunk_left == 0) {
      /* the chunk's payload is out; what the socket did not take of its
       * "\r\n" is due first (pre is empty: it went out before the payload) */
      memcpy(o->pre, crlf + sent, 2 - sent);
      o->pre_off = 0;
      o->pre_len = (unsigned char)(2 - sent);
    }
    if ((size_t)n < total)
      return SB__STREAM_AGAIN;
  }
}

void sb__stream_end(struct sb__stream_out *o)
{
  static const char last[] = "0\r\n\r\n";
  size_t left = (size_t)(o->pre_len - o->pre_off);

  memmove(o->pre, o->pre + o->pre_off, left);
  memcpy(o->pre + left, last, sizeof(last) - 1);
  o->pre_off = 0;
  o->pre_len = (unsigned char)(left + sizeof(last) - 1);
}

int sb__stream_pending(const struct sb__stream_out *o)
{
  return o->chunk_left > 0 || o->pre_len > o->pre_off;
}
