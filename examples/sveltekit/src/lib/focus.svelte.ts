// The focus timer in the page (the original app's focus.svelte.ts): the state
// the page shows, the actions this device takes (HTTP requests to the app's
// server, which tells the other devices), and the handlers of what the other
// devices did (called by timer-sse-handler.ts).
import { getContext, setContext } from 'svelte';
import type { ConnectionState, SSEEvent } from 'mqtt-sse-bridge/client';
import type {
  Device, DeviceByePayload, DeviceHelloPayload, Timer, TimerMode, TimerMovedPayload, TimerPayload,
  TimerSnapshot, TimerStartedPayload, TimerUpdatedPayload,
} from './timer';

export class FocusState {
  me = $state<Device>({ deviceId: '', deviceName: '' });
  userId = $state('');
  timer = $state<Timer | null>(null);
  /** Set on the device a timer was moved to: the device it came from. */
  movedFrom = $state<string | null>(null);
  lastStop = $state<{ by: string; at: string } | null>(null);
  devices = $state<Device[]>([]);
  presence = $state({ connections: 0, online: false });
  connection = $state<ConnectionState>('disconnected');
  error = $state('');
  busy = $state(false);
  /** Every event this page received, in order (for the log, and for tests). */
  received = $state<SSEEvent[]>([]);

  /** The server's view (page load, resync, the answer to an action). */
  apply(s: TimerSnapshot): void {
    this.userId = s.userId;
    if (this.timer?.memoId !== s.timer?.memoId || s.timer?.ownerDeviceId !== this.me.deviceId) this.movedFrom = null;
    this.timer = s.timer;
    this.devices = s.devices;
    this.presence = s.presence;
  }

  nameOf(deviceId: string | undefined): string {
    if (!deviceId) return 'another device';
    if (deviceId === this.me.deviceId) return this.me.deviceName;
    if (deviceId === 'server') return 'the server';
    return this.devices.find((d) => d.deviceId === deviceId)?.deviceName ?? deviceId;
  }

  private learn(deviceId: string | undefined, deviceName: unknown): void {
    if (!deviceId || deviceId === this.me.deviceId || deviceId === 'server' || typeof deviceName !== 'string') return;
    const known = this.devices.find((d) => d.deviceId === deviceId);
    if (known) known.deviceName = deviceName;
    else this.devices.push({ deviceId, deviceName });
  }

  // ---- what this device does ----------------------------------------------------------

  private async post(path: string, body: Record<string, unknown>): Promise<void> {
    this.busy = true;
    this.error = '';
    try {
      const r = await fetch(path, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ deviceId: this.me.deviceId, ...body }),
      });
      if (!r.ok) {
        const why = await r.json().then((e) => e.message, () => r.statusText);
        this.error = `${r.status}: ${why}`;
        if (r.status !== 503) return;
      }
      this.apply(await (r.ok ? r : await fetch('/api/timer')).json());
    } catch (err) {
      this.error = String((err as Error).message || err);
    } finally {
      this.busy = false;
    }
  }

  start(taskTitle: string, mode: TimerMode, minutes: number): Promise<void> {
    this.lastStop = null;
    return this.post('/api/timer', { action: 'start', deviceName: this.me.deviceName, taskTitle, mode, minutes });
  }

  stop(): Promise<void> {
    this.lastStop = { by: 'this device', at: new Date().toISOString() };
    return this.post('/api/timer', { action: 'stop' });
  }

  nextPhase(): Promise<void> {
    return this.post('/api/timer', { action: 'phase' });
  }

  moveTo(targetDeviceId: string): Promise<void> {
    return this.post('/api/timer', { action: 'move', targetDeviceId });
  }

  hello(): Promise<void> {
    return this.post('/api/devices', { action: 'hello', deviceName: this.me.deviceName });
  }

  /** The last tab of this device closes (keepalive: the request outlives the page). */
  bye(): void {
    fetch('/api/devices', {
      method: 'POST',
      keepalive: true,
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ action: 'bye', deviceId: this.me.deviceId }),
    }).catch(() => {});
  }

  /** Asks the server where things stand (after a resync, or to refresh presence). */
  async refresh(): Promise<void> {
    try {
      const r = await fetch('/api/timer');
      if (r.ok) this.apply(await r.json());
    } catch {
      /* offline: the next event or resync tries again */
    }
  }

  // ---- what the other devices did (SSE) -----------------------------------------------

  handleRemoteStarted(p: TimerStartedPayload, from: string | undefined): void {
    this.learn(from, p.deviceName);
    this.lastStop = null;
    this.movedFrom = null;
    this.timer = { ...pick(p), ownerDeviceId: from ?? '', ownerName: p.deviceName };
  }

  handleRemoteStopped(from: string | undefined, at: string): void {
    this.timer = null;
    this.movedFrom = null;
    this.lastStop = { by: this.nameOf(from), at };
  }

  handleRemoteMoved(p: TimerMovedPayload, from: string | undefined): void {
    this.learn(from, p.deviceName);
    this.learn(p.targetDeviceId, p.targetDeviceName);
    const mine = p.targetDeviceId === this.me.deviceId;
    this.movedFrom = mine ? p.deviceName : null;
    this.timer = {
      ...pick(p),
      ownerDeviceId: p.targetDeviceId,
      ownerName: mine ? this.me.deviceName : p.targetDeviceName,
    };
  }

  handleRemoteUpdated(p: TimerUpdatedPayload): void {
    if (this.timer) this.timer = { ...this.timer, pomodoroState: p.pomodoroState };
  }

  handleDeviceHello(p: DeviceHelloPayload): void {
    this.learn(p.deviceId, p.deviceName);
  }

  handleDeviceBye(p: DeviceByePayload): void {
    this.devices = this.devices.filter((d) => d.deviceId !== p.deviceId);
  }
}

function pick(p: TimerPayload): TimerPayload {
  return {
    memoId: p.memoId,
    taskTitle: p.taskTitle,
    startedAt: p.startedAt,
    plannedEndTime: p.plannedEndTime,
    mode: p.mode,
    ...(p.pomodoroState ? { pomodoroState: p.pomodoroState } : {}),
  };
}

// One FocusState per page (the layout makes it): a module-level one would be shared by
// every request that the server renders.
const KEY = Symbol('focus');
export const setFocus = (state: FocusState) => setContext(KEY, state);
export const getFocus = () => getContext<FocusState>(KEY);
