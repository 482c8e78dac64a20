"""Configuration (SPEC: Options; issue 2: Config). A bad value or an unknown
option stops the start with a message naming it; nothing half-starts."""

import os
import socket
import time
import unittest

from harness import BridgeTestCase, DaemonBridge, only_forms, scaled

# (the option the message must name, the options given): each is refused.
# test_plugin loads the plugin with the same values (less the daemon-only
# options, which the plugin refuses as such).
BAD_OPTIONS = [
    ("nosuch_option", {"nosuch_option": "1"}),
    ("http_port", {"http_port": "99999"}),
    ("heartbeat_interval", {"heartbeat_interval": "0"}),
    ("heartbeat_interval", {"heartbeat_interval": "soon"}),
    ("auth", {"auth": "maybe"}),
    ("max_connections", {"max_connections": "-1"}),
    ("max_connections_per_user", {"max_connections_per_user": "0"}),
    ("max_event_bytes", {"max_event_bytes": "12kB"}),
    ("replay_buffer", {"replay_buffer": "-5"}),
    ("retry_ms", {"retry_ms": "1.5"}),
    ("topic_prefix", {"topic_prefix": "sync/#"}),
    ("topic_prefix", {"topic_prefix": ""}),
    ("sse_path", {"sse_path": "api/sse"}),
    # issue 15: sse_path must not shadow another endpoint or a static file
    ("sse_path", {"sse_path": "/healthz"}),
    ("sse_path", {"sse_path": "/metrics"}),
    ("sse_path", {"sse_path": "/api/publish"}),
    ("sse_path", {"sse_path": "/api/presence"}),
    ("sse_path", {"sse_path": "/"}),
    ("sse_path", {"sse_path": "/index.html"}),
    ("sse_path", {"sse_path": "/sse-client.js"}),
    # issue 15: an HS256 secret has at least 32 bytes
    ("jwt_secret", {"jwt_secret": "0123456789abcdef0123456789abcde"}),
    ("http_bind", {"http_bind": "not-an-address"}),
    ("log_level", {"log_level": "loud"}),
    ("mqtt_qos", {"mqtt_qos": "3"}),
    ("mqtt_port", {"mqtt_port": "0"}),
    ("subscribe_mode", {"subscribe_mode": "sometimes"}),
]


@only_forms("daemon")  # the plugin's refusals: test_plugin.Loading
class BadConfiguration(BridgeTestCase):

    def assert_refused(self, name, extra_args=(), **opts):
        b = DaemonBridge(self.broker, self.workdir, **opts)
        started = time.monotonic()
        rc, out = b.start_expect_failure(extra_args, timeout=5)
        took = time.monotonic() - started
        self.assertNotEqual(rc, 0, "the bridge accepted %r %r:\n%s" % (opts, extra_args, out))
        self.assertGreater(rc, 0, "the bridge crashed (signal %d):\n%s" % (-rc, out))
        self.assertIn(name, out, "the message does not name %r:\n%s" % (name, out))
        self.assertLess(took, scaled(3))
        self.assertNotIn("Listening on", out, "it half-started:\n%s" % out)
        self.assertNotIn("Connected to", out, "it half-started:\n%s" % out)
        return out

    def test_bad_options(self):
        for name, opts in BAD_OPTIONS:
            with self.subTest("%s=%r" % (name, list(opts.values())[0])):
                self.assert_refused(name, **opts)

    def test_jwt_without_a_key(self):
        out = self.assert_refused("auth", auth="jwt")
        self.assertIn("jwt_secret", out)

    def test_jwt_secret_file_missing(self):
        self.assert_refused("jwt_secret_file",
                            jwt_secret_file=os.path.join(self.workdir, "no-such-file"))

    def test_short_secrets_name_their_option(self):
        out = self.assert_refused("jwt_secret", jwt_secret="changeme")
        self.assertIn("at least 32 bytes", out)
        path = os.path.join(self.workdir, "short.secret")
        with open(path, "w") as f:
            f.write("s3cret\n")
        out = self.assert_refused("jwt_secret_file", jwt_secret_file=path)
        self.assertIn("at least 32 bytes", out)
        # 32 bytes start
        with open(path, "w") as f:
            f.write("0123456789abcdef0123456789abcdef\n")
        self.start_bridge(jwt_secret_file=path)
        self.assertEqual(self.bridge.healthz().status, 200)

    def test_sse_path_collisions_name_the_endpoint(self):
        for path, what in (("/healthz", "health check"), ("/metrics", "metrics"),
                           ("/", "demo page"), ("/device.js", "static file")):
            with self.subTest(path):
                out = self.assert_refused("sse_path", sse_path=path)
                self.assertIn(what, out)

    def test_http_port_in_use(self):
        busy = socket.socket()
        self.addCleanup(busy.close)
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        b = DaemonBridge(self.broker, self.workdir)
        b.port = busy.getsockname()[1]
        rc, out = b.start_expect_failure(timeout=5)
        self.assertGreater(rc, 0, out)
        self.assertIn("http_port", out)
        self.assertNotIn("Connected to", out, "it connected to MQTT without its HTTP side")

    def test_command_line_mistakes(self):
        for name, args in (("needs a value", ["--heartbeat_interval"]),
                           ("stray", ["stray"]),
                           ("missing.conf", ["-c", os.path.join(self.workdir, "missing.conf")])):
            with self.subTest(args=args):
                self.assert_refused(name, extra_args=args)

    def test_config_file_errors_name_the_option_and_line(self):
        path = os.path.join(self.workdir, "bad.conf")
        with open(path, "w") as f:
            f.write("# comment\n\nheartbeat_interval 5\nno_such_key 3\n")
        out = self.assert_refused("no_such_key", extra_args=["-c", path])
        self.assertIn(":4", out)
        with open(path, "w") as f:
            f.write("heartbeat_interval 0\n")
        self.assert_refused("heartbeat_interval", extra_args=["-c", path])


@only_forms("daemon")
class QuietLogLevels(BridgeTestCase):

    @only_forms("daemon")
    def test_the_daemon_keeps_serving_at_every_log_level(self):
        """Below log_level notice nothing may be skipped but log lines: the
        daemon once ended right after its start at warning and error."""
        for level in ("warning", "error"):
            b = self.start_bridge(log_level=level)
            c = self.sse("a1", "A")
            time.sleep(scaled(0.5))
            self.assertTrue(b.running, "the daemon ended at log_level %s" % level)
            self.publish("A", "timer", payload={"m": level})
            self.assert_markers(c, [level])
            c.close()
            b.stop()


class ConfigFile(BridgeTestCase):

    def test_file_options_and_flags_that_override_them(self):
        path = os.path.join(self.workdir, "bridge.conf")
        with open(path, "w") as f:
            f.write("# a config file\n"
                    "sse_path /from-file\n"
                    "retry_ms 4000\n"
                    "topic_prefix filed\n"
                    "auth none\n")
        b = self.new_bridge(retry_ms=1500)  # the flag wins over the file
        b.extra_args = ["-c", path]
        b.start()
        self.bridge = b
        c = self.sse("a1", "A", path="/from-file")
        self.assertRegex(bytes(c.body), rb"\Aretry: 1500\nid: \d+-0\n\n\Z")
        self.publish("A", "timer", payload={"m": 1}, prefix="filed")
        self.assert_markers(c, [1])


if __name__ == "__main__":
    unittest.main()
