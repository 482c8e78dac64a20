/* data_cases.h: the runner of the data-driven cases of tests/data/<kind>/:
 * one directory a case, run in name order by a function of the test that
 * returns NULL when the case holds, or a heap message saying why not. For
 * the unit tests only (static functions: include it once, after cmocka.h). */
#ifndef SB_TEST_DATA_CASES_H
#define SB_TEST_DATA_CASES_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Reads dir/name whole; returns a heap buffer (NUL-terminated) with its
 * length in *len, or NULL when it cannot be read. */
static char *slurp(const char *dir, const char *name, size_t *len)
{
  char path[1024];
  FILE *f;
  char *buf = NULL;
  long n;

  snprintf(path, sizeof(path), "%s/%s", dir, name);
  if (!(f = fopen(path, "rb")))
    return NULL;
  if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
      (buf = malloc((size_t)n + 1))) {
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
      free(buf);
      buf = NULL;
    } else {
      buf[n] = '\0';
      *len = (size_t)n;
    }
  }
  fclose(f);
  return buf;
}

/* Cuts the line ends off the end of s (len bytes), updating len. */
static void chomp(char *s, size_t *len)
{
  while (*len > 0 && (s[*len - 1] == '\n' || s[*len - 1] == '\r'))
    s[--*len] = '\0';
}

static int cmp_names(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs run() on every directory of root that holds an `expect` file, in name
 * order, printing each result; fails the test when a case fails or when
 * fewer than min cases were found. */
static void run_data_cases(const char *root, const char *what, size_t min,
                           char *(*run)(const char *dir, const char *name))
{
  char **names = NULL, path[1024];
  size_t n = 0, cap = 0, failed = 0;
  struct dirent *de;
  DIR *d;

  d = opendir(root);
  if (!d)
    fail_msg("cannot open %s", root);
  while ((de = readdir(d))) {
    if (de->d_name[0] == '.')
      continue;
    snprintf(path, sizeof(path), "%s/%s/expect", root, de->d_name);
    if (access(path, R_OK) != 0)
      continue; /* not a case (a README) */
    if (n == cap) {
      cap = cap ? cap * 2 : 32;
      names = realloc(names, cap * sizeof(*names));
      assert_non_null(names);
    }
    names[n] = strdup(de->d_name);
    assert_non_null(names[n]);
    n++;
  }
  closedir(d);
  qsort(names, n, sizeof(*names), cmp_names);

  for (size_t i = 0; i < n; i++) {
    char *msg;
    snprintf(path, sizeof(path), "%s/%s", root, names[i]);
    if ((msg = run(path, names[i]))) {
      print_error("FAIL %s\n", msg);
      free(msg);
      failed++;
    } else
      print_message("ok   %s\n", names[i]);
    free(names[i]);
  }
  free(names);
  if (failed)
    fail_msg("%zu of %zu %s cases failed", failed, n, what);
  /* the directory must actually hold the cases */
  assert_true(n >= min);
}

#endif
