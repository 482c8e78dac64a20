// sse-client.js: the browser side of mqtt-sse-bridge. An ES module, no build step.
//
//   import { sseClient } from '/sse-client.js';
//   import { getDeviceId } from '/device.js';
//   sseClient.on('timer', (event) => console.log(event.type, event.payload));
//   sseClient.connect(getDeviceId(), { getToken: () => myApp.fetchSseToken() });
//
// One EventSource to the bridge's SSE endpoint. Every event is the whole SSEEvent
// as JSON ({channel, type, payload, sourceDeviceId?, targetDeviceId?, timestamp});
// it is routed to the handlers of its channel. Events caused by this device are
// ignored (the bridge already leaves them out; this is defence in depth), except
// those explicitly targeted at it (the bridge's rule: targeting wins).
//
// After an error the client closes the EventSource and opens a fresh one itself,
// with exponential backoff (retryMs, doubling, capped at maxDelayMs) for up to
// maxAttempts attempts in a row. Each attempt asks options.getToken() for a fresh
// token (an expired token does not end the sync) and resumes with the last event
// id seen (the lastEventId query parameter: a fresh EventSource cannot send the
// Last-Event-ID header). When the bridge cannot replay from that id, it sends a
// system/resync event: options.onResync(event) should refetch the app's state.
//
// connect(deviceId, options), options (all optional):
//   url          the SSE endpoint, default '/api/sse' (absolute for another origin)
//   getToken     () => token | Promise<token>: a JWT for the `token` query parameter,
//                asked before every connection attempt; null/'' sends none (cookie auth)
//   userId       `auth none` (development) only: sent as the userId query parameter
//   lastEventId  resume after this id on the first connection (e.g. kept by the app)
//   withCredentials  EventSource's option, for cookies on a cross-origin endpoint
//   onResync     (event) => void: the server could not replay everything: refetch
//   onStateChange (state, detail) => void: 'connecting', 'connected',
//                'reconnecting' ({attempt, maxAttempts, delay}), 'failed', 'disconnected'
//   retryMs      first backoff delay, default 1000 (the bridge's `retry:`, which an
//                EventSource does not show to scripts)
//   maxDelayMs   backoff cap, default 30000
//   maxAttempts  attempts in a row before giving up ('failed'), default 10
//   logger       where the [SSE] lines go, default console; null for none
//   EventSource  the EventSource class to use (a polyfill; tests), default the global

const DEFAULTS = {
  url: '/api/sse',
  retryMs: 1000,
  maxDelayMs: 30000,
  maxAttempts: 10,
};

const DEVICE_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** The delay before reconnection attempt `attempt` (1-based): retryMs doubling, capped. */
export function backoffDelay(attempt, retryMs = DEFAULTS.retryMs, maxDelayMs = DEFAULTS.maxDelayMs) {
  const n = Math.max(1, Math.floor(attempt));
  return Math.min(maxDelayMs, retryMs * 2 ** Math.min(n - 1, 30));
}

/** The URL of one connection attempt. */
export function buildUrl(base, { deviceId, token, userId, lastEventId } = {}) {
  const origin = globalThis.location && globalThis.location.href ? globalThis.location.href : 'http://localhost/';
  const url = new URL(base, origin);
  url.searchParams.set('deviceId', deviceId);
  if (userId) url.searchParams.set('userId', userId);
  if (lastEventId) url.searchParams.set('lastEventId', lastEventId);
  if (token) url.searchParams.set('token', token);
  // Keep a relative endpoint relative (same origin, as given).
  return /^[a-z][a-z0-9+.-]*:/i.test(base) || base.startsWith('//')
    ? url.href
    : url.pathname + url.search;
}

export class SSEClient {
  constructor() {
    this._handlers = new Map(); // channel -> Set of handlers; '*' gets every event
    this._es = null;
    this._open = false;
    this._deviceId = null;
    this._options = { ...DEFAULTS };
    this._lastEventId = '';
    this._attempt = 0; // failed attempts in a row
    this._timer = null;
    this._generation = 0; // bumps on connect/disconnect: stale callbacks check it
    this._state = 'disconnected';
  }

  /** Connects as deviceId (closing any connection this client had). */
  connect(deviceId, options = {}) {
    if (typeof deviceId !== 'string' || !DEVICE_ID.test(deviceId)) {
      throw new TypeError('sseClient.connect: deviceId must be 1 to 128 characters of A-Z a-z 0-9 . _ : -');
    }
    const resume = deviceId === this._deviceId ? this._lastEventId : '';
    this._teardown();
    this._deviceId = deviceId;
    this._options = { ...DEFAULTS, ...options };
    this._lastEventId = options.lastEventId != null ? String(options.lastEventId) : resume;
    this._attempt = 0;
    this._generation++;
    this._openSource(this._generation);
  }

  /** Closes the connection and stops reconnecting. Handlers stay registered. */
  disconnect() {
    const was = this._es || this._timer;
    this._teardown();
    this._generation++;
    this._attempt = 0;
    if (was) this._log('info', '[SSE] Disconnected');
    this._setState('disconnected');
  }

  /** Routes the events of channel to handler(event). '*' gets every channel.
   *  Returns a function that removes this handler. */
  on(channel, handler) {
    if (typeof handler !== 'function') throw new TypeError('sseClient.on: handler must be a function');
    let set = this._handlers.get(channel);
    if (!set) this._handlers.set(channel, (set = new Set()));
    set.add(handler);
    return () => this.off(channel, handler);
  }

  /** Removes handler from channel, or every handler of channel when none is given. */
  off(channel, handler) {
    const set = this._handlers.get(channel);
    if (!set) return;
    if (handler) set.delete(handler);
    if (!handler || set.size === 0) this._handlers.delete(channel);
  }

  /** Whether the stream is open now. */
  isConnected() {
    return this._open;
  }

  /** The last event id seen ('' if none): what a reconnection resumes from. */
  get lastEventId() {
    return this._lastEventId;
  }

  /** 'connecting', 'connected', 'reconnecting', 'failed' or 'disconnected'. */
  get state() {
    return this._state;
  }

  get deviceId() {
    return this._deviceId;
  }

  // ---- internals ----

  _log(level, ...args) {
    const logger = this._options.logger === undefined ? globalThis.console : this._options.logger;
    if (logger && typeof logger[level] === 'function') logger[level](...args);
  }

  _setState(state, detail) {
    this._state = state;
    const cb = this._options.onStateChange;
    if (typeof cb === 'function') {
      try {
        cb(state, detail || {});
      } catch (err) {
        this._log('error', '[SSE] onStateChange threw', err);
      }
    }
  }

  _teardown() {
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
    if (this._es) {
      const es = this._es;
      this._es = null;
      es.onopen = es.onmessage = es.onerror = null;
      es.close();
    }
    this._open = false;
  }

  async _openSource(gen) {
    const o = this._options;
    this._setState('connecting', { attempt: this._attempt });
    let token = null;
    if (typeof o.getToken === 'function') {
      try {
        token = await o.getToken();
      } catch (err) {
        if (gen !== this._generation) return;
        this._log('warn', '[SSE] getToken failed:', err && err.message ? err.message : err);
        this._scheduleReconnect(gen);
        return;
      }
    }
    if (gen !== this._generation) return; // connect() or disconnect() came meanwhile
    const ES = o.EventSource || globalThis.EventSource;
    if (typeof ES !== 'function') {
      this._log('error', '[SSE] This browser has no EventSource');
      this._setState('failed', { reason: 'no EventSource' });
      return;
    }
    const url = buildUrl(o.url, {
      deviceId: this._deviceId,
      token: token || '',
      userId: o.userId || '',
      lastEventId: this._lastEventId,
    });
    let es;
    try {
      es = new ES(url, o.withCredentials ? { withCredentials: true } : undefined);
    } catch (err) {
      this._log('error', '[SSE] Cannot open the stream:', err && err.message ? err.message : err);
      this._scheduleReconnect(gen);
      return;
    }
    this._es = es;
    es.onopen = () => {
      if (gen !== this._generation || this._es !== es) return;
      this._open = true;
      this._attempt = 0;
      this._log('info', '[SSE] Connected');
      this._setState('connected');
    };
    es.onmessage = (e) => {
      if (gen !== this._generation || this._es !== es) return;
      this._onMessage(e);
    };
    es.onerror = () => {
      if (gen !== this._generation || this._es !== es) return;
      // Closed by the server, refused (401, 503...) or cut: take over from the
      // EventSource's own retry, which would reuse the old URL and token.
      this._es = null;
      es.onopen = es.onmessage = es.onerror = null;
      es.close();
      const wasOpen = this._open;
      this._open = false;
      this._log(wasOpen ? 'warn' : 'info', wasOpen ? '[SSE] Connection lost' : '[SSE] Connection failed');
      this._scheduleReconnect(gen);
    };
  }

  _scheduleReconnect(gen) {
    const o = this._options;
    if (this._attempt >= o.maxAttempts) {
      this._log('error', `[SSE] Giving up after ${o.maxAttempts} attempts`);
      this._setState('failed', { attempts: this._attempt });
      return;
    }
    this._attempt++;
    const delay = backoffDelay(this._attempt, o.retryMs, o.maxDelayMs);
    this._log('info', `[SSE] Reconnecting in ${delay}ms (attempt ${this._attempt}/${o.maxAttempts})`);
    this._setState('reconnecting', { attempt: this._attempt, maxAttempts: o.maxAttempts, delay });
    this._timer = setTimeout(() => {
      this._timer = null;
      if (gen === this._generation) this._openSource(gen);
    }, delay);
  }

  _onMessage(e) {
    if (e.lastEventId) this._lastEventId = e.lastEventId;
    let event;
    try {
      event = JSON.parse(e.data);
    } catch {
      this._log('warn', '[SSE] Ignored an event that is not JSON');
      return;
    }
    if (!event || typeof event !== 'object' || typeof event.channel !== 'string') {
      this._log('warn', '[SSE] Ignored an event without a channel');
      return;
    }
    if (event.id === undefined && e.lastEventId && event.channel !== 'system') {
      event.id = e.lastEventId;
    }
    const me = this._deviceId;
    if (event.sourceDeviceId === me && event.targetDeviceId !== me) return; // our own echo
    if (event.channel === 'system' && event.type === 'resync') {
      const reason = event.payload && event.payload.reason;
      this._log('info', `[SSE] Resync requested by the server (${reason || 'no reason given'})`);
      const cb = this._options.onResync;
      if (typeof cb === 'function') this._call(cb, event, 'onResync');
    }
    for (const key of [event.channel, '*']) {
      const set = this._handlers.get(key);
      if (!set) continue;
      for (const handler of [...set]) this._call(handler, event, `the ${key} handler`);
    }
  }

  _call(fn, event, what) {
    try {
      fn(event);
    } catch (err) {
      this._log('error', `[SSE] ${what} threw:`, err);
    }
  }
}

/** The shared client of the page. */
export const sseClient = new SSEClient();
export default sseClient;
