// Harness of the mqtt-sse-bridge/server tests: a real mosquitto on a free
// loopback port with a generated config, the bridge in the form under test
// (SB_FORM: daemon, or the plugin inside that mosquitto) with auth none, more
// daemons beside it, SSE streams read with node's http module, and mqtt.js
// subscribers. Every process is stopped by the test that started it; the
// logs are printed when a test fails.
//
// Environment:
//   SB_FORM         daemon (default) or plugin
//   SB_BRIDGE_BIN   the daemon (default <repo>/build/bridge/mqtt-sse-bridge)
//   SB_PLUGIN       the plugin (default <repo>/build/plugin/mosquitto_sse.so)
//   SB_MOSQUITTO    the broker (default: mosquitto on PATH or in /usr/sbin)
//   SB_PRELOAD      sanitizer runtimes mosquitto preloads to load a sanitized plugin
//   SB_TIME_SCALE   multiplies every timeout (slow machines, sanitizers)

import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

import mqtt from 'mqtt';

// The processes, the tools and the waiting are the browser tests' (a module
// of node's own modules only: nothing of tests/browser/node_modules).
import {
  BRIDGE_BIN, Broker as BaseBroker, Proc, REPO, freePort, makeWorkdir as makeDir, scaled, sleep, waitUntil,
} from '../../../../tests/browser/lib/harness.js';

export { REPO, freePort, scaled, sleep, waitUntil };
export const FORM = process.env.SB_FORM || 'daemon';
export const PLUGIN = path.resolve(process.env.SB_PLUGIN || path.join(REPO, 'build', 'plugin', 'mosquitto_sse.so'));
const PRELOAD = (process.env.SB_PRELOAD || '').split(/[:\s]+/).filter(Boolean);
const LSAN_SUPPRESSIONS = path.join(REPO, 'tests', 'integration', 'lsan-mosquitto.supp');

export function makeWorkdir() {
  return makeDir('sb-jsserver-');
}

/** A log with a line naming its process and file above it: these tests print several together. */
const named = (Base) => class extends Base {
  logs(lines = 120) {
    return `==== ${this.name} (${this.logPath})\n${super.logs(lines)}`;
  }
};

/** GET url's status, or 0 when nothing answers. */
function status(url) {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('error', () => resolve(0));
    req.on('timeout', () => { req.destroy(); resolve(0); });
  });
}

/** mosquitto on a free loopback port; with plugin options, the bridge inside it (the plugin form). */
export class Broker extends named(BaseBroker) {
  constructor(workdir, name = 'mosquitto') {
    super(workdir, name);
    this.plugin = null; // { httpPort, options }
  }

  /** Loads the plugin at the next start, with plugin_opt_ lines of options (auth none unless given). */
  withPlugin(httpPort, options) {
    this.plugin = { httpPort, options: { auth: 'none', ...options } };
    return this;
  }

  confLines() {
    const lines = super.confLines();
    if (this.plugin) {
      lines.push(`plugin ${PLUGIN}`, `plugin_opt_http_port ${this.plugin.httpPort}`);
      for (const [k, v] of Object.entries(this.plugin.options)) lines.push(`plugin_opt_${k} ${v}`);
    }
    return lines;
  }

  async start() {
    this.env = undefined;
    if (this.plugin && PRELOAD.length) {
      const asan = process.env.ASAN_OPTIONS;
      const lsan = process.env.LSAN_OPTIONS;
      this.env = {
        LD_PRELOAD: PRELOAD.concat(process.env.LD_PRELOAD ? [process.env.LD_PRELOAD] : []).join(':'),
        ASAN_OPTIONS: (asan ? asan + ':' : '') + 'intercept_tls_get_addr=0',
        LSAN_OPTIONS: (lsan ? lsan + ':' : '') + `suppressions=${LSAN_SUPPRESSIONS}:print_suppressions=0`,
      };
    }
    await super.start();
    if (this.plugin) {
      await waitUntil(async () => {
        if (!this.running) throw new Error(`mosquitto with the plugin exited at start:\n${this.logs()}`);
        return (await status(`http://127.0.0.1:${this.plugin.httpPort}/healthz`)) === 200;
      }, 15000, "the plugin's /healthz");
    }
  }
}

/** The daemon against broker, auth none, with more options (names of the SPEC). */
export class Daemon extends named(Proc) {
  constructor(broker, workdir, name, options = {}) {
    super(name, path.join(workdir, `${name}.log`));
    this.broker = broker;
    this.options = { auth: 'none', log_level: 'debug', ...options };
    this.port = null;
  }

  async start() {
    if (!fs.existsSync(BRIDGE_BIN)) throw new Error(`the bridge is not built: ${BRIDGE_BIN} (set SB_BRIDGE_BIN)`);
    if (!this.port) this.port = await freePort();
    const args = ['--http_port', String(this.port), '--mqtt_host', '127.0.0.1', '--mqtt_port', String(this.broker.port)];
    for (const [k, v] of Object.entries(this.options)) args.push(`--${k}`, String(v));
    this.spawn(BRIDGE_BIN, args);
    await waitUntil(async () => {
      if (!this.running) throw new Error(`the bridge exited at start:\n${this.logs()}`);
      return (await status(`http://127.0.0.1:${this.port}/healthz`)) === 200;
    }, 15000, `${this.name}'s /healthz`);
  }
}

/** An SSE stream of the bridge on port, as device of user (auth none), read with node's http. */
export class SSEStream {
  constructor(port, deviceId, userId) {
    this.port = port;
    this.deviceId = deviceId;
    this.userId = userId;
    this.events = [];
    this.status = null;
    this.closed = false;
    this.req = null;
    this.listeners = new Set();
  }

  /** Opens the stream; resolves once the bridge has answered 200 and sent its first bytes. */
  open() {
    const q = new URLSearchParams({ deviceId: this.deviceId, userId: this.userId });
    return new Promise((resolve, reject) => {
      this.req = http.get({ host: '127.0.0.1', port: this.port, path: `/api/sse?${q}`, headers: { Accept: 'text/event-stream' } }, (res) => {
        this.status = res.statusCode;
        if (res.statusCode !== 200) {
          res.resume();
          reject(new Error(`GET /api/sse for ${this.deviceId}/${this.userId} answered ${res.statusCode}`));
          return;
        }
        res.setEncoding('utf8');
        let buf = '';
        let first = true;
        res.on('data', (chunk) => {
          if (first) { first = false; resolve(this); }
          buf += chunk;
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            this.#frame(block);
          }
        });
        res.on('end', () => { this.closed = true; });
        res.on('error', () => { this.closed = true; });
      });
      this.req.on('error', (err) => {
        this.closed = true;
        reject(err);
      });
    });
  }

  #frame(block) {
    let id = null;
    const data = [];
    for (const line of block.split('\n')) {
      if (line.startsWith('id:')) id = line.slice(3).trim();
      else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
    }
    if (!data.length) return;
    const event = JSON.parse(data.join('\n'));
    this.events.push({ id, event });
    for (const fn of this.listeners) fn();
  }

  /** The events received, as parsed JSON. */
  get received() {
    return this.events.map((e) => e.event);
  }

  /** Resolves with the first event received that pred accepts; rejects after timeout ms. */
  waitFor(pred, timeout = 5000, what = 'an event') {
    return new Promise((resolve, reject) => {
      const check = () => {
        const hit = this.received.find(pred);
        if (hit) {
          clearTimeout(timer);
          this.listeners.delete(check);
          resolve(hit);
        }
      };
      const timer = setTimeout(() => {
        this.listeners.delete(check);
        reject(new Error(`${this.deviceId} of ${this.userId}: no ${what} within ${scaled(timeout)}ms; ` +
          `got ${JSON.stringify(this.received)}`));
      }, scaled(timeout));
      this.listeners.add(check);
      check();
    });
  }

  close() {
    this.closed = true;
    this.req?.destroy();
  }
}

/** An mqtt.js client subscribed to filter; collects { topic, payload } (payload as text). */
export async function subscriber(url, filter) {
  const client = await mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: scaled(5000) });
  const messages = [];
  client.on('message', (topic, payload, packet) => {
    messages.push({ topic, payload: payload.toString('utf8'), retain: packet.retain });
  });
  await client.subscribeAsync(filter, { qos: 1 });
  return { client, messages, close: () => client.endAsync(true) };
}

/** The retained messages under filter now, as { topic: parsed JSON }. */
export async function retained(url, filter, settle = 300) {
  const sub = await subscriber(url, filter);
  await sleep(scaled(settle));
  await sub.close();
  const out = {};
  for (const m of sub.messages) if (m.retain && m.payload) out[m.topic] = JSON.parse(m.payload);
  return out;
}
