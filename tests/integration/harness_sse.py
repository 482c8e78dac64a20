"""The SSE side of the integration harness: raw HTTP/1.1 clients of SSE
streams (SSEClient, its Events) read by one background thread (Reactor),
assertions over several clients, a stream that is never read, pumping
events through a paced reader, and the compact JSON the bridge sends."""

import collections
import json
import re
import selectors
import socket
import ssl
import threading
import time
import urllib.parse

from harness_procs import scaled


# ---- event JSON ----------------------------------------------------------------------

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


# ---- SSE clients ---------------------------------------------------------------------

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
    methods from the test thread. wrap, when given, takes the connected
    socket and returns the one to use (HTTPS: an ssl.SSLSocket whose
    handshake is done)."""

    def __init__(self, reactor, port, path, params=None, headers=None, query=None,
                 method="GET", name=None, wrap=None):
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
        if wrap is not None:
            self.sock = wrap(self.sock)
        self.sock.sendall(request)
        self.sock.setblocking(False)
        self.connected_at = time.monotonic()
        reactor.clients.append(self)
        reactor.call(lambda: reactor.register(self), wait=False)

    # ---- reactor thread ----

    def _on_readable(self):
        # TLS: what the TLS layer has decrypted already is not in the socket
        # for the selector to see: read it too
        while self._read_once() and isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            pass

    def _read_once(self):
        """Reads what the socket has; returns True while it may hold more."""
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return False
        except ConnectionResetError:
            with self.reactor.cond:
                self.reset = True
                self.eof = True
                self.reactor.cond.notify_all()
            self._close_now()
            return False
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
        return bool(data)

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
