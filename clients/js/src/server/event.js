// The SSEEvent on its way out: createSSEEvent(), and the checks that make an
// event one the bridge takes. The rules are those of the bridge's parser
// (core/event.c, core/topic.c): what it would drop is refused here, with an
// Error that says what to fix, before anything is published.

/**
 * @template [T=unknown]
 * @typedef {import('../../types/event.js').SSEEvent<T>} SSEEvent
 */
/**
 * @template [T=unknown]
 * @typedef {import('../../types/server/index.js').OutgoingEvent<T>} OutgoingEvent
 */
/** @typedef {import('../../types/server/index.js').HubErrorCode} HubErrorCode */

/** Longest topic level the bridge takes (user id, channel), in UTF-8 bytes. */
export const TOPIC_LEVEL_MAX = 256;
/** Longest id, sourceDeviceId, targetDeviceId or excludeDeviceId, in UTF-8 bytes. */
export const EVENT_ID_MAX = 128;
/** Deepest JSON the bridge's parser (jansson) reads: every value counts a level. */
export const JSON_MAX_DEPTH = 2048;

/** An Error of mqtt-sse-bridge/server; `code` says which kind. */
export class HubError extends Error {
  /** @param {HubErrorCode} code @param {string} message @param {{ cause?: unknown }} [options] */
  constructor(code, message, options) {
    super(message, options);
    this.name = 'HubError';
    /** @type {HubErrorCode} */
    this.code = code;
  }
}

/**
 * A new event, as the in-app hub's helper made it:
 * `{ channel, type, payload, sourceDeviceId, timestamp }`, the timestamp
 * now in ISO 8601 UTC with milliseconds; without a device id, no sourceDeviceId.
 * @template T
 * @param {string} channel @param {string} type @param {T} payload @param {string | null} [deviceId]
 * @returns {SSEEvent<T>}
 */
export function createSSEEvent(channel, type, payload, deviceId) {
  const timestamp = new Date().toISOString();
  return deviceId === undefined || deviceId === null
    ? { channel, type, payload, timestamp }
    : { channel, type, payload, sourceDeviceId: deviceId, timestamp };
}

// ---- the bridge's rules -----------------------------------------------------------

const utf8Bytes = (/** @type {string} */ s) => Buffer.byteLength(s, 'utf8');

/** Whether s holds a byte below 0x20 or 0x7f (the bridge's control characters). */
function hasControl(/** @type {string} */ s) {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

/** Whether s is UTF-16 without lone surrogates (what UTF-8 and the bridge's JSON parser take). */
const wellFormed = (/** @type {string} */ s) => !/\p{Surrogate}/u.test(s);

/** A value for an error message: short, and never the whole payload. */
export function show(/** @type {unknown} */ v) {
  let text;
  try {
    text = typeof v === 'string' ? JSON.stringify(v) : typeof v === 'bigint' ? `${v}n` : String(v);
  } catch {
    text = Object.prototype.toString.call(v);
  }
  if (Array.isArray(v)) text = 'an array';
  else if (v !== null && typeof v === 'object') text = 'an object';
  return text.length > 80 ? text.slice(0, 77) + '...' : text;
}

/**
 * Whether s can be one level of an MQTT topic the bridge reads as user or
 * channel: 1 to 256 bytes of UTF-8, no '/', '+', '#' or control character.
 * @param {unknown} s @returns {s is string}
 */
export function isValidTopicLevel(s) {
  if (typeof s !== 'string' || s.length === 0 || !wellFormed(s) || utf8Bytes(s) > TOPIC_LEVEL_MAX) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f || c === 0x2f || c === 0x2b || c === 0x23) return false;
  }
  return true;
}

/**
 * Whether s is a topic prefix the bridge takes (topic_prefix, presence_prefix):
 * levels split by '/', none empty, no wildcard, no control character.
 * @param {unknown} s @returns {s is string}
 */
export function isValidPrefix(s) {
  return typeof s === 'string' && s.length > 0 && wellFormed(s) &&
    s.split('/').every((level) => level.length > 0 && !/[+#\u0000-\u001f\u007f]/.test(level));
}

/**
 * Whether s is an id or device id the bridge takes in an event: a string of 1
 * to 128 bytes of UTF-8 without control characters.
 * @param {unknown} s @returns {s is string}
 */
export function isValidEventId(s) {
  return typeof s === 'string' && s.length > 0 && wellFormed(s) && !hasControl(s) &&
    utf8Bytes(s) <= EVENT_ID_MAX;
}

/** Reads n digits of s at pos.i as a number from min to max (core/event.c's number()). */
function digits(/** @type {string} */ s, /** @type {{ i: number }} */ pos, /** @type {number} */ n,
  /** @type {number} */ min, /** @type {number} */ max) {
  let v = 0;
  for (let k = 0; k < n; k++, pos.i++) {
    const c = s.charCodeAt(pos.i);
    if (!(c >= 0x30 && c <= 0x39)) return false;
    v = v * 10 + (c - 0x30);
  }
  return v >= min && v <= max;
}

/**
 * Whether s is a timestamp the bridge takes: an ISO 8601 date
 * (`2026-11-25`) or date-time (`2026-11-25T12:00:00.000Z`, `...+01:00`, no
 * zone), the same test as the bridge's (core/event.c).
 * @param {unknown} s @returns {s is string}
 */
export function isValidTimestamp(s) {
  if (typeof s !== 'string' || s.includes('\u0000')) return false;
  const p = { i: 0 };
  const at = () => s.charAt(p.i);
  if (!digits(s, p, 4, 0, 9999) || s.charAt(p.i++) !== '-' || !digits(s, p, 2, 1, 12) || s.charAt(p.i++) !== '-') {
    return false;
  }
  const year = Number(s.slice(0, 4));
  const month = Number(s.slice(5, 7));
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  const days = month === 2 && leap ? 29 : [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1];
  if (!digits(s, p, 2, 1, days)) return false;
  if (p.i === s.length) return true;
  if (at() !== 'T' && at() !== 't' && at() !== ' ') return false;
  p.i++;
  if (!digits(s, p, 2, 0, 23) || s.charAt(p.i++) !== ':' || !digits(s, p, 2, 0, 59)) return false;
  if (at() === ':') {
    p.i++;
    if (!digits(s, p, 2, 0, 60)) return false; // 60: a leap second
    if (at() === '.' || at() === ',') {
      p.i++;
      if (!/[0-9]/.test(at())) return false;
      while (/[0-9]/.test(at())) p.i++;
    }
  }
  if (at() === 'Z' || at() === 'z') return p.i + 1 === s.length;
  if (at() === '+' || at() === '-') {
    p.i++;
    if (!digits(s, p, 2, 0, 23)) return false;
    if (at() === ':') {
      p.i++;
      if (!digits(s, p, 2, 0, 59)) return false;
    } else if (p.i < s.length && !digits(s, p, 2, 0, 59)) {
      return false;
    }
  }
  return p.i === s.length;
}

/** The deepest value of a JSON text, counted as the bridge's parser does (the top value is 1). */
export function jsonDepth(/** @type {string} */ text) {
  let open = 0;
  let max = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) { // a string: skip it
      for (i++; i < text.length && text.charCodeAt(i) !== 0x22; i++) {
        if (text.charCodeAt(i) === 0x5c) i++;
      }
    } else if (c === 0x5b || c === 0x7b) { // [ {
      open++;
      const next = text.charCodeAt(i + 1);
      max = Math.max(max, next === 0x5d || next === 0x7d ? open : open + 1);
    } else if (c === 0x5d || c === 0x7d) {
      open--;
    }
  }
  return Math.max(max, 1);
}

// ---- one event, ready for the wire ------------------------------------------------

/** What to say of a device id the bridge refuses. */
const DEVICE_RULE = 'a string of 1 to 128 bytes without control characters';

/**
 * @param {string} what the call, for messages ("broadcast")
 * @param {string} message
 * @returns {never}
 */
function refuse(what, message) {
  throw new HubError('invalid_event', `${what}: ${message}; nothing was published`);
}

/**
 * Checks an event as the bridge would and makes it ready to publish: the
 * topic `<topicPrefix>/<userId>/<channel>` and the JSON. Throws a HubError
 * (code 'invalid_event' or 'too_large') that says what to fix.
 *
 * @param {{ what: string, topicPrefix: string, maxEventBytes: number }} ctx
 * @param {unknown} userId
 * @param {unknown} event
 * @param {(wire: Record<string, unknown>) => void} shape sets or removes the
 *   delivery fields (targetDeviceId, excludeDeviceId) on the copy that goes out
 * @returns {{ topic: string, json: string, wire: Record<string, unknown> }}
 */
export function prepareEvent(ctx, userId, event, shape) {
  const { what } = ctx;
  if (!isValidTopicLevel(userId)) {
    refuse(what, `userId must be a non-empty string of at most ${TOPIC_LEVEL_MAX} bytes without '/', '+', '#' ` +
      `or control characters (it is one level of the MQTT topic); got ${show(userId)}`);
  }
  if (event === null || typeof event !== 'object' || Array.isArray(event)) {
    refuse(what, `event must be an object such as createSSEEvent(channel, type, payload, deviceId) makes; got ${show(event)}`);
  }
  const source = /** @type {Record<string, unknown>} */ (event);
  const channel = source.channel;
  if (!isValidTopicLevel(channel)) {
    refuse(what, `event.channel must be a non-empty string of at most ${TOPIC_LEVEL_MAX} bytes without '/', '+', '#' ` +
      `or control characters (it is the last level of the MQTT topic); got ${show(channel)}`);
  }
  /** @type {Record<string, unknown>} */
  const wire = { ...source };
  shape(wire);

  /** @type {string | null} */
  let badString = null;
  let json;
  try {
    json = JSON.stringify(wire, function (key, value) {
      if (badString === null) {
        if (!wellFormed(key)) badString = `the key ${show(key)}`;
        else if (typeof value === 'string' && !wellFormed(value)) badString = `the value of ${show(key)}`;
      }
      return value;
    });
  } catch (err) {
    refuse(what, `the event cannot be written as JSON (${/** @type {Error} */ (err).message}): ` +
      'use plain objects, arrays, strings, numbers, booleans and null');
  }
  if (badString !== null) {
    refuse(what, `${badString} in the event holds a lone UTF-16 surrogate, which is not valid in the bridge's JSON`);
  }
  const text = /** @type {string} */ (json);
  const bytes = utf8Bytes(text);
  if (bytes > ctx.maxEventBytes) {
    throw new HubError('too_large', `${what}: the event is ${bytes} bytes as JSON, over maxEventBytes ` +
      `(${ctx.maxEventBytes}, the bridge's max_event_bytes): send less (an id to fetch the rest by), or raise ` +
      'max_event_bytes on the bridge and maxEventBytes here together; nothing was published');
  }
  if (jsonDepth(text) > JSON_MAX_DEPTH) {
    refuse(what, `the event is nested deeper than the bridge's JSON parser reads (${JSON_MAX_DEPTH} levels)`);
  }

  // what the bridge will see: the JSON read back
  const seen = /** @type {Record<string, unknown>} */ (JSON.parse(text));
  const type = seen.type;
  if (typeof type !== 'string' || type.length === 0) {
    refuse(what, `event.type must be a non-empty string (the action: "started", "updated"...); got ${show(source.type)}`);
  }
  if (!Object.prototype.hasOwnProperty.call(seen, 'payload')) {
    refuse(what, `event.payload is missing${'payload' in source ? ` (${show(source.payload)} is not JSON)` : ''}: ` +
      'give any JSON value, null for none');
  }
  if (seen.channel !== channel) {
    refuse(what, `event.channel ${show(seen.channel)} differs from the topic's channel ${show(channel)}`);
  }
  const ts = seen.timestamp;
  if (ts !== undefined && ts !== null && !isValidTimestamp(ts)) {
    refuse(what, `event.timestamp must be an ISO 8601 string such as "2026-11-25T12:00:00.000Z" ` +
      `(new Date().toISOString()), or left out; got ${show(ts)}`);
  }
  const id = seen.id;
  if (id !== undefined && id !== null) {
    if (typeof id === 'number') {
      if (!Number.isSafeInteger(id) || id < 0) {
        refuse(what, `event.id must be a string or a non-negative integer; got ${show(id)}`);
      }
    } else if (!isValidEventId(id)) {
      refuse(what, `event.id must be a string of 1 to 128 bytes without control characters, ` +
        `or a non-negative integer; got ${show(id)}`);
    }
  }
  for (const key of ['sourceDeviceId', 'targetDeviceId', 'excludeDeviceId']) {
    const v = seen[key];
    if (v !== undefined && v !== null && !isValidEventId(v)) {
      refuse(what, `event.${key} must be ${DEVICE_RULE}; got ${show(v)}`);
    }
  }
  return { topic: `${ctx.topicPrefix}/${userId}/${channel}`, json: text, wire };
}

export { DEVICE_RULE };
