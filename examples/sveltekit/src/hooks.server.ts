import type { Handle, ServerInit } from '@sveltejs/kit';
import { closeHub, getHub } from '$lib/server/hub';

// Connect to the broker at start, so that the presence counts are there at the first request.
export const init: ServerInit = async () => {
  getHub().catch((err) => console.error(`[SSE] Hub not connected yet: ${err.message}`));
  // adapter-node emits this on SIGINT/SIGTERM once the HTTP server has closed.
  (process as NodeJS.EventEmitter).once('sveltekit:shutdown', () => {
    closeHub().catch(() => {});
  });
};

const USER = /^[A-Za-z0-9._-]{1,64}$/;

// A stand-in for the app's login: the user is the `user` cookie, "demo" without one;
// `?user=<id>` on any page sets it. Your app has its own sessions: what matters below
// is only that locals.userId is the signed-in user.
export const handle: Handle = async ({ event, resolve }) => {
  const asked = event.url.searchParams.get('user');
  if (asked && USER.test(asked)) {
    event.cookies.set('user', asked, { path: '/', httpOnly: true, sameSite: 'lax', secure: false });
  }
  const cookie = event.cookies.get('user');
  event.locals.userId = asked && USER.test(asked) ? asked : cookie && USER.test(cookie) ? cookie : 'demo';
  return resolve(event);
};
