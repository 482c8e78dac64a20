/* list.h: the one intrusive doubly linked list of the project.
 *
 * A struct that goes on a list holds a struct sb_list; a list is a head
 * struct sb_list that is its own first and last element when empty (circular,
 * as libuv's queue.h). No allocation, no ownership: putting an element on a
 * list and taking it off are O(1), and an element knows whether it is on a
 * list (sb_list_linked) once it was initialised or removed. Not thread-safe:
 * a list belongs to the thread that owns the structures on it. */
#ifndef SB_LIST_H
#define SB_LIST_H

#include <stddef.h>

struct sb_list {
  struct sb_list *next;
  struct sb_list *prev;
};

/* Returns the struct of type that holds the list link ptr in its field. */
#define sb_list_entry(ptr, type, field) ((type *)((char *)(ptr) - offsetof(type, field)))

/* Walks every link of the list head, first to last; the body must not remove
 * pos (sb_list_foreach_safe may). */
#define sb_list_foreach(pos, head) for ((pos) = (head)->next; (pos) != (head); (pos) = (pos)->next)

/* Walks every link of head, first to last; the body may remove pos. */
#define sb_list_foreach_safe(pos, tmp, head)                                  \
  for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head);            \
       (pos) = (tmp), (tmp) = (pos)->next)

/* Makes l an empty list head, or an element that is on no list. */
static inline void sb_list_init(struct sb_list *l)
{
  l->next = l->prev = l;
}

/* Returns 1 when the list head holds no element. */
static inline int sb_list_empty(const struct sb_list *head)
{
  return head->next == head;
}

/* Returns 1 when the element is on a list (it was initialised or removed
 * before, else the answer is undefined). */
static inline int sb_list_linked(const struct sb_list *l)
{
  return l->next != l;
}

/* Puts n (on no list) before pos; pos may be a head: then n goes last. */
static inline void sb_list_insert_before(struct sb_list *pos, struct sb_list *n)
{
  n->prev = pos->prev;
  n->next = pos;
  pos->prev->next = n;
  pos->prev = n;
}

/* Puts n (on no list) at the end of head. */
static inline void sb_list_push_back(struct sb_list *head, struct sb_list *n)
{
  sb_list_insert_before(head, n);
}

/* Puts n (on no list) at the front of head. */
static inline void sb_list_push_front(struct sb_list *head, struct sb_list *n)
{
  sb_list_insert_before(head->next, n);
}

/* Takes n off its list, leaving it on none; a no-op when it is on none. */
static inline void sb_list_remove(struct sb_list *n)
{
  n->prev->next = n->next;
  n->next->prev = n->prev;
  sb_list_init(n);
}

/* Returns the first link of head, or NULL when it is empty. */
static inline struct sb_list *sb_list_first(const struct sb_list *head)
{
  return head->next == head ? NULL : head->next;
}

/* Returns the last link of head, or NULL when it is empty. */
static inline struct sb_list *sb_list_last(const struct sb_list *head)
{
  return head->prev == head ? NULL : head->prev;
}

#endif
