// Presence as the bridges publish it (server/presence.c; README "Presence"),
// read back into connection counts. Pure: the hub feeds it every message
// under `<presencePrefix>/#` and asks it for counts.
//
// Each bridge instance with presence_prefix P keeps, retained:
//   P             its status  {"instance":"web1:8080","online":true,"started":S,...}
//                 (online false on a clean stop, and as its MQTT will on a crash)
//   P/<userId>    a record per connected user
//                 {"userId":"u1","online":true,"connections":3,"devices":{...},
//                  "instance":"web1:8080","started":S,"timestamp":...}
//                 cleared (an empty retained message) when the user's last connection goes.
// Several instances on one broker take their own P under one root
// (presence/web1, presence/web2), so under the root `presence` a status may
// sit at any depth: a message is a record when its JSON names a userId that is
// its topic's last level, and then its instance's status is the topic above.
// A record counts while that status says online with the record's instance
// and run (`started`); the records an instance left when it crashed, or of an
// earlier run, do not. Instances that share one P (not what the README
// advises: they overwrite each other's records) overwrite each other's status
// too: a record whose instance has no status there while another instance's
// does is counted (its instance may well run). The same rules as the Python
// library's (clients/python, presence.py).

/** @typedef {{ online: boolean, started: string | null, gen: number }} Status */
/** @typedef {{ userId: string, statusTopic: string, instance: string, started: string,
 *              connections: number, devices: Record<string, number>, gen: number }} UserRecord */

/** @param {unknown} v @returns {v is number} a count: a non-negative integer */
const isCount = (v) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

export class PresenceTable {
  /** @param {string} prefix the root every instance's presence_prefix is, or starts with */
  constructor(prefix) {
    this.prefix = prefix;
    /** @type {Map<string, Map<string, Status>>} the statuses seen on a topic, by instance */
    this.statuses = new Map();
    /** @type {Map<string, UserRecord>} record by topic */
    this.records = new Map();
    /** @type {Map<string, Set<string>>} the topics of each user's records */
    this.byUser = new Map();
    this.gen = 0;
  }

  /** The filter that gets every status and record under the root. */
  get filter() {
    return `${this.prefix}/#`;
  }

  /** Whether topic is the root or under it. */
  covers(/** @type {string} */ topic) {
    return topic === this.prefix || topic.startsWith(this.prefix + '/');
  }

  /**
   * Takes one message of the root: a status, a record, or an empty message
   * that clears the one its topic held. Anything else is left aside.
   * @param {string} topic @param {Uint8Array | string} payload
   */
  update(topic, payload) {
    if (!this.covers(topic)) return;
    const text = typeof payload === 'string' ? payload : Buffer.from(payload).toString('utf8');
    this.#forgetRecord(topic);
    if (text.length === 0) {
      this.statuses.delete(topic);
      return;
    }
    /** @type {unknown} */
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) return;
    const o = /** @type {Record<string, unknown>} */ (msg);
    const { instance, started } = o;
    if (typeof instance !== 'string') return;
    if (typeof o.userId === 'string') {
      const suffix = '/' + o.userId;
      const statusTopic = topic.slice(0, -suffix.length);
      const connections = o.connections;
      if (!topic.endsWith(suffix) || !this.covers(statusTopic) || typeof started !== 'string' ||
          !isCount(connections) || o.online === false) return;
      /** @type {Record<string, number>} */
      const devices = {};
      if (o.devices && typeof o.devices === 'object') {
        for (const [d, n] of Object.entries(o.devices)) if (isCount(n) && n > 0) devices[d] = n;
      }
      this.records.set(topic, { userId: o.userId, statusTopic, instance, started, connections, devices, gen: this.gen });
      let topics = this.byUser.get(o.userId);
      if (!topics) this.byUser.set(o.userId, (topics = new Set()));
      topics.add(topic);
    } else if (typeof o.online === 'boolean') {
      let seen = this.statuses.get(topic);
      if (!seen) this.statuses.set(topic, (seen = new Map()));
      seen.set(instance, { online: o.online, started: typeof started === 'string' ? started : null, gen: this.gen });
    }
  }

  /** Forgets the record topic held. */
  #forgetRecord(/** @type {string} */ topic) {
    const rec = this.records.get(topic);
    if (!rec) return;
    this.records.delete(topic);
    const topics = this.byUser.get(rec.userId);
    if (topics) {
      topics.delete(topic);
      if (topics.size === 0) this.byUser.delete(rec.userId);
    }
  }

  /** A new session begins: what it does not deliver again by the end of the sync is gone. */
  beginSync() {
    this.gen++;
  }

  /** The broker has delivered its retained messages again: forgets those it no longer holds. */
  endSync() {
    for (const [topic, seen] of this.statuses) {
      for (const [instance, s] of seen) if (s.gen < this.gen) seen.delete(instance);
      if (seen.size === 0) this.statuses.delete(topic);
    }
    for (const [topic, r] of this.records) if (r.gen < this.gen) this.#forgetRecord(topic);
  }

  /** Whether rec belongs to the current run of an instance that is online. */
  current(/** @type {UserRecord} */ rec) {
    const seen = this.statuses.get(rec.statusTopic);
    if (!seen || seen.size === 0) return false; // no instance announces itself there
    const s = seen.get(rec.instance);
    if (!s) return true; // a prefix shared with another instance, which wrote last
    return s.online && s.started === rec.started;
  }

  /** The user's current records, one per instance that holds connections of theirs. */
  recordsOf(/** @type {string} */ userId) {
    /** @type {UserRecord[]} */
    const out = [];
    for (const topic of this.byUser.get(userId) || []) {
      const rec = this.records.get(topic);
      if (rec && this.current(rec)) out.push(rec);
    }
    return out;
  }

  /** The user's connections per device over every current instance. */
  devices(/** @type {string} */ userId) {
    /** @type {Record<string, number>} */
    const out = {};
    for (const rec of this.recordsOf(userId)) {
      for (const [d, n] of Object.entries(rec.devices)) out[d] = (out[d] || 0) + n;
    }
    return out;
  }

  /** The user's SSE connections over every current instance. */
  count(/** @type {string} */ userId) {
    let n = 0;
    for (const rec of this.recordsOf(userId)) n += rec.connections;
    return n;
  }
}
