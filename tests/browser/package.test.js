// The npm package as a user gets it: `npm pack` of clients/js, the tarball
// installed into a scratch Vite app (a copy of fixtures/vite-app, whose own
// dependencies come from its lockfile with `npm ci`), and `vite build` of an
// entry that imports `mqtt-sse-bridge/client`.
//
// Needs npm and the npm registry (for the fixture's Vite).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { REPO } from './lib/harness.js';

const NPM = process.env.SB_NPM || 'npm';
const PACKAGE = path.join(REPO, 'clients', 'js');
const FIXTURE = path.join(REPO, 'tests', 'browser', 'fixtures', 'vite-app');

let tmp;
let tarball;
let packed;
let app;

function npm(args, cwd) {
  return execFileSync(NPM, [...args, '--no-audit', '--no-fund'], {
    cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 300000,
  });
}

describe('the npm package installs from its tarball into a Vite app and builds', { timeout: 600000 }, () => {
  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-package-'));
  });

  after(() => {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('npm pack gives a tarball of the client, the server library, their declarations and README, nothing else', () => {
    const out = JSON.parse(npm(['pack', '--json', '--pack-destination', tmp], PACKAGE));
    packed = out[0];
    tarball = path.join(tmp, packed.filename);
    assert.ok(fs.existsSync(tarball), tarball);
    assert.equal(packed.name, 'mqtt-sse-bridge');
    assert.equal(packed.version, '0.1.0');
    const files = packed.files.map((f) => f.path).sort();
    assert.deepEqual(files, [
      'README.md', 'package.json',
      'src/client/device.js', 'src/client/index.js', 'src/client/sse-client.js',
      'src/server/event.js', 'src/server/hub.js', 'src/server/index.js', 'src/server/presence.js',
      'types/client/device.d.ts', 'types/client/index.d.ts', 'types/client/sse-client.d.ts',
      'types/event.d.ts', 'types/server/index.d.ts',
    ]);
    const manifest = JSON.parse(fs.readFileSync(path.join(PACKAGE, 'package.json'), 'utf8'));
    assert.equal(manifest.type, 'module');
    // mqtt.js is the server library's only dependency; the browser client
    // imports nothing outside its own folder (no runtime dependency)
    assert.deepEqual(manifest.dependencies || {}, { mqtt: '5.16.0' });
    for (const f of ['device.js', 'index.js', 'sse-client.js']) {
      const src = fs.readFileSync(path.join(PACKAGE, 'src/client', f), 'utf8');
      for (const m of src.matchAll(/^\s*(?:import|export)\b[^;]*?from\s+['"]([^'"]+)['"]/gm))
        assert.ok(m[1].startsWith('./'), `src/client/${f} imports ${m[1]}`);
    }
    assert.deepEqual(manifest.exports['./client'],
      { types: './types/client/index.d.ts', default: './src/client/index.js' });
  });

  it('a Vite app installs the tarball and `vite build` bundles mqtt-sse-bridge/client', () => {
    app = path.join(tmp, 'app');
    fs.cpSync(FIXTURE, app, { recursive: true, filter: (src) => !/node_modules|[/\\]dist$/.test(src) });
    npm(['ci'], app);
    const lockBefore = fs.readFileSync(path.join(app, 'package-lock.json'), 'utf8');
    npm(['install', '--no-save', tarball], app);
    assert.equal(fs.readFileSync(path.join(app, 'package-lock.json'), 'utf8'), lockBefore, 'the lockfile is left as it was');
    const installed = path.join(app, 'node_modules', 'mqtt-sse-bridge');
    assert.ok(fs.existsSync(path.join(installed, 'src', 'client', 'sse-client.js')));
    assert.ok(fs.existsSync(path.join(installed, 'types', 'client', 'index.d.ts')));

    const log = execFileSync(process.execPath, [path.join(app, 'node_modules', 'vite', 'bin', 'vite.js'), 'build'],
      { cwd: app, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 300000 });
    console.log(log.trim().split('\n').map((l) => `# ${l}`).join('\n'));
    const assets = path.join(app, 'dist', 'assets');
    const bundles = fs.readdirSync(assets).filter((f) => f.endsWith('.js'));
    assert.equal(bundles.length, 1, `one bundle: ${bundles}`);
    const js = fs.readFileSync(path.join(assets, bundles[0]), 'utf8');
    for (const s of ['/api/sse', '[SSE] Connected', 'mqtt-sse-bridge ', 'sse-device-id']) {
      assert.ok(js.includes(s), `the bundle holds the client (${s})`);
    }
    assert.ok(fs.readFileSync(path.join(app, 'dist', 'index.html'), 'utf8').includes(bundles[0]));
  });
});
