// The hub of a backend: the in-app SSE hub's calls (broadcast, sendToDevice,
// getConnectionCount, isUserConnected) on an MQTT connection to the broker the
// bridges read. Events go out at QoS 1 to <topicPrefix>/<userId>/<channel>;
// counts come from the presence records the bridges keep retained.

import { connect } from 'mqtt';

import { HubError, isValidEventId, isValidPrefix, prepareEvent, show, DEVICE_RULE } from './event.js';
import { PresenceTable } from './presence.js';

/** @typedef {import('../../types/server/index.js').HubOptions} HubOptions */
/**
 * @template [T=unknown]
 * @typedef {import('../../types/server/index.js').OutgoingEvent<T>} OutgoingEvent
 */

/** @type {{ topicPrefix: string, presencePrefix: string | null, connectTimeout: number,
 *             publishTimeout: number, maxEventBytes: number }} */
const DEFAULTS = {
  topicPrefix: 'sync',
  presencePrefix: 'presence',
  connectTimeout: 5000,
  publishTimeout: 10000,
  maxEventBytes: 65536,
};

/** Return codes of a CONNACK after which trying again helps (the broker is busy or away). */
const TRANSIENT_CONNACK = new Set([3, 0x88, 0x89, 0x97, 0x9f]);

/**
 * Checks the options and fills in the defaults; throws a HubError naming the bad one.
 * @param {HubOptions} options
 */
function settle(options) {
  /** @param {string} message @returns {never} */
  const bad = (message) => {
    throw new HubError('invalid_options', `connectHub: ${message}`);
  };
  if (!options || typeof options !== 'object') bad(`options must be an object with at least url; got ${show(options)}`);
  const o = /** @type {Record<string, unknown>} */ (/** @type {unknown} */ (options));
  /** @param {keyof typeof DEFAULTS} key */
  const pick = (key) => (o[key] === undefined ? DEFAULTS[key] : o[key]);
  const { url, username, password, clientId, mqtt } = o;
  if (typeof url !== 'string' || url === '') {
    bad(`url must be the broker's URL, such as 'mqtt://127.0.0.1:1883' (mqtts://, ws://, wss:// too); got ${show(url)}`);
  }
  const topicPrefix = pick('topicPrefix');
  if (!isValidPrefix(topicPrefix)) {
    bad(`topicPrefix must be the bridges' topic_prefix (default 'sync'): a topic without wildcards, empty levels ` +
      `or a leading or trailing '/'; got ${show(topicPrefix)}`);
  }
  const presence = pick('presencePrefix');
  if (presence !== null && presence !== '' && !isValidPrefix(presence)) {
    bad(`presencePrefix must be the bridges' presence_prefix, or the level above theirs when each has its own ` +
      `(presence for presence/web1 and presence/web2), or '' for no presence; got ${show(presence)}`);
  }
  /** @param {'connectTimeout' | 'publishTimeout' | 'maxEventBytes'} key */
  const positive = (key) => {
    const v = pick(key);
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) bad(`${key} must be a positive number; got ${show(v)}`);
    return v;
  };
  /** @param {string} key @param {unknown} v */
  const optionalString = (key, v) => {
    if (v !== undefined && typeof v !== 'string') bad(`${key} must be a string; got ${show(v)}`);
    return v;
  };
  if (mqtt !== undefined && (mqtt === null || typeof mqtt !== 'object')) {
    bad(`mqtt must be an object of mqtt.js client options; got ${show(mqtt)}`);
  }
  return {
    url,
    topicPrefix,
    presencePrefix: typeof presence === 'string' && presence !== '' ? presence : null,
    connectTimeout: positive('connectTimeout'),
    publishTimeout: positive('publishTimeout'),
    maxEventBytes: positive('maxEventBytes'),
    username: optionalString('username', username),
    password: optionalString('password', password),
    clientId: optionalString('clientId', clientId),
    mqtt: /** @type {import('mqtt').IClientOptions} */ (mqtt || {}),
  };
}

/** @typedef {ReturnType<typeof settle>} Settings */

/** A short text of an error, for messages. */
const why = (/** @type {unknown} */ err) =>
  err instanceof Error ? err.message || err.name : err === undefined ? 'no answer' : String(err);

/** The hub that connectHub() resolves with. */
export class Hub {
  /** @type {Settings} */
  #s;
  /** @type {import('mqtt').MqttClient} */
  #client;
  /** @type {PresenceTable | null} */
  #presence;
  /** @type {unknown} the last error of the connection, for messages */
  #lastError = undefined;
  /** @type {Set<{ resolve: () => void, reject: (err: Error) => void }>} calls waiting for a connection */
  #waiting = new Set();
  /** @type {Set<Promise<void>>} publishes not yet settled */
  #inflight = new Set();
  /** @type {Promise<void> | null} */
  #closing = null;
  /** @type {{ resolve: () => void, reject: (err: Error) => void } | null} connectHub's, until ready */
  #start = null;

  /** @param {Settings} s */
  constructor(s) {
    this.#s = s;
    this.#presence = s.presencePrefix ? new PresenceTable(s.presencePrefix) : null;
    /** @type {import('mqtt').IClientOptions} */
    const opts = {
      reconnectPeriod: 1000,
      connectTimeout: s.connectTimeout,
      reconnectOnConnackError: true,
      ...s.mqtt,
      resubscribe: false, // the hub subscribes on every connection itself, to know when presence is whole
    };
    if (s.clientId !== undefined) opts.clientId = s.clientId;
    if (s.username !== undefined) opts.username = s.username;
    if (s.password !== undefined) opts.password = s.password;
    this.#client = connect(s.url, opts);
    this.#client.on('error', (err) => this.#onError(err));
    this.#client.on('connect', () => this.#onConnect());
    this.#client.on('message', (topic, payload) => this.#presence?.update(topic, payload));
  }

  /** Resolves once connected and presence is read; rejects within connectTimeout otherwise. */
  ready() {
    return /** @type {Promise<void>} */ (new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#start = null;
        reject(this.#client.connected && this.#presence
          ? new HubError('not_connected', `connectHub: connected to ${this.#s.url}, but the retained presence ` +
            `under ${this.#presence.filter} did not come within ${this.#s.connectTimeout} ms: raise ` +
            "connectTimeout, or set presencePrefix '' for no presence")
          : this.#notConnected('connectHub'));
      }, this.#s.connectTimeout);
      this.#start = {
        resolve: () => { clearTimeout(timer); this.#start = null; resolve(); },
        reject: (err) => { clearTimeout(timer); this.#start = null; reject(err); },
      };
    }));
  }

  /** @param {Error & { code?: unknown }} err */
  #onError(err) {
    this.#lastError = err;
    // a broker that refuses this client (credentials, client id) will not change its mind at once
    if (this.#start && typeof err.code === 'number' && !TRANSIENT_CONNACK.has(err.code)) {
      this.#start.reject(new HubError('refused', `connectHub: the broker at ${this.#s.url} refused the connection ` +
        `(${why(err)}): check username, password and clientId, and the broker's ACL`, { cause: err }));
    }
  }

  #onConnect() {
    this.#lastError = undefined;
    for (const w of this.#waiting) w.resolve();
    this.#waiting.clear();
    const presence = this.#presence;
    if (!presence) {
      this.#start?.resolve();
      return;
    }
    // a clean session: the broker sends every retained record again, and
    // what it does not send is gone
    presence.beginSync();
    const client = this.#client;
    let refused = false;
    // QoS 0: the broker sends the retained messages at once, right after the
    // SUBACK (at QoS 1, those beyond its in-flight window would queue behind
    // what follows)
    client.subscribe(presence.filter, { qos: 0 }, (err, granted) => {
      const denied = !err && (granted || []).some((g) => g.qos >= 0x80);
      if (!err && !denied) return;
      refused = true;
      const cause = err || new Error(`the broker granted ${presence.filter} no QoS`);
      this.#lastError = cause;
      this.#start?.reject(new HubError('refused', `connectHub: the broker refused the subscription to ` +
        `${presence.filter} (${why(cause)}): let this client read the presence topics (the broker's ACL), ` +
        "or set presencePrefix ''", { cause }));
    });
    // A barrier: the answer to the next request follows those retained
    // messages (unsubscribing a filter never subscribed changes nothing).
    client.unsubscribe(`${presence.prefix}/.mqtt-sse-bridge-sync`, () => {
      if (refused || !client.connected) return;
      presence.endSync();
      this.#start?.resolve();
    });
  }

  /** @param {string} what @returns {HubError} */
  #notConnected(what) {
    const last = this.#lastError === undefined ? '' : ` (${why(this.#lastError)})`;
    return new HubError('not_connected', `${what}: not connected to the MQTT broker at ${this.#s.url} within ` +
      `${this.#s.connectTimeout} ms${last}: is the broker running and reachable, and are url, username and ` +
      `password right?${what === 'connectHub' ? '' : '; nothing was published'}`);
  }

  /** Resolves when the client is connected; rejects after connectTimeout, or when the hub closes. */
  #connected(/** @type {string} */ what) {
    if (this.#closing) return Promise.reject(this.#closed(what));
    if (this.#client.connected) return Promise.resolve();
    return /** @type {Promise<void>} */ (new Promise((resolve, reject) => {
      /** @type {{ resolve: () => void, reject: (err: Error) => void }} */
      const w = {
        resolve: () => { clearTimeout(timer); resolve(); },
        reject: (err) => { clearTimeout(timer); reject(err); },
      };
      const timer = setTimeout(() => {
        this.#waiting.delete(w);
        reject(this.#notConnected(what));
      }, this.#s.connectTimeout);
      this.#waiting.add(w);
    }));
  }

  #closed(/** @type {string} */ what) {
    return new HubError('closed', `${what}: the hub is closed (hub.close() was called); nothing was published`);
  }

  /**
   * Publishes json on topic at QoS 1, not retained; resolves on the broker's
   * PUBACK. close() waits for the calls made before it.
   * @param {string} what @param {string} topic @param {string} json
   * @returns {Promise<void>}
   */
  #send(what, topic, json) {
    if (this.#closing) return Promise.reject(this.#closed(what));
    const p = this.#publish(what, topic, json);
    this.#inflight.add(p);
    const forget = () => { this.#inflight.delete(p); };
    p.then(forget, forget);
    return p;
  }

  /** @param {string} what @param {string} topic @param {string} json */
  async #publish(what, topic, json) {
    await this.#connected(what);
    const client = this.#client;
    const { publishTimeout } = this.#s;
    /** @type {Promise<void>} */
    const p = new Promise((resolve, reject) => {
      let settled = false;
      /** @param {Error | undefined | null} [err] */
      const done = (err) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (!err) resolve();
        else if (this.#closing && /disconnecting/.test(err.message)) reject(this.#closed(what));
        else {
          reject(new HubError('refused', `${what}: the broker did not take the event on ${topic} (${why(err)}): ` +
            'may this client publish there (the broker\'s ACL)?', { cause: err }));
        }
      };
      const timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        // withdraw it, or mqtt.js would send it again on the next connection
        const outgoing = client.outgoing || {};
        const id = Object.keys(outgoing).find((k) => outgoing[Number(k)].cb === done);
        if (id !== undefined && !client.disconnected) {
          try {
            client.removeOutgoingMessage(Number(id));
          } catch { /* the client is ending: nothing will send it again */ }
        }
        reject(new HubError('timeout', `${what}: the broker did not acknowledge the event on ${topic} within ` +
          `${publishTimeout} ms (publishTimeout${client.connected ? '' : '; the connection was lost'}): ` +
          'it may or may not have been delivered; check the broker, or raise publishTimeout'));
      }, publishTimeout);
      client.publish(topic, json, { qos: 1, retain: false }, done);
    });
    return p;
  }

  /**
   * Sends event to every SSE connection of userId, except those of the
   * device left out: excludeDeviceId when given (it goes on the wire as the
   * event's excludeDeviceId), else the event's sourceDeviceId. The event goes
   * without any targetDeviceId (to all devices: sendToDevice targets one).
   * Resolves when the broker has it.
   * @template T
   * @param {string} userId @param {OutgoingEvent<T>} event @param {string | null} [excludeDeviceId]
   * @returns {Promise<void>}
   */
  async broadcast(userId, event, excludeDeviceId) {
    const what = 'broadcast';
    if (excludeDeviceId !== undefined && excludeDeviceId !== null && !isValidEventId(excludeDeviceId)) {
      throw new HubError('invalid_event', `${what}: excludeDeviceId must be ${DEVICE_RULE}, or left out; got ` +
        `${show(excludeDeviceId)}; nothing was published`);
    }
    const { topic, json } = prepareEvent(this.#context(what), userId, event, (wire) => {
      delete wire.targetDeviceId; // to all of the user's devices
      if (excludeDeviceId !== undefined && excludeDeviceId !== null) wire.excludeDeviceId = excludeDeviceId;
    });
    return this.#send(what, topic, json);
  }

  /**
   * Sends event to the SSE connections of one device of userId only (the
   * event's targetDeviceId), whatever its source. Resolves when the broker has it.
   * @template T
   * @param {string} userId @param {string} deviceId @param {OutgoingEvent<T>} event
   * @returns {Promise<void>}
   */
  async sendToDevice(userId, deviceId, event) {
    const what = 'sendToDevice';
    if (!isValidEventId(deviceId)) {
      throw new HubError('invalid_event', `${what}: deviceId must be ${DEVICE_RULE}; got ${show(deviceId)}; ` +
        'nothing was published');
    }
    const { topic, json } = prepareEvent(this.#context(what), userId, event, (wire) => {
      wire.targetDeviceId = deviceId;
      delete wire.excludeDeviceId;
    });
    return this.#send(what, topic, json);
  }

  #context(/** @type {string} */ what) {
    return { what, topicPrefix: this.#s.topicPrefix, maxEventBytes: this.#s.maxEventBytes };
  }

  #table(/** @type {string} */ what) {
    if (!this.#presence) {
      throw new HubError('presence_off', `${what}: presence is off (presencePrefix ''): set presencePrefix to ` +
        "the bridges' presence_prefix (or the level above theirs), and presence_prefix on the bridges");
    }
    return this.#presence;
  }

  /**
   * The user's open SSE connections over every bridge instance that is
   * online, from the retained presence records. Synchronous.
   * @param {string} userId @returns {number}
   */
  getConnectionCount(userId) {
    return this.#table('getConnectionCount').count(userId);
  }

  /**
   * Whether the user has an open SSE connection on any bridge instance that
   * is online. Synchronous.
   * @param {string} userId @returns {boolean}
   */
  isUserConnected(userId) {
    return this.#table('isUserConnected').count(userId) > 0;
  }

  /**
   * The user's open SSE connections per device id, over every bridge
   * instance that is online ({} when none). Synchronous.
   * @param {string} userId @returns {Record<string, number>}
   */
  getDevices(userId) {
    return this.#table('getDevices').devices(userId);
  }

  /** Whether the MQTT connection is up now (it comes back by itself after a loss). */
  get connected() {
    return this.#client.connected && !this.#closing;
  }

  /**
   * Waits for the events on their way (each settles within publishTimeout),
   * refuses new ones, and disconnects. Idempotent.
   * @returns {Promise<void>}
   */
  close() {
    if (this.#closing) return this.#closing;
    for (const w of this.#waiting) w.reject(this.#closed('broadcast/sendToDevice'));
    this.#waiting.clear();
    this.#start?.reject(this.#closed('connectHub'));
    const client = this.#client;
    this.#closing = (async () => {
      await Promise.allSettled([...this.#inflight]);
      // anything still outgoing (a subscription the broker never answered) would hold end() forever
      const force = Object.keys(client.outgoing || {}).length > 0;
      await /** @type {Promise<void>} */ (new Promise((resolve) => client.end(force, () => resolve())));
    })();
    return this.#closing;
  }
}

/**
 * Connects to the broker the bridges read, and reads the retained presence
 * of every bridge instance under presencePrefix. Resolves with the hub once
 * both are done; rejects (and leaves nothing running) when that takes longer
 * than connectTimeout, the broker refuses the client, or an option is wrong.
 * @param {HubOptions} options
 * @returns {Promise<Hub>}
 */
export async function connectHub(options) {
  const hub = new Hub(settle(options));
  try {
    await hub.ready();
  } catch (err) {
    await hub.close();
    throw err;
  }
  return hub;
}
