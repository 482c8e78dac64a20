// mqtt-sse-bridge/server's event checks against the bridge's rules: the
// bridge's own data cases (tests/data/events/, run by tests/unit/test_event.c)
// through prepareEvent(), and the edges of each rule. No broker needed.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';

import { createSSEEvent, HubError } from '../../src/server/index.js';
import {
  prepareEvent, isValidTimestamp, isValidTopicLevel, isValidPrefix, isValidEventId, jsonDepth,
} from '../../src/server/event.js';
import { REPO } from './harness.js';

const CASES = path.join(REPO, 'tests', 'data', 'events');
const ctx = (over = {}) => ({ what: 'broadcast', topicPrefix: 'sync', maxEventBytes: 65536, ...over });
const keep = () => {};

/** prepareEvent's verdict: 'ok', or the HubError's code. */
function verdict(c, user, event, shape = keep) {
  try {
    prepareEvent(c, user, event, shape);
    return 'ok';
  } catch (err) {
    assert.ok(err instanceof HubError, `not a HubError: ${err}`);
    assert.match(err.message, /nothing was published$/);
    return err.code;
  }
}

describe('the bridge data cases (tests/data/events)', () => {
  // what the hub's calls cannot even express: the topic comes from userId and
  // event.channel, and the event is an object that the hub serialises itself
  const INEXPRESSIBLE = {
    bad_topic: 'the hub builds the topic as <topicPrefix>/<userId>/<channel>',
    channel_mismatch: "the hub takes the topic's channel from event.channel",
    not_json: 'the hub writes the JSON itself',
  };
  const dirs = fs.readdirSync(CASES).filter((d) => fs.statSync(path.join(CASES, d)).isDirectory()).sort();
  test('there are cases to run', () => assert.ok(dirs.length >= 20, `only ${dirs.length} cases in ${CASES}`));
  for (const dir of dirs) {
    const read = (name) => {
      try {
        return fs.readFileSync(path.join(CASES, dir, name), 'utf8');
      } catch {
        return null;
      }
    };
    const expect = read('expect').split('\n')[0].trim();
    const [kind, reason] = expect.split(/\s+/);
    const prefix = (read('prefix') || 'sync').trim();
    const topic = read('topic').trim();
    const payload = read('payload');
    test(`${dir}: ${expect}`, (t) => {
      if (kind === 'drop' && INEXPRESSIBLE[reason]) {
        t.skip(INEXPRESSIBLE[reason]);
        return;
      }
      let event;
      try {
        event = JSON.parse(payload);
      } catch {
        t.skip(INEXPRESSIBLE.not_json);
        return;
      }
      // a numeric id JavaScript cannot hold as written (1e3 reads as 1000,
      // 2^64 is not a safe integer): the hub is given numbers, not text
      const rawId = /"id"\s*:\s*(-?[0-9][0-9eE.+-]*)/.exec(payload);
      if (rawId && rawId[1] !== String(event && event.id)) {
        t.skip('a numeric id that a JavaScript number does not keep as written');
        return;
      }
      const rest = topic.slice(prefix.length + 1).split('/');
      const user = rest[0];
      // the channel goes in the event, as the hub's callers give it
      if (event && typeof event === 'object' && !Array.isArray(event) && event.channel == null) {
        event = { ...event, channel: rest[1] };
      }
      const got = verdict(ctx({ topicPrefix: prefix, maxEventBytes: 1024 }), user, event);
      if (kind === 'ok') assert.equal(got, 'ok', `the bridge takes ${dir}, the hub refused it`);
      else assert.notEqual(got, 'ok', `the bridge drops ${dir} (${reason}), the hub took it`);
      if (reason === 'too_large') assert.equal(got, 'too_large');
    });
  }
});

describe('prepareEvent', () => {
  const ok = (over = {}) => ({ channel: 'timer', type: 'started', payload: { a: 1 }, ...over });

  test('makes the topic and the compact JSON of the event', () => {
    const ev = createSSEEvent('timer', 'started', { n: 1 }, 'phone');
    const r = prepareEvent(ctx({ topicPrefix: 'app/sync' }), 'u1', ev, keep);
    assert.equal(r.topic, 'app/sync/u1/timer');
    assert.deepEqual(JSON.parse(r.json), ev);
    assert.equal(r.json, JSON.stringify(ev));
  });

  test('shape() changes the copy that goes out, not the caller\'s event', () => {
    const ev = ok({ targetDeviceId: 'x' });
    const r = prepareEvent(ctx(), 'u1', ev, (w) => { delete w.targetDeviceId; w.excludeDeviceId = 'd2'; });
    assert.equal(JSON.parse(r.json).excludeDeviceId, 'd2');
    assert.equal(JSON.parse(r.json).targetDeviceId, undefined);
    assert.equal(ev.targetDeviceId, 'x');
    assert.equal(ev.excludeDeviceId, undefined);
  });

  test('user ids and channels: one topic level of 1 to 256 bytes', () => {
    for (const good of ['u', 'a'.repeat(256), 'é'.repeat(128), 'user@example.com', 'a b', '😀']) {
      assert.equal(verdict(ctx(), good, ok()), 'ok', good);
      assert.equal(verdict(ctx(), 'u1', ok({ channel: good })), 'ok', good);
    }
    for (const bad of ['', 'a'.repeat(257), 'é'.repeat(129), 'a/b', 'a+', '#', 'a\nb', 'a\u0000', 'a\u007f', '\ud800', 42, null, undefined]) {
      assert.equal(verdict(ctx(), bad, ok()), 'invalid_event', JSON.stringify(bad));
      assert.equal(verdict(ctx(), 'u1', ok({ channel: bad })), 'invalid_event', JSON.stringify(bad));
    }
  });

  test('type: a non-empty string', () => {
    for (const bad of ['', 1, null, undefined, {}, ['a']]) {
      assert.equal(verdict(ctx(), 'u1', ok({ type: bad })), 'invalid_event', JSON.stringify(bad));
    }
    assert.equal(verdict(ctx(), 'u1', ok({ type: 'x' })), 'ok');
  });

  test('payload: any JSON value, present', () => {
    for (const good of [null, 0, '', false, [], {}, 'x', [1, { a: null }]]) {
      assert.equal(verdict(ctx(), 'u1', ok({ payload: good })), 'ok', JSON.stringify(good));
    }
    const { payload, ...without } = ok();
    assert.equal(verdict(ctx(), 'u1', without), 'invalid_event');
    for (const bad of [undefined, () => 1, Symbol('s')]) {
      assert.equal(verdict(ctx(), 'u1', ok({ payload: bad })), 'invalid_event', String(bad));
    }
    assert.equal(verdict(ctx(), 'u1', ok({ payload: 10n })), 'invalid_event'); // BigInt: not JSON
    const loop = {};
    loop.self = loop;
    assert.equal(verdict(ctx(), 'u1', ok({ payload: loop })), 'invalid_event');
    assert.equal(verdict(ctx(), 'u1', ok({ payload: { k: 'lone \udc00' } })), 'invalid_event');
    assert.equal(verdict(ctx(), 'u1', ok({ payload: { ['\ud800']: 1 } })), 'invalid_event');
    assert.equal(verdict(ctx(), 'u1', ok({ payload: '😀 pairs are fine' })), 'ok');
  });

  test('the event: an object', () => {
    for (const bad of [null, undefined, 'x', 1, [], [ok()]]) {
      assert.equal(verdict(ctx(), 'u1', bad), 'invalid_event', JSON.stringify(bad));
    }
  });

  test('size: maxEventBytes counts the UTF-8 bytes of the JSON', () => {
    const base = JSON.stringify(ok({ payload: '' })).length;
    const at = (n) => ok({ payload: 'x'.repeat(n - base) });
    assert.equal(verdict(ctx({ maxEventBytes: 1024 }), 'u1', at(1024)), 'ok');
    assert.equal(verdict(ctx({ maxEventBytes: 1024 }), 'u1', at(1025)), 'too_large');
    assert.equal(verdict(ctx({ maxEventBytes: 1024 }), 'u1', ok({ payload: 'é'.repeat(510) })), 'too_large');
    assert.equal(verdict(ctx(), 'u1', ok({ payload: 'x'.repeat(65536) })), 'too_large');
  });

  test('depth: what the bridge\'s JSON parser reads (2048 levels, every value counted)', () => {
    const nest = (n) => { let v = 1; for (let i = 0; i < n; i++) v = [v]; return v; };
    // the event object is level 1, payload level 2: payload's n arrays put its 1 at n + 2
    assert.equal(verdict(ctx(), 'u1', ok({ payload: nest(2046) })), 'ok');
    assert.equal(verdict(ctx(), 'u1', ok({ payload: nest(2047) })), 'invalid_event');
  });

  test('timestamp: ISO 8601 or absent', () => {
    for (const good of [undefined, null, '2026-11-25', '2026-11-25T12:00:00.000Z', '2026-11-25T12:00Z',
      '2026-11-25 12:00:00', '2026-11-25t12:00:00z', '2026-11-25T12:00:00+01:00', '2026-11-25T12:00:00-0130',
      '2026-11-25T12:00:00,5+01', '2024-02-29T00:00:00Z', '2026-12-31T23:59:60Z', '2026-11-25T12:00']) {
      assert.equal(verdict(ctx(), 'u1', ok({ timestamp: good })), 'ok', String(good));
    }
    for (const bad of ['', 'yesterday', '2026-02-29', '2026-13-01', '2026-11-25T24:00Z', '2026-11-25T12:00:00.Z',
      '2026-11-25T12:00:00Zx', '2026-11-25T12', '26-11-25', 1764000000000, {}, '2026-11-25T12:00:00+1', '2026-11-25\u0000']) {
      assert.equal(verdict(ctx(), 'u1', ok({ timestamp: bad })), 'invalid_event', JSON.stringify(bad));
    }
    assert.equal(verdict(ctx(), 'u1', ok({ timestamp: new Date(0) })), 'ok'); // a Date: its toJSON()
  });

  test('id: a string of 1 to 128 bytes without control characters, or a non-negative integer', () => {
    for (const good of [0, 7, Number.MAX_SAFE_INTEGER, 'e-1', 'x'.repeat(128), 'é'.repeat(64), null, undefined]) {
      assert.equal(verdict(ctx(), 'u1', ok({ id: good })), 'ok', String(good));
    }
    for (const bad of [-1, 1.5, 2 ** 63, true, '', 'x'.repeat(129), 'é'.repeat(65), '1\n\ndata: forged', 'a\u007f', {}, []]) {
      assert.equal(verdict(ctx(), 'u1', ok({ id: bad })), 'invalid_event', JSON.stringify(bad));
    }
  });

  test('sourceDeviceId, targetDeviceId, excludeDeviceId: strings of 1 to 128 bytes without control characters', () => {
    for (const key of ['sourceDeviceId', 'targetDeviceId', 'excludeDeviceId']) {
      for (const good of ['phone', 'web-0123456789abcdef01234567', 'x'.repeat(128), 'Küche', null, undefined]) {
        assert.equal(verdict(ctx(), 'u1', ok({ [key]: good })), 'ok', `${key} ${good}`);
      }
      for (const bad of ['', 'x'.repeat(129), 'a\tb', 'a\u001b', 1, true, {}]) {
        assert.equal(verdict(ctx(), 'u1', ok({ [key]: bad })), 'invalid_event', `${key} ${JSON.stringify(bad)}`);
      }
    }
  });

  test('every refusal names the field and what to do', () => {
    const message = (user, ev) => {
      try {
        prepareEvent(ctx(), user, ev, keep);
      } catch (err) {
        return err.message;
      }
      return 'ok';
    };
    assert.match(message('a/b', ok()), /^broadcast: userId must be .*got "a\/b"; nothing was published$/);
    assert.match(message('u1', ok({ type: '' })), /event\.type must be a non-empty string/);
    assert.match(message('u1', ok({ payload: undefined })), /event\.payload is missing .*null for none/);
    assert.match(message('u1', ok({ timestamp: 'now' })), /event\.timestamp must be an ISO 8601 string .*got "now"/);
    assert.match(message('u1', ok({ sourceDeviceId: '' })), /event\.sourceDeviceId must be a string of 1 to 128 bytes/);
    assert.match(message('u1', ok({ payload: 'x'.repeat(70000) })), /over maxEventBytes \(65536.*max_event_bytes/);
  });
});

describe('createSSEEvent', () => {
  test("the in-app hub's shape: channel, type, payload, sourceDeviceId, timestamp", () => {
    const before = Date.now();
    const ev = createSSEEvent('timer', 'started', { memoId: 'm1' }, 'phone');
    assert.deepEqual(Object.keys(ev), ['channel', 'type', 'payload', 'sourceDeviceId', 'timestamp']);
    assert.deepEqual(ev.payload, { memoId: 'm1' });
    assert.equal(ev.sourceDeviceId, 'phone');
    assert.match(ev.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    const t = Date.parse(ev.timestamp);
    assert.ok(t >= before - 1 && t <= Date.now() + 1);
  });

  test('without a device: no sourceDeviceId', () => {
    assert.deepEqual(Object.keys(createSSEEvent('timer', 'stopped', {})), ['channel', 'type', 'payload', 'timestamp']);
    assert.equal('sourceDeviceId' in createSSEEvent('timer', 'stopped', {}, null), false);
  });
});

describe('the rules one by one', () => {
  test('isValidTopicLevel, isValidPrefix, isValidEventId, isValidTimestamp, jsonDepth', () => {
    assert.equal(isValidTopicLevel('u1'), true);
    assert.equal(isValidTopicLevel('u/1'), false);
    assert.equal(isValidPrefix('app/sync'), true);
    for (const bad of ['', '/sync', 'sync/', 'a//b', 'sync/+', 'sync/#', 'a\nb']) assert.equal(isValidPrefix(bad), false, bad);
    assert.equal(isValidEventId('x'.repeat(128)), true);
    assert.equal(isValidEventId('x'.repeat(129)), false);
    assert.equal(isValidTimestamp('2026-11-25'), true);
    assert.equal(jsonDepth('1'), 1);
    assert.equal(jsonDepth('{}'), 1);
    assert.equal(jsonDepth('{"a":[]}'), 2);
    assert.equal(jsonDepth('{"a":[1]}'), 3);
    assert.equal(jsonDepth('["[[[",{"\\"{":{}}]'), 3);
  });
});
