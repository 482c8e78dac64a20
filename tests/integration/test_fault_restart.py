"""Faults under load (issue 6): the server is killed with SIGKILL mid-stream
and started again, the broker restarts with persistence on, a client stops
reading, and thousands of connections come and go. Each test states who
must get what, and checks it exactly.

The streams resume by hand as EventSource does (Last-Event-ID of the last
event got, retried until the server is back); the publisher is an MQTT
client with a persistent session that resends what was not acknowledged
(faultkit.Publisher). Events carry payload {"seq": n, "user": u}, n counting
per user from 1; with publisher ids, id "<user>-<n>"."""

import json
import os
import signal
import socket
import time
import unittest

from faultkit import (FastStream, Publisher, ResumingStream, RssSampler, StreamFleet,
                      TopicWatcher, describe, kill9, persistence_conf, restart_same_port,
                      retained_messages, rss_kib)
from harness import (FORM, BridgeTestCase, compact, open_stuck_stream, raise_nofile_limit,
                     scaled, wait_until)

SANITIZED = bool(os.environ.get("SB_SANITIZED"))

USERS = 10
DEVICES = 10
TOTAL = 5000      # events over all users: 500 per user
RATE = 1000       # events per second
KILL_AFTER = 2000  # acknowledged events before the fault (about 2 s)
# Events per user fit the replay buffer: what is checked is that the
# journal brings them back, not how long the buffer is.
REPLAY_BUFFER = 1024
# Duplicates one stream may see without publisher ids (at-least-once):
# what the broker had in flight to the daemon (max_inflight_messages, 20)
# plus what the publisher had unacknowledged (its window, 50).
PUB_WINDOW = 50
MAX_DUPLICATES = 20 + PUB_WINDOW


def make_events(total, users, with_ids, pad=None):
    """[(topic, payload)] spread round-robin over users u0..u<users-1>, and
    how many each user gets."""
    per = [0] * users
    out = []
    for k in range(total):
        u = k % users
        per[u] += 1
        payload = {"seq": per[u], "user": "u%d" % u}
        if pad:
            payload["pad"] = pad
        ev = {"type": "tick", "payload": payload}
        if with_ids:
            ev["id"] = "u%d-%d" % (u, per[u])
        out.append(("sync/u%d/stream" % u, compact(ev).encode()))
    return out, per


class FaultRestart(BridgeTestCase):

    def setUp(self):
        super().setUp()
        self.fleets = []
        self.publishers = []
        self.sockets = []
        self.fast = []

    def tearDown(self):
        for f in self.fleets:
            f.stop()
        for p in self.publishers:
            p.stop()
        for s in self.sockets:
            s.close()
        for r in self.fast:
            r.close()
        super().tearDown()

    # ---- helpers ----

    def small_asan_quarantine(self):
        """Under ASan, the server started next keeps at most 4 MiB of freed
        memory in quarantine (256 MiB by default would hide what the memory
        tests measure). ASAN_OPTIONS is read from the environment when the
        daemon, or the broker with the plugin, is spawned."""
        if not SANITIZED:
            return
        old = os.environ.get("ASAN_OPTIONS")
        os.environ["ASAN_OPTIONS"] = (old + ":" if old else "") + "quarantine_size_mb=4"

        def restore():
            if old is None:
                os.environ.pop("ASAN_OPTIONS", None)
            else:
                os.environ["ASAN_OPTIONS"] = old
        self.addCleanup(restore)

    def client_id(self, what):
        return "fault-%s-%d-%d" % (what, os.getpid(), id(self))

    def start_server(self, fixed_client_id, **opts):
        """The bridge with a replay journal in the workdir. The daemon's MQTT
        session outlives it: with fixed_client_id under an explicit
        mqtt_client_id, else under the default id, which follows the HTTP
        port it is restarted on. In the plugin form a broker with
        persistence."""
        opts.setdefault("replay_buffer", REPLAY_BUFFER)
        opts.setdefault("replay_dir", os.path.join(self.workdir, "journal"))
        if FORM == "plugin":
            self.broker.extra_conf += persistence_conf(self.workdir)
        elif fixed_client_id:
            opts["mqtt_client_id"] = self.client_id("bridge")
        return self.start_bridge(**opts)

    def open_fleet(self, bridge):
        streams = [ResumingStream(self.reactor, bridge.port, "u%d" % u, "d%d" % d)
                   for u in range(USERS) for d in range(DEVICES)]
        fleet = StreamFleet(self.reactor, streams)
        self.fleets.append(fleet)
        self.wait_connections(len(streams), timeout=20)
        return fleet

    def publisher(self, messages, rate=RATE):
        p = Publisher(self.broker.port, self.client_id("pub"), messages, rate=rate,
                      max_inflight=PUB_WINDOW)
        self.publishers.append(p)
        p.start()
        return p

    def wait_complete(self, fleet, per_user, timeout):
        """Waits until every stream holds every seq of its user."""
        def complete(s):
            n = per_user[int(s.user[1:])]
            seqs = s.seqs()
            return len(seqs) >= n and len(set(seqs)) == n
        fleet.wait(complete, timeout, "every stream to hold every seq of its user")

    def assert_exactly_once(self, fleet, per_user):
        for s in fleet.streams:
            u = int(s.user[1:])
            n = per_user[u]
            self.assertEqual(s.system_events(), [], "%s got a resync: %s" % (s.name, describe(s)))
            seqs = s.seqs()
            self.assertEqual(seqs, list(range(1, n + 1)),
                             "%s: not every seq once and in order: %s" % (s.name, describe(s)))
            self.assertEqual([i for _, i, _ in s.got], ["u%d-%d" % (u, k) for k in seqs],
                             "%s: ids" % s.name)
            self.assertTrue(all(j["payload"]["user"] == s.user for _, _, j in s.got),
                            "%s got another user's event" % s.name)

    def assert_at_least_once(self, fleet, per_user):
        """Every seq, first deliveries in order, no gap; a duplicate only
        repeats an event already delivered, only after the restart, and
        there are few of them. Returns the most duplicates of one stream."""
        worst = 0
        for s in fleet.streams:
            n = per_user[int(s.user[1:])]
            self.assertEqual(s.system_events(), [], "%s got a resync: %s" % (s.name, describe(s)))
            firsts, seen, dups = [], set(), []
            for conn, eid, j in s.got:
                seq = j["payload"]["seq"]
                self.assertEqual(j["payload"]["user"], s.user,
                                 "%s got another user's event" % s.name)
                if seq in seen:
                    dups.append((conn, seq))
                else:
                    seen.add(seq)
                    firsts.append(seq)
            self.assertEqual(firsts, list(range(1, n + 1)),
                             "%s: first deliveries out of order or with a gap: %s" %
                             (s.name, describe(s)))
            self.assertTrue(all(conn >= 2 for conn, _ in dups),
                            "%s: duplicates before the restart: %r" % (s.name, dups[:10]))
            self.assertLessEqual(len(dups), MAX_DUPLICATES,
                                 "%s: %d duplicates: %r" % (s.name, len(dups), dups[:20]))
            ids = [eid for _, eid, _ in s.got]
            self.assertEqual(len(set(ids)), len(ids), "%s: an id came twice" % s.name)
            worst = max(worst, len(dups))
        return worst

    # ---- 1 and the plugin's clean restart: the server goes, comes back ----

    def restart_scenario(self, with_ids, sig):
        """100 streams (10 users x 10 devices, no sourceDeviceId: every
        device gets its user's events), 5,000 events at 1,000/s; after
        2,000 are acknowledged the server gets sig and, half a second later,
        is started again on the same ports; the streams resume with
        Last-Event-ID and the publisher keeps going (in the plugin form it
        reconnects and resends what was not acknowledged)."""
        bridge = self.start_server(fixed_client_id=not with_ids)
        fleet = self.open_fleet(bridge)
        messages, per_user = make_events(TOTAL, USERS, with_ids)
        pub = self.publisher(messages)
        pub.wait_acked(KILL_AFTER, timeout=20)
        t0 = time.monotonic()
        if sig == signal.SIGKILL:
            kill9(bridge)
        else:
            self.assertEqual(bridge.stop(sig=sig), 0)
        time.sleep(0.5)  # down for a while: the publisher and the streams retry meanwhile
        restart_same_port(bridge)
        down_s = time.monotonic() - t0
        pub.wait_acked(TOTAL, timeout=60)
        self.wait_complete(fleet, per_user, timeout=30)
        time.sleep(scaled(0.5))  # late duplicates would come now
        fleet.stop()

        for s in fleet.streams:
            self.assertGreaterEqual(s.opened, 2, "%s did not have to resume: %s" %
                                    (s.name, describe(s)))
        if FORM == "plugin":
            self.assertGreaterEqual(pub.connects, 2)
        m = bridge.metrics()
        note = "down %.2f s, publisher resent %d, duplicates dropped %s" % (
            down_s, pub.resent, m.get("mqtt_sse_bridge_events_duplicate_total"))
        if with_ids:
            self.assert_exactly_once(fleet, per_user)
        else:
            worst = self.assert_at_least_once(fleet, per_user)
            note += ", at most %d duplicates on a stream" % worst
        print("\n%s: %s" % (self.id(), note))

    def test_kill9_mid_stream_with_publisher_ids(self):
        self.restart_scenario(with_ids=True, sig=signal.SIGKILL)

    def test_kill9_mid_stream_without_ids_is_at_least_once(self):
        self.restart_scenario(with_ids=False, sig=signal.SIGKILL)

    # ---- 2: the broker restarts with persistence on ----

    def test_broker_restart_with_persistence_mid_stream(self):
        """Daemon: the broker (persistence true) stops with SIGTERM after
        2,000 of 5,000 QoS 1 events and starts again on its port; the daemon
        stays up, its streams stay open, and it gets what its persistent
        session held. Plugin: the broker is the server; a clean restart with
        the journal, the streams resume."""
        if FORM == "plugin":
            self.restart_scenario(with_ids=True, sig=signal.SIGTERM)
            return
        self.broker.stop()
        self.broker.extra_conf += persistence_conf(self.workdir)
        self.broker.start()
        bridge = self.start_bridge(replay_buffer=REPLAY_BUFFER,
                                   mqtt_client_id=self.client_id("bridge"))
        fleet = self.open_fleet(bridge)
        messages, per_user = make_events(TOTAL, USERS, True)
        pub = self.publisher(messages)
        pub.wait_acked(KILL_AFTER, timeout=20)
        self.broker.stop()
        self.broker.start()
        pub.wait_acked(TOTAL, timeout=60)
        self.wait_complete(fleet, per_user, timeout=40)
        time.sleep(scaled(0.5))
        fleet.stop()
        self.assertGreaterEqual(pub.connects, 2)
        for s in fleet.streams:
            self.assertEqual(s.opened, 1, "%s was cut during the broker's restart: %s" %
                             (s.name, describe(s)))
        self.assert_exactly_once(fleet, per_user)
        self.assertEqual(bridge.metrics()["mqtt_sse_bridge_mqtt_connected"], 1)

    # ---- 3: a client that stops reading ----

    def test_slow_reader_is_cut_and_memory_stays_bounded(self):
        """One stream never reads (4 KiB receive buffer) while 10 streams of
        the same user read 10,000 events of about 1.3 KiB at 1,000/s: the
        readers get every event in order and soon after the last is
        published; the stuck one is cut (slow_disconnects_total +1, its
        socket ends); the server's RSS stays within baseline + 11 x
        max_queue_bytes + the replay buffer + allocator slack, while the
        stuck stream alone would hold 13 MB without the cut.

        max_queue_bytes is 320 KiB, about 250 events: a reader (Python
        threads on a busy machine) may lag that much (250 ms at this rate)
        before it is cut too; the queue counts what the server holds besides
        the kernel's socket buffers. Measured without sanitizers the peak is
        within 100 KiB of the baseline. Under the sanitizers, where the
        server and the readers share two cores with a slower server, the
        readers get 1 MiB (800 ms); the memory bound means little there
        anyway (the allocator's quarantine), the cut and the deliveries do."""
        max_queue = (1024 if SANITIZED else 320) * 1024
        rate = 1000
        self.small_asan_quarantine()
        bridge = self.start_bridge(max_queue_bytes=max_queue)
        n = 10000
        warm_n = 256  # fills the replay buffer before the baseline
        pad = "x" * 1200
        events, _ = make_events(warm_n + n, 1, False, pad)
        events = [("sync/U/stream", p) for _, p in events]
        first_mark = b'"seq":%d,' % warm_n
        last_mark = b'"seq":%d,' % (warm_n + n)
        readers = [FastStream(bridge.port, "deviceId=r%d&userId=U" % i, (first_mark, last_mark))
                   for i in range(10)]
        self.fast.extend(readers)
        self.wait_connections(10)
        pub = self.publisher(events[:warm_n], rate=rate)
        pub.wait_acked(warm_n, timeout=20)
        for r in readers:
            r.wait_marker(first_mark, timeout=10)
        time.sleep(0.3)
        baseline = rss_kib(bridge.pid)
        slow_before = bridge.metrics()["mqtt_sse_bridge_slow_disconnects_total"]

        stuck = open_stuck_stream(bridge.port, "deviceId=stuck&userId=U")
        self.sockets.append(stuck)
        self.wait_connections(11)
        sampler = RssSampler(bridge.pid)
        pub = self.publisher(events[warm_n:], rate=rate)
        pub.wait_acked(n, timeout=60)
        published_at = time.monotonic()
        try:
            late = max(r.wait_marker(last_mark, timeout=10) for r in readers) - published_at
        except AssertionError as e:
            m = bridge.metrics()
            raise AssertionError("%s; slow disconnects during the load: %d (1 expected: the stuck "
                                 "stream), connections %d" % (
                                     e, m["mqtt_sse_bridge_slow_disconnects_total"] - slow_before,
                                     m["mqtt_sse_bridge_connections"]))
        peak = sampler.stop()

        for i, r in enumerate(readers):
            seqs = [json.loads(d)["payload"]["seq"] for _, d in r.events()]
            self.assertEqual(seqs, list(range(1, warm_n + n + 1)),
                             "reader r%d lost or reordered events" % i)
            self.assertFalse(r.eof, "reader r%d was cut" % i)
        m = bridge.metrics()
        self.assertEqual(m["mqtt_sse_bridge_slow_disconnects_total"], slow_before + 1)
        self.assertEqual(m["mqtt_sse_bridge_connections"], 10)
        # the stuck socket sees the end: what was buffered, then EOF or RST
        stuck.settimeout(scaled(10))
        got, ended = 0, False
        deadline = time.monotonic() + scaled(10)
        while time.monotonic() < deadline:
            try:
                data = stuck.recv(65536)
            except ConnectionResetError:
                ended = True
                break
            except socket.timeout:
                break
            if not data:
                ended = True
                break
            got += len(data)
        self.assertTrue(ended, "the stuck stream was not ended (%d bytes read)" % got)
        # no more than the kernel's socket buffers (up to tcp_wmem's maximum on
        # the server's side) and one queue
        with open("/proc/sys/net/ipv4/tcp_wmem") as f:
            wmem_max = int(f.read().split()[2])
        self.assertLess(got, wmem_max + max_queue + 256 * 1024,
                        "the stuck stream held %d bytes" % got)

        event_bytes = len(events[0][1]) + 100
        slack = (16 if SANITIZED else 3) * 1024
        bound = baseline + (11 * max_queue + 256 * event_bytes) // 1024 + slack
        self.assertLessEqual(peak, bound,
                             "RSS peaked at %d KiB; baseline %d KiB, bound %d KiB" %
                             (peak, baseline, bound))
        print("\n%s: baseline %d KiB, peak %d KiB (bound %d KiB), last event %.2f s after "
              "the last ack, the stuck socket held %d bytes" %
              (self.id(), baseline, peak, bound, late, got))

    # ---- 4: connection churn with presence ----

    def churn(self, port, cycles, users, parallel=8):
        """cycles SSE connect + registered + disconnect, parallel at a time,
        for users c0..c<users-1> with devices d0..d4; every third closed
        with a reset. Returns how many did not get a 200 stream."""
        import threading
        failures = []
        lock = threading.Lock()
        counter = iter(range(cycles))

        def worker():
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                s = socket.create_connection(("127.0.0.1", port), timeout=scaled(10))
                try:
                    s.sendall(("GET /api/sse?deviceId=d%d&userId=c%d HTTP/1.1\r\nHost: x\r\n"
                               "Accept: text/event-stream\r\n\r\n" %
                               (i % 5, i % users)).encode())
                    data = b""
                    while b"retry:" not in data:
                        chunk = s.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    if not data.startswith(b"HTTP/1.1 200") or b"retry:" not in data:
                        with lock:
                            failures.append(data[:200])
                    if i % 3 == 0:
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                     b"\x01\x00\x00\x00\x00\x00\x00\x00")
                except OSError as e:
                    with lock:
                        failures.append(repr(e))
                finally:
                    s.close()
        threads = [threading.Thread(target=worker) for _ in range(parallel)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(scaled(120))
        return failures

    def presence_records(self, prefix):
        """{topic: parsed JSON} of the retained non-empty records under
        prefix (the instance's own on prefix itself included)."""
        return {t: json.loads(p) for t, p in
                retained_messages(self.broker.port, prefix + "/#").items() if p}

    def test_connection_churn_clears_presence_and_memory(self):
        """5,000 SSE connect+disconnect cycles, 8 at a time, over 20 users
        while user 'stay' keeps two streams: afterwards the connections gauge
        counts only those two, RSS is back within 8 MiB of its level before
        (16 MiB under ASan, with a 4 MiB quarantine), every churned user's
        record went out live and its last message is the empty one, no retained presence record is left for a
        churned user while 'stay' has a correct one, and GET /api/presence
        agrees; once 'stay' leaves too, the gauge is 0 and its record is
        cleared."""
        raise_nofile_limit(4096)
        prefix = "presence/fault"
        self.small_asan_quarantine()
        bridge = self.start_bridge(presence_prefix=prefix)
        s1, s2 = self.sse("s1", "stay"), self.sse("s2", "stay")
        users = 20
        self.assertEqual(self.churn(bridge.port, 300, users), [])  # warm-up
        self.wait_connections(2, timeout=20)
        time.sleep(0.3)
        baseline = rss_kib(bridge.pid)
        opened_before = bridge.metrics()["mqtt_sse_bridge_connections_opened_total"]
        watcher = TopicWatcher(self.broker.port, prefix + "/#")
        self.addCleanup(watcher.close)

        t0 = time.monotonic()
        failures = self.churn(bridge.port, 5000, users)
        took = time.monotonic() - t0
        self.assertEqual(failures[:5], [], "%d cycles failed" % len(failures))
        self.wait_connections(2, timeout=20)

        # the churned users' records went out live, and the last of each
        # is the empty message that clears it
        def all_cleared_live():
            counts, last = watcher.snapshot()
            churned = ["%s/c%d" % (prefix, u) for u in range(users)]
            return all(counts.get(t, 0) >= 2 and last.get(t) == b"" for t in churned)
        try:
            wait_until(all_cleared_live, 10, interval=0.2,
                       what="every churned user's presence published and cleared")
        except AssertionError:
            counts, last = watcher.snapshot()
            raise AssertionError("live presence per churned user (count, last): %r" % {
                t: (counts[t], last.get(t, b"")[:80]) for t in sorted(counts)})
        live_count = sum(n for t, n in watcher.snapshot()[0].items() if t != prefix + "/stay")
        m = bridge.metrics()
        self.assertGreaterEqual(m["mqtt_sse_bridge_connections_opened_total"] - opened_before, 5000)
        self.assertEqual(m["mqtt_sse_bridge_users"], 1)

        def presence_settled():
            recs = self.presence_records(prefix)
            users_left = sorted(t for t in recs if t != prefix)
            return recs if users_left == [prefix + "/stay"] else None
        try:
            recs = wait_until(presence_settled, 10, interval=0.2,
                              what="retained presence of the churned users cleared")
        except AssertionError:
            raise AssertionError("retained presence left: %r" %
                                 sorted(self.presence_records(prefix).items())[:10])
        stay = recs[prefix + "/stay"]
        self.assertEqual((stay["userId"], stay["online"], stay["connections"], stay["devices"]),
                         ("stay", True, 2, {"s1": 1, "s2": 1}), stay)
        self.assertEqual(recs[prefix]["online"], True, recs[prefix])
        self.assertEqual(stay["instance"], recs[prefix]["instance"])

        r = bridge.request("GET", "/api/presence?userId=stay")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"userId": "stay", "online": True, "connections": 2,
                                    "devices": {"s1": 1, "s2": 1}})
        for u in range(users):
            r = bridge.request("GET", "/api/presence?userId=c%d" % u)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json(), {"userId": "c%d" % u, "online": False, "connections": 0,
                                        "devices": {}})

        slack = (16 if SANITIZED else 8) * 1024
        wait_until(lambda: rss_kib(bridge.pid) <= baseline + slack, 10, interval=0.2,
                   what="RSS back within %d KiB of %d KiB (now %d KiB)" %
                   (slack, baseline, rss_kib(bridge.pid)))
        rss_after = rss_kib(bridge.pid)

        s1.close()
        s2.close()
        self.wait_connections(0)
        wait_until(lambda: prefix + "/stay" not in self.presence_records(prefix), 10,
                   interval=0.2, what="the presence of 'stay' cleared once it left")
        self.assertEqual(bridge.request("GET", "/api/presence?userId=stay").json()["online"],
                         False)
        print("\n%s: 5,000 cycles in %.1f s, %d live presence messages of churned users, "
              "RSS %d KiB before, %d KiB after" % (self.id(), took, live_count, baseline,
                                                  rss_after))


if __name__ == "__main__":
    unittest.main()
