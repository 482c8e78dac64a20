// The presence table of mqtt-sse-bridge/server fed the messages the bridges
// publish (server/presence.c; README "Presence"): counts over instances,
// offline and earlier runs left out. No broker needed.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { PresenceTable } from '../../src/server/presence.js';

const S1 = '2026-11-25T11:58:02.114Z';
const S2 = '2026-11-25T12:30:00.000Z';
const status = (instance, online, started) => JSON.stringify(
  online ? { instance, online, started, timestamp: S2 } : { instance, online, started });
const record = (userId, devices, instance, started) => JSON.stringify({
  userId, online: true, connections: Object.values(devices).reduce((a, b) => a + b, 0), devices, instance, started,
  timestamp: S2,
});

test('one instance on the prefix itself: status on presence, records on presence/<userId>', () => {
  const p = new PresenceTable('presence');
  assert.equal(p.filter, 'presence/#');
  p.update('presence', Buffer.from(status('web1:8080', true, S1)));
  p.update('presence/u1', Buffer.from(record('u1', { phone: 1, laptop: 2 }, 'web1:8080', S1)));
  p.update('presence/u2', record('u2', { tab: 1 }, 'web1:8080', S1));
  assert.equal(p.count('u1'), 3);
  assert.equal(p.count('u2'), 1);
  assert.equal(p.count('u3'), 0);
  // the last connection goes: an empty retained message clears the record
  p.update('presence/u1', Buffer.alloc(0));
  assert.equal(p.count('u1'), 0);
  assert.equal(p.count('u2'), 1);
});

test('several instances, each on its own prefix under the root: counts add up', () => {
  const p = new PresenceTable('presence');
  p.update('presence/web1', status('web1:8080', true, S1));
  p.update('presence/web2', status('web2:8080', true, S2));
  p.update('presence/web1/u1', record('u1', { phone: 1 }, 'web1:8080', S1));
  p.update('presence/web2/u1', record('u1', { laptop: 2 }, 'web2:8080', S2));
  assert.equal(p.count('u1'), 3);
  // a record whose userId is not its topic's last level is nobody's
  p.update('presence/web2/u9', record('u1', { x: 5 }, 'web2:8080', S2));
  assert.equal(p.count('u1'), 3);
  assert.equal(p.count('u9'), 0);
});

test("an instance's will (offline) takes its records out; its next run brings them back", () => {
  const p = new PresenceTable('presence');
  p.update('presence/web1', status('web1:8080', true, S1));
  p.update('presence/web2', status('web2:8080', true, S1));
  p.update('presence/web1/u1', record('u1', { phone: 1 }, 'web1:8080', S1));
  p.update('presence/web2/u1', record('u1', { laptop: 2 }, 'web2:8080', S1));
  p.update('presence/web2', status('web2:8080', false, S1)); // the will: the records stay retained
  assert.equal(p.count('u1'), 1);
  // web2 starts again: its old records are of an earlier run
  p.update('presence/web2', status('web2:8080', true, S2));
  assert.equal(p.count('u1'), 1);
  p.update('presence/web2/u1', record('u1', { laptop: 1 }, 'web2:8080', S2));
  assert.equal(p.count('u1'), 2);
});

test('a record with no status beside it is stale; a cleared status takes its records out', () => {
  const p = new PresenceTable('presence');
  p.update('presence/web1/u1', record('u1', { phone: 1 }, 'web1:8080', S1));
  assert.equal(p.count('u1'), 0); // no status yet
  p.update('presence/web1', status('web1:8080', true, S1));
  assert.equal(p.count('u1'), 1);
  p.update('presence/web1', Buffer.alloc(0)); // status cleared
  assert.equal(p.count('u1'), 0);
});

test('instances that share one prefix: each one\'s records count while its own status (if seen) says so', () => {
  const p = new PresenceTable('presence');
  p.update('presence', status('web1:8080', true, S1));
  p.update('presence/u1', record('u1', { phone: 1 }, 'web1:8080', S1));
  p.update('presence/u2', record('u2', { tab: 1 }, 'web2:8080', S1)); // web2 wrote no status we saw
  assert.equal(p.count('u1'), 1);
  assert.equal(p.count('u2'), 1);
  p.update('presence', status('web2:8080', true, S2)); // web2 overwrites the retained status
  assert.equal(p.count('u1'), 1); // web1's status seen live still holds
  assert.equal(p.count('u2'), 0); // web2's record is of another run than its status
  p.update('presence', status('web1:8080', false, S1)); // web1's will
  assert.equal(p.count('u1'), 0);
});

test('devices: per device over every current instance', () => {
  const p = new PresenceTable('presence');
  p.update('presence/web1', status('web1:8080', true, S1));
  p.update('presence/web2', status('web2:8080', true, S1));
  p.update('presence/web1/u1', record('u1', { phone: 1, laptop: 1 }, 'web1:8080', S1));
  p.update('presence/web2/u1', record('u1', { laptop: 2 }, 'web2:8080', S1));
  assert.deepEqual(p.devices('u1'), { phone: 1, laptop: 3 });
  assert.deepEqual(p.devices('u9'), {});
});

test('the order of arrival does not matter (retained messages come in any order)', () => {
  const p = new PresenceTable('presence');
  p.update('presence/u1', record('u1', { phone: 2 }, 'web1:8080', S1));
  p.update('presence', status('web1:8080', true, S1));
  assert.equal(p.count('u1'), 2);
});

test('what is not presence is left aside', () => {
  const p = new PresenceTable('presence');
  p.update('presence', status('web1:8080', true, S1));
  for (const [topic, payload] of [
    ['presence/u1', 'not json'],
    ['presence/u1', '[1,2]'],
    ['presence/u1', '{"userId":"u1","connections":-1,"instance":"web1:8080","started":"' + S1 + '"}'],
    ['presence/u1', '{"userId":"u1","connections":1.5,"instance":"web1:8080","started":"' + S1 + '"}'],
    ['presence/u1', '{"userId":"u1","connections":1}'],
    ['presence/u1', '{"userId":"u1","online":false,"connections":1,"instance":"web1:8080","started":"' + S1 + '"}'],
    ['elsewhere/u1', record('u1', { a: 1 }, 'web1:8080', S1)],
    ['presenceX/u1', record('u1', { a: 1 }, 'web1:8080', S1)],
  ]) {
    p.update(topic, payload);
    assert.equal(p.count('u1'), 0, `${topic} ${payload}`);
  }
});

test('a user whose id is also an instance prefix: the payload says which is which', () => {
  const p = new PresenceTable('presence');
  p.update('presence', status('web1:8080', true, S1));
  p.update('presence/web2', record('web2', { a: 1 }, 'web1:8080', S1)); // user "web2" of instance web1
  p.update('presence/web2/u1', record('u1', { b: 1 }, 'web2:8080', S1)); // no status for web2 (it is a record)
  assert.equal(p.count('web2'), 1);
  assert.equal(p.count('u1'), 0);
});

test('a new session: what the broker no longer holds goes at the end of the sync', () => {
  const p = new PresenceTable('presence');
  p.update('presence', status('web1:8080', true, S1));
  p.update('presence/u1', record('u1', { a: 1 }, 'web1:8080', S1));
  p.update('presence/u2', record('u2', { a: 1 }, 'web1:8080', S1));
  p.beginSync();
  // meanwhile u1's record was cleared; the broker sends what it still holds
  p.update('presence', status('web1:8080', true, S1));
  p.update('presence/u2', record('u2', { a: 2 }, 'web1:8080', S1));
  assert.equal(p.count('u1'), 1); // last known until the sync ends
  p.endSync();
  assert.equal(p.count('u1'), 0);
  assert.equal(p.count('u2'), 2);
});
