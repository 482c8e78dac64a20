#include "cors.h"

#include <stdlib.h>
#include <string.h>

#include "err.h"

/* One origin of the list; len 0 stands for "*". Points into the list's text. */
struct entry {
  const char *origin;
  size_t len;
};

struct sb_cors {
  size_t n;
  int any;
  struct entry *v; /* after the struct, in the same block, then their text */
};

/* Finds the entry at or after *p; returns its length (0: no more) and moves
 * *p past it, leaving *start at its first byte. */
static size_t next_entry(const char **p, const char **start)
{
  size_t n;

  while (**p == ' ' || **p == ',')
    (*p)++;
  n = strcspn(*p, " ,");
  *start = *p;
  *p += n;
  return n;
}

int sb_cors_new(const char *list, struct sb_cors **out)
{
  const char *p = list, *start;
  size_t n = 0, len, text = 0;
  struct sb_cors *c;
  char *t;

  *out = NULL;
  /* Count what is kept: every entry up to and including the first "*". */
  while ((len = next_entry(&p, &start))) {
    n++;
    text += len + 1;
    if (len == 1 && *start == '*')
      break;
  }
  if (!(c = calloc(1, sizeof(*c) + n * sizeof(*c->v) + text)))
    return SB_ENOMEM;
  c->v = (struct entry *)(c + 1);
  t = (char *)(c->v + n);
  for (p = list; c->n < n;) {
    len = next_entry(&p, &start);
    if (len == 1 && *start == '*') {
      c->any = 1;
      c->v[c->n].origin = "*";
      c->v[c->n++].len = 0;
      continue;
    }
    memcpy(t, start, len);
    t[len] = '\0';
    c->v[c->n].origin = t;
    c->v[c->n++].len = len;
    t += len + 1;
  }
  *out = c;
  return 0;
}

void sb_cors_free(struct sb_cors *c)
{
  free(c);
}

enum sb_cors_answer sb_cors_match(const struct sb_cors *c, const char *origin)
{
  size_t olen;

  if (!c || !origin)
    return SB_CORS_NONE;
  olen = strlen(origin);
  for (size_t i = 0; i < c->n; i++) {
    if (c->v[i].len == 0)
      return SB_CORS_ANY;
    if (c->v[i].len == olen && memcmp(c->v[i].origin, origin, olen) == 0)
      return SB_CORS_ORIGIN;
  }
  return SB_CORS_NONE;
}

int sb_cors_any(const struct sb_cors *c)
{
  return c && c->any;
}
