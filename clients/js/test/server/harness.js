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

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import mqtt from 'mqtt';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, '..', '..', '..', '..');
export const FORM = process.env.SB_FORM || 'daemon';
export const BRIDGE_BIN = process.env.SB_BRIDGE_BIN || path.join(REPO, 'build', 'bridge', 'mqtt-sse-bridge');
export const PLUGIN = path.resolve(process.env.SB_PLUGIN || path.join(REPO, 'build', 'plugin', 'mosquitto_sse.so'));
export const TIME_SCALE = Number(process.env.SB_TIME_SCALE || '1') || 1;
const PRELOAD = (process.env.SB_PRELOAD || '').split(/[:\s]+/).filter(Boolean);
const LSAN_SUPPRESSIONS = path.join(REPO, 'tests', 'integration', 'lsan-mosquitto.supp');

function findTool(name, env) {
  if (process.env[env]) return process.env[env];
  for (const dir of (process.env.PATH || '').split(':').concat(['/usr/sbin', '/usr/local/sbin', '/usr/bin'])) {
    const p = path.join(dir || '.', name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch { /* next */ }
  }
  return name;
}
export const MOSQUITTO = findTool('mosquitto', 'SB_MOSQUITTO');

export const scaled = (ms) => ms * TIME_SCALE;
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resolves with a TCP port of 127.0.0.1 that nothing listens on now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.setTimeout(500);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
    s.once('timeout', () => { s.destroy(); resolve(false); });
  });
}

/** Polls fn until it returns a truthy value; returns it. Throws naming what, and the last value, after timeout ms. */
export async function waitUntil(fn, timeout, what, interval = 50) {
  const deadline = Date.now() + scaled(timeout);
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() >= deadline) throw new Error(`timed out after ${scaled(timeout)}ms waiting for ${what} (last: ${JSON.stringify(last)})`);
    await sleep(interval);
  }
}

function tail(file, lines = 120) {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch (e) {
    return `<cannot read ${file}: ${e.message}>`;
  }
}

export function makeWorkdir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'sb-jsserver-'));
}

/** A process whose output goes to a log file. */
class Proc {
  constructor(name, logPath) {
    this.name = name;
    this.logPath = logPath;
    this.child = null;
    this.exit = null;
  }

  spawn(cmd, args, env) {
    const fd = fs.openSync(this.logPath, 'a');
    fs.writeSync(fd, `---- harness: ${cmd} ${args.join(' ')}\n`);
    this.child = spawn(cmd, args, { stdio: ['ignore', fd, fd], env: env ? { ...process.env, ...env } : process.env });
    fs.closeSync(fd);
    this.exit = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => resolve({ code, signal }));
      this.child.once('error', (err) => resolve({ code: null, signal: null, error: err }));
    });
    return this.child;
  }

  get running() {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Kills the process with signal (default SIGKILL: a crash) and waits for it. */
  async kill(signal = 'SIGKILL') {
    if (!this.child) return null;
    const child = this.child;
    this.child = null;
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    return this.exit;
  }

  /** SIGTERM, then SIGKILL after timeout ms; waits. Idempotent. */
  async stop(timeout = 15000) {
    if (!this.child) return null;
    const child = this.child;
    this.child = null;
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), scaled(timeout));
    const r = await this.exit;
    clearTimeout(timer);
    return r;
  }

  logs(lines) {
    return `==== ${this.name} (${this.logPath})\n${tail(this.logPath, lines)}`;
  }
}

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
export class Broker extends Proc {
  constructor(workdir, name = 'mosquitto') {
    super(name, path.join(workdir, `${name}.log`));
    this.workdir = workdir;
    this.confPath = path.join(workdir, `${name}.conf`);
    this.port = null;
    this.plugin = null; // { httpPort, options }
  }

  get url() {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  /** Loads the plugin at the next start, with plugin_opt_ lines of options (auth none unless given). */
  withPlugin(httpPort, options) {
    this.plugin = { httpPort, options: { auth: 'none', ...options } };
    return this;
  }

  async start() {
    if (!this.port) this.port = await freePort();
    let user = 'root';
    try { user = os.userInfo().username; } catch { /* keep root */ }
    const lines = [
      `listener ${this.port} 127.0.0.1`,
      'allow_anonymous true',
      'persistence false',
      `user ${user}`, // stay the user we are (as root mosquitto would switch to 'mosquitto')
      'log_dest stderr',
      'log_type all',
      'log_timestamp true',
      'connection_messages true',
      'max_queued_messages 100000',
    ];
    let env;
    if (this.plugin) {
      lines.push(`plugin ${PLUGIN}`, `plugin_opt_http_port ${this.plugin.httpPort}`);
      for (const [k, v] of Object.entries(this.plugin.options)) lines.push(`plugin_opt_${k} ${v}`);
      if (PRELOAD.length) {
        const asan = process.env.ASAN_OPTIONS;
        const lsan = process.env.LSAN_OPTIONS;
        env = {
          LD_PRELOAD: PRELOAD.concat(process.env.LD_PRELOAD ? [process.env.LD_PRELOAD] : []).join(':'),
          ASAN_OPTIONS: (asan ? asan + ':' : '') + 'intercept_tls_get_addr=0',
          LSAN_OPTIONS: (lsan ? lsan + ':' : '') + `suppressions=${LSAN_SUPPRESSIONS}:print_suppressions=0`,
        };
      }
    }
    fs.writeFileSync(this.confPath, lines.join('\n') + '\n');
    this.spawn(MOSQUITTO, ['-c', this.confPath], env);
    await waitUntil(async () => {
      if (!this.running) throw new Error(`mosquitto exited at start:\n${this.logs()}`);
      return canConnect(this.port);
    }, 10000, `mosquitto to listen on ${this.port}`);
    if (this.plugin) {
      await waitUntil(async () => {
        if (!this.running) throw new Error(`mosquitto with the plugin exited at start:\n${this.logs()}`);
        return (await status(`http://127.0.0.1:${this.plugin.httpPort}/healthz`)) === 200;
      }, 15000, "the plugin's /healthz");
    }
  }
}

/** The daemon against broker, auth none, with more options (names of the SPEC). */
export class Daemon extends Proc {
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
