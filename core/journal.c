#include "journal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "err.h"

#define HDR (4 + 1 + 2 * 4 + 4) /* length, flags, four u16 lengths, json length */
/* The longest body accepted on reading: an event is at most max_event_bytes
 * (16 MiB at most) plus its ids. */
#define BODY_MAX (17u * 1024 * 1024)

struct sb_journal {
  char *path, *old_path;
  int fd;
  size_t size, rotate_bytes;
};

static uint16_t get16(const char *p)
{
  uint16_t v;
  memcpy(&v, p, sizeof(v));
  return v;
}

static uint32_t get32(const char *p)
{
  uint32_t v;
  memcpy(&v, p, sizeof(v));
  return v;
}

long sb_journal_decode(const char *buf, size_t len, struct sb_journal_rec *rec)
{
  uint32_t body, jl;
  size_t ul, il, sl, tl;
  const char *p;

  if (len < 4)
    return 0;
  body = get32(buf);
  if (body < HDR - 4 || body > BODY_MAX)
    return SB_EINVAL;
  if (len - 4 < body)
    return 0;
  p = buf + 4;
  rec->flags = (unsigned char)p[0];
  ul = get16(p + 1);
  il = get16(p + 3);
  sl = get16(p + 5);
  tl = get16(p + 7);
  jl = get32(p + 9);
  if (rec->flags & ~SB_JOURNAL_PUBLISHER_ID || ul == 0 || il == 0 || jl == 0 ||
      (size_t)body != HDR - 4 + ul + il + sl + tl + jl)
    return SB_EINVAL;
  p = buf + HDR;
  rec->user = p, rec->user_len = ul, p += ul;
  rec->id = p, rec->id_len = il, p += il;
  rec->source = p, rec->source_len = sl, p += sl;
  rec->target = p, rec->target_len = tl, p += tl;
  rec->json = p, rec->json_len = jl;
  return (long)(4 + body);
}

long sb_journal_encode(const struct sb_journal_rec *r, char *out, size_t outlen)
{
  size_t need = HDR + r->user_len + r->id_len + r->source_len + r->target_len + r->json_len;
  uint16_t l16[4] = {(uint16_t)r->user_len, (uint16_t)r->id_len, (uint16_t)r->source_len,
                     (uint16_t)r->target_len};
  uint32_t body = (uint32_t)(need - 4), jl = (uint32_t)r->json_len;
  char *p = out;

  if (r->user_len == 0 || r->user_len > UINT16_MAX || r->id_len == 0 || r->id_len > UINT16_MAX ||
      r->source_len > UINT16_MAX || r->target_len > UINT16_MAX || r->json_len == 0 ||
      need - 4 > BODY_MAX || (r->flags & ~SB_JOURNAL_PUBLISHER_ID))
    return SB_EINVAL;
  if (outlen < need)
    return (long)need;
  memcpy(p, &body, 4);
  p[4] = (char)r->flags;
  memcpy(p + 5, l16, sizeof(l16));
  memcpy(p + 13, &jl, 4);
  p += HDR;
  memcpy(p, r->user, r->user_len), p += r->user_len;
  memcpy(p, r->id, r->id_len), p += r->id_len;
  if (r->source_len)
    memcpy(p, r->source, r->source_len), p += r->source_len;
  if (r->target_len)
    memcpy(p, r->target, r->target_len), p += r->target_len;
  memcpy(p, r->json, r->json_len);
  return (long)need;
}

static char *join(const char *dir, const char *name)
{
  size_t n = strlen(dir) + strlen(name) + 2;
  char *s = malloc(n);
  if (s)
    snprintf(s, n, "%s/%s", dir, name);
  return s;
}

int sb_journal_open(const char *dir, size_t rotate_bytes, struct sb_journal **out, struct sb_err *err)
{
  struct sb_journal *j = calloc(1, sizeof(*j));
  struct stat st;

  *out = NULL;
  if (!j || !(j->path = join(dir, SB_JOURNAL_FILE)) || !(j->old_path = join(dir, SB_JOURNAL_OLD))) {
    sb_err_set(err, "replay_dir: out of memory");
    goto fail;
  }
  j->fd = -1;
  j->rotate_bytes = rotate_bytes;
  if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
    sb_err_set(err, "replay_dir: cannot create %.100s: %s", dir, strerror(errno));
    goto fail;
  }
  if ((j->fd = open(j->path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0640)) < 0 ||
      fstat(j->fd, &st) != 0) {
    sb_err_set(err, "replay_dir: cannot open %.150s: %s", j->path,
             strerror(errno));
    goto fail;
  }
  j->size = (size_t)st.st_size;
  *out = j;
  return 0;

fail:
  sb_journal_close(j);
  return SB_EIO;
}

/* Reads the whole file at path; NULL with *len 0 when it does not exist. */
static char *slurp(const char *path, size_t *len)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  char *buf = NULL;
  size_t got = 0;

  *len = 0;
  if (fd < 0)
    return NULL;
  if (fstat(fd, &st) == 0 && st.st_size > 0 && (buf = malloc((size_t)st.st_size))) {
    while (got < (size_t)st.st_size) {
      ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
      if (n <= 0)
        break;
      got += (size_t)n;
    }
  }
  close(fd);
  *len = got;
  return buf;
}

/* Feeds the records of one file; returns the offset after the last good one. */
static size_t replay_file(const char *path, sb_journal_fn fn, void *ctx, size_t *count,
                          size_t *bad)
{
  size_t len, off = 0;
  char *buf = slurp(path, &len);
  struct sb_journal_rec rec;
  long n;

  while (buf && off < len) {
    n = sb_journal_decode(buf + off, len - off, &rec);
    if (n <= 0) {
      (*bad)++;
      break;
    }
    fn(ctx, &rec);
    (*count)++;
    off += (size_t)n;
  }
  free(buf);
  return off;
}

size_t sb_journal_replay(struct sb_journal *j, sb_journal_fn fn, void *ctx, size_t *bad)
{
  size_t count = 0, good;

  *bad = 0;
  replay_file(j->old_path, fn, ctx, &count, bad);
  good = replay_file(j->path, fn, ctx, &count, bad);
  /* a torn or damaged end is cut off, so that new records follow good ones */
  if (good < j->size && ftruncate(j->fd, (off_t)good) == 0)
    j->size = good;
  return count;
}

static int rotate(struct sb_journal *j)
{
  int fd;

  if (rename(j->path, j->old_path) != 0)
    return SB_EIO;
  if ((fd = open(j->path, O_RDWR | O_CREAT | O_APPEND | O_TRUNC | O_CLOEXEC, 0640)) < 0)
    return SB_EIO;
  close(j->fd);
  j->fd = fd;
  j->size = 0;
  return 0;
}

int sb_journal_append(struct sb_journal *j, const struct sb_journal_rec *rec)
{
  char small[2048], *buf = small;
  long need = sb_journal_encode(rec, NULL, 0);
  ssize_t n;
  int rc = 0;

  if (need < 0)
    return SB_EINVAL;
  if (j->size + (size_t)need > j->rotate_bytes && j->size > 0 && rotate(j) != 0)
    return SB_EIO;
  if ((size_t)need > sizeof(small) && !(buf = malloc((size_t)need)))
    return SB_ENOMEM;
  sb_journal_encode(rec, buf, (size_t)need);
  n = write(j->fd, buf, (size_t)need);
  if (n != need) {
    /* a short write leaves a torn record: cut it off again */
    if (n > 0 && ftruncate(j->fd, (off_t)j->size) != 0)
      n = -1;
    rc = SB_EIO;
  } else {
    j->size += (size_t)need;
  }
  if (buf != small)
    free(buf);
  return rc;
}

void sb_journal_close(struct sb_journal *j)
{
  if (!j)
    return;
  if (j->fd >= 0)
    close(j->fd);
  free(j->path);
  free(j->old_path);
  free(j);
}
