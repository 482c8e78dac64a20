// demo.js: the focus-timer demo of mqtt-sse-bridge.
//
// Start a timer on one device; every other device of the same user shows it
// counting. Events (channel "timer"), published with POST /api/publish:
//   started {memoId, taskTitle, startedAt, plannedEndTime, mode, pomodoroState?, deviceName}
//   stopped {}
//   moved   {memoId, taskTitle, startedAt, plannedEndTime, mode, pomodoroState?, deviceName,
//            targetDeviceId}, sent with targetDeviceId: only that device gets it
//   updated {pomodoroState}: a Pomodoro phase change
// Channel "devices" lets the devices of a user find each other (for "Move to"):
//   hello {deviceName} on connecting (and after a resync), here {deviceName} in
//   reply to the device that said hello, bye {deviceName} when the page closes.
//   The device running a timer also answers a hello with a targeted timer:started,
//   so a device opened later shows the running timer.
//
// Who the user is comes from the URL fragment, which never reaches a server:
//   #token=<JWT>             auth jwt (the default): `token` for the stream,
//                            `Authorization: Bearer` for POST /api/publish
//   #userId=<id>             auth none (development)
//   &device=<id>&name=<n>    optional: the device id and name of this tab (two
//                            "devices" in one browser); else device.js's
// They are kept in this tab's sessionStorage; the token is then removed from
// the address bar.

import { sseClient } from './sse-client.js';
import { getDeviceId, getDeviceName, isValidDeviceId } from './device.js';

// ---- who we are ------------------------------------------------------------------

const memory = new Map();
const session = (() => {
  try {
    const s = window.sessionStorage;
    s.setItem('__probe__', '1');
    s.removeItem('__probe__');
    return s;
  } catch {
    return null;
  }
})();
const kept = {
  get: (k) => (session ? session.getItem('sse-demo-' + k) : memory.get(k) ?? null),
  set: (k, v) => (session ? session.setItem('sse-demo-' + k, v) : memory.set(k, v)),
  remove: (k) => (session ? session.removeItem('sse-demo-' + k) : memory.delete(k)),
};

function readFragment() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ''));
  if (params.has('token')) kept.remove('userId');
  if (params.has('userId')) kept.remove('token');
  for (const key of ['token', 'userId', 'device', 'name']) {
    const v = params.get(key);
    if (v) kept.set(key, v);
  }
  if (params.has('token')) {
    params.delete('token');
    const rest = params.toString();
    history.replaceState(null, '', location.pathname + location.search + (rest ? '#' + rest : ''));
  }
}
readFragment();

const getToken = () => kept.get('token') || null;
const authNoneUser = () => (getToken() ? null : kept.get('userId'));

function tokenClaims(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeURIComponent(
      Array.from(atob(part), (c) => '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join(''));
    return JSON.parse(json);
  } catch {
    return null;
  }
}

const deviceOverride = kept.get('device');
const me = {
  id: isValidDeviceId(deviceOverride) ? deviceOverride : getDeviceId(),
  name: kept.get('name') ||
    (isValidDeviceId(deviceOverride) ? deviceOverride.charAt(0).toUpperCase() + deviceOverride.slice(1)
      : getDeviceName()),
};

// ---- state -------------------------------------------------------------------------

const TIMER_KEY = 'timer:' + me.id;
const state = {
  timer: loadTimer(), // {memoId, taskTitle, startedAt, plannedEndTime, mode, pomodoroState?, ownerDeviceId, ownerName, movedFrom?}
  devices: new Map([[me.id, { name: me.name, online: true, self: true }]]),
  connection: { state: 'disconnected', detail: {} },
  lastStop: null,
};
const received = []; // every SSEEvent this page got, in order (for tests and curiosity)
const receivedAt = []; // Date.now() when each of them arrived (shown at once)
const sent = []; // every event this page published: {channel, type, payload, targetDeviceId, at, status}

function loadTimer() {
  try {
    const t = JSON.parse(kept.get(TIMER_KEY) || 'null');
    return t && typeof t.startedAt === 'string' ? t : null;
  } catch {
    return null;
  }
}

function setTimer(timer) {
  state.timer = timer;
  if (timer) kept.set(TIMER_KEY, JSON.stringify(timer));
  else kept.remove(TIMER_KEY);
  render();
}

const names = new Map([[me.id, me.name]]); // any device id seen -> its name

function deviceName(id) {
  return names.get(id) || id;
}

function learnName(id, name) {
  if (id && id !== me.id && typeof name === 'string' && name) {
    names.set(id, name);
    const d = state.devices.get(id);
    if (d) d.name = name;
  }
}

// Devices that run this page (they said hello, here or bye): the "Move to" choices.
function seeDevice(id, name, online = true) {
  if (!id || id === me.id) return;
  learnName(id, name);
  state.devices.set(id, { name: deviceName(id), online });
}

// ---- publishing ----------------------------------------------------------------------

async function publish(channel, type, payload, extra = {}, { keepalive = false } = {}) {
  const body = { channel, type, payload, deviceId: me.id, ...extra };
  const record = { channel, type, payload, targetDeviceId: extra.targetDeviceId, at: Date.now(), status: 'pending' };
  sent.push(record);
  const entry = logEntry('out', { channel, type, payload, targetDeviceId: extra.targetDeviceId });
  const headers = { 'Content-Type': 'application/json' };
  const token = getToken();
  if (token) headers.Authorization = 'Bearer ' + token;
  const user = authNoneUser();
  const url = '/api/publish' + (user ? '?userId=' + encodeURIComponent(user) : '');
  try {
    const r = await fetch(url, { method: 'POST', headers, body: JSON.stringify(body), keepalive,
      credentials: 'same-origin' });
    record.status = r.status;
    if (r.ok) {
      setResult(entry, String(r.status), false);
    } else {
      let why = r.statusText;
      try {
        why = (await r.json()).message || why;
      } catch { /* not JSON */ }
      record.error = why;
      setResult(entry, `${r.status} ${why}`, true);
    }
    return r.ok;
  } catch (err) {
    record.status = 0;
    record.error = String(err && err.message || err);
    setResult(entry, 'not sent: ' + record.error, true);
    return false;
  }
}

// ---- the timer -----------------------------------------------------------------------

const ROUNDS = 4;

function newMemoId() {
  const b = new Uint8Array(6);
  crypto.getRandomValues(b);
  return 'memo-' + Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

function timerPayload(t) {
  const p = {
    memoId: t.memoId,
    taskTitle: t.taskTitle,
    startedAt: t.startedAt,
    plannedEndTime: t.plannedEndTime,
    mode: t.mode,
  };
  if (t.pomodoroState) p.pomodoroState = t.pomodoroState;
  return p;
}

function fromPayload(p) {
  return {
    memoId: String(p.memoId ?? ''),
    taskTitle: String(p.taskTitle ?? 'Untitled'),
    startedAt: String(p.startedAt ?? new Date().toISOString()),
    plannedEndTime: p.plannedEndTime ? String(p.plannedEndTime) : null,
    mode: p.mode === 'pomodoro' ? 'pomodoro' : 'countdown',
    pomodoroState: p.pomodoroState && typeof p.pomodoroState === 'object' ? p.pomodoroState : undefined,
  };
}

function startTimer(taskTitle, mode, minutes) {
  const now = Date.now();
  const focus = minutes * 60;
  const brk = Math.max(12, Math.round(focus / 5));
  const t = {
    memoId: newMemoId(),
    taskTitle,
    startedAt: new Date(now).toISOString(),
    mode,
  };
  if (mode === 'pomodoro') {
    t.pomodoroState = {
      phase: 'focus', round: 1, rounds: ROUNDS, focusSeconds: focus, breakSeconds: brk,
      phaseStartedAt: t.startedAt, phaseEndsAt: new Date(now + focus * 1000).toISOString(),
    };
    t.plannedEndTime = new Date(now + (ROUNDS * focus + (ROUNDS - 1) * brk) * 1000).toISOString();
  } else {
    t.plannedEndTime = new Date(now + focus * 1000).toISOString();
  }
  setTimer({ ...t, ownerDeviceId: me.id, ownerName: me.name });
  publish('timer', 'started', { ...timerPayload(t), deviceName: me.name });
}

function stopTimer() {
  state.lastStop = { by: me.name, at: new Date().toISOString() };
  setTimer(null);
  publish('timer', 'stopped', {});
}

function nextPomodoroState(ps, now) {
  const at = (s) => new Date(now + s * 1000).toISOString();
  const started = new Date(now).toISOString();
  if (ps.phase === 'focus') {
    if (ps.round >= ps.rounds) return null; // the last round is done
    return { ...ps, phase: 'break', phaseStartedAt: started, phaseEndsAt: at(ps.breakSeconds) };
  }
  return { ...ps, phase: 'focus', round: ps.round + 1, phaseStartedAt: started, phaseEndsAt: at(ps.focusSeconds) };
}

function advancePhase() {
  const t = state.timer;
  if (!t || !t.pomodoroState) return;
  const next = nextPomodoroState(t.pomodoroState, Date.now());
  if (!next) {
    stopTimer();
    return;
  }
  setTimer({ ...t, pomodoroState: next });
  publish('timer', 'updated', { pomodoroState: next });
}

// Moves the timer to targetDeviceId. From the device that runs it, the event
// is targeted: only the new owner gets it. To this device, from one that does
// not run it ("pull it here"), it goes to every other device, the owner among
// them, which then stops driving it.
function moveTimer(targetDeviceId) {
  const t = state.timer;
  if (!t || !targetDeviceId || targetDeviceId === t.ownerDeviceId) return;
  const payload = { ...timerPayload(t), deviceName: me.name, targetDeviceId };
  if (targetDeviceId === me.id) {
    setTimer({ ...t, ownerDeviceId: me.id, ownerName: me.name,
      movedFrom: t.ownerName || deviceName(t.ownerDeviceId) });
    publish('timer', 'moved', payload);
    return;
  }
  setTimer({ ...t, ownerDeviceId: targetDeviceId, ownerName: deviceName(targetDeviceId), movedFrom: undefined });
  publish('timer', 'moved', payload, { targetDeviceId });
}

// The device running the timer finishes phases and the countdown.
let finishing = false;
function driveTimer() {
  const t = state.timer;
  if (!t || t.ownerDeviceId !== me.id || finishing) return;
  const now = Date.now();
  if (t.mode === 'pomodoro' && t.pomodoroState) {
    if (now >= Date.parse(t.pomodoroState.phaseEndsAt)) {
      finishing = true;
      try { advancePhase(); } finally { finishing = false; }
    }
  } else if (t.plannedEndTime && now >= Date.parse(t.plannedEndTime)) {
    finishing = true;
    try { stopTimer(); } finally { finishing = false; }
  }
}

// ---- events from other devices ----------------------------------------------------------

sseClient.on('timer', (event) => {
  const p = event.payload && typeof event.payload === 'object' ? event.payload : {};
  const from = event.sourceDeviceId;
  learnName(from, p.deviceName);
  switch (event.type) {
    case 'started':
      console.log(`[Focus] Remote timer started: ${p.taskTitle}`);
      setTimer({ ...fromPayload(p), ownerDeviceId: from || null, ownerName: p.deviceName || deviceName(from) });
      break;
    case 'stopped':
      console.log('[Focus] Remote timer stopped');
      state.lastStop = { by: from ? deviceName(from) : 'the server', at: event.timestamp };
      setTimer(null);
      break;
    case 'moved': {
      const target = event.targetDeviceId || p.targetDeviceId;
      console.log(`[Focus] Timer moved to ${target === me.id ? 'this device' : target}: ${p.taskTitle}`);
      setTimer({
        ...fromPayload(p),
        ownerDeviceId: target || null,
        ownerName: target === me.id ? me.name : deviceName(target),
        movedFrom: p.deviceName || deviceName(from),
      });
      break;
    }
    case 'updated':
      if (state.timer && p.pomodoroState && typeof p.pomodoroState === 'object') {
        console.log(`[Focus] Remote phase change: ${p.pomodoroState.phase} ${p.pomodoroState.round}`);
        setTimer({ ...state.timer, pomodoroState: p.pomodoroState });
      }
      break;
    default:
      break;
  }
});

sseClient.on('devices', (event) => {
  const p = event.payload && typeof event.payload === 'object' ? event.payload : {};
  const from = event.sourceDeviceId;
  if (!from) return;
  switch (event.type) {
    case 'hello':
      seeDevice(from, p.deviceName);
      publish('devices', 'here', { deviceName: me.name }, { targetDeviceId: from });
      if (state.timer && state.timer.ownerDeviceId === me.id) {
        publish('timer', 'started', { ...timerPayload(state.timer), deviceName: me.name },
          { targetDeviceId: from });
      }
      break;
    case 'here':
      seeDevice(from, p.deviceName);
      break;
    case 'bye':
      seeDevice(from, p.deviceName, false);
      break;
    default:
      break;
  }
  render();
});

sseClient.on('*', (event) => {
  received.push(event);
  receivedAt.push(Date.now());
  logEntry('in', event);
});

let greeted = false;
function hello() {
  greeted = true;
  publish('devices', 'hello', { deviceName: me.name });
}

// Why this page cannot connect at all ('' if it can): retrying would not help.
function cannotConnect() {
  const token = getToken();
  if (!token && !authNoneUser()) return 'no token';
  const claims = token ? tokenClaims(token) : null;
  if (claims && typeof claims.exp === 'number' && claims.exp * 1000 < Date.now()) return 'token expired';
  return '';
}

function connect() {
  const why = cannotConnect();
  if (why) {
    // No stream without credentials: say so once (the notice), show offline,
    // and leave the bridge alone instead of retrying into a 401 ten times.
    sseClient.disconnect();
    console.warn(`[Focus] Not connecting: ${why}`);
    state.connection = { state: 'failed', detail: { reason: why } };
    renderConnection();
    return;
  }
  sseClient.connect(me.id, {
    getToken,
    userId: authNoneUser() || undefined,
    onStateChange(s, detail) {
      state.connection = { state: s, detail };
      if (s === 'connected' && !greeted) hello();
      renderConnection();
    },
    // The bridge could not replay everything since our last event (it restarted,
    // or we were away too long): ask the other devices where things stand.
    onResync() {
      hello();
    },
  });
}

// Back online after the client gave up: try again.
window.addEventListener('online', () => {
  if (sseClient.state === 'failed' && !cannotConnect()) connect();
});

// The last tab of this device to close says bye (the others share its stream).
window.addEventListener('pagehide', () => {
  if (sseClient.isConnected() && sseClient.tabs <= 1) {
    publish('devices', 'bye', { deviceName: me.name }, {}, { keepalive: true });
  }
});

// ---- rendering -------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);
const RING = 2 * Math.PI * 52;

function fmt(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${String(m).padStart(2, '0')}:${sec}`;
}

function clockTime(iso) {
  const d = new Date(iso);
  return isNaN(d) ? '' : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });
}

function renderClock() {
  const t = state.timer;
  if (!t) return;
  const now = Date.now();
  const ps = t.mode === 'pomodoro' ? t.pomodoroState : null;
  const from = Date.parse(ps ? ps.phaseStartedAt : t.startedAt);
  const to = Date.parse(ps ? ps.phaseEndsAt : t.plannedEndTime);
  const left = Number.isFinite(to) ? to - now : NaN;
  $('remaining').textContent = Number.isFinite(left) ? fmt(left) : fmt(now - Date.parse(t.startedAt));
  const total = to - from;
  const frac = Number.isFinite(total) && total > 0 ? Math.min(1, Math.max(0, (now - from) / total)) : 0;
  $('ring').style.strokeDasharray = String(RING);
  $('ring').style.strokeDashoffset = String(RING * frac);
  $('elapsed').textContent = `${fmt(now - Date.parse(t.startedAt))} elapsed`;
}

function render() {
  const t = state.timer;
  $('start-form').hidden = !!t;
  $('running').hidden = !t;
  const running = $('running');
  if (t) {
    const ps = t.mode === 'pomodoro' ? t.pomodoroState : null;
    running.dataset.phase = ps ? ps.phase : 'countdown';
    running.dataset.owner = t.ownerDeviceId || '';
    running.dataset.memo = t.memoId;
    $('phase').textContent = ps ? `${ps.phase === 'break' ? 'Break' : 'Focus'} · ${ps.round}/${ps.rounds}` : 'Countdown';
    $('task-title').textContent = t.taskTitle;
    const where = $('where');
    where.textContent = '';
    const strong = document.createElement('strong');
    if (t.ownerDeviceId === me.id) {
      strong.textContent = 'this device';
      where.append('Running on ', strong, t.movedFrom ? ` (moved here from ${t.movedFrom})` : '');
    } else {
      strong.textContent = t.ownerName || deviceName(t.ownerDeviceId) || 'another device';
      where.append('Running on ', strong);
    }
    $('next-phase').hidden = !ps;
    const select = $('move-target');
    const keep = select.value;
    select.textContent = '';
    for (const [id, d] of state.devices) {
      if (id === t.ownerDeviceId) continue; // this device first (when it does not run it), then the others
      const o = document.createElement('option');
      o.value = id;
      o.textContent = id === me.id ? `This device (${me.name})` : `${d.name}${d.online ? '' : ' (offline)'}`;
      select.append(o);
    }
    if ([...select.options].some((o) => o.value === keep)) select.value = keep;
    $('move').disabled = select.options.length === 0;
    select.disabled = select.options.length === 0;
    renderClock();
  }
  renderDevices();
}

function renderDevices() {
  const ul = $('devices');
  ul.textContent = '';
  for (const [id, d] of state.devices) {
    const li = document.createElement('li');
    li.className = d.online ? 'online' : '';
    li.dataset.device = id;
    const dot = document.createElement('span');
    dot.className = 'dot';
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = d.name;
    li.append(dot, name);
    if (d.self) {
      const tag = document.createElement('span');
      tag.className = 'tag';
      tag.textContent = 'this device';
      li.append(tag);
    }
    if (state.timer && state.timer.ownerDeviceId === id) {
      const tag = document.createElement('span');
      tag.className = 'tag';
      tag.textContent = 'timer';
      li.append(tag);
    }
    const idEl = document.createElement('span');
    idEl.className = 'id';
    idEl.textContent = id.length > 14 ? id.slice(0, 12) + '…' : id;
    idEl.title = id;
    li.append(idEl);
    ul.append(li);
  }
}

function renderConnection() {
  const { state: s, detail } = state.connection;
  const pill = $('conn');
  pill.dataset.state = s;
  const text = {
    connecting: 'Connecting…',
    connected: 'Live',
    reconnecting: `Reconnecting in ${Math.round((detail.delay || 0) / 100) / 10}s (attempt ${detail.attempt}/${detail.maxAttempts})`,
    failed: 'Offline',
    disconnected: 'Not connected',
  }[s] || s;
  $('conn-text').textContent = text;
  pill.dataset.role = sseClient.role || '';
  pill.title = sseClient.role === 'follower' ? 'The stream is held by another tab of this browser, shared with this one'
    : sseClient.role === 'leader' ? 'This tab holds the stream, shared with the other tabs of this browser' : '';
  const blocked = !!detail.reason && /token/.test(detail.reason);
  $('reconnect').hidden = s !== 'failed' || blocked;
  $('start').disabled = blocked;
  renderNotice();
}

function renderNotice() {
  const n = $('notice');
  const token = getToken();
  const claims = token ? tokenClaims(token) : null;
  let msg = '';
  if (!token && !authNoneUser()) {
    msg = 'No token, so this page is offline: open the URL that scripts/run.sh printed ' +
      '(http://127.0.0.1:8080/#device=phone&token=…). With the bridge in auth none mode, use #userId=<user>.';
  } else if (claims && typeof claims.exp === 'number' && claims.exp * 1000 < Date.now()) {
    msg = 'Your token has expired, so this page is offline: get a fresh URL from the bridge\'s run script.';
  } else if (state.connection.state === 'failed') {
    msg = 'Gave up reconnecting. Is the bridge running? Use Reconnect to try again.';
  }
  n.hidden = !msg;
  n.textContent = msg;
}

const MAX_LOG = 200;
function summary(e) {
  const p = e.payload && typeof e.payload === 'object' ? e.payload : {};
  if (e.channel === 'timer') {
    switch (e.type) {
      case 'started': return `${p.taskTitle ?? ''} · ${p.mode ?? ''}${p.deviceName ? ' · on ' + p.deviceName : ''}`;
      case 'moved': return `${p.taskTitle ?? ''} → ${deviceName(e.targetDeviceId || p.targetDeviceId)}`;
      case 'updated': return p.pomodoroState ? `${p.pomodoroState.phase} · round ${p.pomodoroState.round}` : '';
      case 'stopped': return 'stopped';
      default: return JSON.stringify(e.payload);
    }
  }
  if (e.channel === 'system') return `${e.type}: ${p.reason ?? ''}`;
  if (e.channel === 'devices') return p.deviceName ?? '';
  return JSON.stringify(e.payload);
}

function logEntry(dir, e) {
  const ol = $('log');
  const li = document.createElement('li');
  li.className = 'fresh';
  li.dataset.dir = dir;
  li.dataset.channel = e.channel;
  li.dataset.type = e.type;
  if (e.sourceDeviceId) li.dataset.source = e.sourceDeviceId;
  if (e.targetDeviceId) li.dataset.target = e.targetDeviceId;
  const cells = [
    ['t', clockTime(dir === 'in' && e.timestamp ? e.timestamp : new Date().toISOString())],
    ['dir', dir === 'in' ? '↓' : '↑'],
    ['ev', `${e.channel}:${e.type}`],
    ['what', (dir === 'in' && e.sourceDeviceId ? `from ${deviceName(e.sourceDeviceId)} · ` : '') +
      (e.targetDeviceId ? `to ${e.targetDeviceId === me.id ? 'this device' : deviceName(e.targetDeviceId)} · ` : '') +
      summary(e)],
    ['res', dir === 'in' ? (e.id ? `#${e.id}` : '') : '…'],
  ];
  for (const [cls, text] of cells) {
    const span = document.createElement('span');
    span.className = cls;
    span.textContent = text;
    li.append(span);
  }
  ol.prepend(li);
  while (ol.children.length > MAX_LOG) ol.lastElementChild.remove();
  $('log-empty').hidden = true;
  return li;
}

function setResult(li, text, bad) {
  const res = li.querySelector('.res');
  res.textContent = text;
  res.classList.toggle('bad', bad);
}

// ---- wiring --------------------------------------------------------------------------------

$('start-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const title = $('task').value.trim();
  if (!title || cannotConnect()) return;
  startTimer(title, $('mode').value, Number($('minutes').value));
});
$('stop').addEventListener('click', stopTimer);
$('next-phase').addEventListener('click', advancePhase);
$('move').addEventListener('click', () => moveTimer($('move-target').value));
$('reconnect').addEventListener('click', connect);
$('clear-log').addEventListener('click', () => {
  $('log').textContent = '';
  $('log-empty').hidden = false;
});

{
  const token = getToken();
  const claims = token ? tokenClaims(token) : null;
  const user = claims && claims.sub ? claims.sub : authNoneUser();
  $('who').textContent = `User ${user || '?'} · device ${me.name} (${me.id})`;
  document.title = `${me.name} · Focus timer`;
}

render();
renderConnection();
connect();
setInterval(() => {
  driveTimer();
  renderClock();
}, 250);

// For tests and the curious: window.demo.state, .received, .sent, .client.
window.demo = { state, received, receivedAt, sent, me, client: sseClient };
