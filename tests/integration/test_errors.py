"""HTTP answers other than a stream (SPEC: SSE endpoint "Errors", Other endpoints)."""

import time
import unittest

from harness import BridgeTestCase, parse_metrics


class ErrorAnswers(BridgeTestCase):

    def setUp(self):
        super().setUp()
        self.start_bridge()

    def assert_error(self, r, status):
        self.assertEqual(r.status, status, r)
        self.assertTrue(r.body.strip(), "an error answer says why: %r" % r)
        if r.headers.get("Content-Type", "").startswith("application/json"):
            body = r.json()
            self.assertIsInstance(body, dict)
            self.assertTrue(body.get("error"), body)
            self.assertTrue(body.get("message"), body)
        self.assertNotEqual(r.headers.get("Content-Type", ""), "text/event-stream")

    def test_missing_or_bad_device_id_is_400(self):
        cases = {
            "missing": "userId=A",
            "empty": "userId=A&deviceId=",
            "space": "userId=A&deviceId=a%20b",
            "plus (a space)": "userId=A&deviceId=a+b",
            "129 characters": "userId=A&deviceId=" + "d" * 129,
            "slash": "userId=A&deviceId=a%2Fb",
            "non-ASCII": "userId=A&deviceId=caf%C3%A9",
            "quote": "userId=A&deviceId=a%22b",
            "newline": "userId=A&deviceId=a%0Ab",
            "NUL": "userId=A&deviceId=a%00b",
            "at sign": "userId=A&deviceId=a@b",
        }
        for name, query in cases.items():
            with self.subTest(name):
                # a raw client: a wrong 200 must not hang the test on a stream
                c = self.sse(None, None, query=query, wait=False, name=name)
                self.assertEqual(c.wait_status(), 400, "deviceId %s: %r" % (name, query))
                self.assertTrue(c.wait_body().strip(), "an error answer says why")
                c.close()
        # the limits themselves are fine
        for device in ("d" * 128, "x", "A-z_0.9:Z"):
            with self.subTest(device):
                c = self.sse(device, "A")
                self.assertEqual(c.status, 200)

    def test_no_credentials_is_401(self):
        # auth none: the user comes from userId; without it there is no user
        r = self.bridge.request("GET", "/api/sse?deviceId=a1")
        self.assert_error(r, 401)

    def test_other_methods_are_405(self):
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            with self.subTest(method):
                r = self.bridge.request(method, "/api/sse?deviceId=a1&userId=A",
                                        headers={"Content-Type": "application/json"},
                                        body=b'{"type":"x","payload":1}')
                self.assert_error(r, 405)
        r = self.bridge.request("HEAD", "/api/sse?deviceId=a1&userId=A")
        self.assertEqual(r.status, 405)
        # OPTIONS (CORS preflight) is not refused as a method
        r = self.bridge.request("OPTIONS", "/api/sse?deviceId=a1&userId=A")
        self.assertNotEqual(r.status, 405)
        self.assertLess(r.status, 300)

    def test_nothing_reaches_a_refused_request(self):
        c = self.sse("a1", "A")
        bad = self.sse(None, "A", name="no deviceId", wait=False)
        self.assertEqual(bad.wait_status(), 400)
        self.publish("A", "timer", payload={"m": 1})
        self.assert_markers(c, [1])
        self.assertEqual(bad.snapshot(), [])


class Limits(BridgeTestCase):

    def assert_503(self, client):
        self.assertEqual(client.wait_status(), 503)
        body = client.wait_body()
        self.assertTrue(body.strip(), "a 503 says why")
        retry = client.headers.get("retry-after")
        self.assertIsNotNone(retry, "a 503 has Retry-After")
        self.assertRegex(retry, r"^\d+$")
        self.assertEqual(client.snapshot(), [])

    def test_max_connections(self):
        self.start_bridge(max_connections=3)
        ok = [self.sse("a1", "A"), self.sse("a2", "A"), self.sse("b1", "B")]
        for user, dev in (("C", "c1"), ("A", "a3")):
            over = self.sse(dev, user, wait=False)
            self.assert_503(over)
        self.publish("A", "timer", payload={"m": 1})
        self.publish("B", "timer", payload={"m": 2})
        self.assert_markers(ok[0], [1])
        self.assert_markers(ok[1], [1])
        self.assert_markers(ok[2], [2])
        self.assertEqual(self.bridge.metrics()["mqtt_sse_bridge_connections"], 3)

    def test_max_connections_per_user(self):
        self.start_bridge(max_connections_per_user=2)
        a = [self.sse("a1", "A"), self.sse("a1", "A")]
        over = self.sse("a2", "A", wait=False)
        self.assert_503(over)
        b = [self.sse("b1", "B"), self.sse("b2", "B")]
        self.publish("A", "timer", payload={"m": "A"})
        self.publish("B", "timer", payload={"m": "B"})
        for c in a:
            self.assert_markers(c, ["A"])
        for c in b:
            self.assert_markers(c, ["B"])
        self.assert_503(self.sse("b3", "B", wait=False))

    def test_a_slot_is_free_again_after_a_stream_closed(self):
        self.start_bridge(max_connections_per_user=2)
        first = self.sse("a1", "A")
        self.sse("a2", "A")
        first.close()
        # the freed slot is usable at once (a reload of the tab)
        deadline = time.monotonic() + 3
        while True:
            again = self.sse("a1", "A", wait=False)
            if again.wait_status() == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(again.status, 200,
                         "a stream closed by its client still holds its slot 3 s later")

    def test_a_closed_stream_is_unregistered_promptly(self):
        # default heartbeat_interval (25 s): closing must not wait for it
        self.start_bridge()
        c1 = self.sse("a1", "A")
        c2 = self.sse("a2", "A")
        self.wait_connections(2)
        c1.close()
        self.wait_connections(1, timeout=3)
        self.publish("A", "timer", payload={"m": 1})
        self.assert_markers(c2, [1])


class HealthAndMetrics(BridgeTestCase):

    def test_healthz(self):
        self.start_bridge()
        r = self.bridge.healthz()
        self.assertEqual(r.status, 200)
        self.assertTrue(r.headers.get("Content-Type", "").startswith("application/json"))
        self.assertIsInstance(r.json(), dict)

    def test_metrics_count_what_happened(self):
        self.start_bridge()
        before = self.bridge.metrics()
        for name in ("mqtt_sse_bridge_connections", "mqtt_sse_bridge_users",
                     "mqtt_sse_bridge_events_received_total",
                     "mqtt_sse_bridge_events_delivered_total", "mqtt_sse_bridge_mqtt_connected"):
            self.assertIn(name, before)
        self.assertEqual(before["mqtt_sse_bridge_mqtt_connected"], 1)
        self.assertEqual(before["mqtt_sse_bridge_connections"], 0)
        a1, a2, b1 = self.sse("a1", "A"), self.sse("a2", "A"), self.sse("b1", "B")
        self.publish("A", "timer", payload={"m": 1})                       # 2 deliveries
        self.publish("A", "timer", payload={"m": 2}, sourceDeviceId="a1")  # 1
        self.publish("A", "timer", payload={"m": 3}, targetDeviceId="a1")  # 1
        self.publish("B", "timer", raw=b"not json")                        # dropped
        self.publish("B", "timer", payload={"m": 4})                       # 1
        self.assert_markers(a1, [1, 3])
        self.assert_markers(a2, [1, 2])
        self.assert_markers(b1, [4])
        m = self.bridge.metrics()
        self.assertEqual(m["mqtt_sse_bridge_connections"], 3)
        self.assertEqual(m["mqtt_sse_bridge_users"], 2)
        self.assertEqual(m["mqtt_sse_bridge_events_received_total"] -
                         before["mqtt_sse_bridge_events_received_total"], 5)
        self.assertEqual(m["mqtt_sse_bridge_events_delivered_total"] -
                         before["mqtt_sse_bridge_events_delivered_total"], 5)
        self.assertEqual(m['mqtt_sse_bridge_events_dropped_total{reason="not_json"}'], 1)
        self.assertEqual(sum(v for k, v in m.items()
                             if k.startswith("mqtt_sse_bridge_events_dropped_total")), 1)

    def test_metrics_text_format(self):
        self.start_bridge()
        r = self.bridge.request("GET", "/metrics")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.headers.get("Content-Type", "").startswith("text/plain"))
        text = r.body.decode()
        samples = parse_metrics(text)
        self.assertTrue(samples)
        for key in samples:
            self.assertTrue(key.startswith("mqtt_sse_bridge_"), key)
            base = key.split("{")[0]
            self.assertIn("# TYPE %s " % base, text)
            self.assertIn("# HELP %s " % base, text)


if __name__ == "__main__":
    unittest.main()
