// device.js: who this browser is, for mqtt-sse-bridge. An ES module with no
// imports and no build step: the bridge serves it as /device.js, and the npm
// package ships it in `mqtt-sse-bridge/client`.
//
//   getDeviceId()    a random id kept in localStorage: every tab of this browser is
//                    the same device (the bridge leaves a device's own events out
//                    on all its tabs). 1 to 128 characters of [A-Za-z0-9._:-].
//   getDeviceName()  a readable name ("Chrome on Linux", "Safari on iPhone"),
//                    or the one set with setDeviceName().

const ID_KEY = 'sse-device-id';
const NAME_KEY = 'sse-device-name';
const VALID_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** @type {string | null} when localStorage is unavailable (blocked, private mode) */
let memoryId = null;
/** @type {string | null} */
let memoryName = null;

/** @returns {Storage | null} */
function storage() {
  try {
    const s = globalThis.localStorage;
    if (!s) return null;
    const probe = '__sse_probe__';
    s.setItem(probe, '1');
    s.removeItem(probe);
    return s;
  } catch {
    return null;
  }
}

/** @param {number} bytes */
function randomHex(bytes) {
  const c = globalThis.crypto;
  const buf = new Uint8Array(bytes);
  if (c && typeof c.getRandomValues === 'function') c.getRandomValues(buf);
  else for (let i = 0; i < bytes; i++) buf[i] = Math.floor(Math.random() * 256);
  return Array.from(buf, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Whether id is a device id the bridge accepts.
 *  @param {unknown} id @returns {id is string} */
export function isValidDeviceId(id) {
  return typeof id === 'string' && VALID_ID.test(id);
}

/** A new random device id: "web-" and 24 hex digits. */
export function newDeviceId() {
  return 'web-' + randomHex(12);
}

/** This browser's device id, made and kept in localStorage on first use.
 *  @returns {string} */
export function getDeviceId() {
  const s = storage();
  if (s) {
    const stored = s.getItem(ID_KEY);
    if (isValidDeviceId(stored)) return stored;
    const id = newDeviceId();
    s.setItem(ID_KEY, id);
    return id;
  }
  if (!memoryId) memoryId = newDeviceId();
  return memoryId;
}

/** A readable name for this device: the one set with setDeviceName(), else
 *  browser and system from the user agent ("Firefox on Windows").
 *  @returns {string} */
export function getDeviceName() {
  const s = storage();
  const stored = s ? s.getItem(NAME_KEY) : memoryName;
  if (stored) return stored;
  return describeUserAgent(globalThis.navigator ? globalThis.navigator.userAgent : '');
}

/** Keeps a name of the user's choice for this device ('' or null: back to the default).
 *  @param {string | null | undefined} name */
export function setDeviceName(name) {
  const value = name ? String(name).trim().slice(0, 64) : '';
  const s = storage();
  if (s) {
    if (value) s.setItem(NAME_KEY, value);
    else s.removeItem(NAME_KEY);
  } else {
    memoryName = value || null;
  }
}

/** "Browser on System" from a user agent string.
 *  @param {string | null | undefined} ua @returns {string} */
export function describeUserAgent(ua) {
  ua = ua || '';
  let browser = 'Browser';
  if (/Edg(e|A|iOS)?\//.test(ua)) browser = 'Edge';
  else if (/OPR\/|Opera/.test(ua)) browser = 'Opera';
  else if (/Firefox\/|FxiOS\//.test(ua)) browser = 'Firefox';
  else if (/HeadlessChrome\//.test(ua)) browser = 'Headless Chrome';
  else if (/Chrome\/|CriOS\/|Chromium\//.test(ua)) browser = 'Chrome';
  else if (/Safari\//.test(ua)) browser = 'Safari';

  let system = '';
  if (/iPhone/.test(ua)) system = 'iPhone';
  else if (/iPad/.test(ua)) system = 'iPad';
  else if (/Android/.test(ua)) system = /Mobile/.test(ua) ? 'Android phone' : 'Android tablet';
  else if (/CrOS/.test(ua)) system = 'ChromeOS';
  else if (/Mac OS X|Macintosh/.test(ua)) system = 'Mac';
  else if (/Windows/.test(ua)) system = 'Windows';
  else if (/Linux/.test(ua)) system = 'Linux';

  return system ? `${browser} on ${system}` : browser;
}
