// Tabs that share one stream, under node --test: election with Web Locks,
// relay over BroadcastChannel, hand-over when the leader closes, freezes or
// hides, resume after the newest id any tab saw, no event lost or twice.
// A browser and a bridge in memory (fakes.js); the same in real Chromium:
// tests/browser/tabs.test.js.

import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { COLLECT_MS, RecentIds, SSEClient, newerCursor, shareName } from '../src/client/sse-client.js';
import { FakeBridge, FakeBrowser, settle, sleep } from './fakes.js';

let browser;
let bridge;

function setup() {
  browser = new FakeBrowser();
  bridge = new FakeBridge();
}

afterEach(() => {
  if (browser) for (const tab of browser.tabs) tab.client.disconnect();
});

/** Opens a tab and connects it as device d1, sharing. */
async function tab(label, options = {}, { visible = true } = {}) {
  const t = browser.open(label, { visible });
  t.client.connect('d1', {
    EventSource: bridge.eventSourceFor(t),
    logger: t.logger,
    retryMs: 20,
    onStateChange: (s) => t.states.push(s),
    ...options,
  });
  await settle();
  return t;
}

/** Waits until the election, the collection of positions and the stream are through. */
async function ready() {
  await settle();
  await sleep(COLLECT_MS + 30);
  await settle();
}

const leaders = () => browser.tabs.filter((t) => t.client.role === 'leader');
const ids = (t) => t.got.filter((e) => e.channel !== 'system').map((e) => e.payload.n);

describe('pieces', () => {
  it('names a group by absolute endpoint, device and (auth none) user', () => {
    assert.equal(shareName('https://a.example/api/sse', 'd1'), 'mqtt-sse-bridge https://a.example/api/sse d1');
    assert.equal(shareName('/api/sse', 'd1', 'u1'), 'mqtt-sse-bridge http://localhost/api/sse d1 u1');
    assert.notEqual(shareName('/api/sse', 'd1'), shareName('/api/sse', 'd2'));
  });

  it('keeps the newest position in relay order', () => {
    const a = { seq: 5, id: 'x-5' };
    assert.equal(newerCursor(a, { seq: 4, id: 'x-9' }), a);
    assert.deepEqual(newerCursor(a, { seq: 6, id: 'x-6' }), { seq: 6, id: 'x-6' });
    assert.deepEqual(newerCursor({ seq: 0, id: '' }, { seq: 0, id: 'kept' }), { seq: 0, id: 'kept' });
  });

  it('remembers a bounded number of recent ids', () => {
    const r = new RecentIds(3);
    for (const id of ['a', 'b', 'c', 'd']) r.add(id);
    assert.equal(r.has('a'), false);
    assert.ok(r.has('b') && r.has('d'));
  });
});

describe('tabs of one device share one stream', () => {
  it('one EventSource for three tabs; every tab gets every event once; states in every tab', async () => {
    setup();
    const [a, b, c] = [await tab('A'), await tab('B'), await tab('C')];
    await ready();
    assert.equal(bridge.opened.length, 1, 'one stream');
    assert.deepEqual([a, b, c].map((t) => t.client.role), ['leader', 'follower', 'follower']);
    assert.deepEqual([a, b, c].map((t) => t.client.tabs), [3, 3, 3], 'every tab knows the others');
    for (const t of [a, b, c]) {
      assert.equal(t.client.isConnected(), true, `${t.label} is connected`);
      assert.equal(t.client.state, 'connected');
      assert.ok(t.lines.includes('[SSE] Connected'), `${t.label}: ${t.lines}`);
      assert.deepEqual(t.states, ['connecting', 'connected'], `${t.label}'s states`);
    }
    for (let n = 1; n <= 3; n++) bridge.publish({ channel: 'timer', type: 'tick', payload: { n }, sourceDeviceId: 'd2' });
    await settle();
    for (const t of [a, b, c]) {
      assert.deepEqual(ids(t), [1, 2, 3], t.label);
      assert.equal(t.client.lastEventId, '1700000000000-3');
      assert.equal(t.got[0].id, '1700000000000-1', 'the SSE id is the event id in every tab');
    }
  });

  it('each tab applies its own handlers, own-device filter and onResync', async () => {
    setup();
    const resyncs = { A: 0, B: 0 };
    const a = await tab('A', { onResync: () => resyncs.A++ });
    const b = await tab('B', { onResync: () => resyncs.B++ });
    await ready();
    const onlyB = [];
    b.client.on('timer', (e) => onlyB.push(e.type));
    bridge.publish({ channel: 'timer', type: 'echo', payload: { n: 1 }, sourceDeviceId: 'd1' });
    bridge.publish({ channel: 'timer', type: 'mine', payload: { n: 2 }, sourceDeviceId: 'd1', targetDeviceId: 'd1' });
    bridge.sendIdless({ channel: 'system', type: 'resync', payload: { reason: 'unknown_last_event_id' } }, '1700000000000-2');
    await settle();
    assert.deepEqual(onlyB, ['mine']);
    assert.deepEqual(ids(a), [2]);
    assert.deepEqual(resyncs, { A: 1, B: 1 });
    assert.equal(a.client.lastEventId, '1700000000000-2');
    assert.equal(b.client.lastEventId, '1700000000000-2', 'ignored events still move the resume point');
  });

  it('getToken is asked by the tab that holds the stream only', async () => {
    setup();
    const asked = { A: 0, B: 0 };
    const a = await tab('A', { getToken: () => { asked.A++; return 'tok-a'; } });
    const b = await tab('B', { getToken: () => { asked.B++; return 'tok-b'; } });
    await ready();
    assert.deepEqual(asked, { A: 1, B: 0 });
    assert.equal(bridge.opened[0].params().get('token'), 'tok-a');
    browser.close(a);
    await ready();
    assert.deepEqual(asked, { A: 1, B: 1 });
    assert.equal(b.client.role, 'leader');
    assert.equal(bridge.opened.at(-1).params().get('token'), 'tok-b');
  });

  it('the leader closes: the next tab takes over, resumes after the last id, nothing lost or twice', async () => {
    setup();
    const [a, b, c] = [await tab('A'), await tab('B'), await tab('C')];
    await ready();
    for (let n = 1; n <= 5; n++) bridge.publish({ channel: 'timer', type: 'tick', payload: { n } });
    await settle();
    browser.close(a);
    for (let n = 6; n <= 8; n++) bridge.publish({ channel: 'timer', type: 'tick', payload: { n } });
    await ready();
    assert.equal(b.client.role, 'leader');
    assert.equal(c.client.role, 'follower');
    assert.equal(bridge.open.length, 1);
    assert.equal(bridge.opened.at(-1).params().get('lastEventId'), '1700000000000-5');
    b.client.disconnect();
    await settle();
    assert.equal(c.client.tabs, 1, 'a tab that disconnects says so');
    b.client.connect('d1', { EventSource: bridge.eventSourceFor(b), logger: b.logger });
    await ready();
    assert.deepEqual([b.client.tabs, c.client.tabs], [2, 2]);
    for (let n = 9; n <= 10; n++) bridge.publish({ channel: 'timer', type: 'tick', payload: { n } });
    await settle();
    for (const t of [b, c]) assert.deepEqual(ids(t), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], t.label);
    assert.ok(c.states.filter((s) => s === 'connected').length >= 2, 'the follower saw the new stream connect');
  });

  it('the new leader resumes after the newest id any tab saw, and drops what it had', async () => {
    setup();
    const a = await tab('A');
    const c = await tab('C'); // queued before B: C is the next leader
    const b = await tab('B');
    await ready();
    bridge.publish({ channel: 'timer', type: 'tick', payload: { n: 1 } });
    await settle();
    browser.hold(c); // C is busy: the relays of 2 and 3 wait
    bridge.publish({ channel: 'timer', type: 'tick', payload: { n: 2 } });
    bridge.publish({ channel: 'timer', type: 'tick', payload: { n: 3 } });
    await settle();
    assert.deepEqual(ids(b), [1, 2, 3]);
    assert.deepEqual(ids(c), [1]);
    browser.close(a);
    await settle();
    browser.release(c); // within the collection window, as a busy tab catches up
    await ready();
    assert.equal(c.client.role, 'leader');
    assert.equal(bridge.opened.at(-1).params().get('lastEventId'), '1700000000000-3', "B's position, not C's own");
    bridge.publish({ channel: 'timer', type: 'tick', payload: { n: 4 } });
    await settle();
    for (const t of [b, c]) assert.deepEqual(ids(t), [1, 2, 3, 4], t.label);
  });

  it('when the new leader resumes from an older position, every tab drops what it already had', async () => {
    setup();
    const a = await tab('A');
    const c = await tab('C'); // the next leader
    const b = await tab('B');
    await ready();
    bridge.publish({ channel: 'timer', type: 'tick', payload: { n: 1 } });
    await settle();
    browser.hold(b); // both busy: A's relays of 2 and 3, and C's question, wait
    browser.hold(c);
    bridge.publish({ channel: 'timer', type: 'tick', payload: { n: 2 } });
    bridge.publish({ channel: 'timer', type: 'tick', payload: { n: 3 } });
    await settle();
    browser.close(a);
    await ready();
    assert.equal(c.client.role, 'leader');
    assert.equal(bridge.opened.at(-1).params().get('lastEventId'), '1700000000000-1', 'no tab answered in time');
    assert.deepEqual(ids(c), [1, 2, 3], 'the replay');
    browser.release(b);
    browser.release(c);
    await settle();
    bridge.publish({ channel: 'timer', type: 'tick', payload: { n: 4 } });
    await settle();
    for (const t of [b, c]) assert.deepEqual(ids(t), [1, 2, 3, 4], `${t.label}: each once, in order`);
  });

  it('a hidden leader hands the stream to a visible tab, which takes it at once', async () => {
    setup();
    const a = await tab('A');
    const b = await tab('B', {}, { visible: false });
    const c = await tab('C');
    await ready();
    assert.equal(a.client.role, 'leader');
    bridge.publish({ channel: 'timer', type: 'tick', payload: { n: 1 } });
    await settle();
    a.document.visibilityState = 'hidden';
    a.document.dispatch('visibilitychange');
    await ready();
    assert.equal(c.client.role, 'leader', 'the visible tab leads');
    assert.equal(b.client.role, 'follower', 'not the hidden one');
    assert.equal(a.client.role, 'follower');
    assert.equal(bridge.open.length, 1, "A's stream is closed");
    bridge.publish({ channel: 'timer', type: 'tick', payload: { n: 2 } });
    await settle();
    for (const t of [a, b, c]) assert.deepEqual(ids(t), [1, 2], t.label);
    // A stays queued: when C closes, A or B takes over
    browser.close(c);
    await ready();
    assert.equal(leaders().length, 1);
    assert.equal(bridge.open.length, 1);
  });

  it('a leader alone keeps the stream while hidden; a tab that shows up takes it', async () => {
    setup();
    const a = await tab('A');
    await ready();
    a.document.visibilityState = 'hidden';
    a.document.dispatch('visibilitychange');
    await ready();
    assert.equal(a.client.role, 'leader');
    assert.equal(bridge.opened.length, 1, 'no reconnection');
    const b = await tab('B');
    await ready();
    assert.equal(b.client.role, 'leader');
    assert.equal(a.client.role, 'follower');
  });

  it('freeze and pagehide give the stream up; resume and pageshow follow again', async () => {
    setup();
    const a = await tab('A');
    const b = await tab('B');
    await ready();
    a.document.dispatch('freeze');
    await ready();
    assert.equal(b.client.role, 'leader');
    assert.equal(bridge.open.length, 1);
    a.document.dispatch('resume');
    await ready();
    assert.equal(a.client.role, 'follower');
    bridge.publish({ channel: 'timer', type: 'tick', payload: { n: 1 } });
    await settle();
    assert.deepEqual(ids(a), [1]);
    b.window.dispatch('pagehide', { persisted: true });
    await ready();
    assert.equal(a.client.role, 'leader');
    b.window.dispatch('pageshow', { persisted: true });
    await ready();
    assert.equal(b.client.role, 'follower');
    bridge.publish({ channel: 'timer', type: 'tick', payload: { n: 2 } });
    await settle();
    assert.deepEqual(ids(b), [1, 2]);
    assert.equal(bridge.open.length, 1);
  });

  it('disconnect() in one tab leaves the others connected', async () => {
    setup();
    const a = await tab('A');
    const b = await tab('B');
    await ready();
    a.client.disconnect();
    assert.equal(a.client.isConnected(), false);
    assert.equal(a.client.state, 'disconnected');
    await ready();
    assert.equal(b.client.role, 'leader');
    assert.equal(b.client.isConnected(), true);
    b.client.disconnect();
    await settle();
    assert.equal(bridge.open.length, 0);
  });

  it('the leader gives up after maxAttempts in every tab; connect() in any tab tries again', async () => {
    setup();
    bridge.down = true;
    const a = await tab('A', { maxAttempts: 2 });
    const b = await tab('B', { maxAttempts: 2 });
    await ready();
    await sleep(120);
    await settle();
    for (const t of [a, b]) {
      assert.equal(t.client.state, 'failed', `${t.label}: ${t.states}`);
      assert.ok(t.lines.includes('[SSE] Reconnecting in 20ms (attempt 1/2)'), t.lines.join('\n'));
      assert.ok(t.lines.includes('[SSE] Giving up after 2 attempts'), t.lines.join('\n'));
    }
    bridge.down = false;
    b.client.connect('d1', { EventSource: bridge.eventSourceFor(b), logger: b.logger, maxAttempts: 2 });
    await ready();
    assert.equal(a.client.state, 'connected');
    assert.equal(b.client.isConnected(), true);
    assert.equal(bridge.open.length, 1);
  });

  it('a lock manager that refuses (an opaque origin): a stream of its own', async () => {
    setup();
    const t = browser.open('A');
    const refusing = new SSEClient({
      locks: { request: () => Promise.reject(Object.assign(new Error('opaque origin'), { name: 'SecurityError' })) },
      BroadcastChannel: browser.channelClass(t),
      document: t.document,
      window: t.window,
    });
    refusing.connect('d1', { EventSource: bridge.eventSourceFor(t), logger: t.logger });
    await ready();
    assert.equal(refusing.role, 'single');
    assert.equal(refusing.isConnected(), true);
    assert.ok(t.lines.includes('[SSE] Cannot share the stream between tabs: opaque origin'), t.lines.join('\n'));
    refusing.disconnect();
  });

  it('share: false, another device, or no Web Locks: a stream of its own', async () => {
    setup();
    await tab('A');
    await tab('B', { share: false });
    const c = browser.open('C');
    c.client.connect('d2', { EventSource: bridge.eventSourceFor(c), logger: c.logger });
    const d = new SSEClient({ locks: null });
    const t = { closed: false };
    d.connect('d1', { EventSource: bridge.eventSourceFor(t), logger: null });
    await ready();
    assert.equal(bridge.open.length, 4);
    assert.equal(d.role, 'single');
    d.disconnect();
  });
});
