"""The exceptions of the hub: one base class, HubError, and what went wrong."""

from __future__ import annotations

__all__ = [
    "HubError",
    "HubConfigError",
    "HubConnectionError",
    "HubClosedError",
    "PublishTimeoutError",
    "InvalidEventError",
    "EventTooLargeError",
]


class HubError(Exception):
    """Base class of every error the hub raises."""


class HubConfigError(HubError, ValueError):
    """connect_hub() was given an option it cannot use (a bad URL, prefix or
    timeout). Nothing was connected."""


class HubConnectionError(HubError):
    """The broker could not be reached, refused the connection or the presence
    subscription, or the connection was not up within the timeout. When a
    publishing call raises it, nothing was published."""


class HubClosedError(HubConnectionError):
    """The hub was closed with close(); it publishes and answers no more."""


class PublishTimeoutError(HubError):
    """The event left, but the broker did not acknowledge it within the
    timeout. Its fate is unknown: the client keeps offering it (QoS 1) while
    it runs, so it may still arrive."""


class InvalidEventError(HubError, ValueError):
    """The bridge would drop this event, so it was not published: a user id or
    channel that cannot be one topic level, a device id or event id it refuses,
    a missing or bad type or payload, a bad timestamp, or a payload that is not
    JSON as the bridge reads it. The message names the field and the rule."""


class EventTooLargeError(InvalidEventError):
    """The event's JSON is over max_event_bytes, which the bridge drops. Nothing
    was published."""
