/* mqtt-sse-bridge: relays sync events from an MQTT broker to browsers over
 * Server-Sent Events. This file is the table of contents: parse the
 * configuration, start the server (hub and HTTP), start MQTT, wait for a
 * signal, stop in reverse order. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "server.h"
#include "config.h"
#include "event.h"
#include "log.h"
#include "mqtt.h"

/* Where log lines go: stderr, or log_file (reopened on SIGHUP, for
 * logrotate). Lines come from several threads. */
struct sink {
  pthread_mutex_t lock;
  FILE *file; /* NULL: stderr */
};

static void log_line(void *ctx, int level, const char *line)
{
  struct sink *s = ctx;
  struct timespec now;
  char ts[32];

  clock_gettime(CLOCK_REALTIME, &now);
  sb_event_format_time(now, ts);
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
          "Options are listed in the README (http_port, mqtt_host, auth, jwt_secret...).\n");
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

/* SIGHUP: reopens the log file and reloads the configuration (the same -c
 * file and flags); a bad one is logged and the old one kept. The server
 * names the options that only a restart applies (log_file among them). */
static void reload(int argc, char **argv, struct sb_server *bridge, struct sink *sink,
                   struct sb_log *log, const struct sb_config *running)
{
  struct sb_config cfg;
  struct sb_err err = {""};

  if (*running->log_file && sink_open(sink, running->log_file, &err))
    SB_LOG(log, SB_LOG_ERROR, "[SSE] SIGHUP: %s", err.msg);
  if (sb_config_init(&cfg))
    return;
  if (parse_args(argc, argv, &cfg, &err) != 0 || sb_server_reload(bridge, &cfg, &err) != 0) {
    SB_LOG(log, SB_LOG_ERROR, "[SSE] SIGHUP: configuration not reloaded: %s", err.msg);
  } else {
    log->level = cfg.log_level;
  }
  sb_config_free(&cfg);
}

int main(int argc, char **argv)
{
  struct sb_config cfg;
  struct sink sink = {PTHREAD_MUTEX_INITIALIZER, NULL};
  struct sb_log log = {log_line, &sink, SB_LOG_INFO};
  struct sb_server *bridge = NULL;
  struct sb_mqtt *mqtt = NULL;
  struct sb_mqtt_ops ops;
  struct sb_err err = {""};
  sigset_t set;
  int rc, sig = SIGTERM;

  /* Signals are taken by sigwait() on this thread only; every thread
   * started below inherits the mask. */
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);

  if (sb_config_init(&cfg)) {
    fprintf(stderr, "mqtt-sse-bridge: out of memory\n");
    return 1;
  }
  if ((rc = parse_args(argc, argv, &cfg, &err)) != 0 || sink_open(&sink, cfg.log_file, &err) != 0) {
    if (rc >= 0 && *err.msg)
      rc = -1;
    if (rc < 0)
      fprintf(stderr, "mqtt-sse-bridge: %s\n", err.msg);
    sb_config_free(&cfg);
    return rc < 0 ? 2 : 0;
  }
  log.level = cfg.log_level;
  raise_fd_limit(&log);

  if (!(bridge = sb_server_new(&cfg, &log, &err)) ||
      !(mqtt = sb_mqtt_new(&cfg, bridge, &log, &err)) ||
      (sb_mqtt_ops(mqtt, &ops), sb_server_set_mqtt(bridge, &ops), sb_server_start(bridge, &err)) ||
      sb_mqtt_start(mqtt, &err)) {
    fprintf(stderr, "mqtt-sse-bridge: %s\n", err.msg);
    if (sink.file)
      SB_LOG(&log, SB_LOG_ERROR, "[SSE] %s", err.msg);
    sb_server_stop(bridge);
    sb_mqtt_free(mqtt);
    sb_server_free(bridge);
    sb_config_free(&cfg);
    return 2;
  }

  for (;;) {
    if (sigwait(&set, &sig) != 0)
      break;
    if (sig != SIGHUP)
      break;
    SB_LOG(&log, SB_LOG_NOTICE, "[SSE] SIGHUP: reopening the log, reloading the configuration");
    reload(argc, argv, bridge, &sink, &log, &cfg);
  }
  SB_LOG(&log, SB_LOG_NOTICE, "[SSE] %s: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");

  /* The server first: the streams end and their presence is cleared while
   * MQTT is still there to say so. */
  sb_server_stop(bridge);
  sb_mqtt_stop(mqtt);
  sb_mqtt_free(mqtt);
  sb_server_free(bridge);
  sb_config_free(&cfg);
  if (sink.file)
    fclose(sink.file);
  return 0;
}
