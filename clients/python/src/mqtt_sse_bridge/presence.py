"""Presence: who is connected, from the retained records of every bridge.

A bridge with presence_prefix P (README "Presence") keeps its own status
retained on P:

    {"instance":"web1:8080","online":true,"started":"...","timestamp":"..."}

(online false on a clean stop and, through the MQTT will, when the daemon
dies), and one retained record per connected user on P/<userId>:

    {"userId":"u1","online":true,"connections":3,"devices":{...},
     "instance":"web1:8080","started":"...","timestamp":"..."}

cleared by an empty message when the user's last connection on it goes.
Several bridges on one broker take P/web1, P/web2... (or share P): a client
that subscribes P/# sees them all. A record counts when the status beside it
(on its parent topic) says its instance is online in the same run
("started"); a record of an instance that is offline or of an older run is
stale. When instances share one prefix they overwrite each other's status,
so a record whose instance has no status there, while another instance's
status is there, is counted too (the prefix is shared; its instance may well
run). Statuses seen live are all kept, per instance.

PresenceTable is pure (no I/O, no threads): feed it every message under
P/# in order with apply(), ask it with connection_count().
"""

from __future__ import annotations

import json
from typing import Dict, NamedTuple, Optional

__all__ = ["PresenceTable"]


class _Record(NamedTuple):
    user: str
    parent: str      # the topic of the status beside it: the instance's prefix
    instance: str
    started: str
    connections: int
    devices: Dict[str, int]


class _Status(NamedTuple):
    online: bool
    started: Optional[str]


def _load(payload: bytes) -> Optional[Dict[str, object]]:
    try:
        obj = json.loads(payload.decode("utf-8"))
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def _count(v: object) -> Optional[int]:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


class PresenceTable:
    """The presence records and instance statuses seen under one prefix.
    Not thread-safe: the caller holds a lock around it."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._records: Dict[str, _Record] = {}             # topic -> record
        self._statuses: Dict[str, Dict[str, _Status]] = {}  # topic -> instance -> status

    def apply(self, topic: str, payload: bytes) -> None:
        """Takes one message (retained or live) published on topic, which lies
        under the prefix; anything else, or what is not a status or record,
        is left out. An empty payload clears what the topic held."""
        if topic != self.prefix and not topic.startswith(self.prefix + "/"):
            return
        self._records.pop(topic, None)
        if not payload:
            self._statuses.pop(topic, None)
            return
        obj = _load(payload)
        if obj is None:
            return
        user, instance = obj.get("userId"), obj.get("instance")
        if not isinstance(instance, str):
            return
        if isinstance(user, str):
            parent, _, level = topic.rpartition("/")
            connections = _count(obj.get("connections"))
            started = obj.get("started")
            if (level != user or not parent or connections is None or
                    not isinstance(started, str) or obj.get("online") is False):
                return
            devices: Dict[str, int] = {}
            raw = obj.get("devices")
            if isinstance(raw, dict):
                for k, v in raw.items():
                    n = _count(v)
                    if isinstance(k, str) and n:
                        devices[k] = n
            self._records[topic] = _Record(user, parent, instance, started, connections, devices)
            return
        online = obj.get("online")
        if isinstance(online, bool):
            started = obj.get("started")
            self._statuses.setdefault(topic, {})[instance] = _Status(
                online, started if isinstance(started, str) else None)

    def _current(self, r: _Record) -> bool:
        statuses = self._statuses.get(r.parent)
        if not statuses:
            return False  # no instance announces itself there
        st = statuses.get(r.instance)
        if st is None:
            return True   # a prefix shared with another instance, which wrote last
        return st.online and st.started == r.started

    def connection_count(self, user: str) -> int:
        """The user's SSE connections over every current instance."""
        return sum(r.connections for r in self._records.values()
                   if r.user == user and self._current(r))

    def devices(self, user: str) -> Dict[str, int]:
        """The user's connections per device over every current instance."""
        out: Dict[str, int] = {}
        for r in self._records.values():
            if r.user == user and self._current(r):
                for d, n in r.devices.items():
                    out[d] = out.get(d, 0) + n
        return out
