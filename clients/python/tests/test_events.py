"""create_sse_event() and the checks of encode_event(), which refuses what the
bridge drops (core/event.c, core/topic.c) and what a broker refuses in a
topic. The cases follow tests/unit/test_event.c; test_hub.py checks against
the running bridge that it drops what is refused here."""

import json
import unittest

import support  # noqa: F401  (sys.path)
from mqtt_sse_bridge import EventTooLargeError, HubError, InvalidEventError, create_sse_event
from mqtt_sse_bridge.events import encode_event, valid_timestamp


def ev(**fields):
    e = {"channel": "timer", "type": "updated", "payload": {"v": 1}}
    e.update(fields)
    return e


class CreateSSEEvent(unittest.TestCase):

    def test_fields_as_the_in_app_hub_made_them(self):
        e = create_sse_event("timer", "started", {"memoId": "m1"}, "phone-1")
        self.assertEqual(list(e), ["channel", "type", "payload", "sourceDeviceId", "timestamp"])
        self.assertEqual((e["channel"], e["type"], e["payload"], e["sourceDeviceId"]),
                         ("timer", "started", {"memoId": "m1"}, "phone-1"))
        self.assertRegex(e["timestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertTrue(valid_timestamp(e["timestamp"]))

    def test_without_device(self):
        e = create_sse_event("notes", "deleted", None)
        self.assertIsNone(e["sourceDeviceId"])
        topic, data = encode_event("sync", "u1", e)
        self.assertEqual(topic, "sync/u1/notes")
        self.assertEqual(json.loads(data)["sourceDeviceId"], None)


class Encode(unittest.TestCase):

    def refused(self, user="u1", event=None, extra=None, max_bytes=65536, pattern=None,
                exc=InvalidEventError):
        with self.assertRaises(exc) as cm:
            encode_event("sync", user, ev() if event is None else event, extra, max_bytes)
        self.assertIsInstance(cm.exception, HubError)
        self.assertTrue(str(cm.exception))
        if pattern:
            self.assertRegex(str(cm.exception), pattern)
        return cm.exception

    def test_compact_json_in_the_event_s_order(self):
        topic, data = encode_event("app/sync", "u1", {"type": "t", "payload": [1, "é"],
                                                      "channel": "c", "x": {"y": None}},
                                   {"excludeDeviceId": "tv"})
        self.assertEqual(topic, "app/sync/u1/c")
        self.assertEqual(data, '{"type":"t","payload":[1,"é"],"channel":"c","x":{"y":null},'
                               '"excludeDeviceId":"tv"}'.encode("utf-8"))

    def test_extra_fields_win(self):
        _, data = encode_event("sync", "u", ev(targetDeviceId="a", excludeDeviceId="b"),
                               {"targetDeviceId": "c"})
        self.assertEqual(json.loads(data)["targetDeviceId"], "c")
        self.assertEqual(json.loads(data)["excludeDeviceId"], "b")

    def test_user_and_channel_are_one_topic_level(self):
        for bad in ("", "a/b", "+", "a#", "a\nb", "a\x00", "a\x7f", "a\x85b", "\ufdd0",
                    "x\uffff", "\U0001fffe", "u" * 257, "é" * 129, "\ud800", 5, None, b"u1"):
            with self.subTest(user=bad):
                self.refused(user=bad, pattern="user id")
            with self.subTest(channel=bad):
                self.refused(event=ev(channel=bad), pattern="channel")
        encode_event("sync", "u" * 256, ev(channel="c" * 256))
        encode_event("sync", "é" * 128, ev(channel="caf\u00e9 \u20ac tab"))

    def test_channel_is_needed(self):
        self.refused(event={"type": "t", "payload": 1}, pattern="no channel")
        self.refused(event=ev(channel=None), pattern="no channel")

    def test_type_and_payload(self):
        self.refused(event={"channel": "c", "payload": 1}, pattern="'type' is missing")
        for bad in ("", 1, None, True, ["t"], {}):
            with self.subTest(type=bad):
                self.refused(event=ev(type=bad), pattern="'type' must be a non-empty string")
        self.refused(event={"channel": "c", "type": "t"}, pattern="'payload' is missing")
        for good in (None, False, "s", -12, 1.5, [], {}, {"a": [1, {"b": None}]}):
            encode_event("sync", "u", ev(payload=good))

    def test_device_ids(self):
        for key in ("sourceDeviceId", "targetDeviceId", "excludeDeviceId"):
            for bad, rule in (("", "1 to 128 bytes"), ("d" * 129, "1 to 128 bytes"),
                              ("é" * 65, "1 to 128 bytes"), ("a\nb", "control"),
                              ("a\tb", "control"), ("a\x7fb", "control"), ("\x00", "control"),
                              (5, "must be a string"), (True, "must be a string"),
                              (["a"], "must be a string"), ({}, "must be a string"),
                              ("\udc80", "lone surrogate")):
                with self.subTest(key=key, value=bad):
                    self.refused(event=ev(**{key: bad}), pattern="'%s'.*%s" % (key, rule))
                    self.refused(event=ev(), extra={key: bad}, pattern="'%s'.*%s" % (key, rule))
            # null is absent; spaces, non-ASCII and C1 controls are not control characters
            for good in (None, "d" * 128, "é" * 64, "a b", "tab:9", "x\x85y"):
                encode_event("sync", "u", ev(**{key: good}))

    def test_id(self):
        for bad in ("", "i" * 129, "a\rb", "\x01", 1.5, -1, False, {"a": 1}, 2 ** 63):
            with self.subTest(id=bad):
                self.refused(event=ev(id=bad), pattern="'id'")
        for good in (None, "evt-1", "i" * 128, 0, 42, 2 ** 63 - 1, "a b"):
            encode_event("sync", "u", ev(id=good))

    def test_timestamp(self):
        for bad in ("yesterday", 1764067952, "", "2025/11/25", "2025-11-25T", {}):
            with self.subTest(timestamp=bad):
                self.refused(event=ev(timestamp=bad), pattern="'timestamp'")
        encode_event("sync", "u", ev(timestamp=None))
        encode_event("sync", "u", ev(timestamp="2025-11-25T10:52:32.5+01:00"))

    def test_not_json(self):
        self.refused(event=ev(payload=float("nan")), pattern="not JSON")
        self.refused(event=ev(payload=float("inf")), pattern="not JSON")
        self.refused(event=ev(payload={1, 2}), pattern="not JSON")
        self.refused(event=ev(payload=object()), pattern="not JSON")
        self.refused(event=ev(payload="\ud800"), pattern="surrogate")
        # integers of any size: the bridge keeps numbers as written
        _, data = encode_event("sync", "u", ev(payload=[2 ** 64, -(2 ** 63) - 1]))
        self.assertIn(b"[18446744073709551616,-9223372036854775809]", data)
        # keys that json writes alike: the bridge refuses a key given twice
        self.refused(event=ev(payload={1: "a", "1": "b"}), pattern="twice")
        self.refused(event={1: "x", "channel": "c", "type": "t", "payload": 1},
                     pattern="keys must be strings")
        deep = []
        for _ in range(100000):
            deep = [deep]
        self.refused(event=ev(payload=deep), pattern="nested too deeply|not JSON")
        # NUL inside payload strings is JSON, and the bridge takes it
        encode_event("sync", "u", ev(payload="a\x00b"))

    def test_not_a_mapping(self):
        for bad in (None, "{}", [("type", "t")], 5):
            with self.subTest(event=bad):
                with self.assertRaises(InvalidEventError):
                    encode_event("sync", "u", bad)

    def test_size_limit_is_inclusive(self):
        base = ev(payload="")
        n = len(encode_event("sync", "u", base)[1])
        ok = ev(payload="x" * (1024 - n))
        self.assertEqual(len(encode_event("sync", "u", ok, None, 1024)[1]), 1024)
        e = self.refused(event=ev(payload="x" * (1025 - n)), max_bytes=1024,
                         exc=EventTooLargeError, pattern="1025 bytes.*max_event_bytes \\(1024\\)")
        self.assertIsInstance(e, InvalidEventError)
        # counted in UTF-8 bytes
        self.refused(event=ev(payload="é" * 600), max_bytes=1024, exc=EventTooLargeError)


class Timestamps(unittest.TestCase):
    """The lists of test_valid_timestamp in tests/unit/test_event.c."""

    GOOD = ["2025-11-25", "2025-11-25T10:52:32Z", "2025-11-25T10:52:32.123Z",
            "2025-11-25T10:52:32,5Z", "2025-11-25t10:52:32z", "2025-11-25 10:52:32",
            "2025-11-25T10:52:32", "2025-11-25T10:52Z", "2025-11-25T10:52:32+01:00",
            "2025-11-25T10:52:32-0530", "2025-11-25T10:52:32+01",
            "2025-11-25T10:52:32.123456789+00:00", "2024-02-29", "2000-02-29T23:59:60Z",
            "0000-02-29"]
    BAD = ["", "2025", "2025-11", "25-11-25", "2025-1-25", "2025-11-25T", "2025-11-25T10",
           "2025-11-25T10:5", "2025-11-25T10:52:3", "2025-11-25T10:52:32.",
           "2025-11-25T10:52:32.Z", "2025-11-25T10:52:32Z ", "2025-11-25T10:52:32ZZ",
           "2025-11-25X10:52:32Z", "2025-11-25T10:52:32+", "2025-11-25T10:52:32+1",
           "2025-11-25T10:52:32+01:0", "2025-11-25T10:52:32+01:00:00", " 2025-11-25",
           "2025-11-25x", "2025-11-25T10:52:32+01:", "2025-11-25T10:52+01:", "2025-02-29",
           "1900-02-29", "2025-04-31", "2025-11-25T24:00", "2025-11-25T10:60",
           "2025-11-25T10:52:61", "2025-11-25T10:52:32+24", "\u0662025-11-25",
           "2025-11-25\x00", "2025-11-25T10:52:32.\u0663Z"]

    def test_lists(self):
        for s in self.GOOD:
            self.assertTrue(valid_timestamp(s), s)
        for s in self.BAD:
            self.assertFalse(valid_timestamp(s), repr(s))


if __name__ == "__main__":
    unittest.main()
