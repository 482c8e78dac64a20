"""Integration harness: a real mosquitto, the bridge, and raw SSE clients.

Every test starts its own broker on a free loopback port with a generated
config, starts the bridge against it, talks to it with real clients, stops
everything it started (also when it fails), and prints the broker's and the
bridge's logs when it fails.

The bridge comes in two forms (SPEC: "Two forms, one core"). The form is
chosen by the environment variable SB_FORM ("daemon", the default, or
"plugin") and built by make_bridge(); test classes only use the interface of
DaemonBridge below (start, stop, port, pid, logs, start_expect_failure), so
the same tests run against both forms. PluginBridge is that interface for the
plugin form, where the bridge is the broker itself: starting it (re)starts
the test's Broker with "plugin" and "plugin_opt_*" lines, stopping it stops
the broker, and its pid and log are the broker's. A test whose meaning holds
for one form only says so with @only_forms(...).

Environment:
  SB_FORM         daemon (default) or plugin
  SB_BRIDGE_BIN   the daemon (default: <repo>/build/bridge/mqtt-sse-bridge)
  SB_PLUGIN       the plugin (default: <repo>/build/plugin/mosquitto_sse.so)
  SB_PRELOAD      libraries (separated by ':' or spaces) put into LD_PRELOAD of
                  mosquitto in the plugin form: the sanitizer runtimes, when the
                  plugin is built with -DSB_SANITIZE=ON (libasan, libubsan) or
                  -DSB_TSAN=ON (libtsan) and mosquitto is not (CMakeLists.txt)
  SB_MOSQUITTO    the broker binary (default: mosquitto on PATH or /usr/sbin)
  SB_TIME_SCALE   multiplies every timeout (e.g. 3 under valgrind)
"""

import base64
import collections
import hashlib
import hmac
import http.client
import json
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

FORM = os.environ.get("SB_FORM", "daemon")
BRIDGE_BIN = os.environ.get("SB_BRIDGE_BIN") or os.path.join(
    REPO, "build", "bridge", "mqtt-sse-bridge")
PLUGIN_SO = os.path.abspath(os.environ.get("SB_PLUGIN") or os.path.join(
    REPO, "build", "plugin", "mosquitto_sse.so"))
PRELOAD = [p for p in re.split(r"[:\s]+", os.environ.get("SB_PRELOAD", "")) if p]
# mosquitto's own leaks on its error exits (see the file), under SB_PRELOAD
LSAN_SUPPRESSIONS = os.path.join(HERE, "lsan-mosquitto.supp")
TIME_SCALE = float(os.environ.get("SB_TIME_SCALE", "1"))

# What a sanitizer writes when it finds something (ASan, LSan, UBSan, TSan).
SANITIZER_REPORTS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer")


def _find_tool(name, env):
    path = os.environ.get(env) or shutil.which(name)
    if not path:
        for d in ("/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"):
            if os.access(os.path.join(d, name), os.X_OK):
                return os.path.join(d, name)
    return path or name


MOSQUITTO = _find_tool("mosquitto", "SB_MOSQUITTO")
MOSQUITTO_PUB = _find_tool("mosquitto_pub", "SB_MOSQUITTO_PUB")
MOSQUITTO_SUB = _find_tool("mosquitto_sub", "SB_MOSQUITTO_SUB")


def scaled(seconds):
    return seconds * TIME_SCALE


def free_port():
    """Returns a TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout, interval=0.02, what="condition"):
    """Polls predicate until it returns a true value; returns that value.
    Raises AssertionError naming `what` after timeout seconds."""
    deadline = time.monotonic() + scaled(timeout)
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (scaled(timeout), what))
        time.sleep(interval)


def raise_nofile_limit(want):
    """Raises this process's soft RLIMIT_NOFILE towards want (up to the hard
    limit). Returns the soft limit in force afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_seconds(pid):
    """utime + stime of a process, in seconds, from /proc/PID/stat."""
    with open("/proc/%d/stat" % pid) as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    """VmRSS of a process in KiB, from /proc/PID/status."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def stop_process(proc, timeout=10):
    """SIGTERM, then SIGKILL after timeout (scaled); returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(scaled(timeout))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def run_pub(cmd, data):
    """Runs mosquitto_pub cmd with data on its stdin; fails unless it exits 0
    (the broker acknowledged everything)."""
    r = subprocess.run(cmd, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=scaled(20))
    if r.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (" ".join(cmd), r.returncode,
                                                      r.stderr.decode(errors="replace")))


def publish_lines(port, topic, payloads, qos=1):
    """Publishes several messages on one topic of the broker at
    127.0.0.1:port, in order, with one mosquitto_pub -l (payloads must not
    hold newlines)."""
    lines = []
    for p in payloads:
        b = p.encode("utf-8") if isinstance(p, str) else p
        assert b"\n" not in b and b, "publish_lines needs non-empty single-line payloads"
        lines.append(b)
    run_pub([MOSQUITTO_PUB, "-h", "127.0.0.1", "-p", str(port), "-q", str(qos), "-t", topic, "-l"],
            b"\n".join(lines) + b"\n")


def read_text(path, limit=None):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return "<cannot read %s: %s>" % (path, e)
    text = data.decode("utf-8", "replace")
    if limit and text.count("\n") > limit:
        lines = text.splitlines()
        keep_head = limit // 5
        text = "\n".join(lines[:keep_head] + ["... (%d lines left out) ..." %
                                              (len(lines) - limit)] +
                         lines[-(limit - keep_head):])
    return text


# ---- JWT (test side only) ----------------------------------------------------

def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_jwt(secret, claims, alg="HS256", header=None):
    """Returns a compact JWS. alg HS256 signs with secret; alg "none" gives an
    unsigned token (for the refusal tests)."""
    hdr = {"alg": alg, "typ": "JWT"}
    if header:
        hdr.update(header)
    signing_input = (_b64url(json.dumps(hdr, separators=(",", ":")).encode()) + "." +
                     _b64url(json.dumps(claims, separators=(",", ":")).encode()))
    if alg == "none":
        return signing_input + "."
    if alg != "HS256":
        raise ValueError("only HS256 and none are made here")
    key = secret.encode() if isinstance(secret, str) else secret
    sig = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + _b64url(sig)


# ---- events --------------------------------------------------------------------

def compact(obj):
    """The compact one-line JSON text of obj (UTF-8 kept as is)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def is_compact_json(text):
    """True if text is JSON with no whitespace outside strings (compared with
    a compact re-serialisation that keeps key order)."""
    try:
        obj = json.loads(text, object_pairs_hook=collections.OrderedDict)
    except ValueError:
        return False
    return compact(obj) == text


ISO_MS_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


# ---- the broker ----------------------------------------------------------------

class BrokerExited(AssertionError):
    """mosquitto ended while it was expected to start."""


class Broker:
    """A mosquitto on a free loopback port, with a generated config in workdir.
    extra_conf lines are appended to the config, then plugin_conf lines (the
    plugin form's); env holds more environment variables for the process (the
    plugin form's LD_PRELOAD), nofile_limit its soft RLIMIT_NOFILE."""

    def __init__(self, workdir, extra_conf=None):
        self.workdir = workdir
        self.port = free_port()
        self.conf_path = os.path.join(workdir, "mosquitto.conf")
        self.log_path = os.path.join(workdir, "mosquitto.log")
        self.extra_conf = list(extra_conf or [])
        self.plugin_conf = []
        self.env = {}
        self.nofile_limit = None
        self.proc = None
        self._log = None
        self._started_once = False

    def write_conf(self):
        try:
            import pwd
            user = pwd.getpwuid(os.getuid()).pw_name
        except (ImportError, KeyError):
            user = "root"
        lines = [
            "listener %d 127.0.0.1" % self.port,
            "allow_anonymous true",
            "persistence false",
            # stay the user we are (mosquitto run as root would switch to
            # 'mosquitto', which cannot read the temp dir)
            "user %s" % user,
            "log_dest stderr",
            "log_type all",
            "log_timestamp true",
            "log_timestamp_format %H:%M:%S",
            "connection_messages true",
            "max_queued_messages 100000",
        ] + self.extra_conf + self.plugin_conf
        with open(self.conf_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    def _preexec(self):
        if self.nofile_limit:
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(self.nofile_limit, hard), hard))

    def _spawn(self):
        assert self.proc is None, "broker already running"
        self.write_conf()
        self._log = open(self.log_path, "ab")
        self._log.write(b"---- harness: starting mosquitto ----\n")
        self._log.flush()
        env = None
        if self.env:
            env = dict(os.environ)
            env.update(self.env)
        self.proc = subprocess.Popen([MOSQUITTO, "-c", self.conf_path], stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=self._log, env=env,
                                     preexec_fn=self._preexec)

    def log_size(self):
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def logs_since(self, offset):
        """What the log holds after byte offset (see log_size)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", "replace")
        except OSError as e:
            return "<cannot read %s: %s>" % (self.log_path, e)

    def start(self, timeout=10):
        """Starts the broker on self.port (the same port on a restart) and
        waits until it accepts connections. Raises BrokerExited if it ends
        instead. On the first start a port that was taken meanwhile (tests
        run in parallel) is replaced by another."""
        for attempt in range(3):
            offset = self.log_size()
            self._spawn()

            def accepting():
                if self.proc.poll() is not None:
                    raise BrokerExited("mosquitto exited with %s:\n%s" %
                                       (self.proc.returncode, self.logs_since(offset)))
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                        return True
                except OSError:
                    return False
            try:
                wait_until(accepting, timeout, what="mosquitto to listen on %d" % self.port)
            except BrokerExited:
                again = (not self._started_once and attempt < 2 and
                         "Error: Address already in use" in self.logs_since(offset))
                self.stop()
                if not again:
                    raise
                self.port = free_port()
                continue
            self._started_once = True
            return

    def run_to_exit(self, timeout=10):
        """Starts the broker expecting it to refuse its configuration.
        Returns (exit code, what it logged meanwhile). Fails if it still runs
        after timeout."""
        offset = self.log_size()
        self._spawn()
        try:
            rc = self.proc.wait(scaled(timeout))
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError("mosquitto did not stop within %ss on a bad configuration:\n%s"
                                 % (timeout, self.logs_since(offset)))
        self.stop()
        return rc, self.logs_since(offset)

    def stop(self, timeout=10):
        """Stops the broker (SIGTERM, then SIGKILL). Returns its exit code."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        rc = stop_process(proc, timeout)
        if self._log:
            self._log.close()
            self._log = None
        return rc

    def restart(self):
        self.stop()
        self.start()

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid

    def logs(self, limit=None):
        return read_text(self.log_path, limit)

    def publish(self, topic, payload, qos=1, retain=False):
        """Publishes one message with mosquitto_pub (payload: str or bytes,
        any bytes; None sends a zero-length message). Returns when the broker
        has acknowledged it."""
        cmd = [MOSQUITTO_PUB, "-h", "127.0.0.1", "-p", str(self.port), "-q", str(qos), "-t",
               topic]
        if retain:
            cmd.append("-r")
        if payload is None:
            cmd.append("-n")
            data = b""
        else:
            cmd.append("-s")
            data = payload.encode("utf-8") if isinstance(payload, str) else payload
        run_pub(cmd, data)

    def publish_lines(self, topic, payloads, qos=1):
        """Publishes several messages on one topic, in order, with one
        mosquitto_pub -l (payloads must not hold newlines)."""
        publish_lines(self.port, topic, payloads, qos)


class MqttSubscriber:
    """A plain MQTT subscriber of broker: mosquitto_sub -v for topics until
    it has count messages. Subscribed (the broker logged its SUBACK) when the
    constructor returns; messages() waits for them."""

    def __init__(self, broker, topics, count, qos=1, timeout=60):
        self.count = count
        self.client_id = "sb-sub-%d-%d" % (os.getpid(), id(self))
        cmd = [MOSQUITTO_SUB, "-h", "127.0.0.1", "-p", str(broker.port), "-q", str(qos),
               "-i", self.client_id, "-v", "-C", str(count), "-W", str(int(scaled(timeout)))]
        for t in topics:
            cmd += ["-t", t]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        wait_until(lambda: self.proc.poll() is not None or
                   "Sending SUBACK to %s" % self.client_id in broker.logs(), 10,
                   what="the SUBACK to %s" % self.client_id)
        if self.proc.poll() is not None:
            raise AssertionError("mosquitto_sub ended at once (%d): %r" %
                                 (self.proc.returncode, self.proc.stderr.read()))

    def messages(self, timeout=30):
        """Waits for mosquitto_sub to end (count messages, or its timeout);
        returns [(topic, payload bytes)] in the order received (payloads must
        not hold newlines)."""
        try:
            out, err = self.proc.communicate(timeout=scaled(timeout))
        except subprocess.TimeoutExpired:
            self.close()
            out, err = self.proc.communicate()
        got = []
        for line in out.split(b"\n")[:-1]:
            topic, _, payload = line.partition(b" ")
            got.append((topic.decode("utf-8"), payload))
        self.stderr = err
        return got

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# ---- the bridge: daemon form -----------------------------------------------------

class HttpResponse:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # http.client.HTTPMessage (case-insensitive get)
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<HTTP %d %r %r>" % (self.status, dict(self.headers.items()), self.body[:300])


def http_request(port, method, path, headers=None, body=None, timeout=10):
    """One HTTP request to 127.0.0.1:port on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=scaled(timeout))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return HttpResponse(r.status, r.headers, data)
    finally:
        conn.close()


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
    """The HTTP side of a bridge of either form, on self.port."""

    def request(self, method, path, headers=None, body=None, timeout=10):
        return http_request(self.port, method, path, headers, body, timeout)

    def healthz(self):
        return self.request("GET", "/healthz")

    def metrics(self):
        r = self.request("GET", "/metrics")
        if r.status != 200:
            raise AssertionError("/metrics answered %r" % r)
        return parse_metrics(r.body.decode("utf-8"))


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
        if self.nofile_limit:
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(self.nofile_limit, hard), hard))

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
            try:
                r = http_request(self.port, "GET", "/healthz", timeout=2)
            except OSError:
                return False
            return r.status == 200 or (not wait_healthy and r.status == 503)
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


# ---- the bridge: plugin form -------------------------------------------------------

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
            try:
                r = http_request(self.port, "GET", "/healthz", timeout=2)
            except OSError:
                return False
            return r.status == 200 or (not wait_healthy and r.status == 503)
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


# ---- SSE clients -------------------------------------------------------------------

class Event:
    """One dispatched SSE event."""

    def __init__(self, eid, data, fields, raw, when):
        self.id = eid            # the id line of this event's block, or None
        self.data = data         # the data lines joined with \n
        self.fields = fields     # every (field, value) of the block, in order
        self.raw = raw           # the exact bytes of the block, blank line included
        self.time = when
        try:
            self.json = json.loads(data)
        except ValueError:
            self.json = None

    @property
    def marker(self):
        """payload.m of the event, the tests' name for it."""
        p = self.json.get("payload") if isinstance(self.json, dict) else None
        return p.get("m") if isinstance(p, dict) else None

    def __repr__(self):
        return "Event(id=%r, data=%r)" % (self.id, self.data[:200])


class Reactor:
    """One background thread that reads every SSE client's socket (selectors),
    so that a thousand idle streams cost one thread."""

    def __init__(self):
        self.cond = threading.Condition()
        self.sel = selectors.DefaultSelector()
        self._wr, self._ww = socket.socketpair()
        self._wr.setblocking(False)
        self.sel.register(self._wr, selectors.EVENT_READ, None)
        self._calls = collections.deque()
        self._running = True
        self.clients = []
        self.thread = threading.Thread(target=self._run, name="sse-reactor", daemon=True)
        self.thread.start()

    def call(self, fn, wait=True):
        """Runs fn() on the reactor thread; waits for it when wait."""
        done = threading.Event()
        box = []

        def wrapped():
            try:
                box.append(fn())
            finally:
                done.set()
        self._calls.append(wrapped)
        try:
            self._ww.send(b"x")
        except BlockingIOError:
            pass
        if wait and not done.wait(scaled(30)):
            raise AssertionError("the SSE reactor thread does not answer")
        return box[0] if box else None

    def _run(self):
        while self._running:
            try:
                ready = self.sel.select(timeout=0.5)
            except OSError:
                continue
            for key, _ in ready:
                if key.data is None:
                    try:
                        while self._wr.recv(4096):
                            pass
                    except BlockingIOError:
                        pass
                    continue
                try:
                    key.data._on_readable()
                except Exception as e:  # a parse error: record it, drop the client
                    with self.cond:
                        key.data.error = "%s: %s" % (type(e).__name__, e)
                        key.data.eof = True
                        self.cond.notify_all()
                    key.data._close_now()
            while self._calls:
                self._calls.popleft()()

    def register(self, client):
        self.sel.register(client.sock, selectors.EVENT_READ, client)

    def unregister(self, client):
        try:
            self.sel.unregister(client.sock)
        except (KeyError, ValueError):
            pass

    def close_all(self):
        def closer():
            for c in self.clients:
                c._close_now()
        self.call(closer)

    def stop(self):
        if not self._running:
            return
        try:
            self.close_all()
        finally:
            self._running = False
            try:
                self._ww.send(b"x")
            except OSError:
                pass
            self.thread.join(scaled(10))
            self.sel.close()
            self._wr.close()
            self._ww.close()


class SSEClient:
    """A raw HTTP/1.1 client of one SSE stream: sends GET, parses the head,
    decodes chunked transfer encoding and the SSE format, and keeps the exact
    bytes received (wire) and the decoded body (body). All state is guarded
    by the reactor's condition; read it through the wait_* and snapshot
    methods from the test thread."""

    def __init__(self, reactor, port, path, params=None, headers=None, query=None,
                 method="GET", name=None):
        self.reactor = reactor
        self.name = name or (params or {}).get("deviceId", "client")
        self.wire = bytearray()
        self.body = bytearray()
        self.status = None
        self.reason = None
        self.headers = {}        # lower-case name -> value (last wins)
        self.header_list = []    # (name, value) as sent
        self.events = []
        self.comments = []       # (text, time)
        self.retries = []
        self.ended = False       # the body ended as HTTP says (chunked 0 / length)
        self.eof = False         # the server closed the connection
        self.reset = False       # ... with a reset
        self.connected_at = None
        self.first_byte_at = None
        self._head = bytearray()
        self._chunked = False
        self._length = None
        self._cbuf = bytearray()
        self._chunk_left = None  # bytes left in the current chunk (+2 for CRLF)
        self._trailers = False
        self._lbuf = bytearray()
        self._block = []         # fields of the event being read
        self._block_raw = bytearray()
        self._data = None
        self._block_id = None
        self._closed = False
        self.chunk_errors = []   # chunk framing that is not CRLF where it must be
        self.error = None        # what the client could not parse, if anything

        if query is None:
            query = urllib.parse.urlencode(params or {})
        target = path + ("?" + query if query else "")
        lines = ["%s %s HTTP/1.1" % (method, target), "Host: 127.0.0.1:%d" % port,
                 "Accept: text/event-stream"]
        for k, v in (headers or {}).items():
            lines.append("%s: %s" % (k, v))
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=scaled(10))
        self.sock.sendall(request)
        self.sock.setblocking(False)
        self.connected_at = time.monotonic()
        reactor.clients.append(self)
        reactor.call(lambda: reactor.register(self), wait=False)

    # ---- reactor thread ----

    def _on_readable(self):
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except ConnectionResetError:
            with self.reactor.cond:
                self.reset = True
                self.eof = True
                self.reactor.cond.notify_all()
            self._close_now()
            return
        with self.reactor.cond:
            if not data:
                self.eof = True
            else:
                if self.first_byte_at is None:
                    self.first_byte_at = time.monotonic()
                self.wire += data
                self._feed_wire(bytes(data))
            self.reactor.cond.notify_all()
        if not data:
            self._close_now()

    def _close_now(self):
        if self._closed:
            return
        self._closed = True
        self.reactor.unregister(self)
        try:
            self.sock.close()
        except OSError:
            pass

    def _feed_wire(self, data):
        if self.status is None:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = bytes(self._head[:end]), bytes(self._head[end + 4:])
            self._parse_head(head.decode("iso-8859-1"))
        if self._chunked:
            self._feed_chunked(data)
        elif self._length is not None:
            take = data[:max(0, self._length - len(self.body))]
            self._feed_body(take)
            if len(self.body) >= self._length:
                self.ended = True
        else:
            self._feed_body(data)

    def _parse_head(self, head):
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        self.status = int(parts[1])
        self.reason = parts[2] if len(parts) > 2 else ""
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.header_list.append((k, v.strip()))
            self.headers[k.strip().lower()] = v.strip()
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            self._chunked = True
        elif "content-length" in self.headers:
            self._length = int(self.headers["content-length"])
            if self._length == 0:
                self.ended = True

    def _feed_chunked(self, data):
        self._cbuf += data
        while not self.ended:
            if self._trailers:
                end = self._cbuf.find(b"\r\n")
                if end < 0:
                    return
                line = self._cbuf[:end]
                del self._cbuf[:end + 2]
                if not line:
                    self.ended = True
                continue
            if self._chunk_left is None:
                end = self._cbuf.find(b"\r\n")
                if end < 0:
                    return
                size = int(bytes(self._cbuf[:end]).split(b";")[0].strip(), 16)
                del self._cbuf[:end + 2]
                if size == 0:
                    self._trailers = True
                    continue
                self._chunk_left = size + 2
            if not self._cbuf:
                return
            left = self._chunk_left
            take = min(len(self._cbuf), left)
            piece = bytes(self._cbuf[:take])
            del self._cbuf[:take]
            self._chunk_left = left - take
            data_bytes = min(take, max(0, left - 2))
            self._feed_body(piece[:data_bytes])
            start = 0 if left >= 2 else 2 - left  # where in the CRLF this piece starts
            if piece[data_bytes:] != b"\r\n"[start:start + take - data_bytes]:
                self.chunk_errors.append(piece[data_bytes:])
            if self._chunk_left == 0:
                self._chunk_left = None

    def _feed_body(self, data):
        self.body += data
        if self.status != 200:
            return
        self._lbuf += data
        while True:
            n = len(self._lbuf)
            lf, cr = self._lbuf.find(b"\n"), self._lbuf.find(b"\r")
            i = min(x for x in (lf, cr, n) if x >= 0)
            if i == n:
                return
            if self._lbuf[i] == 0x0D:
                if i + 1 == n:
                    return  # a CR at the end: wait to see if LF follows
                eol = 2 if self._lbuf[i + 1] == 0x0A else 1
            else:
                eol = 1
            line = bytes(self._lbuf[:i])
            raw = bytes(self._lbuf[:i + eol])
            del self._lbuf[:i + eol]
            self._sse_line(line.decode("utf-8", "replace"), raw)

    def _sse_line(self, line, raw):
        now = time.monotonic()
        self._block_raw += raw
        if line == "":
            if self._data is not None:
                self.events.append(Event(self._block_id, self._data, self._block,
                                         bytes(self._block_raw), now))
            self._block = []
            self._block_raw = bytearray()
            self._data = None
            self._block_id = None
            return
        if line.startswith(":"):
            self.comments.append((line[1:].lstrip(" "), now))
            self._block_raw = self._block_raw[:-len(raw)]
            return
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        self._block.append((field, value))
        if field == "data":
            self._data = value if self._data is None else self._data + "\n" + value
        elif field == "id":
            self._block_id = value
        elif field == "retry":
            self.retries.append(value)

    # ---- test thread ----

    def close(self):
        """Closes the connection from the client side."""
        self.reactor.call(self._close_now)

    def _wait(self, predicate, timeout, what):
        with self.reactor.cond:
            if self.reactor.cond.wait_for(predicate, scaled(timeout)):
                return
            raise AssertionError("%s: timed out after %.1fs waiting for %s; status=%s, "
                                 "events=%r, body so far=%r%s" %
                                 (self.name, scaled(timeout), what, self.status,
                                  [e.id for e in self.events], bytes(self.body[-600:]),
                                  "; client error: " + self.error if self.error else ""))

    def wait_status(self, timeout=10):
        """Waits for the response head; returns the status code."""
        self._wait(lambda: self.status is not None or self.eof, timeout, "the response head")
        if self.status is None:
            raise AssertionError("%s: connection closed before a response head (%r)" %
                                 (self.name, bytes(self.wire)))
        return self.status

    def wait_open(self, timeout=10):
        """Waits for a 200 and the retry line (the stream is registered)."""
        status = self.wait_status(timeout)
        if status != 200:
            raise AssertionError("%s: expected 200, got %d %r" % (self.name, status,
                                                                   bytes(self.body)))
        self._wait(lambda: self.retries or self.eof, timeout, "the retry line")
        return self

    def wait_body(self, timeout=10):
        """Waits until the (non-stream) body ended; returns it."""
        self._wait(lambda: self.ended or self.eof, timeout, "the end of the body")
        return bytes(self.body)

    def wait_events(self, n, timeout=10):
        """Waits until at least n events arrived; returns a copy of all."""
        self._wait(lambda: len(self.events) >= n, timeout, "%d event(s)" % n)
        return self.snapshot()

    def wait_event_where(self, pred, timeout=10, what="an event"):
        self._wait(lambda: any(pred(e) for e in self.events), timeout, what)
        return self.snapshot()

    def wait_comments(self, n, timeout=10):
        self._wait(lambda: len(self.comments) >= n, timeout, "%d comment(s)" % n)
        with self.reactor.cond:
            return list(self.comments)

    def wait_closed(self, timeout=10):
        self._wait(lambda: self.eof, timeout, "the server to close")

    def snapshot(self):
        with self.reactor.cond:
            return list(self.events)

    def markers(self):
        return [e.marker for e in self.snapshot()]

    def ids(self):
        return [e.id for e in self.snapshot()]


def assert_quiet(clients, window=0.4):
    """Asserts that no client receives another event within window seconds."""
    if not clients:
        return
    reactor = clients[0].reactor
    with reactor.cond:
        before = [len(c.events) for c in clients]
    time.sleep(scaled(window))
    with reactor.cond:
        extra = [(c.name, c.events[b:]) for c, b in zip(clients, before) if len(c.events) > b]
    if extra:
        raise AssertionError("unexpected events arrived: %r" % extra)


def open_stuck_stream(port, query):
    """Opens an SSE request that is never read (a small receive buffer), for
    the slow-client tests. Returns the socket; the caller closes it."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(("GET /api/sse?%s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % query).encode())
    return s


def pump(broker, user, pacer, batches=12, per=100, size=8000):
    """Publishes batches*per events of about size bytes to user, one batch
    (under the default max_queue_bytes) at a time, waiting for the pacer
    client to read each batch. Returns the number of events published; their
    markers are 0..n-1."""
    pad = "x" * size
    n = len(pacer.snapshot())
    first = n
    for _ in range(batches):
        broker.publish_lines("sync/%s/timer" % user, [
            compact({"type": "t", "payload": {"m": n + i - first, "pad": pad}})
            for i in range(per)])
        n += per
        pacer.wait_events(n, timeout=20)
    return n - first


# ---- the test case base ------------------------------------------------------------

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
