// A TypeScript app using every name that mqtt-sse-bridge/client exports, as a
// user would (tsc --strict --noEmit). @ts-expect-error lines prove that the
// types catch mistakes: nothing a user touches is `any`.
import {
  SSEClient, sseClient, backoffDelay, buildUrl,
  getDeviceId, getDeviceName, setDeviceName, isValidDeviceId, newDeviceId, describeUserAgent,
} from 'mqtt-sse-bridge/client';
import type {
  SSEEvent, ResyncPayload, ConnectionState, StateDetail, Role, Logger, ConnectOptions, TokenSource,
  SSEHandler, SSEClientEnvironment, EventSourceLike, EventSourceClass, EventTargetLike,
  LockManagerLike, BroadcastChannelLike, BroadcastChannelClass,
} from 'mqtt-sse-bridge/client';

interface TimerStarted {
  memoId: string;
  taskTitle: string;
  startedAt: string;
  plannedEndTime: string;
  mode: 'pomodoro' | 'countdown';
}

const deviceId: string = getDeviceId();
const name: string = getDeviceName();
setDeviceName('Kitchen tablet');
setDeviceName(null);
const fresh: string = newDeviceId();
const described: string = describeUserAgent(navigator.userAgent);
const maybe: unknown = new URLSearchParams(location.hash.slice(1)).get('device');
if (isValidDeviceId(maybe)) {
  const narrowed: string = maybe; // a type guard
  console.log(narrowed);
}

const getToken: TokenSource = () => fetch('/auth/sse-token').then((r) => r.text());
const logger: Logger = { info: (...a: unknown[]) => console.log(...a), warn: console.warn };
const options: ConnectOptions = {
  getToken,
  url: '/api/sse',
  share: true,
  retryMs: 1000,
  maxDelayMs: 30000,
  maxAttempts: 10,
  lastEventId: '1795604842998-1',
  withCredentials: false,
  logger,
  onResync: (event: SSEEvent<ResyncPayload>) => console.log('refetch', event.payload.reason),
  onStateChange: (state: ConnectionState, detail: StateDetail) => {
    if (state === 'reconnecting') console.log(detail.attempt, detail.maxAttempts, detail.delay);
  },
};

const onStarted: SSEHandler<TimerStarted> = (event) => {
  const title: string = event.payload.taskTitle;
  const when: string = event.timestamp;
  const from: string | undefined = event.sourceDeviceId;
  const to: string | undefined = event.targetDeviceId;
  const except: string | undefined = event.excludeDeviceId;
  const id: string | number | undefined = event.id;
  console.log(title, when, from, to, except, id, event.channel, event.type);
  // @ts-expect-error the payload is typed, not any
  const wrong: number = event.payload.taskTitle;
  console.log(wrong);
};
const undo: () => void = sseClient.on<TimerStarted>('timer', onStarted);
sseClient.on('timer', (event) => {
  // @ts-expect-error without a type argument the payload is unknown
  console.log(event.payload.taskTitle);
});
sseClient.off('timer', onStarted);
sseClient.off('timer');
undo();
sseClient.connect(deviceId, options);
sseClient.connect(deviceId, { share: false });
// @ts-expect-error a device id is a string
sseClient.connect(42);
const connected: boolean = sseClient.isConnected();
const state: ConnectionState = sseClient.state;
const role: Role = sseClient.role;
const last: string = sseClient.lastEventId;
const me: string | null = sseClient.deviceId;
const sharing: number = sseClient.tabs;
sseClient.disconnect();

// The platform can be swapped (tests, polyfills): the browser's own types fit.
const esClass: EventSourceClass = EventSource;
const es: EventSourceLike = new esClass('/api/sse?deviceId=x');
es.close();
const bc: BroadcastChannelClass = BroadcastChannel;
const channel: BroadcastChannelLike = new bc('x');
channel.close();
const locks: LockManagerLike = navigator.locks;
const doc: EventTargetLike = document;
const env: SSEClientEnvironment = { locks, BroadcastChannel, document, window };
const second = new SSEClient(env);
second.connect(newDeviceId(), { EventSource });
const alone = new SSEClient({ locks: null });
alone.connect(fresh);

const delay: number = backoffDelay(3, 250, 8000);
const url: string = buildUrl('/api/sse', { deviceId, token: 't', lastEventId: last });
console.log(name, described, connected, state, role, me, sharing, doc, delay, url);
