// POST /api/devices {action: 'hello' | 'bye', deviceId, deviceName}: a page of this device
// opened, or the last one closed. The other devices get devices:hello / devices:bye.
import { error, json } from '@sveltejs/kit';
import type { RequestHandler } from './$types';
import { InputError, bye, checkDeviceId, hello, parseDevice, snapshot } from '$lib/server/focus';

export const POST: RequestHandler = async ({ locals, request }) => {
  const body = await request.json().catch(() => null);
  if (!body || typeof body !== 'object') error(400, 'the body must be a JSON object');
  try {
    if (body.action === 'hello') await hello(locals.userId, parseDevice(body));
    else if (body.action === 'bye') await bye(locals.userId, checkDeviceId(body.deviceId));
    else error(400, "action must be 'hello' or 'bye'");
  } catch (err) {
    if (err instanceof InputError) error(400, err.message);
    if (err instanceof Error && !('status' in err)) error(503, `the other devices could not be told: ${err.message}`);
    throw err;
  }
  return json(snapshot(locals.userId));
};
