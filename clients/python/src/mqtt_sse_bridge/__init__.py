"""mqtt_sse_bridge: the in-app SSE hub's calls for Python backends, over MQTT.

Publishes events for mqtt-sse-bridge, which relays them to the browsers'
Server-Sent-Events streams, and answers who is connected from the bridges'
retained presence records::

    from mqtt_sse_bridge import connect_hub, create_sse_event

    with connect_hub("mqtt://127.0.0.1:1883") as hub:
        hub.broadcast(user_id, create_sse_event("timer", "started", payload, device_id),
                      device_id)
        hub.send_to_device(user_id, other_device_id, event)
        hub.get_connection_count(user_id), hub.is_user_connected(user_id)
"""

from .errors import (EventTooLargeError, HubClosedError, HubConfigError, HubConnectionError,
                     HubError, InvalidEventError, PublishTimeoutError)
from .events import JSONValue, SSEEvent, create_sse_event
from .hub import Hub, connect_hub

__version__ = "0.1.0"

__all__ = [
    "connect_hub",
    "create_sse_event",
    "Hub",
    "SSEEvent",
    "JSONValue",
    "HubError",
    "HubConfigError",
    "HubConnectionError",
    "HubClosedError",
    "PublishTimeoutError",
    "InvalidEventError",
    "EventTooLargeError",
    "__version__",
]
