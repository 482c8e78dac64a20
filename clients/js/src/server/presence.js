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
// earlier run, do not.

/** @typedef {{ instance: string, online: boolean, started: string, gen: number }} Status */
/** @typedef {{ userId: string, statusTopic: string, instance: string, started: string,
 *              connections: number, devices: Record<string, number>, gen: number }} UserRecord */

export class PresenceTable {
  /** @param {string} prefix the root every instance's presence_prefix is, or starts with */
  constructor(prefix) {
    this.prefix = prefix;
    /** @type {Map<string, Status>} status by topic */
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
    this.#forget(topic);
    if (text.length === 0) return;
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
    if (typeof instance !== 'string' || typeof started !== 'string') return;
    if (typeof o.userId === 'string') {
      const suffix = '/' + o.userId;
      const statusTopic = topic.slice(0, -suffix.length);
      const connections = o.connections;
      if (!topic.endsWith(suffix) || !this.covers(statusTopic) ||
          typeof connections !== 'number' || !Number.isSafeInteger(connections) || connections < 0) return;
      /** @type {Record<string, number>} */
      const devices = {};
      if (o.devices && typeof o.devices === 'object') {
        for (const [d, n] of Object.entries(o.devices)) if (typeof n === 'number') devices[d] = n;
      }
      this.records.set(topic, { userId: o.userId, statusTopic, instance, started, connections, devices, gen: this.gen });
      let topics = this.byUser.get(o.userId);
      if (!topics) this.byUser.set(o.userId, (topics = new Set()));
      topics.add(topic);
    } else if (typeof o.online === 'boolean') {
      this.statuses.set(topic, { instance, online: o.online, started, gen: this.gen });
    }
  }

  /** Forgets what topic held (one retained message: a status or a record). */
  #forget(/** @type {string} */ topic) {
    this.statuses.delete(topic);
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
    for (const [topic, s] of this.statuses) if (s.gen < this.gen) this.statuses.delete(topic);
    for (const [topic, r] of this.records) if (r.gen < this.gen) this.#forget(topic);
  }

  /** Whether rec belongs to the current run of an instance that is online. */
  current(/** @type {UserRecord} */ rec) {
    const s = this.statuses.get(rec.statusTopic);
    return !!s && s.online && s.instance === rec.instance && s.started === rec.started;
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

  /** The user's SSE connections over every current instance. */
  count(/** @type {string} */ userId) {
    let n = 0;
    for (const rec of this.recordsOf(userId)) n += rec.connections;
    return n;
  }
}
