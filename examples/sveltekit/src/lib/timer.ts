// The focus timer's shapes, shared by the server (which keeps the timer) and
// the pages (which show it). The events are those of the original app, on
// channel "timer":
//   started {memoId, taskTitle, startedAt, plannedEndTime, mode, pomodoroState?, deviceName}
//   stopped {}
//   moved   {memoId, taskTitle, startedAt, plannedEndTime, mode, pomodoroState?, deviceName,
//            targetDeviceId, targetDeviceName}
//   updated {pomodoroState}                      a Pomodoro phase change
// and, on channel "devices", hello {deviceId, deviceName} and bye {deviceId}, so that
// the devices of a user know where the timer can move to.

export type TimerMode = 'countdown' | 'pomodoro';

export interface PomodoroState {
  phase: 'focus' | 'break';
  round: number;
  rounds: number;
  focusSeconds: number;
  breakSeconds: number;
  phaseStartedAt: string;
  phaseEndsAt: string;
}

/** What the events carry about the running timer. */
export interface TimerPayload {
  memoId: string;
  taskTitle: string;
  startedAt: string;
  plannedEndTime: string;
  mode: TimerMode;
  pomodoroState?: PomodoroState;
}

export interface TimerStartedPayload extends TimerPayload {
  deviceName: string;
}

export interface TimerMovedPayload extends TimerPayload {
  deviceName: string;
  targetDeviceId: string;
  targetDeviceName: string;
}

export interface TimerUpdatedPayload {
  pomodoroState: PomodoroState;
}

export type TimerStoppedPayload = Record<string, never>;

/** The timer as the server keeps it: the payload plus the device that runs it. */
export interface Timer extends TimerPayload {
  ownerDeviceId: string;
  ownerName: string;
}

export interface Device {
  deviceId: string;
  deviceName: string;
}

export interface DeviceHelloPayload extends Device {}
export interface DeviceByePayload {
  deviceId: string;
}

/** GET /api/timer: the user's state, for a page that loads or must resync. */
export interface TimerSnapshot {
  userId: string;
  timer: Timer | null;
  devices: Device[];
  /** From the bridge's presence records (hub.getConnectionCount / hub.isUserConnected). */
  presence: { connections: number; online: boolean };
}

export const ROUNDS = 4;

export function timerPayload(t: TimerPayload): TimerPayload {
  const p: TimerPayload = {
    memoId: t.memoId,
    taskTitle: t.taskTitle,
    startedAt: t.startedAt,
    plannedEndTime: t.plannedEndTime,
    mode: t.mode,
  };
  if (t.pomodoroState) p.pomodoroState = t.pomodoroState;
  return p;
}

/** The next Pomodoro phase, or null after the last focus round. */
export function nextPomodoroState(ps: PomodoroState, now: number): PomodoroState | null {
  const at = (s: number) => new Date(now + s * 1000).toISOString();
  const started = new Date(now).toISOString();
  if (ps.phase === 'focus') {
    if (ps.round >= ps.rounds) return null;
    return { ...ps, phase: 'break', phaseStartedAt: started, phaseEndsAt: at(ps.breakSeconds) };
  }
  return { ...ps, phase: 'focus', round: ps.round + 1, phaseStartedAt: started, phaseEndsAt: at(ps.focusSeconds) };
}

/** mm:ss, or h:mm:ss. */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${String(m).padStart(2, '0')}:${sec}`;
}
