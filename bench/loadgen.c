/* loadgen: an SSE load generator for mqtt-sse-bridge and hubs like it.
 *
 * One process, one thread, one epoll set. A run goes through phases:
 *
 *   connect   open users x devices SSE streams (a few hundred at a time)
 *   settle    let the server finish what the connections started; RSS read
 *   hold      (optional) nothing happens for a while: the server's idle CPU
 *   publish   (optional) events over MQTT or HTTP POST, paced by a timer or
 *             as fast as the deliveries come back (a window of events in flight)
 *
 * Each event carries its sequence number and send time (CLOCK_MONOTONIC ns);
 * event i goes to user i % users, so every delivery can be checked and timed.
 * Everything is bounded: a run ends by itself at --timeout at the latest. */
#include "lg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define NS 1000000000LL
#define MS 1000000LL

enum phase { PH_CONNECT, PH_WAIT, PH_PUBLISH };

struct opts {
  const char *host;
  int port;
  const char *path;
  int users, devices;
  int sources, source_first;
  int connect_conc;
  double connect_timeout, settle, hold, timeout, stall;
  long events;
  double rate;
  int window;
  int pad;
  const char *mqtt; /* host:port, or NULL */
  const char *topic;
  int qos;
  const char *http_pub; /* host:port, or NULL */
  const char *pub_path;
  int pub_conns;
  pid_t pids[LG_MAX_PIDS];
  int npids;
  const char *label;
  int json;
};

struct run {
  struct opts o;
  int epfd, tfd;
  struct lg_pub *pub;
  /* per event */
  uint32_t *ev_got, *ev_exp;
  size_t published, done, due, max_backlog, stalls;
  int64_t base; /* this run's sequence numbers start here */
  /* per user */
  uint32_t *user_open, *user_events;
  /* deliveries */
  uint64_t deliveries, dups, wrong, unknown, reordered;
  uint32_t *lat; /* ns, saturated at UINT32_MAX */
  size_t nlat, caplat;
  int64_t t_first_pub, t_last_deliv, t_progress, t_tick;
  int64_t t_sched0, period; /* --rate: event i is due at t_sched0 + i * period */
  int64_t late_max;         /* the longest an event was published after it was due */
  size_t held_back;         /* times events were due and the publisher could not take
                               them (HTTP: every connection waiting for its answer) */
  struct lg_streams ss; /* last: holds the read buffer */
};

static void usage(FILE *f)
{
  fprintf(f,
    "usage: loadgen --port N [options]\n"
    "  --host A            server address (127.0.0.1)\n"
    "  --port N            server port\n"
    "  --path T            SSE path; {u} user and {d} device numbers\n"
    "                      (/api/sse?userId=u{u}&deviceId=d{d})\n"
    "  --users N --devices N   streams = users x devices (1 x 1)\n"
    "  --sources N         loopback source addresses 127.0.0.<first>... (8)\n"
    "  --source-first N    last byte of the first source address (2)\n"
    "  --connect-conc N    streams connecting at once (256)\n"
    "  --connect-timeout S (30)   --settle S (1)   --hold S idle hold (0)\n"
    "  --events N          events to publish (0: none); event i to user i %% users\n"
    "  --rate R            events per second (0: as fast as deliveries come back)\n"
    "  --window N          events in flight when --rate 0 (16)\n"
    "  --pad N             bytes of padding in each event (0)\n"
    "  --mqtt H:P          publish over MQTT to this broker\n"
    "  --topic T           MQTT topic, {u} the user (sync/u{u}/bench)\n"
    "  --qos N             MQTT QoS of the publishes (1)\n"
    "  --http-pub H:P      publish by HTTP POST instead\n"
    "  --pub-path T        POST path, {u} the user (/pub/u{u})\n"
    "  --pub-conns N       HTTP publishing connections (4)\n"
    "  --pid P             a server process to measure (repeat, up to 8)\n"
    "  --stall S           after S without a delivery, what is in flight is given up (2)\n"
    "  --timeout S         the whole run ends by then (120)\n"
    "  --label L --json    name the run; add one JSON line to the report\n");
}

static int host_port(const char *s, char *host, size_t cap, int *port)
{
  const char *c = strrchr(s, ':');
  if (!c || (size_t)(c - s) >= cap)
    return -1;
  memcpy(host, s, (size_t)(c - s));
  host[c - s] = '\0';
  *port = atoi(c + 1);
  return *port > 0 ? 0 : -1;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
  static const struct option lo[] = {
    {"host", 1, 0, 'H'}, {"port", 1, 0, 'p'}, {"path", 1, 0, 'P'}, {"users", 1, 0, 'u'},
    {"devices", 1, 0, 'd'}, {"sources", 1, 0, 's'}, {"source-first", 1, 0, 'S'},
    {"connect-conc", 1, 0, 'c'}, {"connect-timeout", 1, 0, 'C'}, {"settle", 1, 0, 'w'},
    {"hold", 1, 0, 'h'}, {"events", 1, 0, 'e'}, {"rate", 1, 0, 'r'}, {"window", 1, 0, 'W'},
    {"pad", 1, 0, 'a'}, {"mqtt", 1, 0, 'm'}, {"topic", 1, 0, 't'}, {"qos", 1, 0, 'q'},
    {"http-pub", 1, 0, 'b'}, {"pub-path", 1, 0, 'B'}, {"pub-conns", 1, 0, 'n'},
    {"pid", 1, 0, 'i'}, {"stall", 1, 0, 'l'}, {"timeout", 1, 0, 'T'}, {"label", 1, 0, 'L'},
    {"json", 0, 0, 'j'}, {"help", 0, 0, '?'}, {0, 0, 0, 0}};
  int c;

  *o = (struct opts){.host = "127.0.0.1", .path = "/api/sse?userId=u{u}&deviceId=d{d}",
                     .users = 1, .devices = 1, .sources = 8, .source_first = 2,
                     .connect_conc = 256, .connect_timeout = 30, .settle = 1, .timeout = 120,
                     .stall = 2, .window = 16, .topic = "sync/u{u}/bench", .qos = 1,
                     .pub_path = "/pub/u{u}", .pub_conns = 4, .label = "run"};
  while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    switch (c) {
    case 'H': o->host = optarg; break;
    case 'p': o->port = atoi(optarg); break;
    case 'P': o->path = optarg; break;
    case 'u': o->users = atoi(optarg); break;
    case 'd': o->devices = atoi(optarg); break;
    case 's': o->sources = atoi(optarg); break;
    case 'S': o->source_first = atoi(optarg); break;
    case 'c': o->connect_conc = atoi(optarg); break;
    case 'C': o->connect_timeout = atof(optarg); break;
    case 'w': o->settle = atof(optarg); break;
    case 'h': o->hold = atof(optarg); break;
    case 'e': o->events = atol(optarg); break;
    case 'r': o->rate = atof(optarg); break;
    case 'W': o->window = atoi(optarg); break;
    case 'a': o->pad = atoi(optarg); break;
    case 'm': o->mqtt = optarg; break;
    case 't': o->topic = optarg; break;
    case 'q': o->qos = atoi(optarg); break;
    case 'b': o->http_pub = optarg; break;
    case 'B': o->pub_path = optarg; break;
    case 'n': o->pub_conns = atoi(optarg); break;
    case 'i':
      if (o->npids < LG_MAX_PIDS)
        o->pids[o->npids++] = (pid_t)atoi(optarg);
      break;
    case 'l': o->stall = atof(optarg); break;
    case 'T': o->timeout = atof(optarg); break;
    case 'L': o->label = optarg; break;
    case 'j': o->json = 1; break;
    default: usage(c == '?' ? stdout : stderr); return -1;
    }
  }
  if (o->port <= 0 || o->users < 1 || o->devices < 1 || o->sources < 1 ||
      o->sources > LG_MAX_SOURCES || o->source_first < 1 ||
      o->source_first + o->sources > 255 || o->window < 1 || o->pad < 0 || o->pad > 2048 ||
      o->events < 0 || o->rate < 0 || o->pub_conns < 1 || o->connect_conc < 1) {
    usage(stderr);
    return -1;
  }
  if (o->events > 0 && !o->mqtt == !o->http_pub) {
    fprintf(stderr, "loadgen: --events needs one of --mqtt or --http-pub\n");
    return -1;
  }
  return 0;
}

/* Takes the whole open-file allowance: every stream is a socket. */
static long raise_nofile(void)
{
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return -1;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  return (long)rl.rlim_cur;
}

static double own_cpu_s(void)
{
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
         ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

/* ---- deliveries ----------------------------------------------------------- */

/* Marks the k-th event of the stream's user as seen. Returns 0 if it was
 * seen before (or is too far behind the newest to tell: 64 events); counts
 * an event that arrives after a newer one in *reordered. */
static int seen_first(struct lg_stream *st, int64_t k, uint64_t *reordered)
{
  int64_t d;

  if (k > st->hi) {
    d = k - st->hi;
    st->seen = d >= 64 ? 0 : st->seen << d;
    st->seen |= 1;
    st->hi = k;
    return 1;
  }
  d = st->hi - k;
  if (d >= 64 || (st->seen & (UINT64_C(1) << d)))
    return 0;
  st->seen |= UINT64_C(1) << d;
  (*reordered)++;
  return 1;
}

static void on_delivery(void *ctx, size_t idx, int64_t seq, int64_t sent_ns, int64_t now_ns)
{
  struct run *r = ctx;
  struct lg_stream *st = &r->ss.s[idx];
  int64_t lat = now_ns - sent_ns;

  seq -= r->base; /* another run's event falls outside [0, published) */
  if (seq < 0 || (size_t)seq >= r->published) {
    r->unknown++;
    return;
  }
  if ((int)(seq % r->o.users) != st->user) {
    r->wrong++; /* another user's event: must never happen */
    return;
  }
  if (!seen_first(st, seq / r->o.users, &r->reordered)) {
    r->dups++;
    return;
  }
  st->received++;
  r->ev_got[seq]++;
  r->deliveries++;
  r->t_last_deliv = r->t_progress = now_ns;
  if (r->nlat == r->caplat) {
    size_t cap = r->caplat ? r->caplat * 2 : 1 << 16;
    uint32_t *l = realloc(r->lat, cap * sizeof(*l));
    if (!l)
      return;
    r->lat = l;
    r->caplat = cap;
  }
  r->lat[r->nlat++] = lat < 0 ? 0 : lat > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)lat;
}

/* ---- publishing ----------------------------------------------------------- */

static int publish_one(struct run *r)
{
  size_t seq = r->published;
  int user = (int)(seq % (size_t)r->o.users);
  char body[2400];
  int n;
  /* The send time: when the event was due (paced), so that a publisher held
   * back by the server (HTTP answers coming late) counts the wait too; else
   * now. */
  int64_t sent = r->o.rate > 0 ? r->t_sched0 + (int64_t)seq * r->period : lg_now_ns();

  if (r->o.rate > 0 && lg_now_ns() - sent > r->late_max)
    r->late_max = lg_now_ns() - sent;
  r->ev_exp[seq] = r->user_open[user];
  n = snprintf(body, sizeof(body), "{\"type\":\"bench\",\"payload\":{\"bq\":%lld,\"bt\":%lld%s",
               (long long)(r->base + (int64_t)seq), (long long)sent,
               r->o.pad ? ",\"pad\":\"" : "");
  if (r->o.pad) {
    memset(body + n, 'x', (size_t)r->o.pad);
    n += r->o.pad;
    body[n++] = '"';
  }
  body[n++] = '}';
  body[n++] = '}';
  if (lg_pub_send(r->pub, user, body, (size_t)n) != 0)
    return -1;
  if (r->published++ == 0)
    r->t_first_pub = lg_now_ns();
  r->user_events[user]++;
  return 0;
}

static void publish_more(struct run *r, int64_t now)
{
  while (r->done < r->published && r->ev_got[r->done] >= r->ev_exp[r->done]) {
    r->done++;
    r->t_progress = now;
  }
  if (r->done < r->published && now - r->t_progress > (int64_t)(r->o.stall * NS)) {
    /* Nothing arrived for a while: give up what is outstanding (its missing
     * deliveries are counted at the end) and go on. */
    r->stalls += r->published - r->done;
    r->done = r->published;
    r->t_progress = now;
  }
  if (r->o.rate > 0) {
    while (r->due > r->published && r->published < (size_t)r->o.events && lg_pub_ready(r->pub))
      if (publish_one(r) != 0)
        break;
    if (r->due > r->published && !lg_pub_ready(r->pub))
      r->held_back++;
    if (r->due > r->published && r->due - r->published > r->max_backlog)
      r->max_backlog = r->due - r->published;
  } else {
    while (r->published < (size_t)r->o.events && r->published - r->done < (size_t)r->o.window &&
           lg_pub_ready(r->pub))
      if (publish_one(r) != 0)
        break;
  }
  lg_pub_flush(r->pub);
}

static int publish_finished(struct run *r, int64_t now)
{
  (void)now;
  return r->published >= (size_t)r->o.events && r->done == r->published;
}

/* ---- the loop ------------------------------------------------------------- */

static void run_loop(struct run *r, enum phase ph, int64_t until)
{
  struct epoll_event evs[256];

  for (;;) {
    int64_t now = lg_now_ns(), wait;
    int n;

    if (now >= until)
      return;
    if (ph == PH_CONNECT) {
      lg_streams_pump(&r->ss, (size_t)r->o.connect_conc);
      if (r->ss.next == r->ss.n && r->ss.connecting == 0)
        return;
    } else if (ph == PH_PUBLISH) {
      publish_more(r, now);
      if (publish_finished(r, now))
        return;
    }
    if (now - r->t_tick > NS) {
      r->t_tick = now;
      if (r->pub)
        lg_pub_tick(r->pub);
    }
    wait = (until - now) / MS;
    if (wait > 50)
      wait = 50;
    n = epoll_wait(r->epfd, evs, 256, (int)wait);
    for (int i = 0; i < n; i++) {
      uint64_t tag = evs[i].data.u64;
      switch (LG_TAG_KIND(tag)) {
      case LG_K_STREAM: lg_streams_on_event(&r->ss, LG_TAG_INDEX(tag), evs[i].events); break;
      case LG_K_MQTT:
      case LG_K_HTTPPUB: lg_pub_on_event(r->pub, LG_TAG_INDEX(tag), evs[i].events); break;
      case LG_K_TIMER: {
        uint64_t x;
        if (read(r->tfd, &x, sizeof(x)) == sizeof(x))
          r->due += x;
        if (r->due > (size_t)r->o.events)
          r->due = (size_t)r->o.events; /* the backlog counts events still to send */
        break;
      }
      }
    }
  }
}

/* ---- the report ---------------------------------------------------------- */

/* What a run measured. */
struct result {
  size_t held, failed, lost, complete;
  double connect_s;
  long rss_before_kb, rss_after_kb;
  double rss_per_conn, kernel_per_conn;
  double idle_pct, gen_idle_pct;
  uint64_t expected, missing;
  double pub_s, dps, p50, p99, pmax;
  double srv_cpu, srv_us, srv_pct, gen_pct;
  int procs_ok;
  /* samples: before connecting, after settling, after the hold, around publishing */
  struct lg_proc_sample p0, p1, p2, p3, p4;
  long k0, k1;
  double c_hold0, c_hold1, c_pub0, c_pub1;
};

static int cmp_u32(const void *a, const void *b)
{
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

static double pct_ms(const uint32_t *v, size_t n, double p)
{
  size_t i;
  if (!n)
    return 0;
  i = (size_t)(p * (double)(n - 1) + 0.5);
  return (double)v[i] / 1e6;
}

/* Turns the samples of res into the figures of the report. */
static void summarise(struct run *r, struct result *res)
{
  const struct opts *o = &r->o;

  res->failed = r->ss.failed + (r->ss.n - r->ss.next);
  res->lost = r->ss.lost;
  res->rss_before_kb = res->p0.rss_kb;
  res->rss_after_kb = res->p1.rss_kb;
  if (res->held) {
    res->rss_per_conn = (double)(res->p1.rss_kb - res->p0.rss_kb) * 1024.0 / (double)res->held;
    if (res->k0 >= 0 && res->k1 >= 0)
      res->kernel_per_conn = (double)(res->k1 - res->k0) * 1024.0 / (double)res->held;
  }
  if (o->hold > 0) {
    res->idle_pct = (res->p2.cpu_s - res->p1.cpu_s) / o->hold * 100.0;
    res->gen_idle_pct = (res->c_hold1 - res->c_hold0) / o->hold * 100.0;
  }
  for (size_t i = 0; i < r->published; i++)
    res->expected += r->ev_exp[i];
  res->missing = res->expected > r->deliveries ? res->expected - r->deliveries : 0;
  for (size_t i = 0; i < r->ss.n; i++) {
    const struct lg_stream *st = &r->ss.s[i];
    if (r->user_events[st->user] > 0 && st->received == r->user_events[st->user])
      res->complete++;
  }
  res->srv_cpu = res->p4.cpu_s - res->p3.cpu_s;
  if (r->published && r->deliveries) {
    double gen_cpu = res->c_pub1 - res->c_pub0;
    res->pub_s = (double)(r->t_last_deliv - r->t_first_pub) / NS;
    if (res->pub_s <= 0)
      res->pub_s = 1e-9;
    res->dps = (double)r->deliveries / res->pub_s;
    res->srv_us = res->srv_cpu / (double)r->deliveries * 1e6;
    res->srv_pct = res->srv_cpu / res->pub_s * 100.0;
    res->gen_pct = gen_cpu / res->pub_s * 100.0;
    qsort(r->lat, r->nlat, sizeof(*r->lat), cmp_u32);
    res->p50 = pct_ms(r->lat, r->nlat, 0.50);
    res->p99 = pct_ms(r->lat, r->nlat, 0.99);
    res->pmax = r->nlat ? (double)r->lat[r->nlat - 1] / 1e6 : 0;
  }
  res->procs_ok = res->p0.ok && res->p4.ok;
}

static void print_text(const struct run *r, const struct result *res)
{
  const struct opts *o = &r->o;

  printf("%s: streams %zu/%zu held (%zu failed, %zu lost), connected in %.2f s\n", o->label,
         res->held, r->ss.n, res->failed, res->lost, res->connect_s);
  if (o->npids) {
    printf("  server RSS %ld -> %ld kB: %.0f B per stream%s\n", res->rss_before_kb,
           res->rss_after_kb, res->rss_per_conn,
           res->procs_ok ? "" : " (a server process was not readable)");
    for (int i = 0; i < o->npids; i++)
      printf("    pid %d: RSS %ld -> %ld kB, CPU publish %.3f s, hold %.3f s\n", (int)o->pids[i],
             res->p0.pid_rss_kb[i], res->p1.pid_rss_kb[i],
             res->p4.pid_cpu_s[i] - res->p3.pid_cpu_s[i],
             res->p2.pid_cpu_s[i] - res->p1.pid_cpu_s[i]);
  }
  printf("  kernel socket memory (both ends, machine-wide): %.0f B per stream\n",
         res->kernel_per_conn);
  if (o->hold > 0)
    printf("  idle %.1f s: server CPU %.2f %%, loadgen CPU %.2f %%\n", o->hold, res->idle_pct,
           res->gen_idle_pct);
  if (o->events > 0) {
    printf("  events %zu published (%zu errors, backlog max %zu, at most %.3f ms late, held back "
           "%zu times, %zu given up), deliveries %llu of %llu (missing %llu, dup %llu, out of "
           "order %llu, wrong user %llu, unknown %llu)\n",
           r->published, lg_pub_errors(r->pub), r->max_backlog, (double)r->late_max / 1e6,
           r->held_back, r->stalls,
           (unsigned long long)r->deliveries, (unsigned long long)res->expected,
           (unsigned long long)res->missing, (unsigned long long)r->dups,
           (unsigned long long)r->reordered, (unsigned long long)r->wrong,
           (unsigned long long)r->unknown);
    printf("  %.3f s: %.0f deliveries/s, latency p50 %.3f ms p99 %.3f ms max %.3f ms\n",
           res->pub_s, res->dps, res->p50, res->p99, res->pmax);
    printf("  server CPU %.3f s = %.3f us per delivery (%.0f %% of a core); loadgen CPU %.0f %%\n",
           res->srv_cpu, res->srv_us, res->srv_pct, res->gen_pct);
    printf("  streams that got every event of their user: %zu of %zu\n", res->complete,
           res->held);
  }
}

static void print_json(const struct run *r, const struct result *res)
{
  printf("{\"label\":\"%s\",\"streams\":%zu,\"held\":%zu,\"failed\":%zu,\"lost\":%zu,"
         "\"connect_s\":%.3f,\"rss_before_kb\":%ld,\"rss_after_kb\":%ld,"
         "\"rss_per_conn_b\":%.1f,\"kernel_per_conn_b\":%.1f,\"hold_s\":%.1f,"
         "\"idle_cpu_pct\":%.3f,\"gen_idle_cpu_pct\":%.3f,\"events\":%zu,\"pub_errors\":%zu,"
         "\"max_backlog\":%zu,\"pub_late_max_ms\":%.3f,\"pub_held_back\":%zu,"
         "\"deliveries\":%llu,\"expected\":%llu,\"missing\":%llu,"
         "\"dups\":%llu,\"reordered\":%llu,\"wrong_user\":%llu,\"complete_streams\":%zu,"
         "\"duration_s\":%.4f,"
         "\"deliveries_per_s\":%.1f,\"lat_p50_ms\":%.4f,\"lat_p99_ms\":%.4f,"
         "\"lat_max_ms\":%.4f,\"srv_cpu_s\":%.3f,\"srv_cpu_us_per_delivery\":%.4f,"
         "\"srv_cpu_pct\":%.1f,\"gen_cpu_pct\":%.1f,\"procs_ok\":%d}\n",
         r->o.label, r->ss.n, res->held, res->failed, res->lost, res->connect_s,
         res->rss_before_kb, res->rss_after_kb, res->rss_per_conn, res->kernel_per_conn,
         r->o.hold, res->idle_pct, res->gen_idle_pct, r->published,
         r->pub ? lg_pub_errors(r->pub) : 0, r->max_backlog, (double)r->late_max / 1e6,
         r->held_back, (unsigned long long)r->deliveries,
         (unsigned long long)res->expected, (unsigned long long)res->missing,
         (unsigned long long)r->dups, (unsigned long long)r->reordered,
         (unsigned long long)r->wrong, res->complete, res->pub_s,
         res->dps, res->p50, res->p99, res->pmax, res->srv_cpu, res->srv_us, res->srv_pct,
         res->gen_pct, res->procs_ok);
}

/* ---- the run -------------------------------------------------------------- */

/* Allocates the run and its tables, connects the publisher. NULL after
 * printing why. */
static struct run *run_new(const struct opts *o)
{
  struct run *r = calloc(1, sizeof(*r));
  struct sockaddr_in dst;
  struct in_addr src[LG_MAX_SOURCES];
  char err[256], host[64];
  int port;

  if (!r)
    return NULL;
  r->o = *o;
  r->tfd = -1;
  r->base = ((lg_now_ns() / 1000 ^ (int64_t)getpid() * 7919) % 1000000 + 1) * 1000000000LL;
  memset(&dst, 0, sizeof(dst));
  dst.sin_family = AF_INET;
  dst.sin_port = htons((uint16_t)o->port);
  if (inet_pton(AF_INET, o->host, &dst.sin_addr) != 1) {
    fprintf(stderr, "loadgen: --host %s: not an IPv4 address\n", o->host);
    free(r);
    return NULL;
  }
  for (int i = 0; i < o->sources; i++)
    src[i].s_addr = htonl((127u << 24) | (uint32_t)(o->source_first + i));
  if ((r->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
      lg_streams_init(&r->ss, r->epfd, o->users, o->devices, &dst, src, o->sources, o->path,
                      o->host, on_delivery, r) != 0 ||
      !(r->user_open = calloc((size_t)o->users, sizeof(uint32_t))) ||
      !(r->user_events = calloc((size_t)o->users, sizeof(uint32_t))) ||
      !(r->ev_got = calloc((size_t)o->events + 1, sizeof(uint32_t))) ||
      !(r->ev_exp = calloc((size_t)o->events + 1, sizeof(uint32_t)))) {
    fprintf(stderr, "loadgen: out of memory\n");
    return r; /* the caller frees what was made */
  }
  if (o->events > 0) {
    if (host_port(o->mqtt ? o->mqtt : o->http_pub, host, sizeof(host), &port) != 0) {
      fprintf(stderr, "loadgen: expected host:port\n");
      return r;
    }
    r->pub = o->mqtt ? lg_pub_mqtt_new(r->epfd, host, port, o->qos, o->topic, err)
                     : lg_pub_http_new(r->epfd, host, port, o->pub_path, o->pub_conns, err);
    if (!r->pub)
      fprintf(stderr, "loadgen: %s\n", err);
  }
  return r;
}

static void run_free(struct run *r)
{
  if (!r)
    return;
  lg_pub_free(r->pub);
  lg_streams_free(&r->ss);
  if (r->tfd >= 0)
    close(r->tfd);
  if (r->epfd > 0)
    close(r->epfd);
  free(r->ev_got);
  free(r->ev_exp);
  free(r->user_open);
  free(r->user_events);
  free(r->lat);
  free(r);
}

/* The publish phase: events at the rate (a timer) or by the window. */
static int publish_phase(struct run *r, struct result *res, int64_t deadline)
{
  const struct opts *o = &r->o;
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = LG_TAG(LG_K_TIMER, 0)};

  for (size_t i = 0; i < r->ss.n; i++)
    if (r->ss.s[i].state == LG_ST_OPEN)
      r->user_open[r->ss.s[i].user]++;
  if (o->rate > 0) {
    long long period = (long long)(1e9 / o->rate);
    struct itimerspec its = {{period / NS, period % NS}, {0, 1}};
    r->period = period;
    r->t_sched0 = lg_now_ns();
    if ((r->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) < 0 ||
        epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->tfd, &ev) != 0 ||
        timerfd_settime(r->tfd, 0, &its, NULL) != 0) {
      fprintf(stderr, "loadgen: timerfd: %s\n", strerror(errno));
      return -1;
    }
  }
  lg_proc_read(o->pids, o->npids, &res->p3);
  res->c_pub0 = own_cpu_s();
  r->t_progress = lg_now_ns();
  run_loop(r, PH_PUBLISH, deadline);
  res->c_pub1 = own_cpu_s();
  lg_proc_read(o->pids, o->npids, &res->p4);
  if (r->published < (size_t)o->events)
    fprintf(stderr, "loadgen: %s: the time ran out after %zu of %ld events\n", o->label,
            r->published, o->events);
  return 0;
}

int main(int argc, char **argv)
{
  struct opts o;
  struct run *r;
  struct result res;
  long nofile;
  int64_t t0, deadline;
  int rc = 1;

  if (parse_opts(argc, argv, &o))
    return 2;
  signal(SIGPIPE, SIG_IGN);
  nofile = raise_nofile();
  if ((size_t)o.users * (size_t)o.devices + 64 > (size_t)nofile)
    fprintf(stderr, "loadgen: %d streams need more than the open-file limit %ld\n",
            o.users * o.devices, nofile);
  t0 = lg_now_ns();
  deadline = t0 + (int64_t)(o.timeout * NS);
  if (!(r = run_new(&o)) || !r->ev_exp || (o.events > 0 && !r->pub))
    goto out;
  memset(&res, 0, sizeof(res));

  /* connect */
  lg_proc_read(o.pids, o.npids, &res.p0);
  res.k0 = lg_kernel_kb();
  run_loop(r, PH_CONNECT, t0 + (int64_t)(o.connect_timeout * NS));
  res.connect_s = (double)(lg_now_ns() - t0) / NS;
  fprintf(stderr, "loadgen: %s: %zu of %zu streams open in %.2f s (%zu failed)\n", o.label,
          r->ss.open, r->ss.n, res.connect_s, r->ss.failed + (r->ss.n - r->ss.next));

  /* settle, then what the streams cost in memory */
  run_loop(r, PH_WAIT, lg_now_ns() + (int64_t)(o.settle * NS));
  lg_proc_read(o.pids, o.npids, &res.p1);
  res.k1 = lg_kernel_kb();
  res.held = r->ss.open;

  /* hold: what nothing costs */
  res.p2 = res.p1;
  if (o.hold > 0) {
    res.c_hold0 = own_cpu_s();
    run_loop(r, PH_WAIT, lg_now_ns() + (int64_t)(o.hold * NS));
    res.c_hold1 = own_cpu_s();
    lg_proc_read(o.pids, o.npids, &res.p2);
  }

  /* publish */
  res.p3 = res.p4 = res.p2;
  if (o.events > 0 && publish_phase(r, &res, deadline) != 0)
    goto out;

  summarise(r, &res);
  print_text(r, &res);
  if (o.json)
    print_json(r, &res);
  fflush(stdout);
  rc = 0;

out:
  run_free(r);
  return rc;
}
