/* fuzz_config_line: sb_config_line and sb_config_set over a config file.
 *
 * Input: the first byte picks the form (bit 0: daemon or plugin) and the mode
 * (bit 1): a config file applied line by line with sb_config_line (as
 * sb_config_load_file does), or one sb_config_set call whose key is the first
 * line and whose value is the rest (no rest: a NULL value).
 *
 * The options (names, kinds, fields, forms, ranges, defaults) come from the
 * table of config.c through sb_config_options(); comparing, writing back and
 * cutting a line into key and value are this file's own.
 *
 * Properties:
 * - the table: names unique, each field once, forms and kinds known; a fresh
 *   config holds every row's default;
 * - every call returns 0 or SB_EINVAL (SB_ENOMEM aside); a refusal fills err
 *   with a non-empty, terminated message and leaves the config as it was;
 * - blank and comment lines change nothing;
 * - an accepted line names an option of its form (a daemon-only option is
 *   refused in the plugin form), changes that option only, and stores the
 *   value the line holds (the blanks after the key, and blanks and line ends
 *   at the end, cut), a number within its row's range; written back as
 *   "key value" it is accepted again, with the same value (a round trip);
 * - sb_config_diff names exactly the options this file finds different;
 * - sb_config_copy gives an equal config; sb_config_finish returns 0 or an
 *   error with a message (it is not called with a jwt_secret_file, which it
 *   would read). */
#include <stddef.h>

#include "config.h"
#include "err.h"
#include "fuzz.h"
#include "log.h"

static const char *str_of(const struct sb_config *c, const struct sb_option *f)
{
  return *(char *const *)((const char *)c + f->offset);
}

static long num_of(const struct sb_config *c, const struct sb_option *f)
{
  if (f->kind == SB_OPTION_LONG)
    return *(const long *)((const char *)c + f->offset);
  return *(const int *)((const char *)c + f->offset);
}

static int field_equal(const struct sb_config *a, const struct sb_config *b,
                       const struct sb_option *f)
{
  if (f->kind == SB_OPTION_STR)
    return strcmp(str_of(a, f), str_of(b, f)) == 0;
  return num_of(a, f) == num_of(b, f);
}

/* Returns the option that differs between a and b other than except, or
 * NULL; n_diff (if not NULL) receives how many differ, except included. */
static const struct sb_option *differs_n(const struct sb_config *a, const struct sb_config *b,
                                         const struct sb_option *except, size_t *n_diff)
{
  const struct sb_option *opts, *found = NULL;
  size_t n, count = 0;

  opts = sb_config_options(&n);
  for (size_t i = 0; i < n; i++)
    if (!field_equal(a, b, &opts[i])) {
      count++;
      if (&opts[i] != except && !found)
        found = &opts[i];
    }
  if (n_diff)
    *n_diff = count;
  return found;
}

static const struct sb_option *differs(const struct sb_config *a, const struct sb_config *b,
                                       const struct sb_option *except)
{
  return differs_n(a, b, except, NULL);
}

/* sb_config_diff's callback: checks each option it names against this file's
 * own comparison. */
struct diff_seen {
  const struct sb_config *a, *b;
  size_t n;
};

static void diff_one(void *ctx, const struct sb_option *o)
{
  struct diff_seen *d = ctx;

  FUZZ_CHECK(!field_equal(d->a, d->b, o), "sb_config_diff names %s, which is equal", o->name);
  d->n++;
}

static void check_diff(const struct sb_config *a, const struct sb_config *b)
{
  struct diff_seen seen = {a, b, 0};
  size_t want, got = sb_config_diff(a, b, diff_one, &seen);

  differs_n(a, b, NULL, &want);
  FUZZ_CHECK(got == want && seen.n == want, "sb_config_diff: %zu (%zu calls), %zu differ", got,
             seen.n, want);
}

/* Writes field f of c as the value of a config line; returns a heap string. */
static char *value_text(const struct sb_config *c, const struct sb_option *f)
{
  char buf[32];
  switch (f->kind) {
  case SB_OPTION_STR:
    return strdup(str_of(c, f));
  case SB_OPTION_INT:
  case SB_OPTION_LONG:
    snprintf(buf, sizeof(buf), "%ld", num_of(c, f));
    return strdup(buf);
  case SB_OPTION_AUTH:
    return strdup(num_of(c, f) == SB_AUTH_NONE ? "none" : "jwt");
  case SB_OPTION_SUBSCRIBE:
    return strdup(num_of(c, f) == SB_SUBSCRIBE_PER_USER ? "per_user" : "wildcard");
  case SB_OPTION_LOGLEVEL:
    return strdup(sb_log_level_name((int)num_of(c, f)));
  }
  return NULL;
}

static void check_refusal(int rc, const struct sb_err *err, const struct sb_config *before,
                          const struct sb_config *after, const char *what)
{
  const struct sb_option *f;

  FUZZ_CHECK(rc == SB_EINVAL, "%s: returned %d", what, rc);
  FUZZ_CHECK(memchr(err->msg, '\0', sizeof err->msg) && err->msg[0], "%s: refused without a message",
             what);
  FUZZ_CHECK(!(f = differs(before, after, NULL)), "%s: refused but changed %s", what, f->name);
}

/* An accepted key=value: key is an option of the form, only it changed,
 * sb_config_diff agrees, a string holds want (when not NULL) and a number is
 * within its row's range. Returns the option's row. */
static const struct sb_option *check_accepted(const struct sb_config *before,
                                              const struct sb_config *after, enum sb_form form,
                                              const char *key, const char *want)
{
  const struct sb_option *f = sb_config_option(key), *d;
  long v;

  FUZZ_CHECK(f && sb_config_is_option(form, key) && (f->forms & (1u << form)),
             "accepted '%s', not an option of the %s", key,
             form == SB_FORM_PLUGIN ? "plugin" : "daemon");
  FUZZ_CHECK(!(d = differs(before, after, f)), "setting %s changed %s too", key, d->name);
  check_diff(before, after);
  if (f->kind == SB_OPTION_STR && want)
    FUZZ_CHECK(strcmp(str_of(after, f), want) == 0, "%s stored '%s', the value is '%s'", key,
               str_of(after, f), want);
  if (f->kind == SB_OPTION_INT || f->kind == SB_OPTION_LONG) {
    v = num_of(after, f);
    FUZZ_CHECK(v >= f->min && v <= f->max, "%s took %ld, outside %ld..%ld", key, v, f->min,
               f->max);
  }
  return f;
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

static void round_trip(const struct sb_config *cfg, enum sb_form form, const struct sb_option *f)
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
  const struct sb_option *f, *d;
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
      FUZZ_CHECK(want, "accepted '%s' without a value", key);
      f = check_accepted(&before, cfg, form, key, want);
      round_trip(cfg, form, f);
    }
  } else if (rc != SB_ENOMEM) {
    check_refusal(rc, err, &before, cfg, line);
  }
  free(want);
  sb_config_free(&before);
  free(err);
}

static void check_finish(struct sb_config *cfg)
{
  struct sb_err *err = malloc(sizeof *err);
  int rc;

  if (!err)
    return;
  if (!*cfg->jwt_secret_file) {
    err->msg[0] = '\0';
    rc = sb_config_finish(cfg, err);
    FUZZ_CHECK(rc == 0 || ((rc == SB_EINVAL || rc == SB_EIO) && err->msg[0]),
               "sb_config_finish returned %d with '%s'", rc, err->msg);
  }
  free(err);
}

/* The table itself, once: each name and each field once, kinds, forms and
 * reload classes known, ranges not empty; a fresh config holds the defaults. */
static void check_table(void)
{
  const struct sb_option *opts;
  struct sb_config cfg;
  size_t n;
  char *v;

  opts = sb_config_options(&n);
  FUZZ_CHECK(n > 0, "the option table is empty");
  for (size_t i = 0; i < n; i++) {
    const struct sb_option *o = &opts[i];
    size_t size = o->kind == SB_OPTION_STR ? sizeof(char *)
                  : o->kind == SB_OPTION_LONG ? sizeof(long) : sizeof(int);
    FUZZ_CHECK(o->name && *o->name && o->def, "row %zu has no name or default", i);
    FUZZ_CHECK(sb_config_option(o->name) == o, "%s is in the table twice", o->name);
    FUZZ_CHECK(o->kind <= SB_OPTION_LOGLEVEL && o->reload <= SB_RELOAD_HUB,
               "%s: unknown kind or reload class", o->name);
    FUZZ_CHECK(o->forms == SB_FORMS_BOTH || o->forms == SB_FORMS_DAEMON, "%s: forms %u",
               o->name, o->forms);
    FUZZ_CHECK(o->offset + size <= sizeof(struct sb_config), "%s: field outside the struct",
               o->name);
    FUZZ_CHECK((o->kind != SB_OPTION_INT && o->kind != SB_OPTION_LONG) || o->min <= o->max,
               "%s: empty range", o->name);
    for (size_t j = 0; j < i; j++)
      FUZZ_CHECK(opts[j].offset != o->offset, "%s and %s share a field", opts[j].name, o->name);
  }
  if (sb_config_init(&cfg))
    return;
  for (size_t i = 0; i < n; i++) {
    if (!(v = value_text(&cfg, &opts[i])))
      abort();
    FUZZ_CHECK(strcmp(v, opts[i].def) == 0, "%s starts as '%s', its default is '%s'",
               opts[i].name, v, opts[i].def);
    free(v);
  }
  sb_config_free(&cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct sb_config cfg;
  enum sb_form form;
  int set_mode;
  char *text, *line, *next;

  static int table_checked;

  if (!table_checked) {
    check_table();
    table_checked = 1;
  }
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
    int rc;

    if ((next = strchr(text, '\n'))) {
      *next = '\0';
      value = next + 1;
    }
    if (err && sb_config_copy(&before, &cfg) == 0) {
      memset(err, 0x55, sizeof *err);
      rc = sb_config_set(&cfg, form, text, value, err);
      if (rc == 0) {
        FUZZ_CHECK(value, "accepted option '%s' without a value", text);
        check_accepted(&before, &cfg, form, text, value);
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
  check_finish(&cfg);
  sb_config_free(&cfg);
  free(text);
  return 0;
}
