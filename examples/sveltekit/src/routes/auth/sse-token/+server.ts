// GET /auth/sse-token: a short-lived JWT for the signed-in user's SSE streams, signed
// with the bridge's jwt_secret (HS256, `sub` = the user). The browser client asks for
// one before every connection attempt (its getToken option).
import type { RequestHandler } from './$types';
import { config } from '$lib/server/config';
import { streamToken } from '$lib/server/jwt';

export const GET: RequestHandler = ({ locals }) =>
  new Response(streamToken(locals.userId, config.jwtSecret, config.tokenTtl), {
    headers: { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store' },
  });
