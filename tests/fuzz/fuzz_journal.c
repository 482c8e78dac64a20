/* fuzz_journal: reading a journal back, as the bridge does at start: the
 * walk over records with resync after damage (sb_journal_next), the file
 * reader (sb__journal_read_fd), and the check of each record as a live event
 * (sb_journal_event).
 *
 * Input: one byte, then the bytes of a journal file (a damaged or hostile
 * one). The byte's low 7 bits pick the reader's read size (1 to 128 bytes);
 * its high bit seals the file first: every head found at a sync mark gets the
 * checksums its bytes need, so that a mutated record is read back and its
 * content reaches the event checks (checksums that hold are what a hostile
 * writer makes too).
 *
 * Properties, beyond "no crash, no leak, no undefined behaviour":
 * - the walk over the whole bytes (at their end) ends; each step is a record,
 *   damage of at least one byte, a torn record (only the last bytes) or the
 *   end, never past the bytes; a record's fields lie inside it, add up to its
 *   length, and encoding it again gives exactly its bytes;
 * - the file reader, reading a few bytes at a time from a file of those
 *   bytes, hands out exactly the records of the walk, in order, and counts
 *   exactly the walk's damaged and torn bytes; a file is "ours" exactly when
 *   it starts with the magic, is empty or holds a record;
 * - a record that sb_journal_event accepts is a valid event: user and channel
 *   are one topic level each and the record's, its id (the record's) and
 *   devices are safe SSE ids, its json is one line without NUL that parses to
 *   an object with a type and a payload; framed for the wire it is exactly
 *   "id: <id>\ndata: <json>\n\n". A refused one names a drop reason and leaves
 *   the event empty. */
#include <sys/mman.h>
#include <unistd.h>

#include <jansson.h>

#include "err.h"
#include "event.h"
#include "fuzz.h"
#include "journal.h"
#include "sse.h"
#include "topic.h"

#define MAX_EVENT_BYTES 4000

struct walk {
  char **recs; /* each record, encoded again */
  size_t *lens;
  size_t n, cap, damaged_bytes, torn_bytes;
};

static void keep(struct walk *w, const struct sb_journal_rec *r)
{
  long n = sb_journal_encode(r, NULL, 0);

  FUZZ_CHECK(n > 0, "a record read back does not encode: %ld", n);
  if (w->n == w->cap) {
    w->cap = w->cap ? w->cap * 2 : 16;
    w->recs = realloc(w->recs, w->cap * sizeof(*w->recs));
    w->lens = realloc(w->lens, w->cap * sizeof(*w->lens));
    FUZZ_CHECK(w->recs && w->lens, "out of memory");
  }
  w->recs[w->n] = malloc((size_t)n);
  FUZZ_CHECK(w->recs[w->n] != NULL, "out of memory");
  FUZZ_CHECK(sb_journal_encode(r, w->recs[w->n], (size_t)n) == n, "encoding changed size");
  w->lens[w->n++] = (size_t)n;
}

static void walk_free(struct walk *w)
{
  for (size_t i = 0; i < w->n; i++)
    free(w->recs[i]);
  free(w->recs);
  free(w->lens);
}

static int inside(const char *p, size_t n, const char *lo, const char *hi)
{
  return n > 0 && p >= lo && p + n <= hi;
}

/* The event checks of a record. */
static void check_event(const struct sb_journal_rec *r)
{
  struct sb_event ev;
  struct sb_event_error why;
  struct sb_frame *f;
  json_t *root;
  char *want;
  size_t wlen;
  int rc = sb_journal_event(r, "sync", MAX_EVENT_BYTES, &ev, &why);

  if (rc) {
    FUZZ_CHECK(rc == SB_EINVAL || rc == SB_ENOMEM, "rc %d", rc);
    FUZZ_CHECK(rc != SB_EINVAL || (why.reason != SB_DROP_NONE && why.text[0]), "no reason");
    FUZZ_CHECK(!ev.user && !ev.channel && !ev.id && !ev.source && !ev.target && !ev.json,
               "a refused record left an event");
    return;
  }
  FUZZ_CHECK(sb_topic_valid_level(ev.user, strlen(ev.user)) &&
                 strlen(ev.user) == r->user_len && !memcmp(ev.user, r->user, r->user_len),
             "user '%s'", ev.user);
  FUZZ_CHECK(sb_topic_valid_level(ev.channel, strlen(ev.channel)) &&
                 strlen(ev.channel) == r->channel_len &&
                 !memcmp(ev.channel, r->channel, r->channel_len),
             "channel '%s'", ev.channel);
  FUZZ_CHECK(ev.id && sb_sse_valid_id(ev.id, strlen(ev.id), SB_EVENT_ID_MAX) &&
                 strlen(ev.id) == r->id_len && !memcmp(ev.id, r->id, r->id_len),
             "id");
  FUZZ_CHECK(!ev.source || sb_sse_valid_id(ev.source, strlen(ev.source), SB_EVENT_ID_MAX),
             "source");
  FUZZ_CHECK(!ev.target || sb_sse_valid_id(ev.target, strlen(ev.target), SB_EVENT_ID_MAX),
             "target");
  FUZZ_CHECK(ev.json && strlen(ev.json) == ev.json_len && !strpbrk(ev.json, "\r\n"),
             "json not one line: %s", ev.json);
  root = json_loadb(ev.json, ev.json_len, 0, NULL);
  FUZZ_CHECK(json_is_object(root) && json_is_string(json_object_get(root, "type")) &&
                 json_object_get(root, "payload"),
             "json %s", ev.json);
  json_decref(root);
  f = sb_frame_event(ev.id, ev.source, ev.target, ev.json, ev.json_len);
  FUZZ_CHECK(f != NULL, "out of memory");
  wlen = strlen(ev.id) + ev.json_len + 13;
  want = malloc(wlen + 1);
  FUZZ_CHECK(want != NULL, "out of memory");
  snprintf(want, wlen + 1, "id: %s\ndata: %s\n\n", ev.id, ev.json);
  FUZZ_CHECK(f->len == wlen && memcmp(f->bytes, want, wlen) == 0, "framed as %.*s", (int)f->len,
             f->bytes);
  free(want);
  sb_frame_unref(f);
  sb_event_clear(&ev);
}

/* The walk over data at its end, as the reader would: after the magic, if
 * the bytes start with it. */
static void walk(const char *data, size_t size, struct walk *w, int *ours)
{
  struct sb_journal_step st;
  size_t off = 0;

  *ours = size == 0;
  if (size >= SB_JOURNAL_MAGIC_LEN && !memcmp(data, SB_JOURNAL_MAGIC, SB_JOURNAL_MAGIC_LEN)) {
    off = SB_JOURNAL_MAGIC_LEN;
    *ours = 1;
  } else if (size < SB_JOURNAL_MAGIC_LEN && !memcmp(data, SB_JOURNAL_MAGIC, size)) {
    *ours = 1;
    return;
  }
  for (;;) {
    const char *lo = data + off, *hi;
    sb_journal_next(lo, size - off, 1, &st);
    FUZZ_CHECK(st.found != SB_JOURNAL_MORE, "more asked for at the end, at %zu", off);
    if (st.found == SB_JOURNAL_END) {
      FUZZ_CHECK(off == size, "the end before the end, at %zu", off);
      break;
    }
    FUZZ_CHECK(st.len >= 1 && st.len <= size - off, "len %zu at %zu of %zu", st.len, off, size);
    if (st.found == SB_JOURNAL_TORN) {
      FUZZ_CHECK(st.len == size - off, "a torn record before the end, at %zu", off);
      w->torn_bytes += st.len;
      break;
    }
    if (st.found == SB_JOURNAL_SKIP) {
      w->damaged_bytes += st.len;
      off += st.len;
      continue;
    }
    FUZZ_CHECK(st.found == SB_JOURNAL_RECORD, "found %d", (int)st.found);
    hi = lo + st.len;
    FUZZ_CHECK(inside(st.rec.user, st.rec.user_len, lo, hi) &&
                   inside(st.rec.channel, st.rec.channel_len, lo, hi) &&
                   inside(st.rec.id, st.rec.id_len, lo, hi) &&
                   inside(st.rec.json, st.rec.json_len, lo, hi) &&
                   SB_JOURNAL_HEAD + st.rec.user_len + st.rec.channel_len + st.rec.id_len +
                           st.rec.json_len == st.len,
               "fields outside the record at %zu", off);
    keep(w, &st.rec);
    FUZZ_CHECK(w->lens[w->n - 1] == st.len && !memcmp(w->recs[w->n - 1], lo, st.len),
               "encoding again differs at %zu", off);
    check_event(&st.rec);
    *ours = 1;
    off += st.len;
  }
}

static void put32(char *p, uint32_t v)
{
  for (int i = 0; i < 4; i++)
    p[i] = (char)(v >> 8 * i & 0xff);
}

/* Gives every head at a sync mark the checksums that make it a record. */
static void seal(char *buf, size_t size)
{
  const unsigned char *u;
  size_t body;

  for (size_t at = 0; at + SB_JOURNAL_HEAD <= size; at++) {
    if (memcmp(buf + at, "\xff\xfeJR", 4) != 0)
      continue;
    u = (const unsigned char *)buf + at;
    body = (size_t)(u[6] | u[7] << 8) + (size_t)(u[8] | u[9] << 8) + (size_t)(u[10] | u[11] << 8) +
           ((size_t)u[12] | (size_t)u[13] << 8 | (size_t)u[14] << 16 | (size_t)u[15] << 24);
    if (body <= size - at - SB_JOURNAL_HEAD)
      put32(buf + at + 16, sb_journal_crc32c(0, buf + at + SB_JOURNAL_HEAD, body));
    put32(buf + at + 20, sb_journal_crc32c(0, buf + at, 20));
  }
}

static void from_reader(void *ctx, const struct sb_journal_rec *r)
{
  keep(ctx, r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct walk whole = {0}, read = {0};
  struct sb_journal_stats st = {0};
  uint64_t good;
  size_t chunk;
  char *buf;
  int ours, reader_ours, fd;

  if (size < 1)
    return 0;
  chunk = 1 + (data[0] & 0x7f);
  buf = fuzz_copy(data + 1, size - 1);
  size--;
  if (data[0] & 0x80)
    seal(buf, size);
  walk(buf, size, &whole, &ours);

  fd = memfd_create("fuzz_journal", 0);
  FUZZ_CHECK(fd >= 0, "memfd_create");
  FUZZ_CHECK(size == 0 || write(fd, buf, size) == (ssize_t)size, "write");
  FUZZ_CHECK(sb__journal_read_fd(fd, chunk, from_reader, &read, &st, &good, &reader_ours) == 0,
             "the reader failed");
  close(fd);
  FUZZ_CHECK(reader_ours == ours, "ours: reader %d, walk %d", reader_ours, ours);
  FUZZ_CHECK(read.n == whole.n && st.records == whole.n, "records: reader %zu, walk %zu", read.n,
             whole.n);
  for (size_t i = 0; i < read.n; i++)
    FUZZ_CHECK(read.lens[i] == whole.lens[i] && !memcmp(read.recs[i], whole.recs[i], read.lens[i]),
               "record %zu differs", i);
  FUZZ_CHECK(st.damaged_bytes == whole.damaged_bytes && st.torn_bytes == whole.torn_bytes,
             "damaged %zu/%zu torn %zu/%zu", st.damaged_bytes, whole.damaged_bytes,
             st.torn_bytes, whole.torn_bytes);
  FUZZ_CHECK((st.damaged == 0) == (st.damaged_bytes == 0), "damaged %zu for %zu bytes",
             st.damaged, st.damaged_bytes);
  FUZZ_CHECK(good + st.torn_bytes <= size, "good end %llu", (unsigned long long)good);
  walk_free(&whole);
  walk_free(&read);
  free(buf);
  return 0;
}
