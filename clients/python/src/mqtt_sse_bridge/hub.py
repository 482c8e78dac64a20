"""The hub: the in-app sseHub's calls, over MQTT to the bridge.

Runs one paho-mqtt client with its network thread (loop_start). Publishing
calls block the calling thread until the broker acknowledged the event
(QoS 1); presence calls answer at once from the retained records that the
client keeps up to date in the background.
"""

from __future__ import annotations

import ssl
import threading
import time
import urllib.parse
import uuid
from types import TracebackType
from typing import Callable, Dict, Mapping, Optional, Set, Type

import paho.mqtt.client as mqtt

from .errors import (HubClosedError, HubConfigError, HubConnectionError, HubError,
                     InvalidEventError, PublishTimeoutError)
from .events import DEFAULT_MAX_EVENT_BYTES, check_prefix, encode_event
from .presence import PresenceTable

__all__ = ["Hub", "connect_hub"]

_SCHEMES = {
    # scheme: (default port, TLS, transport)
    "mqtt": (1883, False, "tcp"),
    "tcp": (1883, False, "tcp"),
    "mqtts": (8883, True, "tcp"),
    "ssl": (8883, True, "tcp"),
    "tls": (8883, True, "tcp"),
    "ws": (80, False, "websockets"),
    "wss": (443, True, "websockets"),
}


def _new_paho_client(client_id: str, transport: str) -> mqtt.Client:
    """A clean-session MQTT 3.1.1 client; on paho 2.x with the version 2
    callbacks (the callbacks below take either form)."""
    api = getattr(mqtt, "CallbackAPIVersion", None)
    if api is not None:
        return mqtt.Client(callback_api_version=api.VERSION2, client_id=client_id,
                           clean_session=True, protocol=mqtt.MQTTv311, transport=transport)
    return mqtt.Client(client_id=client_id, clean_session=True, protocol=mqtt.MQTTv311,
                       transport=transport)


def _code(rc: object) -> int:
    """A paho 1.x result (an int) or a paho 2.x ReasonCode, as a number."""
    value = getattr(rc, "value", rc)
    return value if isinstance(value, int) else -1


class Hub:
    """A connection to the broker that publishes events for the bridge and
    follows its presence records. Make one with connect_hub(). Thread-safe:
    any thread may call any method. Use it as a context manager, or call
    close()."""

    def __init__(self, host: str, port: int, *, transport: str = "tcp",
                 tls: Optional[ssl.SSLContext] = None, ws_path: str = "/mqtt",
                 topic_prefix: str = "sync", presence_prefix: Optional[str] = "presence",
                 client_id: Optional[str] = None, username: Optional[str] = None,
                 password: Optional[str] = None, timeout: float = 5.0,
                 max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES, keepalive: int = 30) -> None:
        """Sets the hub up without connecting; connect_hub() calls this, then
        _connect(). See connect_hub() for the options."""
        self.host, self.port = host, port
        self.topic_prefix = topic_prefix
        self.presence_prefix = presence_prefix
        self.timeout = timeout
        self.max_event_bytes = max_event_bytes
        self.client_id = client_id or "mqtt-sse-bridge-py-" + uuid.uuid4().hex[:12]
        self._keepalive = keepalive
        self._cond = threading.Condition()
        # guarded by _cond:
        self._connected = False
        self._closed = False
        self._refused: Optional[str] = None      # why the broker refused us
        self._sub_error: Optional[str] = None    # the presence subscription was refused
        self._acked: Set[int] = set()            # PUBACKs not yet claimed
        self._abandoned: Set[int] = set()        # mids a caller stopped waiting for
        self._table: Optional[PresenceTable] = None     # the presence in force
        self._building: Optional[PresenceTable] = None  # the one being read after a (re)connect
        self._sub_mid: Optional[int] = None
        self._sync_mid: Optional[int] = None
        # a filter never subscribed: its UNSUBACK follows the retained
        # messages of the subscription made just before it
        self._sync_filter = "mqtt-sse-bridge/sync/" + self.client_id

        c = _new_paho_client(self.client_id, transport)
        if transport == "websockets":
            c.ws_set_options(path=ws_path)
        if tls is not None:
            c.tls_set_context(tls)
        if username is not None:
            c.username_pw_set(username, password)
        c.reconnect_delay_set(min_delay=1, max_delay=30)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.on_unsubscribe = self._on_unsubscribe
        c.on_publish = self._on_publish
        self._client = c

    # ---- the network thread's callbacks (paho 1.x and 2.x signatures) ----

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, rc: object,
                    properties: object = None) -> None:
        if _code(rc) != 0:
            why = (mqtt.connack_string(rc) if isinstance(rc, int) else str(rc))
            with self._cond:
                self._refused = why
                self._cond.notify_all()
            return
        with self._cond:
            self._connected = True
            self._refused = None
            if self.presence_prefix is not None:
                self._building = PresenceTable(self.presence_prefix)
                # QoS 0: the retained messages go out at once, before the
                # UNSUBACK (QoS 1 ones beyond the broker's in-flight window
                # would be queued behind it)
                self._sub_mid = client.subscribe(self.presence_prefix + "/#", qos=0)[1]
                self._sync_mid = client.unsubscribe(self._sync_filter)[1]
            self._cond.notify_all()

    def _on_disconnect(self, client: mqtt.Client, userdata: object, *args: object) -> None:
        with self._cond:
            self._connected = False
            self._building = None
            self._cond.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            table = self._building if self._building is not None else self._table
            if table is not None:
                table.apply(msg.topic, msg.payload)

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int, granted: object,
                      properties: object = None) -> None:
        codes = list(granted) if isinstance(granted, (list, tuple)) else [granted]
        if mid == self._sub_mid and any(_code(g) >= 0x80 or _code(g) < 0 for g in codes):
            with self._cond:
                self._sub_error = ("the broker refused the subscription to %s/# (is the hub's "
                                   "user allowed to read it?)" % self.presence_prefix)
                self._cond.notify_all()

    def _on_unsubscribe(self, client: mqtt.Client, userdata: object, mid: int,
                        *args: object) -> None:
        with self._cond:
            if mid == self._sync_mid and self._building is not None:
                self._table, self._building = self._building, None
                self._cond.notify_all()

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, *args: object) -> None:
        with self._cond:
            if mid in self._abandoned:
                self._abandoned.discard(mid)
            else:
                self._acked.add(mid)
            self._cond.notify_all()

    # ---- connecting ----

    def _where(self) -> str:
        return "the broker at %s:%d" % (self.host, self.port)

    def _wait(self, ready: Callable[[], bool], deadline: float) -> bool:
        """Waits (holding _cond) until ready() or the deadline; False then."""
        while not ready():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._cond.wait(left)
        return True

    def _connect(self) -> None:
        """Connects, subscribes to presence and reads its retained records,
        all within the timeout; raises HubConnectionError (after stopping the
        client) when that fails."""
        deadline = time.monotonic() + self.timeout
        try:
            self._client.connect_async(self.host, self.port, keepalive=self._keepalive)
        except (ValueError, OSError) as e:
            raise HubConfigError("cannot connect to %s: %s" % (self._where(), e)) from None
        self._client.loop_start()
        error = None
        with self._cond:
            synced = self._wait(lambda: (self._refused is not None or self._sub_error is not None
                                         or (self._connected and (self.presence_prefix is None
                                                                  or self._table is not None))),
                                deadline)
            if self._refused is not None:
                error = "%s refused the connection: %s" % (self._where(), self._refused)
            elif self._sub_error is not None:
                error = self._sub_error
            elif not synced:
                error = ("no connection to %s within %.1f s" % (self._where(), self.timeout)
                         if not self._connected else
                         "connected to %s, but its retained presence records under %s/# did not "
                         "come within %.1f s" % (self._where(), self.presence_prefix,
                                                 self.timeout))
        if error:
            self.close()
            raise HubConnectionError(error)

    # ---- publishing ----

    def _publish(self, topic: str, data: bytes) -> None:
        deadline = time.monotonic() + self.timeout
        with self._cond:
            if not self._wait(lambda: self._connected or self._closed, deadline):
                raise HubConnectionError("not connected to %s within %.1f s; nothing was "
                                         "published" % (self._where(), self.timeout))
            if self._closed:
                raise HubClosedError("the hub is closed; nothing was published")
        info = self._client.publish(topic, data, qos=1)
        # not connected any more: paho keeps the message and sends it on
        # reconnecting, so wait for its acknowledgement all the same
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise HubError("the MQTT client did not take the event: %s"
                           % mqtt.error_string(info.rc))
        with self._cond:
            acked = self._wait(lambda: info.mid in self._acked or self._closed, deadline)
            if info.mid in self._acked:
                self._acked.discard(info.mid)
                return
            self._abandoned.add(info.mid)
            if self._closed:
                raise HubClosedError("the hub was closed before the broker acknowledged the "
                                     "event; it may or may not have been published")
            assert not acked
            raise PublishTimeoutError("%s did not acknowledge the event on %s within %.1f s; it "
                                      "may still arrive" % (self._where(), topic, self.timeout))

    def broadcast(self, user_id: str, event: Mapping[str, object],
                  exclude_device_id: Optional[str] = None) -> None:
        """Publishes event to every SSE connection of user_id, except those
        of exclude_device_id (sent as excludeDeviceId) or, when it is None,
        those of the event's sourceDeviceId (the bridge's rule; an event
        without either reaches every device). Other fields go as they are.
        Returns when the broker acknowledged the event (QoS 1). Raises
        InvalidEventError (EventTooLargeError) when the bridge would drop it,
        HubConnectionError when not connected within the timeout (nothing is
        published in these cases), PublishTimeoutError when the broker did
        not acknowledge it within the timeout, HubClosedError after close()."""
        extra: Dict[str, object] = {}
        if exclude_device_id is not None:
            extra["excludeDeviceId"] = exclude_device_id
        topic, data = encode_event(self.topic_prefix, user_id, event, extra, self.max_event_bytes)
        self._publish(topic, data)

    def send_to_device(self, user_id: str, device_id: str, event: Mapping[str, object]) -> None:
        """Publishes event to the SSE connections of device_id of user_id only
        (sent as targetDeviceId; targeting wins over any exclusion). Returns
        and raises as broadcast() does."""
        if device_id is None:
            raise InvalidEventError("device_id must be a string, not None")
        topic, data = encode_event(self.topic_prefix, user_id, event,
                                   {"targetDeviceId": device_id}, self.max_event_bytes)
        self._publish(topic, data)

    # ---- presence ----

    def _presence(self) -> PresenceTable:
        if self._closed:
            raise HubClosedError("the hub is closed")
        if self._table is None:
            raise HubError("presence is off: connect_hub() was given presence_prefix=None")
        return self._table

    def get_connection_count(self, user_id: str) -> int:
        """The number of SSE connections user_id holds on every bridge that
        publishes presence under presence_prefix, counting only instances
        that are online and in their current run. Answers at once from the
        records followed in the background (while the broker is away, as
        they were when it went). 0 for a user id that cannot be a topic level
        (the bridge keeps no record for it). Raises TypeError for a
        non-string, HubError when presence is off or the hub is closed."""
        if not isinstance(user_id, str):
            raise TypeError("user_id must be a string, not %s" % type(user_id).__name__)
        with self._cond:
            return self._presence().connection_count(user_id)

    def is_user_connected(self, user_id: str) -> bool:
        """True when get_connection_count(user_id) > 0."""
        return self.get_connection_count(user_id) > 0

    def get_devices(self, user_id: str) -> Dict[str, int]:
        """The connections of user_id per device id, over the same instances
        as get_connection_count()."""
        if not isinstance(user_id, str):
            raise TypeError("user_id must be a string, not %s" % type(user_id).__name__)
        with self._cond:
            return self._presence().devices(user_id)

    @property
    def connected(self) -> bool:
        """True while the MQTT connection is up."""
        with self._cond:
            return self._connected

    # ---- the end ----

    def close(self) -> None:
        """Disconnects from the broker and stops the network thread. Calls
        waiting for an acknowledgement raise HubClosedError; later calls
        raise it at once. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> "Hub":
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<Hub %s:%d topic_prefix=%r presence_prefix=%r%s>" % (
            self.host, self.port, self.topic_prefix, self.presence_prefix,
            " closed" if self._closed else "")


def connect_hub(url: str, topic_prefix: str = "sync", presence_prefix: Optional[str] = "presence",
                client_id: Optional[str] = None, username: Optional[str] = None,
                password: Optional[str] = None, timeout: float = 5.0, *,
                max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
                tls_context: Optional[ssl.SSLContext] = None, keepalive: int = 30) -> Hub:
    """Connects to the broker at url and returns a Hub, once connected and,
    unless presence_prefix is None, once the retained presence records under
    presence_prefix/# are read (so the first get_connection_count() is right).

    url: mqtt://host[:port] (1883), mqtts://host[:port] (8883, TLS with the
    system's CAs or tls_context), ws:// or wss://host[:port][/path]
    (WebSockets, path /mqtt by default); user and password may stand in it
    (mqtt://user:secret@host), username and password win over them.
    topic_prefix and presence_prefix are the bridge's options of those names;
    client_id is the MQTT client id (a random one by default); timeout, in
    seconds, bounds this call and each publishing call; max_event_bytes is
    the bridge's option of that name.

    Raises HubConfigError for a bad url or option, HubConnectionError when
    the broker cannot be reached, refuses the connection or the presence
    subscription, or all of it takes longer than timeout."""
    try:
        u = urllib.parse.urlsplit(url)
        port = u.port
    except (ValueError, TypeError, AttributeError) as e:
        raise HubConfigError("bad broker url %r: %s" % (url, e)) from None
    if u.scheme not in _SCHEMES or not u.hostname:
        raise HubConfigError("bad broker url %r: give mqtt://host[:port] (or mqtts://, ws://, "
                             "wss://)" % (url,))
    default_port, tls, transport = _SCHEMES[u.scheme]
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not timeout > 0:
        raise HubConfigError("timeout must be a number of seconds above 0, got %r" % (timeout,))
    if (not isinstance(max_event_bytes, int) or isinstance(max_event_bytes, bool) or
            max_event_bytes < 1):
        raise HubConfigError("max_event_bytes must be a positive integer, got %r"
                             % (max_event_bytes,))
    try:
        check_prefix(topic_prefix, "topic_prefix")
        if presence_prefix is not None:
            check_prefix(presence_prefix, "presence_prefix")
    except InvalidEventError as e:
        raise HubConfigError(str(e)) from None
    context = tls_context
    if tls and context is None:
        context = ssl.create_default_context()
    hub = Hub(u.hostname, port or default_port, transport=transport, tls=context,
              ws_path=u.path or "/mqtt", topic_prefix=topic_prefix,
              presence_prefix=presence_prefix, client_id=client_id,
              username=username if username is not None else
              (urllib.parse.unquote(u.username) if u.username else None),
              password=password if password is not None else
              (urllib.parse.unquote(u.password) if u.password else None),
              timeout=float(timeout), max_event_bytes=max_event_bytes, keepalive=keepalive)
    hub._connect()
    return hub
