/* fuzz.h: what every libFuzzer target of the bridge shares.
 *
 * FUZZ_CHECK is an assertion that survives NDEBUG (the fuzzers are built in
 * RelWithDebInfo): it names the property that failed and aborts, which
 * libFuzzer reports as a crash with the input that caused it. */
#ifndef SB_FUZZ_H
#define SB_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond, ...)                                                    \
  do {                                                                           \
    if (!(cond)) {                                                               \
      fprintf(stderr, "\n%s:%d: property failed: %s\n  ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                              \
      fputc('\n', stderr);                                                       \
      abort();                                                                   \
    }                                                                            \
  } while (0)

/* Returns a heap copy of n bytes, exactly n bytes long (no terminator), so
 * that AddressSanitizer catches a read one byte past the end. */
static inline char *fuzz_copy(const uint8_t *data, size_t n)
{
  char *p = malloc(n ? n : 1);
  if (!p)
    abort();
  if (n)
    memcpy(p, data, n);
  return p;
}

/* Returns a heap C string of the n bytes (cut at the first NUL), with exactly
 * one byte for the terminator. */
static inline char *fuzz_cstr(const uint8_t *data, size_t n)
{
  const uint8_t *nul = memchr(data, 0, n);
  size_t len = nul ? (size_t)(nul - data) : n;
  char *p = malloc(len + 1);
  if (!p)
    abort();
  memcpy(p, data, len);
  p[len] = '\0';
  return p;
}

/* Consumes one byte of the input (0 once it is used up). */
static inline uint8_t fuzz_byte(const uint8_t **data, size_t *size)
{
  uint8_t b;
  if (*size == 0)
    return 0;
  b = **data;
  (*data)++;
  (*size)--;
  return b;
}

#endif
