"""A battery of messages that break the SSEEvent rules (SPEC: Events). Each is
dropped with one log line and counted in /metrics by reason, and the next
good event is still delivered."""

import json
import re
import unittest

from harness import BridgeTestCase, assert_quiet, compact

MAX_EVENT_BYTES = 1024
DROPPED = "mqtt_sse_bridge_events_dropped_total"


def ev(**fields):
    e = {"type": "updated", "payload": {"v": 1}}
    e.update(fields)
    return compact(e).encode()


def sized(n):
    """A valid event of exactly n bytes."""
    base = {"type": "t", "payload": {"pad": ""}}
    pad = n - len(compact(base).encode())
    assert pad >= 0
    base["payload"]["pad"] = "x" * pad
    out = compact(base).encode()
    assert len(out) == n
    return out


# (case, topic, payload bytes or None for a zero-length message, reason label);
# a reason of None: the topic is outside the bridge's subscription, so the
# message never reaches it and nothing is counted.
CASES = [
    ("not JSON", "sync/u1/timer", b"hello", "not_json"),
    ("truncated JSON", "sync/u1/timer", b'{"type":"x","payload":', "not_json"),
    ("zero-length message", "sync/u1/timer", None, "not_json"),
    ("invalid UTF-8", "sync/u1/timer", b'{"type":"\xff\xfe","payload":1}', "not_json"),
    ("JSON array", "sync/u1/timer", b'[{"type":"x","payload":1}]', "not_object"),
    ("JSON string", "sync/u1/timer", b'"updated"', "not_object"),
    ("JSON number", "sync/u1/timer", b"42", "not_object"),
    ("JSON null", "sync/u1/timer", b"null", "not_object"),
    ("no type", "sync/u1/timer", b'{"payload":{"v":1}}', "missing_type"),
    ("empty type", "sync/u1/timer", ev(type=""), "bad_type"),
    ("type is a number", "sync/u1/timer", ev(type=5), "bad_type"),
    ("type is an object", "sync/u1/timer", ev(type={"a": 1}), "bad_type"),
    ("no payload", "sync/u1/timer", b'{"type":"updated"}', "missing_payload"),
    ("channel mismatch", "sync/u1/timer", ev(channel="notes"), "channel_mismatch"),
    ("channel of another case", "sync/u1/timer", ev(channel="Timer"), "channel_mismatch"),
    ("channel not a string", "sync/u1/timer", ev(channel=7), "bad_field"),
    ("over max_event_bytes", "sync/u1/timer", sized(MAX_EVENT_BYTES + 1), "too_large"),
    ("far over max_event_bytes", "sync/u1/timer", sized(20000), "too_large"),
    ("empty user level", "sync//timer", ev(), "bad_topic"),
    ("empty channel level", "sync/u1/", ev(), "bad_topic"),
    ("two levels", "sync/u1", ev(), None),
    ("four levels", "sync/u1/timer/extra", ev(), None),
    ("other prefix", "other/u1/timer", ev(), None),
    ("prefix only", "sync", ev(), None),
    ("newline in id", "sync/u1/timer", ev(id="a\nb"), "bad_id"),
    ("CR in id", "sync/u1/timer", ev(id="a\rb"), "bad_id"),
    ("control char in id", "sync/u1/timer", ev(id="a\u0001b"), "bad_id"),
    ("DEL in id", "sync/u1/timer", ev(id="a\u007fb"), "bad_id"),
    ("empty id", "sync/u1/timer", ev(id=""), "bad_id"),
    ("id over 128 characters", "sync/u1/timer", ev(id="i" * 129), "bad_id"),
    ("newline in sourceDeviceId", "sync/u1/timer", ev(sourceDeviceId="d1\nx"), "bad_id"),
    ("tab in sourceDeviceId", "sync/u1/timer", ev(sourceDeviceId="d1\t"), "bad_id"),
    ("newline in targetDeviceId", "sync/u1/timer", ev(targetDeviceId="d2\nid: x"), "bad_id"),
    ("escape in targetDeviceId", "sync/u1/timer", ev(targetDeviceId="\u001b[31md2"), "bad_id"),
    ("id is an object", "sync/u1/timer", ev(id={"x": 1}), "bad_field"),
    ("sourceDeviceId is a number", "sync/u1/timer", ev(sourceDeviceId=5), "bad_field"),
    ("targetDeviceId is a list", "sync/u1/timer", ev(targetDeviceId=["d2"]), "bad_field"),
    ("timestamp is words", "sync/u1/timer", ev(timestamp="yesterday"), "bad_timestamp"),
    ("timestamp is a number", "sync/u1/timer", ev(timestamp=1700000000), "bad_timestamp"),
    ("timestamp is half a date", "sync/u1/timer", ev(timestamp="2024-05"), "bad_timestamp"),
    ("timestamp out of range", "sync/u1/timer", ev(timestamp="2024-13-45T25:61:61Z"),
     "bad_timestamp"),
]


class BadMessages(BridgeTestCase):

    def setUp(self):
        super().setUp()
        self.start_bridge(max_event_bytes=MAX_EVENT_BYTES)
        self.d1 = self.sse("d1", "u1")
        self.d2 = self.sse("d2", "u1")
        self.other = self.sse("e1", "u2")

    def dropped_lines(self):
        return [l for l in self.bridge.logs().splitlines() if "Dropped message on" in l]

    def test_each_bad_message_is_dropped_counted_and_the_next_good_one_delivered(self):
        seen = {self.d1: 0, self.d2: 0}
        for i, (name, topic, payload, reason) in enumerate(CASES):
            with self.subTest(name):
                before = self.bridge.metrics()
                lines_before = len(self.dropped_lines())
                self.broker.publish(topic, payload)
                marker = "good-%d" % i
                self.publish("u1", "timer", payload={"m": marker})
                # what each device got since the last case: the good event only
                got = {}
                for c in seen:
                    evs = c.wait_event_where(lambda e: e.marker == marker,
                                             what="the good event %s" % marker)
                    got[c] = evs[seen[c]:]
                    seen[c] = len(evs)
                for c, evs in got.items():
                    self.assertEqual([e.marker for e in evs], [marker],
                                     "%s after %r: %r" % (c.name, name, evs))

                after = self.bridge.metrics()
                deltas = {k: after[k] - before.get(k, 0) for k in after
                          if k.startswith(DROPPED) and after[k] != before.get(k, 0)}
                want = {'%s{reason="%s"}' % (DROPPED, reason): 1} if reason else {}
                self.assertEqual(deltas, want, "dropped counters after %r" % name)
                self.assertEqual(after["mqtt_sse_bridge_events_received_total"] -
                                 before["mqtt_sse_bridge_events_received_total"],
                                 2 if reason else 1)
                lines = self.dropped_lines()[lines_before:]
                self.assertEqual(len(lines), 1 if reason else 0, lines)
                if reason:
                    # one clear line naming the topic (printable), on one line
                    self.assertRegex(lines[0], r"\[SSE\] Dropped message on \S*: \S")
                    shown = re.sub(r"[^\x20-\x7e]", "?", topic)
                    self.assertIn("Dropped message on %s:" % shown, lines[0])
        self.assertEqual(self.other.snapshot(), [])
        assert_quiet([self.d1, self.d2, self.other])
        # the log holds exactly one line per dropped message, no more
        counted = sum(1 for c in CASES if c[3])
        self.assertEqual(len(self.dropped_lines()), counted)
        totals = self.bridge.metrics()
        self.assertEqual(sum(v for k, v in totals.items() if k.startswith(DROPPED)), counted)

    def test_limits_are_inclusive(self):
        exact = sized(MAX_EVENT_BYTES)
        self.broker.publish("sync/u1/timer", exact)
        self.broker.publish("sync/u1/timer", ev(id="i" * 128, sourceDeviceId="s" * 128,
                                                payload={"m": "long ids"}))
        evs = self.d1.wait_events(2)
        self.assertEqual(evs[0].json["payload"], json.loads(exact)["payload"])
        self.assertEqual(evs[1].id, "i" * 128)
        self.assertEqual(evs[1].marker, "long ids")
        m = self.bridge.metrics()
        self.assertEqual(sum(v for k, v in m.items() if k.startswith(DROPPED)), 0)

    def test_a_flood_of_bad_messages_loses_no_good_one(self):
        bad = [b"x%d" % i for i in range(100)]
        goods = [compact({"type": "t", "payload": {"m": i}}) for i in range(100)]
        mixed = []
        for b, g in zip(bad, goods):
            mixed += [b, g.encode()]
        self.broker.publish_lines("sync/u1/timer", mixed)
        self.assert_markers(self.d1, list(range(100)))
        self.assert_markers(self.d2, list(range(100)))
        m = self.bridge.metrics()
        self.assertEqual(m['%s{reason="not_json"}' % DROPPED], 100)
        self.assertEqual(self.other.snapshot(), [])


if __name__ == "__main__":
    unittest.main()
