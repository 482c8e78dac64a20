#include "sse.h"

#include <stdlib.h>
#include <string.h>

struct frame_alloc {
  struct sb_frame f;
  char storage[];
};

static size_t put(char *out, size_t outlen, size_t at, const char *s, size_t n)
{
  if (at < outlen)
    memcpy(out + at, s, at + n <= outlen ? n : outlen - at);
  return at + n;
}

size_t sb_sse_format_event(char *out, size_t outlen, const char *id, const char *data,
                           size_t data_len)
{
  size_t at = 0, i = 0;

  if (id) {
    at = put(out, outlen, at, "id: ", 4);
    at = put(out, outlen, at, id, strlen(id));
    at = put(out, outlen, at, "\n", 1);
  }
  do {
    size_t start = i;
    while (i < data_len && data[i] != '\n' && data[i] != '\r')
      i++;
    at = put(out, outlen, at, "data: ", 6);
    at = put(out, outlen, at, data + start, i - start);
    at = put(out, outlen, at, "\n", 1);
    if (i < data_len) {
      if (data[i] == '\r' && i + 1 < data_len && data[i + 1] == '\n')
        i++;
      i++;
    } else
      break;
  } while (1);
  return put(out, outlen, at, "\n", 1);
}

int sb_sse_valid_id(const char *s, size_t len, size_t max)
{
  if (!s || len == 0 || len > max)
    return 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7f)
      return 0;
  }
  return 1;
}

int sb_sse_valid_device(const char *s, size_t len)
{
  if (!s || len < 1 || len > SB_SSE_DEVICE_MAX)
    return 0;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '_' || c == ':' || c == '-'))
      return 0;
  }
  return 1;
}

static struct sb_frame *frame_alloc(size_t len, size_t extra)
{
  size_t size = sizeof(struct frame_alloc) + len + 1 + extra;
  struct frame_alloc *a = malloc(size);
  if (!a)
    return NULL;
  memset(&a->f, 0, sizeof(a->f));
  a->f.refs = 1;
  a->f.len = len;
  a->f.cost = sb_mem_cost(size);
  a->f.bytes = a->storage;
  return &a->f;
}

static char *storage_of(struct sb_frame *f)
{
  return ((struct frame_alloc *)f)->storage;
}

struct sb_frame *sb_frame_raw(const char *bytes, size_t len)
{
  struct sb_frame *f = frame_alloc(len, 0);
  if (!f)
    return NULL;
  memcpy(storage_of(f), bytes, len);
  storage_of(f)[len] = '\0';
  return f;
}

static const char *stash(char **at, const char *s)
{
  size_t n;
  char *p = *at;
  if (!s)
    return NULL;
  n = strlen(s) + 1;
  memcpy(p, s, n);
  *at += n;
  return p;
}

struct sb_frame *sb_frame_event(const char *id, const char *source, const char *target,
                                const char *data, size_t data_len)
{
  size_t len = sb_sse_format_event(NULL, 0, id, data, data_len);
  size_t extra = (id ? strlen(id) + 1 : 0) + (source ? strlen(source) + 1 : 0) +
                 (target ? strlen(target) + 1 : 0);
  struct sb_frame *f = frame_alloc(len, extra);
  char *at;

  if (!f)
    return NULL;
  sb_sse_format_event(storage_of(f), len, id, data, data_len);
  storage_of(f)[len] = '\0';
  at = storage_of(f) + len + 1;
  f->id = stash(&at, id);
  f->source = stash(&at, source);
  f->target = stash(&at, target);
  return f;
}

struct sb_frame *sb_frame_ref(struct sb_frame *f)
{
  f->refs++;
  return f;
}

void sb_frame_unref(struct sb_frame *f)
{
  if (f && --f->refs == 0)
    free((struct frame_alloc *)f);
}
