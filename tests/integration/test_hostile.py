"""Hostile input over HTTP and MQTT (issue 4): huge headers and bodies, slow
senders, connection churn, invalid UTF-8, deep nesting, 1 MB payloads and
control characters. After each, the bridge still serves a normal client, and
its memory comes back to where it was. Issue 15: sockets that trickle their
request a byte at a time do not take the connection slots (a deadline for
the headers and the body, a limit of unfinished requests per client
address), and the edges of HTTP: %00 in the path, conflicting Content-Length
headers, HTTP/1.1 without Host."""

import os
import selectors
import socket
import threading
import time
import unittest

from harness import (BridgeTestCase, answer_complete, assert_quiet, http_request, make_jwt,
                     raise_nofile_limit, rss_kib, scaled, send_while_reading, wait_until)

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


def connect_from(source, port, timeout=5):
    """A TCP connection to 127.0.0.1:port from the loopback address source:
    the bridge tells clients apart by address, and every address of
    127.0.0.0/8 is this host's."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((source, 0))
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    return s


class Trickler:
    """Sockets that each send their request one byte at a time, a byte every
    `every` seconds, on one thread, and note when the bridge closes each
    (the peer's end or a reset)."""

    def __init__(self, every=1.0):
        self.every = every
        self.sel = selectors.DefaultSelector()
        self.socks = {}  # socket -> [what, connected_at, bytes left, closed_at]
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = None

    def add(self, sock, what, first, rest):
        """Sends first at once, then rest a byte at a time."""
        sock.setblocking(False)
        try:
            sock.send(first)
        except OSError:
            pass
        with self.lock:
            self.socks[sock] = [what, time.monotonic(), bytearray(rest), None]
            self.sel.register(sock, selectors.EVENT_READ)

    def start(self):
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _closed(self, sock):
        with self.lock:
            self.socks[sock][3] = time.monotonic()
            self.sel.unregister(sock)

    def _run(self):
        next_byte = time.monotonic() + self.every
        while not self.stopping.is_set():
            with self.lock:
                empty = not self.sel.get_map()
            if empty:
                time.sleep(0.05)
                continue
            for key, _ in self.sel.select(timeout=0.05):
                try:
                    data = key.fileobj.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    self._closed(key.fileobj)
            if time.monotonic() >= next_byte:
                next_byte += self.every
                with self.lock:
                    items = [(s, v) for s, v in self.socks.items() if v[3] is None]
                for sock, v in items:
                    if not v[2]:
                        continue
                    try:
                        sock.send(bytes(v[2][:1]))
                        del v[2][:1]
                    except BlockingIOError:
                        pass
                    except OSError:
                        self._closed(sock)

    def snapshot(self):
        """[(what, connected_at, closed_at or None)] of every socket."""
        with self.lock:
            return [(v[0], v[1], v[3]) for v in self.socks.values()]

    def open_count(self, what=None):
        return sum(1 for w, _, c in self.snapshot() if c is None and (what is None or w == what))

    def stop(self):
        self.stopping.set()
        if self.thread:
            self.thread.join(10)
        with self.lock:
            for sock in self.socks:
                sock.close()
        self.sel.close()


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
               b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks)
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
            # each from an address of its own: an address holds 16 (FairSlots)
            s = connect_from("127.0.1.%d" % (i + 1), self.bridge.port)
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
            ("/api/sse?deviceId=d1&token=%00" + t, {}, 400),  # %00 anywhere in the URL
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


class FairSlots(BridgeTestCase):
    """300 sockets that trickle their headers held every connection slot and
    locked out /healthz and new streams for as long as they went on (issue
    15). max_connections 16 leaves libmicrohttpd 16 + 256 = 272 slots, fewer
    than the attackers, as a small instance has. Now each client address
    holds at most 16 unfinished requests (beyond: closed at once), and a
    request's headers must be in within 10 s, its body within 30 s after
    them."""

    ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
    PER_ADDRESS = 16
    HEADER_S = 10
    BODY_S = 30

    def setUp(self):
        super().setUp()
        raise_nofile_limit(4096)
        self.start_bridge(jwt_secret=SECRET, max_connections=16)
        self.token = make_jwt(SECRET, {"sub": "A", "exp": int(time.time()) + 3600})
        self.trickler = Trickler(every=1.0)
        self.addCleanup(self.trickler.stop)

    def refused(self, reason):
        key = 'mqtt_sse_bridge_http_refused_total{reason="%s"}' % reason
        return self.bridge.metrics().get(key, 0)

    def test_trickling_sockets_do_not_take_the_server(self):
        port = self.bridge.port
        t = self.trickler
        slow_header = b"Host: x\r\nX-Slow: " + b"a" * 200
        for i in range(300):
            addr = self.ADDRESSES[i % len(self.ADDRESSES)]
            t.add(connect_from(addr, port), addr, b"GET /healthz HTTP/1.1\r\n", slow_header)
        # a body that trickles after headers that came at once
        head = ("POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                "Content-Type: application/json\r\nContent-Length: 200\r\n\r\n" %
                self.token).encode()
        t.add(connect_from("127.0.0.5", port), "body", head, b" " * 200)
        # a kept-alive connection that goes idle after its answer (a publish:
        # libmicrohttpd closes a connection whose answer came on its first call)
        idle = connect_from("127.0.0.6", port)
        body = b'{"channel":"timer","type":"t","payload":{"m":"idle"},"deviceId":"d"}'
        idle.sendall(head.replace(b"Content-Length: 200", b"Content-Length: %d" % len(body)) +
                     body)
        reply = b""
        while not answer_complete(reply):
            reply += idle.recv(65536)
        self.assertEqual(status_of(reply), 202, reply)
        self.assertNotIn(b"Connection: close", reply)
        t.add(idle, "idle", b"", b"")
        t.start()
        time.sleep(1.5)

        # served at once meanwhile, from another address
        t0 = time.monotonic()
        self.assertEqual(http_request(self.bridge.port, "GET", "/healthz", timeout=2).status, 200)
        c = self.sse("good", None, params={"token": self.token}, name="good")
        self.publish("A", "timer", payload={"m": "beside-tricklers"})
        self.assert_markers(c, ["beside-tricklers"])
        self.assertLess(time.monotonic() - t0, 2, "/healthz and a new stream took too long")

        # each address holds 16 unfinished requests; the others were closed at once
        for addr in self.ADDRESSES:
            self.assertEqual(t.open_count(addr), self.PER_ADDRESS, addr)
        for what, opened, closed in t.snapshot():
            if what in self.ADDRESSES and closed is not None:
                self.assertLess(closed - opened, 1.5, "a refused socket was not closed at once")
        want = 300 - self.PER_ADDRESS * len(self.ADDRESSES)
        self.assertEqual(self.refused("per_address"), want)

        # the held ones are closed at their deadline, not before
        wait_until(lambda: all(t.open_count(a) == 0 for a in self.ADDRESSES) and
                   t.open_count("idle") == 0, self.HEADER_S + 5, interval=0.2,
                   what="every trickling socket closed after the header deadline")
        held = [(o, c) for w, o, c in t.snapshot() if w in self.ADDRESSES and c - o >= 1.5]
        self.assertEqual(len(held), self.PER_ADDRESS * len(self.ADDRESSES))
        for opened, closed in held:
            self.assertGreater(closed - opened, self.HEADER_S - 1)
            self.assertLess(closed - opened, scaled(self.HEADER_S + 3))
        self.assertEqual(t.open_count("body"), 1, "the body's deadline is longer")
        # an idle kept-alive connection ends uncounted
        self.assertEqual(self.refused("deadline"), len(held))
        wait_until(lambda: t.open_count("body") == 0, self.BODY_S - self.HEADER_S + 5,
                   interval=0.2, what="the trickling body closed after the body deadline")
        (opened, closed), = [(o, c) for w, o, c in t.snapshot() if w == "body"]
        self.assertGreater(closed - opened, self.BODY_S - 1)
        self.assertEqual(self.refused("deadline"), len(held) + 1)
        self.assertEqual(http_request(self.bridge.port, "GET", "/healthz").status, 200)
        assert_quiet([c])

    def test_streams_do_not_count_against_their_address(self):
        """A NAT address may carry many users' tabs: established streams do
        not count, unfinished requests from the same address still do."""
        port = self.bridge.port
        addr = "127.0.0.7"
        streams = []
        query = "/api/sse?deviceId=d%d&token=" + self.token
        try:
            for i in range(self.PER_ADDRESS):  # the hub holds max_connections 16
                s = connect_from(addr, port)
                s.sendall(("GET " + query % i + " HTTP/1.1\r\nHost: x\r\n\r\n").encode())
                head = b""
                while b"retry:" not in head:
                    chunk = s.recv(4096)
                    self.assertTrue(chunk, "stream %d closed" % i)
                    head += chunk
                self.assertEqual(status_of(head), 200)
                streams.append(s)
            for i in range(self.PER_ADDRESS + 4):
                self.trickler.add(connect_from(addr, port), "pending",
                                  b"GET /healthz HTTP/1.1\r\n", b"Host: x\r\n")
            self.trickler.start()
            time.sleep(1.5)
            self.assertEqual(self.trickler.open_count("pending"), self.PER_ADDRESS)
            self.assertEqual(self.refused("per_address"), 4)
            self.assertEqual(self.bridge.metrics()["mqtt_sse_bridge_connections"],
                             self.PER_ADDRESS)
        finally:
            for s in streams:
                s.close()


class Edges(BridgeTestCase):
    """The edges of HTTP (issue 15): a %00 in the path is refused, not cut
    (/metrics%00.js served the metrics); conflicting Content-Length headers,
    and an HTTP/1.1 request without Host (or with two), are 400."""

    def setUp(self):
        super().setUp()
        self.start_bridge(jwt_secret=SECRET)
        self.token = make_jwt(SECRET, {"sub": "A", "exp": int(time.time()) + 3600})

    def exchange(self, req):
        reply = raw_exchange(self.bridge.port, req, timeout=5)
        return status_of(reply), reply

    def test_nul_in_the_path_is_400(self):
        for path in ("/metrics%00.js", "/metrics%00", "/healthz%00.html", "/%00",
                     "/index.html%00.js", "/api/sse%00?deviceId=d1&token=" + self.token,
                     "/api/presence%00.css?token=" + self.token, "/metrics?x=%00"):
            with self.subTest(path=path):
                status, reply = self.exchange(
                    ("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode())
                self.assertEqual(status, 400, reply[:300])
                self.assertNotIn(b"mqtt_sse_bridge_", reply)
                self.assertIn(b'"error":"bad_request"', reply)
        # %2500 is a literal "%00", not a NUL: a name the web files do not have
        status, _ = self.exchange(b"GET /metrics%2500.js HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(status, 404)
        status, _ = self.exchange(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(status, 200)

    def test_conflicting_content_length_is_400(self):
        c = self.sse("a1", None, params={"token": self.token})
        body = b'{"channel":"timer","type":"t","payload":{"m":"smuggled"},"deviceId":"d"}'
        head = ("POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                "Content-Type: application/json\r\n" % self.token).encode()
        cases = [
            ("two lengths", b"Content-Length: %d\r\nContent-Length: 5\r\n" % len(body)),
            ("two lengths, the other order",
             b"Content-Length: 5\r\nContent-Length: %d\r\n" % len(body)),
            ("a length and chunked",
             b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n" % len(body)),
        ]
        for what, lengths in cases:
            with self.subTest(what):
                status, reply = self.exchange(head + lengths + b"\r\n" + body)
                self.assertEqual(status, 400, reply[:300])
        # the same length twice is one length
        body = body.replace(b"smuggled", b"same")
        status, reply = self.exchange(
            head + b"Content-Length: %d\r\nContent-Length: %d\r\n\r\n" % (len(body), len(body)) +
            body)
        self.assertEqual(status, 202, reply[:300])
        self.assert_markers(c, ["same"])
        for path in ("/healthz", "/api/sse?deviceId=d2&token=" + self.token):
            status, reply = self.exchange(
                ("GET %s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                 "Content-Length: 3\r\n\r\nabc" % path).encode())
            self.assertEqual(status, 400, reply[:300])

    def test_http11_without_host_is_400(self):
        for path in ("/healthz", "/metrics", "/api/sse?deviceId=d1&token=" + self.token):
            with self.subTest(path=path):
                status, reply = self.exchange(("GET %s HTTP/1.1\r\n\r\n" % path).encode())
                self.assertEqual(status, 400, reply[:300])
                self.assertNotIn(b"mqtt_sse_bridge_", reply)
                status, reply = self.exchange(
                    ("GET %s HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" % path).encode())
                self.assertEqual(status, 400, reply[:300])
        # HTTP/1.0 has no Host to require
        status, reply = self.exchange(b"GET /healthz HTTP/1.0\r\n\r\n")
        self.assertEqual(status, 200, reply[:300])
        m = self.bridge.metrics()
        self.assertGreaterEqual(m['mqtt_sse_bridge_http_errors_total{code="400"}'], 6)


if __name__ == "__main__":
    unittest.main()
