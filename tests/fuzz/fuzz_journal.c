/* fuzz_journal: sb_journal_decode, as the bridge reads a journal back.
 *
 * Input: the bytes of a journal file (a damaged or hostile one).
 *
 * Properties: decoding walks the bytes record by record and never reads past
 * them; each record's fields lie inside the record; encoding a decoded record
 * gives back exactly its bytes; a record cut short is "not yet a record" (0),
 * never another record. */
#include "err.h"
#include "fuzz.h"
#include "journal.h"

static int inside(const char *p, size_t n, const char *lo, const char *hi)
{
  return n == 0 || (p >= lo && p + n <= hi);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  char *buf = fuzz_copy(data, size), *again;
  size_t off = 0;
  struct sb_journal_rec r, cut;
  long n;

  if (!buf)
    return 0;
  while (off < size) {
    n = sb_journal_decode(buf + off, size - off, &r);
    FUZZ_CHECK(n == 0 || n == SB_EINVAL || (n > 0 && (size_t)n <= size - off), "n=%ld", n);
    if (n <= 0)
      break;
    const char *lo = buf + off, *hi = buf + off + n;
    FUZZ_CHECK(inside(r.user, r.user_len, lo, hi) && inside(r.id, r.id_len, lo, hi) &&
                   inside(r.source, r.source_len, lo, hi) &&
                   inside(r.target, r.target_len, lo, hi) && inside(r.json, r.json_len, lo, hi),
               "a field outside its record at %zu", off);
    FUZZ_CHECK(sb_journal_encode(&r, NULL, 0) == n, "re-encoded size differs at %zu", off);
    again = malloc((size_t)n);
    FUZZ_CHECK(again != NULL, "out of memory");
    FUZZ_CHECK(sb_journal_encode(&r, again, (size_t)n) == n && memcmp(again, lo, (size_t)n) == 0,
               "re-encoding differs at %zu", off);
    free(again);
    FUZZ_CHECK(sb_journal_decode(lo, (size_t)n - 1, &cut) == 0, "a cut record decoded at %zu",
               off);
    off += (size_t)n;
  }
  free(buf);
  return 0;
}
