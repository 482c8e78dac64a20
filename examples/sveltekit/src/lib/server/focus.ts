// The focus timer's server side (the original app's focus.remote.ts): each
// action changes the user's timer and tells the user's other devices through
// the bridge. The timer lives in this process's memory, per user (an example:
// a real app keeps it in its database); the server also ends Pomodoro phases
// and countdowns when their time is up, so a timer runs on with every device closed.
import { createSSEEvent } from 'mqtt-sse-bridge/server';
import { getHub, hubIfConnected } from './hub';
import {
  ROUNDS, nextPomodoroState, timerPayload,
  type Device, type DeviceByePayload, type DeviceHelloPayload, type PomodoroState, type Timer, type TimerMode,
  type TimerMovedPayload, type TimerSnapshot, type TimerStartedPayload, type TimerStoppedPayload,
  type TimerUpdatedPayload,
} from '$lib/timer';

/** The sourceDeviceId of what the server does by itself: no device has it, so every device gets it. */
export const SERVER_DEVICE = 'server';

interface UserState {
  timer: Timer | null;
  devices: Map<string, string>; // deviceId -> name, in the order they said hello
  due: ReturnType<typeof setTimeout> | null;
}

const users = new Map<string, UserState>();

function userState(userId: string): UserState {
  let s = users.get(userId);
  if (!s) {
    s = { timer: null, devices: new Map(), due: null };
    users.set(userId, s);
  }
  return s;
}

export class InputError extends Error {}

const DEVICE_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export function checkDeviceId(value: unknown, what = 'deviceId'): string {
  if (typeof value !== 'string' || !DEVICE_ID.test(value)) {
    throw new InputError(`${what} must be 1 to 128 characters of [A-Za-z0-9._:-]`);
  }
  return value;
}

function checkText(value: unknown, what: string, max = 200): string {
  const s = typeof value === 'string' ? value.trim() : '';
  if (!s || s.length > max) throw new InputError(`${what} must be 1 to ${max} characters`);
  return s;
}

function deviceName(s: UserState, deviceId: string): string {
  return s.devices.get(deviceId) ?? deviceId;
}

export function snapshot(userId: string): TimerSnapshot {
  const s = userState(userId);
  const hub = hubIfConnected();
  return {
    userId,
    timer: s.timer,
    devices: [...s.devices].map(([deviceId, deviceName]) => ({ deviceId, deviceName })),
    presence: {
      connections: hub ? hub.getConnectionCount(userId) : 0,
      online: hub ? hub.isUserConnected(userId) : false,
    },
  };
}

// ---- the actions ------------------------------------------------------------------------

export interface StartInput {
  deviceId: string;
  deviceName: string;
  taskTitle: string;
  mode: TimerMode;
  minutes: number;
}

export function parseStart(body: Record<string, unknown>): StartInput {
  const minutes = Number(body.minutes);
  if (!Number.isFinite(minutes) || minutes <= 0 || minutes > 600) {
    throw new InputError('minutes must be a number above 0 and at most 600');
  }
  const mode = body.mode === 'pomodoro' ? 'pomodoro' : body.mode === 'countdown' ? 'countdown' : null;
  if (!mode) throw new InputError("mode must be 'countdown' or 'pomodoro'");
  return {
    deviceId: checkDeviceId(body.deviceId),
    deviceName: checkText(body.deviceName ?? body.deviceId, 'deviceName', 64),
    taskTitle: checkText(body.taskTitle, 'taskTitle'),
    mode,
    minutes,
  };
}

/** Starts a timer on the device that asked (replacing a running one): timer:started to the others. */
export async function startTimer(userId: string, input: StartInput): Promise<Timer> {
  const s = userState(userId);
  s.devices.set(input.deviceId, input.deviceName);
  const now = Date.now();
  const focus = Math.round(input.minutes * 60);
  const brk = Math.max(12, Math.round(focus / 5));
  const startedAt = new Date(now).toISOString();
  let pomodoroState: PomodoroState | undefined;
  let plannedEndTime: string;
  if (input.mode === 'pomodoro') {
    pomodoroState = {
      phase: 'focus', round: 1, rounds: ROUNDS, focusSeconds: focus, breakSeconds: brk,
      phaseStartedAt: startedAt, phaseEndsAt: new Date(now + focus * 1000).toISOString(),
    };
    plannedEndTime = new Date(now + (ROUNDS * focus + (ROUNDS - 1) * brk) * 1000).toISOString();
  } else {
    plannedEndTime = new Date(now + focus * 1000).toISOString();
  }
  const timer: Timer = {
    memoId: `memo-${now.toString(36)}`,
    taskTitle: input.taskTitle,
    startedAt,
    plannedEndTime,
    mode: input.mode,
    ...(pomodoroState ? { pomodoroState } : {}),
    ownerDeviceId: input.deviceId,
    ownerName: input.deviceName,
  };
  s.timer = timer;
  schedule(userId, s);

  const hub = await getHub();
  await hub.broadcast(
    userId,
    createSSEEvent<TimerStartedPayload>('timer', 'started', { ...timerPayload(timer), deviceName: input.deviceName },
      input.deviceId),
    input.deviceId, // exclude the triggering device: it has the answer of this request
  );
  return timer;
}

/** Stops the timer: timer:stopped to the others (to every device when the server ends it). */
export async function stopTimer(userId: string, deviceId: string): Promise<void> {
  const s = userState(userId);
  s.timer = null;
  schedule(userId, s);
  const hub = await getHub();
  const event = createSSEEvent<TimerStoppedPayload>('timer', 'stopped', {}, deviceId);
  if (deviceId === SERVER_DEVICE) await hub.broadcast(userId, event);
  else await hub.broadcast(userId, event, deviceId);
}

/** Moves the timer to targetDeviceId: the target gets timer:moved addressed to it
 *  (sendToDevice), every other device the same news by broadcast. */
export async function moveTimer(userId: string, deviceId: string, targetDeviceId: string): Promise<Timer> {
  const s = userState(userId);
  const t = s.timer;
  if (!t) throw new InputError('no timer is running');
  const targetDeviceName = deviceName(s, targetDeviceId);
  const moved = (): TimerMovedPayload => ({
    ...timerPayload(t), deviceName: deviceName(s, deviceId), targetDeviceId, targetDeviceName,
  });
  s.timer = { ...t, ownerDeviceId: targetDeviceId, ownerName: targetDeviceName };

  const hub = await getHub();
  if (targetDeviceId === deviceId) {
    // "Move here", from a device that did not run it: every other device, the old owner among them.
    await hub.broadcast(userId, createSSEEvent('timer', 'moved', moved(), deviceId), deviceId);
  } else {
    await hub.sendToDevice(userId, targetDeviceId, createSSEEvent('timer', 'moved', moved(), deviceId));
    // The rest: leave out the target (it has its own), not the source. The source's
    // client drops it anyway (an event of its own device), so only the third devices see it.
    await hub.broadcast(userId, createSSEEvent('timer', 'moved', moved(), deviceId), targetDeviceId);
  }
  return s.timer;
}

/** The next Pomodoro phase (or the end, after the last round): timer:updated. */
export async function advancePhase(userId: string, deviceId: string): Promise<Timer | null> {
  const s = userState(userId);
  const t = s.timer;
  if (!t || !t.pomodoroState) throw new InputError('no Pomodoro timer is running');
  const next = nextPomodoroState(t.pomodoroState, Date.now());
  if (!next) {
    await stopTimer(userId, deviceId);
    return null;
  }
  s.timer = { ...t, pomodoroState: next };
  schedule(userId, s);
  const hub = await getHub();
  const event = createSSEEvent<TimerUpdatedPayload>('timer', 'updated', { pomodoroState: next }, deviceId);
  if (deviceId === SERVER_DEVICE) await hub.broadcast(userId, event);
  else await hub.broadcast(userId, event, deviceId);
  return s.timer;
}

// The server ends phases and countdowns when they are due.
function schedule(userId: string, s: UserState): void {
  if (s.due) clearTimeout(s.due);
  s.due = null;
  const t = s.timer;
  if (!t) return;
  const end = Date.parse(t.pomodoroState ? t.pomodoroState.phaseEndsAt : t.plannedEndTime);
  const memoId = t.memoId;
  s.due = setTimeout(() => {
    s.due = null;
    if (!s.timer || s.timer.memoId !== memoId) return;
    const hub = hubIfConnected();
    if (hub && !hub.isUserConnected(userId)) {
      console.log(`[Focus] Phase of ${userId}'s timer ended with none of their devices connected`);
    }
    const done = s.timer.pomodoroState ? advancePhase(userId, SERVER_DEVICE) : stopTimer(userId, SERVER_DEVICE);
    done.catch((err) => console.error(`[Focus] Could not tell ${userId}'s devices: ${err.message}`));
  }, Math.max(0, end - Date.now()));
  s.due.unref?.();
}

// ---- devices ------------------------------------------------------------------------------

/** A device opened the page: remember its name, and tell the others (devices:hello). */
export async function hello(userId: string, device: Device): Promise<void> {
  const s = userState(userId);
  s.devices.set(device.deviceId, device.deviceName);
  const hub = await getHub();
  await hub.broadcast(userId,
    createSSEEvent<DeviceHelloPayload>('devices', 'hello', device, device.deviceId), device.deviceId);
}

/** A device closed its last page: devices:bye. */
export async function bye(userId: string, deviceId: string): Promise<void> {
  const s = userState(userId);
  if (!s.devices.delete(deviceId)) return;
  const hub = await getHub();
  await hub.broadcast(userId, createSSEEvent<DeviceByePayload>('devices', 'bye', { deviceId }, deviceId), deviceId);
}

export function parseDevice(body: Record<string, unknown>): Device {
  const deviceId = checkDeviceId(body.deviceId);
  return { deviceId, deviceName: checkText(body.deviceName ?? deviceId, 'deviceName', 64) };
}
