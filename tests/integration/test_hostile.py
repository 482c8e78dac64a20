"""Hostile input over HTTP and MQTT (issue 4): huge headers and bodies, slow
senders, connection churn, invalid UTF-8, deep nesting, 1 MB payloads and
control characters. After each, the bridge still serves a normal client, and
its memory comes back to where it was."""

import os
import socket
import threading
import time
import unittest

from harness import (BridgeTestCase, http_request, make_jwt, raise_nofile_limit, rss_kib,
                     scaled, send_while_reading, wait_until)

SECRET = "hostile-test-secret-0123456789abcdef"


def raw_exchange(port, data, timeout=5):
    """Sends data on a fresh connection and returns what comes back until the
    peer closes or the timeout."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            s.sendall(data)
        except OSError:
            pass  # the bridge may refuse before reading everything
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out and b"Content-Length: " in out:
                head, _, body = out.partition(b"\r\n\r\n")
                clen = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                if len(body) >= clen:
                    break
        return out
    finally:
        s.close()


def status_of(reply):
    if not reply.startswith(b"HTTP/1."):
        return None
    return int(reply.split(b" ", 2)[1])


class Hostile(BridgeTestCase):

    def setUp(self):
        super().setUp()
        self.start_bridge(jwt_secret=SECRET, max_event_bytes=65536)
        self.token = make_jwt(SECRET, {"sub": "A", "exp": int(time.time()) + 3600})
        self.rss_before = None

    def normal_client_is_served(self, marker):
        """A normal client connects, gets an event, and leaves."""
        c = self.sse("n1", None, headers={"Authorization": "Bearer " + self.token})
        self.publish("A", "check", payload={"m": marker})
        self.assert_markers(c, [marker])
        c.close()

    def settle_memory(self):
        if self.rss_before is None:
            # warm up the paths once so that first-use allocations are not
            # mistaken for growth
            self.normal_client_is_served("warm-up")
            self.rss_before = rss_kib(self.bridge.pid)

    def assert_memory_back(self, slack_kib=8 * 1024):
        if os.environ.get("SB_SANITIZED"):
            # ASan keeps freed memory in quarantine; the plain build checks it
            slack_kib = 512 * 1024
        def back():
            return rss_kib(self.bridge.pid) <= self.rss_before + slack_kib
        wait_until(back, 10, interval=0.2,
                   what="RSS back within %d KiB of %d KiB (now %d KiB)" %
                   (slack_kib, self.rss_before, rss_kib(self.bridge.pid)))

    def test_huge_headers(self):
        self.settle_memory()
        for size in (40000, 200000, 1000000):
            req = (b"GET /api/sse?deviceId=d1 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size +
                   b"\r\n\r\n")
            self.assertEqual(status_of(raw_exchange(self.bridge.port, req)), 431, size)
        # many headers, each small
        req = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(
            b"X-H%d: v\r\n" % i for i in range(5000)) + b"\r\n"
        self.assertEqual(status_of(raw_exchange(self.bridge.port, req)), 431)
        # a huge token in the Authorization header
        r = http_request(self.bridge.port, "GET", "/api/sse?deviceId=d1",
                         headers={"Authorization": "Bearer " + "x" * 20000})
        self.assertIn(r.status, (401, 431))
        self.normal_client_is_served("after-headers")
        self.assert_memory_back()

    def test_huge_bodies(self):
        self.settle_memory()
        auth = "Authorization: Bearer %s\r\n" % self.token
        body = b"{" + b" " * (2 * 1024 * 1024) + b"}"
        # announced: refused before the body is read
        req = (b"POST /api/publish HTTP/1.1\r\nHost: x\r\n" + auth.encode() +
               b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        self.assertEqual(status_of(raw_exchange(self.bridge.port, req)), 413)
        # chunked, no length given: refused once it grows past the limit
        chunk = b" " * 60000
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(20)) + b"0\r\n\r\n"
        req = (b"POST /api/publish HTTP/1.1\r\nHost: x\r\n" + auth.encode() +
               b"Transfer-Encoding: chunked\r\n\r\n" + chunks)
        self.assertEqual(status_of(raw_exchange(self.bridge.port, req)), 413)
        # a body sent to the SSE endpoint is not taken
        req = (b"POST /api/sse?deviceId=d1 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" %
               len(body) + body)
        self.assertEqual(status_of(raw_exchange(self.bridge.port, req)), 405)
        self.normal_client_is_served("after-bodies")
        self.assert_memory_back()

    def test_bodies_too_large_get_their_answer(self):
        """2 MB and 20 MB bodies, with and without Content-Length, sent by a
        client that reads while it sends (as a browser does): it reads the
        413, not a reset. The bridge throws the bytes away as they come (its
        memory stays where it was) and serves another client meanwhile."""
        self.settle_memory()
        peak = [self.rss_before]
        sampling = threading.Event()

        def sample():
            while not sampling.is_set():
                peak[0] = max(peak[0], rss_kib(self.bridge.pid))
                time.sleep(0.02)
        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            for size in (2 * 1000 * 1000, 20 * 1000 * 1000):
                for chunked in (False, True):
                    with self.subTest(size=size, chunked=chunked):
                        self.check_body_too_large(size, chunked)
        finally:
            sampling.set()
            sampler.join()
        if not os.environ.get("SB_SANITIZED"):
            self.assertLess(peak[0], self.rss_before + 8 * 1024,
                            "the bridge's memory grew with the bodies")
        self.assert_memory_back()

    def check_body_too_large(self, size, chunked):
        head = ("POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                "Content-Type: application/json\r\n" % self.token).encode()
        head += b"Transfer-Encoding: chunked\r\n\r\n" if chunked else (
            b"Content-Length: %d\r\n\r\n" % size)
        piece = 256 * 1024

        def pieces():
            # paced over about 0.6 s, so that another client comes meanwhile
            pause = 0.6 / (size // piece + 1)
            sent = 0
            while sent < size:
                n = min(piece, size - sent)
                block = b" " * n
                yield b"%x\r\n%s\r\n" % (n, block) if chunked else block
                sent += n
                time.sleep(pause)
            if chunked:
                yield b"0\r\n\r\n"
        box = {}

        def big():
            s = socket.create_connection(("127.0.0.1", self.bridge.port), timeout=10)
            try:
                box["result"] = send_while_reading(s, head, pieces())
            finally:
                s.close()
        t = threading.Thread(target=big)
        t.start()
        try:
            self.normal_client_is_served("beside-%d-%s" % (size, chunked))
            self.assertEqual(http_request(self.bridge.port, "GET", "/healthz").status, 200)
        finally:
            t.join(scaled(30))
        reply, send_error, read_error = box["result"]
        self.assertIsNone(read_error, "the client read %r, not the answer" % read_error)
        self.assertIsNone(send_error, "the bridge did not take the whole body: %r" % send_error)
        self.assertEqual(status_of(reply), 413, reply[:300])
        self.assertIn(b'"error":"too_large"', reply)

    def test_slow_senders_do_not_stall_others(self):
        raise_nofile_limit(4096)
        self.settle_memory()
        slow = []
        for i in range(200):
            s = socket.create_connection(("127.0.0.1", self.bridge.port))
            s.sendall(b"GET /api/sse?deviceId=slow%d HTTP/1.1\r\nHost: x\r\nX-Slow: " % i)
            slow.append(s)
        try:
            t0 = time.monotonic()
            self.assertEqual(http_request(self.bridge.port, "GET", "/healthz").status, 200)
            self.normal_client_is_served("beside-slow-senders")
            self.assertLess(time.monotonic() - t0, 3)
            for s in slow:  # a byte more each: still not a request
                s.sendall(b"a")
            self.normal_client_is_served("beside-slow-senders-2")
        finally:
            for s in slow:
                s.close()
        self.assert_memory_back()

    def test_connection_churn(self):
        raise_nofile_limit(8192)
        self.settle_memory()
        query = "/api/sse?deviceId=d%d&token=" + self.token
        for round_ in range(3):
            socks = []
            for i in range(1000):
                s = socket.create_connection(("127.0.0.1", self.bridge.port))
                s.sendall(("GET " + query % i + " HTTP/1.1\r\nHost: x\r\n\r\n").encode())
                socks.append(s)
            # some are read, some dropped at once, some reset
            for i, s in enumerate(socks):
                if i % 3 == 0:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                s.close()
            wait_until(lambda: self.bridge.metrics()["mqtt_sse_bridge_connections"] == 0, 20,
                       interval=0.2, what="every churned stream unregistered")
        m = self.bridge.metrics()
        self.assertEqual(m["mqtt_sse_bridge_users"], 0)
        self.normal_client_is_served("after-churn")
        self.assert_memory_back()

    def test_hostile_mqtt_payloads(self):
        self.settle_memory()
        c = self.sse("n2", None, headers={"Authorization": "Bearer " + self.token})
        cases = [
            (b'{"type":"x","payload":"\xff\xfe"}', "not_json"),              # invalid UTF-8
            (b'{"type":"\xc3\x28","payload":1}', "not_json"),
            (b"[" * 30000 + b"]" * 30000, "not_json"),                        # deep nesting
            (b'{"type":"x","payload":' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}",
             "not_json"),
            (b'{"type":"x","payload":"' + b"a" * (1024 * 1024) + b'"}', "too_large"),
            (b'{"type":"x","payload":1,"id":"a\\u0000b"}', "bad_id"),
            (b'{"type":"x","payload":1,"sourceDeviceId":"a\\rb"}', "bad_id"),
            (b'{"type":"x","payload":1,"targetDeviceId":"\\u001b[31m"}', "bad_id"),
        ]
        before = self.bridge.metrics()
        for raw, _ in cases:
            self.publish("A", "timer", raw=raw)
        self.publish("A", "timer", payload={"m": "good"})
        self.assert_markers(c, ["good"])
        after = self.bridge.metrics()
        for reason in set(r for _, r in cases):
            key = 'mqtt_sse_bridge_events_dropped_total{reason="%s"}' % reason
            self.assertEqual(after[key] - before.get(key, 0),
                             sum(1 for _, r in cases if r == reason), reason)
        # control characters in channel text and type go out escaped, on one line
        self.publish("A", "timer", type="x\ny", payload={"m": "ctl", "t": "a\r\nb\u2028c"})
        ev = c.wait_events(2)[1]
        self.assertEqual(ev.json["type"], "x\ny")
        self.assertNotIn(b"\r", ev.raw[:-2])
        self.assertEqual(ev.raw.count(b"\n"), 3)  # id line, one data line, blank line
        self.assert_memory_back()

    def test_hostile_request_values(self):
        self.settle_memory()
        t = self.token
        cases = [
            ("/api/sse?deviceId=%ff%fe&token=" + t, {}, 400),          # invalid UTF-8
            ("/api/sse?deviceId=a%0d%0aSet-Cookie:x&token=" + t, {}, 400),
            ("/api/sse?deviceId=a%00b&token=" + t, {}, 400),
            ("/api/sse?deviceId=d1&token=" + t, {"Last-Event-ID": "a\x01b"}, 400),
            ("/api/sse?deviceId=d1&lastEventId=a%0ab&token=" + t, {}, 400),
            ("/api/sse?deviceId=d1&token=%00" + t, {}, 401),
            ("/api/sse?deviceId=d1", {"Authorization": "Bearer \x01\x02"}, 401),
            ("/api/sse?deviceId=d1", {"Cookie": "sse_token=" + "%" * 5000}, 401),
            ("/api/sse?deviceId=" + "d" * 129 + "&token=" + t, {}, 400),
            ("/api/sse?" + "&".join("k%d=v" % i for i in range(2000)) + "&deviceId=d1&token=" + t,
             {}, (200, 431, 414, None)),  # None: closed, the request did not fit
        ]
        for path, headers, want in cases:
            req = "GET %s HTTP/1.1\r\nHost: x\r\n" % path
            for k, v in headers.items():
                req += "%s: %s\r\n" % (k, v)
            req = req.encode("latin-1") + b"\r\n"
            t0 = time.monotonic()
            got = status_of(raw_exchange(self.bridge.port, req, timeout=5))
            self.assertLess(time.monotonic() - t0, 2, "no answer and no close: " + path[:80])
            if isinstance(want, tuple):
                self.assertIn(got, want, path[:80])
            else:
                self.assertEqual(got, want, path[:80])
        wait_until(lambda: self.bridge.metrics()["mqtt_sse_bridge_connections"] == 0, 10,
                   what="no stream left open")
        self.normal_client_is_served("after-values")
        self.assert_memory_back()


if __name__ == "__main__":
    unittest.main()
