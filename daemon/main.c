/* mqtt-sse-bridge: relays sync events from an MQTT broker to browsers over
 * Server-Sent Events. main() is the table of contents: parse the
 * configuration, start the server (hub and HTTP), start MQTT, wait for a
 * signal (SIGHUP reloads), stop. Stopping takes the server down before MQTT,
 * so that the streams' presence is cleared while the broker can hear it. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "clock.h"
#include "config.h"
#include "event.h"
#include "log.h"
#include "mqtt.h"
#include "server.h"

/* Where log lines go: stderr, or log_file (reopened on SIGHUP, for
 * logrotate). Lines come from several threads. */
struct sink {
  pthread_mutex_t lock;
  FILE *file; /* NULL: stderr */
};

static void log_line(void *ctx, int level, const char *line)
{
  struct sink *s = ctx;
  char ts[32];

  sb_event_format_time(sb_clock_wall(), ts);
  pthread_mutex_lock(&s->lock);
  fprintf(s->file ? s->file : stderr, "%s %s %s\n", ts, sb_log_level_name(level), line);
  if (s->file)
    fflush(s->file);
  pthread_mutex_unlock(&s->lock);
}

/* Opens (or reopens) path for appending. Returns 0, or -1 with err. */
static int sink_open(struct sink *s, const char *path, struct sb_err *err)
{
  FILE *f;

  if (!*path)
    return 0;
  if (!(f = fopen(path, "ae"))) {
    sb_err_set(err, "log_file: cannot open %.150s: %s", path, strerror(errno));
    return -1;
  }
  setvbuf(f, NULL, _IOLBF, 0);
  pthread_mutex_lock(&s->lock);
  if (s->file)
    fclose(s->file);
  s->file = f;
  pthread_mutex_unlock(&s->lock);
  return 0;
}

static void usage(FILE *f)
{
  fprintf(f,
          "usage: mqtt-sse-bridge [-c FILE] [--OPTION VALUE]...\n"
          "Relays events published on <topic_prefix>/<userId>/<channel> to the SSE\n"
          "connections of that user. FILE holds 'option value' lines; flags override it.\n"
          "Options: man mqtt-sse-bridge, or docs/configuration.md (http_port, mqtt_host,\n"
          "auth, jwt_secret...).\n");
}

/* Reads -c FILE first, then applies --key value flags over it. Returns 0, 1
 * for a clean exit (help, version), or -1 with err set. */
static int parse_args(int argc, char **argv, struct sb_config *cfg, struct sb_err *err)
{
  const char *file = NULL;

  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      usage(stdout);
      return 1;
    }
    if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--version")) {
      printf("mqtt-sse-bridge %s\n", SB_VERSION);
      return 1;
    }
    if (!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) {
      if (i + 1 >= argc) {
        sb_err_set(err, "-c: needs a file name");
        return -1;
      }
      file = argv[++i];
    }
  }
  if (file && sb_config_load_file(cfg, SB_FORM_DAEMON, file, err))
    return -1;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) {
      i++;
      continue;
    }
    if (strncmp(argv[i], "--", 2) != 0) {
      sb_err_set(err, "%.64s: unexpected argument", argv[i]);
      return -1;
    }
    if (i + 1 >= argc) {
      sb_err_set(err, "%.64s: needs a value", argv[i] + 2);
      return -1;
    }
    if (sb_config_set(cfg, SB_FORM_DAEMON, argv[i] + 2, argv[i + 1], err))
      return -1;
    i++;
  }
  return sb_config_finish(cfg, err) ? -1 : 0;
}

/* Each SSE stream is a socket: take the whole file-descriptor allowance. */
static void raise_fd_limit(const struct sb_log *log)
{
  struct rlimit rl;

  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max)
    return;
  rl.rlim_cur = rl.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
    SB_LOG(log, SB_LOG_WARNING, "[SSE] cannot raise the open-file limit");
}

/* What the daemon runs, in the order main() starts it. */
struct daemon {
  int argc; /* the command line, read again by a reload */
  char **argv;
  sigset_t signals; /* taken by sigwait() on the main thread only */
  struct sink sink;
  struct sb_log log;
  struct sb_config cfg; /* as started; a reload changes the server's copy */
  struct sb_server *server;
  struct sb_mqtt *mqtt;
};

/* Blocks the signals that wait_for_stop() takes, before any thread starts
 * (every thread inherits the mask), and ignores SIGPIPE. */
static void take_signals(struct daemon *d)
{
  sigemptyset(&d->signals);
  sigaddset(&d->signals, SIGINT);
  sigaddset(&d->signals, SIGTERM);
  sigaddset(&d->signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &d->signals, NULL);
  signal(SIGPIPE, SIG_IGN);
}

/* Reads the configuration and opens the log. Returns 0 to go on, 1 for a
 * clean exit (help, version), or -1 with err set. */
static int configure(struct daemon *d, struct sb_err *err)
{
  int rc = parse_args(d->argc, d->argv, &d->cfg, err);

  if (rc == 0 && sink_open(&d->sink, d->cfg.log_file, err) != 0)
    rc = -1;
  if (rc == 0)
    d->log.level = d->cfg.log_level;
  return rc;
}

/* Starts the server (after raising the open-file limit), then the MQTT
 * client that feeds it. Returns 0 or -1 with err set; what started is left
 * for stop(). */
static int start(struct daemon *d, struct sb_err *err)
{
  struct sb_mqtt_ops ops;

  raise_fd_limit(&d->log);
  if (!(d->server = sb_server_new(&d->cfg, &d->log, err)) ||
      !(d->mqtt = sb_mqtt_new(&d->cfg, d->server, &d->log, err)))
    return -1;
  sb_mqtt_ops(d->mqtt, &ops);
  sb_server_set_mqtt(d->server, &ops);
  if (sb_server_start(d->server, err) || sb_mqtt_start(d->mqtt, err))
    return -1;
  return 0;
}

/* SIGHUP: reopens the log file and reloads the configuration (the same -c
 * file and flags); a bad one is logged and the old one kept. The server
 * names the options that only a restart applies (log_file among them). */
static void reload(struct daemon *d)
{
  struct sb_config cfg;
  struct sb_err err = {""};

  if (*d->cfg.log_file && sink_open(&d->sink, d->cfg.log_file, &err))
    SB_LOG(&d->log, SB_LOG_ERROR, "[SSE] SIGHUP: %s", err.msg);
  if (sb_config_init(&cfg))
    return;
  if (parse_args(d->argc, d->argv, &cfg, &err) != 0 || sb_server_reload(d->server, &cfg, &err) != 0)
    SB_LOG(&d->log, SB_LOG_ERROR, "[SSE] SIGHUP: configuration not reloaded: %s", err.msg);
  else
    d->log.level = cfg.log_level;
  sb_config_free(&cfg);
}

/* Waits for SIGINT or SIGTERM, reloading on each SIGHUP meanwhile. Returns
 * the signal that ends the run. */
static int wait_for_stop(struct daemon *d)
{
  int sig = SIGTERM;

  while (sigwait(&d->signals, &sig) == 0 && sig == SIGHUP) {
    SB_LOG(&d->log, SB_LOG_NOTICE, "[SSE] SIGHUP: reopening the log, reloading the configuration");
    reload(d);
  }
  return sig;
}

/* Stops and frees what start() started, the server first: the streams end
 * and their presence is cleared while MQTT is still there to say so. */
static void stop(struct daemon *d)
{
  sb_server_stop(d->server);
  sb_mqtt_stop(d->mqtt);
  sb_mqtt_free(d->mqtt);
  sb_server_free(d->server);
  sb_config_free(&d->cfg);
  if (d->sink.file)
    fclose(d->sink.file);
}

int main(int argc, char **argv)
{
  struct daemon d = {.argc = argc, .argv = argv, .sink = {PTHREAD_MUTEX_INITIALIZER, NULL}};
  struct sb_err err = {""};
  int rc;

  d.log = (struct sb_log){log_line, &d.sink, SB_LOG_INFO};
  take_signals(&d);
  if (sb_config_init(&d.cfg)) {
    fprintf(stderr, "mqtt-sse-bridge: out of memory\n");
    return 1;
  }
  if ((rc = configure(&d, &err)) != 0) {
    if (rc < 0)
      fprintf(stderr, "mqtt-sse-bridge: %s\n", err.msg);
    stop(&d);
    return rc < 0 ? 2 : 0;
  }
  if (start(&d, &err) != 0) {
    fprintf(stderr, "mqtt-sse-bridge: %s\n", err.msg);
    if (d.sink.file)
      SB_LOG(&d.log, SB_LOG_ERROR, "[SSE] %s", err.msg);
    stop(&d);
    return 2;
  }
  /* not inside SB_LOG: below log_level notice it evaluates nothing */
  rc = wait_for_stop(&d);
  SB_LOG(&d.log, SB_LOG_NOTICE, "[SSE] %s: stopping", rc == SIGINT ? "SIGINT" : "SIGTERM");
  stop(&d);
  return 0;
}
