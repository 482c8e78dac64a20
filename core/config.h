/* config.h: the options of both forms, their defaults and their checks.
 *
 * One table (config.c) names every option; the daemon feeds it `key value`
 * lines and `--key value` flags, the plugin its `plugin_opt_key value` lines.
 * A struct sb_config is a plain value: sb_config_init() fills the defaults,
 * sb_config_set() checks and stores one option, sb_config_finish() checks the
 * whole (and reads jwt_secret_file), sb_config_free() releases the strings.
 * Not thread-safe; the server keeps its own copy (sb_config_copy). */
#ifndef SB_CONFIG_H
#define SB_CONFIG_H

#include <stddef.h>

#include "err.h"


enum sb_form { SB_FORM_DAEMON = 0, SB_FORM_PLUGIN = 1 };
enum sb_auth_mode { SB_AUTH_JWT = 0, SB_AUTH_NONE = 1 };
enum sb_subscribe_mode { SB_SUBSCRIBE_WILDCARD = 0, SB_SUBSCRIBE_PER_USER = 1 };

struct sb_config {
  /* HTTP */
  char *http_bind;
  int http_port;
  char *sse_path;
  char *web_root;
  char *cors_origins;
  /* events */
  char *topic_prefix;
  int heartbeat_interval; /* seconds */
  int retry_ms;
  int max_connections;
  int max_connections_per_user;
  long max_event_bytes;
  long max_queue_bytes;
  int replay_buffer;
  char *presence_prefix;
  char *replay_dir;       /* "" keeps the replay buffers in memory only */
  int log_level;
  /* auth */
  int auth;
  char *jwt_secret; /* also filled from jwt_secret_file by sb_config_finish */
  char *jwt_secret_file;
  char *jwt_public_key_file;
  char *jwt_audience;
  char *jwt_issuer;
  char *jwt_user_claim;
  char *jwt_cookie;
  int jwt_leeway; /* seconds */
  /* daemon only */
  char *mqtt_host;
  int mqtt_port;
  char *mqtt_username;
  char *mqtt_password;
  char *mqtt_client_id;
  int mqtt_qos;
  char *mqtt_cafile;
  char *mqtt_certfile;
  char *mqtt_keyfile;
  char *log_file;         /* "" logs to stderr */
  int subscribe_mode;
};

/* Fills cfg with the defaults. Returns 0 or SB_ENOMEM (cfg is then freed). */
int sb_config_init(struct sb_config *cfg);

/* Releases every string of cfg; NULL-safe; cfg may be re-initialised. */
void sb_config_free(struct sb_config *cfg);

/* Deep-copies src into dst. Returns 0 or SB_ENOMEM (dst then holds nothing). */
int sb_config_copy(struct sb_config *dst, const struct sb_config *src);

/* Checks and stores one option. Returns 0, or SB_EINVAL with a message naming
 * the option in err; cfg is unchanged on failure.
 * Daemon-only options are refused in the plugin form. */
int sb_config_set(struct sb_config *cfg, enum sb_form form, const char *key, const char *value,
                  struct sb_err *err);

/* Applies one line of a config file ("key value", '#' comments, blank lines).
 * Returns like sb_config_set(). */
int sb_config_line(struct sb_config *cfg, enum sb_form form, const char *line, struct sb_err *err);

/* Reads a whole config file with sb_config_line(); err names the file and the
 * line. Returns 0, SB_EIO or SB_EINVAL. */
int sb_config_load_file(struct sb_config *cfg, enum sb_form form, const char *path, struct sb_err *err);

/* Checks what single options cannot (auth needs a key unless `auth none`,
 * jwt_secret and jwt_secret_file exclude each other) and reads
 * jwt_secret_file. Returns 0 or SB_EINVAL/SB_EIO with err naming the option. */
int sb_config_finish(struct sb_config *cfg, enum sb_form form, struct sb_err *err);

/* Returns 1 if name is an option of the given form, 0 otherwise. Pure. */
int sb_config_is_option(enum sb_form form, const char *name);

#endif
