"""Who gets which event, in what order, in what bytes (SPEC: Events, SSE endpoint).

Cast: user A with devices a1 (two tabs), a2 and a3; user B with device b1.
Tests name events by payload.m ("marker") and check every connection's exact
list. "Gets nothing" is checked with a fence: a later event the connection
does get; per-user order is kept, so anything wrongly queued would arrive
before the fence.
"""

import json
import time
import unittest

from harness import (BridgeTestCase, ISO_MS_UTC, assert_quiet, compact, is_compact_json,
                     open_stuck_stream, pump, scaled)


class DeliveryTestCase(BridgeTestCase):

    def open_cast(self):
        self.a1t1 = self.sse("a1", "A", name="A/a1 tab1")
        self.a1t2 = self.sse("a1", "A", name="A/a1 tab2")
        self.a2 = self.sse("a2", "A")
        self.a3 = self.sse("a3", "A")
        self.b1 = self.sse("b1", "B")
        self.a_all = [self.a1t1, self.a1t2, self.a2, self.a3]
        self.everyone = self.a_all + [self.b1]
        self.wait_connections(5)

    def fence(self):
        """Publishes a fence event to A and to B: every connection gets it."""
        self.publish("A", "timer", payload={"m": "fence-A"})
        self.publish("B", "timer", payload={"m": "fence-B"})


class ExclusionAndTargeting(DeliveryTestCase):

    def setUp(self):
        super().setUp()
        self.start_bridge()
        self.open_cast()

    def test_source_device_excluded_on_every_tab(self):
        self.publish("A", "timer", type="started", payload={"m": "from-a1"},
                     sourceDeviceId="a1")
        self.fence()
        self.assert_markers(self.a1t1, ["fence-A"])
        self.assert_markers(self.a1t2, ["fence-A"])
        self.assert_markers(self.a2, ["from-a1", "fence-A"])
        self.assert_markers(self.a3, ["from-a1", "fence-A"])
        self.assert_markers(self.b1, ["fence-B"])
        # one event, framed once: the same id and the same bytes everywhere
        e2, e3 = self.a2.snapshot()[0], self.a3.snapshot()[0]
        self.assertEqual(e2.raw, e3.raw)
        self.assertTrue(e2.id)
        assert_quiet(self.everyone)

    def test_source_of_a_single_tab_device(self):
        self.publish("A", "timer", payload={"m": "from-a2"}, sourceDeviceId="a2")
        self.fence()
        for c in (self.a1t1, self.a1t2, self.a3):
            self.assert_markers(c, ["from-a2", "fence-A"])
        self.assert_markers(self.a2, ["fence-A"])
        self.assert_markers(self.b1, ["fence-B"])

    def test_target_device_gets_it_on_every_tab_only(self):
        self.publish("A", "timer", payload={"m": "to-a1"}, targetDeviceId="a1")
        self.fence()
        self.assert_markers(self.a1t1, ["to-a1", "fence-A"])
        self.assert_markers(self.a1t2, ["to-a1", "fence-A"])
        self.assert_markers(self.a2, ["fence-A"])
        self.assert_markers(self.a3, ["fence-A"])
        self.assert_markers(self.b1, ["fence-B"])
        assert_quiet(self.everyone)

    def test_target_with_a_source_of_another_device(self):
        # a2 sends something meant for a3 only
        self.publish("A", "timer", payload={"m": "a2-to-a3"}, sourceDeviceId="a2",
                     targetDeviceId="a3")
        self.fence()
        for c in (self.a1t1, self.a1t2, self.a2):
            self.assert_markers(c, ["fence-A"])
        self.assert_markers(self.a3, ["a2-to-a3", "fence-A"])
        self.assert_markers(self.b1, ["fence-B"])

    def test_target_is_looked_up_in_the_topic_user_only(self):
        # published for A, aimed at B's device id: the topic is authoritative,
        # B must not get it, and A has no device b1.
        self.publish("A", "timer", payload={"m": "A-to-b1"}, targetDeviceId="b1")
        # and a target that is not connected at all
        self.publish("A", "timer", payload={"m": "to-nobody"}, targetDeviceId="a9")
        self.fence()
        for c in self.a_all:
            self.assert_markers(c, ["fence-A"])
        self.assert_markers(self.b1, ["fence-B"])
        assert_quiet(self.everyone)

    def test_no_source_reaches_every_device_of_the_user(self):
        self.publish("A", "notes", payload={"m": "all-A"})
        self.publish("B", "notes", payload={"m": "all-B"})
        for c in self.a_all:
            self.assert_markers(c, ["all-A"])
            self.assertEqual(c.snapshot()[0].json["channel"], "notes")
        self.assert_markers(self.b1, ["all-B"])
        assert_quiet(self.everyone)

    def test_source_that_is_not_connected_excludes_nobody(self):
        self.publish("A", "timer", payload={"m": "from-server"}, sourceDeviceId="backend-7")
        for c in self.a_all:
            self.assert_markers(c, ["from-server"])
        self.fence()
        self.assert_markers(self.b1, ["fence-B"])

    def test_closed_tab_does_not_affect_the_other_tab(self):
        self.a1t1.close()
        self.publish("A", "timer", payload={"m": "to-a1"}, targetDeviceId="a1")
        self.publish("A", "timer", payload={"m": "from-a1"}, sourceDeviceId="a1")
        self.fence()
        self.assert_markers(self.a1t2, ["to-a1", "fence-A"])
        self.assert_markers(self.a2, ["from-a1", "fence-A"])
        self.assert_markers(self.a3, ["from-a1", "fence-A"])
        self.assertEqual(self.a1t1.markers(), [])


class NoCrossUserLeak(DeliveryTestCase):

    def test_many_events_of_one_user_reach_no_other(self):
        self.start_bridge()
        self.open_cast()
        # users whose ids are prefixes or case variants of each other
        u1 = self.sse("d", "u1")
        u10 = self.sse("d", "u10")
        U1 = self.sse("d", "U1")
        n = 50
        self.broker.publish_lines("sync/A/timer", [compact({"type": "t", "payload": {"m": i}})
                                                   for i in range(n)])
        self.broker.publish_lines("sync/u1/timer", [compact({"type": "t", "payload": {"m": i}})
                                                    for i in range(5)])
        self.publish("B", "timer", payload={"m": "fence-B"})
        self.publish("u10", "timer", payload={"m": "fence-u10"})
        self.publish("U1", "timer", payload={"m": "fence-U1"})
        for c in self.a_all:
            self.assert_markers(c, list(range(n)))
        self.assert_markers(u1, list(range(5)))
        self.assert_markers(self.b1, ["fence-B"])
        self.assert_markers(u10, ["fence-u10"])
        self.assert_markers(U1, ["fence-U1"])
        assert_quiet(self.everyone + [u1, u10, U1])

    def test_a_user_without_connections_leaks_to_nobody(self):
        self.start_bridge()
        self.open_cast()
        self.publish("C", "timer", payload={"m": "for-C"})
        self.fence()
        for c in self.a_all:
            self.assert_markers(c, ["fence-A"])
        self.assert_markers(self.b1, ["fence-B"])


class WireFormat(DeliveryTestCase):

    def setUp(self):
        super().setUp()
        self.start_bridge()

    def test_response_head(self):
        c = self.sse("a1", "A")
        self.assertEqual(c.status, 200)
        self.assertEqual(c.headers.get("content-type", "").split(";")[0].strip(),
                         "text/event-stream")
        self.assertEqual(c.headers.get("cache-control"), "no-cache")
        self.assertEqual(c.headers.get("x-accel-buffering"), "no")
        self.assertNotIn("content-length", c.headers)
        self.assertIn("chunked", c.headers.get("transfer-encoding", ""))

    def test_first_bytes_are_the_retry_line_and_resume_point_at_once(self):
        c = self.sse("a1", "A")
        # the user has no event yet: the resume point is the run's origin,
        # "<start ms>-0", an id field with no data (no event fires)
        self.assertRegex(bytes(c.body), rb"\Aretry: 1000\nid: \d{13}-0\n\n\Z")
        self.assertEqual(c.snapshot(), [])
        self.assertLess(c.first_byte_at - c.connected_at, scaled(1.0),
                        "the stream must start at once, not on the first event")
        self.assertEqual(c.chunk_errors, [])

    def test_exact_bytes_of_an_event_given_whole(self):
        a1, a2 = self.sse("a1", "A"), self.sse("a2", "A")
        ev = {"type": "updated", "payload": {"m": "exact", "n": 3, "list": [1, "x", None, True]},
              "sourceDeviceId": "a1", "channel": "timer", "timestamp": "2024-05-01T12:00:00.000Z",
              "id": "evt-0001"}
        self.publish("A", "timer", ev)
        a2.wait_events(1)
        first, rest = bytes(a2.body).split(b"\n\n", 1)
        self.assertRegex(first, rb"\Aretry: 1000\nid: \d{13}-0\Z")
        self.assertEqual(rest, b"id: evt-0001\ndata: " + compact(ev).encode() + b"\n\n")
        self.assertEqual(a2.chunk_errors, [])
        self.publish("A", "timer", payload={"m": "fence"})
        self.assert_markers(a1, ["fence"])

    def test_exact_bytes_with_channel_and_timestamp_filled_in(self):
        a2 = self.sse("a2", "A")
        before = time.time()
        ev = {"type": "started", "payload": {"m": "fill", "text": "two\nlines", "u": "\u00e9\u2713"}}
        self.publish("A", "timer", ev)
        got = a2.wait_events(1)[0]
        after = time.time()
        self.assertEqual([f for f, _ in got.fields], ["id", "data"], "one id line, one data line")
        self.assertNotIn(b"event:", bytes(a2.body))
        self.assertTrue(is_compact_json(got.data), got.data)
        self.assertEqual(got.raw, b"id: " + got.id.encode() + b"\ndata: " +
                         got.data.encode("utf-8") + b"\n\n")
        first, rest = bytes(a2.body).split(b"\n\n", 1)
        self.assertRegex(first, rb"\Aretry: 1000\nid: \d{13}-0\Z")
        self.assertEqual(rest, got.raw)
        want = dict(ev, channel="timer")
        ts = got.json.pop("timestamp")
        self.assertEqual(got.json, want)
        self.assertRegex(ts, ISO_MS_UTC)
        t = time.mktime(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        self.assertLessEqual(before - 2, t)
        self.assertLessEqual(t, after + 2)
        self.assertTrue(got.id and all(0x20 <= ord(ch) < 0x7f for ch in got.id), got.id)

    def test_pretty_printed_json_goes_out_as_one_compact_line(self):
        a2 = self.sse("a2", "A")
        ev = {"type": "updated", "payload": {"m": "pretty", "deep": {"a": [1, 2, {"b": None}]}},
              "channel": "timer", "timestamp": "2024-05-01T12:00:00Z"}
        self.publish("A", "timer", raw=json.dumps(ev, indent=4).encode())
        got = a2.wait_events(1)[0]
        self.assertEqual(got.data, compact(ev))

    def test_publisher_id_is_the_sse_id(self):
        a1, a2 = self.sse("a1", "A"), self.sse("a2", "A")
        self.publish("A", "timer", payload={"m": 1}, id="order-42")
        self.publish("A", "timer", payload={"m": 2}, id="2024-05-01T12:00:00Z#7")
        self.publish("A", "timer", payload={"m": 3})
        for c in (a1, a2):
            evs = c.wait_events(3)
            self.assertEqual([e.id for e in evs[:2]], ["order-42", "2024-05-01T12:00:00Z#7"])
            self.assertEqual(evs[0].json["id"], "order-42")
            self.assertNotIn(evs[2].id, (None, "", "order-42"))
        self.assertEqual(a1.ids(), a2.ids())

    def test_assigned_ids_are_unique(self):
        a2 = self.sse("a2", "A")
        self.broker.publish_lines("sync/A/timer", [compact({"type": "t", "payload": {"m": i}})
                                                   for i in range(20)])
        ids = [e.id for e in a2.wait_events(20)]
        self.assertEqual(len(set(ids)), 20, ids)
        self.assertNotIn(None, ids)

    def test_order_of_events_is_kept(self):
        tabs = [self.sse("a1", "A", name="A/a1 tab1"), self.sse("a1", "A", name="A/a1 tab2"),
                self.sse("a2", "A")]
        n = 40
        lines = [compact({"type": "t", "payload": {"m": i}}) for i in range(n)]
        self.broker.publish_lines("sync/A/timer", lines[:20])
        self.broker.publish_lines("sync/A/other", lines[20:])
        for c in tabs:
            self.assert_markers(c, list(range(n)))
        self.assertEqual(tabs[0].ids(), tabs[1].ids())
        self.assertEqual(tabs[0].ids(), tabs[2].ids())

    def test_payload_may_be_any_json_value(self):
        a2 = self.sse("a2", "A")
        values = [None, False, 0, -7, "text", "", [], [1, [2]], {}, {"x": {"y": [None]}}]
        for i, v in enumerate(values):
            self.publish("A", "timer", {"type": "t", "payload": v, "id": "p%d" % i})
        evs = a2.wait_events(len(values))
        self.assertEqual([e.id for e in evs], ["p%d" % i for i in range(len(values))])
        self.assertEqual([e.json["payload"] for e in evs], values)

    def test_payload_string_with_an_escaped_nul_is_valid_json(self):
        # RFC 8259 allows "\u0000" in a string; SPEC: payload is any JSON value
        a2 = self.sse("a2", "A")
        self.publish("A", "timer", raw=b'{"type":"t","payload":{"m":"nul","s":"a\\u0000b"}}')
        self.publish("A", "timer", payload={"m": "after"})
        self.assert_markers(a2, ["nul", "after"])
        self.assertEqual(a2.snapshot()[0].json["payload"]["s"], "a\x00b")
        self.assertNotIn("\n", a2.snapshot()[0].data)


class SlowReader(BridgeTestCase):
    """A client that stops reading must not hold up anybody else; once its
    queue is over max_queue_bytes it is cut off, its slot freed."""

    def test_a_client_that_does_not_read_blocks_nobody(self):
        self.start_bridge()  # max_queue_bytes: 1 MiB
        fast = self.sse("a2", "A")
        other = self.sse("b1", "B")
        stuck = open_stuck_stream(self.bridge.port, "deviceId=a1&userId=A")
        try:
            self.check_slow_reader(fast, other)
        finally:
            stuck.close()  # (a stop with a stuck stream is test_resilience's)

    def check_slow_reader(self, fast, other):
        self.wait_connections(3)
        # ~10 MB in batches of 800 kB: a reader that keeps up is never over
        # max_queue_bytes, the stuck one soon is
        n = pump(self.broker, "A", fast)
        self.publish("B", "timer", payload={"m": "B"})
        self.assert_markers(fast, list(range(n)))
        self.assert_markers(other, ["B"])
        self.assertIn("Connection cut off: user=A device=a1", self.bridge.logs())
        self.assertNotIn("device=a2 (queue", self.bridge.logs())
        self.publish("A", "timer", payload={"m": "after"})
        self.assert_markers(fast, list(range(n)) + ["after"])
        # the stuck stream is closed and its slot freed
        self.wait_connections(2, timeout=5)


class Heartbeats(BridgeTestCase):

    def test_heartbeat_comment_every_interval(self):
        self.start_bridge(heartbeat_interval=1)
        c1 = self.sse("a1", "A")
        c2 = self.sse("b1", "B")
        start = time.monotonic()
        comments = c1.wait_comments(3, timeout=6)
        c2.wait_comments(3, timeout=3)
        self.assertEqual([t for t, _ in comments[:3]], ["heartbeat"] * 3)
        times = [start] + [w for _, w in comments[:3]]
        gaps = [b - a for a, b in zip(times, times[1:])]
        for g in gaps:
            self.assertGreater(g, 0.5, gaps)
            self.assertLess(g, scaled(1.8), gaps)
        self.assertRegex(bytes(c1.body), rb"\Aretry: 1000\nid: \d{13}-0\n\n: heartbeat\n\n")
        self.assertEqual(c1.snapshot(), [], "a heartbeat is a comment, not an event")
        # events and heartbeats interleave without corrupting each other
        self.publish("A", "timer", payload={"m": "between"})
        self.assert_markers(c1, ["between"])
        c1.wait_comments(4, timeout=3)
        self.assertEqual(c2.snapshot(), [])

    def test_no_heartbeat_before_the_interval(self):
        self.start_bridge(heartbeat_interval=3)
        c = self.sse("a1", "A")
        time.sleep(1.5)
        with self.reactor.cond:
            self.assertEqual(c.comments, [])
        c.wait_comments(1, timeout=4)


class Options(BridgeTestCase):

    def test_sse_path_topic_prefix_and_retry_ms(self):
        self.start_bridge(sse_path="/events/stream", topic_prefix="app/sync", retry_ms=2500)
        c = self.sse("a1", "A")
        self.assertRegex(bytes(c.body), rb"\Aretry: 2500\nid: \d{13}-0\n\n\Z")
        old = self.bridge.request("GET", "/api/sse?deviceId=a2&userId=A")
        self.assertNotEqual(old.status, 200)
        self.publish("A", "timer", payload={"m": "old-prefix"})  # sync/A/timer
        self.publish("A", "timer", payload={"m": "new-prefix"}, prefix="app/sync")
        self.assert_markers(c, ["new-prefix"])
        self.assertEqual(c.snapshot()[0].json["channel"], "timer")
        assert_quiet([c])


if __name__ == "__main__":
    unittest.main()
