/* man_options: writes the man page mqtt-sse-bridge(1) from its template,
 * with the list of options made from the option table (sb_config_options,
 * core/config.h): every option of the table, in table order, with its
 * default, its range, the forms that take it and what a reload (SIGHUP)
 * does with it; the words of each come from a troff file of blocks that
 * start with a line `.\" @ <option>`.
 *
 *   man_options TEMPLATE DESCRIPTIONS OUT   the line `.\" :options:` of
 *       TEMPLATE becomes the list; an option without a description is
 *       listed all the same, with a pointer to docs/configuration.md, and named on
 *       stderr
 *   man_options --check DESCRIPTIONS        exits 1 naming each option of
 *       the table without a description and each description of no option
 *
 * Runs at build time (cmake/install.cmake) and as the test package_manpage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define MAX_OPTIONS 256
#define OPTIONS_LINE ".\\\" :options:"

struct desc {
  char name[64];
  char *text; /* troff lines, owned */
  int used;
};

static struct desc descs[MAX_OPTIONS];
static size_t ndescs;

static char *read_file(const char *path)
{
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  long n;

  if (!f) {
    perror(path);
    return NULL;
  }
  if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
      (buf = malloc((size_t)n + 1)) != NULL) {
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
      free(buf);
      buf = NULL;
    } else {
      buf[n] = '\0';
    }
  }
  if (!buf)
    fprintf(stderr, "%s: cannot read\n", path);
  fclose(f);
  return buf;
}

/* Splits DESCRIPTIONS into descs[]; text before the first marker (comments)
 * is dropped. Returns 0, or -1 after a message. */
static int read_descriptions(const char *path)
{
  static const char marker[] = ".\\\" @ ";
  char *all = read_file(path), *line, *next;
  struct desc *cur = NULL;

  if (!all)
    return -1;
  for (line = all; *line; line = next) {
    size_t len = strcspn(line, "\n");
    next = line + len + (line[len] == '\n');
    line[len] = '\0';
    if (!strncmp(line, marker, sizeof(marker) - 1)) {
      const char *name = line + sizeof(marker) - 1;
      if (ndescs == MAX_OPTIONS || strlen(name) >= sizeof(cur->name)) {
        fprintf(stderr, "%s: too many descriptions or too long a name: %s\n", path, name);
        free(all);
        return -1;
      }
      cur = &descs[ndescs++];
      strcpy(cur->name, name);
      cur->text = calloc(1, 1);
      continue;
    }
    if (!cur)
      continue;
    size_t have = strlen(cur->text);
    char *grown = realloc(cur->text, have + len + 2);
    if (!grown) {
      free(all);
      return -1;
    }
    cur->text = grown;
    memcpy(cur->text + have, line, len);
    strcpy(cur->text + have + len, "\n");
  }
  free(all);
  /* blank lines at the end of a block are the file's layout, not text */
  for (size_t i = 0; i < ndescs; i++) {
    size_t n = strlen(descs[i].text);
    while (n > 0 && (descs[i].text[n - 1] == '\n' || descs[i].text[n - 1] == ' '))
      descs[i].text[--n] = '\0';
  }
  return 0;
}

static struct desc *find_desc(const char *name)
{
  for (size_t i = 0; i < ndescs; i++)
    if (!strcmp(descs[i].name, name))
      return &descs[i];
  return NULL;
}

/* Writes s as troff text: backslashes and hyphen-minus escaped. */
static void put_escaped(FILE *out, const char *s)
{
  for (; *s; s++) {
    if (*s == '\\')
      fputs("\\e", out);
    else if (*s == '-')
      fputs("\\-", out);
    else
      fputc(*s, out);
  }
}

static void put_option(FILE *out, const struct sb_option *o, const struct desc *d)
{
  fputs(".TP\n.B ", out);
  put_escaped(out, o->name);
  fputc('\n', out);
  if (d && *d->text)
    fprintf(out, "%s\n", d->text);
  else
    fputs("See docs/configuration.md.\n", out);
  fputs(".br\n", out);
  if (*o->def) {
    fputs("Default: \\fB", out);
    put_escaped(out, o->def);
    fputs("\\fP.", out);
  } else {
    fputs("Default: empty.", out);
  }
  if (o->kind == SB_OPTION_INT || o->kind == SB_OPTION_LONG)
    fprintf(out, " From %ld to %ld.", o->min, o->max);
  switch (o->reload) {
  case SB_RELOAD_RESTART:
    fputs(" A reload leaves a change for the next start.", out);
    break;
  case SB_RELOAD_APPLY:
  case SB_RELOAD_HUB:
    fputs(" A reload applies a change at once.", out);
    break;
  }
  fputc('\n', out);
}

static void put_options(FILE *out, const struct sb_option *opts, size_t n)
{
  static const struct {
    unsigned forms;
    const char *title;
  } groups[] = {{SB_FORMS_BOTH, "Both forms (plugin: plugin_opt_\\fIoption\\fP)"},
                {SB_FORMS_DAEMON, "Daemon only"}};

  for (size_t g = 0; g < sizeof(groups) / sizeof(groups[0]); g++) {
    fprintf(out, ".SS \"%s\"\n", groups[g].title);
    for (size_t i = 0; i < n; i++) {
      if (opts[i].forms != groups[g].forms)
        continue;
      struct desc *d = find_desc(opts[i].name);
      if (d)
        d->used = 1;
      else
        fprintf(stderr, "man_options: no description of %s\n", opts[i].name);
      put_option(out, &opts[i], d);
    }
  }
  for (size_t i = 0; i < n; i++) {
    if (opts[i].forms != SB_FORMS_BOTH && opts[i].forms != SB_FORMS_DAEMON) {
      fprintf(stderr, "man_options: %s: forms %u not listed\n", opts[i].name, opts[i].forms);
      put_option(out, &opts[i], find_desc(opts[i].name));
    }
  }
}

static int check(const char *descriptions)
{
  size_t n;
  const struct sb_option *opts = sb_config_options(&n);
  int bad = 0;

  if (read_descriptions(descriptions))
    return 1;
  for (size_t i = 0; i < n; i++) {
    struct desc *d = find_desc(opts[i].name);
    if (!d || !*d->text) {
      printf("%s: no description of the option %s\n", descriptions, opts[i].name);
      bad = 1;
    } else {
      d->used = 1;
    }
  }
  for (size_t i = 0; i < ndescs; i++) {
    if (!descs[i].used) {
      printf("%s: %s is not an option of the table\n", descriptions, descs[i].name);
      bad = 1;
    }
  }
  if (!bad)
    printf("%s describes all %zu options of the table\n", descriptions, n);
  return bad;
}

static int generate(const char *template_path, const char *descriptions, const char *out_path)
{
  size_t n;
  const struct sb_option *opts = sb_config_options(&n);
  char *tmpl, *line, *next;
  FILE *out;
  int placed = 0, rc;

  if (read_descriptions(descriptions) || !(tmpl = read_file(template_path)))
    return 1;
  if (!(out = fopen(out_path, "w"))) {
    perror(out_path);
    free(tmpl);
    return 1;
  }
  for (line = tmpl; *line; line = next) {
    size_t len = strcspn(line, "\n");
    next = line + len + (line[len] == '\n');
    if (len == strlen(OPTIONS_LINE) && !strncmp(line, OPTIONS_LINE, len)) {
      put_options(out, opts, n);
      placed = 1;
    } else {
      fwrite(line, 1, (size_t)(next - line), out);
    }
  }
  free(tmpl);
  for (size_t i = 0; i < ndescs; i++)
    if (!descs[i].used)
      fprintf(stderr, "man_options: %s describes %s, which is not an option\n", descriptions,
              descs[i].name);
  rc = fclose(out) == 0 ? 0 : 1;
  if (!placed) {
    fprintf(stderr, "%s: no line %s\n", template_path, OPTIONS_LINE);
    rc = 1;
  }
  if (rc)
    remove(out_path);
  return rc;
}

int main(int argc, char **argv)
{
  int rc;

  if (argc == 3 && !strcmp(argv[1], "--check"))
    rc = check(argv[2]);
  else if (argc == 4)
    rc = generate(argv[1], argv[2], argv[3]);
  else {
    fprintf(stderr, "usage: man_options TEMPLATE DESCRIPTIONS OUT | --check DESCRIPTIONS\n");
    return 2;
  }
  for (size_t i = 0; i < ndescs; i++)
    free(descs[i].text);
  return rc;
}
