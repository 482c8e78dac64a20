/* sse.h: the bytes of the SSE wire format, framed once and shared.
 *
 * A struct sb_frame holds the finished bytes of one thing to send (an event,
 * a heartbeat comment, the retry line) plus the routing facts of an event. It
 * is reference-counted: every queue or replay buffer that holds it owns one
 * reference. The counter is not atomic: a frame is handed to the server's
 * loop thread whole, and only that thread takes or drops references after. */
#ifndef SB_SSE_H
#define SB_SSE_H

#include <stddef.h>

#define SB_SSE_HEARTBEAT ": heartbeat\n\n"

/* Returns the heap bytes an allocation of n bytes takes, as glibc's malloc
 * lays it out: n and an 8-byte header, rounded up to 16, at least 32. The
 * unit of the memory budget (max_memory): an honest estimate of what each
 * allocation costs, not only what it asked for. Pure. */
static inline size_t sb_mem_cost(size_t n)
{
  size_t c = (n + 8 + 15) & ~(size_t)15;
  return c < 32 ? 32 : c;
}

struct sb_frame {
  unsigned refs;
  size_t len;         /* bytes to send */
  size_t cost;        /* heap bytes of the whole frame (sb_mem_cost of its allocation) */
  /* The hub's accounting (its thread only): how many replay slots and queue
   * entries hold the frame. Its cost counts once, as replay while a replay
   * buffer holds it, else as queues while a queue does. 0 elsewhere. */
  unsigned rings, queues;
  const char *bytes;  /* the wire bytes; points into the same allocation */
  const char *id;     /* event id, or NULL for a comment or control frame */
  const char *source; /* sourceDeviceId, or NULL */
  const char *target; /* targetDeviceId, or NULL */
};

/* Returns a new frame (one reference, the caller's) holding a copy of len
 * raw bytes, or NULL when out of memory. Any thread. */
struct sb_frame *sb_frame_raw(const char *bytes, size_t len);

/* Returns a new frame (one reference) for an event: "id: <id>\n", one
 * "data: " line per line of data, and a blank line. id, source and target are
 * copied; source and target may be NULL. NULL when out of memory. Any thread. */
struct sb_frame *sb_frame_event(const char *id, const char *source, const char *target,
                                const char *data, size_t data_len);

/* Takes one more reference and returns f. */
struct sb_frame *sb_frame_ref(struct sb_frame *f);

/* Drops one reference; the last one frees the frame. NULL-safe. */
void sb_frame_unref(struct sb_frame *f);

/* Writes the SSE framing of an event into out (at most outlen bytes) and
 * returns the number of bytes the whole framing needs, so that a first call
 * with outlen 0 sizes the buffer. Lines of data are split on CR, LF and CRLF,
 * each becoming its own "data: " line. id may be NULL (no id line). Pure. */
size_t sb_sse_format_event(char *out, size_t outlen, const char *id, const char *data,
                           size_t data_len);

/* Returns 1 if s may be an SSE id or device id on the wire: 1 to max bytes,
 * no control characters (so no CR, LF or NUL). Pure. */
int sb_sse_valid_id(const char *s, size_t len, size_t max);

/* Longest device id, in bytes. */
#define SB_SSE_DEVICE_MAX 128

/* Returns 1 if s (len bytes) is a device id: 1 to SB_SSE_DEVICE_MAX
 * characters of [A-Za-z0-9._:-]. Pure. */
int sb_sse_valid_device(const char *s, size_t len);

#endif
