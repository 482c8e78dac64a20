"""POST /api/publish and CORS (issue 4): an authenticated HTTP way to publish
for one's own user, validated like an MQTT message, reaching SSE by the same
path as any other event; and the cors_origins allow-list with preflight."""

import json
import time
import unittest

from harness import BridgeTestCase, assert_quiet, make_jwt

SECRET = "publish-secret-0123456789abcdef0123"


def token(sub, **extra):
    claims = {"sub": sub, "exp": int(time.time()) + 3600}
    claims.update(extra)
    return make_jwt(SECRET, claims)


class Publish(BridgeTestCase):

    def setUp(self):
        super().setUp()
        self.start_bridge(jwt_secret=SECRET, max_event_bytes=2048)
        self.ta, self.tb = token("A"), token("B")

    def stream(self, device, tok):
        return self.sse(params={"deviceId": device}, headers={"Authorization": "Bearer " + tok},
                        name=device)

    def post(self, body, tok=None, raw=None, headers=None):
        h = {"Content-Type": "application/json"}
        if tok:
            h["Authorization"] = "Bearer " + tok
        h.update(headers or {})
        data = raw if raw is not None else json.dumps(body).encode()
        return self.bridge.request("POST", "/api/publish", headers=h, body=data)

    def test_accepted_and_relayed_with_the_source_from_device_id(self):
        a1, a2, b1 = self.stream("a1", self.ta), self.stream("a2", self.ta), self.stream("b1", self.tb)
        r = self.post({"channel": "timer", "type": "started", "payload": {"m": "http"},
                       "deviceId": "a1"}, self.ta)
        self.assertEqual(r.status, 202, r.body)
        self.assertEqual(r.json()["topic"], "sync/A/timer")
        ev = a2.wait_events(1)[0]
        self.assertEqual(ev.json["payload"], {"m": "http"})
        self.assertEqual(ev.json["sourceDeviceId"], "a1")
        self.assertEqual(ev.json["channel"], "timer")
        self.assertNotIn("deviceId", ev.json)
        assert_quiet([a1, b1])

    def test_targeted(self):
        a1, a2, a3 = (self.stream(d, self.ta) for d in ("a1", "a2", "a3"))
        r = self.post({"channel": "timer", "type": "moved", "payload": {"m": "mv"},
                       "deviceId": "a1", "targetDeviceId": "a3"}, self.ta)
        self.assertEqual(r.status, 202)
        self.assert_markers(a3, ["mv"])
        assert_quiet([a1, a2])

    def test_refusals(self):
        b1 = self.stream("b1", self.tb)
        a2 = self.stream("a2", self.ta)
        good = {"channel": "timer", "type": "t", "payload": 1, "deviceId": "a1"}
        cases = [
            ("no token", good, None, None, 401),
            ("bad token", good, make_jwt("other", {"sub": "A"}), None, 401),
            ("not JSON", None, self.ta, b"{nope", 400),
            ("not an object", None, self.ta, b"[1]", 400),
            ("no deviceId", dict(good, deviceId=None), self.ta, None, 400),
            ("bad deviceId", dict(good, deviceId="a b"), self.ta, None, 400),
            ("no channel", {"type": "t", "payload": 1, "deviceId": "a1"}, self.ta, None, 400),
            ("channel with a slash", dict(good, channel="a/b"), self.ta, None, 400),
            ("empty type", dict(good, type=""), self.ta, None, 400),
            ("no payload", {"channel": "timer", "type": "t", "deviceId": "a1"}, self.ta, None, 400),
            ("control character in target", dict(good, targetDeviceId="a\nb"), self.ta, None, 400),
            ("sourceDeviceId given", dict(good, sourceDeviceId="x"), self.ta, None, 400),
            ("another user", dict(good, userId="B"), self.ta, None, 403),
            ("too large", dict(good, payload="x" * 4000), self.ta, None, 413),
        ]
        for name, body, tok, raw, want in cases:
            if body is not None and body.get("deviceId", "") is None:
                body = {k: v for k, v in body.items() if k != "deviceId"}
            r = self.post(body, tok, raw=raw)
            self.assertEqual(r.status, want, "%s: %r" % (name, r.body))
            self.assertTrue(r.json().get("message"), name)
        r = self.bridge.request("GET", "/api/publish", headers={"Authorization": "Bearer " + self.ta})
        self.assertEqual(r.status, 405)
        self.assertEqual(r.headers.get("Allow"), "POST, OPTIONS")
        assert_quiet([b1, a2])
        # the bridge still publishes after all that
        self.assertEqual(self.post(dict(good, payload={"m": "ok"}), self.ta).status, 202)
        self.assert_markers(a2, ["ok"])


class Cors(BridgeTestCase):

    def test_allow_list_and_preflight(self):
        self.start_bridge(jwt_secret=SECRET, cors_origins="https://app.example, https://b.example")
        ok = self.bridge.request("OPTIONS", "/api/sse", headers={
            "Origin": "https://app.example", "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization, last-event-id"})
        self.assertEqual(ok.status, 204)
        self.assertEqual(ok.headers.get("Access-Control-Allow-Origin"), "https://app.example")
        self.assertEqual(ok.headers.get("Access-Control-Allow-Credentials"), "true")
        allowed = ok.headers.get("Access-Control-Allow-Headers", "").lower()
        for h in ("authorization", "last-event-id", "content-type"):
            self.assertIn(h, allowed)
        self.assertIn("POST", ok.headers.get("Access-Control-Allow-Methods", ""))
        other = self.bridge.request("OPTIONS", "/api/publish", headers={"Origin": "https://evil.example"})
        self.assertIsNone(other.headers.get("Access-Control-Allow-Origin"))
        # the stream itself carries the header for an allowed origin, not for others
        c = self.sse(params={"deviceId": "d1", "token": token("A")},
                     headers={"Origin": "https://b.example"})
        self.assertEqual(c.headers.get("access-control-allow-origin"), "https://b.example")
        d = self.sse(params={"deviceId": "d2", "token": token("A")},
                     headers={"Origin": "https://evil.example"})
        self.assertIsNone(d.headers.get("access-control-allow-origin"))

    def test_any_origin_only_with_auth_none(self):
        self.start_bridge(auth="none", cors_origins="*")
        r = self.bridge.request("GET", "/healthz", headers={"Origin": "https://x.example"})
        self.assertEqual(r.headers.get("Access-Control-Allow-Origin"), "*")
        self.assertIsNone(r.headers.get("Access-Control-Allow-Credentials"))
        b = self.new_bridge(jwt_secret=SECRET, cors_origins="*")
        rc, out = b.start_expect_failure()
        self.assertNotEqual(rc, 0)
        self.assertIn("cors_origins", out)


if __name__ == "__main__":
    unittest.main()
