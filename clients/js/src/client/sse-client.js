// sse-client.js: the browser client of mqtt-sse-bridge. An ES module with no
// imports and no build step: the bridge serves this very file as /sse-client.js,
// and the npm package ships it as `mqtt-sse-bridge/client`.
//
//   import { sseClient } from '/sse-client.js';            // or 'mqtt-sse-bridge/client'
//   import { getDeviceId } from '/device.js';
//   sseClient.on('timer', (event) => console.log(event.type, event.payload));
//   sseClient.connect(getDeviceId(), { getToken: () => myApp.fetchSseToken() });
//
// Every event is the whole SSEEvent as JSON ({channel, type, payload,
// sourceDeviceId?, targetDeviceId?, timestamp, id?}); it goes to the handlers of
// its channel. Events caused by this device are left out (the bridge already
// does; this is defence in depth), except those targeted at it.
//
// One stream per browser. The tabs of one browser that connect with the same
// device id and endpoint share one EventSource: one tab, elected with a Web
// Lock, holds it and passes every event to the others over a BroadcastChannel.
// When it closes, freezes or is hidden while another tab is visible, another
// tab takes the stream over and resumes after the newest event id any tab has
// seen; tabs drop events whose id they already had. Every tab runs its own
// handlers, onStateChange and onResync, so each behaves as if it held the
// stream. Without navigator.locks or BroadcastChannel (or with share: false)
// each tab has a stream of its own.
//
// Reconnection: after an error the tab that holds the stream opens a fresh
// EventSource itself, with exponential backoff (retryMs doubling up to
// maxDelayMs, maxAttempts in a row), a fresh token from getToken() and the last
// event id as the lastEventId query parameter. A stream that has not delivered
// an event yet knows its position only inside the EventSource (the bridge's
// first `id:` line): then the EventSource's own reconnection (which sends it as
// Last-Event-ID) runs as long as the browser keeps it going, under the same
// attempt count. When the bridge cannot replay from the id, it sends a
// system/resync event: onResync(event) should refetch the app's state.

/**
 * One event as the bridge sends it.
 * @template [T=unknown]
 * @typedef {object} SSEEvent
 * @property {string} type
 * @property {T} payload
 * @property {string} channel
 * @property {string} timestamp
 * @property {string} [sourceDeviceId]
 * @property {string} [targetDeviceId]
 * @property {string} [excludeDeviceId]
 * @property {string | number} [id]
 */

/** @typedef {'connecting' | 'connected' | 'reconnecting' | 'failed' | 'disconnected'} ConnectionState */

/**
 * @typedef {object} StateDetail
 * @property {number} [attempt]
 * @property {number} [maxAttempts]
 * @property {number} [delay]
 * @property {number} [attempts]
 * @property {string} [reason]
 */

/**
 * @typedef {object} Logger
 * @property {(...args: unknown[]) => void} [info]
 * @property {(...args: unknown[]) => void} [warn]
 * @property {(...args: unknown[]) => void} [error]
 */

/**
 * @typedef {object} EventSourceLike
 * @property {number} [readyState]
 * @property {((ev: never) => unknown) | null} onopen
 * @property {((ev: never) => unknown) | null} onmessage
 * @property {((ev: never) => unknown) | null} onerror
 * @property {() => void} close
 */

/** @typedef {new (url: string, init?: { withCredentials?: boolean }) => EventSourceLike} EventSourceClass */

/**
 * @typedef {object} ConnectOptions
 * @property {string} [url]
 * @property {() => string | null | undefined | Promise<string | null | undefined>} [getToken]
 * @property {string} [userId]
 * @property {string | number} [lastEventId]
 * @property {boolean} [withCredentials]
 * @property {boolean} [share]
 * @property {(event: SSEEvent<ResyncPayload>) => void} [onResync]
 * @property {(state: ConnectionState, detail: StateDetail) => void} [onStateChange]
 * @property {number} [retryMs]
 * @property {number} [maxDelayMs]
 * @property {number} [maxAttempts]
 * @property {Logger | null} [logger]
 * @property {EventSourceClass} [EventSource]
 */

/**
 * @typedef {object} ResyncPayload
 * @property {string} [lastEventId]
 * @property {string} [reason]
 */

/**
 * The parts of the platform that a client uses; the globals by default.
 * @typedef {object} SSEClientEnvironment
 * @property {LockManagerLike | null} [locks]
 * @property {BroadcastChannelClass | null} [BroadcastChannel]
 * @property {EventTargetLike & { visibilityState?: string } | null} [document]
 * @property {EventTargetLike | null} [window]
 */

/**
 * @typedef {object} LockManagerLike
 * @property {(name: string, options: { signal?: AbortSignal, steal?: boolean }, callback: (lock: unknown) => unknown) => Promise<unknown>} request
 */

/**
 * @typedef {object} BroadcastChannelLike
 * @property {(message: unknown) => void} postMessage
 * @property {((ev: never) => unknown) | null} onmessage
 * @property {() => void} close
 */

/** @typedef {new (name: string) => BroadcastChannelLike} BroadcastChannelClass */

/**
 * @typedef {object} EventTargetLike
 * @property {(type: string, listener: (ev: unknown) => void) => void} addEventListener
 * @property {(type: string, listener: (ev: unknown) => void) => void} removeEventListener
 */

/** @typedef {{ seq: number, id: string }} Cursor */

/** @typedef {'leader' | 'follower' | 'single' | null} Role */

/** @typedef {(event: SSEEvent<any>) => void} AnyHandler */

const DEFAULTS = {
  url: '/api/sse',
  retryMs: 1000,
  maxDelayMs: 30000,
  maxAttempts: 10,
};

const DEVICE_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** How long a tab that has just been given the stream listens for the positions of the others. */
export const COLLECT_MS = 150;

/** How many recent event ids a tab remembers to drop duplicates. */
const SEEN_IDS = 2048;

/** The delay before reconnection attempt `attempt` (1-based): retryMs doubling, capped.
 *  @param {number} attempt @param {number} [retryMs] @param {number} [maxDelayMs] */
export function backoffDelay(attempt, retryMs = DEFAULTS.retryMs, maxDelayMs = DEFAULTS.maxDelayMs) {
  const n = Math.max(1, Math.floor(attempt));
  return Math.min(maxDelayMs, retryMs * 2 ** Math.min(n - 1, 30));
}

function pageHref() {
  const loc = globalThis.location;
  return loc && loc.href ? loc.href : 'http://localhost/';
}

/** The URL of one connection attempt.
 *  @param {string} base
 *  @param {{ deviceId?: string, token?: string, userId?: string, lastEventId?: string }} [params] */
export function buildUrl(base, { deviceId = '', token, userId, lastEventId } = {}) {
  const url = new URL(base, pageHref());
  url.searchParams.set('deviceId', deviceId);
  if (userId) url.searchParams.set('userId', userId);
  if (lastEventId) url.searchParams.set('lastEventId', lastEventId);
  if (token) url.searchParams.set('token', token);
  // Keep a relative endpoint relative (same origin, as given).
  return /^[a-z][a-z0-9+.-]*:/i.test(base) || base.startsWith('//')
    ? url.href
    : url.pathname + url.search;
}

/** The name of the Web Lock and the BroadcastChannel of the tabs that share a
 *  stream: the absolute endpoint, the device and (auth none) the user.
 *  @param {string} url @param {string} deviceId @param {string} [userId] */
export function shareName(url, deviceId, userId) {
  const endpoint = new URL(url, pageHref()).href;
  return `mqtt-sse-bridge ${endpoint} ${deviceId}${userId ? ' ' + userId : ''}`;
}

/** A bounded set of the most recent event ids. */
export class RecentIds {
  /** @param {number} [limit] */
  constructor(limit = SEEN_IDS) {
    this.limit = limit;
    /** @type {Set<string>} */
    this._ids = new Set();
  }

  /** @param {string} id */
  has(id) {
    return this._ids.has(id);
  }

  /** @param {string} id */
  add(id) {
    this._ids.add(id);
    if (this._ids.size > this.limit) {
      const oldest = this._ids.values().next();
      if (!oldest.done) this._ids.delete(oldest.value);
    }
  }
}

/** The newer of two positions: the one later in relay order.
 *  @param {Cursor} a @param {Cursor} b @returns {Cursor} */
export function newerCursor(a, b) {
  return b.seq > a.seq || (b.seq === a.seq && !a.id && b.id) ? b : a;
}

function randomId() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === 'function') return c.randomUUID();
  return Math.random().toString(36).slice(2) + Date.now().toString(36);
}

/**
 * The tabs of one browser that share one stream: a Web Lock that one of them
 * holds (the leader) and a BroadcastChannel that all of them hear. No stream,
 * no events: SSEClient decides what the messages mean.
 */
export class TabGroup {
  /**
   * @param {string} name the lock's and the channel's name
   * @param {object} deps
   * @param {LockManagerLike} deps.locks
   * @param {BroadcastChannelClass} deps.BroadcastChannel
   * @param {(message: Record<string, any>) => void} deps.onMessage a message of another tab
   * @param {() => void} deps.onLead this tab now holds the lock
   * @param {() => void} deps.onLose the lock was taken from this tab (steal)
   * @param {(err: unknown) => void} deps.onUnavailable the lock manager refuses (an opaque origin)
   */
  constructor(name, { locks, BroadcastChannel, onMessage, onLead, onLose, onUnavailable }) {
    this.name = name;
    this.tab = randomId();
    this.leading = false;
    this._locks = locks;
    this._onLead = onLead;
    this._onLose = onLose;
    this._onUnavailable = onUnavailable;
    /** @type {{ abort: AbortController, release: (() => void) | null } | null} */
    this._ticket = null;
    /** @type {BroadcastChannelLike | null} */
    this._channel = new BroadcastChannel(name);
    /** @param {{ data: unknown }} ev */
    const receive = (ev) => {
      const m = ev && ev.data;
      if (m && typeof m === 'object' && /** @type {{ from?: unknown }} */ (m).from !== this.tab) {
        onMessage(/** @type {Record<string, any>} */ (m));
      }
    };
    this._channel.onmessage = receive;
  }

  /** Sends message to the other tabs. @param {Record<string, unknown>} message */
  post(message) {
    if (this._channel) this._channel.postMessage({ ...message, from: this.tab });
  }

  /** Queues for the lock (no-op while queued or leading). */
  queue() {
    if (!this._ticket && this._channel) this._request(false);
  }

  /** Takes the lock from its holder at once (a hand-over to this tab). */
  takeOver() {
    if (this.leading || !this._channel) return;
    this._drop();
    this._request(true);
  }

  /** Gives the lock back, or leaves the queue. */
  resign() {
    this._drop();
  }

  /** Resigns and closes the channel: this group is done with. */
  close() {
    this._drop();
    if (this._channel) {
      this._channel.onmessage = null;
      this._channel.close();
      this._channel = null;
    }
  }

  _drop() {
    const t = this._ticket;
    this._ticket = null;
    this.leading = false;
    if (!t) return;
    if (t.release) t.release();
    else t.abort.abort();
  }

  /** @param {boolean} steal */
  _request(steal) {
    /** @type {{ abort: AbortController, release: (() => void) | null }} */
    const ticket = { abort: new AbortController(), release: null };
    this._ticket = ticket;
    const options = steal ? { steal: true } : { signal: ticket.abort.signal };
    let granted;
    try {
      granted = this._locks.request(this.name, options, () => {
        if (this._ticket !== ticket) return undefined; // left meanwhile: give it back
        return new Promise((resolve) => {
          ticket.release = () => resolve(undefined);
          this.leading = true;
          this._onLead();
        });
      });
    } catch (err) {
      this._ticket = null;
      this._onUnavailable(err);
      return;
    }
    Promise.resolve(granted).catch((err) => {
      if (this._ticket !== ticket) return; // aborted by us: nothing to do
      this._ticket = null;
      this.leading = false;
      if (ticket.release) this._onLose(); // stolen by a hand-over to another tab
      else this._onUnavailable(err); // refused (SecurityError in an opaque origin)
    });
  }
}

export class SSEClient {
  /** @param {SSEClientEnvironment} [env] the platform (tests, polyfills); the globals by default */
  constructor(env = {}) {
    this._env = env;
    /** @type {Map<string, Set<AnyHandler>>} channel -> handlers; '*' gets every event */
    this._handlers = new Map();
    /** @type {EventSourceLike | null} */
    this._es = null;
    this._open = false;
    /** @type {string | null} */
    this._deviceId = null;
    /** @type {ConnectOptions & typeof DEFAULTS} */
    this._options = { ...DEFAULTS };
    /** @type {Cursor} the newest position this tab knows */
    this._cursor = { seq: 0, id: '' };
    this._seen = new RecentIds();
    this._attempt = 0; // failed attempts in a row
    /** @type {ReturnType<typeof setTimeout> | null} */
    this._timer = null;
    this._native = false; // the EventSource is reconnecting by itself
    this._generation = 0; // bumps on connect/disconnect: stale callbacks check it
    this._streamGen = 0; // bumps whenever this tab's stream stops
    /** @type {ConnectionState} */
    this._state = 'disconnected';
    /** @type {StateDetail} */
    this._detail = {};
    /** @type {Role} */
    this._role = null;
    /** @type {TabGroup | null} */
    this._group = null;
    /** @type {Map<string, boolean>} other tabs of the group -> visible */
    this._peers = new Map();
    /** @type {(() => void) | null} */
    this._unlisten = null;
  }

  /** Connects as deviceId (closing any connection this client had).
   *  @param {string} deviceId @param {ConnectOptions} [options] */
  connect(deviceId, options = {}) {
    if (typeof deviceId !== 'string' || !DEVICE_ID.test(deviceId)) {
      throw new TypeError('sseClient.connect: deviceId must be 1 to 128 characters of A-Z a-z 0-9 . _ : -');
    }
    const same = deviceId === this._deviceId;
    this._stop();
    this._generation++;
    this._deviceId = deviceId;
    this._options = { ...DEFAULTS, ...options };
    if (!same) this._seen = new RecentIds();
    if (options.lastEventId != null) this._cursor = { seq: same ? this._cursor.seq : 0, id: String(options.lastEventId) };
    else if (!same) this._cursor = { seq: 0, id: '' };
    this._attempt = 0;
    const locks = this._env.locks !== undefined ? this._env.locks
      : globalThis.navigator && /** @type {any} */ (globalThis.navigator).locks;
    const BC = this._env.BroadcastChannel !== undefined ? this._env.BroadcastChannel : globalThis.BroadcastChannel;
    if (options.share !== false && locks && typeof locks.request === 'function' && typeof BC === 'function') {
      this._join(locks, BC);
    } else {
      this._role = 'single';
      this._startStream();
    }
  }

  /** Closes the connection and stops reconnecting. Handlers stay registered. */
  disconnect() {
    const was = this._role !== null;
    this._stop();
    this._generation++;
    this._attempt = 0;
    if (was) this._log('info', '[SSE] Disconnected');
    this._applyState('disconnected', {}, false);
  }

  /** Routes the events of channel to handler(event). '*' gets every channel.
   *  Returns a function that removes this handler.
   *  @template [T=unknown] @param {string} channel @param {(event: SSEEvent<T>) => void} handler */
  on(channel, handler) {
    if (typeof handler !== 'function') throw new TypeError('sseClient.on: handler must be a function');
    let set = this._handlers.get(channel);
    if (!set) this._handlers.set(channel, (set = new Set()));
    set.add(/** @type {AnyHandler} */ (handler));
    return () => this.off(channel, handler);
  }

  /** Removes handler from channel, or every handler of channel when none is given.
   *  @template [T=unknown] @param {string} channel @param {(event: SSEEvent<T>) => void} [handler] */
  off(channel, handler) {
    const set = this._handlers.get(channel);
    if (!set) return;
    if (handler) set.delete(/** @type {AnyHandler} */ (handler));
    if (!handler || set.size === 0) this._handlers.delete(channel);
  }

  /** Whether the stream is open now (in this tab, or in the tab that holds it for this one). */
  isConnected() {
    return this._open;
  }

  /** The last event id this tab has seen ('' if none): what a reconnection resumes from. */
  get lastEventId() {
    return this._cursor.id;
  }

  /** 'connecting', 'connected', 'reconnecting', 'failed' or 'disconnected'. */
  get state() {
    return this._state;
  }

  get deviceId() {
    return this._deviceId;
  }

  /** How many tabs share this tab's stream, this one included (1 when it does not share). */
  get tabs() {
    return this._role === 'leader' || this._role === 'follower' ? this._peers.size + 1 : 1;
  }

  /** 'leader' (this tab holds the stream the tabs share), 'follower' (another
   *  tab holds it), 'single' (a stream of its own) or null (not connected). */
  get role() {
    return this._role;
  }

  // ---- internals: state and logging ----

  /** @param {'info' | 'warn' | 'error'} level @param {...unknown} args */
  _log(level, ...args) {
    const logger = this._options.logger === undefined ? globalThis.console : this._options.logger;
    const fn = logger ? logger[level] : undefined;
    if (typeof fn === 'function') fn.apply(logger, args);
  }

  /** This tab's view of the connection: logs, and tells onStateChange.
   *  @param {ConnectionState} state @param {StateDetail} detail @param {boolean} open */
  _applyState(state, detail, open) {
    const again = state === 'connecting' && this._state === 'connecting' && open === this._open;
    this._state = state;
    this._detail = detail;
    this._open = open;
    if (again) return; // a new attempt, or a new holder, of a stream not yet open: nothing to tell
    if (state === 'connected') this._log('info', '[SSE] Connected');
    else if (state === 'reconnecting') {
      this._log('info', `[SSE] Reconnecting in ${detail.delay}ms (attempt ${detail.attempt}/${detail.maxAttempts})`);
    } else if (state === 'failed' && detail.attempts !== undefined) {
      this._log('error', `[SSE] Giving up after ${detail.attempts} attempts`);
    }
    const cb = this._options.onStateChange;
    if (typeof cb === 'function') {
      try {
        cb(state, detail);
      } catch (err) {
        this._log('error', '[SSE] onStateChange threw', err);
      }
    }
  }

  /** A change of the stream this tab holds: here, and in the tabs that share it.
   *  @param {ConnectionState} state @param {StateDetail} [detail] */
  _setState(state, detail = {}) {
    this._applyState(state, detail, this._open);
    if (this._role === 'leader') this._post({ t: 'state', state, detail, open: this._open });
  }

  /** @param {Record<string, unknown>} message */
  _post(message) {
    if (this._group) this._group.post(message);
  }

  /** Ends everything this client runs: stream, group, listeners. */
  _stop() {
    this._stopStream();
    if (this._group) {
      this._post({ t: 'bye' });
      this._group.close();
      this._group = null;
    }
    if (this._unlisten) {
      this._unlisten();
      this._unlisten = null;
    }
    this._peers.clear();
    this._role = null;
    this._open = false;
  }

  // ---- internals: the tabs that share a stream ----

  /** @param {LockManagerLike} locks @param {BroadcastChannelClass} BC */
  _join(locks, BC) {
    const o = this._options;
    const gen = this._generation;
    const name = shareName(o.url, /** @type {string} */ (this._deviceId), o.userId);
    const live = () => gen === this._generation;
    this._role = 'follower';
    try {
      this._group = new TabGroup(name, {
        locks,
        BroadcastChannel: BC,
        onMessage: (m) => live() && this._onTabMessage(m),
        onLead: () => live() && this._lead(gen),
        onLose: () => live() && this._follow(),
        onUnavailable: (err) => live() && this._alone(err),
      });
    } catch (err) {
      this._alone(err);
      return;
    }
    this._listen();
    this._applyState('connecting', { attempt: 0 }, false);
    this._post({ t: 'hello', visible: this._visible() });
    this._group.queue();
  }

  /** The lock is ours: ask the others where they stand, then open the stream there.
   *  @param {number} gen */
  _lead(gen) {
    this._role = 'leader';
    this._attempt = 0;
    this._open = false;
    this._peers.clear(); // the answers tell who is still there
    this._post({ t: 'collect', visible: this._visible() });
    const streamGen = this._streamGen;
    this._timer = setTimeout(() => {
      this._timer = null;
      if (gen === this._generation && streamGen === this._streamGen && this._role === 'leader') this._openSource(streamGen);
    }, COLLECT_MS);
  }

  /** No lock to be had here: a stream of this tab's own.
   *  @param {unknown} err */
  _alone(err) {
    this._log('warn', '[SSE] Cannot share the stream between tabs:', err instanceof Error ? err.message : err);
    if (this._group) this._group.close();
    this._group = null;
    if (this._unlisten) this._unlisten();
    this._unlisten = null;
    this._role = 'single';
    this._startStream();
  }

  /** The lock was handed over to another tab: follow it, and queue again. */
  _follow() {
    this._stopStream();
    this._role = 'follower';
    if (this._group) this._group.queue();
  }

  /** @param {Record<string, any>} m */
  _onTabMessage(m) {
    const leader = this._role === 'leader';
    switch (m.t) {
      case 'event':
        if (typeof m.data === 'string' && typeof m.seq === 'number') this._receive(m.data, String(m.id || ''), m.seq);
        break;
      case 'state':
        if (!leader && (!m.to || m.to === this._tab())) this._applyState(m.state, m.detail || {}, !!m.open);
        break;
      case 'hello':
        this._peers.set(m.from, !!m.visible);
        this._post({ t: 'here', to: m.from, visible: this._visible() });
        if (leader) {
          this._post({ t: 'state', to: m.from, state: this._state, detail: this._detail, open: this._open });
          if (this._state === 'failed') this._restart(); // a tab asks again: try again
          else this._handOverIfHidden();
        }
        break;
      case 'collect': // a new leader: the tabs still there answer it, and so all learn who they are
        this._peers = new Map([[m.from, !!m.visible]]);
        this._post({ t: 'cursor', to: m.from, seq: this._cursor.seq, id: this._cursor.id, visible: this._visible() });
        break;
      case 'cursor':
        this._peers.set(m.from, !!m.visible);
        if (m.to === this._tab() && typeof m.seq === 'number') {
          this._cursor = newerCursor(this._cursor, { seq: m.seq, id: String(m.id || '') });
        }
        break;
      case 'here':
        if (m.to === this._tab()) this._peers.set(m.from, !!m.visible);
        break;
      case 'vis':
        this._peers.set(m.from, !!m.visible);
        if (leader) this._handOverIfHidden();
        break;
      case 'handover':
        if (m.to === this._tab() && !leader && this._visible() && this._group) this._group.takeOver();
        break;
      case 'bye':
        this._peers.delete(m.from);
        break;
      default:
        break;
    }
  }

  _tab() {
    return this._group ? this._group.tab : '';
  }

  _visible() {
    const doc = this._doc();
    return !doc || doc.visibilityState !== 'hidden';
  }

  _doc() {
    return this._env.document !== undefined ? this._env.document : /** @type {any} */ (globalThis.document) || null;
  }

  /** A hidden tab may be frozen or suspended by the browser: while this one
   *  leads and is hidden, give the stream to a visible tab, if there is one. */
  _handOverIfHidden() {
    if (this._role !== 'leader' || this._visible()) return;
    for (const [tab, visible] of this._peers) {
      if (visible) {
        this._post({ t: 'handover', to: tab });
        return;
      }
    }
  }

  /** Page lifecycle: a frozen or hidden-away page gives up the stream. */
  _listen() {
    const doc = this._doc();
    const win = this._env.window !== undefined ? this._env.window : /** @type {any} */ (globalThis.window) || null;
    const onVisibility = () => {
      this._post({ t: 'vis', visible: this._visible() });
      this._handOverIfHidden();
    };
    const suspend = () => {
      if (!this._group) return;
      this._post({ t: 'bye' });
      this._stopStream();
      this._role = 'follower';
      this._group.resign();
    };
    const resume = () => {
      if (!this._group) return;
      this._post({ t: 'hello', visible: this._visible() });
      this._group.queue();
    };
    /** @param {unknown} ev */
    const onPageShow = (ev) => {
      if (isRecord(ev) && ev.persisted) resume();
    };
    /** @type {[EventTargetLike | null, string, (ev: unknown) => void][]} */
    const table = [
      [doc, 'visibilitychange', onVisibility],
      [doc, 'freeze', suspend],
      [doc, 'resume', resume],
      [win, 'pagehide', suspend],
      [win, 'pageshow', onPageShow],
    ];
    for (const [target, type, fn] of table) if (target) target.addEventListener(type, fn);
    this._unlisten = () => {
      for (const [target, type, fn] of table) if (target) target.removeEventListener(type, fn);
    };
  }

  // ---- internals: the stream this tab holds ----

  _startStream() {
    this._attempt = 0;
    this._openSource(this._streamGen);
  }

  /** After 'failed', when asked again: start the attempts over. */
  _restart() {
    this._stopStream();
    this._startStream();
  }

  _stopStream() {
    this._streamGen++;
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
    this._native = false;
    if (this._es) {
      const es = this._es;
      this._es = null;
      es.onopen = es.onmessage = es.onerror = null;
      es.close();
    }
    this._open = false;
  }

  /** @param {number} gen */
  async _openSource(gen) {
    const o = this._options;
    this._setState('connecting', { attempt: this._attempt });
    let token = null;
    if (typeof o.getToken === 'function') {
      try {
        token = await o.getToken();
      } catch (err) {
        if (gen !== this._streamGen) return;
        this._log('warn', '[SSE] getToken failed:', err instanceof Error ? err.message : err);
        this._scheduleReconnect(gen);
        return;
      }
    }
    if (gen !== this._streamGen) return; // connect(), disconnect() or a hand-over came meanwhile
    const ES = o.EventSource || /** @type {EventSourceClass | undefined} */ (globalThis.EventSource);
    if (typeof ES !== 'function') {
      this._log('error', '[SSE] This browser has no EventSource');
      this._setState('failed', { reason: 'no EventSource' });
      return;
    }
    const url = buildUrl(o.url, {
      deviceId: this._deviceId || '',
      token: token || '',
      userId: o.userId || '',
      lastEventId: this._cursor.id,
    });
    /** @type {EventSourceLike} */
    let es;
    try {
      es = new ES(url, o.withCredentials ? { withCredentials: true } : undefined);
    } catch (err) {
      this._log('error', '[SSE] Cannot open the stream:', err instanceof Error ? err.message : err);
      this._scheduleReconnect(gen);
      return;
    }
    this._es = es;
    const current = () => gen === this._streamGen && this._es === es;
    es.onopen = () => {
      if (!current()) return;
      if (this._timer !== null) clearTimeout(this._timer);
      this._timer = null;
      this._native = false;
      this._open = true;
      this._attempt = 0;
      this._setState('connected');
    };
    /** @param {{ data: unknown, lastEventId?: string }} e */
    es.onmessage = (e) => {
      if (current()) this._receive(String(e.data), e.lastEventId || '');
    };
    es.onerror = () => {
      if (!current()) return;
      const wasOpen = this._open;
      this._open = false;
      if (!this._cursor.id && es.readyState === 0) {
        // The EventSource reconnects by itself and sends, as Last-Event-ID, the
        // position the bridge gave the stream, which no message told us: let it.
        if (wasOpen) this._log('warn', '[SSE] Connection lost');
        if (!this._native) this._nativeAttempt(gen);
        return;
      }
      // Closed by the server, refused (401, 503...) or cut: take over from the
      // EventSource's own retry, which would reuse the old URL and token.
      this._es = null;
      es.onopen = es.onmessage = es.onerror = null;
      es.close();
      this._native = false;
      if (this._timer !== null) {
        clearTimeout(this._timer);
        this._timer = null;
      }
      this._log(wasOpen ? 'warn' : 'info', wasOpen ? '[SSE] Connection lost' : '[SSE] Connection failed');
      this._scheduleReconnect(gen);
    };
  }

  /** One attempt of the EventSource's own reconnection, counted and timed like ours.
   *  @param {number} gen */
  _nativeAttempt(gen) {
    const o = this._options;
    if (this._attempt >= o.maxAttempts) {
      this._stopStream();
      this._setState('failed', { attempts: this._attempt });
      return;
    }
    this._native = true;
    this._attempt++;
    const delay = backoffDelay(this._attempt, o.retryMs, o.maxDelayMs);
    this._setState('reconnecting', { attempt: this._attempt, maxAttempts: o.maxAttempts, delay });
    this._timer = setTimeout(() => {
      this._timer = null;
      if (gen === this._streamGen && !this._open) this._nativeAttempt(gen);
    }, delay);
  }

  /** @param {number} gen */
  _scheduleReconnect(gen) {
    const o = this._options;
    if (this._attempt >= o.maxAttempts) {
      this._setState('failed', { attempts: this._attempt });
      return;
    }
    this._attempt++;
    const delay = backoffDelay(this._attempt, o.retryMs, o.maxDelayMs);
    this._setState('reconnecting', { attempt: this._attempt, maxAttempts: o.maxAttempts, delay });
    this._timer = setTimeout(() => {
      this._timer = null;
      if (gen === this._streamGen) this._openSource(gen);
    }, delay);
  }

  // ---- internals: events ----

  /** One message of the stream: from this tab's EventSource (seq undefined),
   *  or relayed by the tab that holds it. Drops an id seen before, moves the
   *  position, passes it on to the other tabs when this one leads, dispatches.
   *  @param {string} data @param {string} id @param {number} [relayedSeq] */
  _receive(data, id, relayedSeq) {
    /** @type {unknown} */
    let event;
    let parsed = true;
    try {
      event = JSON.parse(data);
    } catch {
      parsed = false;
    }
    const system = isRecord(event) && event.channel === 'system';
    if (id && !system) {
      if (this._seen.has(id)) return;
      this._seen.add(id);
    }
    const seq = relayedSeq === undefined ? this._cursor.seq + 1 : relayedSeq;
    if (seq > this._cursor.seq) this._cursor = { seq, id: id || this._cursor.id };
    if (relayedSeq === undefined && this._role === 'leader') this._post({ t: 'event', seq, id, data });
    if (!parsed) {
      this._log('warn', '[SSE] Ignored an event that is not JSON');
      return;
    }
    if (!isRecord(event) || typeof event.channel !== 'string') {
      this._log('warn', '[SSE] Ignored an event without a channel');
      return;
    }
    const ev = /** @type {SSEEvent & Record<string, unknown>} */ (event);
    if (ev.id === undefined && id && ev.channel !== 'system') ev.id = id;
    const me = this._deviceId;
    if (ev.sourceDeviceId === me && ev.targetDeviceId !== me) return; // our own echo
    if (ev.channel === 'system' && ev.type === 'resync') {
      const payload = /** @type {ResyncPayload | undefined} */ (ev.payload);
      const reason = payload && payload.reason;
      this._log('info', `[SSE] Resync requested by the server (${reason || 'no reason given'})`);
      const cb = this._options.onResync;
      if (typeof cb === 'function') this._call(cb, ev, 'onResync');
    }
    for (const key of [ev.channel, '*']) {
      const set = this._handlers.get(key);
      if (!set) continue;
      for (const handler of [...set]) this._call(handler, ev, `the ${key} handler`);
    }
  }

  /** @param {AnyHandler} fn @param {SSEEvent} event @param {string} what */
  _call(fn, event, what) {
    try {
      fn(event);
    } catch (err) {
      this._log('error', `[SSE] ${what} threw:`, err);
    }
  }
}

/** @param {unknown} v @returns {v is Record<string, unknown>} */
function isRecord(v) {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The shared client of the page. */
export const sseClient = new SSEClient();
export default sseClient;
