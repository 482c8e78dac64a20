"""The daemon reaches its broker over TLS and with credentials (issue 4:
mqtt_cafile, a client certificate with mqtt_certfile and mqtt_keyfile,
mqtt_username and mqtt_password; a wrong CA or password fails clearly). The
test makes its own CAs and certificates with the openssl command."""

import os
import subprocess
import tempfile
import time
import unittest
import shutil

from harness import BridgeTestCase, free_port, only_forms, wait_until

CERTS = None  # made once for the module


def openssl(*args, cwd):
    subprocess.run(("openssl",) + args, cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def make_certs():
    d = tempfile.mkdtemp(prefix="sb-tls-")
    for ca in ("ca", "wrong"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca + ".key",
                "-out", ca + ".crt", "-days", "2", "-subj", "/CN=test-" + ca, cwd=d)
    with open(os.path.join(d, "ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key", "-out",
                name + ".csr", "-subj", "/CN=" + name, cwd=d)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", name + ".crt", "-days", "2", "-extfile", "ext",
                cwd=d)
    os.chmod(d, 0o755)
    for f in os.listdir(d):
        os.chmod(os.path.join(d, f), 0o644)
    return d


def setUpModule():
    global CERTS
    CERTS = make_certs()


def tearDownModule():
    shutil.rmtree(CERTS, ignore_errors=True)


def cert(name):
    return os.path.join(CERTS, name)


@only_forms("daemon")  # the plugin is inside the broker: no MQTT connection of its own
class Tls(BridgeTestCase):
    """The broker keeps its plain listener (the tests publish there) and gets a
    TLS listener, and one more that requires a client certificate."""

    def setUp(self):
        self.tls_port = free_port()
        self.mtls_port = free_port()
        type(self).broker_conf = [
            "listener %d 127.0.0.1" % self.tls_port,
            "cafile " + cert("ca.crt"),
            "certfile " + cert("server.crt"),
            "keyfile " + cert("server.key"),
            "listener %d 127.0.0.1" % self.mtls_port,
            "cafile " + cert("ca.crt"),
            "certfile " + cert("server.crt"),
            "keyfile " + cert("server.key"),
            "require_certificate true",
        ]
        super().setUp()

    def tearDown(self):
        super().tearDown()
        type(self).broker_conf = None

    def health(self, b):
        return b.healthz().status

    def test_right_ca_connects_and_relays(self):
        b = self.start_bridge(mqtt_port=self.tls_port, mqtt_cafile=cert("ca.crt"))
        self.assertIn("Connected to 127.0.0.1:%d" % self.tls_port, b.logs())
        c = self.sse("a1", "A")
        self.publish("A", "timer", payload={"m": "over-tls"})
        self.assert_markers(c, ["over-tls"])

    def test_client_certificate(self):
        b = self.start_bridge(mqtt_port=self.mtls_port, mqtt_cafile=cert("ca.crt"),
                              mqtt_certfile=cert("client.crt"), mqtt_keyfile=cert("client.key"))
        c = self.sse("a1", "A")
        self.publish("A", "timer", payload={"m": "mtls"})
        self.assert_markers(c, ["mtls"])
        self.assertEqual(self.health(b), 200)

    def test_wrong_ca_fails_clearly(self):
        b = self.new_bridge(mqtt_port=self.tls_port, mqtt_cafile=cert("wrong.crt"))
        b.start(wait_healthy=False)
        self.bridge = b
        wait_until(lambda: "certificate verify failed" in b.logs(), 10,
                   what="a log line saying the certificate does not verify")
        self.assertEqual(self.health(b), 503)
        self.assertEqual(b.metrics()["mqtt_sse_bridge_mqtt_connected"], 0)
        self.assertRegex(b.logs(), r"warning \[MQTT\] .*certificate verify failed")
        # the HTTP side still serves, and nothing is relayed over the failed link
        c = self.sse("a1", "A")
        self.publish("A", "timer", payload={"m": "not-relayed"})
        time.sleep(0.5)
        self.assertEqual(c.markers(), [])

    def test_no_client_certificate_where_one_is_required(self):
        b = self.new_bridge(mqtt_port=self.mtls_port, mqtt_cafile=cert("ca.crt"))
        b.start(wait_healthy=False)
        self.bridge = b
        wait_until(lambda: "Connection to 127.0.0.1:%d ended" % self.mtls_port in b.logs()
                   or "Cannot reach" in b.logs() or "Lost the broker" in b.logs(), 10,
                   what="a log line saying the TLS connection failed")
        time.sleep(0.5)
        self.assertEqual(self.health(b), 503)

    def test_certfile_without_keyfile_stops_the_start(self):
        b = self.new_bridge(mqtt_port=self.tls_port, mqtt_cafile=cert("ca.crt"),
                            mqtt_certfile=cert("client.crt"))
        rc, out = b.start_expect_failure()
        self.assertNotEqual(rc, 0)
        self.assertIn("mqtt_keyfile", out)


@only_forms("daemon")
class Credentials(BridgeTestCase):
    """mqtt_username / mqtt_password against a broker that takes no anonymous
    clients (the test publishes with an account of its own)."""

    def setUp(self):
        self.pwfile = os.path.join(CERTS, "passwd-%d" % os.getpid())
        subprocess.run(["mosquitto_passwd", "-c", "-b", self.pwfile, "bridge", "bridge-pw"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["mosquitto_passwd", "-b", self.pwfile, "backend", "backend-pw"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.chmod(self.pwfile, 0o644)
        type(self).broker_conf = ["password_file " + self.pwfile, "allow_anonymous false"]
        super().setUp()

    def tearDown(self):
        super().tearDown()
        type(self).broker_conf = None

    def publish_as_backend(self, user, marker):
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(self.broker.port),
                        "-u", "backend", "-P", "backend-pw", "-q", "1", "-t", "sync/%s/timer" % user,
                        "-m", '{"type":"t","payload":{"m":"%s"}}' % marker],
                       check=True, timeout=10)

    def test_username_and_password(self):
        self.start_bridge(mqtt_username="bridge", mqtt_password="bridge-pw")
        c = self.sse("a1", "A")
        self.publish_as_backend("A", "with-credentials")
        self.assert_markers(c, ["with-credentials"])

    def test_wrong_password_fails_clearly(self):
        b = self.new_bridge(mqtt_username="bridge", mqtt_password="wrong")
        b.start(wait_healthy=False)
        self.bridge = b
        wait_until(lambda: "refused" in b.logs() or "not authorised" in b.logs().lower(), 10,
                   what="a log line saying the broker refused the credentials")
        time.sleep(0.5)
        self.assertEqual(b.healthz().status, 503)
        c = self.sse("a1", "A")
        self.publish_as_backend("A", "not-relayed")
        time.sleep(0.5)
        self.assertEqual(c.markers(), [])


if __name__ == "__main__":
    unittest.main()
