/* config.h: the options of both forms, their defaults and their checks.
 *
 * One table (config.c) names every option: its kind, its range or check, the
 * forms that take it, whether a reload applies it and its default. The
 * daemon feeds it `key value` lines and `--key value` flags, the plugin its
 * `plugin_opt_key value` lines; the server's reload, the docs check and the
 * config fuzzer read the same table (sb_config_options). A struct sb_config
 * is a plain value: sb_config_init() fills the defaults, sb_config_set()
 * checks and stores one option, sb_config_finish() checks the whole (and
 * reads jwt_secret_file), sb_config_free() releases the strings. The table
 * is constant, so any thread may read it; a struct sb_config belongs to one
 * thread at a time (the server keeps its own copy, sb_config_copy). */
#ifndef SB_CONFIG_H
#define SB_CONFIG_H

#include <stddef.h>

#include "err.h"


/* The fewest bytes of an HS256 secret (jwt_secret, jwt_secret_file): the
 * size of the hash (RFC 7518 3.2). */
#define SB_CONFIG_SECRET_MIN 32
/* max_memory must hold at least this many events of max_event_bytes. */
#define SB_CONFIG_MEMORY_EVENTS 8

enum sb_form { SB_FORM_DAEMON = 0, SB_FORM_PLUGIN = 1 };
enum sb_auth_mode { SB_AUTH_JWT = 0, SB_AUTH_NONE = 1 };
enum sb_subscribe_mode { SB_SUBSCRIBE_WILDCARD = 0, SB_SUBSCRIBE_PER_USER = 1 };

/* The forms that take an option (struct sb_option.forms): one bit per
 * enum sb_form. */
#define SB_FORMS_DAEMON (1u << SB_FORM_DAEMON)
#define SB_FORMS_PLUGIN (1u << SB_FORM_PLUGIN)
#define SB_FORMS_BOTH (SB_FORMS_DAEMON | SB_FORMS_PLUGIN)

/* How an option is stored in struct sb_config and written in a file. */
enum sb_option_kind {
  SB_OPTION_STR,       /* char *, never NULL once initialised; "" when unset */
  SB_OPTION_INT,       /* int, a whole number from min to max */
  SB_OPTION_LONG,      /* long, a whole number from min to max */
  SB_OPTION_AUTH,      /* int, enum sb_auth_mode: "jwt" or "none" */
  SB_OPTION_SUBSCRIBE, /* int, enum sb_subscribe_mode: "wildcard" or "per_user" */
  SB_OPTION_LOGLEVEL,  /* int, enum sb_log_level: "debug" ... "error" (log.h) */
};

/* What a string option must hold beyond being text. */
enum sb_option_check {
  SB_CHECK_NONE,
  SB_CHECK_BIND,            /* an IPv4 or IPv6 address */
  SB_CHECK_PATH,            /* a URL path starting with '/', not one the server
                             * answers otherwise (/healthz, a static file...) */
  SB_CHECK_PREFIX,          /* a topic without wildcards or empty levels */
  SB_CHECK_PREFIX_OR_EMPTY, /* the same, or "" (off) */
  SB_CHECK_TOKEN,           /* an HTTP token (a cookie name) */
  SB_CHECK_NONEMPTY,        /* anything but "" */
  SB_CHECK_HOSTS,           /* a list of brokers (sb_config_next_host) */
};

/* What a configuration reload (the daemon's SIGHUP) does with an option
 * whose value changed. */
enum sb_reload {
  SB_RELOAD_RESTART, /* nothing: the reload names it as taking effect on restart */
  SB_RELOAD_APPLY,   /* applied at once (new requests; open streams stay) */
  SB_RELOAD_HUB,     /* applied at once as one of the hub's limits; when the hub
                      * cannot take them (out of memory) all of these stay */
};

struct sb_option;

/* Called by sb_config_diff() with each option whose value differs. */
typedef void (*sb_config_diff_fn)(void *ctx, const struct sb_option *o);

/* One row of the option table. */
struct sb_option {
  const char *name;           /* as written in a file, after --, after plugin_opt_ */
  enum sb_option_kind kind;
  size_t offset;              /* of its field in struct sb_config */
  long min, max;              /* SB_OPTION_INT and SB_OPTION_LONG: the range taken */
  enum sb_option_check check; /* SB_OPTION_STR: what the value must be */
  unsigned forms;             /* SB_FORMS_DAEMON or SB_FORMS_BOTH */
  enum sb_reload reload;
  const char *def;            /* the default, as it would be written in a file */
};

struct sb_config {
  /* HTTP */
  char *http_bind;
  int http_port;
  char *sse_path;
  char *web_root;
  char *cors_origins;
  char *http_tls_cert; /* PEM: the certificate and its chain; "" serves plain HTTP */
  char *http_tls_key;  /* PEM: its private key */
  /* events */
  char *topic_prefix;
  int heartbeat_interval; /* seconds */
  int retry_ms;
  int max_connections;
  int max_connections_per_user;
  long max_event_bytes;
  long max_queue_bytes;
  long max_memory;        /* bytes for replay buffers, stream queues and pending events */
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

/* Fills cfg with the defaults of the table. Returns 0 or SB_ENOMEM (cfg
 * then holds nothing). */
int sb_config_init(struct sb_config *cfg);

/* Releases every string of cfg; NULL-safe; cfg may be re-initialised. */
void sb_config_free(struct sb_config *cfg);

/* Deep-copies src into dst. Returns 0 or SB_ENOMEM (dst then holds nothing). */
int sb_config_copy(struct sb_config *dst, const struct sb_config *src);

/* Checks and stores one option. Returns 0, or SB_EINVAL with a message naming
 * the option in err (cfg is then unchanged), or SB_ENOMEM.
 * Daemon-only options are refused in the plugin form. */
int sb_config_set(struct sb_config *cfg, enum sb_form form, const char *key, const char *value,
                  struct sb_err *err);

/* Applies one line of a config file ("key value", '#' comments, blank lines).
 * Returns like sb_config_set(). The step of sb_config_load_file(), public for
 * the unit tests and the fuzzer. */
int sb_config_line(struct sb_config *cfg, enum sb_form form, const char *line, struct sb_err *err);

/* Reads a whole config file with sb_config_line(); err names the file and the
 * line. Returns 0, SB_EIO or SB_EINVAL (cfg then holds the lines before the
 * bad one), or SB_ENOMEM. */
int sb_config_load_file(struct sb_config *cfg, enum sb_form form, const char *path, struct sb_err *err);

/* Checks what single options cannot (auth needs a key unless `auth none`,
 * jwt_secret and jwt_secret_file exclude each other, a secret has at least
 * SB_CONFIG_SECRET_MIN bytes, http_tls_cert and http_tls_key go together,
 * max_memory holds at least SB_CONFIG_MEMORY_EVENTS events of
 * max_event_bytes) and reads jwt_secret_file into jwt_secret. Returns 0, or
 * SB_EINVAL/SB_EIO with err
 * naming the option, or SB_ENOMEM. */
int sb_config_finish(struct sb_config *cfg, struct sb_err *err);

/* Returns 1 if name is an option of the given form, 0 otherwise. Pure; for
 * the unit tests and the fuzzer. */
int sb_config_is_option(enum sb_form form, const char *name);

/* Returns the option table (static and read-only) and its length in *n.
 * Pure; any thread. */
const struct sb_option *sb_config_options(size_t *n);

/* Returns the table's row for name, or NULL. Pure; any thread. */
const struct sb_option *sb_config_option(const char *name);

/* Calls fn(ctx, o) for each option of the table whose value differs between
 * a and b (strings by content), in table order. Returns how many differ. Pure:
 * a and b are only read. */
size_t sb_config_diff(const struct sb_config *a, const struct sb_config *b, sb_config_diff_fn fn,
                      void *ctx);

/* One broker of the mqtt_host list. */
struct sb_host {
  char name[256]; /* a host name or an IPv4 or IPv6 address (no brackets) */
  int port;
};

/* Longest entry of an mqtt_host list: "[" name "]:" port. */
#define SB_HOST_ENTRY_MAX 264

/* Reads the next entry of an mqtt_host list at *list: comma-separated
 * `host`, `host:port`, `[IPv6]` or `[IPv6]:port`, with blanks around the
 * commas allowed; an entry without a port takes default_port. Returns 1 with
 * *host filled and *list moved past the entry, 0 at the end of the list, or
 * SB_EINVAL with err naming the bad entry (an empty one, a port out of
 * 1..65535, an IPv6 address without brackets, characters no host name has).
 * Pure; *list is borrowed. */
int sb_config_next_host(const char **list, int default_port, struct sb_host *host,
                        struct sb_err *err);

/* Writes host as "name:port" ("[name]:port" for an IPv6 address) into buf
 * (len bytes, at least SB_HOST_ENTRY_MAX) and returns buf. Pure. */
const char *sb_config_host_label(const struct sb_host *host, char *buf, size_t len);

/* Exchanges the values of option o between a and b (a string changes owner:
 * whichever config is freed last frees it). */
void sb_config_swap(struct sb_config *a, struct sb_config *b, const struct sb_option *o);

#endif
