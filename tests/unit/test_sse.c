/* Unit tests of sse.c: the SSE wire format and shared frames. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "sse.h"

/* Formats (id, data) into a buffer and checks the exact bytes, and that the
 * sizing call agrees with them. */
static void check_format(const char *id, const char *data, size_t data_len, const char *want)
{
  char out[512];
  size_t need = sb_sse_format_event(NULL, 0, id, data, data_len);
  size_t n;

  assert_int_equal(need, strlen(want));
  memset(out, '#', sizeof(out));
  n = sb_sse_format_event(out, sizeof(out), id, data, data_len);
  assert_int_equal(n, strlen(want));
  assert_memory_equal(out, want, n);
  assert_int_equal(out[n], '#'); /* nothing written past the framing */
}

static void test_format_with_id(void **state)
{
  (void)state;
  check_format("42", "hello", 5, "id: 42\ndata: hello\n\n");
  check_format("evt-1", "{\"type\":\"x\"}", 12, "id: evt-1\ndata: {\"type\":\"x\"}\n\n");
}

static void test_format_without_id(void **state)
{
  (void)state;
  check_format(NULL, "hello", 5, "data: hello\n\n");
}

static void test_format_line_splitting(void **state)
{
  (void)state;
  check_format(NULL, "a\nb", 3, "data: a\ndata: b\n\n");
  check_format(NULL, "a\rb", 3, "data: a\ndata: b\n\n");
  check_format(NULL, "a\r\nb", 4, "data: a\ndata: b\n\n");
  check_format("7", "one\ntwo\rthree\r\nfour", 19,
               "id: 7\ndata: one\ndata: two\ndata: three\ndata: four\n\n");
  /* empty lines in between */
  check_format(NULL, "a\n\nb", 4, "data: a\ndata: \ndata: b\n\n");
  check_format(NULL, "a\r\rb", 4, "data: a\ndata: \ndata: b\n\n");
  check_format(NULL, "a\n\r\nb", 5, "data: a\ndata: \ndata: b\n\n");
  /* "\n\r" is two line ends, not one */
  check_format(NULL, "a\n\rb", 4, "data: a\ndata: \ndata: b\n\n");
  /* a trailing line end keeps the empty last line */
  check_format(NULL, "a\n", 2, "data: a\ndata: \n\n");
  check_format(NULL, "a\r\n", 3, "data: a\ndata: \n\n");
  check_format(NULL, "\r\n", 2, "data: \ndata: \n\n");
  check_format(NULL, "\n", 1, "data: \ndata: \n\n");
}

static void test_format_empty_data(void **state)
{
  (void)state;
  check_format(NULL, "", 0, "data: \n\n");
  check_format("1", "", 0, "id: 1\ndata: \n\n");
}

static void test_format_data_len_only(void **state)
{
  (void)state;
  /* only data_len bytes are framed, NUL or not */
  check_format(NULL, "abcdef", 3, "data: abc\n\n");
  {
    char out[32];
    size_t n = sb_sse_format_event(out, sizeof(out), NULL, "a\0b", 3);
    assert_int_equal(n, 11);
    assert_memory_equal(out, "data: a\0b\n\n", 11);
  }
}

static void test_format_sizing(void **state)
{
  const char *want = "id: 99\ndata: x\ndata: y\n\n";
  char small[10];
  (void)state;

  assert_int_equal(sb_sse_format_event(NULL, 0, "99", "x\ny", 3), strlen(want));
  /* a short buffer gets the first outlen bytes and the full size back */
  memset(small, '#', sizeof(small));
  assert_int_equal(sb_sse_format_event(small, 8, "99", "x\ny", 3), strlen(want));
  assert_memory_equal(small, want, 8);
  assert_int_equal(small[8], '#');
  assert_int_equal(small[9], '#');
}

static void test_frame_raw(void **state)
{
  struct sb_frame *f;
  (void)state;

  f = sb_frame_raw(SB_SSE_HEARTBEAT, strlen(SB_SSE_HEARTBEAT));
  assert_non_null(f);
  assert_int_equal(f->refs, 1);
  assert_int_equal(f->len, 13);
  assert_memory_equal(f->bytes, ": heartbeat\n\n", 13);
  assert_int_equal(f->bytes[13], '\0');
  assert_null(f->id);
  assert_null(f->source);
  assert_null(f->target);
  sb_frame_unref(f);

  /* a copy: changing the source afterwards changes nothing */
  char src[] = "retry: 1000\n\n";
  f = sb_frame_raw(src, strlen(src));
  assert_non_null(f);
  src[0] = 'X';
  assert_memory_equal(f->bytes, "retry: 1000\n\n", 13);
  assert_int_equal(f->len, 13);
  sb_frame_unref(f);

  f = sb_frame_raw("", 0);
  assert_non_null(f);
  assert_int_equal(f->len, 0);
  assert_int_equal(f->bytes[0], '\0');
  sb_frame_unref(f);
}

static void test_frame_event(void **state)
{
  char id[] = "evt-1", source[] = "phone", target[] = "laptop";
  const char *data = "{\"a\":1}\n{\"b\":2}";
  const char *want = "id: evt-1\ndata: {\"a\":1}\ndata: {\"b\":2}\n\n";
  struct sb_frame *f;
  (void)state;

  f = sb_frame_event(id, source, target, data, strlen(data));
  assert_non_null(f);
  assert_int_equal(f->refs, 1);
  assert_int_equal(f->len, strlen(want));
  assert_memory_equal(f->bytes, want, f->len);
  assert_int_equal(f->bytes[f->len], '\0');
  assert_string_equal(f->id, "evt-1");
  assert_string_equal(f->source, "phone");
  assert_string_equal(f->target, "laptop");
  /* copied, not borrowed */
  assert_ptr_not_equal(f->id, id);
  assert_ptr_not_equal(f->source, source);
  assert_ptr_not_equal(f->target, target);
  memset(id, 'X', 5);
  memset(source, 'X', 5);
  memset(target, 'X', 6);
  assert_string_equal(f->id, "evt-1");
  assert_string_equal(f->source, "phone");
  assert_string_equal(f->target, "laptop");
  sb_frame_unref(f);
}

static void test_frame_event_optional_fields(void **state)
{
  struct sb_frame *f;
  (void)state;

  f = sb_frame_event(NULL, NULL, NULL, "x", 1);
  assert_non_null(f);
  assert_int_equal(f->len, 9);
  assert_memory_equal(f->bytes, "data: x\n\n", 9);
  assert_null(f->id);
  assert_null(f->source);
  assert_null(f->target);
  sb_frame_unref(f);

  f = sb_frame_event("1", NULL, "tab", "x", 1);
  assert_non_null(f);
  assert_int_equal(f->len, 15);
  assert_memory_equal(f->bytes, "id: 1\ndata: x\n\n", 15);
  assert_string_equal(f->id, "1");
  assert_null(f->source);
  assert_string_equal(f->target, "tab");
  sb_frame_unref(f);

  f = sb_frame_event("2", "dev", NULL, "", 0);
  assert_non_null(f);
  assert_int_equal(f->len, 14);
  assert_memory_equal(f->bytes, "id: 2\ndata: \n\n", 14);
  assert_string_equal(f->source, "dev");
  assert_null(f->target);
  sb_frame_unref(f);
}

static void test_frame_refcount(void **state)
{
  struct sb_frame *f = sb_frame_event("1", "a", "b", "data", 4);
  (void)state;

  assert_non_null(f);
  assert_ptr_equal(sb_frame_ref(f), f);
  assert_int_equal(f->refs, 2);
  assert_ptr_equal(sb_frame_ref(f), f);
  assert_int_equal(f->refs, 3);
  sb_frame_unref(f);
  assert_int_equal(f->refs, 2);
  sb_frame_unref(f);
  assert_int_equal(f->refs, 1);
  /* the bytes are intact while a reference is held */
  assert_memory_equal(f->bytes, "id: 1\ndata: data\n\n", 18);
  sb_frame_unref(f); /* frees; ASan reports a leak or double free otherwise */
  sb_frame_unref(NULL);
}

static void test_valid_id(void **state)
{
  char big[130];
  (void)state;

  assert_int_equal(sb_sse_valid_id("abc", 3, 128), 1);
  assert_int_equal(sb_sse_valid_id("a b:c.d-e_f", 11, 128), 1);
  assert_int_equal(sb_sse_valid_id("caf\xc3\xa9", 5, 128), 1);
  assert_int_equal(sb_sse_valid_id("x", 1, 1), 1);

  assert_int_equal(sb_sse_valid_id(NULL, 0, 128), 0);
  assert_int_equal(sb_sse_valid_id(NULL, 3, 128), 0);
  assert_int_equal(sb_sse_valid_id("", 0, 128), 0);
  assert_int_equal(sb_sse_valid_id("a\nb", 3, 128), 0);
  assert_int_equal(sb_sse_valid_id("a\rb", 3, 128), 0);
  assert_int_equal(sb_sse_valid_id("a\0b", 3, 128), 0);
  assert_int_equal(sb_sse_valid_id("a\tb", 3, 128), 0);
  assert_int_equal(sb_sse_valid_id("\x1f", 1, 128), 0);
  assert_int_equal(sb_sse_valid_id("a\x7f", 2, 128), 0);
  assert_int_equal(sb_sse_valid_id("xy", 2, 1), 0);

  memset(big, 'i', sizeof(big));
  assert_int_equal(sb_sse_valid_id(big, 128, 128), 1);
  assert_int_equal(sb_sse_valid_id(big, 129, 128), 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_format_with_id),
    cmocka_unit_test(test_format_without_id),
    cmocka_unit_test(test_format_line_splitting),
    cmocka_unit_test(test_format_empty_data),
    cmocka_unit_test(test_format_data_len_only),
    cmocka_unit_test(test_format_sizing),
    cmocka_unit_test(test_frame_raw),
    cmocka_unit_test(test_frame_event),
    cmocka_unit_test(test_frame_event_optional_fields),
    cmocka_unit_test(test_frame_refcount),
    cmocka_unit_test(test_valid_id),
  };
  return cmocka_run_group_tests_name("sse", tests, NULL, NULL);
}
