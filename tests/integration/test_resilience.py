"""The broker goes away and comes back; the bridge is stopped with open
streams (issue 2: reconnect with backoff, /healthz says so meanwhile,
delivery resumes by itself; SIGINT/SIGTERM end every stream cleanly and
exit 0). In the plugin form the signals go to the broker, which is the
bridge (issue 3: broker shutdown ends every stream cleanly); what a broker
restart means there is in test_plugin."""

import signal
import time
import unittest

from harness import (BridgeTestCase, assert_quiet, compact, only_forms, open_stuck_stream, pump,
                     scaled, wait_until)


@only_forms("daemon")  # only the daemon reconnects to a broker (plugin: test_plugin.Restart)
class BrokerOutage(BridgeTestCase):

    def health(self):
        return self.bridge.healthz().status

    def test_broker_restart_mid_stream(self):
        self.start_bridge(heartbeat_interval=1)
        a1, a2, b1 = self.sse("a1", "A"), self.sse("a2", "A"), self.sse("b1", "B")
        self.publish("A", "timer", payload={"m": "before"})
        self.assert_markers(a1, ["before"])
        self.assert_markers(a2, ["before"])

        self.broker.stop()
        wait_until(lambda: self.health() == 503, 5, what="/healthz 503 without the broker")
        r = self.bridge.healthz()
        self.assertTrue(r.body.strip())
        self.assertEqual(self.bridge.metrics()["mqtt_sse_bridge_mqtt_connected"], 0)
        # the streams stay open meanwhile (heartbeats keep flowing)
        counts = [len(c.wait_comments(1, timeout=4)) for c in (a1, a2, b1)]
        for c, n in zip((a1, a2, b1), counts):
            c.wait_comments(n + 1, timeout=4)
            self.assertFalse(c.eof, "%s was closed during the outage" % c.name)

        down_at = time.monotonic()
        self.broker.start()  # the same port
        wait_until(lambda: self.health() == 200, 35, interval=0.1,
                   what="/healthz 200 after the broker came back")
        reconnect_s = time.monotonic() - down_at
        self.assertEqual(self.bridge.metrics()["mqtt_sse_bridge_mqtt_connected"], 1)

        self.publish("A", "timer", payload={"m": "after"}, sourceDeviceId="a1")
        self.publish("B", "timer", payload={"m": "after-B"})
        self.publish("A", "timer", payload={"m": "fence"})
        self.assert_markers(a1, ["before", "fence"])
        self.assert_markers(a2, ["before", "after", "fence"])
        self.assert_markers(b1, ["after-B"])
        for c in (a1, a2, b1):
            self.assertFalse(c.eof)
        assert_quiet([a1, a2, b1])
        self.assertLess(reconnect_s, scaled(35))

    def test_bridge_started_before_the_broker(self):
        self.broker.stop()
        b = self.new_bridge()
        b.start(wait_healthy=False)
        self.bridge = b
        self.assertEqual(self.health(), 503)
        c = self.sse("a1", "A")  # streams are served while MQTT is down
        self.broker.start()
        wait_until(lambda: self.health() == 200, 35, interval=0.1,
                   what="/healthz 200 once the broker is up")
        self.publish("A", "timer", payload={"m": 1})
        self.assert_markers(c, [1])

    def test_subscribes_the_wildcard_at_qos_1(self):
        self.start_bridge()
        self.assertRegex(self.broker.logs(), r"\n\S+ \tsync/\+/\+ \(QoS 1\)")

    def test_two_outages(self):
        self.start_bridge()
        c = self.sse("a1", "A")
        for i in range(2):
            self.broker.stop()
            wait_until(lambda: self.health() == 503, 5, what="/healthz 503")
            self.broker.start()
            wait_until(lambda: self.health() == 200, 35, interval=0.1, what="/healthz 200")
            self.publish("A", "timer", payload={"m": i})
        self.assert_markers(c, [0, 1])


class Stopping(BridgeTestCase):

    def stop_with_open_streams(self, sig):
        self.start_bridge()
        streams = [self.sse("a1", "A"), self.sse("a1", "A"), self.sse("a2", "A"),
                   self.sse("b1", "B")]
        self.publish("A", "timer", payload={"m": 1})
        for c in streams[:3]:
            self.assert_markers(c, [1])
        started = time.monotonic()
        self.bridge.send_signal(sig)
        for c in streams:
            c.wait_closed(timeout=5)
        rc = self.bridge.wait_exit(timeout=5)
        took = time.monotonic() - started
        self.assertEqual(rc, 0, "exit code on %s" % sig.name)
        self.assertLess(took, scaled(5))
        for c in streams:
            self.assertTrue(c.ended, "%s: the chunked stream did not end with its last chunk; "
                            "body tail %r" % (c.name, bytes(c.wire[-40:])))
            self.assertFalse(c.reset, "%s was reset" % c.name)
            self.assertEqual(c.chunk_errors, [])
            self.assertTrue(bytes(c.wire).endswith(b"0\r\n\r\n"), bytes(c.wire[-40:]))
        self.assertEqual(streams[3].markers(), [])

    def test_sigterm_ends_streams_cleanly_and_exits_0(self):
        self.stop_with_open_streams(signal.SIGTERM)

    def test_sigint_ends_streams_cleanly_and_exits_0(self):
        self.stop_with_open_streams(signal.SIGINT)

    def test_sigterm_with_a_client_that_does_not_read(self):
        # the clean stop waits a short grace for streams to flush, not for
        # the next heartbeat (25 s by default)
        self.start_bridge()
        fast = self.sse("a2", "A")
        stuck = open_stuck_stream(self.bridge.port, "deviceId=a1&userId=A")
        self.addCleanup(stuck.close)
        self.wait_connections(2)
        pump(self.broker, "A", fast)
        started = time.monotonic()
        self.bridge.send_signal(signal.SIGTERM)
        fast.wait_closed(timeout=5)
        rc = self.bridge.wait_exit(timeout=40)
        took = time.monotonic() - started
        self.assertLess(took, scaled(5), "SIGTERM took %.1f s with a stuck client" % took)
        self.assertEqual(rc, 0)
        self.assertTrue(fast.ended)

    def test_sigterm_with_a_paused_reader_flushes_everything(self):
        # a reader that pauses with megabytes queued beyond its socket gets
        # every event, in order, and the last chunk, if it reads within the
        # grace time
        import json
        self.start_bridge(max_queue_bytes=16 << 20)
        paused = open_stuck_stream(self.bridge.port, "deviceId=a1&userId=A")
        self.addCleanup(paused.close)
        self.wait_connections(1)
        n, pad = 1500, "x" * 4000
        self.broker.publish_lines("sync/A/timer", [
            compact({"type": "t", "payload": {"m": i, "pad": pad}}) for i in range(n)])
        wait_until(lambda: self.bridge.metrics()["mqtt_sse_bridge_events_delivered_total"] == n,
                   20, what="the events queued to the paused reader")
        self.bridge.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        paused.settimeout(scaled(5))
        wire = bytearray()
        while True:
            got = paused.recv(1 << 16)
            if not got:
                break
            wire += got
        self.assertEqual(self.bridge.wait_exit(timeout=10), 0)
        head, _, body = bytes(wire).partition(b"\r\n\r\n")
        self.assertIn(b"Transfer-Encoding: chunked", head)
        data, i, ended = bytearray(), 0, False
        while i < len(body):
            j = body.index(b"\r\n", i)
            size = int(body[i:j], 16)
            i = j + 2
            if size == 0:
                ended = body[i:] == b"\r\n"
                break
            data += body[i:i + size]
            self.assertEqual(body[i + size:i + size + 2], b"\r\n")
            i += size + 2
        self.assertTrue(ended, "no last chunk; tail %r" % body[-40:])
        markers = [json.loads(line[6:])["payload"]["m"]
                   for line in bytes(data).split(b"\n") if line.startswith(b"data: ")]
        self.assertEqual(markers, list(range(n)))

    def test_sigterm_while_a_client_sends_a_request_slowly(self):
        import socket
        self.start_bridge()
        c = self.sse("a1", "A")
        half = socket.create_connection(("127.0.0.1", self.bridge.port))
        self.addCleanup(half.close)
        half.sendall(b"GET /api/sse?deviceId=a2&userId=A HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.2)
        started = time.monotonic()
        self.bridge.send_signal(signal.SIGTERM)
        c.wait_closed(timeout=5)
        self.assertEqual(self.bridge.wait_exit(timeout=8), 0)
        self.assertLess(time.monotonic() - started, scaled(8))
        self.assertTrue(c.ended)


if __name__ == "__main__":
    unittest.main()
