// The app's settings, from the environment (run.sh sets them; see the README).
import fs from 'node:fs';
import { env } from '$env/dynamic/private';

function secret(): string {
  if (env.SSE_JWT_SECRET) return env.SSE_JWT_SECRET;
  if (env.SSE_JWT_SECRET_FILE) return fs.readFileSync(env.SSE_JWT_SECRET_FILE, 'utf8').split('\n')[0].trim();
  throw new Error('SSE_JWT_SECRET or SSE_JWT_SECRET_FILE must hold the bridge\'s jwt_secret');
}

export const config = {
  /** The broker the bridge listens to. */
  get mqttUrl() { return env.MQTT_URL || 'mqtt://127.0.0.1:1883'; },
  /** The bridge's topic_prefix and presence_prefix. */
  get topicPrefix() { return env.SSE_TOPIC_PREFIX || 'sync'; },
  get presencePrefix() { return env.SSE_PRESENCE_PREFIX || 'presence'; },
  /** The bridge's SSE endpoint as browsers reach it: another origin (the bridge lists this
   *  app's origin in cors_origins), or '/api/sse' when a proxy serves both on one origin. */
  get sseUrl() { return env.SSE_URL || '/api/sse'; },
  /** The bridge's jwt_secret (HS256): the app signs the tokens the bridge checks. */
  get jwtSecret() { return secret(); },
  /** Seconds a stream token lives; the client asks for a fresh one on every (re)connection. */
  get tokenTtl() { return Number(env.SSE_TOKEN_TTL || 300); },
};
