"""The bridge in its two forms (SPEC: "Two forms, one core"): DaemonBridge
runs mqtt-sse-bridge against the test's broker, PluginBridge loads
mosquitto_sse.so into it; make_bridge() builds the form under test (SB_FORM)
and only_forms() skips a test meant for another. Both answer HTTP through
BridgeHttp (http_request, parse_metrics)."""

import http.client
import json
import os
import re
import select
import signal
import ssl
import subprocess
import time
import unittest

from harness_env import BRIDGE_BIN, FORM, LSAN_SUPPRESSIONS, PLUGIN_SO, PRELOAD
from harness_mqtt import BrokerExited
from harness_procs import free_port, read_text, scaled, set_nofile_limit, wait_until


# ---- what both forms share -----------------------------------------------------------

class HttpResponse:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # http.client.HTTPMessage (case-insensitive get)
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<HTTP %d %r %r>" % (self.status, dict(self.headers.items()), self.body[:300])


def http_request(port, method, path, headers=None, body=None, timeout=10, context=None):
    """One HTTP request to 127.0.0.1:port on a fresh connection; HTTPS with
    the ssl.SSLContext context when given."""
    if context is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=scaled(timeout))
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=scaled(timeout),
                                           context=context)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return HttpResponse(r.status, r.headers, data)
    finally:
        conn.close()


def answer_complete(reply):
    """True once reply (bytes) holds a whole HTTP answer with Content-Length."""
    head, sep, body = reply.partition(b"\r\n\r\n")
    m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    return bool(sep) and m is not None and len(body) >= int(m.group(1))


def send_while_reading(sock, head, pieces, timeout=30):
    """Sends head and then each bytes of the iterable pieces on the connected
    sock (plain or TLS), reading what comes back all the while, as a browser
    does: an answer that comes before the body is all sent is read, not lost
    to a reset, and the whole body is sent all the same. One thread (select),
    so a TLS socket is never used by two. Sending stops at an error; reading
    stops at the end of the first answer, the peer's close or an error;
    both stop at the timeout. Returns (the bytes read, the send error or
    None, the read error or None)."""
    sock.setblocking(False)
    out = bytearray(head)
    pieces = iter(pieces)
    reply = bytearray()
    send_error = read_error = None
    sending = reading = True
    deadline = time.monotonic() + scaled(timeout)
    while (sending or reading) and time.monotonic() < deadline:
        if sending and not out:
            piece = next(pieces, None)
            if piece is None:
                sending = False
                continue
            out += piece
        readable, writable, _ = select.select([sock] if reading else [],
                                              [sock] if sending else [], [], 0.1)
        if reading and (readable or (isinstance(sock, ssl.SSLSocket) and sock.pending())):
            try:
                chunk = sock.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                chunk = None
            except OSError as e:
                read_error = e
                reading = False
                chunk = None
            if chunk == b"":
                reading = False
            elif chunk:
                reply += chunk
                reading = not answer_complete(reply)
        if writable and out:
            try:
                del out[:sock.send(out[:262144])]
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
            except OSError as e:
                send_error = e
                sending = False
    return bytes(reply), send_error, read_error


def parse_metrics(text):
    """Prometheus text -> {"name{labels}": float}; also checks the format."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})?) (\S+)$', line)
        if not m:
            raise AssertionError("not a Prometheus sample line: %r" % line)
        out[m.group(1)] = float(m.group(3))
    return out


def default_opts(opts):
    """opts with auth none added unless auth or a jwt_* key option is given."""
    opts = dict(opts)
    if ("auth" not in opts and "jwt_secret" not in opts and
            "jwt_secret_file" not in opts and "jwt_public_key_file" not in opts):
        opts["auth"] = "none"
    return opts


class BridgeHttp:
    """The HTTP side of a bridge of either form, on self.port; over HTTPS
    when ssl_context (an ssl.SSLContext that trusts the bridge's certificate)
    is set."""

    ssl_context = None

    def request(self, method, path, headers=None, body=None, timeout=10):
        return http_request(self.port, method, path, headers, body, timeout, self.ssl_context)

    def healthz(self):
        return self.request("GET", "/healthz")

    def answers(self, wait_healthy):
        """Whether /healthz answers: 200, or also 503 (the broker not there
        yet) unless wait_healthy."""
        try:
            r = self.request("GET", "/healthz", timeout=2)
        except OSError:
            return False
        return r.status == 200 or (not wait_healthy and r.status == 503)

    def metrics(self):
        r = self.request("GET", "/metrics")
        if r.status != 200:
            raise AssertionError("/metrics answered %r" % r)
        return parse_metrics(r.body.decode("utf-8"))


# ---- the daemon form -----------------------------------------------------------------

class DaemonBridge(BridgeHttp):
    """The mqtt-sse-bridge daemon against broker, with options given as
    keyword arguments (names of the SPEC; values are turned into strings).
    Unless auth or a jwt_* key option is given, runs with auth none."""

    form = "daemon"

    def __init__(self, broker, workdir, **opts):
        self.broker = broker
        self.workdir = workdir
        self.port = None
        self.proc = None
        self.opts = default_opts(opts)
        self.log_path = os.path.join(workdir, "bridge-%d.log" % id(self))
        self.exit_code = None
        self.nofile_limit = None  # soft RLIMIT_NOFILE to give the daemon
        self.extra_args = []      # more command-line arguments (e.g. -c FILE)

    def command(self, extra_args=()):
        args = [BRIDGE_BIN, "--http_port", str(self.port), "--mqtt_host", "127.0.0.1",
                "--mqtt_port", str(self.broker.port)]
        for k, v in self.opts.items():
            args += ["--" + k, str(v)]
        return args + self.extra_args + list(extra_args)

    def _preexec(self):
        set_nofile_limit(self.nofile_limit)

    def _spawn(self, args):
        log = open(self.log_path, "ab")
        try:
            return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    preexec_fn=self._preexec)
        finally:
            log.close()

    def start(self, timeout=20, wait_healthy=True):
        """Starts the daemon on a free port; waits until /healthz says 200
        (the MQTT side is up), or only until it listens."""
        assert self.proc is None
        # a given http_port stays (a restart keeps the instance's name)
        self.port = int(self.opts["http_port"]) if "http_port" in self.opts else free_port()
        self.proc = self._spawn(self.command())
        attempts = [1]

        def ready():
            if self.proc.poll() is not None:
                if attempts[0] < 3 and "http_port: cannot listen" in self.logs():
                    # the free port was taken meanwhile (parallel tests): again
                    attempts[0] += 1
                    self.port = free_port()
                    self.proc = self._spawn(self.command())
                    return False
                raise AssertionError("mqtt-sse-bridge exited with %s at start:\n%s" %
                                     (self.proc.returncode, self.logs()))
            return self.answers(wait_healthy)
        wait_until(ready, timeout, interval=0.05, what="the bridge's /healthz")
        return self

    def start_expect_failure(self, extra_args=(), timeout=10):
        """Starts the daemon expecting it to refuse its configuration.
        Returns (exit code, output). Fails if it still runs after timeout."""
        if self.port is None:
            self.port = free_port()
        proc = self._spawn(self.command(extra_args))
        try:
            rc = proc.wait(scaled(timeout))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("the bridge did not stop within %ss on a bad configuration:\n%s"
                                 % (timeout, self.logs()))
        return rc, self.logs()

    @property
    def pid(self):
        """The process that runs the bridge (for CPU and fd accounting)."""
        return self.proc.pid

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout):
        """Waits for the process to end; returns its exit code or None."""
        try:
            return self.proc.wait(scaled(timeout))
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=15, sig=signal.SIGTERM):
        """Sends sig and waits; returns the exit code (kills it after timeout
        and returns 'timeout'). Idempotent."""
        if self.proc is None:
            return self.exit_code
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(scaled(timeout))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.exit_code = "timeout"
                self.proc = None
                return self.exit_code
        self.exit_code = self.proc.returncode
        self.proc = None
        return self.exit_code

    def logs(self, limit=None):
        return read_text(self.log_path, limit)


# ---- the plugin form -----------------------------------------------------------------

# Options of the daemon only (SPEC: Options): not passed to the plugin.
DAEMON_ONLY_OPTIONS = ("mqtt_host", "mqtt_port", "mqtt_username", "mqtt_password",
                       "mqtt_client_id", "mqtt_qos", "mqtt_cafile", "mqtt_certfile",
                       "mqtt_keyfile", "subscribe_mode")


def plugin_env():
    """Environment of a mosquitto that loads the plugin: the sanitizer
    runtimes of SB_PRELOAD first (mosquitto itself is not instrumented, and
    ASan must come first in the initial library list), and LSan told about
    mosquitto's own leaks.

    intercept_tls_get_addr=0: the __tls_get_addr interceptor of the sanitizer
    runtime of GCC 12 (Debian 12) takes a dynamic TLS block that happens to
    start 16 bytes into a page for a pre-2.25 glibc header and records a
    bogus range ("DTLS 8 at 0x000000000161-0x001000001263" with
    LSAN_OPTIONS=verbosity=1); LSan's tracer then dies at exit ("Tracer
    caught signal 11", "LeakSanitizer has encountered a fatal error", exit 1)
    with no leak to report. mosquitto dlopens the plugin and its libraries,
    so their TLS is dynamic; test_idle hit it at every run in the plugin
    form. The cost: memory that only dynamic TLS points to is not scanned,
    so a leak could be reported where there is none; none is.

    A leak of the plugin found at exit shows its frames as <unknown module>:
    mosquitto has unloaded the plugin by then. To read one, run again with
    the plugin itself in SB_PRELOAD too (it then stays mapped)."""
    if not PRELOAD:
        return {}
    asan = os.environ.get("ASAN_OPTIONS", "")
    lsan = os.environ.get("LSAN_OPTIONS", "")
    return {
        "LD_PRELOAD": ":".join(PRELOAD + [p for p in [os.environ.get("LD_PRELOAD")] if p]),
        "ASAN_OPTIONS": (asan + ":" if asan else "") + "intercept_tls_get_addr=0",
        "LSAN_OPTIONS": (lsan + ":" if lsan else "") +
                        "suppressions=%s:print_suppressions=0" % LSAN_SUPPRESSIONS,
    }


class PluginBridge(BridgeHttp):
    """The plugin form: mosquitto_sse.so inside the test's broker. Takes the
    keyword options of DaemonBridge; those of the daemon only (mqtt_*,
    subscribe_mode) are left out, and extra_conf lines (say a daemon-only
    plugin_opt_ line that must be refused) are added after the plugin's.
    start() (re)starts the broker with the plugin (broker.plugin_conf),
    stop() stops the broker and returns its exit code; pid and logs() are
    the broker's. A restart of the broker (broker.restart()) loads the plugin
    again on the same port."""

    form = "plugin"

    def __init__(self, broker, workdir, **opts):
        self.broker = broker
        self.workdir = workdir
        self.port = None
        self.opts = default_opts(opts)
        self.exit_code = None
        self.nofile_limit = None  # soft RLIMIT_NOFILE to give the broker
        self.extra_conf = []      # more mosquitto.conf lines after the plugin's

    def conf_lines(self):
        lines = ["plugin " + PLUGIN_SO]
        if "http_port" not in self.opts:
            lines.append("plugin_opt_http_port %d" % self.port)
        for k, v in self.opts.items():
            if k not in DAEMON_ONLY_OPTIONS:
                lines.append("plugin_opt_%s %s" % (k, v))
        return lines + self.extra_conf

    def _configure(self):
        if self.broker.running:  # a broker without the plugin: restarted with it
            self.broker.stop()
        self.broker.plugin_conf = self.conf_lines()
        self.broker.env = plugin_env()
        self.broker.nofile_limit = self.nofile_limit

    def start(self, timeout=20, wait_healthy=True):
        """Starts the broker with the plugin on a free HTTP port; waits until
        /healthz answers (200 while the broker runs)."""
        assert not self.running
        chosen = self.port is not None or "http_port" in self.opts
        for attempt in range(3):
            if not chosen:
                self.port = free_port()
            elif "http_port" in self.opts:
                self.port = int(self.opts["http_port"])
            self._configure()
            offset = self.broker.log_size()
            try:
                self.broker.start(timeout)
            except BrokerExited:
                if (not chosen and attempt < 2 and
                        "http_port: cannot listen" in self.broker.logs_since(offset)):
                    continue  # the free port was taken meanwhile (parallel tests)
                raise
            break

        def ready():
            if not self.broker.running:
                raise AssertionError("mosquitto with the plugin exited with %s:\n%s" %
                                     (self.broker.proc and self.broker.proc.returncode,
                                      self.logs()))
            return self.answers(wait_healthy)
        wait_until(ready, timeout, interval=0.05, what="the plugin's /healthz")
        return self

    def start_expect_failure(self, extra_args=(), timeout=10):
        """Starts the broker with the plugin expecting it to refuse its
        configuration. Returns (exit code, what the broker logged). Fails if
        it still runs after timeout. extra_args (the daemon's command line)
        have no meaning here."""
        assert not extra_args, "the plugin form has no command line"
        if self.port is None:
            self.port = free_port()
        self._configure()
        return self.broker.run_to_exit(timeout)

    @property
    def pid(self):
        """The broker, which runs the bridge."""
        return self.broker.pid

    @property
    def running(self):
        return self.broker.running

    def send_signal(self, sig):
        self.broker.proc.send_signal(sig)

    def wait_exit(self, timeout):
        """Waits for the broker to end; returns its exit code or None."""
        try:
            return self.broker.proc.wait(scaled(timeout))
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=15, sig=signal.SIGTERM):
        """Stops the broker with sig and waits; returns the exit code (kills
        it after timeout and returns 'timeout'). Idempotent."""
        proc = self.broker.proc
        if proc is None:
            return self.exit_code
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(scaled(timeout))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                self.broker.stop()
                self.exit_code = "timeout"
                return self.exit_code
        self.exit_code = proc.returncode
        self.broker.stop()
        return self.exit_code

    def logs(self, limit=None):
        return self.broker.logs(limit)


# ---- the form under test -------------------------------------------------------------

def make_bridge(broker, workdir, **opts):
    """The bridge of the form under test (SB_FORM), not started yet.

    A form provides what DaemonBridge provides: form, opts, port, pid,
    running, start(wait_healthy), stop() -> exit code, send_signal(),
    wait_exit(), logs(), request(), healthz(), metrics(), and
    start_expect_failure() for the configuration tests. The plugin form
    (PluginBridge) puts "plugin <mosquitto_sse.so>" and "plugin_opt_<key>
    <value>" lines into broker.plugin_conf and (re)starts the broker: there
    pid and the exit code are the broker's, and logs() is the broker's log."""
    if FORM == "daemon":
        return DaemonBridge(broker, workdir, **opts)
    if FORM == "plugin":
        return PluginBridge(broker, workdir, **opts)
    raise NotImplementedError("SB_FORM=%s: this form has no harness yet" % FORM)


def only_forms(*forms):
    """Decorator: the test or class applies to these forms only."""
    return unittest.skipUnless(FORM in forms, "not applicable to the %s form" % FORM)
