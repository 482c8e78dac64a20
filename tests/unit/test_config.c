/* Unit tests of config.c: defaults, checks, config lines and files, the
 * option table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "err.h"
#include "log.h"

/* ---- helpers -------------------------------------------------------------- */

static int setup(void **state)
{
  struct sb_config *cfg = calloc(1, sizeof(*cfg));
  if (!cfg || sb_config_init(cfg) != 0) {
    free(cfg);
    return -1;
  }
  *state = cfg;
  return 0;
}

static int teardown(void **state)
{
  sb_config_free(*state);
  free(*state);
  return 0;
}

/* Writes text to a new temporary file; path receives its name. */
static void temp_file(char path[64], const char *text)
{
  FILE *f;
  int fd;

  snprintf(path, 64, "/tmp/sb-test-config-XXXXXX");
  fd = mkstemp(path);
  assert_true(fd >= 0);
  f = fdopen(fd, "w");
  assert_non_null(f);
  assert_int_equal(fputs(text, f) >= 0, 1);
  assert_int_equal(fclose(f), 0);
}

static int str_eq(const char *a, const char *b)
{
  return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

/* Asserts that every option of a and b holds the same value. */
static void assert_config_equal(const struct sb_config *a, const struct sb_config *b)
{
#define S(field)                                                                   \
  if (!str_eq(a->field, b->field))                                                 \
    fail_msg(#field " differs: '%s' vs '%s'", a->field ? a->field : "(null)",     \
             b->field ? b->field : "(null)");
#define N(field)                                                                   \
  if (a->field != b->field)                                                        \
    fail_msg(#field " differs: %ld vs %ld", (long)a->field, (long)b->field);
  S(http_bind) N(http_port) S(sse_path) S(web_root) S(cors_origins)
  S(http_tls_cert) S(http_tls_key) S(topic_prefix) N(heartbeat_interval) N(retry_ms) N(max_connections)
  N(max_connections_per_user) N(max_event_bytes) N(max_queue_bytes) N(replay_buffer)
  S(presence_prefix) S(replay_dir) N(log_level)
  N(auth) S(jwt_secret) S(jwt_secret_file) S(jwt_public_key_file) S(jwt_audience)
  S(jwt_issuer) S(jwt_user_claim) S(jwt_cookie) N(jwt_leeway)
  S(mqtt_host) N(mqtt_port) S(mqtt_username) S(mqtt_password) S(mqtt_client_id)
  N(mqtt_qos) S(mqtt_cafile) S(mqtt_certfile) S(mqtt_keyfile) S(log_file) N(subscribe_mode)
#undef S
#undef N
}

/* ---- defaults ------------------------------------------------------------- */

static void test_defaults(void **state)
{
  struct sb_config *c = *state;

  assert_string_equal(c->http_bind, "127.0.0.1");
  assert_int_equal(c->http_port, 8080);
  assert_string_equal(c->sse_path, "/api/sse");
  assert_string_equal(c->web_root, "");
  assert_string_equal(c->cors_origins, "");
  assert_string_equal(c->http_tls_cert, "");
  assert_string_equal(c->http_tls_key, "");
  assert_string_equal(c->topic_prefix, "sync");
  assert_int_equal(c->heartbeat_interval, 25);
  assert_int_equal(c->retry_ms, 1000);
  assert_int_equal(c->max_connections, 10000);
  assert_int_equal(c->max_connections_per_user, 64);
  assert_int_equal(c->max_event_bytes, 65536);
  assert_int_equal(c->max_queue_bytes, 1048576);
  assert_int_equal(c->replay_buffer, 256);
  assert_string_equal(c->presence_prefix, "");
  assert_int_equal(c->log_level, SB_LOG_INFO);
  assert_int_equal(c->auth, SB_AUTH_JWT);
  assert_string_equal(c->jwt_secret, "");
  assert_string_equal(c->jwt_secret_file, "");
  assert_string_equal(c->jwt_public_key_file, "");
  assert_string_equal(c->jwt_audience, "");
  assert_string_equal(c->jwt_issuer, "");
  assert_string_equal(c->jwt_user_claim, "sub");
  assert_string_equal(c->jwt_cookie, "sse_token");
  assert_int_equal(c->jwt_leeway, 0);
  assert_string_equal(c->mqtt_host, "localhost");
  assert_int_equal(c->mqtt_port, 1883);
  assert_string_equal(c->mqtt_username, "");
  assert_string_equal(c->mqtt_password, "");
  assert_string_equal(c->mqtt_client_id, "");
  assert_int_equal(c->mqtt_qos, 1);
  assert_string_equal(c->mqtt_cafile, "");
  assert_string_equal(c->mqtt_certfile, "");
  assert_string_equal(c->mqtt_keyfile, "");
  assert_int_equal(c->subscribe_mode, SB_SUBSCRIBE_WILDCARD);
}

static void test_is_option(void **state)
{
  static const char *const shared[] = {
    "http_bind", "http_port", "sse_path", "topic_prefix", "heartbeat_interval", "retry_ms",
    "max_connections", "max_connections_per_user", "max_event_bytes", "max_queue_bytes",
    "replay_buffer", "auth", "jwt_secret", "jwt_secret_file", "jwt_public_key_file",
    "jwt_audience", "jwt_issuer", "jwt_user_claim", "jwt_cookie", "jwt_leeway", "cors_origins",
    "web_root", "presence_prefix", "replay_dir", "log_level", "http_tls_cert", "http_tls_key",
  };
  static const char *const daemon_only[] = {
    "mqtt_host", "mqtt_port", "mqtt_username", "mqtt_password", "mqtt_client_id", "mqtt_qos",
    "mqtt_cafile", "mqtt_certfile", "mqtt_keyfile", "subscribe_mode", "log_file",
  };
  (void)state;

  for (size_t i = 0; i < sizeof(shared) / sizeof(shared[0]); i++) {
    if (!sb_config_is_option(SB_FORM_DAEMON, shared[i]) ||
        !sb_config_is_option(SB_FORM_PLUGIN, shared[i]))
      fail_msg("%s should be an option of both forms", shared[i]);
  }
  for (size_t i = 0; i < sizeof(daemon_only) / sizeof(daemon_only[0]); i++) {
    if (sb_config_is_option(SB_FORM_DAEMON, daemon_only[i]) != 1 ||
        sb_config_is_option(SB_FORM_PLUGIN, daemon_only[i]) != 0)
      fail_msg("%s should be an option of the daemon only", daemon_only[i]);
  }
  assert_int_equal(sb_config_is_option(SB_FORM_DAEMON, "nope"), 0);
  assert_int_equal(sb_config_is_option(SB_FORM_PLUGIN, "nope"), 0);
  assert_int_equal(sb_config_is_option(SB_FORM_DAEMON, "HTTP_PORT"), 0);
  assert_int_equal(sb_config_is_option(SB_FORM_DAEMON, ""), 0);
}

/* ---- single options ------------------------------------------------------- */

static void test_set_good_values(void **state)
{
  struct sb_config *c = *state;
  struct sb_err err;

#define SET(k, v) assert_int_equal(sb_config_set(c, SB_FORM_DAEMON, k, v, &err), 0)
  SET("http_bind", "0.0.0.0");
  assert_string_equal(c->http_bind, "0.0.0.0");
  SET("http_bind", "::1");
  assert_string_equal(c->http_bind, "::1");
  SET("http_port", "65535");
  assert_int_equal(c->http_port, 65535);
  SET("http_port", "0");
  assert_int_equal(c->http_port, 0);
  SET("sse_path", "/events/stream");
  assert_string_equal(c->sse_path, "/events/stream");
  SET("topic_prefix", "app/sync");
  assert_string_equal(c->topic_prefix, "app/sync");
  SET("heartbeat_interval", "1");
  assert_int_equal(c->heartbeat_interval, 1);
  SET("heartbeat_interval", "3600");
  assert_int_equal(c->heartbeat_interval, 3600);
  SET("retry_ms", "0");
  assert_int_equal(c->retry_ms, 0);
  SET("max_connections", "5");
  assert_int_equal(c->max_connections, 5);
  SET("max_connections_per_user", "1");
  assert_int_equal(c->max_connections_per_user, 1);
  SET("max_event_bytes", "64");
  assert_int_equal(c->max_event_bytes, 64);
  SET("max_event_bytes", "16777216");
  assert_int_equal(c->max_event_bytes, 16777216);
  SET("max_queue_bytes", "1024");
  assert_int_equal(c->max_queue_bytes, 1024);
  SET("replay_buffer", "0");
  assert_int_equal(c->replay_buffer, 0);
  SET("presence_prefix", "presence");
  assert_string_equal(c->presence_prefix, "presence");
  SET("presence_prefix", "");
  assert_string_equal(c->presence_prefix, "");
  SET("log_level", "debug");
  assert_int_equal(c->log_level, SB_LOG_DEBUG);
  SET("log_level", "warn");
  assert_int_equal(c->log_level, SB_LOG_WARNING);
  SET("log_level", "error");
  assert_int_equal(c->log_level, SB_LOG_ERROR);
  SET("auth", "none");
  assert_int_equal(c->auth, SB_AUTH_NONE);
  SET("auth", "jwt");
  assert_int_equal(c->auth, SB_AUTH_JWT);
  SET("jwt_secret", "s3cr3t with spaces");
  assert_string_equal(c->jwt_secret, "s3cr3t with spaces");
  SET("jwt_user_claim", "user_id");
  assert_string_equal(c->jwt_user_claim, "user_id");
  SET("jwt_cookie", "my-token_1");
  assert_string_equal(c->jwt_cookie, "my-token_1");
  SET("jwt_leeway", "30");
  assert_int_equal(c->jwt_leeway, 30);
  SET("cors_origins", "https://a.example https://b.example");
  assert_string_equal(c->cors_origins, "https://a.example https://b.example");
  SET("mqtt_host", "broker.example");
  assert_string_equal(c->mqtt_host, "broker.example");
  SET("mqtt_port", "8883");
  assert_int_equal(c->mqtt_port, 8883);
  SET("mqtt_qos", "0");
  assert_int_equal(c->mqtt_qos, 0);
  SET("mqtt_qos", "2");
  assert_int_equal(c->mqtt_qos, 2);
  SET("subscribe_mode", "wildcard");
  assert_int_equal(c->subscribe_mode, SB_SUBSCRIBE_WILDCARD);
#undef SET
}

static void test_set_bad_values(void **state)
{
  static const char *const bad[][2] = {
    {"http_bind", "localhost"},
    {"http_bind", "256.1.1.1"},
    {"http_bind", ""},
    {"http_bind", "127.0.0.1:80"},
    {"http_port", "-1"},
    {"http_port", "65536"},
    {"http_port", "http"},
    {"http_port", ""},
    {"http_port", "80x"},
    {"http_port", "8080.0"},
    {"http_port", "99999999999999999999999"},
    {"sse_path", "api/sse"},
    {"sse_path", "/a b"},
    {"sse_path", "/a?b=1"},
    {"sse_path", "/a#b"},
    {"sse_path", ""},
    {"sse_path", "/"},
    {"sse_path", "/healthz"},
    {"sse_path", "/metrics"},
    {"sse_path", "/api/publish"},
    {"sse_path", "/api/presence"},
    {"sse_path", "/index.html"},
    {"sse_path", "/sse-client.js"},
    {"sse_path", "/device.js"},
    {"sse_path", "/events.json"},
    {"topic_prefix", ""},
    {"topic_prefix", "/sync"},
    {"topic_prefix", "sync/"},
    {"topic_prefix", "a//b"},
    {"topic_prefix", "sync/+"},
    {"topic_prefix", "sync/#"},
    {"topic_prefix", "sy\x01nc"},
    {"heartbeat_interval", "0"},
    {"heartbeat_interval", "3601"},
    {"heartbeat_interval", "ten"},
    {"retry_ms", "-1"},
    {"retry_ms", "3600001"},
    {"max_connections", "0"},
    {"max_connections", "1000001"},
    {"max_connections_per_user", "0"},
    {"max_event_bytes", "63"},
    {"max_event_bytes", "16777217"},
    {"max_event_bytes", "1e6"},
    {"max_queue_bytes", "1023"},
    {"replay_buffer", "-1"},
    {"replay_buffer", "1000001"},
    {"presence_prefix", "/presence"},
    {"presence_prefix", "p/+"},
    {"log_level", "verbose"},
    {"log_level", ""},
    {"auth", "basic"},
    {"auth", ""},
    {"auth", "JWT"},
    {"jwt_user_claim", ""},
    {"jwt_cookie", ""},
    {"jwt_cookie", "a b"},
    {"jwt_cookie", "a;b"},
    {"jwt_cookie", "a=b"},
    {"jwt_leeway", "-1"},
    {"jwt_leeway", "3601"},
    {"mqtt_host", ""},
    {"mqtt_host", "a,,b"},
    {"mqtt_host", "a,"},
    {"mqtt_host", "::1"},
    {"mqtt_host", "[::1"},
    {"mqtt_host", "[::1]x"},
    {"mqtt_host", "[nope]:1883"},
    {"mqtt_host", "a:0"},
    {"mqtt_host", "a:65536"},
    {"mqtt_host", "a:x"},
    {"mqtt_host", "a b"},
    {"mqtt_port", "0"},
    {"mqtt_port", "65536"},
    {"mqtt_qos", "3"},
    {"mqtt_qos", "-1"},
    {"subscribe_mode", "all"},
  };
  struct sb_config *c = *state, before;
  struct sb_err err;

  assert_int_equal(sb_config_copy(&before, c), 0);
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    const char *key = bad[i][0], *value = bad[i][1];
    int rc;
    err.msg[0] = '\0';
    rc = sb_config_set(c, SB_FORM_DAEMON, key, value, &err);
    if (rc != SB_EINVAL)
      fail_msg("%s '%s' was accepted (rc %d)", key, value, rc);
    if (!strstr(err.msg, key))
      fail_msg("%s '%s': the message does not name the option: %s", key, value, err.msg);
    /* nothing changed */
    assert_config_equal(c, &before);
  }
  sb_config_free(&before);
}

static void test_unknown_option(void **state)
{
  struct sb_config *c = *state, before;
  struct sb_err err;

  assert_int_equal(sb_config_copy(&before, c), 0);
  assert_int_equal(sb_config_set(c, SB_FORM_DAEMON, "http_prot", "80", &err), SB_EINVAL);
  assert_non_null(strstr(err.msg, "http_prot"));
  assert_non_null(strstr(err.msg, "unknown option"));
  assert_int_equal(sb_config_set(c, SB_FORM_PLUGIN, "listen", "1", &err), SB_EINVAL);
  assert_non_null(strstr(err.msg, "listen"));
  assert_int_equal(sb_config_set(c, SB_FORM_DAEMON, "HTTP_PORT", "80", &err), SB_EINVAL);
  assert_non_null(strstr(err.msg, "HTTP_PORT"));
  assert_config_equal(c, &before);
  sb_config_free(&before);
}

static void test_missing_value(void **state)
{
  struct sb_config *c = *state;
  struct sb_err err;

  assert_int_equal(sb_config_set(c, SB_FORM_DAEMON, "http_port", NULL, &err), SB_EINVAL);
  assert_non_null(strstr(err.msg, "http_port"));
  assert_int_equal(c->http_port, 8080);
}

static void test_daemon_only_refused_in_plugin(void **state)
{
  static const char *const daemon_only[][2] = {
    {"mqtt_host", "broker"},   {"mqtt_port", "1884"},      {"mqtt_username", "u"},
    {"mqtt_password", "p"},    {"mqtt_client_id", "c"},    {"mqtt_qos", "2"},
    {"mqtt_cafile", "/ca"},    {"mqtt_certfile", "/cert"}, {"mqtt_keyfile", "/key"},
    {"subscribe_mode", "wildcard"},
  };
  struct sb_config *c = *state, before;
  struct sb_err err;

  assert_int_equal(sb_config_copy(&before, c), 0);
  for (size_t i = 0; i < sizeof(daemon_only) / sizeof(daemon_only[0]); i++) {
    err.msg[0] = '\0';
    if (sb_config_set(c, SB_FORM_PLUGIN, daemon_only[i][0], daemon_only[i][1], &err) != SB_EINVAL)
      fail_msg("%s accepted in the plugin form", daemon_only[i][0]);
    if (!strstr(err.msg, daemon_only[i][0]))
      fail_msg("%s: the message does not name the option: %s", daemon_only[i][0], err.msg);
  }
  assert_config_equal(c, &before);
  /* the same values are fine for the daemon */
  for (size_t i = 0; i < sizeof(daemon_only) / sizeof(daemon_only[0]); i++)
    if (sb_config_set(c, SB_FORM_DAEMON, daemon_only[i][0], daemon_only[i][1], &err) != 0)
      fail_msg("%s refused in the daemon form: %s", daemon_only[i][0], err.msg);
  assert_string_equal(c->mqtt_host, "broker");
  assert_int_equal(c->mqtt_port, 1884);
  assert_int_equal(c->mqtt_qos, 2);
  assert_string_equal(c->mqtt_keyfile, "/key");
  /* shared options are fine for the plugin */
  assert_int_equal(sb_config_set(c, SB_FORM_PLUGIN, "http_port", "9090", &err), 0);
  assert_int_equal(c->http_port, 9090);
  sb_config_free(&before);
}

static void test_subscribe_mode_per_user(void **state)
{
  struct sb_config *c = *state;
  struct sb_err err;

  assert_int_equal(c->subscribe_mode, SB_SUBSCRIBE_WILDCARD);
  assert_int_equal(sb_config_set(c, SB_FORM_DAEMON, "subscribe_mode", "per_user", &err), 0);
  assert_int_equal(c->subscribe_mode, SB_SUBSCRIBE_PER_USER);
  err.msg[0] = '\0';
  assert_int_equal(sb_config_set(c, SB_FORM_DAEMON, "subscribe_mode", "topic", &err), SB_EINVAL);
  assert_non_null(strstr(err.msg, "subscribe_mode"));
  assert_int_equal(c->subscribe_mode, SB_SUBSCRIBE_PER_USER);
  /* the broker decides what a plugin sees: no subscription to choose */
  assert_int_equal(sb_config_set(c, SB_FORM_PLUGIN, "subscribe_mode", "per_user", &err), SB_EINVAL);
}

/* ---- config lines and files ----------------------------------------------- */

static void test_config_line(void **state)
{
  struct sb_config *c = *state, before;
  struct sb_err err;

  /* comments and blank lines change nothing */
  assert_int_equal(sb_config_copy(&before, c), 0);
  assert_int_equal(sb_config_line(c, SB_FORM_DAEMON, "", &err), 0);
  assert_int_equal(sb_config_line(c, SB_FORM_DAEMON, "\n", &err), 0);
  assert_int_equal(sb_config_line(c, SB_FORM_DAEMON, "\r\n", &err), 0);
  assert_int_equal(sb_config_line(c, SB_FORM_DAEMON, "   \t  ", &err), 0);
  assert_int_equal(sb_config_line(c, SB_FORM_DAEMON, "# http_port 1", &err), 0);
  assert_int_equal(sb_config_line(c, SB_FORM_DAEMON, "   # http_port 1\n", &err), 0);
  assert_int_equal(sb_config_line(c, SB_FORM_DAEMON, "#", &err), 0);
  assert_config_equal(c, &before);
  sb_config_free(&before);

  assert_int_equal(sb_config_line(c, SB_FORM_DAEMON, "http_port 9000", &err), 0);
  assert_int_equal(c->http_port, 9000);
  assert_int_equal(sb_config_line(c, SB_FORM_DAEMON, "  http_port\t\t9001  \r\n", &err), 0);
  assert_int_equal(c->http_port, 9001);
  assert_int_equal(sb_config_line(c, SB_FORM_DAEMON, "sse_path /events\n", &err), 0);
  assert_string_equal(c->sse_path, "/events");
  /* inner spaces of a value are kept, outer ones are not */
  assert_int_equal(sb_config_line(c, SB_FORM_DAEMON, "jwt_secret   a b  c \n", &err), 0);
  assert_string_equal(c->jwt_secret, "a b  c");
  assert_int_equal(sb_config_line(c, SB_FORM_PLUGIN, "auth none", &err), 0);
  assert_int_equal(c->auth, SB_AUTH_NONE);

  /* errors name the option */
  assert_int_equal(sb_config_line(c, SB_FORM_DAEMON, "http_port", &err), SB_EINVAL);
  assert_non_null(strstr(err.msg, "http_port"));
  assert_int_equal(sb_config_line(c, SB_FORM_DAEMON, "http_port 9x", &err), SB_EINVAL);
  assert_non_null(strstr(err.msg, "http_port"));
  assert_int_equal(c->http_port, 9001);
  assert_int_equal(sb_config_line(c, SB_FORM_DAEMON, "colour blue", &err), SB_EINVAL);
  assert_non_null(strstr(err.msg, "colour"));
  assert_int_equal(sb_config_line(c, SB_FORM_PLUGIN, "mqtt_host broker", &err), SB_EINVAL);
  assert_non_null(strstr(err.msg, "mqtt_host"));
  /* a key longer than any option */
  assert_int_equal(sb_config_line(c, SB_FORM_DAEMON,
                                  "an_option_name_that_is_much_longer_than_any_real_option_ever_is 1",
                                  &err),
                   SB_EINVAL);
  assert_non_null(strstr(err.msg, "an_option_name"));
  assert_non_null(strstr(err.msg, "unknown option"));
}

static void test_load_file(void **state)
{
  struct sb_config *c = *state;
  struct sb_err err;
  char path[64];

  temp_file(path, "# mqtt-sse-bridge test config\n"
                  "\n"
                  "http_bind 0.0.0.0\n"
                  "http_port 8181\n"
                  "   # indented comment\n"
                  "topic_prefix app/sync\r\n"
                  "replay_buffer 16\n"
                  "auth none\n"
                  "mqtt_qos 0"); /* no newline at the end */
  assert_int_equal(sb_config_load_file(c, SB_FORM_DAEMON, path, &err), 0);
  assert_string_equal(c->http_bind, "0.0.0.0");
  assert_int_equal(c->http_port, 8181);
  assert_string_equal(c->topic_prefix, "app/sync");
  assert_int_equal(c->replay_buffer, 16);
  assert_int_equal(c->auth, SB_AUTH_NONE);
  assert_int_equal(c->mqtt_qos, 0);
  /* untouched options keep their defaults */
  assert_string_equal(c->sse_path, "/api/sse");
  assert_int_equal(c->heartbeat_interval, 25);
  unlink(path);
}

static void test_load_file_errors(void **state)
{
  struct sb_config *c = *state;
  struct sb_err err;
  char path[64], want[128];

  temp_file(path, "http_port 8181\n"
                  "# fine so far\n"
                  "heartbeat_interval 0\n"
                  "retry_ms 5\n");
  assert_int_equal(sb_config_load_file(c, SB_FORM_DAEMON, path, &err), SB_EINVAL);
  snprintf(want, sizeof(want), "%s:3:", path);
  if (!strstr(err.msg, want) || !strstr(err.msg, "heartbeat_interval"))
    fail_msg("want '%s' and the option in: %s", want, err.msg);
  /* nothing after the bad line is applied */
  assert_int_equal(c->retry_ms, 1000);
  unlink(path);

  temp_file(path, "bogus_option 1\n");
  assert_int_equal(sb_config_load_file(c, SB_FORM_DAEMON, path, &err), SB_EINVAL);
  snprintf(want, sizeof(want), "%s:1:", path);
  assert_non_null(strstr(err.msg, want));
  assert_non_null(strstr(err.msg, "bogus_option"));
  unlink(path);

  /* a daemon file in the plugin form */
  temp_file(path, "http_port 1\n\nmqtt_port 1884\n");
  assert_int_equal(sb_config_load_file(c, SB_FORM_PLUGIN, path, &err), SB_EINVAL);
  snprintf(want, sizeof(want), "%s:3:", path);
  assert_non_null(strstr(err.msg, want));
  assert_non_null(strstr(err.msg, "mqtt_port"));
  unlink(path);

  assert_int_equal(sb_config_load_file(c, SB_FORM_DAEMON, "/nonexistent/sb.conf", &err), SB_EIO);
  assert_non_null(strstr(err.msg, "/nonexistent/sb.conf"));
}

/* ---- whole-config checks -------------------------------------------------- */

static void test_finish_jwt_needs_key(void **state)
{
  struct sb_config *c = *state;
  struct sb_err err;

  /* in both forms: the whole-config checks are the same */
  err.msg[0] = '\0';
  assert_int_equal(sb_config_finish(c, &err), SB_EINVAL);
  assert_true(strncmp(err.msg, "auth", 4) == 0);
}

static void test_finish_auth_none(void **state)
{
  struct sb_config *c = *state;
  struct sb_err err;

  assert_int_equal(sb_config_set(c, SB_FORM_DAEMON, "auth", "none", &err), 0);
  assert_int_equal(sb_config_finish(c, &err), 0);
}

/* 32 and 31 bytes */
#define SECRET_32 "0123456789abcdef0123456789abcdef"
#define SECRET_31 "0123456789abcdef0123456789abcde"

static void test_finish_secret(void **state)
{
  struct sb_config *c = *state;
  struct sb_err err;

  assert_int_equal(sb_config_set(c, SB_FORM_DAEMON, "jwt_secret", SECRET_32, &err), 0);
  assert_int_equal(sb_config_finish(c, &err), 0);
  assert_string_equal(c->jwt_secret, SECRET_32);
}

static void test_finish_short_secret_refused(void **state)
{
  struct sb_config *c = *state;
  struct sb_err err = {""};
  char path[64];

  /* an HS256 secret under 32 bytes, given inline or in a file, whatever auth */
  assert_int_equal(sb_config_set(c, SB_FORM_DAEMON, "jwt_secret", SECRET_31, &err), 0);
  assert_int_equal(sb_config_finish(c, &err), SB_EINVAL);
  assert_true(strncmp(err.msg, "jwt_secret:", 11) == 0);
  assert_non_null(strstr(err.msg, "32"));
  assert_int_equal(sb_config_set(c, SB_FORM_DAEMON, "jwt_secret", "k", &err), 0);
  assert_int_equal(sb_config_set(c, SB_FORM_DAEMON, "auth", "none", &err), 0);
  assert_int_equal(sb_config_finish(c, &err), SB_EINVAL);
  assert_true(strncmp(err.msg, "jwt_secret:", 11) == 0);

  sb_config_free(c);
  assert_int_equal(sb_config_init(c), 0);
  temp_file(path, SECRET_31 "\n");
  assert_int_equal(sb_config_set(c, SB_FORM_DAEMON, "jwt_secret_file", path, &err), 0);
  assert_int_equal(sb_config_finish(c, &err), SB_EINVAL);
  assert_true(strncmp(err.msg, "jwt_secret_file:", 16) == 0);
  unlink(path);
}

/* sse_path may not be a path the server answers otherwise: the message
 * names sse_path and what it collides with */
static void test_sse_path_collisions(void **state)
{
  static const char *const taken[] = {"/", "/healthz", "/metrics", "/api/publish",
                                      "/api/presence", "/index.html", "/sse-client.js",
                                      "/device.js", "/favicon.svg"};
  struct sb_config *c = *state;
  struct sb_err err = {""};

  for (size_t i = 0; i < sizeof(taken) / sizeof(taken[0]); i++) {
    assert_int_equal(sb_config_set(c, SB_FORM_PLUGIN, "sse_path", taken[i], &err), SB_EINVAL);
    assert_true(strncmp(err.msg, "sse_path:", 9) == 0);
    assert_non_null(strstr(err.msg, taken[i]));
  }
  assert_string_equal(c->sse_path, "/api/sse");
  /* paths next to them, or with a dot below the top level, are free */
  for (const char *const *p = (const char *const[]){"/healthz/", "/api/sse.v2", "/api/publish2",
                                                     "/events", "/Healthz", NULL};
       *p; p++)
    assert_int_equal(sb_config_set(c, SB_FORM_DAEMON, "sse_path", *p, &err), 0);
}

/* Every file of web/ and the browser client that the server has built in is
 * refused as sse_path: the rule above covers them without a list to keep. */
static void test_sse_path_not_a_built_in_file(void **state)
{
  static const char *const dirs[] = {SB_TEST_DATA "/../../web",
                                     SB_TEST_DATA "/../../clients/js/src/client"};
  struct sb_config *c = *state;
  struct sb_err err;
  struct dirent *e;
  char path[300];
  int seen = 0;
  DIR *d;

  for (size_t i = 0; i < 2; i++) {
    assert_non_null(d = opendir(dirs[i]));
    while ((e = readdir(d)))
      if (e->d_name[0] != '.' && (strstr(e->d_name, ".js") || strstr(e->d_name, ".html") ||
                                  strstr(e->d_name, ".css") || strstr(e->d_name, ".svg"))) {
        snprintf(path, sizeof(path), "/%s", e->d_name);
        if (sb_config_set(c, SB_FORM_DAEMON, "sse_path", path, &err) != SB_EINVAL)
          fail_msg("sse_path %s is accepted", path);
        seen++;
      }
    closedir(d);
  }
  assert_true(seen >= 6);
}

static void test_finish_secret_file(void **state)
{
  struct sb_config *c = *state;
  struct sb_err err;
  char path[64];

  temp_file(path, "file-secret value 0123456789abcdef\n");
  assert_int_equal(sb_config_set(c, SB_FORM_DAEMON, "jwt_secret_file", path, &err), 0);
  assert_int_equal(sb_config_finish(c, &err), 0);
  assert_string_equal(c->jwt_secret, "file-secret value 0123456789abcdef");
  unlink(path);

  /* CRLF and several newlines at the end go too; inner ones stay */
  temp_file(path, "line1 0123456789abcdef\nline2 0123456789abcdef\r\n\n");
  sb_config_free(c);
  assert_int_equal(sb_config_init(c), 0);
  assert_int_equal(sb_config_set(c, SB_FORM_DAEMON, "jwt_secret_file", path, &err), 0);
  assert_int_equal(sb_config_finish(c, &err), 0);
  assert_string_equal(c->jwt_secret, "line1 0123456789abcdef\nline2 0123456789abcdef");
  unlink(path);
}

static void test_finish_secret_file_errors(void **state)
{
  struct sb_config *c = *state;
  struct sb_err err;
  char path[64];

  assert_int_equal(sb_config_set(c, SB_FORM_DAEMON, "jwt_secret_file", "/nonexistent/secret", &err),
                   0);
  assert_int_equal(sb_config_finish(c, &err), SB_EIO);
  assert_non_null(strstr(err.msg, "jwt_secret_file"));
  assert_non_null(strstr(err.msg, "/nonexistent/secret"));

  temp_file(path, "\n");
  assert_int_equal(sb_config_set(c, SB_FORM_DAEMON, "jwt_secret_file", path, &err), 0);
  assert_int_equal(sb_config_finish(c, &err), SB_EINVAL);
  assert_non_null(strstr(err.msg, "jwt_secret_file"));
  unlink(path);
}

static void test_finish_secret_and_file_refused(void **state)
{
  struct sb_config *c = *state;
  struct sb_err err;
  char path[64];

  temp_file(path, "from-file\n");
  assert_int_equal(sb_config_set(c, SB_FORM_DAEMON, "jwt_secret", "inline", &err), 0);
  assert_int_equal(sb_config_set(c, SB_FORM_DAEMON, "jwt_secret_file", path, &err), 0);
  assert_int_equal(sb_config_finish(c, &err), SB_EINVAL);
  assert_non_null(strstr(err.msg, "jwt_secret"));
  assert_string_equal(c->jwt_secret, "inline");
  unlink(path);
}

static void test_finish_secret_and_public_key_refused(void **state)
{
  struct sb_config *c = *state;
  struct sb_err err;

  assert_int_equal(sb_config_set(c, SB_FORM_DAEMON, "jwt_secret", "k", &err), 0);
  assert_int_equal(sb_config_set(c, SB_FORM_DAEMON, "jwt_public_key_file", "/k.pem", &err), 0);
  assert_int_equal(sb_config_finish(c, &err), SB_EINVAL);
  assert_non_null(strstr(err.msg, "jwt_public_key_file"));
}

static void test_finish_public_key_alone(void **state)
{
  struct sb_config *c = *state;
  struct sb_err err;

  /* the file itself is read by the authenticator, not here */
  assert_int_equal(sb_config_set(c, SB_FORM_DAEMON, "jwt_public_key_file", "/k.pem", &err), 0);
  assert_int_equal(sb_config_finish(c, &err), 0);
}

static void test_finish_mqtt_tls(void **state)
{
  struct sb_config *c = *state;
  struct sb_err err;

  assert_int_equal(sb_config_set(c, SB_FORM_DAEMON, "auth", "none", &err), 0);
  assert_int_equal(sb_config_set(c, SB_FORM_DAEMON, "mqtt_certfile", "/c.pem", &err), 0);
  assert_int_equal(sb_config_finish(c, &err), SB_EINVAL);
  assert_non_null(strstr(err.msg, "mqtt_keyfile"));
  assert_int_equal(sb_config_set(c, SB_FORM_DAEMON, "mqtt_keyfile", "/k.pem", &err), 0);
  assert_int_equal(sb_config_finish(c, &err), SB_EINVAL);
  assert_non_null(strstr(err.msg, "mqtt_cafile"));
  assert_int_equal(sb_config_set(c, SB_FORM_DAEMON, "mqtt_cafile", "/ca.pem", &err), 0);
  assert_int_equal(sb_config_finish(c, &err), 0);
}

static void test_finish_http_tls(void **state)
{
  struct sb_config *c = *state;
  struct sb_err err;

  /* both or neither; the files themselves are read by the server */
  assert_int_equal(sb_config_set(c, SB_FORM_PLUGIN, "auth", "none", &err), 0);
  assert_int_equal(sb_config_set(c, SB_FORM_PLUGIN, "http_tls_cert", "/c.pem", &err), 0);
  assert_int_equal(sb_config_finish(c, &err), SB_EINVAL);
  assert_non_null(strstr(err.msg, "http_tls_key"));
  assert_int_equal(sb_config_set(c, SB_FORM_PLUGIN, "http_tls_cert", "", &err), 0);
  assert_int_equal(sb_config_set(c, SB_FORM_PLUGIN, "http_tls_key", "/k.pem", &err), 0);
  assert_int_equal(sb_config_finish(c, &err), SB_EINVAL);
  assert_non_null(strstr(err.msg, "http_tls_cert"));
  assert_int_equal(sb_config_set(c, SB_FORM_PLUGIN, "http_tls_cert", "/c.pem", &err), 0);
  assert_int_equal(sb_config_finish(c, &err), 0);
}

static void test_finish_cors_wildcard(void **state)
{
  struct sb_config *c = *state;
  struct sb_err err;

  /* '*' with credentials is refused; listed origins are fine */
  assert_int_equal(sb_config_set(c, SB_FORM_DAEMON, "jwt_secret", SECRET_32, &err), 0);
  assert_int_equal(sb_config_set(c, SB_FORM_DAEMON, "cors_origins", "*", &err), 0);
  assert_int_equal(sb_config_finish(c, &err), SB_EINVAL);
  assert_non_null(strstr(err.msg, "cors_origins"));
  assert_int_equal(sb_config_set(c, SB_FORM_DAEMON, "cors_origins", "https://a.example, *", &err), 0);
  assert_int_equal(sb_config_finish(c, &err), SB_EINVAL);
  assert_non_null(strstr(err.msg, "cors_origins"));
  assert_int_equal(sb_config_set(c, SB_FORM_DAEMON, "cors_origins", "https://a.example https://*.b", &err),
                   0);
  assert_int_equal(sb_config_finish(c, &err), 0);
  /* with auth none, '*' is allowed */
  assert_int_equal(sb_config_set(c, SB_FORM_DAEMON, "cors_origins", "*", &err), 0);
  assert_int_equal(sb_config_set(c, SB_FORM_DAEMON, "auth", "none", &err), 0);
  assert_int_equal(sb_config_finish(c, &err), 0);
}

/* ---- copy and free -------------------------------------------------------- */

static void test_copy_is_deep(void **state)
{
  struct sb_config *c = *state, copy;
  struct sb_err err;

  assert_int_equal(sb_config_set(c, SB_FORM_DAEMON, "jwt_secret", "original", &err), 0);
  assert_int_equal(sb_config_set(c, SB_FORM_DAEMON, "http_port", "1234", &err), 0);
  assert_int_equal(sb_config_copy(&copy, c), 0);
  assert_config_equal(&copy, c);
  assert_ptr_not_equal(copy.jwt_secret, c->jwt_secret);
  assert_ptr_not_equal(copy.http_bind, c->http_bind);
  assert_ptr_not_equal(copy.mqtt_keyfile, c->mqtt_keyfile);

  /* changing or freeing the source leaves the copy whole */
  assert_int_equal(sb_config_set(c, SB_FORM_DAEMON, "jwt_secret", "changed", &err), 0);
  assert_int_equal(sb_config_set(c, SB_FORM_DAEMON, "http_port", "4321", &err), 0);
  assert_string_equal(copy.jwt_secret, "original");
  assert_int_equal(copy.http_port, 1234);
  sb_config_free(c);
  assert_null(c->jwt_secret);
  assert_string_equal(copy.jwt_secret, "original");
  assert_string_equal(copy.sse_path, "/api/sse");
  assert_string_equal(copy.jwt_cookie, "sse_token");
  sb_config_free(&copy);
  sb_config_free(&copy); /* freed strings are NULL: twice is harmless */
  sb_config_free(NULL);
  assert_int_equal(sb_config_init(c), 0);
}

/* ---- the option table ---------------------------------------------------- */

static void test_table_rows(void **state)
{
  struct sb_config *c = *state, set;
  const struct sb_option *opts;
  struct sb_err err;
  size_t n;

  opts = sb_config_options(&n);
  assert_true(n >= 36);
  assert_int_equal(sb_config_init(&set), 0);
  for (size_t i = 0; i < n; i++) {
    const struct sb_option *o = &opts[i];
    assert_ptr_equal(sb_config_option(o->name), o);
    assert_true(o->forms == SB_FORMS_BOTH || o->forms == SB_FORMS_DAEMON);
    assert_int_equal(sb_config_is_option(SB_FORM_DAEMON, o->name), 1);
    assert_int_equal(sb_config_is_option(SB_FORM_PLUGIN, o->name), o->forms == SB_FORMS_BOTH);
    /* the default, set again, changes nothing */
    if (sb_config_set(&set, SB_FORM_DAEMON, o->name, o->def, &err) != 0)
      fail_msg("%s: its default '%s' is refused: %s", o->name, o->def, err.msg);
  }
  assert_int_equal(sb_config_diff(c, &set, NULL, NULL), 0);
  assert_null(sb_config_option("nope"));
  assert_null(sb_config_option(""));
  sb_config_free(&set);
}

/* What a reload applies at once, as docs/configuration.md (Reload) lists it:
 * every other option is named as taking effect on restart. */
static void test_table_reload(void **state)
{
  static const char *const applied[] = {
    "log_level", "heartbeat_interval", "retry_ms", "max_connections",
    "max_connections_per_user", "max_queue_bytes", "max_memory", "auth", "cors_origins",
    "http_tls_cert", "http_tls_key", /* the files are read again */
  };
  static const char *const hub[] = {
    "heartbeat_interval", "retry_ms", "max_connections", "max_connections_per_user",
    "max_queue_bytes", "max_memory",
  };
  const struct sb_option *opts;
  size_t n;
  (void)state;

  opts = sb_config_options(&n);
  for (size_t i = 0; i < n; i++) {
    int listed = strncmp(opts[i].name, "jwt_", 4) == 0, in_hub = 0;
    for (size_t j = 0; j < sizeof(applied) / sizeof(applied[0]); j++)
      listed |= strcmp(opts[i].name, applied[j]) == 0;
    for (size_t j = 0; j < sizeof(hub) / sizeof(hub[0]); j++)
      in_hub |= strcmp(opts[i].name, hub[j]) == 0;
    if ((opts[i].reload != SB_RELOAD_RESTART) != listed)
      fail_msg("%s: a reload should %s it", opts[i].name, listed ? "apply" : "not apply");
    if ((opts[i].reload == SB_RELOAD_HUB) != in_hub)
      fail_msg("%s: the hub should %s it", opts[i].name, in_hub ? "take" : "not take");
  }
}

struct seen {
  const char *names[8];
  size_t n;
};

static void seen_one(void *ctx, const struct sb_option *o)
{
  struct seen *s = ctx;
  if (s->n < 8)
    s->names[s->n] = o->name;
  s->n++;
}

static void test_diff(void **state)
{
  struct sb_config *c = *state, other;
  struct seen seen = {{NULL}, 0};
  struct sb_err err;

  assert_int_equal(sb_config_copy(&other, c), 0);
  /* equal strings in other buffers are equal */
  assert_ptr_not_equal(other.http_bind, c->http_bind);
  assert_int_equal(sb_config_diff(c, &other, seen_one, &seen), 0);
  assert_int_equal(seen.n, 0);

  assert_int_equal(sb_config_set(&other, SB_FORM_DAEMON, "subscribe_mode", "per_user", &err), 0);
  assert_int_equal(sb_config_set(&other, SB_FORM_DAEMON, "topic_prefix", "other", &err), 0);
  assert_int_equal(sb_config_set(&other, SB_FORM_DAEMON, "max_event_bytes", "1024", &err), 0);
  assert_int_equal(sb_config_set(&other, SB_FORM_DAEMON, "log_level", "debug", &err), 0);
  assert_int_equal(sb_config_diff(c, &other, seen_one, &seen), 4);
  /* in table order */
  assert_int_equal(seen.n, 4);
  assert_string_equal(seen.names[0], "topic_prefix");
  assert_string_equal(seen.names[1], "max_event_bytes");
  assert_string_equal(seen.names[2], "log_level");
  assert_string_equal(seen.names[3], "subscribe_mode");
  assert_int_equal(sb_config_diff(&other, c, NULL, NULL), 4);
  sb_config_free(&other);
}

/* mqtt_host lists: each entry with its port (mqtt_port where it has none),
 * blanks around commas, IPv6 in brackets; a bad entry is named. */
static void test_host_list(void **state)
{
  const char *list = " broker1 , 10.0.0.2:1884,[::1],[fe80::1]:8883 ";
  static const struct {
    const char *name, *label;
    int port;
  } want[] = {{"broker1", "broker1:1883", 1883},
              {"10.0.0.2", "10.0.0.2:1884", 1884},
              {"::1", "[::1]:1883", 1883},
              {"fe80::1", "[fe80::1]:8883", 8883}};
  struct sb_host h;
  struct sb_err err = {""};
  char label[SB_HOST_ENTRY_MAX];
  size_t n = 0;
  int rc;

  (void)state;
  while ((rc = sb_config_next_host(&list, 1883, &h, &err)) == 1) {
    assert_true(n < 4);
    assert_string_equal(h.name, want[n].name);
    assert_int_equal(h.port, want[n].port);
    assert_string_equal(sb_config_host_label(&h, label, sizeof(label)), want[n].label);
    n++;
  }
  assert_int_equal(rc, 0);
  assert_int_equal(n, 4);

  list = "good:1883, bad:99999 ,other";
  assert_int_equal(sb_config_next_host(&list, 1883, &h, &err), 1);
  assert_int_equal(sb_config_next_host(&list, 1883, &h, &err), SB_EINVAL);
  assert_non_null(strstr(err.msg, "mqtt_host"));
  assert_non_null(strstr(err.msg, "'bad:99999'"));
}

static void test_swap(void **state)
{
  struct sb_config *c = *state, other;
  struct sb_err err;
  char *secret;

  assert_int_equal(sb_config_copy(&other, c), 0);
  assert_int_equal(sb_config_set(&other, SB_FORM_DAEMON, "jwt_secret", "new", &err), 0);
  assert_int_equal(sb_config_set(&other, SB_FORM_DAEMON, "max_queue_bytes", "2048", &err), 0);
  assert_int_equal(sb_config_set(&other, SB_FORM_DAEMON, "retry_ms", "5", &err), 0);
  secret = other.jwt_secret;
  sb_config_swap(c, &other, sb_config_option("jwt_secret"));
  sb_config_swap(c, &other, sb_config_option("max_queue_bytes"));
  sb_config_swap(c, &other, sb_config_option("retry_ms"));
  /* the string changed owner, not content */
  assert_ptr_equal(c->jwt_secret, secret);
  assert_string_equal(other.jwt_secret, "");
  assert_int_equal(c->max_queue_bytes, 2048);
  assert_int_equal(other.max_queue_bytes, 1048576);
  assert_int_equal(c->retry_ms, 5);
  assert_int_equal(other.retry_ms, 1000);
  assert_int_equal(sb_config_diff(c, &other, NULL, NULL), 3);
  sb_config_free(&other); /* c's strings stay whole (teardown frees them) */
  assert_string_equal(c->jwt_secret, "new");
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
  const struct CMUnitTest tests[] = {
    T(test_defaults),
    T(test_is_option),
    T(test_set_good_values),
    T(test_set_bad_values),
    T(test_unknown_option),
    T(test_missing_value),
    T(test_daemon_only_refused_in_plugin),
    T(test_subscribe_mode_per_user),
    T(test_config_line),
    T(test_load_file),
    T(test_load_file_errors),
    T(test_finish_jwt_needs_key),
    T(test_finish_auth_none),
    T(test_finish_secret),
    T(test_finish_secret_file),
    T(test_finish_short_secret_refused),
    T(test_sse_path_collisions),
    T(test_sse_path_not_a_built_in_file),
    T(test_finish_secret_file_errors),
    T(test_finish_secret_and_file_refused),
    T(test_finish_secret_and_public_key_refused),
    T(test_finish_public_key_alone),
    T(test_finish_mqtt_tls),
    T(test_finish_http_tls),
    T(test_finish_cors_wildcard),
    T(test_copy_is_deep),
    T(test_table_rows),
    T(test_table_reload),
    T(test_diff),
    T(test_swap),
    T(test_host_list),
  };
#undef T
  return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
