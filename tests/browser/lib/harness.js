// Browser-test harness: a real mosquitto on a free loopback port with a
// generated config, the mqtt-sse-bridge daemon against it (JWT auth), HS256
// tokens, and mosquitto_pub. The JS counterpart of tests/integration/harness.py.
// The harness of clients/js's server tests (clients/js/test/server/harness.js)
// builds on its processes (Proc, Broker) and helpers: so this module imports
// node's own modules only, and playwright-core when launchChromium() runs.
//
// Environment:
//   SB_BRIDGE_BIN    the daemon (default <repo>/build/bridge/mqtt-sse-bridge)
//   SB_MOSQUITTO     the broker (default: mosquitto on PATH or in /usr/sbin)
//   SB_MOSQUITTO_PUB mosquitto_pub
//   SB_TIME_SCALE    multiplies every timeout (slow machines, sanitizers)

import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, '..', '..', '..');
export const WEB_ROOT = path.join(REPO, 'web');
// The browser client: the bridge serves these at its web root, next to web/.
export const CLIENT_DIR = path.join(REPO, 'clients', 'js', 'src', 'client');
export const CLIENT_FILES = ['sse-client.js', 'device.js'];

/** A web root holding web/ and the browser client, as the bridge embeds them:
 *  the tests run against the sources whatever the build embedded. */
export function makeWebRoot(workdir) {
  const root = path.join(workdir, 'web');
  fs.mkdirSync(root, { recursive: true });
  for (const name of fs.readdirSync(WEB_ROOT)) fs.copyFileSync(path.join(WEB_ROOT, name), path.join(root, name));
  for (const name of CLIENT_FILES) fs.copyFileSync(path.join(CLIENT_DIR, name), path.join(root, name));
  return root;
}
export const BRIDGE_BIN = process.env.SB_BRIDGE_BIN ||
  path.join(REPO, 'build', 'bridge', 'mqtt-sse-bridge');
export const TIME_SCALE = Number(process.env.SB_TIME_SCALE || '1') || 1;

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
export const MOSQUITTO_PUB = findTool('mosquitto_pub', 'SB_MOSQUITTO_PUB');

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

function tail(file, lines = 150) {
  try {
    const all = fs.readFileSync(file, 'utf8').split('\n');
    return all.slice(-lines).join('\n');
  } catch (e) {
    return `<cannot read ${file}: ${e.message}>`;
  }
}

/** A process whose output goes to a log file; stop() sends SIGTERM and waits. */
export class Proc {
  constructor(name, logPath) {
    this.name = name;
    this.logPath = logPath;
    this.child = null;
    this.exit = null;
  }

  /** Starts cmd with args, its environment ours with env's variables over it. */
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
    return tail(this.logPath, lines);
  }
}

/** mosquitto on a free loopback port with a generated config (confLines()), run
 *  with env's variables over our environment (undefined: none). */
export class Broker extends Proc {
  constructor(workdir, name = 'mosquitto') {
    super(name, path.join(workdir, `${name}.log`));
    this.workdir = workdir;
    this.port = null;
    this.confPath = path.join(workdir, `${name}.conf`);
    this.env = undefined;
  }

  get url() {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  /** The lines of the config: the listener, anonymous clients, no persistence, everything logged. */
  confLines() {
    let user = 'root';
    try { user = os.userInfo().username; } catch { /* keep root */ }
    return [
      `listener ${this.port} 127.0.0.1`,
      'allow_anonymous true',
      'persistence false',
      // stay the user we are (as root mosquitto would switch to 'mosquitto')
      `user ${user}`,
      'log_dest stderr',
      'log_type all',
      'log_timestamp true',
      'connection_messages true',
      'max_queued_messages 100000',
    ];
  }

  async start() {
    if (!this.port) this.port = await freePort();
    fs.writeFileSync(this.confPath, this.confLines().join('\n') + '\n');
    this.spawn(MOSQUITTO, ['-c', this.confPath], this.env);
    await waitUntil(async () => {
      if (!this.running) throw new Error(`mosquitto exited at start:\n${this.logs()}`);
      return canConnect(this.port);
    }, 10000, `mosquitto to listen on ${this.port}`);
  }

  /** Publishes one message with mosquitto_pub (QoS 1 by default); returns once acknowledged. */
  publish(topic, payload, qos = 1) {
    const text = typeof payload === 'string' ? payload : JSON.stringify(payload);
    const r = spawnSync(MOSQUITTO_PUB, ['-h', '127.0.0.1', '-p', String(this.port), '-q', String(qos),
      '-t', topic, '-s'], { input: text, timeout: scaled(20000) });
    if (r.status !== 0) {
      throw new Error(`mosquitto_pub failed (${r.status}): ${r.stderr} ${r.error || ''}`);
    }
  }
}

/** The daemon with JWT auth (HS256), serving web/ and the browser client from
 *  the source tree (a web root made in workdir). The
 *  HTTP port is kept across restarts; so is the MQTT client id, which gives the
 *  daemon a persistent session: the broker keeps QoS 1 events while it is away. */
export class Bridge extends Proc {
  constructor(broker, workdir, { secret, clientId, extra = [] } = {}) {
    super('mqtt-sse-bridge', path.join(workdir, 'bridge.log'));
    this.webRoot = makeWebRoot(workdir);
    this.broker = broker;
    this.secret = secret;
    this.clientId = clientId;
    this.extra = extra;
    this.port = null;
  }

  get base() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start() {
    if (!fs.existsSync(BRIDGE_BIN)) throw new Error(`the bridge is not built: ${BRIDGE_BIN} (set SB_BRIDGE_BIN)`);
    if (!this.port) this.port = await freePort();
    const args = [
      '--http_port', String(this.port),
      '--mqtt_host', '127.0.0.1',
      '--mqtt_port', String(this.broker.port),
      '--jwt_secret', this.secret,
      '--web_root', this.webRoot,
      '--log_level', 'debug',
    ];
    if (this.clientId) args.push('--mqtt_client_id', this.clientId);
    this.spawn(BRIDGE_BIN, args.concat(this.extra));
    await waitUntil(async () => {
      if (!this.running) throw new Error(`the bridge exited at start:\n${this.logs()}`);
      try {
        const r = await fetch(`${this.base}/healthz`, { signal: AbortSignal.timeout(2000) });
        return r.status === 200;
      } catch {
        return false;
      }
    }, 15000, "the bridge's /healthz");
  }

  async stop(timeout) {
    const r = await super.stop(timeout);
    if (r && r.code !== 0) throw new Error(`the bridge exited with ${JSON.stringify(r)} on SIGTERM:\n${this.logs()}`);
    return r;
  }
}

// ---- JWT (test side only) ----------------------------------------------------------

const b64url = (buf) => Buffer.from(buf).toString('base64url');

/** An HS256 JWT of claims signed with secret. */
export function makeJwt(secret, claims) {
  const input = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' })) + '.' + b64url(JSON.stringify(claims));
  return input + '.' + crypto.createHmac('sha256', secret).update(input).digest('base64url');
}

/** A token for user, valid for ttl seconds from now (negative: already expired). */
export function tokenFor(secret, user, ttl = 3600) {
  const now = Math.floor(Date.now() / 1000);
  return makeJwt(secret, { sub: user, iat: now, exp: now + ttl });
}

export function randomSecret() {
  return crypto.randomBytes(32).toString('hex');
}

export function makeWorkdir(prefix = 'sb-browser-') {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

// ---- Chromium ----------------------------------------------------------------------

export const CHROMIUM = process.env.SB_CHROMIUM || '/usr/bin/chromium';
export const ARTIFACTS = process.env.SB_ARTIFACT_DIR || path.join(os.tmpdir(), 'mqtt-sse-bridge-browser-artifacts');
const CHROMIUM_ARGS = [
  '--no-sandbox', '--headless', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-dev-shm-usage',
];

/** Headless Debian Chromium under playwright-core; throws naming what is missing. */
export async function launchChromium() {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`Chromium is missing at ${CHROMIUM}: apt-get install -y chromium (or set SB_CHROMIUM)`);
  }
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (err) {
    throw new Error(`playwright-core is not installed: npm ci --prefix tests/browser (${err.message})`);
  }
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
}

/** The value of a gauge or counter without labels in the bridge's /metrics. */
export async function metric(base, name) {
  const text = await (await fetch(`${base}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}
