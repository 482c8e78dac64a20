// Routes the timer and devices channels to the focus state (the original app's
// timer-sse-handler.ts). The client already leaves out this device's own events,
// so there is no `event.sourceDeviceId === getDeviceId()` check any more.
import { sseClient, type SSEEvent } from 'mqtt-sse-bridge/client';
import type { FocusState } from './focus.svelte';
import type {
  DeviceByePayload, DeviceHelloPayload, TimerMovedPayload, TimerStartedPayload, TimerUpdatedPayload,
} from './timer';

export function initTimerSSEHandler(state: FocusState): () => void {
  const offTimer = sseClient.on('timer', (event: SSEEvent) => {
    switch (event.type) {
      case 'started': {
        const p = event.payload as TimerStartedPayload;
        console.log(`[Focus] Remote timer started: ${p.taskTitle}`);
        state.handleRemoteStarted(p, event.sourceDeviceId);
        break;
      }
      case 'stopped':
        console.log('[Focus] Remote timer stopped');
        state.handleRemoteStopped(event.sourceDeviceId, event.timestamp);
        break;
      case 'moved': {
        const p = event.payload as TimerMovedPayload;
        console.log(`[Focus] Timer moved to ${p.targetDeviceName}: ${p.taskTitle}`);
        state.handleRemoteMoved(p, event.sourceDeviceId);
        break;
      }
      case 'updated':
        state.handleRemoteUpdated(event.payload as TimerUpdatedPayload);
        break;
      default:
        break;
    }
  });
  const offDevices = sseClient.on('devices', (event: SSEEvent) => {
    if (event.type === 'hello') state.handleDeviceHello(event.payload as DeviceHelloPayload);
    else if (event.type === 'bye') state.handleDeviceBye(event.payload as DeviceByePayload);
    // The bridge's presence records change as devices come and go: read the counts again.
    setTimeout(() => state.refresh(), 500);
  });
  const offAll = sseClient.on('*', (event: SSEEvent) => {
    state.received.push(event);
  });
  return () => {
    offTimer();
    offDevices();
    offAll();
  };
}
