// A browser and a bridge in memory, for the tests of tabs that share a stream:
// Web Locks (queue, abort, steal, released when a tab closes),
// BroadcastChannel (asynchronous, in order per sender, structured clones),
// documents and windows with lifecycle events, and a bridge whose
// EventSources replay after lastEventId.

import { SSEClient } from '../src/client/sse-client.js';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** Lets every queued message and lock grant run. */
export async function settle(rounds = 20) {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setImmediate(r));
}

function abortError(message) {
  const err = new Error(message);
  err.name = 'AbortError';
  return err;
}

class FakeTarget {
  constructor() {
    this.listeners = new Map();
  }

  addEventListener(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
  }

  removeEventListener(type, fn) {
    const set = this.listeners.get(type);
    if (set) set.delete(fn);
  }

  dispatch(type, ev = {}) {
    for (const fn of [...(this.listeners.get(type) || [])]) fn({ type, ...ev });
  }
}

export class FakeBrowser {
  constructor() {
    this.locks = new Map(); // name -> { holder, queue }
    this.channels = new Set();
    this.tabs = [];
  }

  _lock(name) {
    if (!this.locks.has(name)) this.locks.set(name, { holder: null, queue: [] });
    return this.locks.get(name);
  }

  lockManager(tab) {
    return {
      request: (name, options, callback) => new Promise((resolve, reject) => {
        if (tab.closed) return; // a closed page's requests never settle
        const st = this._lock(name);
        const req = { tab, name, callback, resolve, reject };
        if (options.signal) {
          if (options.signal.aborted) return reject(abortError('aborted'));
          options.signal.addEventListener('abort', () => {
            const i = st.queue.indexOf(req);
            if (i >= 0) {
              st.queue.splice(i, 1);
              reject(abortError('aborted'));
            }
          });
        }
        if (options.steal) {
          const held = st.holder;
          st.holder = null;
          if (held) held.reject(abortError('stolen'));
          this._grant(st, req);
        } else if (!st.holder && st.queue.length === 0) {
          this._grant(st, req);
        } else {
          st.queue.push(req);
        }
      }),
    };
  }

  _grant(st, req) {
    st.holder = req;
    setImmediate(() => {
      if (req.tab.closed) return this._release(st, req);
      let result;
      try {
        result = req.callback({ name: req.name, mode: 'exclusive' });
      } catch (err) {
        this._release(st, req);
        req.reject(err);
        return undefined;
      }
      Promise.resolve(result).then((v) => {
        this._release(st, req);
        req.resolve(v);
      }, (err) => {
        this._release(st, req);
        req.reject(err);
      });
      return undefined;
    });
  }

  _release(st, req) {
    if (st.holder !== req) return;
    st.holder = null;
    const next = st.queue.shift();
    if (next) this._grant(st, next);
  }

  /** The tab that holds the lock name, or null. */
  holder(name) {
    const st = this.locks.get(name);
    return st && st.holder ? st.holder.tab : null;
  }

  channelClass(tab) {
    const browser = this;
    return class FakeBroadcastChannel {
      constructor(name) {
        this.name = name;
        this.tab = tab;
        this.onmessage = null;
        this.closed = false;
        browser.channels.add(this);
      }

      postMessage(message) {
        if (this.closed) throw new Error('InvalidStateError: the channel is closed');
        const data = structuredClone(message);
        for (const c of browser.channels) {
          if (c === this || c.name !== this.name) continue;
          const deliver = () => {
            if (!c.closed && c.onmessage) c.onmessage({ data: structuredClone(data) });
          };
          if (c.tab.hold) c.tab.held.push(deliver);
          else setImmediate(deliver);
        }
      }

      close() {
        this.closed = true;
        browser.channels.delete(this);
      }
    };
  }

  /** A new tab: its own document, window, lock manager and channels. */
  open(label, { visible = true } = {}) {
    const tab = { label, closed: false, hold: false, held: [], lines: [], got: [], states: [] };
    tab.document = new FakeTarget();
    tab.document.visibilityState = visible ? 'visible' : 'hidden';
    tab.window = new FakeTarget();
    tab.client = new SSEClient({
      locks: this.lockManager(tab),
      BroadcastChannel: this.channelClass(tab),
      document: tab.document,
      window: tab.window,
    });
    const log = (...a) => tab.lines.push(a.map(String).join(' '));
    tab.logger = { info: log, warn: log, error: log };
    tab.client.on('*', (e) => tab.got.push(e));
    this.tabs.push(tab);
    return tab;
  }

  /** Closes a tab as the browser would: its locks go, its channels and streams close. */
  close(tab) {
    tab.closed = true;
    for (const st of this.locks.values()) {
      st.queue = st.queue.filter((r) => r.tab !== tab);
      if (st.holder && st.holder.tab === tab) this._release(st, st.holder);
    }
    for (const c of [...this.channels]) if (c.tab === tab) c.close();
    if (tab.bridge) for (const es of [...tab.bridge.streams]) if (es.tab === tab) es.close();
    this.tabs = this.tabs.filter((t) => t !== tab);
  }

  /** Messages to tab wait until release(tab) (a busy or throttled tab). */
  hold(tab) {
    tab.hold = true;
  }

  release(tab) {
    tab.hold = false;
    for (const deliver of tab.held.splice(0)) setImmediate(deliver);
  }
}

/** The bridge: one user's events with ids, replayed after lastEventId. */
export class FakeBridge {
  constructor() {
    this.events = []; // {id, data}
    this.streams = new Set();
    this.opened = []; // every EventSource, in order
    this.n = 0;
    this.down = false;
  }

  /** The EventSource class of a tab (the connect option EventSource). */
  eventSourceFor(tab) {
    const bridge = this;
    tab.bridge = bridge;
    return class FakeEventSource {
      constructor(url) {
        this.url = url;
        this.tab = tab;
        this.readyState = 0;
        this.onopen = this.onmessage = this.onerror = null;
        if (tab.closed) { // a closed page runs no more code
          this.readyState = 2;
          return;
        }
        bridge.opened.push(this);
        bridge.streams.add(this);
        setImmediate(() => bridge._open(this));
      }

      params() {
        return new URL(this.url, 'http://x/').searchParams;
      }

      close() {
        this.readyState = 2;
        bridge.streams.delete(this);
      }
    };
  }

  _open(es) {
    if (es.readyState === 2) return;
    if (this.down) {
      es.readyState = 2;
      this.streams.delete(es);
      if (es.onerror) es.onerror({});
      return;
    }
    es.readyState = 1;
    if (es.onopen) es.onopen({});
    const last = es.params().get('lastEventId');
    if (last) {
      const i = this.events.findIndex((e) => e.id === last);
      for (const e of this.events.slice(i + 1)) this._send(es, e);
    }
  }

  _send(es, e) {
    if (es.readyState === 1 && es.onmessage) es.onmessage({ data: e.data, lastEventId: e.id });
  }

  /** Publishes an event: kept, and sent to every open stream. */
  publish(event) {
    const e = { id: `1700000000000-${++this.n}`, data: JSON.stringify({ timestamp: new Date(0).toISOString(), ...event }) };
    this.events.push(e);
    for (const es of this.streams) this._send(es, e);
    return e.id;
  }

  /** Sends a message without an id line to every open stream: the EventSource repeats the last id. */
  sendIdless(event, lastEventId) {
    for (const es of this.streams) {
      if (es.readyState === 1 && es.onmessage) es.onmessage({ data: JSON.stringify(event), lastEventId });
    }
  }

  get open() {
    return [...this.streams].filter((es) => es.readyState === 1);
  }
}
