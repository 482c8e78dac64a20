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
 * take the last records.
 *
 * The file: the 8 bytes SB_JOURNAL_MAGIC, then records. A record (all
 * numbers little-endian):
 *
 *   0  sync mark, the 4 bytes FF FE 4A 52 (never found in UTF-8 text)
 *   4  u8  flags (SB_JOURNAL_PUBLISHER_ID)
 *   5  u8  0
 *   6  u16 user length     8  u16 channel length     10 u16 id length
 *   12 u32 json length
 *   16 u32 CRC-32C of the body
 *   20 u32 CRC-32C of bytes 0 to 19
 *   24 the body: user, channel, id, json
 *
 * Reading back heals: bytes that are not a whole record whose checksums hold
 * are skipped up to the next sync mark, so damage costs the damaged records
 * only; it is counted (struct sb_journal_stats). A record cut short at the
 * end of the file (a write the process did not finish) is cut off, as is
 * damage at the end, so that new records follow good ones. A file that holds
 * no record of this format (one written by an earlier version, which had no
 * sync marks, or something else) is renamed with SB_JOURNAL_ASIDE appended
 * and not read. The file is read as a stream through a buffer of at most one
 * record, and holes of a sparse file are passed over unread.
 *
 * A record is only bytes: the caller checks its event with sb_journal_event()
 * exactly as it checks a live one before it trusts anything in it.
 *
 * An sb_journal is not thread-safe: the server calls it under its intake lock. */
#ifndef SB_JOURNAL_H
#define SB_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct sb_event;
struct sb_event_error;

#define SB_JOURNAL_FILE "replay.journal"
#define SB_JOURNAL_OLD "replay.journal.old"
/* Appended to the name of a file moved aside as not of this format. */
#define SB_JOURNAL_ASIDE ".unreadable"

/* The first bytes of a journal file (format 2: records with sync marks). */
#define SB_JOURNAL_MAGIC "SBJRNL2\n"
#define SB_JOURNAL_MAGIC_LEN 8
/* Bytes of a record before its body. */
#define SB_JOURNAL_HEAD 24
/* The longest body written or read: an event is at most max_event_bytes
 * (16 MiB at most) plus its names. */
#define SB_JOURNAL_BODY_MAX (17u * 1024 * 1024)

/* rec.flags: the id came from the publisher (not assigned by the bridge). */
#define SB_JOURNAL_PUBLISHER_ID 1u

/* One event as stored. The strings are not NUL-terminated when decoded;
 * each has its length, and none is empty. */
struct sb_journal_rec {
  unsigned flags;
  const char *user, *channel, *id, *json;
  size_t user_len, channel_len, id_len, json_len;
};

/* What sb_journal_next() found at the start of a buffer. */
enum sb_journal_found {
  SB_JOURNAL_RECORD, /* a whole record of len bytes, in rec */
  SB_JOURNAL_SKIP,   /* len bytes (at least 1) that are no record: damage */
  SB_JOURNAL_MORE,   /* only part of something: len bytes are needed in all */
  SB_JOURNAL_TORN,   /* at the end: len bytes are a record cut short */
  SB_JOURNAL_END,    /* at the end: nothing left */
};

struct sb_journal_step {
  enum sb_journal_found found;
  size_t len;
  int at_mark; /* SB_JOURNAL_SKIP: the bytes start with a sync mark, so a
                  record that was damaged probably started there */
  struct sb_journal_rec rec;
};

/* What sb_journal_replay() found. */
struct sb_journal_stats {
  size_t records;       /* handed to the callback */
  size_t damaged;       /* records lost to damage (at least one per damaged stretch) */
  size_t damaged_bytes; /* bytes skipped as damage, holes included */
  size_t cut_bytes;     /* bytes cut off the end of the current file (damage or torn) */
  size_t torn_bytes;    /* of those, a record cut short by an unfinished write */
  int aside[2];         /* the old file [0] and the current one [1] were moved
                           aside (not of this format) */
};

/* Returns the CRC-32C (Castagnoli) of len bytes, continuing from crc (0 to
 * start). Pure. */
uint32_t sb_journal_crc32c(uint32_t crc, const void *buf, size_t len);

/* Looks at the start of buf (len bytes; eof: no more bytes follow them) and
 * says what is there: a record, damage to skip, a need for more bytes, a
 * record cut short at the end, or the end. A decision taken without eof
 * holds whatever bytes follow. Pure: the reader of the file and the fuzzer
 * walk a journal with it. */
void sb_journal_next(const char *buf, size_t len, int eof, struct sb_journal_step *st);

/* Encodes rec into out (outlen bytes); returns the bytes the record needs (as
 * snprintf does: call with outlen 0 to size), or SB_EINVAL when a field is
 * empty or too long for the format or a flag unknown. Pure. */
long sb_journal_encode(const struct sb_journal_rec *rec, char *out, size_t outlen);

/* Checks a record read back exactly as a live event is checked: its json goes
 * through sb_event_parse() on the topic <topic_prefix>/<user>/<channel>, and
 * user and channel must be that topic's levels. An id of the publisher must be
 * the event's "id"; one the bridge assigned must be a valid SSE id while the
 * event has none. max_event_bytes is the live limit: the stored json may pass
 * it by what the bridge added (channel and timestamp). Returns 0 and fills ev
 * (ev->id is then always the event's id, whoever assigned it), or SB_EINVAL
 * with why filled, or SB_ENOMEM; ev holds nothing after a failure. Pure. */
int sb_journal_event(const struct sb_journal_rec *rec, const char *topic_prefix,
                     size_t max_event_bytes, struct sb_event *ev, struct sb_event_error *why);

struct sb_journal;

/* Opens (creating them if need be) dir and its journal. rotate_bytes is the
 * size at which the file rotates. The journal and its old file must be
 * regular files: a symbolic link at either name is refused. Returns 0 and
 * sets *out, or SB_EIO with err naming replay_dir. */
int sb_journal_open(const char *dir, size_t rotate_bytes, struct sb_journal **out, struct sb_err *err);

typedef void (*sb_journal_fn)(void *ctx, const struct sb_journal_rec *rec);

/* Calls fn for every record, the old file's first, in the order written,
 * skipping damage (see the head of this file), and fills *st. A file not of
 * this format is moved aside. Returns 0, or SB_EIO with err naming
 * replay_dir when the current file cannot be moved aside or cut (the journal
 * is then not to be written). Call once, after sb_journal_open. */
int sb_journal_replay(struct sb_journal *j, sb_journal_fn fn, void *ctx, struct sb_journal_stats *st,
                      struct sb_err *err);

/* Reads the records of the journal file open at fd (from its start; chunk:
 * bytes per read) as sb_journal_replay() does, without cutting or moving it;
 * *good_end receives the offset after the last good record (or after the
 * magic) and *ours whether the file is of this format (it starts with the
 * magic, is empty or holds a record). Returns 0, or SB_ENOMEM or SB_EIO (what
 * was read so far is in *st). For the replay and the fuzzer. */
int sb__journal_read_fd(int fd, size_t chunk, sb_journal_fn fn, void *ctx,
                        struct sb_journal_stats *st, uint64_t *good_end, int *ours);

/* Appends rec, rotating first when the file is over its limit. Returns 0,
 * SB_EINVAL (a field too long), SB_ENOMEM or SB_EIO (errno tells). */
int sb_journal_append(struct sb_journal *j, const struct sb_journal_rec *rec);

/* Closes the journal. NULL-safe. */
void sb_journal_close(struct sb_journal *j);

#endif
