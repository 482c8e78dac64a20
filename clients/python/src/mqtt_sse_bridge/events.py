"""SSEEvents: making one, and checking one the way the bridge does.

The checks here are those of the bridge's core/event.c and core/topic.c
(README "Events"), plus what an MQTT broker refuses in a topic, so that an
event the bridge would drop is refused before it leaves.
"""

from __future__ import annotations

import datetime
import json
from typing import TYPE_CHECKING, Dict, Mapping, Optional, Sequence, Tuple, TypedDict, Union

from .errors import EventTooLargeError, InvalidEventError

if TYPE_CHECKING:
    from typing_extensions import TypeAlias

__all__ = [
    "JSONValue",
    "SSEEvent",
    "create_sse_event",
    "encode_event",
    "valid_timestamp",
    "DEFAULT_MAX_EVENT_BYTES",
    "ID_MAX_BYTES",
    "TOPIC_LEVEL_MAX_BYTES",
]

#: The bridge's default max_event_bytes.
DEFAULT_MAX_EVENT_BYTES = 65536
#: Longest id, sourceDeviceId, targetDeviceId or excludeDeviceId (UTF-8 bytes).
ID_MAX_BYTES = 128
#: Longest user id or channel, one topic level (UTF-8 bytes).
TOPIC_LEVEL_MAX_BYTES = 256
# jansson reads integers as signed 64-bit; a larger one is not JSON to it
_INT_MIN, _INT_MAX = -(2 ** 63), 2 ** 63 - 1

#: A JSON value: what an event's payload may be.
JSONValue: TypeAlias = Union[None, bool, int, float, str, Sequence["JSONValue"],
                             Mapping[str, "JSONValue"]]


class _SSEEventRequired(TypedDict):
    channel: str
    type: str
    payload: JSONValue


class SSEEvent(_SSEEventRequired, total=False):
    """An event as the in-app hub had it, with the bridge's optional fields.

    channel, type and payload are required; sourceDeviceId is the device that
    caused it, timestamp an ISO 8601 time. targetDeviceId, excludeDeviceId
    and id are the bridge's (README "Events"); send_to_device() and
    broadcast() set the first two for you.
    """

    sourceDeviceId: Optional[str]
    timestamp: str
    targetDeviceId: Optional[str]
    excludeDeviceId: Optional[str]
    id: Union[str, int, None]


def _now_iso() -> str:
    now = datetime.datetime.now(datetime.timezone.utc)
    return "%s.%03dZ" % (now.strftime("%Y-%m-%dT%H:%M:%S"), now.microsecond // 1000)


def create_sse_event(channel: str, type: str, payload: JSONValue,
                     device_id: Optional[str] = None) -> SSEEvent:
    """Returns a new event {channel, type, payload, sourceDeviceId, timestamp}
    as the in-app hub's createSSEEvent did: sourceDeviceId is device_id (None
    when not given, which the bridge reads as absent) and timestamp is now, in
    UTC with milliseconds ("2026-11-25T10:52:32.123Z"). Nothing is checked
    here: broadcast() and send_to_device() check the event before it leaves.
    """
    return {
        "channel": channel,
        "type": type,
        "payload": payload,
        "sourceDeviceId": device_id,
        "timestamp": _now_iso(),
    }


# ---- the bridge's rules --------------------------------------------------------

def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _utf8(value: str, what: str) -> bytes:
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidEventError("%s %s is not valid Unicode text (a lone surrogate)"
                                % (what, _show(value))) from None


def _mqtt_topic_char_ok(c: str) -> bool:
    """What an MQTT broker takes in a topic (Mosquitto's UTF-8 check): no
    control characters (C0, DEL, C1) and no non-characters."""
    o = ord(c)
    if o < 0x20 or 0x7F <= o <= 0x9F:
        return False
    if 0xFDD0 <= o <= 0xFDEF or (o & 0xFFFF) in (0xFFFE, 0xFFFF):
        return False
    return True


def check_topic_level(value: object, what: str) -> str:
    """Returns value if it can be one topic level naming a user or a channel
    (1 to 256 UTF-8 bytes, no '/', '+', '#' or control characters, nothing an
    MQTT broker refuses); raises InvalidEventError naming `what` otherwise."""
    if not isinstance(value, str):
        raise InvalidEventError("%s must be a string, not %s" % (what, type(value).__name__))
    n = len(_utf8(value, what))
    if n == 0 or n > TOPIC_LEVEL_MAX_BYTES:
        raise InvalidEventError("%s must be 1 to %d bytes (UTF-8), got %d: %s"
                                % (what, TOPIC_LEVEL_MAX_BYTES, n, _show(value)))
    for c in value:
        if c in "/+#":
            raise InvalidEventError("%s must not hold '/', '+' or '#' (it is one topic level): %s"
                                    % (what, _show(value)))
        if not _mqtt_topic_char_ok(c):
            raise InvalidEventError("%s must not hold control characters or Unicode "
                                    "non-characters (U+%04X): %s" % (what, ord(c), _show(value)))
    return value


def check_prefix(value: object, what: str) -> str:
    """Returns value if it can be a topic prefix (one or more levels); raises
    InvalidEventError otherwise."""
    if not isinstance(value, str):
        raise InvalidEventError("%s must be a string, not %s" % (what, type(value).__name__))
    for level in value.split("/"):
        check_topic_level(level, "each level of " + what)
    return value


def _check_id(event: Mapping[str, object], key: str, allow_int: bool = False) -> None:
    """The bridge's id_field(): absent or null, or a string of 1 to 128 UTF-8
    bytes without control characters (bad_id), or for "id" also an integer
    >= 0; any other JSON type is bad_field."""
    if key not in event or event[key] is None:
        return
    v = event[key]
    if allow_int and isinstance(v, int) and not isinstance(v, bool):
        if v < 0 or v > _INT_MAX:
            raise InvalidEventError("field '%s' must be a string or an integer from 0 to 2^63-1, "
                                    "got %d" % (key, v))
        return
    if not isinstance(v, str):
        raise InvalidEventError("field '%s' must be %s, not %s" % (
            key, "a string or a non-negative integer" if allow_int else "a string",
            type(v).__name__))
    n = len(_utf8(v, "field '%s'" % key))
    if n == 0 or n > ID_MAX_BYTES:
        raise InvalidEventError("field '%s' must be 1 to %d bytes (UTF-8), got %d: %s"
                                % (key, ID_MAX_BYTES, n, _show(v)))
    for c in v:
        if ord(c) < 0x20 or ord(c) == 0x7F:
            raise InvalidEventError("field '%s' must not hold control characters: %s"
                                    % (key, _show(v)))


def _digits(s: str, i: int, n: int, lo: int, hi: int) -> int:
    """Reads n ASCII digits at s[i:] as a number from lo to hi; returns the
    index after them, or -1."""
    chunk = s[i:i + n]
    if len(chunk) != n or any(c not in "0123456789" for c in chunk):
        return -1
    return i + n if lo <= int(chunk) <= hi else -1


def _at(s: str, i: int) -> str:
    return s[i] if 0 <= i < len(s) else ""


def valid_timestamp(s: str) -> bool:
    """True if s is an ISO 8601 date or date-time as the bridge accepts it
    (sb_event_valid_timestamp): YYYY-MM-DD, optionally followed by T (or t or
    a space), hh:mm[:ss[.fraction]], and Z or an offset +hh[[:]mm]."""
    i = _digits(s, 0, 4, 0, 9999)
    if i < 0 or _at(s, i) != "-":
        return False
    i = _digits(s, i + 1, 2, 1, 12)
    if i < 0 or _at(s, i) != "-":
        return False
    year, month = int(s[0:4]), int(s[5:7])
    leap = (year % 4 == 0 and year % 100 != 0) or year % 400 == 0
    days = 29 if month == 2 and leap else (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[month - 1]
    i = _digits(s, i + 1, 2, 1, days)
    if i < 0:
        return False
    if i == len(s):
        return True
    if _at(s, i) not in ("T", "t", " "):
        return False
    i = _digits(s, i + 1, 2, 0, 23)
    if i < 0 or _at(s, i) != ":":
        return False
    i = _digits(s, i + 1, 2, 0, 59)
    if i < 0:
        return False
    if _at(s, i) == ":":
        i = _digits(s, i + 1, 2, 0, 60)  # 60: a leap second
        if i < 0:
            return False
        if _at(s, i) in (".", ","):
            i += 1
            if _at(s, i) == "" or _at(s, i) not in "0123456789":
                return False
            while _at(s, i) != "" and _at(s, i) in "0123456789":
                i += 1
    if _at(s, i) in ("Z", "z"):
        return i + 1 == len(s)
    if _at(s, i) in ("+", "-"):
        i = _digits(s, i + 1, 2, 0, 23)
        if i < 0:
            return False
        if _at(s, i) == ":":
            i = _digits(s, i + 1, 2, 0, 59)
            if i < 0:
                return False
        elif i < len(s):
            i = _digits(s, i, 2, 0, 59)
            if i < 0:
                return False
    return i == len(s)


def _strict_pairs(pairs: Sequence[Tuple[str, object]]) -> Dict[str, object]:
    seen: Dict[str, object] = {}
    for k, v in pairs:
        if k in seen:
            raise InvalidEventError("the event's JSON would hold the key %s twice (keys of "
                                    "different types that read the same?), which the bridge "
                                    "drops" % _show(k))
        seen[k] = v
    return seen


def encode_event(topic_prefix: str, user_id: object, event: object,
                 extra: Optional[Mapping[str, object]] = None,
                 max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> Tuple[str, bytes]:
    """Returns (topic, payload) for event sent to user_id, with the fields of
    extra set over the event's (targetDeviceId, excludeDeviceId); the payload
    is the event's compact JSON, its fields in their order. Raises
    InvalidEventError (EventTooLargeError for the size) naming the field and
    the rule when the bridge would drop it. Pure."""
    user = check_topic_level(user_id, "user id")
    if not isinstance(event, Mapping):
        raise InvalidEventError("the event must be a mapping (a dict such as create_sse_event() "
                                "returns), not %s" % type(event).__name__)
    wire: Dict[str, object] = {}
    for k, v in event.items():
        if not isinstance(k, str):
            raise InvalidEventError("the event's keys must be strings, not %s" % _show(k))
        wire[k] = v
    if extra:
        wire.update(extra)

    if "channel" not in wire or wire["channel"] is None:
        raise InvalidEventError("the event has no channel: the topic needs one "
                                "(make it with create_sse_event(channel, type, payload))")
    channel = check_topic_level(wire["channel"], "field 'channel'")
    if "type" not in wire:
        raise InvalidEventError("field 'type' is missing")
    if not isinstance(wire["type"], str) or wire["type"] == "":
        raise InvalidEventError("field 'type' must be a non-empty string, got %s"
                                % _show(wire["type"]))
    if "payload" not in wire:
        raise InvalidEventError("field 'payload' is missing (it may be None, but must be there)")
    ts = wire.get("timestamp")
    if ts is not None and (not isinstance(ts, str) or not valid_timestamp(ts)):
        raise InvalidEventError("field 'timestamp' must be an ISO 8601 string "
                                "(\"2026-11-25T10:52:32.123Z\"), got %s" % _show(ts))
    _check_id(wire, "id", allow_int=True)
    for key in ("sourceDeviceId", "targetDeviceId", "excludeDeviceId"):
        _check_id(wire, key)

    try:
        text = json.dumps(wire, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise InvalidEventError("the event is not JSON: %s" % e) from None
    except RecursionError:
        raise InvalidEventError("the event is nested too deeply to be JSON") from None
    data = _utf8(text, "the event's JSON")
    if len(data) > max_event_bytes:
        raise EventTooLargeError("the event is %d bytes of JSON, over max_event_bytes (%d)"
                                 % (len(data), max_event_bytes))
    # read back as the bridge reads it: no key twice (numbers of any size are
    # kept as written)
    json.loads(text, object_pairs_hook=_strict_pairs)
    return "%s/%s/%s" % (topic_prefix, user, channel), data
