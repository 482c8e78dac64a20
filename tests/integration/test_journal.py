"""replay_dir (issue: reliability, durable intake): the replay buffers are
kept in a journal, so that a client resuming with its Last-Event-ID after a
restart of the bridge (even a kill -9) gets every later event; an event whose
publisher id the buffer already holds is dropped as a duplicate."""

import os
import re
import signal
import unittest

from faultkit import kill9, restart_same_port
from harness import FORM, BridgeTestCase, only_forms, scaled, wait_until


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


if __name__ == "__main__":
    unittest.main()
