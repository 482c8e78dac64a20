"""The auth matrix against a running bridge (issue 4): RS256 and ES256 with
jwt_public_key_file, key confusion, alg none, exp/nbf, audience and issuer,
each token source; and user A never receives user B's events whatever A
sends. Tokens are signed with the openssl command."""

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

from harness import BridgeTestCase, assert_quiet, make_jwt, only_forms

HS_SECRET = "auth-keys-hs256-secret-0123456789abcdef"
ISO_SECRET = "isolation-secret-0123456789abcdef"
KEYS = None


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def openssl(*args, data=None):
    return subprocess.run(("openssl",) + args, input=data, check=True,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout


def der_to_raw(sig, size=32):
    """An ECDSA DER signature (SEQUENCE of two INTEGERs) as JOSE's r || s."""
    assert sig[0] == 0x30
    i = 2 if sig[1] < 0x80 else 3
    out = b""
    for _ in range(2):
        assert sig[i] == 0x02
        n = sig[i + 1]
        out += sig[i + 2:i + 2 + n].lstrip(b"\x00").rjust(size, b"\x00")
        i += 2 + n
    return out


def sign(alg, key, claims, header_alg=None):
    hdr = {"alg": header_alg or alg, "typ": "JWT"}
    signing_input = (b64url(json.dumps(hdr).encode()) + "." +
                     b64url(json.dumps(claims).encode())).encode()
    sig = openssl("dgst", "-sha256", "-sign", key, data=signing_input)
    if alg == "ES256":
        sig = der_to_raw(sig)
    return signing_input.decode() + "." + b64url(sig)


def setUpModule():
    global KEYS
    KEYS = tempfile.mkdtemp(prefix="sb-keys-")
    k = lambda n: os.path.join(KEYS, n)
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", k("rsa.key"))
    openssl("pkey", "-in", k("rsa.key"), "-pubout", "-out", k("rsa.pub"))
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", k("ec.key"))
    openssl("pkey", "-in", k("ec.key"), "-pubout", "-out", k("ec.pub"))
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", k("other.key"))
    os.chmod(KEYS, 0o755)
    for f in os.listdir(KEYS):
        os.chmod(os.path.join(KEYS, f), 0o644)


def tearDownModule():
    shutil.rmtree(KEYS, ignore_errors=True)


def key(name):
    return os.path.join(KEYS, name)


def claims(sub="A", **extra):
    c = {"sub": sub, "exp": int(time.time()) + 3600}
    c.update(extra)
    return c


class PublicKeys(BridgeTestCase):

    def status(self, token, source="header"):
        params, headers = {"deviceId": "d1"}, {}
        if source == "header":
            headers["Authorization"] = "Bearer " + token
        elif source == "cookie":
            headers["Cookie"] = "sse_token=" + token
        else:
            params["token"] = token
        c = self.sse(params=params, headers=headers, wait=False, name="%s/%s" % (source, token[-6:]))
        status = c.wait_status()
        c.close()
        return status

    def test_rs256_matrix(self):
        self.start_bridge(jwt_public_key_file=key("rsa.pub"), jwt_audience="app",
                          jwt_issuer="https://issuer.test/")
        now = int(time.time())
        good = dict(aud="app", iss="https://issuer.test/")
        pub_pem = open(key("rsa.pub")).read()
        cases = {
            "good": (sign("RS256", key("rsa.key"), claims(**good)), 200),
            "aud as list": (sign("RS256", key("rsa.key"),
                                 claims(aud=["x", "app"], iss=good["iss"])), 200),
            "other key": (sign("RS256", key("other.key"), claims(**good)), 401),
            "HS256 signed with the public key (key confusion)":
                (make_jwt(pub_pem, claims(**good)), 401),
            "alg none": (make_jwt(None, claims(**good), alg="none"), 401),
            "expired": (sign("RS256", key("rsa.key"), claims(exp=now - 5, **good)), 401),
            "not yet valid": (sign("RS256", key("rsa.key"), claims(nbf=now + 600, **good)), 401),
            "wrong audience": (sign("RS256", key("rsa.key"),
                                    claims(aud="other", iss=good["iss"])), 401),
            "no audience": (sign("RS256", key("rsa.key"), claims(iss=good["iss"])), 401),
            "wrong issuer": (sign("RS256", key("rsa.key"), claims(aud="app", iss="https://evil/")), 401),
            "malformed": ("a.b.c", 401),
            "garbage": ("not a token", 401),
        }
        for name, (token, want) in cases.items():
            for source in ("header", "cookie", "query"):
                self.assertEqual(self.status(token, source), want, "%s via %s" % (name, source))
        # a refusal names what failed and never the key
        r = self.bridge.request("GET", "/api/sse?deviceId=d1",
                                headers={"Authorization": "Bearer " + cases["expired"][0]})
        self.assertEqual(r.status, 401)
        self.assertIn("expired", r.headers.get("WWW-Authenticate", ""))
        self.assertNotIn("BEGIN", r.body.decode())

    def test_es256(self):
        self.start_bridge(jwt_public_key_file=key("ec.pub"))
        self.assertEqual(self.status(sign("ES256", key("ec.key"), claims())), 200)
        self.assertEqual(self.status(sign("RS256", key("rsa.key"), claims(), header_alg="ES256")), 401)
        self.assertEqual(self.status(sign("RS256", key("rsa.key"), claims())), 401)

    def test_hs256_only_when_a_secret_is_set(self):
        self.start_bridge(jwt_secret=HS_SECRET)
        self.assertEqual(self.status(make_jwt(HS_SECRET, claims())), 200)
        self.assertEqual(self.status(sign("RS256", key("rsa.key"), claims())), 401)
        self.assertEqual(self.status(make_jwt(HS_SECRET, claims(), header={"alg": "HS512"})), 401)

    def test_bad_public_key_file_stops_the_start(self):
        b = self.new_bridge(jwt_public_key_file=key("rsa.key.missing"))
        rc, out = b.start_expect_failure()
        self.assertNotEqual(rc, 0)
        self.assertIn("jwt_public_key_file", out)


class UserIsolation(BridgeTestCase):
    """A holds a valid token for A and tries everything to see B's events."""

    def test_a_never_sees_b_whatever_a_sends(self):
        self.start_bridge(jwt_secret=ISO_SECRET)
        ta, tb = make_jwt(ISO_SECRET, claims("A")), make_jwt(ISO_SECRET, claims("B"))
        b1 = self.sse(params={"deviceId": "b1"}, headers={"Authorization": "Bearer " + tb}, name="B/b1")
        self.publish("B", "timer", payload={"m": "b-old"})
        b_id = b1.wait_events(1)[0].id
        tries = [
            self.sse(params={"deviceId": "b1", "userId": "B"},
                     headers={"Authorization": "Bearer " + ta}, name="A as b1 with userId=B"),
            self.sse(params={"deviceId": "a1", "lastEventId": b_id},
                     headers={"Authorization": "Bearer " + ta}, name="A with B's last id"),
            self.sse(params={"deviceId": "a2"}, headers={"Authorization": "Bearer " + ta,
                                                         "Last-Event-ID": b_id,
                                                         "Cookie": "sse_token=" + tb},
                     name="A header + B cookie"),
            self.sse(params={"deviceId": "a3", "token": tb},
                     headers={"Authorization": "Bearer " + ta}, name="A header + B query"),
        ]
        # A may not publish for B either
        r = self.bridge.request("POST", "/api/publish", headers={"Authorization": "Bearer " + ta},
                                body=json.dumps({"channel": "timer", "type": "x", "payload": 1,
                                                 "deviceId": "a1", "userId": "B"}).encode())
        self.assertEqual(r.status, 403)
        self.publish("B", "timer", payload={"m": "b-new"})
        self.publish("A", "timer", payload={"m": "a-new"})
        self.assert_markers(b1, ["b-old", "b-new"])
        for c in tries:
            c.wait_event_where(lambda e: e.json.get("channel") != "system", what="A's event")
            events = [e for e in c.snapshot() if e.json.get("channel") != "system"]
            self.assertEqual([e.json["payload"]["m"] for e in events], ["a-new"], c.name)
        assert_quiet(tries + [b1])


if __name__ == "__main__":
    unittest.main()
