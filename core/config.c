#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cors.h"
#include "err.h"
#include "log.h"

#define F(field) offsetof(struct sb_config, field)
#define STR SB_OPTION_STR
#define INT SB_OPTION_INT
#define LONG SB_OPTION_LONG
#define BOTH SB_FORMS_BOTH
#define DAEMON SB_FORMS_DAEMON
#define RESTART SB_RELOAD_RESTART
#define APPLY SB_RELOAD_APPLY
#define HUB SB_RELOAD_HUB

/* Every option, the only list of them: reload, the docs check and the fuzzer
 * read it through sb_config_options(). */
static const struct sb_option opts[] = {
  /* name, kind, field, min, max, check, forms, reload, default */
  {"http_bind", STR, F(http_bind), 0, 0, SB_CHECK_BIND, BOTH, RESTART, "127.0.0.1"},
  {"http_port", INT, F(http_port), 0, 65535, SB_CHECK_NONE, BOTH, RESTART, "8080"},
  {"sse_path", STR, F(sse_path), 0, 0, SB_CHECK_PATH, BOTH, RESTART, "/api/sse"},
  {"web_root", STR, F(web_root), 0, 0, SB_CHECK_NONE, BOTH, RESTART, ""},
  {"cors_origins", STR, F(cors_origins), 0, 0, SB_CHECK_NONE, BOTH, APPLY, ""},
  /* APPLY: a reload reads both files again (server.c), even when unchanged */
  {"http_tls_cert", STR, F(http_tls_cert), 0, 0, SB_CHECK_NONE, BOTH, APPLY, ""},
  {"http_tls_key", STR, F(http_tls_key), 0, 0, SB_CHECK_NONE, BOTH, APPLY, ""},
  {"topic_prefix", STR, F(topic_prefix), 0, 0, SB_CHECK_PREFIX, BOTH, RESTART, "sync"},
  {"heartbeat_interval", INT, F(heartbeat_interval), 1, 3600, SB_CHECK_NONE, BOTH, HUB, "25"},
  {"retry_ms", INT, F(retry_ms), 0, 3600000, SB_CHECK_NONE, BOTH, HUB, "1000"},
  {"max_connections", INT, F(max_connections), 1, 1000000, SB_CHECK_NONE, BOTH, HUB, "10000"},
  {"max_connections_per_user", INT, F(max_connections_per_user), 1, 1000000, SB_CHECK_NONE, BOTH,
   HUB, "64"},
  {"max_event_bytes", LONG, F(max_event_bytes), 64, 16L * 1024 * 1024, SB_CHECK_NONE, BOTH,
   RESTART, "65536"},
  {"max_queue_bytes", LONG, F(max_queue_bytes), 1024, 1024L * 1024 * 1024, SB_CHECK_NONE, BOTH,
   HUB, "1048576"},
  {"max_memory", LONG, F(max_memory), 1024L * 1024, 1024L * 1024 * 1024 * 1024, SB_CHECK_NONE,
   BOTH, HUB, "268435456"},
  {"replay_buffer", INT, F(replay_buffer), 0, 1000000, SB_CHECK_NONE, BOTH, RESTART, "256"},
  {"presence_prefix", STR, F(presence_prefix), 0, 0, SB_CHECK_PREFIX_OR_EMPTY, BOTH, RESTART, ""},
  {"replay_dir", STR, F(replay_dir), 0, 0, SB_CHECK_NONE, BOTH, RESTART, ""},
  {"log_level", SB_OPTION_LOGLEVEL, F(log_level), 0, 0, SB_CHECK_NONE, BOTH, APPLY, "info"},
  {"auth", SB_OPTION_AUTH, F(auth), 0, 0, SB_CHECK_NONE, BOTH, APPLY, "jwt"},
  {"jwt_secret", STR, F(jwt_secret), 0, 0, SB_CHECK_NONE, BOTH, APPLY, ""},
  {"jwt_secret_file", STR, F(jwt_secret_file), 0, 0, SB_CHECK_NONE, BOTH, APPLY, ""},
  {"jwt_public_key_file", STR, F(jwt_public_key_file), 0, 0, SB_CHECK_NONE, BOTH, APPLY, ""},
  {"jwt_audience", STR, F(jwt_audience), 0, 0, SB_CHECK_NONE, BOTH, APPLY, ""},
  {"jwt_issuer", STR, F(jwt_issuer), 0, 0, SB_CHECK_NONE, BOTH, APPLY, ""},
  {"jwt_user_claim", STR, F(jwt_user_claim), 0, 0, SB_CHECK_NONEMPTY, BOTH, APPLY, "sub"},
  {"jwt_cookie", STR, F(jwt_cookie), 0, 0, SB_CHECK_TOKEN, BOTH, APPLY, "sse_token"},
  {"jwt_leeway", INT, F(jwt_leeway), 0, 3600, SB_CHECK_NONE, BOTH, APPLY, "0"},
  {"mqtt_host", STR, F(mqtt_host), 0, 0, SB_CHECK_HOSTS, DAEMON, RESTART, "localhost"},
  {"mqtt_port", INT, F(mqtt_port), 1, 65535, SB_CHECK_NONE, DAEMON, RESTART, "1883"},
  {"mqtt_username", STR, F(mqtt_username), 0, 0, SB_CHECK_NONE, DAEMON, RESTART, ""},
  {"mqtt_password", STR, F(mqtt_password), 0, 0, SB_CHECK_NONE, DAEMON, RESTART, ""},
  {"mqtt_client_id", STR, F(mqtt_client_id), 0, 0, SB_CHECK_NONE, DAEMON, RESTART, ""},
  {"mqtt_qos", INT, F(mqtt_qos), 0, 2, SB_CHECK_NONE, DAEMON, RESTART, "1"},
  {"mqtt_cafile", STR, F(mqtt_cafile), 0, 0, SB_CHECK_NONE, DAEMON, RESTART, ""},
  {"mqtt_certfile", STR, F(mqtt_certfile), 0, 0, SB_CHECK_NONE, DAEMON, RESTART, ""},
  {"mqtt_keyfile", STR, F(mqtt_keyfile), 0, 0, SB_CHECK_NONE, DAEMON, RESTART, ""},
  {"log_file", STR, F(log_file), 0, 0, SB_CHECK_NONE, DAEMON, RESTART, ""},
  {"subscribe_mode", SB_OPTION_SUBSCRIBE, F(subscribe_mode), 0, 0, SB_CHECK_NONE, DAEMON, RESTART,
   "wildcard"},
};
#define NOPTS (sizeof(opts) / sizeof(opts[0]))

#undef F
#undef STR
#undef INT
#undef LONG
#undef BOTH
#undef DAEMON
#undef RESTART
#undef APPLY
#undef HUB

const struct sb_option *sb_config_options(size_t *n)
{
  *n = NOPTS;
  return opts;
}

const struct sb_option *sb_config_option(const char *name)
{
  for (size_t i = 0; i < NOPTS; i++)
    if (strcmp(opts[i].name, name) == 0)
      return &opts[i];
  return NULL;
}

static char **str_field(struct sb_config *cfg, const struct sb_option *o)
{
  return (char **)((char *)cfg + o->offset);
}

static int in_form(const struct sb_option *o, enum sb_form form)
{
  return (o->forms & (1u << form)) != 0;
}

int sb_config_is_option(enum sb_form form, const char *name)
{
  const struct sb_option *o = sb_config_option(name);
  return o && in_form(o, form);
}

/* Returns 1 if option o holds the same value in a and b. */
static int same_value(const struct sb_config *a, const struct sb_config *b,
                      const struct sb_option *o)
{
  const char *pa = (const char *)a + o->offset, *pb = (const char *)b + o->offset;

  switch (o->kind) {
  case SB_OPTION_STR:
    return strcmp(*(char *const *)pa, *(char *const *)pb) == 0;
  case SB_OPTION_LONG:
    return *(const long *)pa == *(const long *)pb;
  case SB_OPTION_INT:
  case SB_OPTION_AUTH:
  case SB_OPTION_SUBSCRIBE:
  case SB_OPTION_LOGLEVEL:
    return *(const int *)pa == *(const int *)pb;
  }
  return 0;
}

size_t sb_config_diff(const struct sb_config *a, const struct sb_config *b, sb_config_diff_fn fn,
                      void *ctx)
{
  size_t n = 0;

  for (size_t i = 0; i < NOPTS; i++)
    if (!same_value(a, b, &opts[i])) {
      n++;
      if (fn)
        fn(ctx, &opts[i]);
    }
  return n;
}

void sb_config_swap(struct sb_config *a, struct sb_config *b, const struct sb_option *o)
{
  char *pa = (char *)a + o->offset, *pb = (char *)b + o->offset;
  unsigned char t[sizeof(long) > sizeof(char *) ? sizeof(long) : sizeof(char *)];
  size_t size = o->kind == SB_OPTION_STR ? sizeof(char *)
                : o->kind == SB_OPTION_LONG ? sizeof(long) : sizeof(int);

  memcpy(t, pa, size);
  memcpy(pa, pb, size);
  memcpy(pb, t, size);
}

static int valid_prefix(const char *s)
{
  size_t n = strlen(s);

  if (n == 0 || n > 200 || s[0] == '/' || s[n - 1] == '/' || strstr(s, "//"))
    return 0;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    if (*p < 0x20 || *p == 0x7f || *p == '+' || *p == '#')
      return 0;
  return 1;
}

static int valid_token(const char *s)
{
  if (!*s)
    return 0;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    if (!isalnum(*p) && !strchr("!#$%&'*+-.^_`|~", *p))
      return 0;
  return 1;
}

/* The paths the server answers besides sse_path (server/http.c routes them
 * before or instead of it): sse_path must be none of them. */
static const struct {
  const char *path, *what;
} endpoints[] = {
  {"/", "the demo page (index.html)"},
  {"/healthz", "the health check"},
  {"/metrics", "the metrics"},
  {"/api/publish", "the publish endpoint"},
  {"/api/presence", "the presence endpoint"},
};

/* Returns what an SSE endpoint at path would collide with, or NULL. A name
 * with a dot right under the root is how the static files (the built-in
 * index.html, sse-client.js, device.js... and those of web_root) are named. */
static const char *sse_path_collision(const char *path)
{
  for (size_t i = 0; i < sizeof(endpoints) / sizeof(endpoints[0]); i++)
    if (strcmp(path, endpoints[i].path) == 0)
      return endpoints[i].what;
  if (!strchr(path + 1, '/') && strchr(path + 1, '.'))
    return "a static file's name (a name with a dot at the top level)";
  return NULL;
}

/* Says why entry (len bytes, blanks trimmed) is not a broker, or fills host. */
static const char *parse_host(const char *entry, size_t len, int default_port,
                              struct sb_host *host)
{
  const char *colon, *end = entry + len, *name = entry, *name_end;
  unsigned char addr[16];
  long port = default_port;

  if (len == 0)
    return "it is empty";
  if (*entry == '[') {
    if (!(name_end = memchr(entry, ']', len)))
      return "'[' without its ']'";
    name = entry + 1;
    colon = name_end + 1 < end ? name_end + 1 : NULL;
    if (colon && *colon != ':')
      return "after ']' comes ':port' or nothing";
  } else {
    colon = memchr(entry, ':', len);
    if (colon && memchr(colon + 1, ':', (size_t)(end - colon - 1)))
      return "an IPv6 address needs brackets: [address] or [address]:port";
    name_end = colon ? colon : end;
  }
  if (colon) {
    port = 0;
    if (colon + 1 == end || end - colon - 1 > 5)
      return "the port is not a number from 1 to 65535";
    for (const char *c = colon + 1; c < end; c++) {
      if (!isdigit((unsigned char)*c))
        return "the port is not a number from 1 to 65535";
      port = port * 10 + (*c - '0');
    }
    if (port < 1 || port > 65535)
      return "the port is not a number from 1 to 65535";
  }
  if (name_end == name || (size_t)(name_end - name) >= sizeof(host->name))
    return name_end == name ? "no host name" : "the host name is over 255 characters";
  memcpy(host->name, name, (size_t)(name_end - name));
  host->name[name_end - name] = '\0';
  host->port = (int)port;
  if (*entry == '[')
    return inet_pton(AF_INET6, host->name, addr) == 1 ? NULL : "the brackets hold no IPv6 address";
  for (const unsigned char *c = (const unsigned char *)host->name; *c; c++)
    if (!isalnum(*c) && *c != '.' && *c != '-' && *c != '_')
      return "a host name has only letters, digits, '.', '-' and '_'";
  return NULL;
}

int sb_config_next_host(const char **list, int default_port, struct sb_host *host,
                        struct sb_err *err)
{
  const char *s = *list, *start, *end, *why;

  if (!*s)
    return 0;
  while (*s == ' ' || *s == '\t')
    s++;
  start = s;
  while (*s && *s != ',')
    s++;
  end = s;
  while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
    end--;
  if ((why = parse_host(start, (size_t)(end - start), default_port, host))) {
    sb_err_set(err, "mqtt_host: entry '%.*s': %s", (int)((end - start) > 80 ? 80 : end - start),
               start, why);
    return SB_EINVAL;
  }
  if (*s == ',') {
    s++;
    /* a trailing comma is an empty last entry */
    if (!*s || !s[strspn(s, " \t")]) {
      sb_err_set(err, "mqtt_host: entry '': it is empty (the list ends with ',')");
      return SB_EINVAL;
    }
  }
  *list = s;
  return 1;
}

const char *sb_config_host_label(const struct sb_host *host, char *buf, size_t len)
{
  int v6 = strchr(host->name, ':') != NULL;

  snprintf(buf, len, "%s%s%s:%d", v6 ? "[" : "", host->name, v6 ? "]" : "", host->port);
  return buf;
}

static int check_value(const struct sb_option *o, const char *v, struct sb_err *err)
{
  unsigned char addr[16];
  const char *taken;
  struct sb_host host;
  int rc;

  switch (o->check) {
  case SB_CHECK_BIND:
    if (inet_pton(AF_INET, v, addr) == 1 || inet_pton(AF_INET6, v, addr) == 1)
      return 0;
    sb_err_set(err, "%s: '%.64s' is not an IPv4 or IPv6 address", o->name, v);
    return SB_EINVAL;
  case SB_CHECK_PATH:
    if (v[0] != '/' || strpbrk(v, "?# \t") || strlen(v) >= 200) {
      sb_err_set(err, "%s: '%.64s' must be a path starting with '/'", o->name, v);
      return SB_EINVAL;
    }
    if ((taken = sse_path_collision(v))) {
      sb_err_set(err, "%s: '%.64s' is the path of %s; choose another, such as /api/sse",
                 o->name, v, taken);
      return SB_EINVAL;
    }
    return 0;
  case SB_CHECK_PREFIX_OR_EMPTY:
    if (!*v)
      return 0;
    /* fall through */
  case SB_CHECK_PREFIX:
    if (valid_prefix(v))
      return 0;
    sb_err_set(err,
             "%s: '%.64s' must be a topic without wildcards, empty levels or a leading or trailing '/'",
             o->name, v);
    return SB_EINVAL;
  case SB_CHECK_TOKEN:
    if (valid_token(v))
      return 0;
    sb_err_set(err, "%s: '%.64s' is not a valid cookie name", o->name, v);
    return SB_EINVAL;
  case SB_CHECK_NONEMPTY:
    if (*v)
      return 0;
    sb_err_set(err, "%s: must not be empty", o->name);
    return SB_EINVAL;
  case SB_CHECK_HOSTS:
    if (!*v) {
      sb_err_set(err, "%s: must not be empty", o->name);
      return SB_EINVAL;
    }
    while ((rc = sb_config_next_host(&v, 1883, &host, err)) == 1)
      ;
    return rc;
  case SB_CHECK_NONE:
    return 0;
  }
  return 0;
}

static int set_opt(struct sb_config *cfg, const struct sb_option *o, const char *v, struct sb_err *err)
{
  void *field = (char *)cfg + o->offset;
  char *end, *copy;
  long n;
  int lvl;

  switch (o->kind) {
  case SB_OPTION_STR:
    if (check_value(o, v, err))
      return SB_EINVAL;
    if (!(copy = strdup(v)))
      return SB_ENOMEM;
    free(*(char **)field);
    *(char **)field = copy;
    return 0;
  case SB_OPTION_INT:
  case SB_OPTION_LONG:
    errno = 0;
    n = strtol(v, &end, 10);
    if (!*v || *end || errno || n < o->min || n > o->max) {
      sb_err_set(err, "%s: '%.64s' is not a whole number from %ld to %ld", o->name,
               v, o->min, o->max);
      return SB_EINVAL;
    }
    if (o->kind == SB_OPTION_INT)
      *(int *)field = (int)n;
    else
      *(long *)field = n;
    return 0;
  case SB_OPTION_AUTH:
    if (strcmp(v, "jwt") == 0)
      *(int *)field = SB_AUTH_JWT;
    else if (strcmp(v, "none") == 0)
      *(int *)field = SB_AUTH_NONE;
    else {
      sb_err_set(err, "%s: '%.64s' must be 'jwt' or 'none'", o->name, v);
      return SB_EINVAL;
    }
    return 0;
  case SB_OPTION_SUBSCRIBE:
    if (strcmp(v, "wildcard") == 0)
      *(int *)field = SB_SUBSCRIBE_WILDCARD;
    else if (strcmp(v, "per_user") == 0)
      *(int *)field = SB_SUBSCRIBE_PER_USER;
    else {
      sb_err_set(err, "%s: '%.64s' must be 'wildcard' or 'per_user'", o->name, v);
      return SB_EINVAL;
    }
    return 0;
  case SB_OPTION_LOGLEVEL:
    if ((lvl = sb_log_level_parse(v)) < 0) {
      sb_err_set(err,
               "%s: '%.64s' must be one of debug, info, notice, warning, error", o->name, v);
      return SB_EINVAL;
    }
    *(int *)field = lvl;
    return 0;
  }
  return SB_EINVAL;
}

int sb_config_init(struct sb_config *cfg)
{
  struct sb_err err;

  memset(cfg, 0, sizeof(*cfg));
  for (size_t i = 0; i < NOPTS; i++)
    if (set_opt(cfg, &opts[i], opts[i].def, &err)) {
      sb_config_free(cfg);
      return SB_ENOMEM;
    }
  return 0;
}

void sb_config_free(struct sb_config *cfg)
{
  if (!cfg)
    return;
  for (size_t i = 0; i < NOPTS; i++)
    if (opts[i].kind == SB_OPTION_STR) {
      free(*str_field(cfg, &opts[i]));
      *str_field(cfg, &opts[i]) = NULL;
    }
}

int sb_config_copy(struct sb_config *dst, const struct sb_config *src)
{
  *dst = *src;
  for (size_t i = 0; i < NOPTS; i++)
    if (opts[i].kind == SB_OPTION_STR)
      *str_field(dst, &opts[i]) = NULL;
  for (size_t i = 0; i < NOPTS; i++) {
    if (opts[i].kind != SB_OPTION_STR)
      continue;
    const char *s = *str_field((struct sb_config *)src, &opts[i]);
    if (s && !(*str_field(dst, &opts[i]) = strdup(s))) {
      sb_config_free(dst);
      return SB_ENOMEM;
    }
  }
  return 0;
}

int sb_config_set(struct sb_config *cfg, enum sb_form form, const char *key, const char *value,
                  struct sb_err *err)
{
  const struct sb_option *o = sb_config_option(key);

  if (!o) {
    sb_err_set(err, "%.64s: unknown option", key);
    return SB_EINVAL;
  }
  if (!in_form(o, form)) {
    sb_err_set(err,
             "%s: is an option of the daemon only; the plugin uses the broker it runs in", key);
    return SB_EINVAL;
  }
  if (!value) {
    sb_err_set(err, "%s: needs a value", key);
    return SB_EINVAL;
  }
  return set_opt(cfg, o, value, err);
}

int sb_config_line(struct sb_config *cfg, enum sb_form form, const char *line, struct sb_err *err)
{
  char key[64];
  const char *p = line, *k, *v, *end;
  size_t klen;
  char *value;
  int rc;

  while (*p == ' ' || *p == '\t')
    p++;
  if (*p == '\0' || *p == '#' || *p == '\n' || *p == '\r')
    return 0;
  k = p;
  while (*p && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
    p++;
  klen = (size_t)(p - k);
  if (klen >= sizeof(key)) {
    sb_err_set(err, "%.32s...: unknown option", k);
    return SB_EINVAL;
  }
  memcpy(key, k, klen);
  key[klen] = '\0';
  while (*p == ' ' || *p == '\t')
    p++;
  v = p;
  end = v + strlen(v);
  while (end > v && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'))
    end--;
  if (!(value = strndup(v, (size_t)(end - v))))
    return SB_ENOMEM;
  rc = sb_config_set(cfg, form, key, value, err);
  free(value);
  return rc;
}

int sb_config_load_file(struct sb_config *cfg, enum sb_form form, const char *path, struct sb_err *err)
{
  FILE *f = fopen(path, "r");
  char line[4096];
  struct sb_err inner = {""};
  int lineno = 0, rc = 0;

  if (!f) {
    sb_err_set(err, "cannot open config file %.128s: %s", path, strerror(errno));
    return SB_EIO;
  }
  while (fgets(line, sizeof(line), f)) {
    lineno++;
    if ((rc = sb_config_line(cfg, form, line, &inner)) != 0) {
      sb_err_set(err, "%.80s:%d: %.140s", path, lineno, *inner.msg ? inner.msg : sb_strerror(rc));
      break;
    }
  }
  fclose(f);
  return rc;
}

static int read_secret_file(struct sb_config *cfg, struct sb_err *err)
{
  FILE *f = fopen(cfg->jwt_secret_file, "rb");
  char buf[4097];
  size_t n;

  if (!f) {
    sb_err_set(err, "jwt_secret_file: cannot open %.128s: %s",
             cfg->jwt_secret_file, strerror(errno));
    return SB_EIO;
  }
  n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
    buf[--n] = '\0';
  if (n == 0 || strlen(buf) != n) {
    sb_err_set(err, "jwt_secret_file: %.128s is empty or not text",
             cfg->jwt_secret_file);
    return SB_EINVAL;
  }
  free(cfg->jwt_secret);
  if (!(cfg->jwt_secret = strdup(buf)))
    return SB_ENOMEM;
  return 0;
}

int sb_config_finish(struct sb_config *cfg, struct sb_err *err)
{
  if (*cfg->jwt_secret && *cfg->jwt_secret_file) {
    sb_err_set(err, "jwt_secret_file: give either jwt_secret or jwt_secret_file");
    return SB_EINVAL;
  }
  if (*cfg->jwt_secret_file) {
    int rc = read_secret_file(cfg, err);
    if (rc)
      return rc;
  }
  if ((*cfg->jwt_secret) && *cfg->jwt_public_key_file) {
    sb_err_set(err,
             "jwt_public_key_file: give either a shared secret or a public key, not both");
    return SB_EINVAL;
  }
  if (*cfg->jwt_secret && strlen(cfg->jwt_secret) < SB_CONFIG_SECRET_MIN) {
    sb_err_set(err,
               "%s: an HS256 secret must have at least %d bytes (this one has %zu); "
               "make one with: openssl rand -hex 32",
               *cfg->jwt_secret_file ? "jwt_secret_file" : "jwt_secret", SB_CONFIG_SECRET_MIN,
               strlen(cfg->jwt_secret));
    return SB_EINVAL;
  }
  if (cfg->auth == SB_AUTH_JWT && !*cfg->jwt_secret && !*cfg->jwt_public_key_file) {
    sb_err_set(err,
             "auth: jwt needs jwt_secret, jwt_secret_file or jwt_public_key_file "
             "(or set 'auth none' for development)");
    return SB_EINVAL;
  }
  if (cfg->auth == SB_AUTH_JWT) {
    struct sb_cors *cors;
    int any;
    if (sb_cors_new(cfg->cors_origins, &cors))
      return SB_ENOMEM;
    any = sb_cors_any(cors);
    sb_cors_free(cors);
    if (any) {
      sb_err_set(err, "cors_origins: '*' is allowed only with 'auth none'; list the origins");
      return SB_EINVAL;
    }
  }
  if (cfg->max_memory / SB_CONFIG_MEMORY_EVENTS < cfg->max_event_bytes) {
    sb_err_set(err, "max_memory: %ld bytes hold fewer than %d events of max_event_bytes (%ld); "
               "give at least %ld",
               cfg->max_memory, SB_CONFIG_MEMORY_EVENTS, cfg->max_event_bytes,
               cfg->max_event_bytes * SB_CONFIG_MEMORY_EVENTS);
    return SB_EINVAL;
  }
  if ((*cfg->mqtt_certfile != 0) != (*cfg->mqtt_keyfile != 0)) {
    sb_err_set(err, "%s: mqtt_certfile and mqtt_keyfile go together",
             *cfg->mqtt_certfile ? "mqtt_keyfile" : "mqtt_certfile");
    return SB_EINVAL;
  }
  if ((*cfg->http_tls_cert != 0) != (*cfg->http_tls_key != 0)) {
    sb_err_set(err, "%s: http_tls_cert and http_tls_key go together",
             *cfg->http_tls_cert ? "http_tls_key" : "http_tls_cert");
    return SB_EINVAL;
  }
  if (*cfg->mqtt_certfile && !*cfg->mqtt_cafile) {
    sb_err_set(err, "mqtt_cafile: a client certificate needs mqtt_cafile (TLS)");
    return SB_EINVAL;
  }
  return 0;
}
