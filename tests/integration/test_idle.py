"""1,000 idle SSE connections (issue 2): the bridge's CPU stays near zero
over several seconds, and every connection still gets the next event.

The clients are non-blocking sockets read by one selector thread. The bridge
runs under a soft RLIMIT_NOFILE of 1024, the default of a login shell or a
systemd service on Debian: holding 1,000 streams must not depend on the
caller having raised it."""

import time
import unittest

from harness import (BridgeTestCase, SSEClient, assert_quiet, compact, cpu_seconds,
                     raise_nofile_limit)

USERS = 10
PER_USER = 100
TOTAL = USERS * PER_USER
CPU_WINDOW_S = 3.0
CPU_BUDGET_S = 0.3
BRIDGE_NOFILE = 1024


class IdleConnections(BridgeTestCase):

    def setUp(self):
        have = raise_nofile_limit(TOTAL + 512)
        if have < TOTAL + 64:
            self.fail("this test needs %d file descriptors; the hard limit allows %d" %
                      (TOTAL + 64, have))
        super().setUp()

    def test_thousand_idle_streams(self):
        b = self.new_bridge(max_connections_per_user=PER_USER * 2)
        b.nofile_limit = BRIDGE_NOFILE
        b.start()
        self.bridge = b

        clients = {}
        t0 = time.monotonic()
        for u in range(USERS):
            for d in range(PER_USER):
                user, device = "user%02d" % u, "dev%03d" % d
                clients[(user, device)] = SSEClient(
                    self.reactor, b.port, "/api/sse", {"deviceId": device, "userId": user},
                    name="%s/%s" % (user, device))
        for c in clients.values():
            c.wait_open(timeout=30)
        connect_s = time.monotonic() - t0
        health = b.healthz().json()
        self.assertEqual(health.get("connections"), TOTAL, health)
        m = b.metrics()
        self.assertEqual(m["mqtt_sse_bridge_connections"], TOTAL)
        self.assertEqual(m["mqtt_sse_bridge_users"], USERS)

        # idle: no CPU to speak of
        time.sleep(0.5)
        cpu0 = cpu_seconds(b.pid)
        time.sleep(CPU_WINDOW_S)
        cpu = cpu_seconds(b.pid) - cpu0
        self.assertLess(cpu, CPU_BUDGET_S,
                        "%d idle streams cost %.2f s of CPU in %.0f s" %
                        (TOTAL, cpu, CPU_WINDOW_S))

        # then one event per user from dev000 (excluded) and one to dev000
        t1 = time.monotonic()
        for u in range(USERS):
            user = "user%02d" % u
            self.broker.publish_lines("sync/%s/timer" % user, [
                compact({"type": "t", "payload": {"m": "all-" + user}, "id": user + "-1",
                         "sourceDeviceId": "dev000"}),
                compact({"type": "t", "payload": {"m": "dev000-" + user}, "id": user + "-2",
                         "targetDeviceId": "dev000"}),
            ])
        for (user, device), c in clients.items():
            want = ["dev000-" + user] if device == "dev000" else ["all-" + user]
            self.assert_markers(c, want, timeout=30)
        deliver_s = time.monotonic() - t1
        assert_quiet(list(clients.values()), 0.5)
        for c in clients.values():
            self.assertFalse(c.eof, "%s was closed" % c.name)
        self.assertEqual(b.metrics()["mqtt_sse_bridge_events_delivered_total"], TOTAL)
        print("\n  %d streams: connected in %.2fs, %.3fs CPU over %.0fs idle, "
              "delivered in %.2fs" % (TOTAL, connect_s, cpu, CPU_WINDOW_S, deliver_s))


if __name__ == "__main__":
    unittest.main()
