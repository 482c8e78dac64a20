"""The MQTT side of the integration harness: a mosquitto of the test's own
(Broker), a plain subscriber (MqttSubscriber, mosquitto_sub), and publishing
with mosquitto_pub (run_pub, publish_lines)."""

import os
import resource
import subprocess

from harness_env import MOSQUITTO, MOSQUITTO_PUB, MOSQUITTO_SUB
from harness_procs import (free_port, listening, read_text, scaled, set_nofile_limit, stop_process,
                           wait_until)


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


def core_destination():
    """Where the kernel puts a core dump: (kernel.core_pattern, a note). A
    pattern without '/' names a file in the crashing process's working
    directory; one that starts with '|' hands the core to a program (systemd-
    coredump, apport), which keeps it where that program says."""
    try:
        with open("/proc/sys/kernel/core_pattern") as f:
            pattern = f.read().strip()
    except OSError as e:
        return None, "kernel.core_pattern unreadable (%s)" % e
    if pattern.startswith("|"):
        return pattern, "cores are piped to %s (see its own store, e.g. coredumpctl)" % \
            pattern[1:].split()[0]
    if "/" in pattern:
        return pattern, "cores are written to %s" % pattern
    return pattern, "cores are written to the broker's working directory as %s" % pattern


class BrokerExited(AssertionError):
    """mosquitto ended while it was expected to start."""


class Broker:
    """A mosquitto on a free loopback port, with a generated config in workdir.
    extra_conf lines are appended to the config, then plugin_conf lines (the
    plugin form's); env holds more environment variables for the process (the
    plugin form's LD_PRELOAD), nofile_limit its soft RLIMIT_NOFILE. With
    core_dir set, the broker runs in that directory with RLIMIT_CORE
    unlimited: a crash leaves its core there when kernel.core_pattern is a
    plain file name (see core_destination())."""

    def __init__(self, workdir, extra_conf=None):
        self.workdir = workdir
        self.port = free_port()
        self.conf_path = os.path.join(workdir, "mosquitto.conf")
        self.log_path = os.path.join(workdir, "mosquitto.log")
        self.extra_conf = list(extra_conf or [])
        self.plugin_conf = []
        self.env = {}
        self.nofile_limit = None
        self.core_dir = None
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
        set_nofile_limit(self.nofile_limit)
        if self.core_dir:
            resource.setrlimit(resource.RLIMIT_CORE,
                               (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            os.chdir(self.core_dir)

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
                return listening(self.port)
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
