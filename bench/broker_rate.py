#!/usr/bin/env python3
"""How many MQTT messages per second a broker on loopback takes and hands
out, as the bridge uses it: a backend publishing QoS 1 events on
sync/<user>/<channel>, and bridge instances subscribed at QoS 1 in a
persistent session, either with one wildcard (sync/+/+, subscribe_mode
wildcard: every instance gets every event) or with one filter per user
(per_user: an instance gets the events of its own users only).

  bench/broker_rate.py [--messages 20000] [--brokers mosquitto,rabbitmq,rabbitmq3]

For each broker (mosquitto 2.0; one RabbitMQ node; three RabbitMQ nodes in
a cluster with MQTT sessions in quorum queues, as tests/integration's
RabbitCluster starts them) it runs, with a publisher of its own (one
connection, QoS 1, 20 in flight as libmosquitto's default, the packets
built beforehand) and mosquitto_sub:
  in        --messages events, no subscriber
  wildcard  the same with 1, then 4 subscribers of sync/+/+ (clean session
            false, QoS 1): out = messages x subscribers
  per_user  4 subscribers with 250 user filters each (sync/u<k>/+), the
            events spread over 1,000 users: each event reaches one
With --bridge it also measures what an instance in wildcard mode pays for
the events of users it does not hold: a daemon (build/bridge) subscribed
to mosquitto, no stream open, --messages events published to it; its CPU
time (utime + stime, all threads) per event received.
Rates are messages over the time from the first publish to the last
message received. Everything on 127.0.0.1, bounded (each step times out
after 120 s), every process stopped by its pid. Not part of the test
suite: a measurement to size a deployment (docs/scaling.md)."""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

from harness import Broker, DaemonBridge, cpu_seconds, wait_until  # noqa: E402
from scalekit import RabbitCluster, RabbitNode, SeqPublisher  # noqa: E402

PUB = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"
SUB = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"
USERS = 1000


def subscribe(port, topics, count, cid):
    cmd = [SUB, "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-c", "-i", cid, "-C", str(count),
           "-W", "120"]
    for t in topics:
        cmd += ["-t", t]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def publish(port, n, per_user, window=20):
    """n QoS 1 events at most window unacknowledged (libmosquitto's
    default), on sync/u1/feed, or with per_user spread over USERS users in
    turn; returns once every PUBACK is in. One MQTT 3.1.1 connection on a
    plain socket with the packets built beforehand, so that the publisher
    costs little next to the broker."""
    enc = SeqPublisher._packet.__get__(SeqPublisher(port, []))
    body = b'{"type":"updated","payload":{"n":1}}'
    packets = []
    for k in range(n):
        topic = ("sync/u%d/feed" % (k % USERS if per_user else 1)).encode()
        pid = k % 65535 + 1
        packets.append(enc(0x32, len(topic).to_bytes(2, "big") + topic + pid.to_bytes(2, "big") +
                           body))
    s = socket.create_connection(("127.0.0.1", port), timeout=120)
    try:
        cid = b"rate-pub-%d" % os.getpid()
        s.sendall(enc(0x10, b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid))
        if len(s.recv(4)) != 4:
            raise SystemExit("no CONNACK")
        sent = acked = 0
        pending = b""
        while acked < n:
            if sent < n and sent - acked < window:
                batch = min(n, acked + window) - sent
                s.sendall(b"".join(packets[sent:sent + batch]))
                sent += batch
            data = s.recv(65536)
            if not data:
                raise SystemExit("the broker closed the connection")
            pending += data
            acked += len(pending) // 4
            pending = pending[len(pending) // 4 * 4:]
    finally:
        s.close()


def prime(port, cid, topics):
    """Creates the persistent session (and its queue) before the run."""
    p = subscribe(port, topics, 1, cid)
    time.sleep(1.0)
    p.kill()
    p.wait()


def run_case(port, n, subs, per_user):
    topics_of = []
    for k in range(subs):
        if per_user:
            topics_of.append(["sync/u%d/+" % u for u in range(k, USERS, subs)])
        else:
            topics_of.append(["sync/+/+"])
    cids = ["rate-%d-%d-%d" % (os.getpid(), subs, k) for k in range(subs)]
    for cid, topics in zip(cids, topics_of):
        prime(port, cid, topics)
    expect = [(n // subs if per_user else n) for _ in range(subs)]
    procs = [subscribe(port, t, e, cid) for t, e, cid in zip(topics_of, expect, cids)]
    time.sleep(1.0)  # subscribed
    start = time.monotonic()
    publish(port, n, per_user)
    pub_done = time.monotonic() - start
    for p in procs:
        p.wait(120)
    took = time.monotonic() - start
    bad = [p.returncode for p in procs if p.returncode != 0]
    if bad:
        raise SystemExit("a subscriber ended with %s" % bad)
    return n / pub_done, sum(expect) / took


def measure(name, port, n):
    rows = []
    start = time.monotonic()
    publish(port, n, False)
    rows.append((name, "in (no subscriber)", n / (time.monotonic() - start), 0))
    for subs in (1, 4):
        inr, outr = run_case(port, n, subs, False)
        rows.append((name, "wildcard x%d" % subs, inr, outr))
    inr, outr = run_case(port, n, 4, True)
    rows.append((name, "per_user x4 (1,000 users)", inr, outr))
    return rows


def bridge_intake(work, n):
    """CPU per event of a daemon receiving events for users it does not hold."""
    m = Broker(os.path.join(work, "intake"))
    os.makedirs(m.workdir, exist_ok=True)
    m.start()
    d = DaemonBridge(m, m.workdir, log_level="warning")
    try:
        d.start(timeout=20)
        before = cpu_seconds(d.pid)
        start = time.monotonic()
        publish(m.port, n, True)
        wait_until(lambda: d.metrics().get("mqtt_sse_bridge_events_received_total", 0) >= n,
                   120, interval=0.05, what="the daemon to receive every event")
        took = time.monotonic() - start
        used = cpu_seconds(d.pid) - before
        return n / took, used / n * 1e6
    finally:
        d.stop()
        m.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--brokers", default="mosquitto,rabbitmq,rabbitmq3")
    ap.add_argument("--bridge", action="store_true", help="also the daemon's intake cost")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="sb-broker-rate-")
    rows = []
    try:
        for b in a.brokers.split(","):
            if b == "mosquitto":
                m = Broker(work)
                m.start()
                try:
                    rows += measure("mosquitto 2.0.11", m.port, a.messages)
                finally:
                    m.stop()
            elif b == "rabbitmq":
                if not RabbitNode.available():
                    print("rabbitmq-server is not installed: skipped")
                    continue
                node = RabbitNode(work, "rabbit-single")
                try:
                    node.start(90)
                    rows += measure("RabbitMQ 3.10, 1 node", node.mqtt_port, a.messages)
                finally:
                    node.stop()
            elif b == "rabbitmq3":
                if not RabbitNode.available():
                    continue
                c = RabbitCluster(os.path.join(work, "c3"), 3,
                                  conf=["mqtt.durable_queue_type = quorum"])
                try:
                    c.start(90)
                    rows += measure("RabbitMQ 3.10, 3 nodes, quorum", c.nodes[0].mqtt_port,
                                    a.messages)
                finally:
                    c.stop()
        if a.bridge:
            rate, us = bridge_intake(work, a.messages)
            print("daemon intake, no stream: %s events/s received, %.1f us of CPU per event" %
                  (format(int(rate), ","), us))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("| broker | case | in msg/s | out msg/s |")
    print("| --- | --- | ---: | ---: |")
    for name, case, inr, outr in rows:
        print("| %s | %s | %s | %s |" % (name, case, format(int(inr), ","),
                                         format(int(outr), ",") if outr else ""))


if __name__ == "__main__":
    main()
