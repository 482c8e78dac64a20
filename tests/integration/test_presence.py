"""Presence for backends (issue: reliability): with presence_prefix P the
bridge keeps a retained record per user on P/<userId> (devices and
connection counts), clears it when the user's last connection goes and on a
clean stop, keeps its own status on P (with a will for crashes), and answers
GET /api/presence for the authenticated user."""

import json
import signal
import time
import unittest

from faultkit import retained_messages
from harness import BridgeTestCase, free_port, make_jwt, only_forms, scaled, wait_until

SECRET = "presence-secret-0123456789abcdef"


def token(sub):
    now = int(time.time())
    return make_jwt(SECRET, {"sub": sub, "iat": now, "exp": now + 3600})


def retained(broker, topic_filter):
    """The retained messages under topic_filter, as {topic: parsed JSON}."""
    return {t: json.loads(p) for t, p in retained_messages(broker.port, topic_filter).items()}


class Presence(BridgeTestCase):

    def wait_record(self, user, pred, what):
        last = {}

        def check():
            last["r"] = retained(self.broker, "presence/%s" % user).get("presence/%s" % user)
            return pred(last["r"])
        try:
            wait_until(check, scaled(10), interval=0.1, what=what)
        except AssertionError:
            raise AssertionError("%s; last record: %r" % (what, last.get("r")))
        return last["r"]

    def test_record_follows_connections(self):
        b = self.start_bridge(presence_prefix="presence")
        phone = self.sse("phone", "u1")
        laptops = [self.sse("laptop", "u1"), self.sse("laptop", "u1")]
        self.sse("tab", "u2")
        rec = self.wait_record("u1", lambda r: r and r.get("connections") == 3, "u1 with 3")
        self.assertEqual(rec["userId"], "u1")
        self.assertIs(rec["online"], True)
        self.assertEqual(rec["devices"], {"phone": 1, "laptop": 2})
        self.assertTrue(rec["instance"].endswith(":%d" % b.port), rec)
        self.assertRegex(rec["timestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        status = retained(self.broker, "presence")["presence"]
        self.assertEqual(status["instance"], rec["instance"])
        self.assertIs(status["online"], True)

        for c in laptops:
            c.close()
        rec = self.wait_record("u1", lambda r: r and r.get("connections") == 1, "u1 with 1")
        self.assertEqual(rec["devices"], {"phone": 1})
        phone.close()
        # the last connection gone: the record is cleared, u2's stays
        self.wait_record("u1", lambda r: r is None, "u1's record cleared")
        all_records = retained(self.broker, "presence/+")
        self.assertEqual(list(all_records), ["presence/u2"])
        self.assertEqual(all_records["presence/u2"]["devices"], {"tab": 1})
        self.assertGreaterEqual(b.metrics()["mqtt_sse_bridge_presence_published_total"], 6)

    def test_api_presence(self):
        b = self.start_bridge(jwt_secret=SECRET)  # no presence_prefix: still answers
        auth_a = {"Authorization": "Bearer " + token("A")}
        self.sse("phone", headers=auth_a)
        self.sse("phone", headers=auth_a)
        self.sse("laptop", headers=auth_a)
        self.sse("tv", headers={"Authorization": "Bearer " + token("B")})
        r = b.request("GET", "/api/presence", headers=auth_a)
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.headers.get("Content-Type", "").startswith("application/json"))
        self.assertEqual(r.json(), {"userId": "A", "online": True, "connections": 3,
                                    "devices": {"phone": 2, "laptop": 1}})
        r = b.request("GET", "/api/presence?token=" + token("C"))
        self.assertEqual(r.json(), {"userId": "C", "online": False, "connections": 0,
                                    "devices": {}})
        # another user's id in the query changes nothing: the token says who
        r = b.request("GET", "/api/presence?userId=B", headers=auth_a)
        self.assertEqual(r.json()["userId"], "A")
        self.assertEqual(b.request("GET", "/api/presence").status, 401)
        self.assertEqual(b.request("GET", "/api/presence",
                                   headers={"Authorization": "Bearer nope"}).status, 401)
        self.assertEqual(b.request("POST", "/api/presence", body=b"{}").status, 405)

    @only_forms("daemon")
    def test_clean_stop_clears_everything(self):
        b = self.start_bridge(presence_prefix="presence")
        self.sse("phone", "u1")
        self.sse("tab", "u2")
        self.wait_record("u2", lambda r: r is not None, "u2's record")
        b.stop()
        self.assertEqual(retained(self.broker, "presence/+"), {})
        status = retained(self.broker, "presence")["presence"]
        self.assertIs(status["online"], False)

    @only_forms("daemon")
    def test_will_then_a_restart_clears_what_the_crash_left(self):
        port = free_port()
        b = self.start_bridge(presence_prefix="presence", http_port=port)
        self.sse("phone", "u1")
        self.sse("tab", "u2")
        self.wait_record("u2", lambda r: r is not None, "u2's record")
        first = retained(self.broker, "presence")["presence"]
        b.send_signal(signal.SIGKILL)
        b.wait_exit(scaled(5))
        wait_until(lambda: retained(self.broker, "presence").get("presence", {}).get("online")
                   is False, scaled(10), interval=0.1, what="the will on presence")
        # the users' records stay, marked with the run that is gone
        recs = retained(self.broker, "presence/+")
        self.assertEqual(sorted(recs), ["presence/u1", "presence/u2"])
        for r in recs.values():
            self.assertEqual((r["instance"], r["started"]), (first["instance"], first["started"]))
        # the same instance again: u2 is back, u1 is not; u1's record is cleared
        b.stop()
        b.start()
        self.sse("tab", "u2")
        wait_until(lambda: list(retained(self.broker, "presence/+")) == ["presence/u2"],
                   scaled(10), interval=0.1, what="only u2's record left")
        status = retained(self.broker, "presence")["presence"]
        self.assertIs(status["online"], True)
        self.assertEqual(status["instance"], first["instance"])
        self.assertNotEqual(status["started"], first["started"])
        rec = retained(self.broker, "presence/u2")["presence/u2"]
        self.assertEqual(rec["started"], status["started"])


if __name__ == "__main__":
    unittest.main()
