"""POST /api/publish and CORS (issue 4): an authenticated HTTP way to publish
for one's own user, validated like an MQTT message, reaching SSE by the same
path as any other event; and the cors_origins allow-list with preflight.
No forged publishes (issue 15): only application/json is taken, and a
cookie-authenticated publish must come from the bridge's own origin or one of
cors_origins."""

import json
import os
import time
import unittest

from harness import BridgeTestCase, assert_quiet, make_jwt
from test_https import Pki, client_context

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

    def test_numbers_reach_the_stream_as_written(self):
        a1, a2 = self.stream("a1", self.ta), self.stream("a2", self.ta)
        raw = (b'{"channel":"timer","type":"t","deviceId":"a1","payload":'
               b'{"x":0.1,"big":123456789012345678901234567890,"e":1E+2}}')
        r = self.post(None, self.ta, raw=raw)
        self.assertEqual(r.status, 202, r.body)
        ev = a2.wait_events(1)[0]
        self.assertIn('"payload":{"x":0.1,"big":123456789012345678901234567890,"e":1E+2}',
                      ev.data)
        assert_quiet([a1])

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


class Forgery(BridgeTestCase):
    """A page of another site that the victim visits cannot publish with the
    victim's cookie: an HTML form (text/plain, urlencoded, multipart) is 415,
    a cross-origin fetch with JSON from an origin not in cors_origins is 403,
    and nothing reaches the victim's stream. Same-origin JSON with the cookie,
    an origin of cors_origins, and the bearer header or query token from
    anywhere still publish."""

    ALLOWED = "https://app.example"

    def setUp(self):
        super().setUp()
        self.start_bridge(jwt_secret=SECRET, cors_origins=self.ALLOWED)
        self.ta = token("A")
        self.own = "http://127.0.0.1:%d" % self.bridge.port
        self.victim = self.sse(params={"deviceId": "v1"},
                               headers={"Authorization": "Bearer " + self.ta}, name="victim")

    def post(self, ctype, headers, body=None, path="/api/publish"):
        h = {"Host": "127.0.0.1:%d" % self.bridge.port}
        if ctype is not None:
            h["Content-Type"] = ctype
        h.update(headers)
        if body is None:
            body = json.dumps({"channel": "timer", "type": "forged", "payload": {"m": "forged"},
                               "deviceId": "evil"}).encode()
        return self.bridge.request("POST", path, headers=h, body=body)

    def cookie(self, **more):
        h = {"Cookie": "sse_token=" + self.ta}
        h.update(more)
        return h

    def assert_refused(self, r, status, what):
        self.assertEqual(r.status, status, "%s: %r" % (what, r))
        body = r.json()
        self.assertTrue(body.get("error") and body.get("message"), body)

    def test_cross_origin_forms_with_the_cookie_are_refused(self):
        evil = "https://evil.example"
        form_body = b'{"channel":"timer","type":"forged","payload":{"m":"forged"},"deviceId":"x"}'
        for ctype in ("text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                      "multipart/form-data; boundary=x", None):
            with self.subTest(ctype=ctype):
                r = self.post(ctype, self.cookie(Origin=evil), body=form_body)
                self.assert_refused(r, 415, "a form's %r" % ctype)
                # without Origin (a browser that sends none): the same
                r = self.post(ctype, self.cookie(Referer=evil + "/page"), body=form_body)
                self.assert_refused(r, 415, "a form's %r, Referer only" % ctype)
        assert_quiet([self.victim], window=1.0)
        m = self.bridge.metrics()
        self.assertGreaterEqual(m['mqtt_sse_bridge_http_errors_total{code="415"}'], 10)

    def test_cross_origin_json_with_the_cookie_is_403(self):
        cases = [
            ("another origin", self.cookie(Origin="https://evil.example")),
            ("another port", self.cookie(Origin="http://127.0.0.1:%d" % (self.bridge.port + 1))),
            ("another scheme", self.cookie(Origin="https://127.0.0.1:%d" % self.bridge.port)),
            ("an origin of the list's with a path", self.cookie(Origin=self.ALLOWED + "/")),
            ("null", self.cookie(Origin="null")),
            ("a Referer of another site", self.cookie(Referer="https://evil.example/x?y")),
            ("neither Origin nor Referer", self.cookie()),
            ("the own origin as the Referer's query", self.cookie(
                Referer="https://evil.example/?" + self.own)),
        ]
        for what, headers in cases:
            with self.subTest(what):
                r = self.post("application/json", headers)
                self.assert_refused(r, 403, what)
        assert_quiet([self.victim], window=1.0)

    def test_same_origin_json_with_the_cookie_publishes(self):
        cases = [
            ("Origin", self.cookie(Origin=self.own), "own"),
            ("Host in upper case", self.cookie(Origin="http://localhost:%d" % self.bridge.port,
                                               Host="LOCALHOST:%d" % self.bridge.port), "case"),
            ("Referer", self.cookie(Referer=self.own + "/index.html?x=1"), "referer"),
            ("an origin of cors_origins", self.cookie(Origin=self.ALLOWED), "listed"),
            ("charset", self.cookie(Origin=self.own), "charset"),
        ]
        for what, headers, marker in cases:
            with self.subTest(what):
                body = json.dumps({"channel": "timer", "type": "t", "payload": {"m": marker},
                                   "deviceId": "a1"}).encode()
                ctype = ("application/json; charset=utf-8" if what == "charset"
                         else "application/json")
                r = self.post(ctype, headers, body=body)
                self.assertEqual(r.status, 202, "%s: %r" % (what, r))
        self.assert_markers(self.victim, [m for _, _, m in cases])

    def test_bearer_and_query_tokens_are_not_judged_by_origin(self):
        evil = "https://evil.example"
        body = json.dumps({"channel": "timer", "type": "t", "payload": {"m": "bearer"},
                           "deviceId": "a1"}).encode()
        r = self.post("application/json", {"Authorization": "Bearer " + self.ta, "Origin": evil},
                      body=body)
        self.assertEqual(r.status, 202, r)
        body = body.replace(b"bearer", b"query")
        r = self.post("application/json", {"Origin": evil}, body=body,
                      path="/api/publish?token=" + self.ta)
        self.assertEqual(r.status, 202, r)
        # the header wins over the cookie, as for authentication
        body = body.replace(b"query", b"header-and-cookie")
        r = self.post("application/json", self.cookie(Origin=evil, Authorization="Bearer " + self.ta),
                      body=body)
        self.assertEqual(r.status, 202, r)
        self.assert_markers(self.victim, ["bearer", "query", "header-and-cookie"])
        # but the body must be JSON whoever sends it
        r = self.post("text/plain", {"Authorization": "Bearer " + self.ta})
        self.assert_refused(r, 415, "bearer with text/plain")
        r = self.post("application/jsonx", {"Authorization": "Bearer " + self.ta})
        self.assert_refused(r, 415, "bearer with application/jsonx")


class ForgeryOverHttps(BridgeTestCase):
    """Over HTTPS the bridge's own origin is https://<Host>: the same host
    over http is another origin."""

    def test_the_own_origin_has_the_scheme_served(self):
        pki = Pki(os.path.join(self.workdir, "pki"))
        ca = pki.make_ca("root")
        cert, key = pki.make_cert("server", "root", 1001)
        b = self.new_bridge(jwt_secret=SECRET, http_tls_cert=cert, http_tls_key=key)
        b.ssl_context = client_context(ca)
        b.start()
        body = json.dumps({"channel": "timer", "type": "t", "payload": 1,
                           "deviceId": "a1"}).encode()
        cookie = "sse_token=" + token("A")
        for origin, want in (("https://127.0.0.1:%d" % b.port, 202),
                             ("http://127.0.0.1:%d" % b.port, 403),
                             ("https://127.0.0.1", 403)):
            with self.subTest(origin=origin):
                r = b.request("POST", "/api/publish", body=body, headers={
                    "Content-Type": "application/json", "Cookie": cookie, "Origin": origin})
                self.assertEqual(r.status, want, r)


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
