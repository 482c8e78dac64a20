"""Helpers of the scale-out tests (test_fault_scale): more than one bridge
instance, more than one broker, and brokers other than mosquitto.

  Endpoint        an MQTT listener on 127.0.0.1:port that is not the test's
                  Broker (a RabbitMQ node): what DaemonBridge needs of a
                  broker (.port), plus publish() like Broker's
  BridgedBroker   a second mosquitto joined to a first by mosquitto's own
                  bridge (connection / address / topic ... both)
  RabbitNode      a private RabbitMQ node with the rabbitmq_mqtt plugin, on
                  free ports, with every file in the test's workdir
"""

import os
import shutil
import signal
import subprocess
import time
import uuid

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

    @classmethod
    def available(cls):
        return os.access(cls.SERVER, os.X_OK)

    def __init__(self, workdir):
        self.dir = os.path.join(workdir, "rabbitmq")
        self.home = os.path.join(self.dir, "home")
        for d in (self.dir, self.home):
            os.makedirs(d, exist_ok=True)
        self.name = "sbtest%d%s" % (os.getpid(), uuid.uuid4().hex[:6])
        self.node = "%s@localhost" % self.name
        self.amqp_port = free_port()
        self.mqtt_port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
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
            ]) + "\n")
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
        })
        for k in ("ERL_LIBS", "LD_PRELOAD", "ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS"):
            env.pop(k, None)
        return env

    def start(self, timeout=60):
        """Starts the node and waits (up to scaled(timeout)) until its MQTT
        listener accepts connections and its plugin is up (the log says
        so). Raises AssertionError with the log if it ends or times out."""
        assert self.proc is None
        self._write_files()
        self._log = open(self.log_path, "ab")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen([self.SERVER], cwd=self.dir, env=self.env(),
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("rabbitmq-server exited with %s at start:\n%s" %
                                     (self.proc.returncode, self.logs(limit=200)))
            return listening(self.mqtt_port) and "Server startup complete" in self.logs()
        try:
            wait_until(up, timeout, interval=0.2, what="RabbitMQ's MQTT listener on %d" %
                       self.mqtt_port)
        except AssertionError as e:
            raise AssertionError("%s\n%s" % (e, self.logs(limit=200)))
        self.boot_seconds = time.monotonic() - self.started_at
        return self

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
