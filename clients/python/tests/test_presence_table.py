"""PresenceTable: records and statuses as the bridge publishes them (README
"Presence", server/server.c), in any order, for one instance, for several
with their own prefixes and for several sharing one."""

import json
import unittest

import support  # noqa: F401  (sys.path)
from mqtt_sse_bridge.presence import PresenceTable

RUN1 = "2026-11-25T11:58:02.114Z"
RUN2 = "2026-11-25T12:30:00.000Z"


def status(instance, online=True, started=RUN1):
    return json.dumps({"instance": instance, "online": online, "started": started,
                       "timestamp": "2026-11-25T12:00:00.000Z"}).encode()


def record(user, instance, devices, started=RUN1):
    return json.dumps({"userId": user, "online": True, "connections": sum(devices.values()),
                       "devices": devices, "instance": instance, "started": started,
                       "timestamp": "2026-11-25T12:00:00.000Z"}, separators=(",", ":")).encode()


class Table(unittest.TestCase):

    def test_one_instance_on_the_prefix(self):
        t = PresenceTable("presence")
        # a record may come before the status (retained messages in any order)
        t.apply("presence/u1", record("u1", "web1:8080", {"phone": 1, "laptop": 2}))
        self.assertEqual(t.connection_count("u1"), 0)
        t.apply("presence", status("web1:8080"))
        self.assertEqual(t.connection_count("u1"), 3)
        self.assertEqual(t.devices("u1"), {"phone": 1, "laptop": 2})
        self.assertEqual(t.connection_count("u2"), 0)
        t.apply("presence/u1", record("u1", "web1:8080", {"phone": 1}))
        self.assertEqual(t.connection_count("u1"), 1)
        t.apply("presence/u1", b"")  # the last connection went
        self.assertEqual(t.connection_count("u1"), 0)
        self.assertEqual(t.devices("u1"), {})

    def test_instances_with_their_own_prefixes(self):
        t = PresenceTable("presence")
        t.apply("presence/web1", status("web1:8080"))
        t.apply("presence/web2", status("web2:8080"))
        t.apply("presence/web1/u1", record("u1", "web1:8080", {"phone": 1}))
        t.apply("presence/web2/u1", record("u1", "web2:8080", {"laptop": 2}))
        t.apply("presence/web2/u2", record("u2", "web2:8080", {"tv": 1}))
        self.assertEqual(t.connection_count("u1"), 3)
        self.assertEqual(t.devices("u1"), {"phone": 1, "laptop": 2})
        self.assertEqual(t.connection_count("u2"), 1)
        # web2 dies: its will says offline; its records stay but are stale
        t.apply("presence/web2", status("web2:8080", online=False))
        self.assertEqual(t.connection_count("u1"), 1)
        self.assertEqual(t.connection_count("u2"), 0)
        # web2 again, a new run: the records of the old run stay stale
        t.apply("presence/web2", status("web2:8080", started=RUN2))
        self.assertEqual(t.connection_count("u2"), 0)
        t.apply("presence/web2/u2", record("u2", "web2:8080", {"tv": 1}, started=RUN2))
        self.assertEqual(t.connection_count("u2"), 1)
        self.assertEqual(t.connection_count("u1"), 1)

    def test_a_record_without_a_status_is_stale(self):
        t = PresenceTable("presence")
        t.apply("presence/web1/u1", record("u1", "web1:8080", {"phone": 1}))
        self.assertEqual(t.connection_count("u1"), 0)
        # a status on another topic is not this record's
        t.apply("presence", status("web1:8080"))
        self.assertEqual(t.connection_count("u1"), 0)

    def test_instances_sharing_one_prefix(self):
        t = PresenceTable("presence")
        t.apply("presence", status("a:1"))
        t.apply("presence/u1", record("u1", "a:1", {"phone": 1}))
        t.apply("presence", status("b:2"))  # overwrites a's retained status
        t.apply("presence/u2", record("u2", "b:2", {"tv": 2}))
        self.assertEqual(t.connection_count("u1"), 1)
        self.assertEqual(t.connection_count("u2"), 2)
        # a's will: a's records go, b's stay
        t.apply("presence", status("a:1", online=False))
        self.assertEqual(t.connection_count("u1"), 0)
        self.assertEqual(t.connection_count("u2"), 2)

    def test_late_reader_of_a_shared_prefix(self):
        # only b's status is retained; a's record still counts
        t = PresenceTable("presence")
        t.apply("presence/u1", record("u1", "a:1", {"phone": 1}))
        t.apply("presence", status("b:2"))
        self.assertEqual(t.connection_count("u1"), 1)

    def test_other_topics_and_bad_messages_are_left_out(self):
        t = PresenceTable("presence")
        t.apply("presence", status("web1:8080"))
        t.apply("presence/u1", record("u1", "web1:8080", {"phone": 1}))
        for topic, payload in (("presencex/u1", record("u1", "web1:8080", {"a": 5})),
                               ("other/presence/u1", record("u1", "web1:8080", {"a": 5})),
                               ("presence/u9", b"not json"), ("presence/u9", b"[1]"),
                               ("presence/u9", record("u1", "web1:8080", {"a": 5})),
                               ("presence/u9", json.dumps({"userId": "u9", "connections": -1,
                                                           "instance": "web1:8080",
                                                           "started": RUN1}).encode()),
                               ("presence/u9", json.dumps({"userId": "u9", "connections": True,
                                                           "instance": "web1:8080",
                                                           "started": RUN1}).encode()),
                               ("presence/u9", json.dumps({"userId": "u9", "connections": 1,
                                                           "started": RUN1}).encode())):
            t.apply(topic, payload)
        self.assertEqual(t.connection_count("u1"), 1)
        self.assertEqual(t.connection_count("u9"), 0)
        # garbage over a record replaces it
        t.apply("presence/u1", b"\xff")
        self.assertEqual(t.connection_count("u1"), 0)

    def test_empty_message_on_a_status_topic(self):
        t = PresenceTable("presence")
        t.apply("presence/web1", status("web1:8080"))
        t.apply("presence/web1/u1", record("u1", "web1:8080", {"phone": 1}))
        self.assertEqual(t.connection_count("u1"), 1)
        t.apply("presence/web1", b"")
        self.assertEqual(t.connection_count("u1"), 0)

    def test_a_user_named_like_an_instance_prefix(self):
        # presence/web1 holds the status of the instance with prefix
        # presence/web1; a user "web1" of an instance on "presence" would
        # take the same topic: the last message says which it is
        t = PresenceTable("presence")
        t.apply("presence", status("main:1"))
        t.apply("presence/web1", record("web1", "main:1", {"d": 1}))
        self.assertEqual(t.connection_count("web1"), 1)


if __name__ == "__main__":
    unittest.main()
