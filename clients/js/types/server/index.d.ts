// Declarations of mqtt-sse-bridge/server (written by hand; test/types/server/
// checks them against the JavaScript and a consumer).

import type { IClientOptions } from 'mqtt';
import type { SSEEvent } from '../event.js';

/** One event as the bridge sends it (shared with mqtt-sse-bridge/client). */
export type { SSEEvent };

/** An event to publish: an SSEEvent (createSSEEvent's), or one written by
 *  hand, where the bridge fills in a missing timestamp and id. */
export interface OutgoingEvent<T = unknown> {
  /** The feature, and the topic's last level: 1 to 256 bytes, no '/', '+', '#' or control characters. */
  channel: string;
  /** The action: a non-empty string. */
  type: string;
  /** Any JSON value (null for none; undefined is not JSON). */
  payload: T;
  /** ISO 8601; the bridge fills in the time of receipt where absent. */
  timestamp?: string;
  /** The device that caused it: its connections do not get it (unless excludeDeviceId names another). */
  sourceDeviceId?: string;
  /** Set by sendToDevice; broadcast sends the event without it. */
  targetDeviceId?: string;
  /** Set by broadcast's third argument. */
  excludeDeviceId?: string;
  /** The SSE id (a string of 1 to 128 bytes, or a non-negative integer); the bridge assigns one where absent. */
  id?: string | number;
}

export interface HubOptions {
  /** The broker the bridges read: 'mqtt://host:1883', 'mqtts://...', 'ws://...', 'wss://...'. */
  url: string;
  /** The bridges' topic_prefix (default 'sync'): events go to <topicPrefix>/<userId>/<channel>. */
  topicPrefix?: string;
  /** The bridges' presence_prefix, or the level above theirs when each instance has its own
   *  (default 'presence': reads presence, presence/<userId>, presence/web1/<userId>...);
   *  '' or null: no presence (the count calls then throw). */
  presencePrefix?: string | null;
  /** MQTT credentials. */
  username?: string;
  password?: string;
  /** MQTT client id (default: a random one). Two hubs must not share one. */
  clientId?: string;
  /** How long connectHub, and a call while the connection is down, wait for the broker (ms, default 5000). */
  connectTimeout?: number;
  /** How long a call waits for the broker's acknowledgement once sent (ms, default 10000). */
  publishTimeout?: number;
  /** The bridges' max_event_bytes (default 65536): larger events are refused here. */
  maxEventBytes?: number;
  /** More mqtt.js client options (TLS files, keepalive, protocolVersion, reconnectPeriod...);
   *  those above take precedence. */
  mqtt?: IClientOptions;
}

/** What went wrong, for code: the message says what to fix.
 *  - invalid_options: connectHub's options
 *  - invalid_event: an id, user id, channel or field the bridge would drop (nothing was published)
 *  - too_large: the event is over maxEventBytes (nothing was published)
 *  - not_connected: no connection to the broker within connectTimeout (nothing was published)
 *  - timeout: no acknowledgement within publishTimeout (it may or may not have been delivered)
 *  - refused: the broker refused the connection, subscription or event
 *  - closed: the hub was closed
 *  - presence_off: a count was asked of a hub without presencePrefix */
export type HubErrorCode =
  | 'invalid_options' | 'invalid_event' | 'too_large' | 'not_connected' | 'timeout' | 'refused' | 'closed'
  | 'presence_off';

/** The Error every promise of the hub rejects with. */
export class HubError extends Error {
  constructor(code: HubErrorCode, message: string, options?: { cause?: unknown });
  code: HubErrorCode;
}

/** A connection to the broker that publishes events for the bridges and reads their presence. */
export interface Hub {
  /** Sends event to every SSE connection of userId, on every bridge instance, except those of
   *  one device: excludeDeviceId when given (on the wire as the event's `excludeDeviceId`),
   *  else the event's sourceDeviceId; without any targetDeviceId. Published at QoS 1, not
   *  retained, to <topicPrefix>/<userId>/<event.channel>; resolves on the broker's
   *  acknowledgement; rejects with a HubError, and publishes nothing, for what the bridge
   *  would drop. */
  broadcast<T>(userId: string, event: OutgoingEvent<T>, excludeDeviceId?: string | null): Promise<void>;
  /** Sends event to the SSE connections of deviceId only (its targetDeviceId), even when it
   *  is the event's source. Resolves and rejects as broadcast does. */
  sendToDevice<T>(userId: string, deviceId: string, event: OutgoingEvent<T>): Promise<void>;
  /** The user's open SSE connections over every bridge instance that is online, from the
   *  retained presence records (their current run only). Synchronous. */
  getConnectionCount(userId: string): number;
  /** Whether getConnectionCount(userId) > 0. Synchronous. */
  isUserConnected(userId: string): boolean;
  /** The user's open SSE connections per device id over every bridge instance that is online
   *  ({} when none). Synchronous. */
  getDevices(userId: string): Record<string, number>;
  /** Whether the MQTT connection is up now (it comes back by itself after a loss). */
  readonly connected: boolean;
  /** Waits for the events on their way (each settles within publishTimeout), rejects calls
   *  still waiting for a connection, and disconnects. Idempotent. */
  close(): Promise<void>;
}

/** Connects to the broker and reads the bridges' retained presence; resolves with the hub,
 *  or rejects with a HubError within connectTimeout (and leaves nothing running). */
export function connectHub(options: HubOptions): Promise<Hub>;

/** A new event, as the in-app hub's helper made it: `{ channel, type, payload,
 *  sourceDeviceId, timestamp }`, timestamp now (ISO 8601 UTC with milliseconds);
 *  without deviceId, no sourceDeviceId. */
export function createSSEEvent<T>(channel: string, type: string, payload: T, deviceId?: string | null): SSEEvent<T>;
