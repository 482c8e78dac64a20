// A quiet page loses nothing across a crash of the bridge, in headless
// Chromium against a real mosquitto and the daemon with replay_dir:
//   - a plain EventSource that has received no event yet;
//   - the browser client (sse-client.js) that has received no event yet.
// The bridge is killed (SIGKILL), an event is published over MQTT, the bridge
// comes back on the same port and takes the event from its persistent session
// before the pages may reconnect (the browser is offline meanwhile): a page
// gets the event only by resuming from the position the stream gave it with
// its first bytes (an `id:` line without data, which sets the EventSource's
// last event id without an event). The plugin form: tests/integration.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import {
  Bridge, Broker, launchChromium, makeWorkdir, metric, randomSecret, scaled, sleep, tokenFor, waitUntil, BRIDGE_BIN,
} from './lib/harness.js';

const USER = 'quinn';

let workdir;
let broker;
let bridge;
let browser;
let context;
const pages = {}; // label -> {page, console}

async function openQuiet(label, body) {
  const page = await context.newPage();
  const p = { page, console: [] };
  page.on('console', (m) => p.console.push(m.text()));
  page.on('pageerror', (e) => p.console.push(`pageerror: ${e}`));
  await context.route(`${bridge.base}/${label}.html`, (route) => route.fulfill({
    contentType: 'text/html', body: `<!doctype html><title>${label}</title><script type="module">${body}</script>`,
  }));
  await page.goto(`${bridge.base}/${label}.html`);
  pages[label] = p;
  return p;
}

describe('a page that has received nothing loses nothing across a crash of the bridge', { timeout: scaled(120000) }, () => {
  before(async () => {
    workdir = makeWorkdir('sb-restart-');
    const secret = randomSecret();
    const replayDir = path.join(workdir, 'replay');
    fs.mkdirSync(replayDir);
    broker = new Broker(workdir);
    await broker.start();
    bridge = new Bridge(broker, workdir, {
      secret, clientId: `restart-test-${process.pid}`, extra: ['--replay_dir', replayDir],
    });
    await bridge.start();
    browser = await launchChromium();
    console.log(`# bridge ${BRIDGE_BIN} on ${bridge.base} with replay_dir, Chromium ${browser.version()}`);
    context = await browser.newContext();
    const token = JSON.stringify(tokenFor(secret, USER, 3600));
    await openQuiet('plain', `
      window.got = [];
      const es = new EventSource('/api/sse?deviceId=plain&token=' + ${token});
      es.onmessage = (e) => window.got.push({ data: JSON.parse(e.data), id: e.lastEventId });
      window.es = es;`);
    await openQuiet('client', `
      import { sseClient } from '/sse-client.js';
      window.got = [];
      window.client = sseClient;
      sseClient.on('*', (e) => window.got.push({ data: e, id: e.id }));
      sseClient.connect('client', { getToken: () => ${token} });`);
  });

  after(async () => {
    if (browser) await browser.close().catch(() => {});
    if (bridge) await bridge.stop().catch((e) => console.error(e.message));
    if (broker) await broker.stop();
    if (workdir) fs.rmSync(workdir, { recursive: true, force: true });
  });

  it('the bridge is killed, an event published, the bridge started: both pages get the event', async () => {
    const { plain, client } = pages;
    await plain.page.waitForFunction(() => window.es.readyState === 1, null, { timeout: scaled(10000) });
    await client.page.waitForFunction(() => window.client.isConnected(), null, { timeout: scaled(10000) });
    await sleep(scaled(300));
    for (const p of [plain, client]) assert.deepEqual(await p.page.evaluate(() => window.got), [], 'quiet so far');

    await context.setOffline(true); // the pages come back only once the bridge has the event
    await bridge.kill();
    await plain.page.waitForFunction(() => window.es.readyState !== 1, null, { timeout: scaled(10000) });
    await client.page.waitForFunction(() => !window.client.isConnected(), null, { timeout: scaled(10000) });
    broker.publish(`sync/${USER}/timer`, { type: 'started', payload: { taskTitle: 'Published while the bridge was down' } });
    await bridge.start();
    await waitUntil(async () => (await metric(bridge.base, 'mqtt_sse_bridge_events_accepted_total')) >= 1,
      10000, 'the bridge to take the event from its session');
    await context.setOffline(false);

    for (const [label, p] of Object.entries(pages)) {
      try {
        await p.page.waitForFunction(() => window.got.length > 0, null, { timeout: scaled(15000) });
      } catch (err) {
        console.error(`---- ${label} console ----\n${p.console.join('\n')}\n---- bridge log ----\n${bridge.logs(60)}`);
        throw new Error(`the ${label} page did not get the event published while the bridge was down`);
      }
      const got = await p.page.evaluate(() => window.got);
      const timer = got.filter((e) => e.data.channel === 'timer');
      assert.equal(timer.length, 1, `${label}: ${JSON.stringify(got)}`);
      assert.equal(timer[0].data.payload.taskTitle, 'Published while the bridge was down');
    }
  });
});
