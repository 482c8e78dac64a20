"""The plugin form only (issue 3, Tests): mosquitto refuses to start with a
bad plugin_opt line, naming the option; a broker restart brings SSE back; 500
SSE streams get what a second MQTT client publishes while the broker's own
MQTT subscribers still get every message, byte for byte (the plugin never
eats or alters broker traffic); topics outside <prefix>/+/+ pass by; a
publish that the broker's ACL denies never reaches SSE; POST /api/publish
reaches SSE and MQTT subscribers; the broker stops cleanly with the streams
open. Mosquitto 2.0's edges (issue 16): with per_listener_settings true it
sends plugins no tick, so the plugin refuses that configuration (in the
main file or an include_dir file) rather than take publishes it could not
deliver; with it false an HTTP publish reaches an MQTT subscriber within a
second; the plugin's thread blocks the signals the broker handles. (The
suites of both forms also run against the plugin;
test_resilience.Stopping signals the broker with a few streams open.)"""

import json
import os
import signal
import socket
import time
import unittest

from harness import (DAEMON_ONLY_OPTIONS, SANITIZER_REPORTS, Broker, BridgeTestCase,
                     MqttSubscriber, PluginBridge, SSEClient, assert_quiet, compact, make_jwt,
                     only_forms, raise_nofile_limit, scaled, wait_until)
from test_config import BAD_OPTIONS

SECRET = "plugin-test-secret-0123456789abcdef"
DROPPED = "mqtt_sse_bridge_events_dropped_total"


def token(sub):
    return make_jwt(SECRET, {"sub": sub, "exp": int(time.time()) + 3600})


@only_forms("plugin")
class Loading(BridgeTestCase):
    """Each bad plugin_opt value stops the broker's start: it exits non-zero
    within moments, logs one "mosquitto_sse: <option>: ..." line, and opens
    neither its MQTT listener nor the HTTP server (nothing half-starts)."""

    def assert_refused(self, name, extra_conf=(), port=None, **opts):
        b = self.new_bridge(**opts)
        b.extra_conf = list(extra_conf)
        if port is not None:
            b.port = port
        started = time.monotonic()
        rc, out = b.start_expect_failure(timeout=5)
        took = time.monotonic() - started
        self.assertNotEqual(rc, 0, "mosquitto started with %r %r:\n%s" % (opts, extra_conf, out))
        self.assertGreater(rc, 0, "mosquitto crashed (signal %d):\n%s" % (-rc, out))
        self.assertLess(took, scaled(3), out)
        lines = [l for l in out.splitlines() if "mosquitto_sse: " in l]
        self.assertEqual(len(lines), 1, "one line from the plugin saying why:\n%s" % out)
        self.assertRegex(lines[0], r"mosquitto_sse: %s\b.*: \S" % name, out)
        self.assertIn("Error: Plugin returned", out)
        self.assertNotIn("Opening ipv4 listen socket", out, "it half-started:\n%s" % out)
        self.assertNotIn("Listening on", out, "it half-started:\n%s" % out)
        for pat in SANITIZER_REPORTS:
            self.assertNotIn(pat, out)
        return lines[0]

    def test_bad_values_of_the_shared_options(self):
        for name, opts in BAD_OPTIONS:
            if name in DAEMON_ONLY_OPTIONS:
                continue
            value = list(opts.values())[0]
            with self.subTest("%s=%r" % (name, value)):
                if value == "":
                    # mosquitto's own parser refuses an empty plugin_opt
                    b = self.new_bridge(**opts)
                    rc, out = b.start_expect_failure(timeout=5)
                    self.assertGreater(rc, 0, out)
                    self.assertIn("Empty %s value" % name, out)
                    continue
                self.assert_refused(name, **opts)

    def test_options_of_the_daemon_only(self):
        for name, value in (("mqtt_host", "127.0.0.1"), ("mqtt_port", "1883"),
                            ("mqtt_qos", "1"), ("mqtt_client_id", "x"),
                            ("subscribe_mode", "wildcard")):
            with self.subTest(name):
                line = self.assert_refused(
                    name, extra_conf=["plugin_opt_%s %s" % (name, value)])
                self.assertIn("daemon only", line)

    def test_jwt_without_a_key(self):
        line = self.assert_refused("auth", auth="jwt")
        self.assertIn("jwt_secret", line)

    def test_jwt_secret_file_missing(self):
        self.assert_refused("jwt_secret_file", jwt_secret_file=self.workdir + "/no-such-file")

    def test_short_secret_file(self):
        path = self.workdir + "/short.secret"
        with open(path, "w") as f:
            f.write("s3cret\n")
        line = self.assert_refused("jwt_secret_file", jwt_secret_file=path)
        self.assertIn("at least 32 bytes", line)

    def test_any_origin_with_jwt(self):
        self.assert_refused("cors_origins", auth="jwt", jwt_secret=SECRET, cors_origins="*")

    def test_http_port_in_use(self):
        busy = socket.socket()
        self.addCleanup(busy.close)
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        self.assert_refused("http_port", port=busy.getsockname()[1])

    def test_good_options_start(self):
        # the same options, valid, do start: the refusals above are the values'
        b = self.start_bridge(heartbeat_interval=5, sse_path="/events", topic_prefix="app/sync",
                              retry_ms=1500, max_connections=10, replay_buffer=0,
                              log_level="debug", jwt_secret=SECRET, cors_origins="https://a.test")
        self.assertEqual(b.healthz().status, 200)
        c = self.sse("d1", None, path="/events", headers={"Authorization": "Bearer " + token("A")})
        self.assertRegex(bytes(c.body), rb"\Aretry: 1500\nid: \d+-0\n\n\Z")
        self.publish("A", "timer", payload={"m": 1}, prefix="app/sync")
        self.assert_markers(c, [1])


@only_forms("plugin")
class Restart(BridgeTestCase):
    """A broker restart: the streams end cleanly with the broker, SSE is back
    with it on the same port, and events flow again. The replay buffer lived
    in the old process: a client that comes back with its last id gets a
    resync."""

    def test_broker_restart_brings_sse_back(self):
        b = self.start_bridge(heartbeat_interval=1)
        a1, a2, b1 = self.sse("a1", "A"), self.sse("a2", "A"), self.sse("b1", "B")
        self.publish("A", "timer", payload={"m": "before"}, sourceDeviceId="a1")
        self.assert_markers(a2, ["before"])
        last = a2.snapshot()[-1].id

        self.assertEqual(b.stop(), 0)
        for c in (a1, a2, b1):
            c.wait_closed(timeout=5)
            self.assertTrue(c.ended, "%s: the chunked stream did not end" % c.name)
            self.assertFalse(c.reset, c.name)
        with self.assertRaises(OSError):
            b.healthz()

        self.broker.start()  # the same config: the plugin, the same ports
        wait_until(lambda: self._health(b) == 200, 10, what="/healthz 200 after the restart")
        a1b, b1b = self.sse("a1", "A"), self.sse("b1", "B")
        a2b = self.sse("a2", "A", headers={"Last-Event-ID": last})
        self.publish("A", "timer", payload={"m": "after"}, sourceDeviceId="a1")
        self.publish("B", "timer", payload={"m": "after-B"})
        self.publish("A", "timer", payload={"m": "fence"})
        self.assert_markers(a1b, ["fence"])
        self.assert_markers(b1b, ["after-B"])
        evs = a2b.wait_events(3)
        self.assertEqual((evs[0].json["channel"], evs[0].json["type"]), ("system", "resync"))
        self.assertEqual([e.marker for e in evs[1:]], ["after", "fence"])
        a1b.wait_comments(1, timeout=3)  # the options hold after the restart
        m = b.metrics()
        self.assertEqual(m["mqtt_sse_bridge_connections"], 3)
        self.assertEqual(m["mqtt_sse_bridge_mqtt_connected"], 1)
        assert_quiet([a1b, a2b, b1b])

    @staticmethod
    def _health(b):
        try:
            return b.healthz().status
        except OSError:
            return None


@only_forms("plugin")
class BrokerTraffic(BridgeTestCase):
    """The plugin reads what the broker routes and leaves it as it is."""

    USERS = 10
    DEVICES = 50   # per user: 500 streams
    PER_USER = 20  # events: 200 (one mosquitto_pub -l per user)

    def setUp(self):
        want = self.USERS * self.DEVICES + 512
        have = raise_nofile_limit(want)
        if have < want:
            self.fail("this test needs %d file descriptors; the hard limit allows %d" %
                      (want, have))
        super().setUp()

    def user_events(self, u):
        """The events for user u: (payload bytes, set of devices that get it)."""
        devices = ["d%02d" % d for d in range(self.DEVICES)]
        out = []
        for i in range(self.PER_USER):
            ev = {"type": "updated", "payload": {"m": "u%02d-%d" % (u, i), "text": "\u00e9 \"q\""}}
            kind = i % 4
            if kind == 1:
                ev["sourceDeviceId"] = devices[i % self.DEVICES]
            elif kind == 2:
                ev["targetDeviceId"] = devices[(u + i) % self.DEVICES]
            elif kind == 3:
                ev["sourceDeviceId"] = "backend"
                ev["id"] = "u%02d-id-%d" % (u, i)
            # targeting wins over exclusion; a source that is not connected
            # excludes nobody
            if "targetDeviceId" in ev:
                gets = {ev["targetDeviceId"]}
            else:
                gets = set(devices) - {ev.get("sourceDeviceId")}
            out.append((compact(ev).encode("utf-8"), gets))
        return out

    def test_500_streams_and_the_brokers_subscribers_get_every_message(self):
        n_streams = self.USERS * self.DEVICES
        b = self.start_bridge()
        clients = {}
        for u in range(self.USERS):
            for d in range(self.DEVICES):
                user, device = "u%02d" % u, "d%02d" % d
                clients[(user, device)] = SSEClient(
                    self.reactor, b.port, "/api/sse", {"deviceId": device, "userId": user},
                    name="%s/%s" % (user, device))
        for c in clients.values():
            c.wait_open(timeout=30)
        self.wait_connections(n_streams, timeout=10)

        # what goes out: per user one mosquitto_pub -l (a second MQTT client),
        # and one payload that is not JSON among them
        batches, expected = [], {k: [] for k in clients}
        for u in range(self.USERS):
            user = "u%02d" % u
            lines = []
            for payload, gets in self.user_events(u):
                lines.append(payload)
                for d in gets:
                    expected[(user, d)].append(json.loads(payload)["payload"]["m"])
            if u == 3:
                lines.insert(4, b"not json, but the broker's to deliver")
            batches.append(("sync/%s/timer" % user, lines))
        n_messages = sum(len(lines) for _, lines in batches)
        sub = MqttSubscriber(self.broker, ["sync/#"], n_messages)
        self.addCleanup(sub.close)
        before = b.metrics()

        t0 = time.monotonic()
        for topic, lines in batches:
            self.broker.publish_lines(topic, lines)
        for key, c in clients.items():
            self.assert_markers(c, expected[key], timeout=30)
        deliver_s = time.monotonic() - t0

        # every message reached the plain subscriber, as it was published
        got = sub.messages(timeout=30)
        self.assertEqual(len(got), n_messages, sub.stderr)
        want = [(topic, p) for topic, lines in batches for p in lines]
        self.assertEqual(got, want)

        after = b.metrics()
        delta = lambda k: after.get(k, 0) - before.get(k, 0)
        self.assertEqual(delta("mqtt_sse_bridge_events_received_total"), n_messages)
        self.assertEqual(delta('%s{reason="not_json"}' % DROPPED), 1)
        self.assertEqual(delta("mqtt_sse_bridge_events_delivered_total"),
                         sum(len(v) for v in expected.values()))
        assert_quiet(list(clients.values()), 0.5)

        # the broker stops cleanly with the 500 streams open
        started = time.monotonic()
        b.send_signal(signal.SIGTERM)
        for c in clients.values():
            c.wait_closed(timeout=10)
        rc = b.wait_exit(timeout=10)
        took = time.monotonic() - started
        self.assertEqual(rc, 0)
        self.assertLess(took, scaled(5), "the broker took %.1f s to stop" % took)
        for c in clients.values():
            self.assertTrue(c.ended, "%s: the chunked stream did not end; tail %r" %
                            (c.name, bytes(c.wire[-40:])))
            self.assertFalse(c.reset, "%s was reset" % c.name)
            self.assertEqual(c.chunk_errors, [])
        print("\n  %d streams, %d messages: delivered in %.2fs, broker stopped in %.2fs" %
              (n_streams, n_messages, deliver_s, took))

    def test_topics_outside_the_prefix_pass_by(self):
        b = self.start_bridge()
        a1 = self.sse("a1", "a")
        outside = [("other/x", b'{"type":"t","payload":{"m":"other"}}'),
                   ("sync/a/b/c", b'{"type":"t","payload":{"m":"four levels"}}'),
                   ("sync/a", b'{"type":"t","payload":{"m":"two levels"}}'),
                   ("other/a/timer", b'{"type":"t","payload":{"m":"other prefix"}}'),
                   ("sync/a/timer", b'{"type":"t","payload":{"m":"fence"}}')]
        sub = MqttSubscriber(self.broker, ["sync/#", "other/#"], len(outside))
        self.addCleanup(sub.close)
        before = b.metrics()
        for topic, payload in outside:
            self.broker.publish(topic, payload)
        self.assert_markers(a1, ["fence"])
        self.assertEqual(sub.messages(), outside)
        after = b.metrics()
        self.assertEqual(after["mqtt_sse_bridge_events_received_total"] -
                         before["mqtt_sse_bridge_events_received_total"], 1)
        self.assertEqual({k: v for k, v in after.items() if k.startswith(DROPPED)},
                         {k: v for k, v in before.items() if k.startswith(DROPPED)})
        self.assertNotIn("Dropped message on", b.logs())
        assert_quiet([a1])

    def test_a_publish_the_acl_denies_is_not_relayed(self):
        # docs/operations.md, the plugin and the broker: MOSQ_EVT_MESSAGE
        # comes after the ACL check
        acl = os.path.join(self.workdir, "acl")
        with open(acl, "w") as f:
            f.write("topic read sync/#\ntopic write sync/A/#\n")
        self.broker.extra_conf.append("acl_file " + acl)
        b = self.start_bridge()
        a1, b1 = self.sse("a1", "A"), self.sse("b1", "B")
        sub = MqttSubscriber(self.broker, ["sync/#"], 1)
        self.addCleanup(sub.close)
        self.publish("B", "timer", payload={"m": "denied"})
        self.publish("A", "timer", payload={"m": "allowed"})
        self.assert_markers(a1, ["allowed"])
        self.assertEqual([t for t, _ in sub.messages()], ["sync/A/timer"])
        assert_quiet([a1, b1])
        self.assertEqual(b1.snapshot(), [])
        self.assertEqual(b.metrics()["mqtt_sse_bridge_events_received_total"], 1)

    def test_http_publish_reaches_sse_and_mqtt_subscribers(self):
        b = self.start_bridge(jwt_secret=SECRET)
        auth = {"Authorization": "Bearer " + token("A")}
        a1 = self.sse("a1", None, headers=auth, name="A/a1")
        a2 = self.sse("a2", None, headers=auth, name="A/a2")
        b1 = self.sse("b1", None, headers={"Authorization": "Bearer " + token("B")}, name="B/b1")
        sub = MqttSubscriber(self.broker, ["sync/#"], 2)
        self.addCleanup(sub.close)
        before = b.metrics()
        body = {"channel": "timer", "type": "started", "payload": {"m": "http", "t": "Write"},
                "deviceId": "a1"}
        r = b.request("POST", "/api/publish", headers=dict(auth, **{
            "Content-Type": "application/json"}), body=json.dumps(body).encode())
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json().get("topic"), "sync/A/timer")
        self.publish("A", "timer", payload={"m": "fence"})
        self.assert_markers(a2, ["http", "fence"])
        self.assert_markers(a1, ["fence"])  # the source device is left out
        # the broker's subscribers get it on the broker's next tick, so maybe
        # after the fence
        got = [(t, json.loads(p)) for t, p in sub.messages()]
        self.assertEqual(sorted(p["payload"]["m"] for _, p in got), ["fence", "http"])
        self.assertEqual([t for t, _ in got], ["sync/A/timer"] * 2)
        sent = [p for _, p in got if p["payload"]["m"] == "http"][0]
        self.assertEqual(sent, {"channel": "timer", "type": "started",
                                "payload": {"m": "http", "t": "Write"}, "sourceDeviceId": "a1"})
        ev = a2.snapshot()[0].json
        self.assertEqual({k: v for k, v in ev.items() if k not in ("id", "timestamp")}, sent)
        # relayed once: the plugin's own publish does not come back as a message
        assert_quiet([a1, a2, b1])
        self.assertEqual(b.metrics()["mqtt_sse_bridge_events_received_total"] -
                         before["mqtt_sse_bridge_events_received_total"], 2)
        self.assertEqual(b1.snapshot(), [])



class FirstLinesBroker(Broker):
    """A Broker whose config starts with first lines (per_listener_settings
    must come before any security setting), or, with include_dir, holds
    only "include_dir <dir>" and writes everything into <dir>/50-test.conf."""

    def __init__(self, workdir, first, include_dir=False):
        os.makedirs(workdir, exist_ok=True)
        super().__init__(workdir)
        self.first = list(first)
        self.include_dir = include_dir

    def write_conf(self):
        super().write_conf()
        with open(self.conf_path) as f:
            body = "\n".join(self.first) + "\n" + f.read()
        if self.include_dir:
            d = os.path.join(self.workdir, "conf.d")
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "50-test.conf"), "w") as f:
                f.write(body)
            body = "include_dir %s\n" % d
        with open(self.conf_path, "w") as f:
            f.write(body)


SIGNALS = {"SIGHUP": 1, "SIGINT": 2, "SIGUSR1": 10, "SIGUSR2": 12, "SIGTERM": 15}


def blocked_signals(pid, tid):
    """The names of SIGNALS that thread tid of pid blocks (SigBlk)."""
    with open("/proc/%d/task/%d/status" % (pid, tid)) as f:
        mask = int([l for l in f if l.startswith("SigBlk:")][0].split()[1], 16)
    return sorted(name for name, n in SIGNALS.items() if mask & (1 << (n - 1)))


@only_forms("plugin")
class MosquittoEdges(BridgeTestCase):
    """Mosquitto 2.0.11's plugin edges (issue 16)."""

    def plugin_in(self, broker):
        b = PluginBridge(broker, broker.workdir, jwt_secret=SECRET)
        self.bridges.append(b)
        self.addCleanup(broker.stop)
        self.addCleanup(lambda: self._saved_logs.append(("that mosquitto's log", broker.logs())))
        return b

    def test_per_listener_settings_true_is_refused_at_start(self):
        for where in ("main file", "include_dir"):
            with self.subTest(where):
                broker = FirstLinesBroker(os.path.join(self.workdir, where.replace(" ", "_")),
                                          ["per_listener_settings true"],
                                          include_dir=where == "include_dir")
                b = self.plugin_in(broker)
                started = time.monotonic()
                rc, out = b.start_expect_failure(timeout=5)
                self.assertGreater(rc, 0, out)
                self.assertLess(time.monotonic() - started, scaled(3), out)
                lines = [l for l in out.splitlines() if "mosquitto_sse: " in l]
                self.assertEqual(len(lines), 1, out)
                self.assertIn("mosquitto_sse: per_listener_settings true: ", lines[0])
                self.assertIn("set it false", lines[0])
                self.assertNotIn("Opening ipv4 listen socket", out, "it half-started")

    def test_per_listener_settings_false_http_publish_reaches_mqtt_within_a_second(self):
        broker = FirstLinesBroker(os.path.join(self.workdir, "pls-false"),
                                  ["per_listener_settings false"])
        b = self.plugin_in(broker)
        b.start()
        sub = MqttSubscriber(broker, ["sync/#"], 1)
        self.addCleanup(sub.close)
        auth = {"Authorization": "Bearer " + token("A"), "Content-Type": "application/json"}
        sent = time.monotonic()
        r = b.request("POST", "/api/publish", headers=auth, body=json.dumps(
            {"channel": "timer", "type": "started", "payload": {"m": "http"},
             "deviceId": "a1"}).encode())
        self.assertEqual(r.status, 202, r)
        got = sub.messages(timeout=5)
        took = time.monotonic() - sent
        self.assertEqual([t for t, _ in got], ["sync/A/timer"])
        self.assertLess(took, scaled(1), "the HTTP publish took %.2f s to reach MQTT" % took)

    def test_the_plugins_threads_block_the_brokers_signals(self):
        b = self.start_bridge()
        pid = b.pid
        tids = sorted(int(t) for t in os.listdir("/proc/%d/task" % pid))
        others = [t for t in tids if t != pid]
        self.assertTrue(others, "the plugin runs no thread of its own?")
        # (mosquitto's own thread blocks them too, except while it waits in
        # epoll_wait: so a thread that does not block them takes them all)
        for tid in others:
            self.assertEqual(blocked_signals(pid, tid), sorted(SIGNALS),
                             "thread %d of mosquitto (the plugin's) takes signals" % tid)
        # and the broker still takes them: SIGHUP reloads, SIGTERM stops it
        offset = self.broker.log_size()
        b.send_signal(signal.SIGHUP)
        wait_until(lambda: "Reloading config" in self.broker.logs_since(offset), 5,
                   what="mosquitto to reload on SIGHUP")
        self.assertEqual(b.healthz().status, 200)
        self.assertEqual(b.stop(), 0)


if __name__ == "__main__":
    unittest.main()
