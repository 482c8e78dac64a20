"""Replay after a reconnect (SPEC: Last-Event-ID header or lastEventId query
parameter; the user's later events still in the replay buffer come first,
with the same exclusion and targeting rules)."""

import unittest

from harness import BridgeTestCase, assert_quiet


class Replay(BridgeTestCase):

    def setUp(self):
        super().setUp()

    def reconnect_scenario(self, how):
        """a2 sees e1, e2, goes away, misses e3..e7, comes back with the id of
        e2 and must get exactly the ones meant for it, then live events."""
        self.start_bridge()
        a1 = self.sse("a1", "A")
        a2 = self.sse("a2", "A")
        a3 = self.sse("a3", "A")
        b1 = self.sse("b1", "B")
        self.publish("A", "timer", payload={"m": "e1"})
        self.publish("A", "timer", payload={"m": "e2"})
        self.assert_markers(a2, ["e1", "e2"])
        last = a2.snapshot()[-1].id
        a2.close()

        self.publish("A", "timer", payload={"m": "e3 from a2"}, sourceDeviceId="a2")
        self.publish("A", "timer", payload={"m": "e4 to a3"}, targetDeviceId="a3")
        self.publish("A", "notes", payload={"m": "e5"})
        self.publish("A", "timer", payload={"m": "e6 to a2"}, targetDeviceId="a2")
        self.publish("A", "timer", payload={"m": "e7 from a1"}, sourceDeviceId="a1")
        self.publish("B", "timer", payload={"m": "B1"})
        self.assert_markers(a3, ["e1", "e2", "e3 from a2", "e4 to a3", "e5", "e7 from a1"])
        self.assert_markers(b1, ["B1"])

        if how == "header":
            a2b = self.sse("a2", "A", headers={"Last-Event-ID": last}, name="A/a2 again")
        else:
            a2b = self.sse("a2", "A", params={"lastEventId": last}, name="A/a2 again")
        self.assert_markers(a2b, ["e5", "e6 to a2", "e7 from a1"])
        # the replayed events are the very events the others got
        live = {e.marker: e for e in a3.snapshot()}
        for e in a2b.snapshot():
            if e.marker in live:
                self.assertEqual(e.raw, live[e.marker].raw)
        # the resume point is the newest event of the user's buffer (e7)
        self.assertTrue(bytes(a2b.body).startswith(
            b"retry: 1000\nid: " + a3.snapshot()[-1].id.encode() + b"\n\n"), bytes(a2b.body))

        self.publish("A", "timer", payload={"m": "e8"})
        self.assert_markers(a2b, ["e5", "e6 to a2", "e7 from a1", "e8"])
        self.assert_markers(a1, ["e1", "e2", "e3 from a2", "e5", "e8"])
        self.assertEqual(a2.markers(), ["e1", "e2"])
        assert_quiet([a1, a2b, a3, b1])

    def test_last_event_id_header(self):
        self.reconnect_scenario("header")

    def test_last_event_id_query_parameter(self):
        self.reconnect_scenario("query")

    def test_publisher_ids_and_replay_to_a_tab_of_a_connected_device(self):
        self.start_bridge()
        t1 = self.sse("a1", "A", name="A/a1 tab1")
        for i in range(1, 5):
            self.publish("A", "timer", payload={"m": i}, id="evt-%d" % i)
        self.assert_markers(t1, [1, 2, 3, 4])
        # a second tab of the same device opens with the id it last saw
        t2 = self.sse("a1", "A", headers={"Last-Event-ID": "evt-2"}, name="A/a1 tab2")
        self.assert_markers(t2, [3, 4])
        self.assertEqual(t2.ids(), ["evt-3", "evt-4"])
        self.publish("A", "timer", payload={"m": 5}, id="evt-5")
        self.assert_markers(t2, [3, 4, 5])
        self.assert_markers(t1, [1, 2, 3, 4, 5])

    def test_last_id_of_the_newest_event_replays_nothing(self):
        self.start_bridge()
        a1 = self.sse("a1", "A")
        self.publish("A", "timer", payload={"m": 1}, id="x1")
        self.publish("A", "timer", payload={"m": 2}, id="x2")
        self.assert_markers(a1, [1, 2])
        a2 = self.sse("a2", "A", headers={"Last-Event-ID": "x2"})
        assert_quiet([a2], 0.5)
        self.assertEqual(a2.snapshot(), [])
        self.assertEqual(bytes(a2.body), b"retry: 1000\nid: x2\n\n")

    def test_no_last_event_id_replays_nothing(self):
        self.start_bridge()
        a1 = self.sse("a1", "A")
        self.publish("A", "timer", payload={"m": 1})
        self.assert_markers(a1, [1])
        a2 = self.sse("a2", "A")
        self.publish("A", "timer", payload={"m": 2})
        self.assert_markers(a2, [2])

    def assert_resync(self, event, last_id):
        self.assertIsNotNone(event.json, event)
        self.assertEqual(event.json.get("channel"), "system", event)
        self.assertEqual(event.json.get("type"), "resync", event)
        self.assertIn("payload", event.json)
        self.assertEqual(event.json["payload"].get("lastEventId"), last_id)

    def test_unknown_id_gets_resync_then_the_buffer(self):
        self.start_bridge()
        a1 = self.sse("a1", "A")
        self.publish("A", "timer", payload={"m": "r1"})
        self.publish("A", "timer", payload={"m": "r2 from a2"}, sourceDeviceId="a2")
        self.publish("A", "timer", payload={"m": "r3 to a1"}, targetDeviceId="a1")
        self.publish("A", "timer", payload={"m": "r4"})
        self.assert_markers(a1, ["r1", "r2 from a2", "r3 to a1", "r4"])
        a2 = self.sse("a2", "A", headers={"Last-Event-ID": "no-such-id"})
        evs = a2.wait_events(3)
        self.assert_resync(evs[0], "no-such-id")
        self.assertEqual([e.marker for e in evs[1:]], ["r1", "r4"])
        self.publish("A", "timer", payload={"m": "r5"})
        self.assert_markers(a2, [None, "r1", "r4", "r5"])
        self.assertEqual(len(a2.snapshot()), 4)

    def test_evicted_id_gets_resync_then_the_buffer(self):
        self.start_bridge(replay_buffer=3)
        a1 = self.sse("a1", "A")
        for i in range(1, 7):
            self.publish("A", "timer", payload={"m": i}, id="k%d" % i)
        self.assert_markers(a1, [1, 2, 3, 4, 5, 6])
        a2 = self.sse("a2", "A", params={"lastEventId": "k1"})
        evs = a2.wait_events(4)
        self.assert_resync(evs[0], "k1")
        self.assertEqual([e.id for e in evs[1:]], ["k4", "k5", "k6"])
        # an id still in the buffer: no resync
        a3 = self.sse("a3", "A", params={"lastEventId": "k4"})
        self.assert_markers(a3, [5, 6])
        assert_quiet([a2, a3])

    def test_replay_is_per_user(self):
        self.start_bridge()
        a1 = self.sse("a1", "A")
        b1 = self.sse("b1", "B")
        self.publish("A", "timer", payload={"m": "A1"}, id="shared-1")
        self.publish("A", "timer", payload={"m": "A2"}, id="a-2")
        self.publish("B", "timer", payload={"m": "B1"}, id="b-1")
        self.publish("B", "timer", payload={"m": "B2"}, id="shared-1")
        self.publish("B", "timer", payload={"m": "B3"}, id="b-3")
        self.assert_markers(a1, ["A1", "A2"])
        self.assert_markers(b1, ["B1", "B2", "B3"])
        # B comes back with an id only A has: B's own buffer after a resync
        b2 = self.sse("b2", "B", headers={"Last-Event-ID": "a-2"})
        evs = b2.wait_events(4)
        self.assert_resync(evs[0], "a-2")
        self.assertEqual([e.marker for e in evs[1:]], ["B1", "B2", "B3"])
        # an id both users used: each gets its own later events only
        b3 = self.sse("b3", "B", headers={"Last-Event-ID": "shared-1"})
        self.assert_markers(b3, ["B3"])
        a2 = self.sse("a2", "A", headers={"Last-Event-ID": "shared-1"})
        self.assert_markers(a2, ["A2"])
        # and a user with no events at all gets a resync and nothing of A's
        c1 = self.sse("c1", "C", headers={"Last-Event-ID": "shared-1"})
        evs = c1.wait_events(1)
        self.assert_resync(evs[0], "shared-1")
        assert_quiet([a2, b2, b3, c1])
        self.assertEqual(len(c1.snapshot()), 1)

    def test_buffer_survives_the_user_being_offline(self):
        # a short heartbeat so that the closed stream is noticed soon
        self.start_bridge(heartbeat_interval=1)
        a1 = self.sse("a1", "A")
        self.publish("A", "timer", payload={"m": 1}, id="o1")
        self.assert_markers(a1, [1])
        a1.close()
        self.wait_connections(0)
        self.publish("A", "timer", payload={"m": 2}, id="o2")
        self.publish("A", "timer", payload={"m": 3}, id="o3")
        a1b = self.sse("a1", "A", headers={"Last-Event-ID": "o1"})
        self.assert_markers(a1b, [2, 3])


if __name__ == "__main__":
    unittest.main()
