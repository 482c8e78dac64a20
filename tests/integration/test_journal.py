"""replay_dir (issue: reliability, durable intake): the replay buffers are
kept in a journal, so that a client resuming with its Last-Event-ID after a
restart of the bridge (even a kill -9) gets every later event; an event whose
publisher id the buffer already holds is dropped as a duplicate.

Issue 15 (a journal that heals and cannot be turned against the bridge): one
damaged record in the middle loses only that record, and the log says so; a
sparse file of 1 GiB is read back quickly in little memory; a symbolic link
at the journal's name stops the start naming replay_dir; a crafted record
cannot put lines on a stream (every record is checked as a live event); a
journal of the earlier format is moved aside."""

import json
import os
import re
import signal
import struct
import time
import unittest

from faultkit import kill9, restart_same_port
from harness import FORM, BridgeTestCase, only_forms, scaled, wait_until

MAGIC = b"SBJRNL2\n"
SYNC = b"\xff\xfeJR"
HEAD = 24
DAMAGED = "mqtt_sse_bridge_journal_damaged_total"
REFUSED = "mqtt_sse_bridge_journal_refused_total"


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def record(user, channel, eid, event, publisher_id=False):
    """One journal record (core/journal.h) of event (a dict or raw bytes)."""
    body = [s if isinstance(s, bytes) else s.encode()
            for s in (user, channel, eid, event if isinstance(event, (bytes, str))
                      else json.dumps(event, separators=(",", ":")))]
    head = SYNC + struct.pack("<BBHHHI", 1 if publisher_id else 0, 0, len(body[0]), len(body[1]),
                              len(body[2]), len(body[3]))
    data = b"".join(body)
    head += struct.pack("<I", crc32c(data))
    return head + struct.pack("<I", crc32c(head)) + data


def record_offsets(data):
    """Offsets of the records of a journal file that reads cleanly."""
    assert data.startswith(MAGIC)
    at, out = len(MAGIC), []
    while at < len(data):
        assert data[at:at + 4] == SYNC, at
        lens = struct.unpack_from("<HHHI", data, at + 6)
        out.append(at)
        at += HEAD + sum(lens)
    return out


def vm_hwm_kib(pid):
    """The peak resident size of a process, in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM for %d" % pid)


class Journal(BridgeTestCase):

    def test_duplicate_publisher_ids_are_dropped(self):
        b = self.start_bridge()
        c = self.sse("laptop", "u1")
        for m, eid in ((1, "e-1"), (2, "e-2"), (1, "e-1"), (3, "e-3"), (2, "e-2")):
            self.publish("u1", "timer", type="t", payload={"m": m}, id=eid)
        c.wait_events(3)
        self.publish("u1", "timer", type="t", payload={"m": 4}, id="e-4")
        c.wait_events(4)
        self.assertEqual(c.markers(), [1, 2, 3, 4])
        self.assertEqual(c.ids(), ["e-1", "e-2", "e-3", "e-4"])
        self.assertEqual(b.metrics()["mqtt_sse_bridge_events_duplicate_total"], 2)
        # the same id for another user is another event
        d = self.sse("tv", "u2")
        self.publish("u2", "timer", type="t", payload={"m": 9}, id="e-1")
        d.wait_events(1)
        self.assertEqual(d.markers(), [9])

    def check_replay_after(self, kill):
        rd = os.path.join(self.workdir, "replay")
        b = self.start_bridge(replay_dir=rd)
        c = self.sse("laptop", "u1")
        for m in range(1, 6):
            self.publish("u1", "timer", type="t", payload={"m": m})
        self.publish("u1", "timer", type="t", payload={"m": 6}, id="pub-6")
        self.publish("u2", "timer", type="t", payload={"m": 100})
        c.wait_events(6)
        ids = c.ids()
        last_seen = ids[1]  # the client saw only two events, say
        c.close()
        if kill:
            b.send_signal(signal.SIGKILL)
            b.wait_exit(scaled(5))
        b.stop()
        self.assertTrue(os.path.exists(os.path.join(rd, "replay.journal")))
        b.start()
        again = self.sse("laptop", "u1", headers={"Last-Event-ID": last_seen})
        again.wait_events(4)
        self.assertEqual(again.markers(), [3, 4, 5, 6])
        self.assertEqual(again.ids(), ids[2:])
        # nothing of another user; the new ids follow on
        self.publish("u1", "timer", type="t", payload={"m": 7})
        again.wait_events(5)
        self.assertEqual(again.markers(), [3, 4, 5, 6, 7])
        self.assertNotIn(again.ids()[-1], ids)
        # a duplicate of a journaled publisher id stays dropped after the restart
        self.publish("u1", "timer", type="t", payload={"m": 6}, id="pub-6")
        self.publish("u1", "timer", type="t", payload={"m": 8})
        again.wait_events(6)
        self.assertEqual(again.markers(), [3, 4, 5, 6, 7, 8])

    def test_replay_survives_a_clean_restart(self):
        self.check_replay_after(kill=False)

    def test_replay_survives_kill_9(self):
        self.check_replay_after(kill=True)

    def test_a_quiet_stream_resumes_across_kill_9(self):
        """A stream that has received no event yet still has a resume point
        (the id in its first bytes): after a kill -9, an event published while
        the bridge was away (daemon: the broker keeps it in the session) or
        right after its restart (plugin: the broker is the bridge) reaches it
        when it comes back with that id, as a plain EventSource would."""
        rd = os.path.join(self.workdir, "replay")
        b = self.start_bridge(replay_dir=rd)
        c = self.sse("laptop", "u1")
        m = re.match(rb"retry: 1000\nid: (\d+-0)\n\n\Z", bytes(c.body))
        self.assertIsNotNone(m, bytes(c.body))
        resume = m.group(1).decode()
        c.close()
        kill9(b)
        if FORM == "daemon":
            self.publish("u1", "timer", type="t", payload={"m": "while away"})
        restart_same_port(b)  # the daemon resumes its MQTT session
        if FORM != "daemon":
            self.publish("u1", "timer", type="t", payload={"m": "while away"})
        again = self.sse("laptop", "u1", headers={"Last-Event-ID": resume})
        # the id is of the earlier run: a system/resync event may come first
        def events():
            return [e.marker for e in again.snapshot() if e.json.get("channel") != "system"]
        wait_until(lambda: events() == ["while away"], scaled(10), what="the event published away")
        self.publish("u1", "timer", type="t", payload={"m": "fence"})
        wait_until(lambda: len(events()) >= 2, scaled(10), what="the fence")
        self.assertEqual(events(), ["while away", "fence"])

    def test_unwritable_replay_dir_stops_the_start(self):
        path = os.path.join(self.workdir, "a-file")
        open(path, "w").close()
        b = self.new_bridge(replay_dir=os.path.join(path, "sub"))
        rc, out = b.start_expect_failure()
        self.assertNotEqual(rc, 0)
        self.assertIn("replay_dir", out)


class HealingJournal(BridgeTestCase):

    def journal(self):
        return os.path.join(self.workdir, "replay", "replay.journal")

    def event(self, m, ts="2026-01-01T00:00:00.000Z"):
        return {"type": "t", "payload": {"m": m}, "channel": "timer", "timestamp": ts}

    def test_a_damaged_record_in_the_middle_loses_only_it(self):
        rd = os.path.join(self.workdir, "replay")
        b = self.start_bridge(replay_dir=rd)
        c = self.sse("laptop", "u1")
        for m in range(45):
            self.publish("u1", "timer", type="t", payload={"m": m})
        c.wait_events(45)
        ids = c.ids()
        c.close()
        b.stop()
        with open(self.journal(), "rb") as f:
            data = bytearray(f.read())
        at = record_offsets(bytes(data))
        self.assertEqual(len(at), 45)
        data[at[20] + 13] ^= 0x40  # record 20's json length grows by 16 KiB
        with open(self.journal(), "wb") as f:
            f.write(data)

        b.start()
        again = self.sse("laptop", "u1", headers={"Last-Event-ID": ids[0]})
        again.wait_events(43)
        self.assertEqual(again.markers(), [m for m in range(1, 45) if m != 20])
        self.assertEqual(again.ids(), ids[1:20] + ids[21:])
        self.assertEqual(b.metrics()[DAMAGED], 1)
        line = [l for l in b.logs().splitlines() if "damaged:" in l]
        self.assertEqual(len(line), 1, b.logs())
        self.assertIn("1 record lost, %d bytes skipped" % (at[21] - at[20]), line[0])
        self.assertNotIn("cut off", line[0])
        self.assertIn("44 events read back", b.logs())
        # the journal keeps working after it
        self.publish("u1", "timer", type="t", payload={"m": 45})
        again.wait_events(44)
        self.assertEqual(again.markers()[-1], 45)

    def test_a_sparse_journal_of_1_gib_is_read_quickly_in_little_memory(self):
        rd = os.path.join(self.workdir, "replay")
        os.makedirs(rd)
        with open(self.journal(), "wb") as f:
            f.write(MAGIC + record("u1", "timer", "1-1", self.event("before")))
            f.seek(1 << 30, os.SEEK_CUR)  # a hole of 1 GiB
            f.write(record("u1", "timer", "1-2", self.event("after")))
        b = self.new_bridge(replay_dir=rd)
        started = time.monotonic()
        b.start()
        self.bridge = b
        took = time.monotonic() - started
        peak = vm_hwm_kib(b.pid)
        self.assertLess(took, scaled(5))
        self.assertLess(peak, 256 * 1024, "the start peaked at %d KiB" % peak)
        c = self.sse("laptop", "u1", headers={"Last-Event-ID": "1-1"})
        c.wait_events(1)
        self.assertEqual(c.markers(), ["after"])
        self.assertEqual(b.metrics()[DAMAGED], 1)
        self.assertIn("%d bytes skipped" % (1 << 30), b.logs())

    def test_a_crafted_record_cannot_put_lines_on_a_stream(self):
        rd = os.path.join(self.workdir, "replay")
        os.makedirs(rd)
        evil = "\n\nevent: evil\ndata: {\"forged\":1}\n\n"
        with open(self.journal(), "wb") as f:
            f.write(MAGIC + record("u1", "timer", "1-1", self.event("first")))
            f.write(record("u1", "timer", "1-2" + evil, self.event("id")))
            f.write(record("u1", "timer", "1-3", compact_bytes(self.event("json")) + evil.encode()))
            f.write(record("u1", "timer", "1-4", dict(self.event("device"),
                                                       targetDeviceId="laptop" + evil)))
            f.write(record("u1", "timer", "p-5", self.event("no id"), publisher_id=True))
            f.write(record("u1", "chat", "1-6", self.event("channel")))
            f.write(record("u1/x", "timer", "1-7", self.event("user")))
            f.write(record("u1", "timer", "1-8", self.event("last")))
        b = self.start_bridge(replay_dir=rd)
        c = self.sse("laptop", "u1", headers={"Last-Event-ID": "1-1"})
        c.wait_events(1)
        time.sleep(scaled(0.3))
        self.assertEqual(c.markers(), ["last"])
        self.assertEqual(c.ids(), ["1-8"])
        self.assertNotIn(b"evil", bytes(c.body))
        self.assertNotIn(b"forged", bytes(c.body))
        self.assertEqual(b.metrics()[REFUSED], 6)
        self.assertEqual(b.metrics()[DAMAGED], 0)
        self.assertIn("6 records refused (not valid events)", b.logs())
        self.assertIn("2 events read back", b.logs())

    def test_a_symbolic_link_at_the_journal_stops_the_start(self):
        rd = os.path.join(self.workdir, "replay")
        os.makedirs(rd)
        target = os.path.join(self.workdir, "elsewhere")
        os.symlink(target, self.journal())
        b = self.new_bridge(replay_dir=rd)
        rc, out = b.start_expect_failure()
        self.assertGreater(rc, 0, out)
        self.assertIn("replay_dir", out)
        self.assertIn("symbolic link", out)
        self.assertFalse(os.path.exists(target), "the link was followed")

    def test_a_journal_of_the_earlier_format_is_moved_aside(self):
        rd = os.path.join(self.workdir, "replay")
        os.makedirs(rd)
        body = struct.pack("=BHHHHI", 0, 2, 3, 0, 0, 28) + b"u1" + b"1-1" + \
            compact_bytes(self.event("old"))
        old = struct.pack("=I", len(body)) + body
        with open(self.journal(), "wb") as f:
            f.write(old * 3)
        b = self.start_bridge(replay_dir=rd)
        self.assertIn("replay.journal is not a journal of this version", b.logs())
        self.assertIn("moved aside to replay.journal.unreadable", b.logs())
        with open(self.journal() + ".unreadable", "rb") as f:
            self.assertEqual(f.read(), old * 3)
        c = self.sse("laptop", "u1")
        self.publish("u1", "timer", type="t", payload={"m": "new"})
        c.wait_events(1)
        b.stop()
        with open(self.journal(), "rb") as f:
            self.assertEqual(len(record_offsets(f.read())), 1)


def compact_bytes(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


if __name__ == "__main__":
    unittest.main()
