// Unit tests of the browser client (clients/js/src/client/sse-client.js and
// device.js, which the bridge serves as /sse-client.js and /device.js) under
// node --test: routing, own-device filtering, backoff, resume and tokens,
// against a fake EventSource and mocked timers, one stream per tab (sharing
// between tabs: clients/js/test/). No browser, no bridge.

import { beforeEach, afterEach, describe, it, mock } from 'node:test';
import assert from 'node:assert/strict';

import { SSEClient, backoffDelay, buildUrl } from '../../clients/js/src/client/sse-client.js';
import * as device from '../../clients/js/src/client/device.js';

// ---- a fake EventSource ------------------------------------------------------------

class FakeEventSource {
  static all = [];

  constructor(url, init) {
    this.url = url;
    this.init = init;
    this.closed = false;
    this.onopen = this.onmessage = this.onerror = null;
    FakeEventSource.all.push(this);
  }

  static get last() {
    return FakeEventSource.all[FakeEventSource.all.length - 1];
  }

  params() {
    return new URL(this.url, 'http://x/').searchParams;
  }

  open() {
    this.onopen && this.onopen({});
  }

  send(event, id = '') {
    const data = typeof event === 'string' ? event : JSON.stringify(event);
    this.onmessage && this.onmessage({ data, lastEventId: id });
  }

  fail() {
    this.onerror && this.onerror({});
  }

  // The browser reconnects by itself (a network error): readyState CONNECTING.
  retrying() {
    this.readyState = 0;
    this.onerror && this.onerror({});
  }

  close() {
    this.closed = true;
  }
}

function quietLogger() {
  const lines = [];
  const log = (...a) => lines.push(a.map(String).join(' '));
  return { lines, info: log, warn: log, error: log, log };
}

// Lets pending promise callbacks (getToken's) run.
const flush = () => new Promise((r) => setImmediate(r));

let client;
let logger;

function connect(options = {}, deviceId = 'dev-1') {
  client.connect(deviceId, { EventSource: FakeEventSource, logger, ...options });
}

beforeEach(() => {
  FakeEventSource.all = [];
  client = new SSEClient({ locks: null, BroadcastChannel: null }); // one tab alone
  logger = quietLogger();
  mock.timers.enable({ apis: ['setTimeout'] });
});

afterEach(() => {
  client.disconnect();
  mock.timers.reset();
});

// ---- routing -----------------------------------------------------------------------

describe('routing', () => {
  it('gives each event to the handlers of its channel, and to "*"', async () => {
    const timer = [];
    const cal = [];
    const all = [];
    client.on('timer', (e) => timer.push(e));
    client.on('calendar', (e) => cal.push(e));
    client.on('*', (e) => all.push(e.type));
    connect();
    await flush();
    const es = FakeEventSource.last;
    es.open();
    es.send({ channel: 'timer', type: 'started', payload: { a: 1 }, sourceDeviceId: 'other' }, '5-1');
    es.send({ channel: 'calendar', type: 'created', payload: {} }, '5-2');
    es.send({ channel: 'tasks', type: 'deleted', payload: {} }, '5-3');
    assert.equal(timer.length, 1);
    assert.deepEqual(timer[0].payload, { a: 1 });
    assert.equal(timer[0].id, '5-1', 'the SSE id is given as event.id');
    assert.equal(cal.length, 1);
    assert.deepEqual(all, ['started', 'created', 'deleted']);
  });

  it('off(channel) removes every handler; off(channel, handler) and on()\'s return value one', async () => {
    const got = [];
    const h1 = () => got.push('h1');
    const undo2 = client.on('timer', () => got.push('h2'));
    client.on('timer', h1);
    connect();
    await flush();
    const es = FakeEventSource.last;
    es.send({ channel: 'timer', type: 'x', payload: 1 }, '1');
    undo2();
    es.send({ channel: 'timer', type: 'x', payload: 2 }, '2');
    client.off('timer');
    es.send({ channel: 'timer', type: 'x', payload: 3 }, '3');
    assert.deepEqual(got, ['h2', 'h1', 'h1']);
    client.on('timer', h1);
    client.off('timer', h1);
    es.send({ channel: 'timer', type: 'x', payload: 4 }, '4');
    assert.deepEqual(got, ['h2', 'h1', 'h1']);
  });

  it('ignores events caused by this device, but not those targeted at it', async () => {
    const got = [];
    client.on('timer', (e) => got.push(e.type));
    client.on('*', (e) => got.push('*' + e.type));
    connect({}, 'me');
    await flush();
    const es = FakeEventSource.last;
    es.send({ channel: 'timer', type: 'echo', payload: {}, sourceDeviceId: 'me' }, '1');
    es.send({ channel: 'timer', type: 'other', payload: {}, sourceDeviceId: 'you' }, '2');
    es.send({ channel: 'timer', type: 'anon', payload: {} }, '3');
    es.send({ channel: 'timer', type: 'self-targeted', payload: {}, sourceDeviceId: 'me', targetDeviceId: 'me' }, '4');
    assert.deepEqual(got, ['other', '*other', 'anon', '*anon', 'self-targeted', '*self-targeted']);
    assert.equal(client.lastEventId, '4', 'ignored events still move the resume point');
  });

  it('survives bad events and handlers that throw', async () => {
    const got = [];
    client.on('timer', () => { throw new Error('boom'); });
    client.on('timer', (e) => got.push(e.type));
    connect();
    await flush();
    const es = FakeEventSource.last;
    es.send('not json', '1');
    es.send('[1,2]', '2');
    es.send({ type: 'no-channel', payload: {} }, '3');
    es.send({ channel: 'timer', type: 'ok', payload: {} }, '4');
    assert.deepEqual(got, ['ok']);
    assert.ok(logger.lines.some((l) => l.includes('the timer handler threw')), logger.lines.join('\n'));
  });

  it('calls onResync for system/resync, and routes it to "system"', async () => {
    const resyncs = [];
    const system = [];
    client.on('system', (e) => system.push(e.type));
    connect({ onResync: (e) => resyncs.push(e.payload.reason) });
    await flush();
    const es = FakeEventSource.last;
    es.send({ channel: 'timer', type: 'a', payload: {} }, '9-1');
    // a resync has no id line: the EventSource reports the previous id
    es.send({ channel: 'system', type: 'resync', payload: { lastEventId: 'old', reason: 'unknown_last_event_id' } }, '9-1');
    assert.deepEqual(resyncs, ['unknown_last_event_id']);
    assert.deepEqual(system, ['resync']);
    assert.equal(client.lastEventId, '9-1');
    assert.ok(logger.lines.includes('[SSE] Resync requested by the server (unknown_last_event_id)'));
  });
});

// ---- connection, backoff, resume ------------------------------------------------------

describe('connection and reconnection', () => {
  it('connects to /api/sse with the device id and token, and says [SSE] Connected', async () => {
    const states = [];
    connect({ getToken: () => 'tok.en.1', onStateChange: (s) => states.push(s) }, 'phone:1');
    await flush();
    const es = FakeEventSource.last;
    assert.equal(es.url, '/api/sse?deviceId=phone%3A1&token=tok.en.1');
    assert.equal(client.isConnected(), false);
    es.open();
    assert.equal(client.isConnected(), true);
    assert.ok(logger.lines.includes('[SSE] Connected'));
    assert.deepEqual(states, ['connecting', 'connected']);
  });

  it('backs off exponentially from 1000 ms for up to 10 attempts, then gives up', async () => {
    const states = [];
    connect({ onStateChange: (s, d) => states.push([s, d.delay]) });
    await flush();
    const delays = [];
    for (let attempt = 1; attempt <= 10; attempt++) {
      FakeEventSource.last.fail();
      assert.ok(FakeEventSource.last.closed, 'the failed EventSource is closed');
      const line = logger.lines[logger.lines.length - 1];
      const m = /^\[SSE\] Reconnecting in (\d+)ms \(attempt (\d+)\/10\)$/.exec(line);
      assert.ok(m, `a reconnect line: ${line}`);
      assert.equal(Number(m[2]), attempt);
      delays.push(Number(m[1]));
      const before = FakeEventSource.all.length;
      mock.timers.tick(Number(m[1]) - 1);
      await flush();
      assert.equal(FakeEventSource.all.length, before, 'not before the delay');
      mock.timers.tick(1);
      await flush();
      assert.equal(FakeEventSource.all.length, before + 1, 'a fresh EventSource after the delay');
    }
    assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000, 30000]);
    assert.ok(logger.lines.includes('[SSE] Reconnecting in 1000ms (attempt 1/10)'));
    FakeEventSource.last.fail();
    assert.equal(client.state, 'failed');
    assert.ok(logger.lines.includes('[SSE] Giving up after 10 attempts'));
    mock.timers.tick(60000);
    await flush();
    assert.equal(FakeEventSource.all.length, 11, 'no more attempts');
    // connect() starts over
    connect();
    await flush();
    assert.equal(FakeEventSource.all.length, 12);
  });

  it('starts the backoff over once a connection opens', async () => {
    connect();
    await flush();
    FakeEventSource.last.fail();
    mock.timers.tick(1000);
    await flush();
    FakeEventSource.last.fail();
    assert.match(logger.lines.at(-1), /Reconnecting in 2000ms \(attempt 2\/10\)/);
    mock.timers.tick(2000);
    await flush();
    FakeEventSource.last.open();
    FakeEventSource.last.fail();
    assert.equal(logger.lines.at(-1), '[SSE] Reconnecting in 1000ms (attempt 1/10)');
  });

  it('honours retryMs, maxDelayMs and maxAttempts', async () => {
    assert.equal(backoffDelay(1), 1000);
    assert.equal(backoffDelay(3), 4000);
    assert.equal(backoffDelay(50), 30000);
    assert.equal(backoffDelay(3, 250, 800), 800);
    assert.equal(backoffDelay(2, 250, 800), 500);
    connect({ retryMs: 250, maxDelayMs: 400, maxAttempts: 3 });
    await flush();
    for (const delay of [250, 400, 400]) {
      FakeEventSource.last.fail();
      assert.match(logger.lines.at(-1), new RegExp(`Reconnecting in ${delay}ms \\(attempt \\d/3\\)`));
      mock.timers.tick(delay);
      await flush();
    }
    FakeEventSource.last.fail();
    assert.equal(logger.lines.at(-1), '[SSE] Giving up after 3 attempts');
    assert.equal(FakeEventSource.all.length, 4);
  });

  it('resumes with the last event id and asks getToken() for a fresh token each time', async () => {
    let n = 0;
    connect({ getToken: async () => `token-${++n}` });
    await flush();
    let es = FakeEventSource.last;
    assert.equal(es.params().get('token'), 'token-1');
    assert.equal(es.params().get('lastEventId'), null, 'nothing to resume from yet');
    es.open();
    es.send({ channel: 'timer', type: 'a', payload: {} }, '170-1');
    es.send({ channel: 'timer', type: 'b', payload: {} }, '170-2');
    es.fail();
    mock.timers.tick(1000);
    await flush();
    es = FakeEventSource.last;
    assert.equal(FakeEventSource.all.length, 2);
    assert.equal(es.params().get('token'), 'token-2');
    assert.equal(es.params().get('lastEventId'), '170-2');
    assert.equal(es.params().get('deviceId'), 'dev-1');
  });

  it('counts a getToken() that fails as a failed attempt', async () => {
    let n = 0;
    connect({ getToken: () => (++n === 1 ? Promise.reject(new Error('offline')) : 'good') });
    await flush();
    assert.equal(FakeEventSource.all.length, 0);
    assert.ok(logger.lines.includes('[SSE] Reconnecting in 1000ms (attempt 1/10)'), logger.lines.join('\n'));
    mock.timers.tick(1000);
    await flush();
    assert.equal(FakeEventSource.last.params().get('token'), 'good');
  });

  it('disconnect() closes and stops reconnecting; a slow getToken() after it opens nothing', async () => {
    let release;
    connect({ getToken: () => new Promise((r) => { release = r; }) });
    await flush();
    client.disconnect();
    release('late');
    await flush();
    assert.equal(FakeEventSource.all.length, 0);

    connect();
    await flush();
    FakeEventSource.last.open();
    FakeEventSource.last.fail();
    client.disconnect();
    mock.timers.tick(60000);
    await flush();
    assert.equal(FakeEventSource.all.length, 1);
    assert.equal(client.isConnected(), false);
    assert.equal(client.state, 'disconnected');
  });

  it('connect() again replaces the connection; old streams are ignored', async () => {
    const got = [];
    client.on('timer', (e) => got.push(e.type));
    connect();
    await flush();
    const first = FakeEventSource.last;
    connect();
    await flush();
    assert.ok(first.closed);
    first.send({ channel: 'timer', type: 'stale', payload: {} }, '1');
    FakeEventSource.last.send({ channel: 'timer', type: 'fresh', payload: {} }, '2');
    assert.deepEqual(got, ['fresh']);
  });

  it('a stream that has delivered no event yet lets the EventSource reconnect by itself', async () => {
    // Its position (the bridge's first id: line) is known only to the
    // EventSource, which sends it as Last-Event-ID when it reconnects.
    const states = [];
    let tokens = 0;
    connect({ getToken: () => `t${++tokens}`, onStateChange: (s) => states.push(s) });
    await flush();
    const es = FakeEventSource.last;
    es.open();
    es.retrying();
    assert.equal(es.closed, false, 'the EventSource is kept');
    assert.equal(client.isConnected(), false);
    assert.deepEqual(logger.lines.slice(-2), ['[SSE] Connection lost', '[SSE] Reconnecting in 1000ms (attempt 1/10)']);
    es.retrying(); // its own attempts fail meanwhile: counted by the backoff's clock, not each
    mock.timers.tick(1000);
    await flush();
    assert.equal(logger.lines.at(-1), '[SSE] Reconnecting in 2000ms (attempt 2/10)');
    assert.equal(FakeEventSource.all.length, 1, 'no EventSource of ours');
    es.open(); // the browser's reconnection went through
    assert.equal(client.isConnected(), true);
    assert.deepEqual(states, ['connecting', 'connected', 'reconnecting', 'reconnecting', 'connected']);
    mock.timers.tick(60000);
    await flush();
    assert.equal(client.state, 'connected');
    assert.equal(tokens, 1);

    // refused (an expired token: 401): the EventSource gives up, the client
    // takes over with a fresh token, the attempt count going on
    es.retrying();
    es.readyState = 2;
    es.fail();
    assert.equal(es.closed, true);
    assert.equal(logger.lines.at(-1), '[SSE] Reconnecting in 2000ms (attempt 2/10)');
    mock.timers.tick(2000);
    await flush();
    assert.equal(FakeEventSource.all.length, 2);
    assert.equal(FakeEventSource.last.params().get('token'), 't2');
  });

  it('gives up on a quiet stream after maxAttempts of backoff too', async () => {
    connect({ maxAttempts: 2, retryMs: 100 });
    await flush();
    const es = FakeEventSource.last;
    es.retrying();
    mock.timers.tick(100);
    es.retrying();
    mock.timers.tick(200);
    await flush();
    assert.equal(client.state, 'failed');
    assert.equal(es.closed, true);
    assert.equal(logger.lines.at(-1), '[SSE] Giving up after 2 attempts');
  });

  it('a stream that has delivered an event reconnects by hand, resuming after it', async () => {
    connect();
    await flush();
    const es = FakeEventSource.last;
    es.open();
    es.send({ channel: 'timer', type: 'a', payload: {} }, '7-1');
    es.retrying();
    assert.equal(es.closed, true);
    mock.timers.tick(1000);
    await flush();
    assert.equal(FakeEventSource.last.params().get('lastEventId'), '7-1');
  });

  it('passes userId (auth none), lastEventId and withCredentials; rejects bad device ids', async () => {
    connect({ userId: 'u1', lastEventId: '42', url: 'https://sse.example.com/api/sse', withCredentials: true });
    await flush();
    const es = FakeEventSource.last;
    assert.equal(es.url, 'https://sse.example.com/api/sse?deviceId=dev-1&userId=u1&lastEventId=42');
    assert.deepEqual(es.init, { withCredentials: true });
    assert.throws(() => client.connect('bad id', {}), TypeError);
    assert.throws(() => client.connect('', {}), TypeError);
    assert.throws(() => client.connect('x'.repeat(129), {}), TypeError);
    assert.equal(buildUrl('/sse', { deviceId: 'a', token: 't' }), '/sse?deviceId=a&token=t');
  });
});

// ---- device.js -----------------------------------------------------------------------------

describe('device.js', () => {
  it('keeps one random valid device id in localStorage', () => {
    const store = new Map();
    globalThis.localStorage = {
      getItem: (k) => (store.has(k) ? store.get(k) : null),
      setItem: (k, v) => store.set(k, String(v)),
      removeItem: (k) => store.delete(k),
    };
    try {
      const id = device.getDeviceId();
      assert.match(id, /^[A-Za-z0-9._:-]{1,128}$/);
      assert.equal(device.getDeviceId(), id);
      assert.ok(device.isValidDeviceId(id));
      store.set('sse-device-id', 'not valid!');
      const id2 = device.getDeviceId();
      assert.notEqual(id2, 'not valid!');
      assert.ok(device.isValidDeviceId(id2));
      assert.notEqual(device.newDeviceId(), device.newDeviceId());
      device.setDeviceName('  Kitchen tablet ');
      assert.equal(device.getDeviceName(), 'Kitchen tablet');
      device.setDeviceName('');
      assert.notEqual(device.getDeviceName(), '');
    } finally {
      delete globalThis.localStorage;
    }
  });

  it('works without localStorage, and names devices from the user agent', () => {
    const id = device.getDeviceId();
    assert.ok(device.isValidDeviceId(id));
    assert.equal(device.getDeviceId(), id);
    const ua = {
      'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36': 'Chrome on Linux',
      'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1': 'Safari on iPhone',
      'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0': 'Firefox on Windows',
      'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 Edg/120.0': 'Edge on Windows',
      'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36': 'Chrome on Android phone',
      'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15': 'Safari on Mac',
      '': 'Browser',
    };
    for (const [s, name] of Object.entries(ua)) assert.equal(device.describeUserAgent(s), name, s);
  });
});
