/* Unit tests of list.h, the intrusive list. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "list.h"

struct item {
  int value;
  struct sb_list link;
};

/* Returns the values on head, first to last, as digits ("" when empty). */
static const char *values(const struct sb_list *head, char *buf)
{
  const struct sb_list *p;
  size_t n = 0;

  sb_list_foreach(p, head)
    buf[n++] = (char)('0' + sb_list_entry(p, struct item, link)->value);
  buf[n] = '\0';
  return buf;
}

static void test_empty(void **state)
{
  struct sb_list head;
  struct item a = {1, {0, 0}};
  (void)state;

  sb_list_init(&head);
  sb_list_init(&a.link);
  assert_true(sb_list_empty(&head));
  assert_null(sb_list_first(&head));
  assert_null(sb_list_last(&head));
  assert_false(sb_list_linked(&a.link));
  sb_list_remove(&a.link); /* on no list: nothing happens */
  assert_false(sb_list_linked(&a.link));
}

static void test_order(void **state)
{
  struct sb_list head;
  struct item it[5];
  char buf[8];
  (void)state;

  sb_list_init(&head);
  for (int i = 0; i < 5; i++) {
    it[i].value = i;
    sb_list_init(&it[i].link);
  }
  sb_list_push_back(&head, &it[1].link);
  sb_list_push_back(&head, &it[3].link);
  sb_list_push_front(&head, &it[0].link);
  sb_list_insert_before(&it[3].link, &it[2].link);
  sb_list_insert_before(&head, &it[4].link);
  assert_string_equal(values(&head, buf), "01234");
  assert_ptr_equal(sb_list_first(&head), &it[0].link);
  assert_ptr_equal(sb_list_last(&head), &it[4].link);
  assert_true(sb_list_linked(&it[2].link));

  sb_list_remove(&it[2].link);
  sb_list_remove(&it[0].link);
  sb_list_remove(&it[4].link);
  assert_string_equal(values(&head, buf), "13");
  assert_false(sb_list_linked(&it[2].link));
  sb_list_push_front(&head, &it[4].link);
  assert_string_equal(values(&head, buf), "413");
}

static void test_remove_while_walking(void **state)
{
  struct sb_list head, *p, *tmp;
  struct item it[6];
  char buf[8];
  (void)state;

  sb_list_init(&head);
  for (int i = 0; i < 6; i++) {
    it[i].value = i;
    sb_list_init(&it[i].link);
    sb_list_push_back(&head, &it[i].link);
  }
  sb_list_foreach_safe(p, tmp, &head)
    if (sb_list_entry(p, struct item, link)->value % 2 == 0)
      sb_list_remove(p);
  assert_string_equal(values(&head, buf), "135");
  sb_list_foreach_safe(p, tmp, &head)
    sb_list_remove(p);
  assert_true(sb_list_empty(&head));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_empty),
    cmocka_unit_test(test_order),
    cmocka_unit_test(test_remove_while_walking),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
