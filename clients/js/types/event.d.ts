// The SSEEvent, shared by mqtt-sse-bridge/client and mqtt-sse-bridge/server
// (written by hand).

/** One event as the bridge sends it: the SSEEvent a backend published, with
 *  `channel` and `timestamp` filled in. */
export interface SSEEvent<T = unknown> {
  /** The action: "started", "updated", "deleted"... */
  type: string;
  /** Event-specific data. */
  payload: T;
  /** The feature: "timer", "calendar"... (the topic's last level). */
  channel: string;
  /** ISO 8601 time, filled in by the bridge where the publisher gave none. */
  timestamp: string;
  /** The device that caused it: its own connections do not get it. */
  sourceDeviceId?: string;
  /** Delivered to this device's connections only. */
  targetDeviceId?: string;
  /** Left out instead of the source (the in-app hub's broadcast argument). */
  excludeDeviceId?: string;
  /** The event's SSE id (the publisher's own, or the one the bridge assigned). */
  id?: string | number;
}
