/* fuzz_config_line: sb_config_line and sb_config_set over a config file.
 *
 * Input: the first byte picks the form (bit 0: daemon or plugin) and the mode
 * (bit 1): a config file applied line by line with sb_config_line (as
 * sb_config_load_file does), or one sb_config_set call whose key is the first
 * line and whose value is the rest (no rest: a NULL value).
 *
 * Properties:
 * - every call returns 0 or SB_EINVAL (SB_ENOMEM aside); a refusal fills err
 *   with a non-empty, terminated message and leaves the config as it was;
 * - blank and comment lines change nothing;
 * - an accepted line names an option of its form (a daemon-only option is
 *   refused in the plugin form), changes that option only, and stores the
 *   value the line holds (the blanks after the key, and blanks and line ends
 *   at the end, cut); written back as "key value" it is accepted again, with
 *   the same value (a round trip);
 * - sb_config_copy gives an equal config; sb_config_finish returns 0 or an
 *   error with a message (it is not called with a jwt_secret_file, which it
 *   would read). */
#include <stddef.h>

#include "config.h"
#include "err.h"
#include "fuzz.h"
#include "log.h"

enum kind { STR, INT, LONG, AUTH, SUBSCRIBE, LOGLEVEL };

struct field {
  const char *name;
  enum kind kind;
  size_t offset;
};

#define F(name, kind) {#name, kind, offsetof(struct sb_config, name)}

/* Every option of struct sb_config (config.h), by the name it is set with. */
static const struct field fields[] = {
  F(http_bind, STR), F(http_port, INT), F(sse_path, STR), F(web_root, STR),
  F(cors_origins, STR), F(topic_prefix, STR), F(heartbeat_interval, INT), F(retry_ms, INT),
  F(max_connections, INT), F(max_connections_per_user, INT), F(max_event_bytes, LONG),
  F(max_queue_bytes, LONG), F(replay_buffer, INT), F(presence_prefix, STR), F(replay_dir, STR),
  {"log_level", LOGLEVEL, offsetof(struct sb_config, log_level)},
  {"auth", AUTH, offsetof(struct sb_config, auth)}, F(jwt_secret, STR), F(jwt_secret_file, STR),
  F(jwt_public_key_file, STR), F(jwt_audience, STR), F(jwt_issuer, STR), F(jwt_user_claim, STR),
  F(jwt_cookie, STR), F(jwt_leeway, INT), F(mqtt_host, STR), F(mqtt_port, INT),
  F(mqtt_username, STR), F(mqtt_password, STR), F(mqtt_client_id, STR), F(mqtt_qos, INT),
  F(mqtt_cafile, STR), F(mqtt_certfile, STR), F(mqtt_keyfile, STR), F(log_file, STR),
  {"subscribe_mode", SUBSCRIBE, offsetof(struct sb_config, subscribe_mode)},
};
#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

static const struct field *find_field(const char *name)
{
  for (size_t i = 0; i < NFIELDS; i++)
    if (strcmp(fields[i].name, name) == 0)
      return &fields[i];
  return NULL;
}

static const char *str_of(const struct sb_config *c, const struct field *f)
{
  return *(char *const *)((const char *)c + f->offset);
}

static long num_of(const struct sb_config *c, const struct field *f)
{
  if (f->kind == LONG)
    return *(const long *)((const char *)c + f->offset);
  return *(const int *)((const char *)c + f->offset);
}

static int field_equal(const struct sb_config *a, const struct sb_config *b,
                       const struct field *f)
{
  if (f->kind == STR)
    return strcmp(str_of(a, f), str_of(b, f)) == 0;
  return num_of(a, f) == num_of(b, f);
}

/* Returns the field that differs between a and b other than except, or NULL. */
static const struct field *differs(const struct sb_config *a, const struct sb_config *b,
                                   const struct field *except)
{
  for (size_t i = 0; i < NFIELDS; i++)
    if (&fields[i] != except && !field_equal(a, b, &fields[i]))
      return &fields[i];
  return NULL;
}

/* Writes field f of c as the value of a config line; returns a heap string. */
static char *value_text(const struct sb_config *c, const struct field *f)
{
  char buf[32];
  switch (f->kind) {
  case STR:
    return strdup(str_of(c, f));
  case INT:
  case LONG:
    snprintf(buf, sizeof(buf), "%ld", num_of(c, f));
    return strdup(buf);
  case AUTH:
    return strdup(num_of(c, f) == SB_AUTH_NONE ? "none" : "jwt");
  case SUBSCRIBE:
    return strdup(num_of(c, f) == SB_SUBSCRIBE_PER_USER ? "per_user" : "wildcard");
  case LOGLEVEL:
    return strdup(sb_log_level_name((int)num_of(c, f)));
  }
  return NULL;
}

static void check_refusal(int rc, const struct sb_err *err, const struct sb_config *before,
                          const struct sb_config *after, const char *what)
{
  const struct field *f;

  FUZZ_CHECK(rc == SB_EINVAL, "%s: returned %d", what, rc);
  FUZZ_CHECK(memchr(err->msg, '\0', sizeof err->msg) && err->msg[0], "%s: refused without a message",
             what);
  FUZZ_CHECK(!(f = differs(before, after, NULL)), "%s: refused but changed %s", what, f->name);
}

/* The value a line holds, as config.h describes it: the key is the first
 * word; blanks after it are skipped; blanks and line ends at the end are cut.
 * Returns the key in key (64 bytes) or "" for a blank or comment line. */
static char *line_value(const char *line, char *key)
{
  const char *p = line, *k, *end;
  size_t n;

  key[0] = '\0';
  while (*p == ' ' || *p == '\t')
    p++;
  if (!*p || *p == '#' || *p == '\n' || *p == '\r')
    return NULL;
  k = p;
  p += strcspn(p, " \t\r\n");
  n = (size_t)(p - k) < 63 ? (size_t)(p - k) : 63;
  memcpy(key, k, n);
  key[n] = '\0';
  p += strspn(p, " \t");
  end = p + strlen(p);
  while (end > p && strchr(" \t\r\n", end[-1]))
    end--;
  return strndup(p, (size_t)(end - p));
}

static void round_trip(const struct sb_config *cfg, enum sb_form form, const struct field *f)
{
  struct sb_config again;
  char *v = value_text(cfg, f), *line;
  struct sb_err *err = malloc(sizeof *err);
  int rc;

  if (!v || !err || sb_config_init(&again)) {
    free(v);
    free(err);
    return;
  }
  if (asprintf(&line, "%s %s", f->name, v) < 0)
    abort();
  rc = sb_config_line(&again, form, line, err);
  if (rc != SB_ENOMEM) {
    FUZZ_CHECK(rc == 0, "round trip of %s refused: '%s': %s", f->name, line, err->msg);
    FUZZ_CHECK(field_equal(cfg, &again, f), "round trip of %s changed its value", f->name);
  }
  sb_config_free(&again);
  free(line);
  free(v);
  free(err);
}

static void apply_line(struct sb_config *cfg, enum sb_form form, const char *line)
{
  struct sb_config before;
  struct sb_err *err = malloc(sizeof *err);
  char key[64], *want;
  const struct field *f, *d;
  int rc;

  if (!err || sb_config_copy(&before, cfg)) {
    free(err);
    return;
  }
  FUZZ_CHECK(!(d = differs(&before, cfg, NULL)), "copy differs in %s", d->name);
  memset(err, 0x55, sizeof *err);
  rc = sb_config_line(cfg, form, line, err);
  want = line_value(line, key);
  if (rc == 0) {
    if (!key[0]) {
      FUZZ_CHECK(!(d = differs(&before, cfg, NULL)), "a blank or comment line changed %s",
                 d->name);
    } else {
      FUZZ_CHECK(sb_config_is_option(form, key), "accepted '%s', not an option of the %s", key,
                 form == SB_FORM_PLUGIN ? "plugin" : "daemon");
      f = find_field(key);
      FUZZ_CHECK(f, "accepted '%s', which config.h does not have", key);
      FUZZ_CHECK(!(d = differs(&before, cfg, f)), "setting %s changed %s too", key, d->name);
      if (f->kind == STR)
        FUZZ_CHECK(want && strcmp(str_of(cfg, f), want) == 0,
                   "%s stored '%s', the line holds '%s'", key, str_of(cfg, f), want);
      round_trip(cfg, form, f);
    }
  } else if (rc != SB_ENOMEM) {
    check_refusal(rc, err, &before, cfg, line);
  }
  free(want);
  sb_config_free(&before);
  free(err);
}

static void check_finish(struct sb_config *cfg, enum sb_form form)
{
  struct sb_err *err = malloc(sizeof *err);
  int rc;

  if (!err)
    return;
  if (!*cfg->jwt_secret_file) {
    err->msg[0] = '\0';
    rc = sb_config_finish(cfg, form, err);
    FUZZ_CHECK(rc == 0 || ((rc == SB_EINVAL || rc == SB_EIO) && err->msg[0]),
               "sb_config_finish returned %d with '%s'", rc, err->msg);
  }
  free(err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct sb_config cfg;
  enum sb_form form;
  int set_mode;
  char *text, *line, *next;

  if (size < 1)
    return 0;
  form = (data[0] & 1) ? SB_FORM_PLUGIN : SB_FORM_DAEMON;
  set_mode = (data[0] >> 1) & 1;
  text = fuzz_cstr(data + 1, size - 1);
  if (sb_config_init(&cfg)) {
    free(text);
    return 0;
  }

  if (set_mode) {
    struct sb_config before;
    struct sb_err *err = malloc(sizeof *err);
    char *value = NULL;
    const struct field *f, *d;
    int rc;

    if ((next = strchr(text, '\n'))) {
      *next = '\0';
      value = next + 1;
    }
    if (err && sb_config_copy(&before, &cfg) == 0) {
      memset(err, 0x55, sizeof *err);
      rc = sb_config_set(&cfg, form, text, value, err);
      if (rc == 0) {
        f = find_field(text);
        FUZZ_CHECK(value && f && sb_config_is_option(form, text), "accepted option '%s'", text);
        FUZZ_CHECK(!(d = differs(&before, &cfg, f)), "setting %s changed %s too", text, d->name);
        if (f->kind == STR)
          FUZZ_CHECK(strcmp(str_of(&cfg, f), value) == 0, "%s not stored as given", text);
      } else if (rc != SB_ENOMEM) {
        check_refusal(rc, err, &before, &cfg, text);
      }
      sb_config_free(&before);
    }
    free(err);
  } else {
    /* Lines keep their '\n', as fgets() leaves it. */
    const char *p = text;
    while (*p) {
      size_t n = strcspn(p, "\n");
      n += p[n] == '\n';
      if (!(line = strndup(p, n)))
        break;
      apply_line(&cfg, form, line);
      free(line);
      p += n;
    }
  }
  check_finish(&cfg, form);
  sb_config_free(&cfg);
  free(text);
  return 0;
}
