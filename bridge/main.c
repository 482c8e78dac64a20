/* mqtt-sse-bridge: relays sync events from an MQTT broker to browsers over
 * Server-Sent Events. This file is the table of contents: parse the
 * configuration, start the server (hub and HTTP), start MQTT, wait for a
 * signal, stop in reverse order. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bridge.h"
#include "config.h"
#include "event.h"
#include "log.h"
#include "mqtt.h"

static void log_stderr(void *ctx, int level, const char *line)
{
  struct timespec now;
  char ts[32];

  (void)ctx;
  clock_gettime(CLOCK_REALTIME, &now);
  sb_event_format_time(now, ts);
  fprintf(stderr, "%s %s %s\n", ts, sb_log_level_name(level), line);
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
static int parse_args(int argc, char **argv, struct sb_config *cfg, char *err)
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
        snprintf(err, SB_CONFIG_ERR_SIZE, "-c: needs a file name");
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
      snprintf(err, SB_CONFIG_ERR_SIZE, "%.64s: unexpected argument", argv[i]);
      return -1;
    }
    if (i + 1 >= argc) {
      snprintf(err, SB_CONFIG_ERR_SIZE, "%.64s: needs a value", argv[i] + 2);
      return -1;
    }
    if (sb_config_set(cfg, SB_FORM_DAEMON, argv[i] + 2, argv[i + 1], err))
      return -1;
    i++;
  }
  return sb_config_finish(cfg, SB_FORM_DAEMON, err) ? -1 : 0;
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

static int wait_for_signal(const sigset_t *set, const struct sb_log *log)
{
  int sig;

  for (;;) {
    if (sigwait(set, &sig) != 0)
      return -1;
    if (sig != SIGHUP)
      return sig;
    SB_LOG(log, SB_LOG_NOTICE, "[SSE] SIGHUP: nothing to reload; logs go to stderr");
  }
}

int main(int argc, char **argv)
{
  struct sb_config cfg;
  struct sb_log log = {log_stderr, NULL, SB_LOG_INFO};
  struct sb_bridge *bridge = NULL;
  struct sb_mqtt *mqtt = NULL;
  char err[SB_CONFIG_ERR_SIZE] = "";
  sigset_t set;
  int rc, sig;

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
  if ((rc = parse_args(argc, argv, &cfg, err)) != 0) {
    if (rc < 0)
      fprintf(stderr, "mqtt-sse-bridge: %s\n", err);
    sb_config_free(&cfg);
    return rc < 0 ? 2 : 0;
  }
  log.level = cfg.log_level;
  raise_fd_limit(&log);

  if (!(bridge = sb_bridge_new(&cfg, &log, err)) ||
      !(mqtt = sb_mqtt_new(&cfg, bridge, &log, err)) ||
      (sb_bridge_set_publisher(bridge, sb_mqtt_publish, mqtt), sb_bridge_start(bridge, err)) ||
      sb_mqtt_start(mqtt, err)) {
    fprintf(stderr, "mqtt-sse-bridge: %s\n", err);
    sb_bridge_stop(bridge);
    sb_mqtt_free(mqtt);
    sb_bridge_free(bridge);
    sb_config_free(&cfg);
    return 2;
  }

  sig = wait_for_signal(&set, &log);
  SB_LOG(&log, SB_LOG_NOTICE, "[SSE] %s: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");

  sb_mqtt_stop(mqtt);
  sb_bridge_stop(bridge);
  sb_mqtt_free(mqtt);
  sb_bridge_free(bridge);
  sb_config_free(&cfg);
  return 0;
}
