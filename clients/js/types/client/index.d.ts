// mqtt-sse-bridge/client: the browser client and who this browser is.
export {
  SSEClient, sseClient, backoffDelay, buildUrl,
  SSEEvent, ResyncPayload, ConnectionState, StateDetail, Role, Logger, ConnectOptions, TokenSource,
  SSEHandler, SSEClientEnvironment, EventSourceLike, EventSourceClass, EventTargetLike,
  LockManagerLike, BroadcastChannelLike, BroadcastChannelClass,
} from './sse-client.js';
export {
  getDeviceId, getDeviceName, setDeviceName, isValidDeviceId, newDeviceId, describeUserAgent,
} from './device.js';
