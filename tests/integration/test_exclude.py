"""excludeDeviceId (SPEC: Events; the in-app hub's broadcast(user, event,
excludeDeviceId)): when present, its device's connections are left out
instead of the source's; live, in a replay with Last-Event-ID (header and
query parameter), and from the journal after a restart. The event reaches
the browser with its fields as published. A bad excludeDeviceId is dropped
like a bad sourceDeviceId."""

import os
import unittest

from harness import BridgeTestCase, assert_quiet, compact

DROPPED = "mqtt_sse_bridge_events_dropped_total"


class Exclude(BridgeTestCase):

    def devices(self, bridge=None, **params):
        """Streams of user A: phone, laptop, two tabs of tv; and B's phone."""
        return {name: self.sse(device, "A", bridge=bridge, params=dict(params),
                               name="A/%s" % name)
                for name, device in (("phone", "phone"), ("laptop", "laptop"),
                                     ("tv1", "tv"), ("tv2", "tv"))}

    # (marker, extra fields, streams of A that get it)
    CASES = [
        ("src phone, exclude laptop", {"sourceDeviceId": "phone", "excludeDeviceId": "laptop"},
         ["phone", "tv1", "tv2"]),
        ("exclude tv only", {"excludeDeviceId": "tv"}, ["phone", "laptop"]),
        ("src tv, exclude null", {"sourceDeviceId": "tv", "excludeDeviceId": None},
         ["phone", "laptop"]),
        ("src phone, exclude phone", {"sourceDeviceId": "phone", "excludeDeviceId": "phone"},
         ["laptop", "tv1", "tv2"]),
        ("src laptop", {"sourceDeviceId": "laptop"}, ["phone", "tv1", "tv2"]),
        ("exclude nobody here", {"sourceDeviceId": "phone", "excludeDeviceId": "watch"},
         ["phone", "laptop", "tv1", "tv2"]),
        ("target laptop, exclude laptop", {"targetDeviceId": "laptop",
                                           "excludeDeviceId": "laptop"}, ["laptop"]),
        ("plain", {}, ["phone", "laptop", "tv1", "tv2"]),
    ]

    def publish_cases(self):
        """Publishes CASES to A (and one event to B); returns what each
        stream of A must get, in order, and the exact data of each event."""
        want = {n: [] for n in ("phone", "laptop", "tv1", "tv2")}
        sent = {}
        for marker, fields, to in self.CASES:
            ev = {"type": "updated", "payload": {"m": marker}}
            ev.update(fields)
            ev["timestamp"] = "2025-11-25T10:00:00.000Z"
            self.publish("A", "timer", event=ev)
            sent[marker] = dict(ev, channel="timer")
            for n in to:
                want[n].append(marker)
        self.publish("B", "timer", payload={"m": "B only"}, sourceDeviceId="phone",
                     excludeDeviceId="laptop")
        return want, sent

    def check(self, streams, want, sent=None):
        for name, c in streams.items():
            self.assert_markers(c, want[name])
            if sent:
                for e in c.snapshot():
                    # the fields as published, channel and timestamp in place
                    self.assertEqual(e.data, compact(sent[e.marker]))

    def test_exclude_device_live(self):
        self.start_bridge()
        a = self.devices()
        b = self.sse("phone", "B")
        want, sent = self.publish_cases()
        self.check(a, want, sent)
        self.assert_markers(b, ["B only"])
        assert_quiet(list(a.values()) + [b])

    def replay_scenario(self, how):
        self.start_bridge()
        first = self.devices()
        self.publish("A", "timer", payload={"m": "before"})
        for c in first.values():
            self.assert_markers(c, ["before"])
        last = {n: c.snapshot()[-1].id for n, c in first.items()}
        for c in first.values():
            c.close()
        self.wait_connections(0)
        want, sent = self.publish_cases()
        again = {}
        for name, device in (("phone", "phone"), ("laptop", "laptop"),
                             ("tv1", "tv"), ("tv2", "tv")):
            if how == "header":
                again[name] = self.sse(device, "A", headers={"Last-Event-ID": last[name]},
                                       name="A/%s again" % name)
            else:
                again[name] = self.sse(device, "A", params={"lastEventId": last[name]},
                                       name="A/%s again" % name)
        self.check(again, want, sent)
        # live again after the replay, with the same rule
        self.publish("A", "timer", payload={"m": "after"}, sourceDeviceId="phone",
                     excludeDeviceId="tv")
        want["phone"].append("after")
        want["laptop"].append("after")
        self.check(again, want)
        assert_quiet(list(again.values()))

    def test_exclude_device_in_a_replay_with_the_header(self):
        self.replay_scenario("header")

    def test_exclude_device_in_a_replay_with_the_query_parameter(self):
        self.replay_scenario("query")

    def test_exclude_device_in_a_replay_from_the_journal_after_a_restart(self):
        b = self.start_bridge(replay_dir=os.path.join(self.workdir, "replay"))
        phone = self.sse("phone", "A")
        self.publish("A", "timer", payload={"m": "before"})
        self.assert_markers(phone, ["before"])
        last = phone.snapshot()[-1].id
        self.publish("A", "timer", payload={"m": "x laptop"}, sourceDeviceId="phone",
                     excludeDeviceId="laptop")
        self.publish("A", "timer", payload={"m": "x phone"}, sourceDeviceId="laptop",
                     excludeDeviceId="phone")
        self.assert_markers(phone, ["before", "x laptop"])
        phone.close()
        b.stop()
        b.start()
        phone = self.sse("phone", "A", headers={"Last-Event-ID": last}, name="A/phone again")
        laptop = self.sse("laptop", "A", headers={"Last-Event-ID": last}, name="A/laptop again")
        self.assert_markers(phone, ["x laptop"])
        self.assert_markers(laptop, ["x phone"])
        assert_quiet([phone, laptop])

    def test_bad_exclude_device_is_dropped_and_counted(self):
        b = self.start_bridge()
        c = self.sse("laptop", "A")
        cases = [("", "bad_id"), ("lap\ntop", "bad_id"), ("x" * 129, "bad_id"),
                 (7, "bad_field"), (["laptop"], "bad_field")]
        for i, (value, reason) in enumerate(cases):
            with self.subTest(value=value):
                counter = '%s{reason="%s"}' % (DROPPED, reason)
                before = b.metrics().get(counter, 0)
                self.publish("A", "timer", payload={"m": "bad"}, sourceDeviceId="phone",
                             excludeDeviceId=value)
                self.publish("A", "timer", payload={"m": "good-%d" % i})
                c.wait_event_where(lambda e: e.marker == "good-%d" % i, what="good-%d" % i)
                self.assertEqual(b.metrics().get(counter, 0) - before, 1)
        self.assertEqual(c.markers(), ["good-%d" % i for i in range(len(cases))])
        self.assertIn("field 'excludeDeviceId' must be", b.logs())


if __name__ == "__main__":
    unittest.main()
