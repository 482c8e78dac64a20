"""JWT auth (SPEC: Auth): the user is the token's sub; no or bad credentials
are a 401; a user never receives another user's events."""

import os
import time
import unittest

from harness import BridgeTestCase, assert_quiet, make_jwt

SECRET = "integration-secret-0123456789abcdef"


def token(sub="A", secret=SECRET, **claims):
    now = int(time.time())
    body = {"sub": sub, "iat": now, "exp": now + 3600}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return make_jwt(secret, body)


class JwtAuth(BridgeTestCase):

    def setUp(self):
        super().setUp()
        self.start_bridge(jwt_secret=SECRET)

    def assert_401(self, r):
        self.assertEqual(r.status, 401, r)
        self.assertTrue(r.body.strip(), "a 401 says why")
        www = r.headers.get("WWW-Authenticate")
        self.assertIsNotNone(www, "a 401 has WWW-Authenticate")
        self.assertTrue(www.startswith("Bearer"), www)

    def test_no_token(self):
        self.assert_401(self.bridge.request("GET", "/api/sse?deviceId=a1"))
        # under jwt auth the userId parameter is not a credential
        self.assert_401(self.bridge.request("GET", "/api/sse?deviceId=a1&userId=A"))

    def test_bad_tokens(self):
        now = int(time.time())
        good = token("A")
        head, payload, sig = good.split(".")
        other = token("B").split(".")[1]
        cases = {
            "garbage": "not-a-token",
            "wrong secret": token("A", secret="another-secret-entirely-000000"),
            "expired": token("A", exp=now - 120),
            "not valid yet": token("A", nbf=now + 3600),
            "unsigned (alg none)": make_jwt(None, {"sub": "A", "exp": now + 3600}, alg="none"),
            "no sub": token(None),
            "empty sub": token(""),
            "exp not a number": token("A", exp="tomorrow"),
            "signature of another token": "%s.%s.%s" % (head, other, sig),
            "truncated signature": good[:-6],
        }
        for name, tok in cases.items():
            with self.subTest(name):
                for where, kwargs in (
                        ("bearer", {"headers": {"Authorization": "Bearer " + tok}}),
                        ("query", {"query": "deviceId=a1&token=" + tok}),
                        ("cookie", {"headers": {"Cookie": "sse_token=" + tok}})):
                    c = self.sse("a1", None, wait=False, name="%s via %s" % (name, where),
                                 **kwargs)
                    self.assertEqual(c.wait_status(), 401, "%s via %s" % (name, where))
                    self.assertTrue(c.wait_body().strip())
                    self.assertIn("www-authenticate", c.headers)
        with self.subTest("Basic credentials"):
            self.assert_401(self.bridge.request("GET", "/api/sse?deviceId=a1",
                                                headers={"Authorization": "Basic QTpB"}))

    def test_a_crit_header_is_refused(self):
        """RFC 7515 4.1.11: a token whose header lists critical extensions
        that the recipient does not understand is invalid. The bridge
        understands none: crit in any form gets 401, on every endpoint that
        takes a token; other unknown header fields do not matter."""
        now = int(time.time())
        claims = {"sub": "A", "iat": now, "exp": now + 3600}
        for crit in ({"crit": ["exp"]}, {"crit": ["b64"], "b64": False},
                     {"crit": ["urn:example:ext"], "urn:example:ext": 1}, {"crit": []}):
            tok = make_jwt(SECRET, claims, header=crit)
            with self.subTest(crit):
                for path in ("/api/sse?deviceId=a1", "/api/presence"):
                    r = self.bridge.request("GET", path, headers={"Authorization": "Bearer " + tok})
                    self.assert_401(r)
                    self.assertIn(b"crit", r.body)
                c = self.sse(None, None, wait=False, query="deviceId=a1&token=" + tok)
                self.assertEqual(c.wait_status(), 401)
        tok = make_jwt(SECRET, claims, header={"kid": "key-1", "x-note": [1, 2]})
        c = self.sse("a1", None, headers={"Authorization": "Bearer " + tok})
        self.assertEqual(c.status, 200)

    def test_token_via_header_query_and_cookie(self):
        tok_a, tok_b = token("A"), token("B")
        bearer = self.sse("a1", None, headers={"Authorization": "Bearer " + tok_a},
                          name="A bearer")
        query = self.sse(None, None, query="deviceId=a2&token=" + tok_a, name="A query")
        cookie = self.sse("a3", None, headers={"Cookie": "theme=dark; sse_token=" + tok_a},
                          name="A cookie")
        b1 = self.sse("b1", None, headers={"Authorization": "Bearer " + tok_b}, name="B bearer")
        for c in (bearer, query, cookie, b1):
            self.assertEqual(c.status, 200)
        self.publish("A", "timer", payload={"m": "A1"})
        self.publish("A", "timer", payload={"m": "A2"}, sourceDeviceId="a2")
        self.publish("B", "timer", payload={"m": "B1"})
        self.assert_markers(bearer, ["A1", "A2"])
        self.assert_markers(query, ["A1"])
        self.assert_markers(cookie, ["A1", "A2"])
        self.assert_markers(b1, ["B1"])
        assert_quiet([bearer, query, cookie, b1])

    def test_user_is_the_sub_not_the_user_id_parameter(self):
        a_as_b = self.sse("x1", "B", headers={"Authorization": "Bearer " + token("A")},
                          name="A claiming userId=B")
        b1 = self.sse("b1", None, headers={"Authorization": "Bearer " + token("B")})
        self.publish("B", "timer", payload={"m": "for B"})
        self.publish("A", "timer", payload={"m": "for A"})
        self.assert_markers(a_as_b, ["for A"])
        self.assert_markers(b1, ["for B"])
        assert_quiet([a_as_b, b1])

    def test_valid_nbf_and_no_exp(self):
        now = int(time.time())
        c1 = self.sse("a1", None, headers={"Authorization": "Bearer " + token("A", nbf=now - 5)})
        c2 = self.sse("a2", None, headers={"Authorization": "Bearer " + token("A", exp=None)})
        self.publish("A", "timer", payload={"m": 1})
        self.assert_markers(c1, [1])
        self.assert_markers(c2, [1])

    def test_user_ids_that_differ_only_slightly_stay_apart(self):
        users = ["A", "a", "A ", "A/", "AA"]
        clients = {}
        for u in users:
            c = self.sse("d1", None, headers={"Authorization": "Bearer " + token(u)}, wait=False,
                         name="user %r" % u)
            clients[u] = c
        accepted = {u: c for u, c in clients.items() if c.wait_status() == 200}
        # a user id that cannot be a topic level ("A/") must not be accepted
        self.assertNotIn("A/", accepted)
        for u in accepted:
            if u in ("A", "a", "AA"):
                self.publish(u, "timer", payload={"m": "for %s" % u})
        for u, c in accepted.items():
            self.assert_markers(c, ["for %s" % u] if u in ("A", "a", "AA") else [])
        assert_quiet(list(accepted.values()))


class JwtOptions(BridgeTestCase):

    def test_secret_file_and_cookie_name(self):
        path = os.path.join(self.workdir, "jwt.secret")
        with open(path, "w") as f:
            f.write(SECRET + "\n")
        self.start_bridge(jwt_secret_file=path, jwt_cookie="app_auth")
        c = self.sse("a1", None, headers={"Cookie": "app_auth=" + token("A")})
        wrong = self.sse("a2", None, headers={"Cookie": "sse_token=" + token("A")}, wait=False)
        self.assertEqual(wrong.wait_status(), 401)
        self.publish("A", "timer", payload={"m": 1})
        self.assert_markers(c, [1])


if __name__ == "__main__":
    unittest.main()
