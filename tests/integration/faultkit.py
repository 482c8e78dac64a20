"""Helpers of the fault suites (test_fault_*.py): a small MQTT 3.1.1 client
that publishes at QoS 1 with a persistent session and resends what was not
acknowledged after a reconnect, a reader of retained messages, SSE streams
that resume by hand with Last-Event-ID as EventSource does, memory readings,
and restarting a killed server on the same ports.

Python 3 standard library only, like harness.py (no paho: the interpreter
that ctest finds need not see Debian's dist-packages)."""

import collections
import os
import select
import socket
import struct
import threading
import time

from harness import FORM, SSEClient, http_request, rss_kib, scaled, wait_until


# ---- memory ----------------------------------------------------------------------

class RssSampler(threading.Thread):
    """Samples the VmRSS of pid every interval seconds until stop(); peak
    holds the highest reading (KiB)."""

    def __init__(self, pid, interval=0.02):
        super().__init__(name="rss-sampler", daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak = rss_kib(pid)
        self._halt = threading.Event()
        self.start()

    def run(self):
        while not self._halt.is_set():
            try:
                self.peak = max(self.peak, rss_kib(self.pid))
            except (OSError, AssertionError):
                return
            self._halt.wait(self.interval)

    def stop(self):
        self._halt.set()
        self.join(5)
        return self.peak


# ---- MQTT 3.1.1, the few packets the tests need ------------------------------------

def _varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(s):
    b = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def _packet(first, body):
    return bytes([first]) + _varint(len(body)) + body


def connect_packet(client_id, clean_session, keepalive=60):
    flags = 0x02 if clean_session else 0x00
    return _packet(0x10, _utf8("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive) +
                   _utf8(client_id))


def publish_packet(topic, payload, mid, qos=1, retain=False, dup=False):
    first = 0x30 | (qos << 1) | (0x01 if retain else 0) | (0x08 if dup else 0)
    body = _utf8(topic) + (struct.pack("!H", mid) if qos else b"") + payload
    return _packet(first, body)


class PacketReader:
    """Splits the bytes of an MQTT stream into (first byte, body) packets."""

    def __init__(self):
        self.buf = bytearray()

    def feed(self, data):
        self.buf += data
        out = []
        while True:
            n, mult, i = 0, 1, 1
            while True:
                if i >= len(self.buf):
                    return out
                b = self.buf[i]
                n += (b & 0x7F) * mult
                mult *= 128
                i += 1
                if not b & 0x80:
                    break
            if len(self.buf) < i + n:
                return out
            out.append((self.buf[0], bytes(self.buf[i:i + n])))
            del self.buf[:i + n]


def mqtt_connect(port, client_id, clean_session, timeout=2.0):
    """Opens an MQTT connection to 127.0.0.1:port and waits for CONNACK.
    Returns (socket, reader, session present). Raises OSError when the
    broker is not there or refuses."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(connect_packet(client_id, clean_session))
        reader = PacketReader()
        deadline = time.monotonic() + timeout
        while True:
            data = s.recv(4096)
            if not data:
                raise ConnectionError("closed before CONNACK")
            for first, body in reader.feed(data):
                if first >> 4 == 2:
                    if body[1] != 0:
                        raise ConnectionRefusedError("CONNACK return code %d" % body[1])
                    return s, reader, bool(body[0] & 1)
            if time.monotonic() > deadline:
                raise socket.timeout("no CONNACK")
    except BaseException:
        s.close()
        raise


def retained_messages(port, topic_filter, timeout=5):
    """The retained messages the broker holds under topic_filter, as
    {topic: payload bytes}: subscribes (QoS 0) on a fresh clean session, then
    sends PINGREQ; the broker sends its retained messages right after the
    SUBACK, so all of them come before the PINGRESP."""
    s, reader, _ = mqtt_connect(port, "sb-retained-%d-%d" % (os.getpid(), time.monotonic_ns()),
                                True)
    got = {}
    try:
        s.settimeout(scaled(timeout))
        s.sendall(_packet(0x82, struct.pack("!H", 1) + _utf8(topic_filter) + b"\x00"))
        suback = False
        while True:
            data = s.recv(65536)
            if not data:
                raise AssertionError("the broker closed the connection of the retained reader")
            for first, body in reader.feed(data):
                kind = first >> 4
                if kind == 9:
                    suback = True
                    s.sendall(b"\xc0\x00")  # PINGREQ: the fence
                elif kind == 3:
                    tlen = struct.unpack("!H", body[:2])[0]
                    topic = body[2:2 + tlen].decode("utf-8")
                    at = 2 + tlen + (2 if (first >> 1) & 3 else 0)
                    if first & 0x01:
                        got[topic] = body[at:]
                elif kind == 13 and suback:
                    s.sendall(b"\xe0\x00")
                    return got
    finally:
        s.close()


class Publisher(threading.Thread):
    """Publishes messages [(topic, payload bytes)] at QoS 1, in order, with
    a persistent session (clean session off) under client_id, at rate
    messages per second (None: as fast as max_inflight allows). When the
    connection fails it reconnects every 50 ms and first resends every
    message not yet acknowledged (DUP set, in their order), as MQTT 3.1.1
    asks of a client with a persistent session; what came due meanwhile
    follows. Stops when every message is acknowledged, on stop(), or after
    give_up seconds without a connection.

    acked: messages acknowledged; connects: connections made; resent:
    messages sent again after a reconnect; error: why it gave up, if so."""

    def __init__(self, port, client_id, messages, rate=None, max_inflight=50, give_up=60):
        super().__init__(name="mqtt-publisher", daemon=True)
        self.port = port
        self.client_id = client_id
        self.messages = messages
        self.rate = rate
        self.max_inflight = max_inflight
        self.give_up = give_up
        self.acked = 0
        self.sent = 0
        self.connects = 0
        self.resent = 0
        self.error = None
        self.started_at = None
        self.done_at = None
        self._halt = threading.Event()
        self._cond = threading.Condition()

    def stop(self):
        self._halt.set()
        self.join(scaled(10))

    def wait_acked(self, n, timeout):
        """Waits until n messages are acknowledged (raises AssertionError)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.acked >= n or self.error or
                                       not self.is_alive(), scaled(timeout)):
                raise AssertionError("publisher: %d of %d acknowledged after %.1fs" %
                                     (self.acked, n, scaled(timeout)))
        if self.acked < n:
            raise AssertionError("publisher stopped at %d of %d acknowledged: %s" %
                                 (self.acked, n, self.error))

    def run(self):
        try:
            self._run()
        except Exception as e:  # recorded; the test asserts on it
            self.error = "%s: %s" % (type(e).__name__, e)
        finally:
            with self._cond:
                self._cond.notify_all()

    def _run(self):
        inflight = collections.OrderedDict()  # mid -> index into messages
        sock = reader = None
        next_i = 0
        mid = 0
        down_since = None
        last_send = time.monotonic()
        self.started_at = time.monotonic()
        total = len(self.messages)

        def packet(i, m, dup=False):
            topic, payload = self.messages[i]
            return publish_packet(topic, payload, m, 1, dup=dup)

        while self.acked < total and not self._halt.is_set():
            now = time.monotonic()
            if sock is None:
                try:
                    sock, reader, _ = mqtt_connect(self.port, self.client_id, False)
                    sock.settimeout(scaled(5))
                    self.connects += 1
                    down_since = None
                    if inflight:
                        sock.sendall(b"".join(packet(i, m, dup=True)
                                              for m, i in inflight.items()))
                        self.resent += len(inflight)
                    last_send = now
                except OSError:
                    sock = None
                    if down_since is None:
                        down_since = now
                    elif now - down_since > scaled(self.give_up):
                        raise AssertionError("no broker for %.0f s" % (now - down_since))
                    time.sleep(0.05)
                    continue
            due = total if self.rate is None else min(
                total, int((now - self.started_at) * self.rate) + 1)
            out = []
            while next_i < due and len(inflight) < self.max_inflight:
                mid = mid % 65535 + 1
                while mid in inflight:
                    mid = mid % 65535 + 1
                inflight[mid] = next_i
                out.append(packet(next_i, mid))
                next_i += 1
            try:
                if out:
                    sock.sendall(b"".join(out))
                    self.sent += len(out)
                    last_send = now
                elif now - last_send > 20:
                    sock.sendall(b"\xc0\x00")  # PINGREQ
                    last_send = now
                wait = 0.05
                if self.rate is not None and next_i < total:
                    wait = max(0.0, min(wait, (next_i + 1) / self.rate -
                                        (time.monotonic() - self.started_at)))
                ready, _, _ = select.select([sock], [], [], wait)
                if ready:
                    data = sock.recv(65536)
                    if not data:
                        raise ConnectionError("the broker closed the connection")
                    acked = 0
                    for first, body in reader.feed(data):
                        if first >> 4 == 4:
                            m = struct.unpack("!H", body[:2])[0]
                            if inflight.pop(m, None) is not None:
                                acked += 1
                    if acked:
                        with self._cond:
                            self.acked += acked
                            self._cond.notify_all()
            except OSError:
                try:
                    sock.close()
                except OSError:
                    pass
                sock = None
        self.done_at = time.monotonic()
        if sock is not None:
            try:
                sock.sendall(b"\xe0\x00")  # DISCONNECT
            except OSError:
                pass
            sock.close()


# ---- SSE streams that resume -----------------------------------------------------

class ResumingStream:
    """One SSE stream of (user, device) that, like EventSource, opens again
    when the server ends it or is not there, sending the id of the last
    event it got as Last-Event-ID. Everything it got over all its
    connections is in got: (connection number, id, parsed JSON)."""

    def __init__(self, reactor, port, user, device, path="/api/sse"):
        self.reactor = reactor
        self.port = port
        self.user = user
        self.device = device
        self.path = path
        self.name = "%s/%s" % (user, device)
        self.got = []
        self.opened = 0          # connections that answered 200
        self.attempts = 0
        self.refusals = []       # non-200 answers: (status, body)
        self.last_id = None
        self.conn = None
        self._taken = 0
        self._counted = False
        self._retry_at = 0.0

    def _open(self):
        headers = {"Last-Event-ID": self.last_id} if self.last_id is not None else None
        self.attempts += 1
        try:
            self.conn = SSEClient(self.reactor, self.port, self.path,
                                  {"deviceId": self.device, "userId": self.user}, headers,
                                  name="%s #%d" % (self.name, self.attempts))
        except OSError:
            self.conn = None
            self._retry_at = time.monotonic() + 0.1
            return
        self._taken = 0
        self._counted = False

    def step(self):
        """Takes what the current connection got (under reactor.cond) and
        decides whether to open again; called by StreamFleet. Returns True
        when it must reopen (the caller does it outside the lock)."""
        c = self.conn
        if c is None:
            return time.monotonic() >= self._retry_at
        if c.status == 200 and not self._counted:
            self._counted = True
            self.opened += 1
        new = c.events[self._taken:]
        self._taken += len(new)
        for e in new:
            self.got.append((self.opened, e.id, e.json))
            if e.id is not None:
                self.last_id = e.id
        if c.status is not None and c.status != 200 and (c.ended or c.eof):
            self.refusals.append((c.status, bytes(c.body[:200])))
        if c.eof or (c.status is not None and c.status != 200 and c.ended):
            self.conn = None
            self._retry_at = time.monotonic() + 0.1
            return False
        return False

    def close(self):
        if self.conn is not None:
            self.conn.close()

    def seqs(self):
        """payload.seq of every event got, in order (resync events left out)."""
        return [j["payload"]["seq"] for _, _, j in self.got
                if isinstance(j, dict) and j.get("channel") != "system"]

    def system_events(self):
        return [j for _, _, j in self.got if isinstance(j, dict) and j.get("channel") == "system"]


class StreamFleet(threading.Thread):
    """Keeps streams [ResumingStream] going: every 20 ms harvests their
    events and reopens those that ended (after 100 ms, the server may be
    down)."""

    def __init__(self, reactor, streams):
        super().__init__(name="stream-fleet", daemon=True)
        self.reactor = reactor
        self.streams = streams
        self.lock = threading.Lock()  # held while a round runs
        self._halt = threading.Event()
        for s in streams:
            s._open()
        self.start()

    def run(self):
        while not self._halt.is_set():
            self.round()
            self._halt.wait(0.02)

    def round(self):
        with self.lock:
            with self.reactor.cond:
                reopen = [s for s in self.streams if s.step()]
            for s in reopen:
                s._open()

    def stop(self):
        self._halt.set()
        self.join(scaled(10))
        self.round()
        for s in self.streams:
            s.close()

    def wait(self, predicate, timeout, what):
        """Waits until predicate(stream) holds for every stream."""
        def all_ok():
            with self.lock:
                return all(predicate(s) for s in self.streams)
        try:
            wait_until(all_ok, timeout, interval=0.05, what=what)
        except AssertionError:
            with self.lock:
                bad = [s for s in self.streams if not predicate(s)]
            raise AssertionError("%s; %d stream(s) short, e.g. %s" % (
                what, len(bad), "; ".join(describe(s) for s in bad[:3])))


def describe(stream):
    """A short account of a stream for failure messages."""
    seqs = stream.seqs()
    missing = sorted(set(range(1, max(seqs, default=0) + 1)) - set(seqs))
    breaks = [(i, seqs[i - 1], seqs[i]) for i in range(1, len(seqs)) if seqs[i] != seqs[i - 1] + 1]
    return ("%s: %d events over %d connection(s) (%d attempts), last seqs %r, missing %r, "
            "out of step (index, seq, next) %r, first on each connection %r, system %r, "
            "refusals %r" % (
                stream.name, len(seqs), stream.opened, stream.attempts, seqs[-5:], missing[:10],
                breaks[:6], [(c, i, j["payload"]["seq"]) for k, (c, i, j) in enumerate(stream.got)
                             if k == 0 or stream.got[k - 1][0] != c], stream.system_events()[:2],
                stream.refusals[:2]))


# ---- restarting servers ---------------------------------------------------------------

def kill9(bridge):
    """SIGKILLs the process that runs the bridge (the daemon, or in the
    plugin form the broker) and reaps it."""
    if bridge.form == "plugin":
        proc = bridge.broker.proc
    else:
        proc = bridge.proc
    proc.kill()
    proc.wait(scaled(10))


def restart_same_port(bridge, timeout=30):
    """Starts again a bridge whose process ended (kill9, or a stop), on the
    same HTTP port (the daemon's default MQTT client id follows the port) and
    in the plugin form on the same MQTT port; waits for /healthz 200."""
    if bridge.form == "plugin":
        bridge.stop()  # reaps the dead broker, closes its log
        bridge.start(timeout=timeout)
        return
    bridge.proc = bridge._spawn(bridge.command())

    def ready():
        if bridge.proc.poll() is not None:
            raise AssertionError("mqtt-sse-bridge exited with %s on its restart:\n%s" %
                                 (bridge.proc.returncode, bridge.logs(limit=60)))
        try:
            return http_request(bridge.port, "GET", "/healthz", timeout=2).status == 200
        except OSError:
            return False
    wait_until(ready, timeout, interval=0.05, what="the restarted bridge's /healthz")


def persistence_conf(workdir):
    """mosquitto.conf lines that keep the broker's state in workdir (they
    come after the harness's "persistence false", and the last one wins)."""
    d = os.path.join(workdir, "mosquitto-db")
    os.makedirs(d, exist_ok=True)
    return ["persistence true", "persistence_location %s/" % d]


def is_plugin():
    return FORM == "plugin"


# ---- a fast reader of one stream -------------------------------------------------------

class FastStream(threading.Thread):
    """One SSE stream read by its own thread with a blocking socket, for
    rates at which the reactor's line-by-line parser falls behind (the
    server would cut its streams as slow). It removes the chunked framing as
    the bytes come and keeps the decoded body; events() parses it
    afterwards. last_seen(marker): when the decoded body first held marker
    (a bytes pattern searched across reads), or None."""

    def __init__(self, port, query, markers=()):
        super().__init__(name="fast-stream", daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=scaled(10))
        self.sock.sendall(("GET /api/sse?%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           "Accept: text/event-stream\r\n\r\n" % query).encode())
        self.sock.settimeout(None)
        self.head = None
        self.body = bytearray()
        self.eof = False
        self.error = None
        self.markers = {m: None for m in markers}
        self._raw = bytearray()
        self._chunk_left = 0   # data bytes left in the current chunk
        self._skip_crlf = 0    # CRLF bytes still to drop after a chunk
        self._scan_from = 0
        self.cond = threading.Condition()
        self.start()

    def run(self):
        try:
            while True:
                data = self.sock.recv(262144)
                if not data:
                    break
                with self.cond:
                    self._feed(data)
                    self.cond.notify_all()
        except OSError as e:
            self.error = repr(e)
        finally:
            with self.cond:
                self.eof = True
                self.cond.notify_all()

    def _feed(self, data):
        self._raw += data
        if self.head is None:
            end = self._raw.find(b"\r\n\r\n")
            if end < 0:
                return
            self.head = bytes(self._raw[:end])
            del self._raw[:end + 4]
        raw = self._raw
        pos = 0
        while pos < len(raw):
            if self._skip_crlf:
                take = min(self._skip_crlf, len(raw) - pos)
                pos += take
                self._skip_crlf -= take
                continue
            if self._chunk_left:
                take = min(self._chunk_left, len(raw) - pos)
                self.body += raw[pos:pos + take]
                pos += take
                self._chunk_left -= take
                if not self._chunk_left:
                    self._skip_crlf = 2
                continue
            end = raw.find(b"\r\n", pos)
            if end < 0:
                break
            size = int(bytes(raw[pos:end]).split(b";")[0], 16)
            pos = end + 2
            if size == 0:
                self._skip_crlf = 2
                break
            self._chunk_left = size
        del raw[:pos]
        now = time.monotonic()
        for m, at in self.markers.items():
            if at is None and self.body.find(m, max(0, self._scan_from - len(m))) >= 0:
                self.markers[m] = now
        self._scan_from = len(self.body)

    def wait_marker(self, marker, timeout):
        with self.cond:
            if not self.cond.wait_for(lambda: self.markers[marker] is not None or self.eof,
                                      scaled(timeout)):
                raise AssertionError("stream did not get %r within %.1fs (%d bytes so far)" %
                                     (marker, scaled(timeout), len(self.body)))
            if self.markers[marker] is None:
                raise AssertionError("stream ended before %r (%d bytes, %s)" %
                                     (marker, len(self.body), self.error))
            return self.markers[marker]

    def events(self):
        """[(id, data)] of the blocks received so far (LF line ends)."""
        with self.cond:
            text = bytes(self.body).decode("utf-8")
        out = []
        for block in text.split("\n\n"):
            eid, data = None, None
            for line in block.split("\n"):
                if line.startswith("id: "):
                    eid = line[4:]
                elif line.startswith("data: "):
                    data = line[6:]
            if data is not None:
                out.append((eid, data))
        return out

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.join(scaled(5))


class TopicWatcher(threading.Thread):
    """An MQTT subscriber (QoS 0, clean session) of topic_filter that keeps,
    per topic, how many live (not retained) messages came and the last
    payload; subscribed when the constructor returns."""

    def __init__(self, port, topic_filter):
        super().__init__(name="topic-watcher", daemon=True)
        self.counts = collections.Counter()
        self.last = {}
        self.error = None
        self.lock = threading.Lock()
        self.sock, self.reader, _ = mqtt_connect(
            port, "sb-watch-%d-%d" % (os.getpid(), time.monotonic_ns()), True)
        self.sock.sendall(_packet(0x82, struct.pack("!H", 1) + _utf8(topic_filter) + b"\x00"))
        self.subscribed = threading.Event()
        self.sock.settimeout(None)
        self.start()
        if not self.subscribed.wait(scaled(10)):
            raise AssertionError("no SUBACK for %s" % topic_filter)

    def run(self):
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return
                for first, body in self.reader.feed(data):
                    kind = first >> 4
                    if kind == 9:
                        self.subscribed.set()
                    elif kind == 3 and not first & 0x01:
                        tlen = struct.unpack("!H", body[:2])[0]
                        topic = body[2:2 + tlen].decode("utf-8")
                        at = 2 + tlen + (2 if (first >> 1) & 3 else 0)
                        with self.lock:
                            self.counts[topic] += 1
                            self.last[topic] = body[at:]
        except OSError as e:
            self.error = repr(e)

    def snapshot(self):
        with self.lock:
            return dict(self.counts), dict(self.last)

    def close(self):
        try:
            self.sock.sendall(b"\xe0\x00")
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.join(scaled(5))
