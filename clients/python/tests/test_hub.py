"""The hub against a real mosquitto and the bridge in the form under test
(SB_FORM: daemon or plugin), with the integration harness (tests/integration):
broadcast with its exclusion, send_to_device, presence over two bridge
instances and a crashed one, refused inputs that publish nothing (and that
the bridge does drop), and a broker that is down."""

import json
import os
import signal
import time
import unittest

import support  # noqa: F401  (sys.path)
from harness import (FORM, BridgeTestCase, DaemonBridge, MqttSubscriber, assert_quiet, compact,
                     free_port, scaled, wait_until)
from mqtt_sse_bridge import (EventTooLargeError, HubClosedError, HubConnectionError, HubError,
                             InvalidEventError, connect_hub, create_sse_event)

DROPPED = "mqtt_sse_bridge_events_dropped_total"
RECEIVED = "mqtt_sse_bridge_events_received_total"


class HubTestCase(BridgeTestCase):

    def hub(self, **kw):
        kw.setdefault("timeout", scaled(5))
        h = connect_hub("mqtt://127.0.0.1:%d" % self.broker.port, **kw)
        self.addCleanup(h.close)
        return h

    def second_daemon(self, **opts):
        """Another bridge instance on the same broker: a daemon (beside the
        plugin in the plugin form, beside the first daemon in the other)."""
        d = DaemonBridge(self.broker, self.workdir, **opts)
        self.bridges.append(d)
        d.start()
        return d

    def wait_count(self, hub, user, n, what=None):
        wait_until(lambda: hub.get_connection_count(user) == n, 10, interval=0.05,
                   what=what or "%s with %d connection(s), has %d" %
                   (user, n, hub.get_connection_count(user)))


class Delivery(HubTestCase):

    def setUp(self):
        super().setUp()
        self.start_bridge()
        self.a = {n: self.sse(d, "A", name="A/" + n) for n, d in
                  (("phone", "phone"), ("laptop", "laptop"), ("tv1", "tv"), ("tv2", "tv"))}
        self.b = self.sse("laptop", "B")
        self.h = self.hub(presence_prefix=None)

    def expect(self, want):
        for name, markers in want.items():
            self.assert_markers(self.a[name], markers)
        assert_quiet(list(self.a.values()) + [self.b])

    def test_broadcast_leaves_out_the_excluded_device(self):
        e = create_sse_event("timer", "started", {"m": 1}, "phone")
        self.assertIsNone(self.h.broadcast("A", e, "phone"))
        # excluded device differs from the source: the source gets it
        self.h.broadcast("A", create_sse_event("timer", "updated", {"m": 2}, "phone"), "laptop")
        self.h.broadcast("A", create_sse_event("timer", "updated", {"m": 3}, "laptop"), "tv")
        # no exclude_device_id: the bridge leaves out the source
        self.h.broadcast("A", create_sse_event("timer", "stopped", {"m": 4}, "tv"))
        # neither: every device
        self.h.broadcast("A", create_sse_event("timer", "stopped", {"m": 5}))
        self.expect({"phone": [2, 3, 4, 5], "laptop": [1, 3, 4, 5], "tv1": [1, 2, 5],
                     "tv2": [1, 2, 5]})
        self.assertEqual(self.b.snapshot(), [])
        # the event arrives as built, with excludeDeviceId beside sourceDeviceId
        got = self.a["phone"].snapshot()[0].json
        self.assertEqual((got["sourceDeviceId"], got["excludeDeviceId"], got["channel"],
                          got["type"]), ("phone", "laptop", "timer", "updated"))
        self.assertEqual(self.a["laptop"].snapshot()[0].data,
                         compact(dict(e, excludeDeviceId="phone")))

    def test_send_to_device_reaches_that_device_only(self):
        e = create_sse_event("timer", "moved", {"m": "to laptop"}, "phone")
        self.assertIsNone(self.h.send_to_device("A", "laptop", e))
        # targeting wins over the source's exclusion
        self.h.send_to_device("A", "tv", create_sse_event("timer", "moved", {"m": "to tv"}, "tv"))
        self.expect({"phone": [], "laptop": ["to laptop"], "tv1": ["to tv"], "tv2": ["to tv"]})
        self.assertEqual(self.b.snapshot(), [])
        self.assertEqual(self.a["laptop"].snapshot()[0].json["targetDeviceId"], "laptop")


class Presence(HubTestCase):

    def test_counts_over_two_instances(self):
        one = self.start_bridge(presence_prefix="presence/web1")
        two = self.second_daemon(presence_prefix="presence/web2")
        h = self.hub()
        self.assertEqual(h.get_connection_count("A"), 0)
        self.assertFalse(h.is_user_connected("A"))
        a1 = self.sse("phone", "A", bridge=one)
        a2 = self.sse("laptop", "A", bridge=two)
        a3 = self.sse("laptop", "A", bridge=two)
        self.sse("tv", "B", bridge=two)
        self.wait_count(h, "A", 3)
        self.wait_count(h, "B", 1)
        self.assertTrue(h.is_user_connected("A"))
        self.assertEqual(h.get_devices("A"), {"phone": 1, "laptop": 2})
        # a hub that connects now reads the same from the retained records,
        # before connect_hub() returns
        late = self.hub()
        self.assertEqual((late.get_connection_count("A"), late.get_connection_count("B")), (3, 1))
        a2.close()
        self.wait_count(h, "A", 2)
        a1.close()
        self.wait_count(h, "A", 1)
        self.assertTrue(h.is_user_connected("A"))
        a3.close()
        self.wait_count(h, "A", 0)
        self.assertFalse(h.is_user_connected("A"))
        self.assertEqual(h.get_connection_count("B"), 1)
        self.assertEqual(h.get_connection_count("nobody"), 0)
        self.assertEqual(h.get_connection_count("a/b"), 0)

    def test_one_instance_on_the_prefix_itself(self):
        self.start_bridge(presence_prefix="presence")
        h = self.hub()
        c = [self.sse("phone", "A"), self.sse("tab", "A")]
        self.wait_count(h, "A", 2)
        self.assertEqual(self.hub().get_connection_count("A"), 2)
        for x in c:
            x.close()
        self.wait_count(h, "A", 0)

    def test_a_crashed_instance_s_users_go_when_its_will_arrives(self):
        one = self.start_bridge(presence_prefix="presence/web1")
        two = self.second_daemon(presence_prefix="presence/web2", http_port=free_port())
        h = self.hub()
        self.sse("phone", "A", bridge=one)
        self.sse("laptop", "A", bridge=two)
        self.sse("tv", "B", bridge=two)
        self.wait_count(h, "A", 2)
        self.wait_count(h, "B", 1)
        two.send_signal(signal.SIGKILL)
        two.wait_exit(scaled(5))
        self.wait_count(h, "A", 1, "the will of the killed instance")
        self.wait_count(h, "B", 0)
        # its records are still retained, but a new reader knows them stale
        late = self.hub()
        self.assertEqual((late.get_connection_count("A"), late.get_connection_count("B")), (1, 0))
        self.assertFalse(late.is_user_connected("B"))
        # the same instance again (a new run): B back on it
        two.stop()
        two.start()
        self.sse("tv", "B", bridge=two)
        self.wait_count(h, "B", 1)
        self.wait_count(late, "B", 1)

    @unittest.skipUnless(FORM == "daemon", "two daemons sharing one prefix")
    def test_instances_sharing_one_prefix(self):
        one = self.start_bridge(presence_prefix="presence")
        two = self.second_daemon(presence_prefix="presence")
        self.sse("phone", "A", bridge=one)
        self.sse("tv", "B", bridge=two)
        self.sse("tv", "B", bridge=two)
        h = self.hub()
        self.wait_count(h, "A", 1)
        self.wait_count(h, "B", 2)


class Refusals(HubTestCase):
    """Every refused input raises with a message and publishes nothing; the
    same event published by hand is dropped by the bridge."""

    MAX = 2048

    def setUp(self):
        super().setUp()
        self.start_bridge(max_event_bytes=self.MAX)
        self.c = self.sse("laptop", "u1")
        self.h = self.hub(presence_prefix=None, max_event_bytes=self.MAX)

    def good(self, **fields):
        e = {"channel": "timer", "type": "updated", "payload": {"m": 1}}
        e.update(fields)
        return e

    def cases(self):
        """(name, call, the payload the bridge gets if published by hand or
        None, the reason it drops it)."""
        h, g = self.h, self.good
        pad = {"channel": "timer", "type": "t", "payload": ""}
        pad["payload"] = "x" * (self.MAX + 1 - len(compact(pad).encode()))
        return [
            ("empty type", lambda: h.broadcast("u1", g(type="")), g(type=""), "bad_type"),
            ("type a number", lambda: h.broadcast("u1", g(type=5)), g(type=5), "bad_type"),
            ("no payload", lambda: h.broadcast("u1", {"channel": "timer", "type": "t"}),
             {"channel": "timer", "type": "t"}, "missing_payload"),
            ("no type", lambda: h.broadcast("u1", {"channel": "timer", "payload": 1}),
             {"channel": "timer", "payload": 1}, "missing_type"),
            ("bad timestamp", lambda: h.broadcast("u1", g(timestamp="yesterday")),
             g(timestamp="yesterday"), "bad_timestamp"),
            ("empty exclude", lambda: h.broadcast("u1", g(), ""), g(excludeDeviceId=""),
             "bad_id"),
            ("exclude with a newline", lambda: h.broadcast("u1", g(), "lap\ntop"),
             g(excludeDeviceId="lap\ntop"), "bad_id"),
            ("exclude over 128 bytes", lambda: h.broadcast("u1", g(), "x" * 129),
             g(excludeDeviceId="x" * 129), "bad_id"),
            ("exclude a number", lambda: h.broadcast("u1", g(), 7), g(excludeDeviceId=7),
             "bad_field"),
            ("source with a tab", lambda: h.broadcast("u1", g(sourceDeviceId="p\t")),
             g(sourceDeviceId="p\t"), "bad_id"),
            ("source a list", lambda: h.broadcast("u1", g(sourceDeviceId=["p"])),
             g(sourceDeviceId=["p"]), "bad_field"),
            ("empty device", lambda: h.send_to_device("u1", "", g()), g(targetDeviceId=""),
             "bad_id"),
            ("device with ESC", lambda: h.send_to_device("u1", "\x1b[31m", g()),
             g(targetDeviceId="\x1b[31m"), "bad_id"),
            ("device None", lambda: h.send_to_device("u1", None, g()), None, None),
            ("id with CR", lambda: h.broadcast("u1", g(id="a\rb")), g(id="a\rb"), "bad_id"),
            ("id negative", lambda: h.broadcast("u1", g(id=-1)), g(id=-1), "bad_field"),
            ("id a float", lambda: h.broadcast("u1", g(id=1.5)), g(id=1.5), "bad_field"),
            ("too large", lambda: h.broadcast("u1", pad), pad, "too_large"),
            ("user with a slash", lambda: h.broadcast("u1/x", g()), None, None),
            ("user with +", lambda: h.broadcast("u+", g()), None, None),
            ("empty user", lambda: h.broadcast("", g()), None, None),
            ("user with a C1 control", lambda: h.broadcast("u\x85", g()), None, None),
            ("user not a string", lambda: h.broadcast(1, g()), None, None),
            ("channel with #", lambda: h.broadcast("u1", g(channel="t#")), None, None),
            ("no channel", lambda: h.broadcast("u1", {"type": "t", "payload": 1}), None, None),
            ("payload NaN", lambda: h.broadcast("u1", g(payload=float("nan"))), None, None),
            ("payload not JSON", lambda: h.broadcast("u1", g(payload={1, 2})), None, None),
        ]

    def test_refused_inputs_raise_and_publish_nothing(self):
        sub = MqttSubscriber(self.broker, ["#"], 1)
        for name, call, _, _ in self.cases():
            with self.subTest(name):
                with self.assertRaises(InvalidEventError) as cm:
                    call()
                self.assertIsInstance(cm.exception, HubError)
                self.assertGreater(len(str(cm.exception)), 10, str(cm.exception))
                if name == "too large":
                    self.assertIsInstance(cm.exception, EventTooLargeError)
        # the first message anyone sees on the broker is the one after them
        self.h.broadcast("u1", self.good(payload={"m": "after"}))
        got = sub.messages()
        self.assertEqual(len(got), 1, got)
        self.assertEqual(got[0][0], "sync/u1/timer")
        self.assertEqual(json.loads(got[0][1])["payload"], {"m": "after"})
        self.assert_markers(self.c, ["after"])
        m = self.bridge.metrics()
        self.assertEqual(m[RECEIVED], 1)
        self.assertEqual(sum(v for k, v in m.items() if k.startswith(DROPPED)), 0)
        self.assertTrue(self.h.connected)

    def test_the_bridge_drops_what_the_hub_refuses(self):
        """The same payloads published by hand: the bridge drops each, for
        the reason the hub's message gives."""
        for name, _, payload, reason in self.cases():
            if payload is None:
                continue
            with self.subTest(name):
                counter = '%s{reason="%s"}' % (DROPPED, reason)
                before = self.bridge.metrics().get(counter, 0)
                self.broker.publish("sync/u1/timer", compact(payload))
                wait_until(lambda: self.bridge.metrics().get(counter, 0) == before + 1, 10,
                           what="%s dropped as %s" % (name, reason))
        self.assertEqual(self.c.snapshot(), [])

    def test_what_the_bridge_takes_the_hub_takes(self):
        pad = {"channel": "timer", "type": "t", "payload": {"m": "max", "p": ""}}
        pad["payload"]["p"] = "x" * (self.MAX - len(compact(pad).encode()))
        self.assertEqual(len(compact(pad).encode()), self.MAX)
        self.h.broadcast("u1", pad)
        self.h.broadcast("u1", self.good(payload={"m": "ids"}, id="i" * 128,
                                         sourceDeviceId="s p\u00e9\x85", timestamp="2025-11-25"),
                         "e" * 128)
        self.h.broadcast("u1", self.good(payload={"m": "int id"}, id=2 ** 63 - 1))
        self.h.send_to_device("u1", "laptop", self.good(payload={"m": "nul", "s": "a\x00b"}))
        self.h.broadcast("u1", {"channel": "timer", "type": "t", "payload": {"m": "null"},
                                "sourceDeviceId": None, "timestamp": None, "id": None})
        self.assert_markers(self.c, ["max", "ids", "int id", "nul", "null"])
        self.assertEqual(self.c.snapshot()[2].id, str(2 ** 63 - 1))
        m = self.bridge.metrics()
        self.assertEqual(sum(v for k, v in m.items() if k.startswith(DROPPED)), 0)


class BrokerAway(HubTestCase):

    def test_a_broker_that_is_down_raises_within_the_timeout(self):
        port = free_port()
        t0 = time.monotonic()
        with self.assertRaises(HubConnectionError) as cm:
            connect_hub("mqtt://127.0.0.1:%d" % port, timeout=1.0)
        took = time.monotonic() - t0
        self.assertIn("127.0.0.1:%d" % port, str(cm.exception))
        self.assertIn("within 1.0 s", str(cm.exception))
        self.assertGreaterEqual(took, 0.9)
        self.assertLess(took, scaled(3))

    def test_a_broker_gone_later_raises_within_the_timeout_and_publishes_nothing(self):
        self.start_bridge(presence_prefix="presence")
        h = self.hub(timeout=1.0)
        self.assertTrue(h.connected)
        self.assertEqual(h.get_connection_count("A"), 0)
        self.broker.stop()
        wait_until(lambda: not h.connected, 10, what="the hub to see the broker go")
        t0 = time.monotonic()
        with self.assertRaises(HubConnectionError) as cm:
            h.broadcast("A", create_sse_event("timer", "t", {"m": "lost"}))
        self.assertLess(time.monotonic() - t0, scaled(3))
        self.assertIn("nothing was published", str(cm.exception))
        with self.assertRaises(HubConnectionError):
            h.send_to_device("A", "phone", create_sse_event("timer", "t", {"m": "lost"}))
        # the broker (and the plugin with it) back: the hub reconnects by
        # itself, and what it refused does not come late
        if FORM == "plugin":
            self.bridge.stop()
            self.bridge.start()
        else:
            self.broker.start()
            wait_until(lambda: self.bridge.healthz().status == 200, 20, interval=0.1,
                       what="the daemon back on the broker")
        c = self.sse("phone", "A")
        wait_until(lambda: h.connected, 20, interval=0.1, what="the hub to reconnect")
        h.broadcast("A", create_sse_event("timer", "t", {"m": "back"}))
        self.assert_markers(c, ["back"])
        self.wait_count(h, "A", 1)
        assert_quiet([c])

    def test_bad_options(self):
        for url in ("127.0.0.1:1883", "http://127.0.0.1", "mqtt://", "mqtt://h:99999"):
            with self.subTest(url=url):
                with self.assertRaises(HubError):
                    connect_hub(url, timeout=0.5)
        with self.assertRaises(HubError):
            connect_hub("mqtt://127.0.0.1:%d" % self.broker.port, topic_prefix="sync/#")
        with self.assertRaises(HubError):
            connect_hub("mqtt://127.0.0.1:%d" % self.broker.port, presence_prefix="")
        with self.assertRaises(HubError):
            connect_hub("mqtt://127.0.0.1:%d" % self.broker.port, timeout=0)

    def test_close(self):
        if FORM == "plugin":
            self.start_bridge()
        with connect_hub("mqtt://127.0.0.1:%d" % self.broker.port) as h:
            self.assertIn("127.0.0.1", repr(h))
        self.assertFalse(h.connected)
        with self.assertRaises(HubClosedError):
            h.broadcast("u1", create_sse_event("timer", "t", 1))
        with self.assertRaises(HubClosedError):
            h.get_connection_count("u1")
        h.close()  # twice is harmless

    def test_credentials_are_used(self):
        pw = os.path.join(self.workdir, "passwords")
        with open(pw, "w") as f:
            f.write("")
        # a broker that wants a password refuses an anonymous hub at once
        self.broker.stop()
        self.broker.extra_conf = ["allow_anonymous false", "password_file " + pw]
        self.broker.start()
        t0 = time.monotonic()
        with self.assertRaises(HubConnectionError) as cm:
            connect_hub("mqtt://127.0.0.1:%d" % self.broker.port, timeout=scaled(5),
                        username="nobody", password="wrong")
        self.assertIn("refused", str(cm.exception))
        self.assertLess(time.monotonic() - t0, scaled(4))


if __name__ == "__main__":
    unittest.main()
