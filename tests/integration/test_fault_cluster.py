"""Failover across brokers (issue 16): mqtt_host as a list.

  HostList                  a bad entry stops the start, naming it; the
                            first broker down at start: the daemon uses the
                            second; two independent mosquittos, the first
                            killed mid-stream: delivery goes on through the
                            second (what is lost there: below)
  RabbitMQCluster           three RabbitMQ 3.10 nodes in one cluster, MQTT
                            sessions in quorum queues; two daemons on
                            different nodes, a QoS 1 publisher on the third;
                            the node of one daemon is killed (SIGKILL of its
                            Erlang VM): that daemon goes on with another
                            node, a client moves to the other daemon with
                            Last-Event-ID, and every client ends with every
                            event, in order, none twice

The daemon form only: the plugin is the broker, it has no list to fail over.

What two independent mosquittos give (no cluster, no bridge between them):
the second knows nothing of the daemon's session, so what was queued for it
on the first (published while it was away, or in flight when the first
died) stays there, and what is published on the second before the daemon
gets there has no subscriber to go to. A cluster that keeps the session
(RabbitMQ's quorum queues below) keeps both.
"""

import json
import os
import re
import threading
import time
import unittest

from harness import (FORM, Broker, DaemonBridge, assert_quiet, free_port, only_forms, scaled,
                     wait_until)
from scalekit import RabbitCluster, SeqPublisher, rabbit_for_class
from test_fault_scale import ScaleTestCase, ev

DUPLICATE = "mqtt_sse_bridge_events_duplicate_total"


def broker_in_use(bridge):
    """What /healthz says of the broker in use (None while on none)."""
    r = bridge.healthz()
    return json.loads(r.body).get("broker") if r.status == 200 else None


def broker_metric(bridge):
    """The broker label of mqtt_sse_bridge_mqtt_broker_info, or None."""
    for k, v in bridge.metrics().items():
        m = re.match(r'^mqtt_sse_bridge_mqtt_broker_info\{broker="([^"]*)"\}$', k)
        if m and v == 1:
            return m.group(1)
    return None


@only_forms("daemon")
class HostList(ScaleTestCase):

    def test_a_bad_entry_stops_the_start_naming_it(self):
        for value, entry in (("127.0.0.1,bad host", "bad host"),
                             ("127.0.0.1:1883, ::1", "::1"),
                             ("[::1]:99999,127.0.0.1", "[::1]:99999"),
                             ("a,,b", ""),
                             ("127.0.0.1,", ""),
                             ("[not-v6]", "[not-v6]")):
            with self.subTest(value):
                b = DaemonBridge(self.broker, self.workdir, mqtt_host=value)
                rc, out = b.start_expect_failure(timeout=5)
                self.assertEqual(rc, 2, out)
                self.assertIn("mqtt_host: entry '%s'" % entry, out)
                self.assertNotIn("Listening on", out, "it half-started")

    def test_the_first_broker_down_at_start_the_second_is_used(self):
        dead = free_port()  # nothing listens there
        second = "127.0.0.1:%d" % self.broker.port
        started = time.monotonic()
        b = self.daemon(self.broker, mqtt_host="127.0.0.1:%d, %s" % (dead, second))
        took = time.monotonic() - started
        self.assertLess(took, scaled(5), "a dead first broker delays the start")
        self.assertEqual(broker_in_use(b), second)
        self.assertEqual(broker_metric(b), second)
        log = b.logs()
        self.assertIn("Cannot reach 127.0.0.1:%d" % dead, log)
        self.assertIn("Connected to %s (mqtt_host entry 2 of 2)" % second, log)
        desk = self.sse("desk", "bob", bridge=b)
        self.broker.publish_lines("sync/bob/notes", [ev("on-the-second")])
        self.assert_markers(desk, ["on-the-second"])

    def test_first_mosquitto_killed_mid_stream_delivery_goes_on_on_the_second(self):
        b1 = self.broker
        os.makedirs(os.path.join(self.workdir, "b2"))
        b2 = Broker(os.path.join(self.workdir, "b2"))
        self.track("mosquitto 2 log", b2)
        b2.start()
        first, second = "127.0.0.1:%d" % b1.port, "127.0.0.1:%d" % b2.port
        d = self.daemon(b1, mqtt_host="%s,%s" % (first, second))
        self.assertEqual(broker_in_use(d), first)
        phone = self.sse("phone", "alice", bridge=d)
        # the second broker holds no session of the daemon: what it takes
        # before the daemon gets there reaches nobody
        b2.publish_lines("sync/alice/feed", [ev("on-2-before-failover")])
        b1.publish_lines("sync/alice/feed", [ev("a-%d" % i) for i in range(10)])
        self.assert_markers(phone, ["a-%d" % i for i in range(10)])

        killed = time.monotonic()
        b1.proc.kill()  # SIGKILL by pid: no clean stop
        b1.proc.wait()
        wait_until(lambda: broker_in_use(d) == second, 10, interval=0.05,
                   what="the daemon on the second broker")
        took = time.monotonic() - killed
        print("\n[fault_cluster] mosquitto 1 killed: on mosquitto 2 after %.2f s" % took)
        self.assertEqual(broker_metric(d), second)
        b2.publish_lines("sync/alice/feed", [ev("b-%d" % i) for i in range(10)])
        self.assert_markers(phone, ["a-%d" % i for i in range(10)] +
                            ["b-%d" % i for i in range(10)])
        assert_quiet([phone])
        self.assertIn("Lost the broker at %s" % first, d.logs())
        self.assertIn("Connected to %s (mqtt_host entry 2 of 2)" % second, d.logs())


@only_forms("daemon")
class RabbitMQCluster(ScaleTestCase):
    """Three RabbitMQ 3.10 nodes on loopback, joined with rabbitmqctl, the
    MQTT plugin with mqtt.durable_queue_type = quorum: the queue of a
    persistent session (clean session false, QoS 1 subscription) is a
    quorum queue, replicated on every node, so a node's death loses none
    of what the queue holds and its publishers had acknowledged.

    Daemon A lists node 1 first, daemon B node 2; the publisher is on node
    3. Users alice (phone and tab on A, laptop on B) and bob (desk on A,
    watch on B). A numbered sequence of events with ids, one user after the
    other, is published at QoS 1 one at a time (SeqPublisher: the next only
    once the broker acknowledged the last, resent on a new connection when
    no acknowledgement comes). Node 1 is killed (SIGKILL of its Erlang VM)
    after some of it: A fails over to node 2; alice's tab, as if a load
    balancer took A out when its /healthz said 503, moves to B with
    Last-Event-ID. The ids are the publisher's, so B's replay buffer knows
    the tab's last one.

    What the test promises, and asserts: every event the publisher had
    acknowledged reaches every client of its user exactly once and in
    publishing order, on both daemons (the tab across the move); the
    daemon drops what the broker delivers again (a delivery to A whose
    acknowledgement died with node 1) by its id. What it measures and
    prints: the time from the kill to the first event A delivers again,
    to A on node 2, and the longest wait of the publisher for an
    acknowledgement."""

    cluster = None
    N = 150  # events per user

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.cluster = rabbit_for_class(
            cls, lambda workdir: RabbitCluster(workdir, 3, conf=["mqtt.durable_queue_type = quorum"]),
            "sb-it-rabbit-cluster-", timeout=90)
        print("\n[fault_cluster] three RabbitMQ nodes up and joined in %.1f s" % cls.cluster.boot_seconds)

    def setUp(self):
        super().setUp()
        self.addCleanup(lambda: self._saved_logs.append(
            ("RabbitMQ cluster logs", self.cluster.logs(limit=150))))

    def hosts(self, *order):
        return ",".join("127.0.0.1:%d" % self.cluster.nodes[i].mqtt_port for i in order)

    def test_a_node_dies_every_client_gets_every_event_once_in_order(self):
        n1, n2, n3 = self.cluster.nodes
        a = self.daemon(n1, mqtt_host=self.hosts(0, 1, 2))
        b = self.daemon(n2, mqtt_host=self.hosts(1, 2, 0))
        label = lambda node: "127.0.0.1:%d" % node.mqtt_port  # noqa: E731
        self.assertEqual(broker_in_use(a), label(n1))
        self.assertEqual(broker_in_use(b), label(n2))

        phone = self.sse("phone", "alice", bridge=a, name="A:alice/phone")
        tab = self.sse("tab", "alice", bridge=a, name="A:alice/tab")
        desk = self.sse("desk", "bob", bridge=a, name="A:bob/desk")
        laptop = self.sse("laptop", "alice", bridge=b, name="B:alice/laptop")
        watch = self.sse("watch", "bob", bridge=b, name="B:bob/watch")
        self.wait_connections(3, bridge=a)
        self.wait_connections(2, bridge=b)

        # the sessions' queues: quorum queues with a member on every node
        queues = n3.ctl("list_queues", "name", "type", "members", "--formatter", "json")
        print("[fault_cluster] queues: %s" % queues.strip()[-600:])
        sessions = [q for q in json.loads(queues[queues.index("["):])
                    if q["name"].startswith("mqtt-subscription-")]
        self.assertEqual(len(sessions), 2, queues)
        for q in sessions:
            self.assertEqual(q["type"], "quorum", queues)
            self.assertEqual(len(q["members"]), 3, queues)

        n = self.N
        msgs, eids = [], []
        for i in range(n):  # alice and bob in turn: both streams run across the kill
            for user in ("alice", "bob"):
                eid = "%s-%04d" % (user[0], i)
                msgs.append(("sync/%s/feed" % user, ev(eid, id=eid)))
                eids.append(eid)
        pub = SeqPublisher(n3.mqtt_port, msgs, interval=0.02)
        t = threading.Thread(target=pub.run, daemon=True)
        t.start()
        self.addCleanup(lambda: setattr(pub, "stop_flag", True))

        # a third of the way: node 1 dies
        wait_until(lambda: len(pub.acked) >= len(msgs) // 3 or pub.error, 60, interval=0.01,
                   what="a third of the events acknowledged")
        self.assertIsNone(pub.error)
        seen_before = len(phone.snapshot())
        killed = n1.kill()
        # the tab leaves A (its balancer saw A's /healthz fail) and comes
        # back on B with the last id it got
        wait_until(lambda: a.healthz().status == 503 or broker_in_use(a) != label(n1), 10,
                   interval=0.02, what="A to notice")
        tab.close()
        last = tab.snapshot()[-1].id if tab.snapshot() else None
        # B has it too (its replay buffer knows the id the tab resumes from)
        wait_until(lambda: last in laptop.ids(), 30, what="B to have %s" % last)
        tab2 = self.sse("tab", "alice", bridge=b, name="B:alice/tab (moved)",
                        headers={"Last-Event-ID": last} if last else None)

        # A gets back on a node that lives
        wait_until(lambda: broker_in_use(a) in (label(n2), label(n3)), 60, interval=0.05,
                   what="A on another node")
        back_on_broker = time.monotonic() - killed
        self.assertEqual(broker_metric(a), broker_in_use(a))
        # the first event published after the kill that A delivers: it can
        # only have come through the node A failed over to
        def first_new():
            after = {eids[k] for k, at in enumerate(list(pub.sent)) if at > killed}
            times = [e.time for c in (phone, desk) for e in c.snapshot() if e.id in after]
            return min(times) if times else None
        wait_until(lambda: first_new() is not None, 60, interval=0.01,
                   what="A to deliver an event published after the kill")
        first_again = min(e.time for c in (phone, desk) for e in c.snapshot()
                          if e.time > killed) - killed
        first_new_again = first_new() - killed

        t.join(scaled(120))
        self.assertFalse(t.is_alive(), "the publisher did not finish")
        self.assertIsNone(pub.error, "the publisher failed: %r" % pub.error)
        gaps = [y - x for x, y in zip(pub.acked, pub.acked[1:])]
        print("[fault_cluster] node 1 killed: A on %s after %.2f s; A delivered again "
              "%.2f s after the kill (the first event published after it: %.2f s); "
              "publisher: longest wait for an acknowledgement %.2f s, %d sent again" %
              (broker_in_use(a), back_on_broker, first_again, first_new_again, max(gaps),
               pub.resends))

        alice = ["a-%04d" % i for i in range(n)]
        bob = ["b-%04d" % i for i in range(n)]
        for client, want in ((phone, alice), (laptop, alice), (desk, bob), (watch, bob)):
            self.assert_markers(client, want, timeout=60)
            self.assertEqual(client.ids(), want, client.name)
        # the tab: what it had on A, then the rest from B, once each
        got = [e.marker for e in tab.snapshot()]
        tab2.wait_events(n - len(got), timeout=60)
        moved = [e.marker for e in tab2.snapshot()]
        self.assertEqual(got + moved, alice, "the tab lost or repeated events in the move")
        assert_quiet([phone, laptop, desk, watch, tab2])
        dup = a.metrics().get(DUPLICATE)
        print("[fault_cluster] A dropped %d deliveries it already had (by id)" % dup)
        self.assertIn("Lost the broker at %s" % label(n1), a.logs())


if __name__ == "__main__":
    unittest.main()
