"""The daemon's SIGHUP (issue: reliability, operations): it reloads the
configuration file without dropping streams, keeps running on the old one
when the new one is bad (naming the option), says which options need a
restart, and reopens log_file for logrotate."""

import os
import signal
import time
import unittest

from harness import BridgeTestCase, make_jwt, only_forms, scaled, wait_until

OLD, NEW = "reload-old-secret-0123456789abcdef", "reload-new-secret-0123456789abcdef"


def token(secret, sub="A"):
    now = int(time.time())
    return make_jwt(secret, {"sub": sub, "iat": now, "exp": now + 3600})


@only_forms("daemon")
class Reload(BridgeTestCase):

    def write_conf(self, **opts):
        with open(self.conf, "w") as f:
            for k, v in opts.items():
                f.write("%s %s\n" % (k, v))

    def start_with_conf(self, **opts):
        self.conf = os.path.join(self.workdir, "bridge.conf")
        self.write_conf(**opts)
        b = self.new_bridge(auth="jwt")
        b.extra_args = ["-c", self.conf]
        b.start()
        self.bridge = b
        return b

    def hup_and_wait(self, b, text):
        before = len(b.logs())
        b.send_signal(signal.SIGHUP)
        wait_until(lambda: text in b.logs()[before:], scaled(10), interval=0.05,
                   what="%r in the log after SIGHUP" % text)
        return b.logs()[before:]

    def test_reload_keeps_streams_and_takes_new_settings(self):
        b = self.start_with_conf(jwt_secret=OLD, heartbeat_interval=25, retry_ms=1000)
        old = self.sse("phone", headers={"Authorization": "Bearer " + token(OLD)})
        self.write_conf(jwt_secret=NEW, heartbeat_interval=1, retry_ms=2500,
                        log_level="debug")
        self.hup_and_wait(b, "[SSE] Reloaded configuration")
        # the open stream goes on and still gets events
        self.publish("A", "timer", type="after-reload", payload={"m": 1})
        old.wait_events(1)
        self.assertEqual(old.markers(), [1])
        # new streams: the new key only, the new retry and heartbeat
        c = self.sse("laptop", headers={"Authorization": "Bearer " + token(OLD)}, wait=False)
        self.assertEqual(c.wait_status(), 401)
        new = self.sse("laptop", headers={"Authorization": "Bearer " + token(NEW)})
        self.assertEqual(new.retries[:1], ["2500"])
        new.wait_comments(1, timeout=scaled(5))
        self.assertEqual(self.bridge.metrics()["mqtt_sse_bridge_connections"], 2)

    def test_bad_file_keeps_the_old_configuration(self):
        b = self.start_with_conf(jwt_secret=OLD)
        c = self.sse("phone", headers={"Authorization": "Bearer " + token(OLD)})
        self.write_conf(jwt_secret=OLD, heartbeat_interval=0)
        text = self.hup_and_wait(b, "configuration not reloaded")
        self.assertIn("heartbeat_interval", text)
        self.assertTrue(b.running)
        self.publish("A", "timer", type="still-here", payload={"m": 7})
        c.wait_events(1)
        self.assertEqual(c.markers(), [7])
        self.assertEqual(self.sse("tab", headers={"Authorization": "Bearer " + token(OLD)})
                         .status, 200)

    def test_restart_only_options_are_named(self):
        b = self.start_with_conf(jwt_secret=OLD, topic_prefix="sync", replay_buffer=256)
        self.write_conf(jwt_secret=OLD, topic_prefix="other", replay_buffer=16)
        text = self.hup_and_wait(b, "[SSE] Reloaded configuration")
        self.assertIn("topic_prefix changed; it takes effect on restart", text)
        self.assertIn("replay_buffer changed; it takes effect on restart", text)
        # still on the old prefix
        c = self.sse("phone", headers={"Authorization": "Bearer " + token(OLD)})
        self.publish("A", "timer", type="x", payload={"m": 3})
        c.wait_events(1)
        self.assertEqual(c.markers(), [3])

    def test_log_file_is_reopened(self):
        log = os.path.join(self.workdir, "bridge-file.log")
        b = self.start_with_conf(jwt_secret=OLD, log_file=log)
        self.sse("phone", headers={"Authorization": "Bearer " + token(OLD)})
        with open(log) as f:
            self.assertIn("Connection registered: user=A device=phone", f.read())
        os.rename(log, log + ".1")  # what logrotate does
        b.send_signal(signal.SIGHUP)
        wait_until(lambda: os.path.exists(log) and "Reloaded configuration" in open(log).read(),
                   scaled(10), interval=0.05, what="a new log file after SIGHUP")
        self.sse("laptop", headers={"Authorization": "Bearer " + token(OLD)})
        wait_until(lambda: "device=laptop" in open(log).read(), scaled(5), interval=0.05,
                   what="new lines in the new file")
        self.assertNotIn("device=laptop", open(log + ".1").read())


if __name__ == "__main__":
    unittest.main()
