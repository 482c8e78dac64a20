/* fuzz_cors: sb_cors_new and sb_cors_match, the cors_origins list parsed
 * once and matched per request.
 *
 * Input: the list, a NUL byte, then the origin. An input without a NUL is
 * all list, matched against a request without an Origin header.
 *
 * Properties, beyond "no crash, no leak, no undefined behaviour":
 * - sb_cors_match answers as a reference that walks the list text at each
 *   request (the bridge's former way): entries are separated by spaces and
 *   commas, the first that is "*" (any origin) or exactly the origin
 *   decides, no Origin header gets nothing;
 * - sb_cors_any is 1 exactly when some entry is "*";
 * - every entry of the list, offered as the origin, is matched (itself, or
 *   "*" listed before it). */
#include "cors.h"
#include "err.h"
#include "fuzz.h"

static enum sb_cors_answer reference(const char *list, const char *origin, int *any)
{
  enum sb_cors_answer a = SB_CORS_NONE;
  size_t olen = origin ? strlen(origin) : 0;
  int decided = 0;

  *any = 0;
  for (const char *p = list; *p;) {
    size_t n;
    while (*p == ' ' || *p == ',')
      p++;
    n = strcspn(p, " ,");
    if (n == 1 && *p == '*') {
      *any = 1;
      if (!decided && origin)
        a = SB_CORS_ANY, decided = 1;
    } else if (n && origin && !decided && n == olen && memcmp(p, origin, n) == 0) {
      a = SB_CORS_ORIGIN, decided = 1;
    }
    p += n;
  }
  return a;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  const uint8_t *nul = memchr(data, 0, size);
  char *list = fuzz_cstr(data, size);
  char *origin = nul ? fuzz_cstr(nul + 1, size - (size_t)(nul + 1 - data)) : NULL;
  struct sb_cors *c = NULL;
  enum sb_cors_answer got, want;
  int any;

  FUZZ_CHECK(sb_cors_new(list, &c) == 0 && c, "cannot parse '%s'", list);
  want = reference(list, origin, &any);
  got = sb_cors_match(c, origin);
  FUZZ_CHECK(got == want, "'%s' for origin '%s': %d, reference %d", list,
             origin ? origin : "(none)", got, want);
  FUZZ_CHECK(sb_cors_any(c) == any, "any %d, reference %d for '%s'", sb_cors_any(c), any, list);

  for (const char *p = list; *p;) {
    size_t n;
    char entry[256];
    while (*p == ' ' || *p == ',')
      p++;
    n = strcspn(p, " ,");
    if (n && n < sizeof(entry)) {
      memcpy(entry, p, n);
      entry[n] = '\0';
      got = sb_cors_match(c, entry);
      FUZZ_CHECK(got == SB_CORS_ORIGIN || (got == SB_CORS_ANY && any),
                 "entry '%s' of '%s' not matched (%d)", entry, list, got);
    }
    p += n;
  }

  sb_cors_free(c);
  free(origin);
  free(list);
  return 0;
}
