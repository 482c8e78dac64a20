// The SvelteKit example (examples/sveltekit/) as it ships: built with `vite build`
// (adapter-node) and run with node, against a real mosquitto and the
// mqtt-sse-bridge daemon with JWT auth, in headless Chromium. Two devices of
// the user "demo" (two browser contexts, device ids phone and laptop) and one
// of another user: start a Pomodoro timer on the phone and the laptop shows it,
// a phase change, move it to the laptop, a page opened later renders it from
// the server, stop it on the laptop and the phone shows it stopped; the other
// user sees none of it; and svelte-check of the example. The app's server publishes through
// mqtt-sse-bridge/server and counts the streams from the bridge's presence records.
//
// Needs: the example's packages (npm ci in examples/sveltekit; done here when
// node_modules does not match the lockfile), clients/js's own (npm ci --prefix
// clients/js) when it has dependencies, playwright-core (npm ci --prefix
// tests/browser) and /usr/bin/chromium. Each missing piece fails the test naming it.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import {
  ARTIFACTS, BRIDGE_BIN, Bridge, Broker, REPO, freePort, launchChromium, makeWorkdir, randomSecret, scaled,
  sleep, waitUntil,
} from '../browser/lib/harness.js';

const EXAMPLE = path.join(REPO, 'examples', 'sveltekit');
const PACKAGE = path.join(REPO, 'clients', 'js');
const NPM = process.env.SB_NPM || 'npm';
const BUILD_DIR = 'build-test'; // inside the example (gitignored), so `node` finds its node_modules
const USER = 'demo';

let workdir;
let broker;
let bridge;
let app; // {child, exit, logPath, port, base}
let browser;
const devices = {}; // label -> {label, id, context, page, console: [], errors: []}

// ---- set-up ---------------------------------------------------------------------------

/** The example's server imports mqtt-sse-bridge/server: fail at once, saying so, without it. */
function checkServerLibrary() {
  const manifest = JSON.parse(fs.readFileSync(path.join(PACKAGE, 'package.json'), 'utf8'));
  const entry = manifest.exports && manifest.exports['./server'];
  if (!entry) {
    throw new Error('mqtt-sse-bridge/server is missing: clients/js/package.json exports no "./server", ' +
      "so the example's server code (examples/sveltekit/src/lib/server/) cannot be built. " +
      'The Node.js server library of the npm package must be in clients/js first.');
  }
  const file = typeof entry === 'string' ? entry : entry.import || entry.default || entry.node;
  if (typeof file === 'string' && !fs.existsSync(path.join(PACKAGE, file))) {
    throw new Error(`mqtt-sse-bridge/server is missing: clients/js exports "./server" as ${file}, which does not exist`);
  }
  const deps = Object.keys(manifest.dependencies || {});
  const absent = deps.filter((d) => !fs.existsSync(path.join(PACKAGE, 'node_modules', d, 'package.json')));
  if (absent.length) {
    throw new Error(`clients/js's dependencies are not installed (${absent.join(', ')}): ` +
      'npm ci --prefix clients/js (the example links the package, whose imports resolve from there)');
  }
}

function npm(args, cwd) {
  return execFileSync(NPM, [...args, '--no-audit', '--no-fund'], {
    cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: scaled(240000),
  });
}

/** npm ci in the example unless node_modules already holds exactly what its lockfile says. */
function installExample() {
  const lock = JSON.parse(fs.readFileSync(path.join(EXAMPLE, 'package-lock.json'), 'utf8'));
  let installed = null;
  try {
    installed = JSON.parse(fs.readFileSync(path.join(EXAMPLE, 'node_modules', '.package-lock.json'), 'utf8'));
  } catch { /* not installed */ }
  const want = { ...lock.packages };
  delete want[''];
  // (optional packages of other platforms are in the lockfile, not installed)
  const same = installed && Object.keys(want).every((k) => want[k].optional || installed.packages[k] &&
    installed.packages[k].version === want[k].version && installed.packages[k].resolved === want[k].resolved);
  if (same) {
    console.log('# examples/sveltekit/node_modules matches its lockfile');
    return;
  }
  const t0 = Date.now();
  npm(['ci'], EXAMPLE);
  console.log(`# npm ci in examples/sveltekit: ${Date.now() - t0}ms`);
}

function buildExample() {
  const t0 = Date.now();
  const vite = path.join(EXAMPLE, 'node_modules', 'vite', 'bin', 'vite.js');
  try {
    execFileSync(process.execPath, [vite, 'build', '--logLevel', 'warn'], {
      cwd: EXAMPLE, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: scaled(240000),
      env: { ...process.env, EXAMPLE_BUILD_DIR: BUILD_DIR },
    });
  } catch (err) {
    throw new Error(`vite build of examples/sveltekit failed:\n${err.stdout || ''}\n${err.stderr || err.message}`);
  }
  console.log(`# vite build of examples/sveltekit: ${Date.now() - t0}ms`);
  assert.ok(fs.existsSync(path.join(EXAMPLE, BUILD_DIR, 'index.js')), 'adapter-node wrote index.js');
}

function tail(file, lines) {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch (e) {
    return `<cannot read ${file}: ${e.message}>`;
  }
}

/** `node build` of the example on port, as run.sh starts it. */
async function startApp(port) {
  const base = `http://127.0.0.1:${port}`;
  const logPath = path.join(workdir, 'app.log');
  const fd = fs.openSync(logPath, 'a');
  const child = spawn(process.execPath, [path.join(EXAMPLE, BUILD_DIR)], {
    cwd: EXAMPLE,
    stdio: ['ignore', fd, fd],
    env: {
      ...process.env,
      PORT: String(port),
      HOST: '127.0.0.1',
      ORIGIN: base,
      MQTT_URL: `mqtt://127.0.0.1:${broker.port}`,
      SSE_URL: `${bridge.base}/api/sse`,
      SSE_JWT_SECRET: bridge.secret,
      SSE_TOPIC_PREFIX: 'sync',
      SSE_PRESENCE_PREFIX: 'presence',
    },
  });
  fs.closeSync(fd);
  const exit = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  app = { child, exit, logPath, port, base };
  await waitUntil(async () => {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`the example app exited at start:\n${tail(logPath, 80)}`);
    }
    try {
      const r = await fetch(`${base}/api/timer`, { signal: AbortSignal.timeout(2000) });
      return r.status === 200;
    } catch {
      return false;
    }
  }, 20000, 'the example app to answer');
}

async function stopApp() {
  if (!app || app.child.exitCode !== null || app.child.signalCode !== null) return;
  app.child.kill('SIGTERM');
  const timer = setTimeout(() => app.child.kill('SIGKILL'), scaled(10000));
  await app.exit;
  clearTimeout(timer);
}

// ---- pages ----------------------------------------------------------------------------

async function openDevice(label, id, user = USER) {
  const context = await browser.newContext({ viewport: { width: 900, height: 900 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  const d = { label, id, user, context, page, console: [], errors: [] };
  page.on('console', (m) => d.console.push(m.text()));
  page.on('pageerror', (e) => d.errors.push(String(e && e.stack || e)));
  devices[label] = d;
  const userParam = user === USER ? '' : `&user=${user}`;
  await page.goto(`${app.base}/?device=${id}&name=${label}${userParam}`);
  return d;
}

const tid = (d, name) => d.page.locator(`[data-testid="${name}"]`);

const connected = (d, timeout = 10000) => d.page.waitForFunction(
  () => window.focusExample && window.focusExample.client.isConnected(), null,
  { timeout: scaled(timeout), polling: 20 });

/** The page's state, as plain JSON. */
const snapshot = (d) => d.page.evaluate(() => JSON.parse(JSON.stringify({
  me: window.focusExample.state.me,
  timer: window.focusExample.state.timer,
  received: window.focusExample.state.received,
  devices: window.focusExample.state.devices,
})));

const timerEvents = (snap, type) => snap.received.filter((e) => e.channel === 'timer' && (!type || e.type === type));

/** Waits until the page's timer satisfies fn(timer) (a function source run in the page). */
const waitTimer = (d, fn, timeout = 10000) => d.page.waitForFunction(
  (src) => (0, eval)(src)(window.focusExample.state.timer), fn.toString(),
  { timeout: scaled(timeout), polling: 20 });

async function diagnostics(name) {
  const out = [`\n==== diagnostics for "${name}" ====`];
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  for (const d of Object.values(devices)) {
    out.push(`---- ${d.label} (${d.id}) console ----`, ...d.console.slice(-60));
    if (d.errors.length) out.push(`---- ${d.label} page errors ----`, ...d.errors);
    try {
      const file = path.join(ARTIFACTS, `example-failure-${d.label}.png`);
      await d.page.screenshot({ path: file });
      out.push(`(screenshot: ${file})`, JSON.stringify(await snapshot(d)).slice(0, 3000));
    } catch (e) {
      out.push(`(no snapshot: ${e.message})`);
    }
  }
  if (app) out.push('---- app log ----', tail(app.logPath, 80));
  if (bridge) out.push('---- bridge log ----', bridge.logs(100));
  if (broker) out.push('---- mosquitto log ----', broker.logs(40));
  console.error(out.join('\n'));
}

/** it(), with logs, page consoles and screenshots printed when it fails. */
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

// ---- the run ------------------------------------------------------------------------------

describe('the SvelteKit example: the focus timer of two devices through the bridge', { timeout: scaled(240000) }, () => {
  before(async () => {
    checkServerLibrary();
    installExample();
    buildExample();
    workdir = makeWorkdir('sb-example-');
    broker = new Broker(workdir);
    await broker.start();
    // The app's pages are on another origin than the bridge: cors_origins lets them open the stream.
    // The app port is taken first, so that the bridge can name it.
    const appPort = await freePort();
    bridge = new Bridge(broker, workdir, {
      secret: randomSecret(),
      extra: ['--cors_origins', `http://127.0.0.1:${appPort}`, '--presence_prefix', 'presence'],
    });
    await bridge.start();
    await startApp(appPort);
    browser = await launchChromium();
    console.log(`# app ${app.base}, bridge ${BRIDGE_BIN} on ${bridge.base}, mosquitto on ${broker.port}, ` +
      `Chromium ${browser.version()}`);
  });

  after(async () => {
    if (browser) await browser.close().catch(() => {});
    await stopApp().catch(() => {});
    if (bridge) await bridge.stop().catch((e) => console.error(e.message));
    if (broker) await broker.stop();
    if (workdir) fs.rmSync(workdir, { recursive: true, force: true });
    fs.rmSync(path.join(EXAMPLE, BUILD_DIR), { recursive: true, force: true });
  });

  step('the pages of two devices of one user, and one of another user, connect', async () => {
    await Promise.all([openDevice('Phone', 'phone'), openDevice('Laptop', 'laptop'), openDevice('Tablet', 'tablet', 'bob')]);
    for (const d of Object.values(devices)) {
      await connected(d);
      await d.page.waitForSelector('[data-testid="connection"][data-state="connected"]', { timeout: scaled(5000) });
      assert.ok(d.console.includes('[SSE] Connected'), `${d.label} logged [SSE] Connected: ${d.console}`);
      assert.deepEqual(d.errors, [], `${d.label} had page errors`);
    }
    // Each device said hello through the app: the phone can move the timer to the laptop.
    await devices.Phone.page.waitForFunction(
      () => window.focusExample.state.devices.some((x) => x.deviceId === 'laptop'), null, { timeout: scaled(5000) });
    const bob = await snapshot(devices.Tablet);
    assert.deepEqual(bob.devices.map((x) => x.deviceId), ['tablet'], 'bob sees no device of demo');
  });

  step("the app's hub counts the user's streams from the bridge's presence records", async () => {
    const presence = async (cookie) => (await (await fetch(`${app.base}/api/timer`,
      { headers: cookie ? { cookie } : {} })).json()).presence;
    const demo = await waitUntil(async () => {
      const p = await presence();
      return p.connections === 2 ? p : null;
    }, 10000, 'getConnectionCount("demo") to be 2');
    assert.equal(demo.online, true, 'isUserConnected("demo")');
    const bob = await waitUntil(async () => {
      const p = await presence('user=bob');
      return p.connections === 1 ? p : null;
    }, 10000, 'getConnectionCount("bob") to be 1');
    assert.equal(bob.online, true);
    assert.deepEqual(await presence('user=nobody'), { connections: 0, online: false });
  });

  step('a Pomodoro timer started on the phone shows on the laptop; no echo to the phone', async () => {
    const { Phone, Laptop } = devices;
    await tid(Phone, 'task').fill('Write the report');
    await tid(Phone, 'mode').selectOption('pomodoro');
    await tid(Phone, 'minutes').fill('25');
    await tid(Phone, 'start').click();
    await waitTimer(Laptop, (t) => t && t.taskTitle === 'Write the report');
    await Laptop.page.waitForSelector('[data-testid="running"][data-owner="phone"][data-phase="focus"]',
      { timeout: scaled(2000) });
    assert.equal(await tid(Laptop, 'task-title').textContent(), 'Write the report');
    assert.match(await tid(Laptop, 'where').textContent(), /Running on\s+Phone/);
    assert.match(await tid(Laptop, 'phase').textContent(), /Focus · 1\/4/);
    assert.match(await tid(Laptop, 'remaining').textContent(), /^2[45]:\d\d$/);
    assert.match(await tid(Phone, 'where').textContent(), /Running on\s+this device/);

    const started = timerEvents(await snapshot(Laptop), 'started');
    assert.equal(started.length, 1, 'the laptop got one timer:started');
    const ev = started[0];
    assert.equal(ev.sourceDeviceId, 'phone');
    assert.ok(ev.id, 'the event has an SSE id');
    assert.match(ev.timestamp, /^\d{4}-\d\d-\d\dT/);
    for (const k of ['memoId', 'taskTitle', 'startedAt', 'plannedEndTime', 'mode', 'pomodoroState', 'deviceName']) {
      assert.ok(k in ev.payload, `timer:started carries ${k}`);
    }
    assert.equal(ev.payload.deviceName, 'Phone');
    await sleep(scaled(500)); // an echo would have come by now
    assert.equal(timerEvents(await snapshot(Phone)).length, 0, 'the phone got no event of its own');
  });

  step('the next Pomodoro phase, from the phone, shows on the laptop (timer:updated)', async () => {
    const { Phone, Laptop } = devices;
    await tid(Phone, 'next-phase').click();
    await Laptop.page.waitForSelector('[data-testid="running"][data-phase="break"]', { timeout: scaled(5000) });
    assert.match(await tid(Laptop, 'phase').textContent(), /Break · 1\/4/);
    const updated = timerEvents(await snapshot(Laptop), 'updated');
    assert.equal(updated.length, 1);
    assert.equal(updated[0].payload.pomodoroState.phase, 'break');
  });

  step('the phone moves the timer to the laptop (timer:moved, sent to the laptop)', async () => {
    const { Phone, Laptop } = devices;
    await tid(Phone, 'move-target').selectOption('laptop');
    await tid(Phone, 'move').click();
    await Laptop.page.waitForSelector('[data-testid="running"][data-owner="laptop"]', { timeout: scaled(5000) });
    assert.match(await tid(Laptop, 'where').textContent(), /Running on\s+this device\s+\(moved here from Phone\)/);
    await Phone.page.waitForSelector('[data-testid="running"][data-owner="laptop"]', { timeout: scaled(5000) });
    assert.match(await tid(Phone, 'where').textContent(), /Running on\s+Laptop/);

    const moved = timerEvents(await snapshot(Laptop), 'moved');
    assert.ok(moved.length >= 1, 'the laptop got timer:moved');
    const targeted = moved.find((e) => e.targetDeviceId === 'laptop');
    assert.ok(targeted, `timer:moved was sent to the laptop: ${JSON.stringify(moved)}`);
    assert.equal(targeted.sourceDeviceId, 'phone');
    assert.equal(targeted.payload.targetDeviceId, 'laptop');
    assert.equal(targeted.payload.taskTitle, 'Write the report');
    assert.equal(targeted.payload.pomodoroState.phase, 'break', 'the moved timer keeps its phase');
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    for (const d of [Phone, Laptop]) await d.page.screenshot({ path: path.join(ARTIFACTS, `example-moved-${d.label}.png`) });
  });

  step('a page opened now renders the running timer from the server', async () => {
    const html = await (await fetch(`${app.base}/`)).text();
    assert.ok(html.includes('Write the report'), 'the server-rendered page shows the task');
    const { Phone } = devices;
    await Phone.page.reload();
    await connected(Phone);
    await Phone.page.waitForSelector('[data-testid="running"][data-owner="laptop"][data-phase="break"]',
      { timeout: scaled(5000) });
    assert.match(await tid(Phone, 'where').textContent(), /Running on\s+Laptop/);
  });

  step('the laptop stops the timer; the phone shows it stopped; the other user saw nothing', async () => {
    const { Phone, Laptop, Tablet } = devices;
    await tid(Laptop, 'stop').click();
    await Phone.page.waitForSelector('[data-testid="start-form"]', { timeout: scaled(5000) });
    assert.match(await tid(Phone, 'last-stop').textContent(), /Stopped by Laptop/);
    const stopped = timerEvents(await snapshot(Phone), 'stopped');
    assert.equal(stopped.length, 1);
    assert.equal(stopped[0].sourceDeviceId, 'laptop');
    assert.equal((await (await fetch(`${app.base}/api/timer`)).json()).timer, null, 'the server has no timer');

    const bob = await snapshot(Tablet);
    assert.equal(timerEvents(bob).length, 0, `bob received: ${JSON.stringify(bob.received)}`);
    assert.equal(bob.timer, null);
    assert.equal(await tid(Tablet, 'start-form').count(), 1);
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    for (const d of [Phone, Laptop]) await d.page.screenshot({ path: path.join(ARTIFACTS, `example-stopped-${d.label}.png`) });
    for (const d of Object.values(devices)) assert.deepEqual(d.errors, [], `${d.label} had page errors`);
  });

  it("the example type-checks against the package's declarations (svelte-check, strict)", () => {
    const bin = path.join(EXAMPLE, 'node_modules', 'svelte-check', 'bin', 'svelte-check');
    try {
      execFileSync(process.execPath, [bin, '--tsconfig', './tsconfig.json', '--output', 'human', '--fail-on-warnings'], {
        cwd: EXAMPLE, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: scaled(120000),
      });
    } catch (err) {
      assert.fail(`svelte-check found problems in examples/sveltekit:\n${err.stdout || ''}${err.stderr || err.message}`);
    }
  });
});
