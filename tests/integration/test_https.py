"""HTTPS (issue 14): http_tls_cert and http_tls_key serve the SSE stream and
everything else over TLS, in both forms. A client that trusts the CA gets
events; one that trusts another CA fails; bad files stop the start naming the
option. The daemon reads the pair again on SIGHUP without dropping streams,
and keeps the running pair when the new one is bad. Plain HTTP to the TLS
port is refused at once while TLS clients are served. The certificates are
made with openssl in each test's temp dir: a root CA, an intermediate, and
server certificates for 127.0.0.1 and localhost whose file holds the chain."""

import hashlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import unittest

from harness import (BridgeTestCase, SSEClient, only_forms, pump, rss_kib, scaled,
                     send_while_reading, wait_until)


def openssl(cwd, *args):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class Pki:
    """Certificates and keys in dir: make_ca() a root, make_cert() a
    certificate signed by a CA (its file: the certificate, then the signer's
    chain)."""

    def __init__(self, dir):
        self.dir = dir
        os.makedirs(dir, exist_ok=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def _key(self, name):
        openssl(self.dir, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-out", name + ".key")

    def _ext(self, name, lines):
        with open(self.path(name + ".ext"), "w") as f:
            f.write("\n".join(lines) + "\n")

    def make_ca(self, name):
        self._key(name)
        openssl(self.dir, "req", "-x509", "-new", "-key", name + ".key", "-out", name + ".pem",
                "-days", "2", "-subj", "/CN=" + name)
        return self.path(name + ".pem")

    def make_cert(self, name, signer, serial, ca=False):
        """A certificate name.pem (with signer's chain after it) and its key
        name.key; a CA when ca, else a server certificate."""
        self._key(name)
        openssl(self.dir, "req", "-new", "-key", name + ".key", "-out", name + ".csr",
                "-subj", "/CN=" + ("localhost" if not ca else name))
        if ca:
            self._ext(name, ["basicConstraints=critical,CA:TRUE",
                             "keyUsage=critical,keyCertSign,cRLSign",
                             "subjectKeyIdentifier=hash", "authorityKeyIdentifier=keyid"])
        else:
            self._ext(name, ["basicConstraints=CA:FALSE",
                             "keyUsage=critical,digitalSignature",
                             "extendedKeyUsage=serverAuth",
                             "subjectAltName=IP:127.0.0.1,DNS:localhost",
                             "subjectKeyIdentifier=hash", "authorityKeyIdentifier=keyid"])
        openssl(self.dir, "x509", "-req", "-in", name + ".csr", "-CA", signer + ".pem",
                "-CAkey", signer + ".key", "-set_serial", str(serial), "-days", "2",
                "-extfile", name + ".ext", "-out", name + ".only")
        parts = [name + ".only"]
        if os.path.exists(self.path(signer + ".chain")):  # a root's is itself: left out
            parts.append(signer + ".chain")
        with open(self.path(name + ".pem"), "w") as out:
            for part in parts:
                with open(self.path(part)) as f:
                    out.write(f.read())
        if ca:
            shutil.copy(self.path(name + ".pem"), self.path(name + ".chain"))
        return self.path(name + ".pem"), self.path(name + ".key")


def fingerprint_of_file(pem_path):
    """SHA-256 of the first certificate of a PEM file (DER)."""
    with open(pem_path) as f:
        text = f.read()
    end = "-----END CERTIFICATE-----"
    first = text[:text.index(end) + len(end)]
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(first)).hexdigest()


def client_context(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def peer_fingerprint(port, ctx, hostname="localhost"):
    """Makes one handshake and returns the SHA-256 of the server's certificate."""
    with socket.create_connection(("127.0.0.1", port), timeout=scaled(5)) as raw:
        with ctx.wrap_socket(raw, server_hostname=hostname) as s:
            return hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()


class HttpsCase(BridgeTestCase):
    """Each test has a root CA, an intermediate CA that signs the servers'
    certificates, and two server pairs (serials 1001 and 1002); the bridge
    serves live.pem and live.key, copies of pair 1 at the start."""

    def setUp(self):
        super().setUp()
        self.pki = Pki(os.path.join(self.workdir, "pki"))
        self.ca = self.pki.make_ca("root")
        self.pki.make_cert("inter", "root", 10, ca=True)
        self.pair1 = self.pki.make_cert("server1", "inter", 1001)
        self.pair2 = self.pki.make_cert("server2", "inter", 1002)
        self.cert = self.pki.path("live.pem")
        self.key = self.pki.path("live.key")
        self.install(self.pair1)
        self.ctx = client_context(self.ca)

    def install(self, pair):
        """Copies a pair to live.pem and live.key (what a renewal does)."""
        for src, dst in zip(pair, (self.cert, self.key)):
            tmp = dst + ".new"
            shutil.copy(src, tmp)
            os.replace(tmp, dst)

    def start_https(self, **opts):
        b = self.new_bridge(http_tls_cert=self.cert, http_tls_key=self.key, **opts)
        b.ssl_context = self.ctx
        b.start()
        self.bridge = b
        return b

    def tls_sse(self, device, user, ctx=None, hostname="localhost", wait=True):
        """An SSE stream over TLS (auth none), read by the reactor."""
        ctx = ctx or self.ctx
        c = SSEClient(self.reactor, self.bridge.port, "/api/sse",
                      {"deviceId": device, "userId": user}, name="%s/%s" % (user, device),
                      wrap=lambda s: ctx.wrap_socket(s, server_hostname=hostname))
        if wait:
            c.wait_open()
        return c


class Https(HttpsCase):

    def test_events_heartbeats_and_fan_out_over_tls(self):
        self.start_https(heartbeat_interval=1)
        self.assertIn("Listening on https://", self.bridge.logs())
        self.assertEqual(self.bridge.healthz().status, 200)
        a1 = self.tls_sse("a1", "A")
        a2 = self.tls_sse("a2", "A", hostname="127.0.0.1")  # the IP SAN
        b1 = self.tls_sse("b1", "B")
        self.assertEqual(a1.status, 200)
        self.assertEqual(a1.headers.get("content-type"), "text/event-stream")
        self.assertEqual(hashlib.sha256(a1.sock.getpeercert(binary_form=True)).hexdigest(),
                         fingerprint_of_file(self.pair1[0]))
        for i in range(5):
            self.publish("A", "timer", payload={"m": i})
        self.publish("B", "timer", payload={"m": "b"})
        self.assert_markers(a1, list(range(5)))
        self.assert_markers(a2, list(range(5)))
        self.assert_markers(b1, ["b"])
        # heartbeats are comments on the same TLS stream
        a1.wait_comments(1, timeout=scaled(4))
        self.assertEqual(a1.comments[0][0], "heartbeat")
        self.assertEqual(a1.chunk_errors, [])
        self.assertEqual(self.bridge.metrics()["mqtt_sse_bridge_connections"], 3)
        # a client that goes away is noticed
        b1.close()
        self.wait_connections(2)

    def test_a_wrong_ca_fails_verification(self):
        self.start_https()
        other = Pki(os.path.join(self.workdir, "other"))
        wrong = client_context(other.make_ca("other-root"))
        with self.assertRaises(ssl.SSLCertVerificationError):
            peer_fingerprint(self.bridge.port, wrong)
        # TLS 1.2 is served as well as 1.3
        tls12 = client_context(self.ca)
        tls12.maximum_version = ssl.TLSVersion.TLSv1_2
        self.assertEqual(peer_fingerprint(self.bridge.port, tls12),
                         fingerprint_of_file(self.pair1[0]))
        # nor does a name that the certificate does not hold pass
        with self.assertRaises(ssl.SSLCertVerificationError):
            peer_fingerprint(self.bridge.port, self.ctx, hostname="example.org")
        self.assertEqual(self.bridge.healthz().status, 200)

    def test_plain_http_is_refused_at_once_while_tls_is_served(self):
        self.start_https()
        c = self.tls_sse("a1", "A")
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", self.bridge.port), timeout=scaled(3))
            start = time.monotonic()
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            try:
                data = s.recv(4096)
            except ConnectionResetError:
                data = b""
            elapsed = time.monotonic() - start
            s.close()
            self.assertFalse(data.startswith(b"HTTP/1.1 200"), data)
            self.assertLess(elapsed, scaled(1.0), "plain HTTP was not refused within a second")
        self.publish("A", "timer", payload={"m": "after-plain"})
        self.assert_markers(c, ["after-plain"])
        self.assertEqual(self.bridge.healthz().status, 200)

    def test_a_reader_that_stops_is_cut_over_tls(self):
        self.start_https()
        fast = self.tls_sse("a2", "A")
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.settimeout(scaled(5))
        raw.connect(("127.0.0.1", self.bridge.port))
        stuck = self.ctx.wrap_socket(raw, server_hostname="localhost")
        try:
            stuck.sendall(b"GET /api/sse?deviceId=a1&userId=A HTTP/1.1\r\nHost: x\r\n\r\n")
            self.wait_connections(2)
            n = pump(self.broker, "A", fast)
            self.assert_markers(fast, list(range(n)))
            wait_until(lambda: "Connection cut off: user=A device=a1" in self.bridge.logs(),
                       scaled(10), what="the stuck stream cut off")
            self.wait_connections(1)
        finally:
            stuck.close()
        self.publish("A", "timer", payload={"m": "after"})
        self.assert_markers(fast, list(range(n)) + ["after"])

    def test_a_stop_ends_tls_streams_cleanly(self):
        b = self.start_https()
        c = self.tls_sse("a1", "A")
        self.publish("A", "timer", payload={"m": 1})
        self.assert_markers(c, [1])
        start = time.monotonic()
        self.assertEqual(b.stop(), 0)
        c.wait_closed(timeout=scaled(5))
        self.assertTrue(c.ended, "the stream did not end with its last chunk")
        self.assertLess(time.monotonic() - start, scaled(5))

    def test_a_body_too_large_gets_its_413_over_tls(self):
        self.start_https(max_event_bytes=65536)
        body = b" " * (2 * 1024 * 1024)
        head = (b"POST /api/publish?userId=A HTTP/1.1\r\nHost: localhost\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
        raw = socket.create_connection(("127.0.0.1", self.bridge.port), timeout=scaled(5))
        with self.ctx.wrap_socket(raw, server_hostname="localhost") as s:
            reply, send_error, _ = send_while_reading(s, head, [body[i:i + 65536]
                                                                for i in range(0, len(body),
                                                                               65536)])
        self.assertTrue(reply.startswith(b"HTTP/1.1 413"), reply[:200])
        self.assertIsNone(send_error, "the bridge did not take the whole body")
        self.assertEqual(self.bridge.healthz().status, 200)

    def test_bad_files_stop_the_start(self):
        p = self.pki.path
        garbage = p("garbage.pem")
        with open(garbage, "w") as f:
            f.write("not a certificate\n")
        cases = [
            ("missing cert", dict(http_tls_cert=p("nope.pem"), http_tls_key=self.key),
             "http_tls_cert"),
            ("missing key", dict(http_tls_cert=self.cert, http_tls_key=p("nope.key")),
             "http_tls_key"),
            ("a directory as key", dict(http_tls_cert=self.cert, http_tls_key=self.pki.dir),
             "http_tls_key"),
            ("not a certificate", dict(http_tls_cert=garbage, http_tls_key=self.key),
             "http_tls_cert"),
            ("not a key", dict(http_tls_cert=self.cert, http_tls_key=garbage), "http_tls_key"),
            ("the key of another certificate",
             dict(http_tls_cert=self.pair1[0], http_tls_key=self.pair2[1]), "http_tls_key"),
            ("cert alone", dict(http_tls_cert=self.cert), "http_tls_key"),
            ("key alone", dict(http_tls_key=self.key), "http_tls_cert"),
        ]
        if os.geteuid() != 0:  # root reads any file
            unreadable = p("unreadable.key")
            shutil.copy(self.key, unreadable)
            os.chmod(unreadable, 0)
            cases.append(("unreadable key", dict(http_tls_cert=self.cert,
                                                 http_tls_key=unreadable), "http_tls_key"))
        for what, opts, option in cases:
            with self.subTest(what):
                b = self.new_bridge(**opts)
                rc, out = b.start_expect_failure()
                self.assertNotEqual(rc, 0, out)
                self.assertIn(option + ":", out)
                self.assertFalse(b.running)


@only_forms("daemon")
class HttpsReload(HttpsCase):
    """SIGHUP reads the pair again: certificate renewal without a restart."""

    def hup_and_wait(self, text):
        before = len(self.bridge.logs())
        self.bridge.send_signal(signal.SIGHUP)
        wait_until(lambda: text in self.bridge.logs()[before:], scaled(10), interval=0.05,
                   what="%r in the log after SIGHUP" % text)
        return self.bridge.logs()[before:]

    def test_a_new_certificate_without_dropping_streams(self):
        self.start_https()
        f1, f2 = fingerprint_of_file(self.pair1[0]), fingerprint_of_file(self.pair2[0])
        self.assertNotEqual(f1, f2)
        c = self.tls_sse("a1", "A")
        self.assertEqual(peer_fingerprint(self.bridge.port, self.ctx), f1)
        self.install(self.pair2)
        text = self.hup_and_wait("[SSE] Reloaded configuration")
        self.assertIn("Reload: HTTPS with CN=localhost, serial 03ea", text)  # 1002
        self.assertNotIn("takes effect on restart", text)
        # the open stream goes on; the next handshake shows the new certificate
        self.publish("A", "timer", payload={"m": "after-renewal"})
        self.assert_markers(c, ["after-renewal"])
        self.assertEqual(peer_fingerprint(self.bridge.port, self.ctx), f2)
        c2 = self.tls_sse("a2", "A")
        self.assertEqual(hashlib.sha256(c2.sock.getpeercert(binary_form=True)).hexdigest(), f2)
        self.publish("A", "timer", payload={"m": "both"})
        self.assert_markers(c, ["after-renewal", "both"])
        self.assert_markers(c2, ["both"])
        self.assertEqual(self.bridge.metrics()["mqtt_sse_bridge_connections"], 2)

    def test_a_bad_pair_at_reload_keeps_the_running_one(self):
        self.start_https()
        f1 = fingerprint_of_file(self.pair1[0])
        c = self.tls_sse("a1", "A")
        # the new certificate, but the old key: refused, pair 1 stays
        shutil.copy(self.pair2[0], self.cert)
        text = self.hup_and_wait("configuration not reloaded")
        self.assertIn("http_tls_key:", text)
        self.assertTrue(self.bridge.running)
        self.assertEqual(peer_fingerprint(self.bridge.port, self.ctx), f1)
        # a missing key: the same
        os.remove(self.key)
        text = self.hup_and_wait("configuration not reloaded")
        self.assertIn("http_tls_key: cannot read", text)
        self.assertEqual(peer_fingerprint(self.bridge.port, self.ctx), f1)
        self.publish("A", "timer", payload={"m": "still"})
        self.assert_markers(c, ["still"])
        # a good pair again: taken
        self.install(self.pair2)
        self.hup_and_wait("[SSE] Reloaded configuration")
        self.assertEqual(peer_fingerprint(self.bridge.port, self.ctx),
                         fingerprint_of_file(self.pair2[0]))

    def test_many_reloads_under_handshakes(self):
        """Pairs swapped while clients connect: every handshake gets a whole
        pair, and the bridge's memory does not grow with the reloads."""
        self.start_https()
        prints = {fingerprint_of_file(self.pair1[0]), fingerprint_of_file(self.pair2[0])}
        stop = threading.Event()
        seen, errors = set(), []

        def handshakes():
            while not stop.is_set():
                try:
                    seen.add(peer_fingerprint(self.bridge.port, self.ctx))
                except (OSError, ssl.SSLError) as e:
                    errors.append(repr(e))
        t = threading.Thread(target=handshakes)
        t.start()
        try:
            rss = None
            for i in range(40):
                self.install(self.pair2 if i % 2 == 0 else self.pair1)
                self.hup_and_wait("[SSE] Reloaded configuration")
                if i == 10:
                    rss = rss_kib(self.bridge.pid)
        finally:
            stop.set()
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(seen, prints)
        if not os.environ.get("SB_SANITIZED"):
            self.assertLess(rss_kib(self.bridge.pid), rss + 2048)


if __name__ == "__main__":
    unittest.main()
