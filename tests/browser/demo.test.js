// The demo and sse-client.js in a real browser: headless Chromium (Debian's
// chromium package) driven by playwright-core, against a real mosquitto and the
// mqtt-sse-bridge daemon with JWT auth.
//
// Three devices of user A (A1, A2, A3), each a browser context of its own (its
// own localStorage and sessionStorage), and one device of user B, all on the
// demo page at / with #device=<id>&token=<jwt>. Then a page of the client alone
// for the expired-token case. The cases run in order and share the pages.
//
// Needs /usr/bin/chromium (apt-get install chromium) and playwright-core
// (npm ci --prefix tests/browser): fails, naming them, when they are missing.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import {
  ARTIFACTS, Bridge, Broker, launchChromium, makeWorkdir, randomSecret, scaled, sleep, tokenFor, waitUntil, BRIDGE_BIN,
} from './lib/harness.js';

const USER_A = 'alice';
const USER_B = 'bob';
const USER_C = 'carol';
const CLIENT_ID = `browser-test-${process.pid}`;

let workdir;
let broker;
let bridge;
let browser;
let secret;
const devices = {}; // label -> {label, id, context, page, console: [], errors: []}

// ---- helpers ----------------------------------------------------------------------

async function openDevice(label, id, user) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 820 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  const d = { label, id, user, context, page, console: [], errors: [] };
  page.on('console', (m) => d.console.push(m.text()));
  page.on('pageerror', (e) => d.errors.push(String(e && e.stack || e)));
  const token = tokenFor(secret, user, 3600);
  await page.goto(`${bridge.base}/#device=${id}&name=${label}&token=${token}`);
  devices[label] = d;
  return d;
}

const connected = (d, timeout = 10000) => d.page.waitForFunction(
  () => window.demo && window.demo.client.isConnected(), null, { timeout: scaled(timeout), polling: 20 });

const snapshot = (d) => d.page.evaluate(() => ({
  timer: window.demo.state.timer,
  received: window.demo.received,
  sent: window.demo.sent,
  lastEventId: window.demo.client.lastEventId,
  connection: window.demo.state.connection.state,
  devices: [...window.demo.state.devices.keys()],
}));

const timerEvents = (snap, type) => snap.received.filter((e) => e.channel === 'timer' && (!type || e.type === type));

const waitTimer = (d, predicateSource, arg, timeout = 10000) => d.page.waitForFunction(
  predicateSource, arg, { timeout: scaled(timeout), polling: 10 });

const countLog = (d, selector) => d.page.locator(`#log li${selector}`).count();

async function diagnostics(name) {
  const out = [`\n==== diagnostics for "${name}" ====`];
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  for (const d of Object.values(devices)) {
    out.push(`---- ${d.label} (${d.id}) console ----`, ...d.console.slice(-60));
    if (d.errors.length) out.push(`---- ${d.label} page errors ----`, ...d.errors);
    try {
      const file = path.join(ARTIFACTS, `failure-${d.label}.png`);
      await d.page.screenshot({ path: file });
      out.push(`(screenshot: ${file})`);
      out.push(JSON.stringify(await snapshot(d)).slice(0, 3000));
    } catch (e) {
      out.push(`(no snapshot: ${e.message})`);
    }
  }
  if (bridge) out.push('---- bridge log ----', bridge.logs(120));
  if (broker) out.push('---- mosquitto log ----', broker.logs(60));
  console.error(out.join('\n'));
}

/** it(), with the logs, page consoles and screenshots printed when it fails. */
function step(name, fn) {
  it(name, async () => {
    try {
      await fn();
    } catch (err) {
      await diagnostics(name);
      throw err;
    }
  });
}

function timerPublish(user, event) {
  broker.publish(`sync/${user}/timer`, event);
}

// ---- the run -----------------------------------------------------------------------

describe('the demo in Chromium: devices of one user in sync through the bridge', { timeout: scaled(180000) }, () => {
  before(async () => {
    workdir = makeWorkdir();
    secret = randomSecret();
    broker = new Broker(workdir);
    await broker.start();
    bridge = new Bridge(broker, workdir, { secret, clientId: CLIENT_ID });
    await bridge.start();
    browser = await launchChromium();
    console.log(`# bridge ${BRIDGE_BIN} on ${bridge.base}, mosquitto on ${broker.port}, Chromium ${browser.version()}`);
    await Promise.all([
      openDevice('A1', 'a1', USER_A),
      openDevice('A2', 'a2', USER_A),
      openDevice('A3', 'a3', USER_A),
      openDevice('B', 'b1', USER_B),
    ]);
  });

  after(async () => {
    if (browser) await browser.close().catch(() => {});
    if (bridge) await bridge.stop().catch((e) => console.error(e.message)); // if a step failed early
    if (broker) await broker.stop();
    if (workdir) fs.rmSync(workdir, { recursive: true, force: true });
  });

  step('every page connects with its token and finds the other devices of its user', async () => {
    for (const d of Object.values(devices)) await connected(d);
    // the demo's hello/here exchange: A1 knows A2 and A3 (for "Move to")
    await devices.A1.page.waitForFunction(
      () => ['a2', 'a3'].every((id) => window.demo.state.devices.has(id)), null, { timeout: scaled(5000) });
    for (const d of Object.values(devices)) {
      assert.ok(d.console.includes('[SSE] Connected'), `${d.label} logged [SSE] Connected: ${d.console}`);
      // the token left the address bar; it was never in a request URL but the stream's
      assert.ok(!d.page.url().includes('token='), `${d.label}'s URL still holds the token: ${d.page.url()}`);
      assert.equal(await d.page.locator('#conn').getAttribute('data-state'), 'connected');
    }
    const b = await snapshot(devices.B);
    assert.deepEqual(b.devices, ['b1'], 'B sees no device of A');
  });

  step('starting the timer on A1 shows it on A2 within a second; no echo to A1; B sees nothing', async () => {
    const { A1, A2, A3, B } = devices;
    await A1.page.fill('#task', 'Write the report');
    await A1.page.selectOption('#mode', 'pomodoro');
    const t0 = Date.now();
    await A1.page.click('#start');
    await waitTimer(A2, () => window.demo.state.timer && window.demo.state.timer.taskTitle === 'Write the report'
      && !document.getElementById('running').hidden, null, 5000);
    const took = Date.now() - t0;
    // From A1's publish to A2's handler (which draws the timer at once), on
    // the one clock of this machine; `took` adds the test's own polling.
    const latency = await A2.page.evaluate(() => {
      const i = window.demo.received.findIndex((e) => e.channel === 'timer' && e.type === 'started');
      return window.demo.receivedAt[i];
    }) - (await snapshot(A1)).sent.find((r) => r.channel === 'timer' && r.type === 'started').at;
    console.log(`# A2 showed the timer started on A1 after ${latency}ms (${took}ms from the click, seen by the test)`);
    assert.ok(latency <= scaled(1000), `A2 showed the timer ${latency}ms after A1 sent it (limit 1000ms)`);
    assert.equal(await A2.page.textContent('#task-title'), 'Write the report');
    assert.match(await A2.page.textContent('#where'), /Running on A1/);
    assert.match(await A2.page.textContent('#remaining'), /^2[45]:\d\d$/);

    const a2 = await snapshot(A2);
    const started = timerEvents(a2, 'started');
    assert.equal(started.length, 1, 'A2 got one timer:started');
    const ev = started[0];
    assert.equal(ev.channel, 'timer');
    assert.equal(ev.sourceDeviceId, 'a1');
    assert.ok(ev.id, 'the event has an SSE id');
    assert.match(ev.timestamp, /^\d{4}-\d\d-\d\dT/);
    assert.deepEqual(Object.keys(ev.payload).sort(),
      ['deviceName', 'memoId', 'mode', 'plannedEndTime', 'pomodoroState', 'startedAt', 'taskTitle']);
    assert.equal(ev.payload.mode, 'pomodoro');
    assert.equal(ev.payload.deviceName, 'A1');
    assert.equal(ev.payload.pomodoroState.phase, 'focus');
    await waitTimer(A3, () => window.demo.state.timer && window.demo.state.timer.taskTitle === 'Write the report');

    await sleep(scaled(600)); // anything else would have arrived by now
    const a1 = await snapshot(A1);
    assert.equal(timerEvents(a1).length, 0, `A1 got an echo: ${JSON.stringify(timerEvents(a1))}`);
    assert.equal(await countLog(A1, '[data-dir="in"][data-channel="timer"]'), 0);
    assert.equal(a1.timer.ownerDeviceId, 'a1');
    assert.equal(a1.sent.find((s) => s.channel === 'timer' && s.type === 'started').status, 202);
    const b = await snapshot(B);
    assert.equal(b.received.length, 0, `B received: ${JSON.stringify(b.received)}`);
    assert.equal(b.timer, null);
    assert.equal(await countLog(B, '[data-dir="in"]'), 0);
    assert.equal(await B.page.isHidden('#running'), true);
  });

  step("B gets its own user's events, and the devices of A do not", async () => {
    const { A1, A2, B } = devices;
    timerPublish(USER_B, {
      type: 'started', sourceDeviceId: 'backend-b',
      payload: { memoId: 'memo-b', taskTitle: 'Bob reads', startedAt: new Date().toISOString(),
        plannedEndTime: new Date(Date.now() + 600000).toISOString(), mode: 'countdown', deviceName: 'Backend' },
    });
    await waitTimer(B, () => window.demo.state.timer && window.demo.state.timer.taskTitle === 'Bob reads');
    await sleep(scaled(300));
    for (const d of [A1, A2]) {
      const s = await snapshot(d);
      assert.ok(!s.received.some((e) => e.payload && e.payload.memoId === 'memo-b'), `${d.label} got B's event`);
      assert.equal(s.timer.taskTitle, 'Write the report');
    }
  });

  step('a Pomodoro phase change (timer:updated) reaches the other devices', async () => {
    const { A1, A2, A3 } = devices;
    await A1.page.click('#next-phase');
    for (const d of [A2, A3]) {
      await waitTimer(d, () => window.demo.state.timer && window.demo.state.timer.pomodoroState
        && window.demo.state.timer.pomodoroState.phase === 'break');
    }
    assert.match(await A2.page.textContent('#phase'), /Break/);
    const upd = timerEvents(await snapshot(A2), 'updated');
    assert.equal(upd.length, 1);
    assert.deepEqual(Object.keys(upd[0].payload), ['pomodoroState']);
    await sleep(scaled(300));
    assert.equal(timerEvents(await snapshot(A1)).length, 0, 'no echo to A1');
  });

  step('moving the timer to A2 reaches A2 only', async () => {
    const { A1, A2, A3, B } = devices;
    await A1.page.selectOption('#move-target', 'a2');
    await A1.page.click('#move');
    await waitTimer(A2, () => window.demo.state.timer && window.demo.state.timer.ownerDeviceId === 'a2');
    assert.match(await A2.page.textContent('#where'), /Running on this device \(moved here from A1\)/);
    const moved = timerEvents(await snapshot(A2), 'moved');
    assert.equal(moved.length, 1);
    assert.equal(moved[0].targetDeviceId, 'a2');
    assert.equal(moved[0].sourceDeviceId, 'a1');
    assert.equal(moved[0].payload.targetDeviceId, 'a2');
    for (const k of ['memoId', 'taskTitle', 'startedAt', 'plannedEndTime', 'mode', 'deviceName']) {
      assert.ok(k in moved[0].payload, `timer:moved carries ${k}`);
    }
    assert.equal(moved[0].payload.taskTitle, 'Write the report');
    assert.match(await A1.page.textContent('#where'), /Running on A2/);

    await sleep(scaled(600));
    for (const d of [A1, A3, B]) {
      const s = await snapshot(d);
      assert.equal(timerEvents(s, 'moved').length, 0, `${d.label} got the targeted timer:moved`);
      assert.equal(await countLog(d, '[data-type="moved"][data-dir="in"]'), 0);
    }
  });

  step('"Move to" on a device that does not run the timer pulls it there', async () => {
    const { A1, A2, A3 } = devices;
    // A3 did not get the targeted move to A2, so to A3 the timer still runs on
    // A1; either way "This device" is among its choices.
    const choices = await A3.page.$$eval('#move-target option', (os) => os.map((o) => [o.value, o.textContent]));
    assert.ok(choices.some(([v, t]) => v === 'a3' && /^This device/.test(t)), JSON.stringify(choices));
    await A3.page.selectOption('#move-target', 'a3');
    await A3.page.click('#move');
    assert.match(await A3.page.textContent('#where'), /Running on this device \(moved here from A1\)/);
    for (const d of [A1, A2]) {
      await waitTimer(d, () => window.demo.state.timer && window.demo.state.timer.ownerDeviceId === 'a3');
      assert.match(await d.page.textContent('#where'), /Running on A3/);
    }
    const moved = timerEvents(await snapshot(A2), 'moved');
    assert.equal(moved.at(-1).sourceDeviceId, 'a3');
    assert.equal(moved.at(-1).payload.targetDeviceId, 'a3');
    assert.equal(moved.at(-1).targetDeviceId, undefined, 'a pull goes to every device, the owner among them');
    const a3 = await snapshot(A3);
    assert.equal(timerEvents(a3, 'moved').length, 0, 'no echo to A3');
    assert.equal(a3.timer.ownerDeviceId, 'a3');
  });

  step('stopping on A2 (timer:stopped {}) clears the timer on A1 and A3', async () => {
    const { A1, A2, A3 } = devices;
    await A2.page.click('#stop');
    for (const d of [A1, A3]) {
      await waitTimer(d, () => window.demo.state.timer === null && !document.getElementById('start-form').hidden);
      const stopped = timerEvents(await snapshot(d), 'stopped');
      assert.equal(stopped.length, 1);
      assert.deepEqual(stopped[0].payload, {});
      assert.equal(stopped[0].sourceDeviceId, 'a2');
    }
    assert.equal((await snapshot(A2)).timer, null);
  });

  step('bridge stopped, events published meanwhile, bridge started: the pages reconnect and show them', async () => {
    const { A1, A2, A3, B } = devices;
    // Each page resumes from its last event id. After the restart the bridge's
    // replay buffer knows none of them: it answers with system/resync and all
    // it holds. The events published meanwhile wait in the broker for the
    // daemon's persistent session (fixed mqtt_client_id); they reach the
    // bridge before or after the pages come back: before, through the replay
    // buffer; after, live. Either way each page gets each of them once.
    const before = {};
    for (const d of Object.values(devices)) {
      before[d.label] = await snapshot(d);
      assert.ok(before[d.label].lastEventId, `${d.label} has seen an event id`);
    }
    await bridge.stop();
    for (const d of Object.values(devices)) {
      await d.page.waitForFunction(() => !window.demo.client.isConnected(), null, { timeout: scaled(5000) });
    }
    const now = Date.now();
    timerPublish(USER_A, {
      type: 'started', sourceDeviceId: 'backend-1',
      payload: { memoId: 'memo-down', taskTitle: 'Published while the bridge was down',
        startedAt: new Date(now).toISOString(), plannedEndTime: new Date(now + 900000).toISOString(),
        mode: 'countdown', deviceName: 'Backend' },
    });
    timerPublish(USER_B, { type: 'stopped', payload: {}, sourceDeviceId: 'backend-b' });
    await sleep(scaled(300));
    await bridge.start();

    for (const d of [A1, A2, A3]) {
      await waitTimer(d, () => window.demo.client.isConnected() && window.demo.state.timer
        && window.demo.state.timer.memoId === 'memo-down', null, 30000);
      assert.match(await d.page.textContent('#task-title'), /Published while the bridge was down/);
    }
    await waitTimer(B, () => window.demo.client.isConnected() && window.demo.state.timer === null, null, 30000);

    await sleep(scaled(500));
    for (const d of Object.values(devices)) {
      const s = await snapshot(d);
      const fresh = s.received.slice(before[d.label].received.length);
      const resync = fresh.filter((e) => e.channel === 'system' && e.type === 'resync');
      assert.equal(resync.length, 1, `${d.label}: one system/resync (${JSON.stringify(fresh)})`);
      assert.equal(resync[0].payload.reason, 'unknown_last_event_id');
      assert.equal(resync[0].payload.lastEventId, before[d.label].lastEventId);
      const mine = fresh.filter((e) => e.channel === 'timer' && e.sourceDeviceId && e.sourceDeviceId.startsWith('backend'));
      assert.equal(mine.length, 1, `${d.label} got the event published meanwhile once: ${JSON.stringify(mine)}`);
      assert.ok(d.console.includes('[SSE] Reconnecting in 1000ms (attempt 1/10)'),
        `${d.label} logged the first reconnection: ${d.console.join(' | ')}`);
      assert.ok(d.console.filter((l) => l === '[SSE] Connected').length >= 2);
      assert.equal(await d.page.locator('#conn').getAttribute('data-state'), 'connected');
    }
  });

  step('an expired token: the client asks getToken() for a new one and goes on', async () => {
    // A page of the client alone, on the bridge's origin, whose getToken() is
    // async and answered by the test: the first token has already expired,
    // later ones live for 4 seconds.
    const context = await browser.newContext();
    const page = await context.newPage();
    const d = { label: 'C', id: 'c1', context, page, console: [], errors: [] };
    devices.C = d;
    page.on('console', (m) => d.console.push(m.text()));
    page.on('pageerror', (e) => d.errors.push(String(e && e.stack || e)));
    const minted = [];
    await page.exposeFunction('mintToken', () => {
      const ttl = minted.length === 0 ? -60 : 4;
      const exp = Math.floor(Date.now() / 1000) + ttl;
      minted.push(exp);
      return tokenFor(secret, USER_C, ttl);
    });
    await page.route(`${bridge.base}/client-test.html`, (route) => route.fulfill({
      contentType: 'text/html',
      body: `<!doctype html><title>client</title><script type="module">
        import { sseClient } from '/sse-client.js';
        window.events = [];
        window.resyncs = [];
        window.client = sseClient;
        sseClient.on('timer', (e) => window.events.push(e));
        sseClient.connect('c1', { getToken: () => window.mintToken(), onResync: (e) => window.resyncs.push(e) });
      </script>`,
    }));
    await page.goto(`${bridge.base}/client-test.html`);
    await page.waitForFunction(() => window.client && window.client.isConnected(), null, { timeout: scaled(10000) });
    assert.equal(minted.length, 2, 'an expired token, then a fresh one');
    assert.ok(d.console.includes('[SSE] Connection failed'), d.console.join(' | '));
    assert.ok(d.console.includes('[SSE] Reconnecting in 1000ms (attempt 1/10)'), d.console.join(' | '));

    timerPublish(USER_C, { type: 'started', payload: { m: 1 } });
    await page.waitForFunction(() => window.events.length === 1, null, { timeout: scaled(5000) });

    // Let the second token expire while the stream is open, then make the
    // client reconnect (a bridge restart): it must not reuse the dead token.
    await waitUntil(() => Date.now() / 1000 > minted[1] + 1, 10000, 'the second token to expire');
    await bridge.stop();
    // the client must first see the stream end, else isConnected() is still
    // the old stream's answer
    await page.waitForFunction(() => !window.client.isConnected(), null, { timeout: scaled(10000) });
    await bridge.start();
    await page.waitForFunction(() => window.client.isConnected(), null, { timeout: scaled(20000) });
    assert.ok(minted.length >= 3, `getToken() was asked again (${minted.length} times)`);
    timerPublish(USER_C, { type: 'updated', payload: { m: 2 } });
    await page.waitForFunction(() => window.events.length === 2, null, { timeout: scaled(5000) });
    const evs = await page.evaluate(() => window.events.map((e) => e.payload.m));
    assert.deepEqual(evs, [1, 2]);
    assert.equal(await page.evaluate(() => window.resyncs.length), 1, 'one resync after the restart');
    await context.close();
    delete devices.C;
  });

  step('a screenshot of two devices in sync', async () => {
    const { A1, A2 } = devices;
    for (const d of [A1, A2]) await connected(d, 20000);
    await A1.page.click('#stop');
    await waitTimer(A2, () => window.demo.state.timer === null);
    await A1.page.fill('#task', 'Draft the quarterly review');
    await A1.page.selectOption('#mode', 'pomodoro');
    await A1.page.click('#start');
    await waitTimer(A2, () => window.demo.state.timer && window.demo.state.timer.taskTitle === 'Draft the quarterly review');
    await sleep(1300); // let the clocks tick and the log flash settle
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const shots = {};
    for (const d of [A1, A2]) {
      shots[d.label] = path.join(ARTIFACTS, `demo-${d.label}.png`);
      await d.page.screenshot({ path: shots[d.label] });
    }
    // Both side by side in one picture.
    const page = await browser.newPage({ viewport: { width: 2040, height: 880 } });
    const img = (f) => `data:image/png;base64,${fs.readFileSync(f).toString('base64')}`;
    await page.setContent(`<body style="margin:0;background:#2b2f3a;display:flex;gap:20px;padding:20px 10px;
      font:14px system-ui;color:#ccd">
      ${[A1, A2].map((d) => `<figure style="margin:0 10px"><img src="${img(shots[d.label])}" style="width:1000px;
        border-radius:8px;display:block"><figcaption style="padding-top:6px">Device ${d.label}</figcaption></figure>`).join('')}
      </body>`);
    const both = path.join(ARTIFACTS, 'demo-two-devices.png');
    await page.screenshot({ path: both, fullPage: true });
    await page.close();
    assert.ok(fs.statSync(both).size > 20000, 'the screenshot has content');
    console.log(`# screenshot of two devices in sync: ${both}`);
  });

  step('without a token the page says so once, shows offline, disables Start and leaves the bridge alone', async () => {
    // A narrow screen and a long device name: the "this device" badge stays on one line.
    const context = await browser.newContext({ viewport: { width: 360, height: 740 }, deviceScaleFactor: 1 });
    const page = await context.newPage();
    const d = { label: 'N', id: 'n1', context, page, console: [], errors: [] };
    devices.N = d;
    page.on('console', (m) => d.console.push(m.text()));
    page.on('pageerror', (e) => d.errors.push(String(e && e.stack || e)));
    const streams = [];
    page.on('request', (r) => { if (r.url().includes('/api/sse')) streams.push(r.url()); });
    await page.goto(`${bridge.base}/#device=n1&name=${encodeURIComponent('Kitchen tablet by the window')}`);
    await page.waitForFunction(() => window.demo && document.getElementById('conn').dataset.state === 'failed',
      null, { timeout: scaled(5000) });
    await sleep(scaled(2500)); // a retry loop would show by now
    assert.deepEqual(streams, [], 'no request to the SSE endpoint');
    assert.equal(await page.textContent('#conn-text'), 'Offline');
    assert.equal(await page.isHidden('#notice'), false);
    assert.match(await page.textContent('#notice'), /^No token, so this page is offline/);
    assert.equal(await page.isDisabled('#start'), true, 'Start is disabled');
    assert.equal(await page.isHidden('#reconnect'), true, 'no Reconnect that cannot work');
    assert.equal(d.console.filter((l) => l.startsWith('[Focus] Not connecting')).length, 1, d.console.join(' | '));
    assert.ok(!d.console.some((l) => l.startsWith('[SSE] Reconnecting')), d.console.join(' | '));
    const badge = await page.$eval('#devices li .tag', (el) => {
      const r = el.getBoundingClientRect();
      return { text: el.textContent, height: r.height, fontSize: parseFloat(getComputedStyle(el).fontSize),
        right: r.right, width: document.documentElement.clientWidth,
        scroll: document.documentElement.scrollWidth };
    });
    assert.equal(badge.text, 'this device');
    assert.ok(badge.right <= badge.width, `the badge is on the screen: ${JSON.stringify(badge)}`);
    assert.ok(badge.scroll <= badge.width, `the page does not scroll sideways: ${JSON.stringify(badge)}`);
    assert.ok(badge.height < badge.fontSize * 2.2, `the badge is one line high: ${JSON.stringify(badge)}`);
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'demo-no-token.png') });
  });

  step('no page threw an error', async () => {
    for (const d of Object.values(devices)) assert.deepEqual(d.errors, [], `${d.label}'s page errors`);
  });

  step('the bridge exits 0 on SIGTERM with the pages connected, and logged no sanitizer report', async () => {
    const r = await bridge.stop(); // throws unless it exits 0
    assert.equal(r.code, 0);
    const log = bridge.logs(100000);
    for (const pat of ['ERROR: AddressSanitizer', 'ERROR: LeakSanitizer', 'runtime error:']) {
      assert.ok(!log.includes(pat), `the bridge's log reports ${pat}`);
    }
  });
});
