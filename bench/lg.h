/* loadgen: the pieces of the SSE load generator, one module each.
 *
 *   streams.c   N SSE connections: connect, HTTP response, chunked, SSE lines
 *   publish.c   events out: MQTT (a minimal client of its own) or HTTP POST (Nchan)
 *   procstat.c  RSS and CPU time of the server's processes from /proc
 *   loadgen.c   options, the phases of a run, accounting and the report
 *
 * Everything runs on one thread around one epoll set; nothing here is
 * thread-safe, and nothing needs to be. */
#ifndef LG_H
#define LG_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- constants ------------------------------------------------------------ */

/* epoll data: the kind of descriptor in the top byte, an index below it. */
enum lg_kind { LG_K_STREAM = 1, LG_K_MQTT, LG_K_TIMER, LG_K_HTTPPUB };
#define LG_TAG(kind, idx) (((uint64_t)(kind) << 56) | (uint64_t)(idx))
#define LG_TAG_KIND(t) ((int)((t) >> 56))
#define LG_TAG_INDEX(t) ((size_t)((t) & ((UINT64_C(1) << 56) - 1)))

/* Longest SSE or header line kept; longer lines are skipped. */
#define LG_LINE_CAP 1024
#define LG_MAX_SOURCES 64
#define LG_MAX_PIDS 8

/* ---- callbacks ------------------------------------------------------------ */

/* One event seen on stream idx: the sequence number and send time (CLOCK_MONOTONIC
 * ns) carried in its data line, and the time it was read. */
typedef void (*lg_deliver_fn)(void *ctx, size_t idx, int64_t seq, int64_t sent_ns,
                              int64_t now_ns);

/* ---- structs -------------------------------------------------------------- */

enum lg_stream_state { LG_ST_IDLE, LG_ST_CONNECTING, LG_ST_HEADERS, LG_ST_OPEN, LG_ST_DONE };

/* One SSE connection. `line` holds a partial line across reads. */
struct lg_stream {
  int fd;
  int user;
  uint8_t state;
  uint8_t chunked;
  uint8_t cstate;    /* chunk decoder: size line, data, CRLF after data */
  uint8_t hex_done;  /* the size line reached an extension or CR */
  uint8_t status_ok; /* the status line said 200 */
  uint8_t overlong;  /* the current line passed LG_LINE_CAP: skipped */
  uint16_t len;      /* bytes in line */
  uint32_t chunk_left;
  uint32_t received; /* events counted on this stream */
  int64_t hi;        /* newest event of the user seen (its index among the user's) */
  uint64_t seen;     /* bit i: event hi - i seen */
  char *line;
};

/* All SSE connections of a run. Stream i belongs to user i / devices and is
 * device i % devices. */
struct lg_streams {
  struct lg_stream *s;
  size_t n;
  int users, devices;
  int epfd;
  struct sockaddr_in dst;
  struct in_addr src[LG_MAX_SOURCES];
  int nsrc;
  const char *path_tmpl; /* "{u}" and "{d}" are replaced by user and device numbers */
  const char *host_header;
  size_t next;           /* next stream to open */
  size_t connecting;     /* opened, no response headers yet */
  size_t open;           /* response headers in, stream running */
  size_t failed;         /* never got to open: refused, reset or not 200 */
  size_t lost;           /* ended after it was open */
  lg_deliver_fn deliver;
  void *ctx;
  char rbuf[1 << 16];
};

/* Server processes: a sample of their summed RSS and CPU time. */
struct lg_proc_sample {
  long rss_kb;                  /* VmRSS summed, kB */
  double cpu_s;                 /* utime + stime summed, seconds */
  long pid_rss_kb[LG_MAX_PIDS]; /* per process, in the order given */
  double pid_cpu_s[LG_MAX_PIDS];
  int ok;                       /* every process could be read */
};

struct lg_pub;

/* ---- prototypes ----------------------------------------------------------- */

/* Sets up ss for n streams (users x devices) to dst, from nsrc loopback source
 * addresses; allocates the stream table. Returns 0, or -1 when out of memory.
 * ss is borrowed by the caller; free with lg_streams_free(). */
int lg_streams_init(struct lg_streams *ss, int epfd, int users, int devices,
                    const struct sockaddr_in *dst, const struct in_addr *src, int nsrc,
                    const char *path_tmpl, const char *host_header, lg_deliver_fn deliver,
                    void *ctx);
/* Opens streams until max_connecting are waiting for their response
 * headers or all have been opened. */
void lg_streams_pump(struct lg_streams *ss, size_t max_connecting);
/* Handles epoll events of stream idx. */
void lg_streams_on_event(struct lg_streams *ss, size_t idx, uint32_t events);
/* Closes every stream and frees the table; ss may be zeroed. */
void lg_streams_free(struct lg_streams *ss);

/* Returns a publisher over MQTT: an MQTT 3.1.1 client of host:port (clean
 * session, TCP_NODELAY) publishing to topic_tmpl ("{u}" replaced) at qos,
 * pipelined, its socket in epfd. NULL with err (256 bytes) set on failure. */
struct lg_pub *lg_pub_mqtt_new(int epfd, const char *host, int port, int qos,
                               const char *topic_tmpl, char *err);
/* Returns a publisher over HTTP: nconns keep-alive connections to host:port
 * that POST to path_tmpl ("{u}" replaced), one request in flight each. */
struct lg_pub *lg_pub_http_new(int epfd, const char *host, int port, const char *path_tmpl,
                               int nconns, char *err);
/* Whether a publish would go out now (HTTP: a connection is free). */
int lg_pub_ready(const struct lg_pub *p);
/* Sends body as the event for user. Returns 0, or -1 if it could not go out
 * (not ready, or the connection failed). */
int lg_pub_send(struct lg_pub *p, int user, const char *body, size_t len);
/* Writes what lg_pub_send() queued (MQTT; HTTP writes at once). */
void lg_pub_flush(struct lg_pub *p);
/* Handles epoll events of the publisher's descriptor idx. */
void lg_pub_on_event(struct lg_pub *p, size_t idx, uint32_t events);
/* Periodic housekeeping (MQTT keep-alive); call about once a second. */
void lg_pub_tick(struct lg_pub *p);
/* Publishes answered with an error, and connections that failed. */
size_t lg_pub_errors(const struct lg_pub *p);
/* Publishes not yet acknowledged (QoS 1 PUBACK, HTTP answer). */
size_t lg_pub_unacked(const struct lg_pub *p);
/* Disconnects and frees p; NULL-safe. */
void lg_pub_free(struct lg_pub *p);

/* Reads RSS and CPU time of n processes into out; out->ok is 0 when one of
 * them could not be read (it has exited). */
void lg_proc_read(const pid_t *pids, int n, struct lg_proc_sample *out);
/* Returns the kernel memory that sockets use, machine-wide, in kB: slab
 * (socket, TCP, file and epoll objects) plus TCP buffer pages; -1 if unknown. */
long lg_kernel_kb(void);
/* Returns CLOCK_MONOTONIC in ns. */
int64_t lg_now_ns(void);

#endif
