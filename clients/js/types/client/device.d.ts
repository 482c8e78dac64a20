// Declarations of mqtt-sse-bridge/client's device.js (written by hand).

/** This browser's device id: random ("web-" and 24 hex digits), made and kept
 *  in localStorage on first use, so every tab of the browser is one device. */
export function getDeviceId(): string;
/** A readable name for this device: the one set with setDeviceName(), else
 *  browser and system from the user agent ("Firefox on Windows"). */
export function getDeviceName(): string;
/** Keeps a name of the user's choice (trimmed, at most 64 characters); '' or null: back to the default. */
export function setDeviceName(name: string | null | undefined): void;
/** Whether id is a device id the bridge accepts: 1 to 128 characters of [A-Za-z0-9._:-]. */
export function isValidDeviceId(id: unknown): id is string;
/** A new random device id. */
export function newDeviceId(): string;
/** "Browser on System" from a user agent string. */
export function describeUserAgent(ua: string | null | undefined): string;
