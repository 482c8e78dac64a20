"""Helpers of the scale-out tests (test_fault_scale): more than one bridge
instance, more than one broker, and brokers other than mosquitto.

  Endpoint        an MQTT listener on 127.0.0.1:port that is not the test's
                  Broker (a RabbitMQ node): what DaemonBridge needs of a
                  broker (.port), plus publish() like Broker's
  BridgedBroker   a second mosquitto joined to a first by mosquitto's own
                  bridge (connection / address / topic ... both)
  RabbitNode      a private RabbitMQ node with the rabbitmq_mqtt plugin, on
                  free ports, with every file in the test's workdir
  RabbitCluster   RabbitNodes sharing one cookie and one private epmd,
                  joined into one cluster with rabbitmqctl (stop_app,
                  join_cluster, start_app); kill() ends a node's Erlang VM
                  with SIGKILL by its pid
  rabbit_for_class  a RabbitNode or RabbitCluster that the tests of a class
                  share: skipped without RabbitMQ, removed after the class
"""

import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest
import uuid

from faultkit import connect_packet, publish_packet
from harness import (Broker, free_port, listening, publish_lines, read_text, scaled,
                     stop_process, wait_until)


class Endpoint:
    """An MQTT listener at 127.0.0.1:port (for DaemonBridge(endpoint, ...))."""

    def __init__(self, port):
        self.port = port

    def publish_lines(self, topic, payloads, qos=1):
        publish_lines(self.port, topic, payloads, qos)


class BridgedBroker(Broker):
    """A mosquitto in its own directory under workdir whose config bridges
    topic_pattern both ways (QoS 1) with the mosquitto at upstream.port:
    mosquitto's bridge is a client of the upstream broker that subscribes
    the pattern there and publishes what it gets here, and the other way
    round. Messages the bridge itself published are not sent back (the
    bridge connects with mosquitto's bridge protocol flag, try_private)."""

    def __init__(self, workdir, upstream, name="b2", topic_pattern="sync/#", extra_conf=None):
        d = os.path.join(workdir, name)
        os.makedirs(d, exist_ok=True)
        self.bridge_name = "%s-to-upstream" % name
        super().__init__(d, extra_conf)
        self.upstream = upstream
        self.bridge_conf = [
            "connection %s" % self.bridge_name,
            "address 127.0.0.1:%d" % upstream.port,
            "topic %s both 1" % topic_pattern,
            "cleansession true",
            "restart_timeout 1",
        ]

    def write_conf(self):
        """Broker's config (with the plugin's lines, if any), then the
        bridge's section last: the lines after `connection` belong to it."""
        super().write_conf()
        with open(self.conf_path, "a") as f:
            f.write("\n".join(self.bridge_conf) + "\n")


class RabbitNode:
    """A private RabbitMQ node: its own node name, Erlang port mapper
    (ERL_EPMD_PORT) and cookie (HOME), data and logs under workdir/rabbitmq,
    AMQP, distribution and MQTT listeners on free loopback ports, the
    rabbitmq_mqtt plugin enabled through its own enabled_plugins file, and
    anonymous MQTT logins mapped to guest (allowed on loopback). Nothing of
    /etc/rabbitmq or /var/lib/rabbitmq is read or written.

    The server is run from /usr/lib/rabbitmq/bin (Debian's /usr/sbin wrapper
    would switch to the rabbitmq user and its fixed directories)."""

    SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
    CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"

    @classmethod
    def available(cls):
        return os.access(cls.SERVER, os.X_OK)

    def __init__(self, workdir, label="rabbitmq", home=None, epmd_port=None, extra_conf=()):
        """label names the node's directory under workdir; a cluster's
        nodes share home (the Erlang cookie) and epmd_port, and extra_conf
        lines are added to rabbitmq.conf."""
        self.dir = os.path.join(workdir, label)
        self.home = home or os.path.join(self.dir, "home")
        for d in (self.dir, self.home):
            os.makedirs(d, exist_ok=True)
        self.name = "sb%d%s" % (os.getpid(), uuid.uuid4().hex[:6])
        self.node = "%s@localhost" % self.name
        self.amqp_port = free_port()
        self.mqtt_port = free_port()
        self.dist_port = free_port()
        self.epmd_port = epmd_port or free_port()
        self.own_epmd = epmd_port is None  # stop() ends it
        self.extra_conf = list(extra_conf)
        self.port = self.mqtt_port  # what DaemonBridge connects to
        self.log_path = os.path.join(self.dir, "console.log")
        self.proc = None
        self._log = None

    def _write_files(self):
        with open(os.path.join(self.dir, "rabbitmq.conf"), "w") as f:
            f.write("\n".join([
                "listeners.tcp.default = 127.0.0.1:%d" % self.amqp_port,
                "mqtt.listeners.tcp.default = 127.0.0.1:%d" % self.mqtt_port,
                "mqtt.allow_anonymous = true",
                "mqtt.default_user = guest",
                "mqtt.default_pass = guest",
                "mqtt.vhost = /",
                "loopback_users.guest = true",
                "log.console = true",
                "log.console.level = info",
                "log.file = false",
                # a small test machine: no disk alarm for a full-ish /tmp
                "disk_free_limit.absolute = 1MB",
            ] + self.extra_conf) + "\n")
        with open(os.path.join(self.dir, "enabled_plugins"), "w") as f:
            f.write("[rabbitmq_mqtt].\n")
        with open(os.path.join(self.dir, "advanced.config"), "w") as f:
            f.write("[].\n")
        with open(os.path.join(self.dir, "rabbitmq-env.conf"), "w") as f:
            f.write("# empty: the environment comes from the test\n")

    def env(self):
        env = dict(os.environ)
        env.update({
            "HOME": self.home,  # the Erlang cookie goes here
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONF_ENV_FILE": os.path.join(self.dir, "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": os.path.join(self.dir, "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": os.path.join(self.dir, "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": os.path.join(self.dir, "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": os.path.join(self.dir, "mnesia"),
            "RABBITMQ_LOG_BASE": os.path.join(self.dir, "log"),
            "RABBITMQ_LOGS": "-",
            "RABBITMQ_PID_FILE": os.path.join(self.dir, "rabbitmq.pid"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": os.path.join(self.dir, "plugins-expand"),
            "RABBITMQ_FEATURE_FLAGS_FILE": os.path.join(self.dir, "feature_flags"),
            # the distribution listener and epmd on loopback only
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        })
        for k in ("ERL_LIBS", "LD_PRELOAD", "ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS"):
            env.pop(k, None)
        return env

    def spawn(self):
        """Starts the node's process without waiting for it (see wait_up)."""
        assert self.proc is None
        self._write_files()
        self._log = open(self.log_path, "ab")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen([self.SERVER], cwd=self.dir, env=self.env(),
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_up(self, timeout=60, times=1):
        """Waits (up to scaled(timeout)) until the MQTT listener accepts
        connections and the log has said "Server startup complete" times
        times (a node that joined a cluster starts its app again). Raises
        AssertionError with the log if the node ends or times out."""
        def up():
            if self.proc.poll() is not None:
                raise AssertionError("rabbitmq-server %s exited with %s:\n%s" %
                                     (self.node, self.proc.returncode, self.logs(limit=200)))
            return (self.logs().count("Server startup complete") >= times and
                    listening(self.mqtt_port))
        try:
            wait_until(up, timeout, interval=0.2, what="RabbitMQ's MQTT listener on %d (%s)" %
                       (self.mqtt_port, self.node))
        except AssertionError as e:
            raise AssertionError("%s\n%s" % (e, self.logs(limit=200)))
        self.boot_seconds = time.monotonic() - self.started_at
        return self

    def start(self, timeout=60):
        """Starts the node and waits (up to scaled(timeout)) until its MQTT
        listener accepts connections and its plugin is up (the log says
        so). Raises AssertionError with the log if it ends or times out."""
        self.spawn()
        return self.wait_up(timeout)

    def ctl(self, *args, timeout=60):
        """Runs rabbitmqctl -n <this node> args; returns its output. Raises
        AssertionError if it fails or takes longer than scaled(timeout)."""
        cmd = [self.CTL, "-n", self.node] + list(args)
        try:
            r = subprocess.run(cmd, env=self.env(), stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=scaled(timeout))
        except subprocess.TimeoutExpired:
            raise AssertionError("%s took over %ss" % (" ".join(cmd), scaled(timeout)))
        out = r.stdout.decode("utf-8", "replace")
        if r.returncode != 0:
            raise AssertionError("%s failed (%d):\n%s" % (" ".join(cmd), r.returncode, out))
        return out

    @property
    def beam_pid(self):
        """The pid of the node's Erlang VM (the node writes it to its pid
        file once it runs): rabbitmq-server is a shell script around it."""
        with open(os.path.join(self.dir, "rabbitmq.pid")) as f:
            return int(f.read().strip())

    def kill(self):
        """Ends the node's Erlang VM at once with SIGKILL, by its pid, as a
        crash would (no clean stop, every socket closed by the kernel).
        Returns the time.monotonic() of the kill."""
        pid = self.beam_pid
        os.kill(pid, signal.SIGKILL)
        return time.monotonic()

    def stop(self, timeout=30):
        """Stops the node (SIGTERM: rabbitmq-server stops the VM cleanly),
        then whatever is left of its process group, then its private epmd.
        Idempotent; returns the exit code."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        stop_process(proc, timeout)
        try:  # erl_child_setup and friends share the session we gave it
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        if self.own_epmd:
            self._stop_epmd()
        if self._log:
            self._log.close()
            self._log = None
        return proc.returncode

    def _stop_epmd(self):
        """The node started an epmd on our private ERL_EPMD_PORT: end it."""
        epmd = shutil.which("epmd") or "/usr/bin/epmd"
        if os.access(epmd, os.X_OK):
            subprocess.run([epmd, "-port", str(self.epmd_port), "-kill"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env=self.env(), timeout=scaled(10))

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def logs(self, limit=None):
        return read_text(self.log_path, limit)

    def publish_lines(self, topic, payloads, qos=1):
        publish_lines(self.mqtt_port, topic, payloads, qos)


class RabbitCluster:
    """n RabbitNodes on loopback (labels rabbit1..rabbitN under workdir)
    that share one Erlang cookie (one HOME) and one private epmd port, each
    with its own node name, AMQP, distribution and MQTT ports and data
    directory, joined into one cluster the documented way: every node after
    the first runs rabbitmqctl stop_app, join_cluster <first>, start_app.
    conf lines go into every node's rabbitmq.conf."""

    def __init__(self, workdir, n=3, conf=()):
        self.home = os.path.join(workdir, "rabbit-home")
        os.makedirs(self.home, exist_ok=True)
        # the cookie every node and rabbitmqctl read (HOME/.erlang.cookie)
        cookie = os.path.join(self.home, ".erlang.cookie")
        with open(cookie, "w") as f:
            f.write(uuid.uuid4().hex.upper())
        os.chmod(cookie, 0o400)
        self.epmd_port = free_port()
        self.nodes = [RabbitNode(workdir, "rabbit%d" % (i + 1), home=self.home,
                                 epmd_port=self.epmd_port, extra_conf=conf)
                      for i in range(n)]

    def start(self, timeout=90):
        """Boots the nodes side by side, then joins each to the first.
        Returns the seconds it took. Each step is bounded (scaled(timeout)
        for the boot, a minute for each rabbitmqctl call)."""
        started = time.monotonic()
        for node in self.nodes:
            node.spawn()
        for node in self.nodes:
            node.wait_up(timeout)
        first = self.nodes[0]
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", first.node)
            node.ctl("start_app")
            node.wait_up(timeout, times=2)
        status = first.ctl("cluster_status", "--formatter", "json")
        for node in self.nodes:
            assert node.node in status, "%s is not in the cluster:\n%s" % (node.node, status)
        self.boot_seconds = time.monotonic() - started
        return self.boot_seconds

    def stop(self):
        """Stops every node (SIGTERM by pid, then SIGKILL of what is left of
        its process group), then the shared epmd. Idempotent."""
        for node in self.nodes:
            node.stop()
        if self.nodes:
            self.nodes[0]._stop_epmd()

    def logs(self, limit=None):
        return "\n".join("---- %s (%s) ----\n%s" % (os.path.basename(n.dir), n.node,
                                                     n.logs(limit)) for n in self.nodes)


def rabbit_for_class(cls, make, prefix, timeout):
    """For setUpClass of a test class whose tests share one RabbitMQ: skips
    the class (unittest.SkipTest) unless rabbitmq-server is installed; else
    make(workdir) (a RabbitNode or a RabbitCluster) in a new temporary
    directory named prefix..., started within scaled(timeout), is returned.
    It is stopped and its directory removed when the class is done (a class
    cleanup), or at once if its start fails or is interrupted."""
    if not RabbitNode.available():
        raise unittest.SkipTest("rabbitmq-server is not installed (%s missing; "
                                "scripts/deps.sh --test installs it)" % RabbitNode.SERVER)
    workdir = tempfile.mkdtemp(prefix=prefix)
    rabbit = make(workdir)

    def remove():
        rabbit.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    try:
        rabbit.start(timeout=timeout)
    except BaseException:
        remove()
        raise
    cls.addClassCleanup(remove)
    return rabbit


class SeqPublisher:
    """A backend that publishes a numbered sequence at QoS 1 (MQTT 3.1.1 on
    a plain socket, clean session), one message at a time: message k+1
    goes out only once message k is acknowledged (PUBACK), so what the
    broker takes is in order. A PUBACK that does not come within
    ack_timeout, or a lost connection, makes it connect again and send the
    same message again (DUP set): nothing is left unacknowledged, and a
    message may reach subscribers twice (the bridge drops a repeated id).
    run() is meant for a thread; acked[k] is the time.monotonic() of the
    k-th acknowledgement and sent[k] that of its first sending, resends
    counts the messages sent again."""

    def __init__(self, port, messages, interval=0.02, ack_timeout=10, client_id=None):
        self.port = port
        self.messages = list(messages)  # (topic, payload bytes or str)
        self.interval = interval
        self.ack_timeout = ack_timeout
        self.client_id = client_id or "sb-seq-%s" % uuid.uuid4().hex[:8]
        self.acked = []
        self.sent = []
        self.resends = 0
        self.reconnects = 0
        self.error = None
        self.stop_flag = False
        self.sock = None
        self.pid = 0

    def _read_packet(self, deadline):
        def read(n):
            buf = b""
            while len(buf) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no answer from the broker")
                self.sock.settimeout(left)
                chunk = self.sock.recv(n - len(buf))
                if not chunk:
                    raise ConnectionError("the broker closed the connection")
                buf += chunk
            return buf
        first = read(1)[0]
        n, shift = 0, 0
        while True:
            b = read(1)[0]
            n += (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        return first, read(n) if n else b""

    def _connect(self):
        import socket
        if self.sock:
            self.sock.close()
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.ack_timeout)
        self.sock.sendall(connect_packet(self.client_id, clean_session=True))
        first, rest = self._read_packet(time.monotonic() + self.ack_timeout)
        if first != 0x20 or len(rest) != 2 or rest[1] != 0:
            raise ConnectionError("CONNACK %#x %r" % (first, rest))

    def run(self):
        try:
            self._run()
        except Exception as e:  # reported by the test
            self.error = e
        finally:
            if self.sock:
                self.sock.close()

    def _run(self):
        deadline_total = time.monotonic() + scaled(120)
        self._connect()
        next_at = time.monotonic()
        for k, (topic, payload) in enumerate(self.messages):
            if self.stop_flag:
                return
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            next_at = time.monotonic() + self.interval
            self.pid = self.pid % 65535 + 1
            data = payload.encode("utf-8") if isinstance(payload, str) else payload
            dup = False
            self.sent.append(time.monotonic())
            while True:
                if time.monotonic() > deadline_total:
                    raise AssertionError("message %d not acknowledged in time" % k)
                try:
                    self.sock.sendall(publish_packet(topic, data, self.pid, qos=1, dup=dup))
                    ack_deadline = time.monotonic() + self.ack_timeout
                    while True:
                        first, rest = self._read_packet(ack_deadline)
                        if first >> 4 == 4 and rest[:2] == self.pid.to_bytes(2, "big"):
                            break
                    break
                except (OSError, TimeoutError, ConnectionError):
                    # again, on a new connection, until it is acknowledged
                    self.resends += 1
                    dup = True
                    while True:
                        try:
                            self.reconnects += 1
                            self._connect()
                            break
                        except (OSError, TimeoutError, ConnectionError):
                            if time.monotonic() > deadline_total:
                                raise
                            time.sleep(0.2)
            self.acked.append(time.monotonic())
