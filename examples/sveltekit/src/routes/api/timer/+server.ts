// GET  /api/timer   the user's timer, devices and presence (a page that loads or resyncs)
// POST /api/timer   {action, deviceId, ...}: start, stop, move, phase. Each answers with the
//                   new state; the user's other devices learn it over the bridge.
import { error, json } from '@sveltejs/kit';
import type { RequestHandler } from './$types';
import {
  InputError, advancePhase, checkDeviceId, moveTimer, parseStart, snapshot, startTimer, stopTimer,
} from '$lib/server/focus';

export const GET: RequestHandler = ({ locals }) => json(snapshot(locals.userId));

export const POST: RequestHandler = async ({ locals, request }) => {
  const body = await request.json().catch(() => null);
  if (!body || typeof body !== 'object') error(400, 'the body must be a JSON object');
  const userId = locals.userId;
  try {
    switch (body.action) {
      case 'start':
        await startTimer(userId, parseStart(body));
        break;
      case 'stop':
        await stopTimer(userId, checkDeviceId(body.deviceId));
        break;
      case 'move':
        await moveTimer(userId, checkDeviceId(body.deviceId), checkDeviceId(body.targetDeviceId, 'targetDeviceId'));
        break;
      case 'phase':
        await advancePhase(userId, checkDeviceId(body.deviceId));
        break;
      default:
        error(400, "action must be 'start', 'stop', 'move' or 'phase'");
    }
  } catch (err) {
    if (err instanceof InputError) error(400, err.message);
    if (err instanceof Error && !('status' in err)) {
      // The state changed here, but the broker did not take the event (or the hub is not connected).
      console.error(`[Focus] ${body.action} for ${userId}: ${err.message}`);
      error(503, `the other devices could not be told: ${err.message}`);
    }
    throw err;
  }
  return json(snapshot(userId));
};
