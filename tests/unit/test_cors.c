/* Unit tests of cors.c: the cors_origins allow-list, parsed once and then
 * matched against each request's Origin. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cors.h"
#include "err.h"

static struct sb_cors *parse(const char *list)
{
  struct sb_cors *c = (struct sb_cors *)1;

  assert_int_equal(sb_cors_new(list, &c), 0);
  assert_non_null(c);
  return c;
}

static void test_empty_list_allows_none(void **state)
{
  const char *empties[] = {"", " ", ",", " , ,, "};
  (void)state;

  for (size_t i = 0; i < sizeof(empties) / sizeof(*empties); i++) {
    struct sb_cors *c = parse(empties[i]);
    assert_int_equal(sb_cors_match(c, "https://a.example"), SB_CORS_NONE);
    assert_int_equal(sb_cors_match(c, ""), SB_CORS_NONE);
    assert_int_equal(sb_cors_any(c), 0);
    sb_cors_free(c);
  }
}

static void test_listed_origins(void **state)
{
  struct sb_cors *c = parse("https://app.example, https://b.example,http://localhost:8080");
  (void)state;

  assert_int_equal(sb_cors_match(c, "https://app.example"), SB_CORS_ORIGIN);
  assert_int_equal(sb_cors_match(c, "https://b.example"), SB_CORS_ORIGIN);
  assert_int_equal(sb_cors_match(c, "http://localhost:8080"), SB_CORS_ORIGIN);
  /* exact matches only: no prefix, no suffix, no case folding */
  assert_int_equal(sb_cors_match(c, "https://evil.example"), SB_CORS_NONE);
  assert_int_equal(sb_cors_match(c, "https://app.example.evil"), SB_CORS_NONE);
  assert_int_equal(sb_cors_match(c, "https://app.exampl"), SB_CORS_NONE);
  assert_int_equal(sb_cors_match(c, "HTTPS://APP.EXAMPLE"), SB_CORS_NONE);
  assert_int_equal(sb_cors_match(c, "https://app.example,"), SB_CORS_NONE);
  assert_int_equal(sb_cors_match(c, ""), SB_CORS_NONE);
  /* no Origin header */
  assert_int_equal(sb_cors_match(c, NULL), SB_CORS_NONE);
  assert_int_equal(sb_cors_any(c), 0);
  sb_cors_free(c);
}

static void test_separators(void **state)
{
  /* spaces and commas, any number of them, on both sides; a tab is part of
   * an origin */
  struct sb_cors *c = parse(" ,a,,b  c ,\td");
  (void)state;

  assert_int_equal(sb_cors_match(c, "a"), SB_CORS_ORIGIN);
  assert_int_equal(sb_cors_match(c, "b"), SB_CORS_ORIGIN);
  assert_int_equal(sb_cors_match(c, "c"), SB_CORS_ORIGIN);
  assert_int_equal(sb_cors_match(c, "d"), SB_CORS_NONE);
  assert_int_equal(sb_cors_match(c, "\td"), SB_CORS_ORIGIN);
  assert_int_equal(sb_cors_match(c, "a,b"), SB_CORS_NONE);
  sb_cors_free(c);
}

static void test_any(void **state)
{
  struct sb_cors *c = parse("*");
  (void)state;

  assert_int_equal(sb_cors_match(c, "https://x.example"), SB_CORS_ANY);
  assert_int_equal(sb_cors_match(c, ""), SB_CORS_ANY);
  assert_int_equal(sb_cors_match(c, NULL), SB_CORS_NONE);
  assert_int_equal(sb_cors_any(c), 1);
  sb_cors_free(c);
  /* "*" only as a whole entry */
  c = parse("https://*.example, **");
  assert_int_equal(sb_cors_any(c), 0);
  assert_int_equal(sb_cors_match(c, "https://a.example"), SB_CORS_NONE);
  assert_int_equal(sb_cors_match(c, "https://*.example"), SB_CORS_ORIGIN);
  sb_cors_free(c);
}

static void test_first_entry_decides(void **state)
{
  struct sb_cors *c = parse("https://a.example, *, https://b.example");
  (void)state;

  /* listed before "*": the origin itself, with credentials */
  assert_int_equal(sb_cors_match(c, "https://a.example"), SB_CORS_ORIGIN);
  /* "*" comes first for every other one, even when listed after it */
  assert_int_equal(sb_cors_match(c, "https://b.example"), SB_CORS_ANY);
  assert_int_equal(sb_cors_match(c, "https://c.example"), SB_CORS_ANY);
  assert_int_equal(sb_cors_any(c), 1);
  sb_cors_free(c);
  c = parse("https://a.example *");
  assert_int_equal(sb_cors_any(c), 1);
  sb_cors_free(c);
}

static void test_long_list(void **state)
{
  char list[64 * 40], origin[40];
  size_t n = 0;
  struct sb_cors *c;
  (void)state;

  for (int i = 0; i < 64; i++)
    n += (size_t)snprintf(list + n, sizeof(list) - n, "%shttps://o%d.example", i ? ", " : "", i);
  c = parse(list);
  for (int i = 0; i < 64; i++) {
    snprintf(origin, sizeof(origin), "https://o%d.example", i);
    assert_int_equal(sb_cors_match(c, origin), SB_CORS_ORIGIN);
  }
  assert_int_equal(sb_cors_match(c, "https://o64.example"), SB_CORS_NONE);
  sb_cors_free(c);
}

static void test_null_safe(void **state)
{
  (void)state;
  sb_cors_free(NULL);
  assert_int_equal(sb_cors_match(NULL, "https://a.example"), SB_CORS_NONE);
  assert_int_equal(sb_cors_any(NULL), 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_empty_list_allows_none),
    cmocka_unit_test(test_listed_origins),
    cmocka_unit_test(test_separators),
    cmocka_unit_test(test_any),
    cmocka_unit_test(test_first_entry_decides),
    cmocka_unit_test(test_long_list),
    cmocka_unit_test(test_null_safe),
  };
  return cmocka_run_group_tests_name("cors", tests, NULL, NULL);
}
