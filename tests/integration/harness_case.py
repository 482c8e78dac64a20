"""The base of the integration test classes (BridgeTestCase): a temp dir, a
broker, an SSE reactor and the bridge of the form under test for each test,
all stopped afterwards, with the logs printed when the test fails."""

import shutil
import sys
import tempfile
import unittest

from harness_bridge import make_bridge
from harness_env import FORM
from harness_mqtt import Broker
from harness_procs import wait_until
from harness_sse import Reactor, SSEClient, compact

# What a sanitizer writes when it finds something (ASan, LSan, UBSan, TSan).
SANITIZER_REPORTS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer")


class BridgeTestCase(unittest.TestCase):
    """Gives each test a temp dir, a running broker, an SSE reactor and
    helpers; stops all of it afterwards and prints the logs on failure. A
    bridge that does not exit 0 on SIGTERM at the end fails the test."""

    broker_conf = None  # extra mosquitto.conf lines for every test of a class

    def run(self, result=None):
        if result is None:
            return super().run(result)
        before = len(result.failures) + len(result.errors)
        self._saved_logs = []
        outcome = super().run(result)
        if len(result.failures) + len(result.errors) > before:
            out = ["", "=" * 70, "LOGS of %s" % self.id()]
            for name, text in self._saved_logs:
                out += ["---- %s ----" % name, text.rstrip()]
            out.append("=" * 70)
            sys.stderr.write("\n".join(out) + "\n")
            sys.stderr.flush()
        return outcome

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="sb-it-")
        self.addCleanup(self._remove_workdir)
        self.bridges = []
        self.reactor = Reactor()
        self.addCleanup(self.reactor.stop)
        self.broker = Broker(self.workdir, self.broker_conf)
        self.addCleanup(self._stop_broker)
        if FORM != "plugin":
            # in the plugin form the broker is the bridge: start_bridge()
            # starts it with the plugin
            self.broker.start()

    def tearDown(self):
        # Close the clients, then stop every bridge; a bridge that crashes,
        # hangs or reports a sanitizer error on a normal stop fails the test.
        self.reactor.close_all()
        problems = []
        for b in self.bridges:
            was_running = b.running
            rc = b.stop()
            text = b.logs()
            if was_running and rc != 0:
                problems.append("the bridge exited with %r on SIGTERM" % (rc,))
            for pat in SANITIZER_REPORTS:
                if pat in text:
                    problems.append("the bridge's log reports %r" % pat)
        if problems:
            self.fail("; ".join(problems))

    def _stop_broker(self):
        for b in self.bridges:
            b.stop()  # in case tearDown did not run
            if b.form != "plugin":  # the plugin's log is the broker's
                self._saved_logs.append(("bridge (%s form) stderr" % b.form, b.logs(limit=400)))
        self.broker.stop()
        self._saved_logs.append(("mosquitto log%s" % (" (with the plugin)" if FORM == "plugin"
                                                      else ""), self.broker.logs(limit=400)))

    def _remove_workdir(self):
        shutil.rmtree(self.workdir, ignore_errors=True)

    # ---- helpers ----

    def start_bridge(self, **opts):
        """Starts the bridge of the form under test; stopped in tearDown."""
        b = make_bridge(self.broker, self.workdir, **opts)
        self.bridges.append(b)
        b.start()
        self.bridge = b
        return b

    def new_bridge(self, **opts):
        """A bridge of the form under test, not started (stopped in tearDown)."""
        b = make_bridge(self.broker, self.workdir, **opts)
        self.bridges.append(b)
        return b

    def sse(self, device=None, user=None, headers=None, params=None, query=None, bridge=None,
            path=None, method="GET", name=None, wait=True):
        """Opens an SSE stream (auth none: user goes to userId). Waits for the
        retry line unless wait is False."""
        b = bridge or self.bridge
        p = {}
        if device is not None:
            p["deviceId"] = device
        if user is not None:
            p["userId"] = user
        p.update(params or {})
        c = SSEClient(self.reactor, b.port, path or b.opts.get("sse_path", "/api/sse"), p,
                      headers, query=query, method=method,
                      name=name or "%s/%s" % (user, device))
        if wait:
            c.wait_open()
        return c

    def publish(self, user, channel, event=None, raw=None, prefix="sync", **fields):
        """Publishes an SSEEvent (event dict, or type/payload/... as keyword
        fields), or raw bytes, on <prefix>/<user>/<channel>."""
        topic = "%s/%s/%s" % (prefix, user, channel)
        if raw is not None:
            self.broker.publish(topic, raw)
            return None
        if event is None:
            event = {"type": fields.pop("type", "updated"), "payload": fields.pop("payload", {})}
            event.update(fields)
        self.broker.publish(topic, compact(event))
        return event

    def wait_connections(self, n, bridge=None, timeout=10):
        b = bridge or self.bridge
        wait_until(lambda: b.metrics().get("mqtt_sse_bridge_connections") == n, timeout,
                   interval=0.05, what="%d open SSE connections" % n)

    def assert_markers(self, client, expected, timeout=10):
        """Waits for len(expected) events on client, then asserts their
        payload markers are exactly expected, in order."""
        if expected:
            client.wait_events(len(expected), timeout)
        self.assertEqual(client.markers(), list(expected),
                         "%s received the wrong events" % client.name)
