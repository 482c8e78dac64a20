// HS256 JSON Web Tokens with node's crypto: the bridge takes `sub` as the user.
import crypto from 'node:crypto';

const b64url = (data: string | Buffer) => Buffer.from(data).toString('base64url');

export function signHS256(claims: Record<string, unknown>, secret: string): string {
  const input = `${b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64url(JSON.stringify(claims))}`;
  return `${input}.${crypto.createHmac('sha256', secret).update(input).digest('base64url')}`;
}

/** A token for userId's streams, valid for ttl seconds. */
export function streamToken(userId: string, secret: string, ttl: number): string {
  const now = Math.floor(Date.now() / 1000);
  return signHS256({ sub: userId, iat: now, exp: now + ttl }, secret);
}
