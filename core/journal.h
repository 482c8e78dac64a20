/* journal.h: the replay buffers' copy on disk (option replay_dir).
 *
 * Every accepted event is appended to <replay_dir>/replay.journal before the
 * MQTT message that carried it is acknowledged, so that a bridge that dies
 * (even by kill -9) gives the same replay after its restart: on start the
 * journal is read back, oldest first, into the per-user replay buffers.
 * When the file passes its size limit it becomes replay.journal.old (the
 * previous .old is dropped) and a new file starts: the journal holds between
 * one and two limits' worth of the latest events.
 *
 * Records are written with one write() each, which survives the death of the
 * process (the kernel holds the bytes); there is no fsync, so a power loss may
 * take the last records. A torn record at the end of the file (a crash in the
 * middle of a write) is cut off on open.
 *
 * Record: u32 body length, then the body: u8 flags, u16 user length, u16 id
 * length, u16 source length, u16 target length, u32 json length, then the
 * bytes of each (native byte order; the file is not meant to move between
 * machines). sb_journal_decode() is pure and fuzzed.
 *
 * An sb_journal is not thread-safe: the server calls it under its intake lock. */
#ifndef SB_JOURNAL_H
#define SB_JOURNAL_H

#include <stddef.h>

#include "err.h"

#define SB_JOURNAL_FILE "replay.journal"
#define SB_JOURNAL_OLD "replay.journal.old"

/* rec.flags: the id came from the publisher (not assigned by the bridge). */
#define SB_JOURNAL_PUBLISHER_ID 1u

/* One event. The strings are not NUL-terminated when decoded; each has its
 * length. source and target have length 0 when absent. */
struct sb_journal_rec {
  unsigned flags;
  const char *user, *id, *source, *target, *json;
  size_t user_len, id_len, source_len, target_len, json_len;
};

struct sb_journal;

/* Decodes the record at the start of buf (len bytes). Returns the bytes it
 * takes, 0 when buf holds only part of a record, or SB_EINVAL when the bytes
 * cannot be a record. Pure. */
long sb_journal_decode(const char *buf, size_t len, struct sb_journal_rec *rec);

/* Encodes rec into out (outlen bytes); returns the bytes the record needs (as
 * snprintf does: call with outlen 0 to size), or SB_EINVAL when a field is too
 * long for the format. Pure. */
long sb_journal_encode(const struct sb_journal_rec *rec, char *out, size_t outlen);

/* Opens (creating them if need be) dir and its journal. rotate_bytes is the
 * size at which the file rotates. Returns 0 and sets *out, or SB_EIO with err
 * naming replay_dir. */
int sb_journal_open(const char *dir, size_t rotate_bytes, struct sb_journal **out, struct sb_err *err);

typedef void (*sb_journal_fn)(void *ctx, const struct sb_journal_rec *rec);

/* Calls fn for every record, the old file's first, in the order written.
 * Records that do not decode end that file's reading (and are counted in
 * *bad). Returns the number of records read. */
size_t sb_journal_replay(struct sb_journal *j, sb_journal_fn fn, void *ctx, size_t *bad);

/* Appends rec, rotating first when the file is over its limit. Returns 0,
 * SB_EINVAL (a field too long) or SB_EIO (errno tells). */
int sb_journal_append(struct sb_journal *j, const struct sb_journal_rec *rec);

/* Closes the journal. NULL-safe. */
void sb_journal_close(struct sb_journal *j);

#endif
