// Declarations of mqtt-sse-bridge/client's sse-client.js (written by hand;
// test/types/ checks them against the JavaScript and a consumer).

import type { SSEEvent } from '../event.js';
/** One event as the bridge sends it (shared with mqtt-sse-bridge/server). */
export type { SSEEvent };

/** The payload of the bridge's `system`/`resync` event. */
export interface ResyncPayload {
  /** The id the client tried to resume after. */
  lastEventId?: string;
  /** `unknown_last_event_id` or `replay_truncated`. */
  reason?: string;
}

/** Where the connection stands, in every tab alike. */
export type ConnectionState = 'connecting' | 'connected' | 'reconnecting' | 'failed' | 'disconnected';

/** Details of a state change: `reconnecting` has attempt, maxAttempts and delay (ms);
 *  `failed` has attempts, or a reason. */
export interface StateDetail {
  attempt?: number;
  maxAttempts?: number;
  delay?: number;
  attempts?: number;
  reason?: string;
}

/** Which part this tab plays: `leader` holds the stream that the tabs share,
 *  `follower` gets it from the leader, `single` has a stream of its own,
 *  null is not connected. */
export type Role = 'leader' | 'follower' | 'single' | null;

/** Where the `[SSE] ...` lines go. */
export interface Logger {
  info?: (...args: unknown[]) => void;
  warn?: (...args: unknown[]) => void;
  error?: (...args: unknown[]) => void;
}

/** What the client needs of an EventSource (a polyfill, tests). */
export interface EventSourceLike {
  readyState?: number;
  onopen: ((ev: never) => unknown) | null;
  onmessage: ((ev: never) => unknown) | null;
  onerror: ((ev: never) => unknown) | null;
  close(): void;
}

export type EventSourceClass = new (url: string, init?: { withCredentials?: boolean }) => EventSourceLike;

/** A token for the stream's `token` query parameter; null or '' sends none (cookie auth). */
export type TokenSource = () => string | null | undefined | Promise<string | null | undefined>;

export interface ConnectOptions {
  /** The SSE endpoint. Default '/api/sse'; absolute for another origin (list it in `cors_origins`). */
  url?: string;
  /** Asked before every connection attempt (an expired token does not end the sync);
   *  with sharing on, only by the tab that holds the stream. */
  getToken?: TokenSource;
  /** `auth none` (development) only: sent as the userId query parameter. */
  userId?: string;
  /** Resume after this id on the first connection (e.g. one the app kept). */
  lastEventId?: string | number;
  /** EventSource's option, for cookies on a cross-origin endpoint. */
  withCredentials?: boolean;
  /** Share one stream among the tabs of this browser with the same device id
   *  and endpoint (default true; needs navigator.locks and BroadcastChannel). */
  share?: boolean;
  /** The bridge could not replay everything since the last event: refetch the app's state. */
  onResync?: (event: SSEEvent<ResyncPayload>) => void;
  /** Every change of the connection's state. */
  onStateChange?: (state: ConnectionState, detail: StateDetail) => void;
  /** First backoff delay, ms (default 1000). */
  retryMs?: number;
  /** Backoff cap, ms (default 30000). */
  maxDelayMs?: number;
  /** Attempts in a row before giving up with 'failed' (default 10). */
  maxAttempts?: number;
  /** Where the [SSE] lines go (default console); null for none. */
  logger?: Logger | null;
  /** The EventSource class to use (a polyfill; tests); default the global. */
  EventSource?: EventSourceClass;
}

export interface EventTargetLike {
  addEventListener(type: string, listener: (ev: unknown) => void): void;
  removeEventListener(type: string, listener: (ev: unknown) => void): void;
}

export interface LockManagerLike {
  request(name: string, options: { signal?: AbortSignal; steal?: boolean },
    callback: (lock: unknown) => unknown): Promise<unknown>;
}

export interface BroadcastChannelLike {
  postMessage(message: unknown): void;
  onmessage: ((ev: never) => unknown) | null;
  close(): void;
}

export type BroadcastChannelClass = new (name: string) => BroadcastChannelLike;

/** The platform a client uses, the globals by default: for tests and polyfills.
 *  null turns a part off (no locks: one stream per tab). */
export interface SSEClientEnvironment {
  locks?: LockManagerLike | null;
  BroadcastChannel?: BroadcastChannelClass | null;
  document?: (EventTargetLike & { visibilityState?: string }) | null;
  window?: EventTargetLike | null;
}

export type SSEHandler<T = unknown> = (event: SSEEvent<T>) => void;

export class SSEClient {
  constructor(env?: SSEClientEnvironment);
  /** Connects as deviceId (closing any connection this client had).
   *  Throws a TypeError for a device id the bridge would refuse. */
  connect(deviceId: string, options?: ConnectOptions): void;
  /** Closes the connection and stops reconnecting. Handlers stay registered. */
  disconnect(): void;
  /** Routes the events of channel to handler; '*' gets every channel.
   *  Returns a function that removes this handler. */
  on<T = unknown>(channel: string, handler: SSEHandler<T>): () => void;
  /** Removes handler from channel, or every handler of channel when none is given. */
  off<T = unknown>(channel: string, handler?: SSEHandler<T>): void;
  /** Whether the stream is open now (in this tab, or in the tab that holds it for this one). */
  isConnected(): boolean;
  /** The last event id this tab has seen ('' if none). */
  readonly lastEventId: string;
  readonly state: ConnectionState;
  readonly deviceId: string | null;
  readonly role: Role;
  /** How many tabs share this tab's stream, this one included (1 when it does not share). */
  readonly tabs: number;
}

/** The shared client of the page. */
export const sseClient: SSEClient;
export default sseClient;

/** The delay before reconnection attempt `attempt` (1-based): retryMs doubling, capped at maxDelayMs. */
export function backoffDelay(attempt: number, retryMs?: number, maxDelayMs?: number): number;

/** The URL of one connection attempt. */
export function buildUrl(base: string, params?: {
  deviceId?: string; token?: string; userId?: string; lastEventId?: string;
}): string;
