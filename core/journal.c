#include "journal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "event.h"
#include "sse.h"
#include "topic.h"

#define SYNC "\xff\xfe" "JR"
#define SYNC_LEN 4
#define HEAD SB_JOURNAL_HEAD
/* Bytes read at a time, and the buffer a reader starts with. */
#define CHUNK (64u * 1024)
/* What the bridge adds to a published event before it stores it: the
 * channel (escaped, so up to 6 bytes a byte) and the timestamp, with keys. */
#define ADDED(channel_len) (64 + 6 * (channel_len))

struct sb_journal {
  char *path, *old_path;
  int fd;
  size_t size, rotate_bytes;
};

/* ---- the format (pure) ----------------------------------------------------- */

uint32_t sb_journal_crc32c(uint32_t crc, const void *buf, size_t len)
{
  /* the reflected polynomial 0x82F63B78, four bits at a time */
  static const uint32_t t[16] = {
    0x00000000u, 0x105ec76fu, 0x20bd8edeu, 0x30e349b1u, 0x417b1dbcu, 0x5125dad3u,
    0x61c69362u, 0x7198540du, 0x82f63b78u, 0x92a8fc17u, 0xa24bb5a6u, 0xb21572c9u,
    0xc38d26c4u, 0xd3d3e1abu, 0xe330a81au, 0xf36e6f75u,
  };
  const unsigned char *p = buf;

  crc = ~crc;
  while (len--) {
    crc = t[(crc ^ *p) & 0xf] ^ (crc >> 4);
    crc = t[(crc ^ (*p++ >> 4)) & 0xf] ^ (crc >> 4);
  }
  return ~crc;
}

static uint16_t get16(const char *p)
{
  const unsigned char *u = (const unsigned char *)p;
  return (uint16_t)(u[0] | u[1] << 8);
}

static uint32_t get32(const char *p)
{
  const unsigned char *u = (const unsigned char *)p;
  return (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
}

static void put16(char *p, size_t v)
{
  p[0] = (char)(v & 0xff);
  p[1] = (char)(v >> 8 & 0xff);
}

static void put32(char *p, uint32_t v)
{
  for (int i = 0; i < 4; i++)
    p[i] = (char)(v >> 8 * i & 0xff);
}

/* Returns the first offset from `from` where the sync mark starts, or where
 * the last bytes of buf are the start of one; len if none. */
static size_t find_sync(const char *buf, size_t len, size_t from)
{
  const char *p = buf + from, *end = buf + len;

  while (p < end && (p = memchr(p, SYNC[0], (size_t)(end - p)))) {
    size_t left = (size_t)(end - p);
    if (memcmp(p, SYNC, left < SYNC_LEN ? left : SYNC_LEN) == 0)
      return (size_t)(p - buf);
    p++;
  }
  return len;
}

/* Reads the head at buf (HEAD bytes). Returns the record's whole length and
 * fills rec's lengths and flags, or 0 when it is no head. */
static size_t decode_head(const char *buf, struct sb_journal_rec *rec)
{
  size_t total;

  if (sb_journal_crc32c(0, buf, 20) != get32(buf + 20) || buf[5] != 0 ||
      ((unsigned char)buf[4] & ~SB_JOURNAL_PUBLISHER_ID))
    return 0;
  rec->flags = (unsigned char)buf[4];
  rec->user_len = get16(buf + 6);
  rec->channel_len = get16(buf + 8);
  rec->id_len = get16(buf + 10);
  rec->json_len = get32(buf + 12);
  total = rec->user_len + rec->channel_len + rec->id_len + rec->json_len;
  if (!rec->user_len || !rec->channel_len || !rec->id_len || !rec->json_len ||
      total > SB_JOURNAL_BODY_MAX)
    return 0;
  return HEAD + total;
}

void sb_journal_next(const char *buf, size_t len, int eof, struct sb_journal_step *st)
{
  size_t total;
  const char *p;

  memset(st, 0, sizeof(*st));
  if (len == 0) {
    st->found = eof ? SB_JOURNAL_END : SB_JOURNAL_MORE;
    st->len = 1;
    return;
  }
  if (memcmp(buf, SYNC, len < SYNC_LEN ? len : SYNC_LEN) != 0) {
    st->found = SB_JOURNAL_SKIP;
    st->len = find_sync(buf, len, 1);
    return;
  }
  total = len >= HEAD ? decode_head(buf, &st->rec) : 0;
  if (len < HEAD || (total && len < total)) {
    if (!eof) {
      st->found = SB_JOURNAL_MORE;
      st->len = len < HEAD ? HEAD : total;
    } else if (find_sync(buf, len, 1) < len) {
      /* more records follow: this one is damaged, not the last write */
      st->found = SB_JOURNAL_SKIP;
      st->len = 1;
      st->at_mark = 1;
    } else {
      st->found = SB_JOURNAL_TORN;
      st->len = len;
    }
    return;
  }
  if (!total || sb_journal_crc32c(0, buf + HEAD, total - HEAD) != get32(buf + 16)) {
    memset(&st->rec, 0, sizeof(st->rec));
    st->found = SB_JOURNAL_SKIP;
    st->len = 1;
    st->at_mark = 1;
    return;
  }
  p = buf + HEAD;
  st->rec.user = p, p += st->rec.user_len;
  st->rec.channel = p, p += st->rec.channel_len;
  st->rec.id = p, p += st->rec.id_len;
  st->rec.json = p;
  st->found = SB_JOURNAL_RECORD;
  st->len = total;
}

long sb_journal_encode(const struct sb_journal_rec *r, char *out, size_t outlen)
{
  size_t body = r->user_len + r->channel_len + r->id_len + r->json_len;
  char *p = out;

  if (r->user_len == 0 || r->user_len > UINT16_MAX || r->channel_len == 0 ||
      r->channel_len > UINT16_MAX || r->id_len == 0 || r->id_len > UINT16_MAX ||
      r->json_len == 0 || body > SB_JOURNAL_BODY_MAX || (r->flags & ~SB_JOURNAL_PUBLISHER_ID))
    return SB_EINVAL;
  if (outlen < HEAD + body)
    return (long)(HEAD + body);
  memcpy(p, SYNC, SYNC_LEN);
  p[4] = (char)r->flags;
  p[5] = 0;
  put16(p + 6, r->user_len);
  put16(p + 8, r->channel_len);
  put16(p + 10, r->id_len);
  put32(p + 12, (uint32_t)r->json_len);
  p += HEAD;
  memcpy(p, r->user, r->user_len), p += r->user_len;
  memcpy(p, r->channel, r->channel_len), p += r->channel_len;
  memcpy(p, r->id, r->id_len), p += r->id_len;
  memcpy(p, r->json, r->json_len);
  put32(out + 16, sb_journal_crc32c(0, out + HEAD, body));
  put32(out + 20, sb_journal_crc32c(0, out, 20));
  return (long)(HEAD + body);
}

static int refuse(struct sb_event *ev, struct sb_event_error *why, enum sb_drop reason,
                  const char *text)
{
  sb_event_clear(ev);
  why->reason = reason;
  snprintf(why->text, sizeof(why->text), "%s", text);
  return SB_EINVAL;
}

static int same(const char *s, const char *bytes, size_t len)
{
  return s && strlen(s) == len && memcmp(s, bytes, len) == 0;
}

int sb_journal_event(const struct sb_journal_rec *r, const char *topic_prefix,
                     size_t max_event_bytes, struct sb_event *ev, struct sb_event_error *why)
{
  struct sb_event_rules rules = {topic_prefix, max_event_bytes + ADDED(r->channel_len), {0, 0}};
  size_t plen = strlen(topic_prefix), tlen = plen + r->user_len + r->channel_len + 2;
  char *topic;
  int rc;

  memset(ev, 0, sizeof(*ev));
  why->reason = SB_DROP_NONE;
  why->text[0] = '\0';
  if (!sb_topic_valid_level(r->user, r->user_len) ||
      !sb_topic_valid_level(r->channel, r->channel_len))
    return refuse(ev, why, SB_DROP_BAD_TOPIC, "its user or channel is not a topic level");
  if (!(topic = malloc(tlen)))
    return SB_ENOMEM;
  memcpy(topic, topic_prefix, plen);
  topic[plen] = '/';
  memcpy(topic + plen + 1, r->user, r->user_len);
  topic[plen + 1 + r->user_len] = '/';
  memcpy(topic + plen + 2 + r->user_len, r->channel, r->channel_len);
  rc = sb_event_parse(&rules, topic, tlen, r->json, r->json_len, ev, why);
  free(topic);
  if (rc)
    return rc;
  if (!same(ev->user, r->user, r->user_len) || !same(ev->channel, r->channel, r->channel_len))
    return refuse(ev, why, SB_DROP_BAD_TOPIC, "its user or channel is not its topic's");
  if (r->flags & SB_JOURNAL_PUBLISHER_ID) {
    if (!same(ev->id, r->id, r->id_len))
      return refuse(ev, why, SB_DROP_BAD_ID, "its id is not its event's");
    return 0;
  }
  if (ev->id)
    return refuse(ev, why, SB_DROP_BAD_ID, "its event has an id of its own");
  if (!sb_sse_valid_id(r->id, r->id_len, SB_EVENT_ID_MAX))
    return refuse(ev, why, SB_DROP_BAD_ID, "its id is not a valid SSE id");
  if (!(ev->id = strndup(r->id, r->id_len))) {
    sb_event_clear(ev);
    return SB_ENOMEM;
  }
  return 0;
}

/* ---- reading a file back --------------------------------------------------- */

struct reader {
  int fd, eof, err;
  char *buf;
  size_t cap, start, end, chunk;
};

/* Reads until want bytes are buffered or the file ends, moving the buffered
 * bytes to the front or growing the buffer (to want) when it is full.
 * Returns 0 or SB_ENOMEM. A read error ends the file (r->err keeps errno). */
static int fill(struct reader *r, size_t want)
{
  char *nb;
  ssize_t n;

  while (!r->eof && r->end - r->start < want) {
    if (r->end == r->cap && r->start > 0) {
      memmove(r->buf, r->buf + r->start, r->end - r->start);
      r->end -= r->start;
      r->start = 0;
    } else if (r->end == r->cap) {
      if (!(nb = realloc(r->buf, want)))
        return SB_ENOMEM;
      r->buf = nb;
      r->cap = want;
    }
    n = read(r->fd, r->buf + r->end, r->cap - r->end < r->chunk ? r->cap - r->end : r->chunk);
    if (n > 0)
      r->end += (size_t)n;
    else if (n == 0 || errno != EINTR) {
      r->eof = 1;
      r->err = n < 0 ? errno : 0;
    }
  }
  return 0;
}

/* With nothing buffered and in damage: passes over a hole of a sparse file
 * (zeros, which no record holds) without reading it. Returns its length. */
static size_t skip_hole(struct reader *r)
{
  off_t at = lseek(r->fd, 0, SEEK_CUR), data, end;

  if (at < 0)
    return 0;
  data = lseek(r->fd, at, SEEK_DATA);
  if (data > at)
    return (size_t)(data - at);
  if (data < 0 && errno == ENXIO && (end = lseek(r->fd, 0, SEEK_END)) > at) {
    r->eof = 1; /* a hole to the end */
    return (size_t)(end - at);
  }
  return 0;
}

int sb__journal_read_fd(int fd, size_t chunk, sb_journal_fn fn, void *ctx,
                        struct sb_journal_stats *st, uint64_t *good_end, int *ours)
{
  struct reader r = {fd, 0, 0, NULL, 0, 0, 0, chunk ? chunk : CHUNK};
  struct sb_journal_step s;
  uint64_t pos = 0;             /* the file offset of r.buf[r.start] */
  size_t want = SB_JOURNAL_MAGIC_LEN, marks = 0;
  int damaged = 0, rc = 0;      /* in a stretch of damage */

  *good_end = 0;
  *ours = 0;
  r.cap = r.chunk > CHUNK ? r.chunk : CHUNK;
  if (lseek(fd, 0, SEEK_SET) != 0)
    return SB_EIO;
  if (!(r.buf = malloc(r.cap)))
    return SB_ENOMEM;
  if ((rc = fill(&r, want)))
    goto done;
  if (r.end >= SB_JOURNAL_MAGIC_LEN && memcmp(r.buf, SB_JOURNAL_MAGIC, SB_JOURNAL_MAGIC_LEN) == 0) {
    r.start = SB_JOURNAL_MAGIC_LEN;
    pos = *good_end = SB_JOURNAL_MAGIC_LEN;
    *ours = 1;
  } else if (r.end < SB_JOURNAL_MAGIC_LEN && memcmp(r.buf, SB_JOURNAL_MAGIC, r.end) == 0) {
    *ours = 1; /* empty, or a magic cut short: a file just made */
    goto done;
  }
  want = 1;
  for (;;) {
    if (r.end - r.start < want && (rc = fill(&r, want)))
      break;
    sb_journal_next(r.buf + r.start, r.end - r.start, r.eof, &s);
    if (s.found == SB_JOURNAL_MORE) {
      want = s.len;
      continue;
    }
    want = 1;
    if (s.found == SB_JOURNAL_SKIP) {
      damaged = 1;
      marks += (size_t)s.at_mark;
      st->damaged_bytes += s.len;
      r.start += s.len;
      pos += s.len;
      if (r.start == r.end && !r.eof) {
        size_t hole = skip_hole(&r);
        r.start = r.end = 0;
        st->damaged_bytes += hole;
        pos += hole;
      }
      continue;
    }
    if (damaged) {
      st->damaged += marks ? marks : 1;
      damaged = 0;
      marks = 0;
    }
    if (s.found != SB_JOURNAL_RECORD) {
      if (s.found == SB_JOURNAL_TORN)
        st->torn_bytes += s.len;
      break;
    }
    fn(ctx, &s.rec);
    st->records++;
    *ours = 1;
    r.start += s.len;
    pos += s.len;
    *good_end = pos;
  }
done:
  free(r.buf);
  if (!rc && r.err) {
    errno = r.err;
    rc = SB_EIO;
  }
  return rc;
}

/* ---- the files ------------------------------------------------------------- */

static char *join(const char *dir, const char *name, const char *suffix)
{
  size_t n = strlen(dir) + strlen(name) + strlen(suffix) + 2;
  char *s = malloc(n);
  if (s)
    snprintf(s, n, "%s/%s%s", dir, name, suffix);
  return s;
}

/* Opens path, a regular file and not a symbolic link, with flags (O_CREAT
 * makes it 0640). Returns the descriptor, or -1 with errno (ELOOP: a link,
 * EINVAL: not a regular file). */
static int open_regular(const char *path, int flags)
{
  int fd = open(path, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0640), e;
  struct stat st;

  if (fd < 0)
    return -1;
  if (fstat(fd, &st) != 0)
    e = errno;
  else if (!S_ISREG(st.st_mode))
    e = EINVAL;
  else if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0)
    e = errno;
  else
    return fd;
  close(fd);
  errno = e;
  return -1;
}

static const char *why_not(int e)
{
  if (e == ELOOP)
    return "it is a symbolic link (the journal must be a regular file)";
  if (e == EINVAL)
    return "it is not a regular file";
  return strerror(e);
}

/* Writes the magic into the empty file j->fd. */
static int start_file(struct sb_journal *j)
{
  if (write(j->fd, SB_JOURNAL_MAGIC, SB_JOURNAL_MAGIC_LEN) != SB_JOURNAL_MAGIC_LEN)
    return SB_EIO;
  j->size = SB_JOURNAL_MAGIC_LEN;
  return 0;
}

int sb_journal_open(const char *dir, size_t rotate_bytes, struct sb_journal **out, struct sb_err *err)
{
  struct sb_journal *j = calloc(1, sizeof(*j));
  struct stat st;

  *out = NULL;
  if (!j || !(j->path = join(dir, SB_JOURNAL_FILE, "")) ||
      !(j->old_path = join(dir, SB_JOURNAL_OLD, ""))) {
    sb_err_set(err, "replay_dir: out of memory");
    goto fail;
  }
  j->fd = -1;
  j->rotate_bytes = rotate_bytes;
  if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
    sb_err_set(err, "replay_dir: cannot create %.100s: %s", dir, strerror(errno));
    goto fail;
  }
  if (lstat(j->old_path, &st) == 0 && !S_ISREG(st.st_mode)) {
    sb_err_set(err, "replay_dir: refusing %.120s: %s", j->old_path,
               why_not(S_ISLNK(st.st_mode) ? ELOOP : EINVAL));
    goto fail;
  }
  if ((j->fd = open_regular(j->path, O_RDWR | O_CREAT | O_APPEND)) < 0 ||
      fstat(j->fd, &st) != 0) {
    sb_err_set(err, "replay_dir: cannot open %.120s: %s", j->path, why_not(errno));
    goto fail;
  }
  j->size = (size_t)st.st_size;
  *out = j;
  return 0;

fail:
  sb_journal_close(j);
  return SB_EIO;
}

/* Renames path to path + SB_JOURNAL_ASIDE. */
static int move_aside(const char *path)
{
  size_t n = strlen(path) + sizeof(SB_JOURNAL_ASIDE);
  char *to = malloc(n);
  int rc;

  if (!to)
    return -1;
  snprintf(to, n, "%s%s", path, SB_JOURNAL_ASIDE);
  rc = rename(path, to);
  free(to);
  return rc;
}

/* Adds what one file gave to the whole. */
static void add_stats(struct sb_journal_stats *to, const struct sb_journal_stats *from)
{
  to->records += from->records;
  to->damaged += from->damaged;
  to->damaged_bytes += from->damaged_bytes;
  to->torn_bytes += from->torn_bytes;
}

int sb_journal_replay(struct sb_journal *j, sb_journal_fn fn, void *ctx, struct sb_journal_stats *st,
                      struct sb_err *err)
{
  struct sb_journal_stats one = {0};
  uint64_t good;
  int fd, ours, rc;

  memset(st, 0, sizeof(*st));
  if ((fd = open_regular(j->old_path, O_RDONLY)) >= 0) {
    sb__journal_read_fd(fd, 0, fn, ctx, &one, &good, &ours);
    close(fd);
    if (ours)
      add_stats(st, &one);
    else if (move_aside(j->old_path) == 0)
      st->aside[0] = 1;
  }
  memset(&one, 0, sizeof(one));
  rc = sb__journal_read_fd(j->fd, 0, fn, ctx, &one, &good, &ours);
  if (rc) {
    sb_err_set(err, "replay_dir: cannot read %.150s back: %s", j->path,
               rc == SB_EIO ? strerror(errno) : sb_strerror(rc));
    return rc;
  }
  if (!ours) {
    /* another format: keep it for a person to look at, start a new file */
    if (move_aside(j->path) != 0) {
      sb_err_set(err, "replay_dir: %.120s is not a journal of this version and cannot be moved aside: %s",
                 j->path, strerror(errno));
      return SB_EIO;
    }
    st->aside[1] = 1;
    close(j->fd);
    if ((j->fd = open_regular(j->path, O_RDWR | O_CREAT | O_EXCL | O_APPEND)) < 0) {
      sb_err_set(err, "replay_dir: cannot open %.120s: %s", j->path, why_not(errno));
      return SB_EIO;
    }
    j->size = 0;
  } else {
    add_stats(st, &one);
    if (good < j->size) {
      /* a torn or damaged end: cut it off, so that new records follow good ones */
      if (ftruncate(j->fd, (off_t)good) != 0) {
        sb_err_set(err, "replay_dir: cannot cut the damaged end off %.120s: %s", j->path,
                   strerror(errno));
        return SB_EIO;
      }
      st->cut_bytes = j->size - (size_t)good;
      j->size = (size_t)good;
    }
  }
  if (j->size == 0 && start_file(j) != 0) {
    sb_err_set(err, "replay_dir: cannot write %.150s: %s", j->path, strerror(errno));
    return SB_EIO;
  }
  return 0;
}

static int rotate(struct sb_journal *j)
{
  int fd;

  if (rename(j->path, j->old_path) != 0)
    return SB_EIO;
  if ((fd = open_regular(j->path, O_RDWR | O_CREAT | O_EXCL | O_APPEND)) < 0)
    return SB_EIO;
  close(j->fd);
  j->fd = fd;
  j->size = 0;
  return start_file(j);
}

int sb_journal_append(struct sb_journal *j, const struct sb_journal_rec *rec)
{
  char small[2048], *buf = small;
  long need = sb_journal_encode(rec, NULL, 0);
  ssize_t n;
  int rc = 0;

  if (need < 0)
    return SB_EINVAL;
  if (j->size == 0 && start_file(j) != 0)
    return SB_EIO;
  if (j->size + (size_t)need > j->rotate_bytes && j->size > SB_JOURNAL_MAGIC_LEN && rotate(j) != 0)
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
