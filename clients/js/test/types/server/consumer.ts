// A TypeScript backend using every name that mqtt-sse-bridge/server exports,
// as a user would (tsc --strict --noEmit). @ts-expect-error lines prove that
// the types catch mistakes: nothing a user touches is `any`.
import { connectHub, createSSEEvent, HubError } from 'mqtt-sse-bridge/server';
import type { Hub, HubOptions, HubErrorCode, OutgoingEvent, SSEEvent } from 'mqtt-sse-bridge/server';
import type { SSEEvent as ClientSSEEvent } from 'mqtt-sse-bridge/client';

interface TimerStarted {
  memoId: string;
  taskTitle: string;
  startedAt: string;
  plannedEndTime: string;
  mode: 'pomodoro' | 'countdown';
}

const options: HubOptions = {
  url: 'mqtt://127.0.0.1:1883',
  topicPrefix: 'sync',
  presencePrefix: 'presence',
  username: 'backend',
  password: 'secret',
  clientId: 'web-1',
  connectTimeout: 5000,
  publishTimeout: 10000,
  maxEventBytes: 65536,
  mqtt: { keepalive: 30, reconnectPeriod: 2000, protocolVersion: 5 },
};
const noPresence: HubOptions = { url: 'mqtts://broker:8883', presencePrefix: null };
// @ts-expect-error url is required
const missingUrl: HubOptions = { topicPrefix: 'sync' };
// @ts-expect-error a timeout is a number of ms
const badTimeout: HubOptions = { url: 'mqtt://x', connectTimeout: '5s' };

async function main(): Promise<void> {
  const hub: Hub = await connectHub(options);

  const started: SSEEvent<TimerStarted> = createSSEEvent('timer', 'started', {
    memoId: 'm1', taskTitle: 'Write', startedAt: new Date().toISOString(),
    plannedEndTime: new Date(Date.now() + 25 * 60000).toISOString(), mode: 'pomodoro',
  }, 'phone');
  const title: string = started.payload.taskTitle;
  const source: string | undefined = started.sourceDeviceId;
  const stamp: string = started.timestamp;
  // the client's SSEEvent is the same type
  const asReceived: ClientSSEEvent<TimerStarted> = started;
  const back: SSEEvent<TimerStarted> = asReceived;

  await hub.broadcast('user-1', started, 'phone');
  await hub.broadcast('user-1', started);
  await hub.broadcast('user-1', started, null);
  await hub.sendToDevice('user-1', 'laptop', createSSEEvent('timer', 'moved', { targetDeviceId: 'laptop' }, 'phone'));
  await hub.broadcast('user-1', createSSEEvent('timer', 'stopped', {}));

  // an event written by hand: the bridge fills in timestamp and id
  const byHand: OutgoingEvent<{ pomodoroState: string }> = {
    channel: 'timer', type: 'updated', payload: { pomodoroState: 'break' }, id: 42,
  };
  await hub.broadcast('user-1', byHand);
  // @ts-expect-error the payload is required
  await hub.broadcast('user-1', { channel: 'timer', type: 'x' });
  // @ts-expect-error excludeDeviceId is a device id
  await hub.broadcast('user-1', started, 7);
  // @ts-expect-error sendToDevice takes the device before the event
  await hub.sendToDevice('user-1', started, 'laptop');
  // @ts-expect-error the payload's type is kept
  const wrong: number = started.payload.memoId;

  const n: number = hub.getConnectionCount('user-1');
  const online: boolean = hub.isUserConnected('user-1');
  const devices: Record<string, number> = hub.getDevices('user-1');
  const up: boolean = hub.connected;
  // @ts-expect-error the counts are synchronous
  await hub.getConnectionCount('user-1').then(() => 0);
  console.log(title, source, stamp, back, n, online, devices, up, wrong);

  try {
    await hub.broadcast('a/b', started);
  } catch (err) {
    if (err instanceof HubError) {
      const code: HubErrorCode = err.code;
      const message: string = err.message;
      if (code === 'invalid_event' || code === 'too_large') console.log('fix the event:', message);
      else if (code === 'not_connected' || code === 'timeout') console.log('try again later:', message);
    }
  }
  const made: HubError = new HubError('closed', 'the hub is closed');
  // @ts-expect-error only the documented codes
  const badCode: HubErrorCode = 'nope';
  console.log(made, badCode, noPresence, missingUrl, badTimeout);

  await hub.close();
}

void main();
