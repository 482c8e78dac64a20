// The one connection of this app to the bridge: an MQTT client of the broker.
// It replaces the in-app `sseHub` singleton; the calls keep their names
// (broadcast, sendToDevice, getConnectionCount, isUserConnected), and the two
// that publish return promises that resolve once the broker has the event.
import { connectHub } from 'mqtt-sse-bridge/server';
import { config } from './config';

export type Hub = Awaited<ReturnType<typeof connectHub>>;

let pending: Promise<Hub> | null = null;
let hub: Hub | null = null;

/** The hub, connected on first use (hooks.server.ts connects it at start). */
export function getHub(): Promise<Hub> {
  if (!pending) {
    const connecting: Promise<Hub> = connectHub({
      url: config.mqttUrl,
      topicPrefix: config.topicPrefix,
      presencePrefix: config.presencePrefix,
    }).then(
      (h: Hub) => {
        hub = h;
        console.log(`[SSE] Hub connected to ${config.mqttUrl}`);
        return h;
      },
      (err: unknown) => {
        pending = null; // the next request tries again
        throw err;
      },
    );
    pending = connecting;
    return connecting;
  }
  return pending;
}

/** The connected hub, or null while it connects (for the synchronous presence calls). */
export function hubIfConnected(): Hub | null {
  return hub;
}

export async function closeHub(): Promise<void> {
  const h = hub ?? (pending ? await pending.catch(() => null) : null);
  hub = null;
  pending = null;
  if (h) await h.close();
}
