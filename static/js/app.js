// app.js — the entry point and controller: picks how to identify (saved
// guest nick or session token, `?token=` from an embedding site, or the
// login form), turns server frames into store changes and redraws, and
// turns user actions into frames. Both pages use it: the full client
// (`/`, body data-mode="app") and the one-room widget (`/embed`, "embed").

import { Connection, wsUrl } from './conn.js';
import { Store, fold } from './store.js';
import { UI } from './ui.js';
import { MessageList } from './messages.js';
import { showLogin, accountToken } from './login.js';
import { Notifier } from './notify.js';
import { errorText, validRoom } from './format.js';
import { load, save, forget } from './saved.js';

const mode = document.body.dataset.mode === 'embed' ? 'embed' : 'app';
const params = new URLSearchParams(location.search);
const embedRoom = mode === 'embed' ? (params.get('room') || 'lobby').trim() : null;
const AUTH_KEY = `chat.auth.${mode}`;
const TYPING_EVERY = 3000;
const TYPING_IDLE = 5000;

const store = new Store();
const notifier = new Notifier();
let conn = null;
// {nick, guestToken?} for a guest (guestToken: welcome's token, so that a
// reload or another tab is the same guest), {token, persist} for a token.
let auth = null;
let current = null;
let typingSent = 0;
let typingConv = null;
let typingIdle = null;
let firstRoom = params.get('room');

const ui = new UI(store, mode, {
  select: (id) => select(store.get(id)),
  join: (name) => joinRoom(name, true),
  leave: (c) => leaveRoom(c),
  openDM: (nick) => openDM(nick),
  setTopic: (c, text) => setTopic(c, text),
  send: (text) => send(text),
  typing: (text) => typing(text),
  editLast: () => list.editLast(),
  logout: () => logout(),
  toggleNotifications: async () => {
    const problem = await notifier.toggle();
    if (problem) ui.toast(problem);
    ui.renderNotify(notifier.enabled);
  },
  browse: () => conn?.send({ type: 'rooms' }),
  retry: () => conn?.retryNow(),
});

const list = new MessageList(store, {
  loadOlder: (c) => loadOlder(c),
  edit: (m, text) => editMessage(m, text),
  remove: (m) => deleteMessage(m),
  canDelete: (m) => store.isMe(m.from) || !!store.me?.admin,
  onBottom: (c) => markRead(c),
});

// ---- identifying ----------------------------------------------------------

function savedAuth() {
  const a = load(AUTH_KEY, true) || load(AUTH_KEY);
  return a && (a.nick || a.token) ? a : null;
}

function saveAuth() {
  // Site tokens are short-lived and belong to this tab; the rest persists.
  save(AUTH_KEY, auth, !auth.persist);
}

function forgetAuth() {
  forget(AUTH_KEY);
}

function boot() {
  const token = params.get('token');
  if (token) {
    auth = { token, persist: false };
    params.delete('token');
    const rest = params.toString();
    history.replaceState(null, '', location.pathname + (rest ? `?${rest}` : '') + location.hash);
  } else {
    auth = savedAuth();
  }
  if (auth) connect();
  else login();
}

function login(error = '') {
  showLogin({
    error,
    nick: auth?.nick || '',
    roomLabel: embedRoom || '',
    onGuest: async (nick) => {
      auth = { nick, persist: true };
      connect();
      return null;
    },
    onAccount: async (nick, password, create) => {
      const r = await accountToken(nick, password, create);
      if (r.error) return r.error;
      auth = { token: r.token, persist: true };
      connect();
      return null;
    },
  });
}

function connect() {
  conn?.stop();
  conn = new Connection(wsUrl(), () => {
    if (auth.token) return { token: auth.token };
    return auth.guestToken ? { token: auth.guestToken } : { nick: auth.nick };
  });
  conn.addEventListener('status', (e) => ui.setStatus(e.detail));
  conn.addEventListener('refused', (e) => {
    const f = e.detail;
    if (auth?.guestToken && (f.code === 'unauthorized' || f.code === 'nick_taken')) {
      // The guest was gone too long: it comes back as a new guest of the same nick.
      delete auth.guestToken;
      saveAuth();
      connect();
      return;
    }
    if (f.code === 'unauthorized' || f.code === 'nick_taken' || f.code === 'invalid') forgetAuth();
    const expired = f.code === 'unauthorized' && auth?.token && !auth.persist;
    login(expired ? 'Your sign-in from the site has expired. Reload the page to get a new one.' : errorText(f));
  });
  conn.addEventListener('welcome', (e) => onWelcome(e.detail.frame, e.detail.resumed));
  conn.addEventListener('frame', (e) => onFrame(e.detail));
  conn.start();
}

function logout() {
  conn?.stop();
  forgetAuth();
  location.href = location.pathname;
}

// ---- frames from the server ---------------------------------------------

function onWelcome(f, resumed) {
  if (!auth.token && f.token) auth.guestToken = f.token;
  store.me = f.user;
  store.learn(f.user);
  store.limits = f.limits || store.limits;
  saveAuth();
  ui.showApp();
  ui.renderMe(f.user, notifier.enabled);
  if (!resumed) {
    if (mode === 'embed') {
      joinRoom(embedRoom, true);
    } else {
      for (const peer of savedDMs()) store.dm(peer);
      watchPeers();
      if (firstRoom && validRoom(firstRoom)) joinRoom(firstRoom, true);
      else if (!f.rooms?.length) select(null);
      conn.send({ type: 'rooms' });
    }
    redraw();
    return;
  }
  // Resume: every room again from the last message held (`since`), every
  // direct message from its last seq (`history … after`). The merge
  // drops anything already held, so nothing shows twice.
  for (const c of store.convs.values()) {
    if (c.kind === 'room' && c.joined) joinRoom(c.name, false);
    else if (c.kind !== 'room' && c.loaded) fillAfter(c, c.max);
  }
  watchPeers();
  if (mode === 'app') conn.send({ type: 'rooms' });
}

function onFrame(f) {
  if (mode === 'embed' && !forWidget(f)) return;
  switch (f.type) {
    case 'joined': return onJoined(f);
    case 'left': return onLeft(f);
    case 'rooms':
      store.directory = f.rooms || [];
      return ui.renderDirectory();
    case 'room_status': {
      const c = store.room(f.room, false);
      if (!c) return;
      setMembers(c, f.members);
      c.topic = f.topic;
      return redraw(c);
    }
    case 'topic': {
      const c = store.room(f.room, false);
      if (!c) return;
      c.topic = f.topic;
      c.addEvent(f.topic ? `${store.displayName(f.by)} set the topic: ${f.topic}` : `${store.displayName(f.by)} cleared the topic`);
      return redraw(c);
    }
    case 'message': return onMessage(f);
    case 'ack': return f.message && onMessage(f.message);
    case 'history': return onHistory(f);
    case 'edited':
    case 'deleted': return onChanged(f);
    case 'read': return onRead(f);
    case 'typing': return onTyping(f);
    case 'presence': return onPresence(f);
    case 'status': {
      const c = store.dm(f.nick, false);
      if (!c) return;
      c.status = { online: f.online, away: f.away, last_seen: f.last_seen };
      return redraw(c);
    }
    case 'notice':
      if (f.code === 'shutdown') ui.setStatus({ state: 'notice', text: 'The server is restarting…' });
      else ui.toast(f.message || 'Notice from the server.', 'info');
      return;
    case 'error':
      if (!f.id) ui.toast(errorText(f));
      return;
    default:
  }
}

/** The widget shows its one room: frames about other rooms and DMs are dropped. */
function forWidget(f) {
  if (f.room) return fold(f.room) === fold(embedRoom);
  if (f.type === 'ack' && f.message) return !!f.message.room && fold(f.message.room) === fold(embedRoom);
  return !(f.to || f.with || f.everyone || f.type === 'typing' || f.type === 'status' || f.type === 'message');
}

function onJoined(f) {
  const c = store.room(f.room);
  c.name = f.room;
  c.joined = true;
  c.topic = f.topic || '';
  setMembers(c, f.members);
  c.merge(f.history);
  c.loaded = true;
  // `seq` is the room's latest: a capped `since` page leaves a stretch to fetch.
  if (c.max < f.seq) fillAfter(c, c.max);
  else checkGap(c);
  const wanted = firstRoom && fold(firstRoom) === fold(f.room);
  if (current !== c && (!current || wanted || mode === 'embed')) select(c);
  if (wanted) firstRoom = null;
  redraw(c);
}

function onLeft(f) {
  const c = store.room(f.room, false);
  if (!c) return;
  c.joined = false;
  c.members.clear();
  if (f.reason === 'kicked') ui.toast(`You were removed from ${c.name}${f.by ? ` by ${store.displayName(f.by)}` : ''}.`);
  else if (f.reason === 'destroyed') ui.toast(`The room ${c.name} was closed.`);
  if (mode === 'embed') {
    c.addEvent(f.reason === 'kicked' ? 'You were removed from this room.' : 'You are no longer in this room.');
    return redraw(c);
  }
  store.convs.delete(c.id);
  if (current === c) select(store.rooms()[0] || store.dms()[0] || null);
  conn.send({ type: 'rooms' });
  redraw();
}

function setMembers(c, members) {
  c.members = new Map();
  for (const m of members || []) {
    c.members.set(fold(m.nick), m);
    store.learn(m);
  }
}

function onMessage(m) {
  const c = store.convOf(m);
  if (!c) return;
  const wasLoaded = c.loaded;
  const added = c.merge([m]);
  if (!added.length) return;
  stopShowingTyping(c, m.from);
  if (c.kind === 'dm') {
    rememberDM(c.name);
    if (!wasLoaded) loadLatest(c);
    else checkGap(c);
  } else {
    checkGap(c);
  }
  if (!store.isMe(m.from)) {
    if (!viewing(c)) c.unread += 1;
    if (document.visibilityState !== 'visible') {
      const where = c.kind === 'room' ? c.name : c.kind === 'dm' ? 'Direct message' : 'Everyone';
      notifier.show(`${store.displayName(m.from)} · ${where}`, m.text, c.id, () => select(c));
    }
  }
  redraw(c);
  if (viewing(c)) markRead(c);
}

function onHistory(f) {
  const c = store.convOf(f);
  if (!c) return;
  c.merge(f.messages);
  c.loaded = true;
  checkGap(c);
  redraw(c);
}

function onChanged(f) {
  const c = store.convOf(f);
  const m = c?.byId.get(f.msg_id);
  if (!m) return;
  if (f.type === 'edited') Object.assign(m, { text: f.text, edited_at: f.edited_at });
  else Object.assign(m, { text: '', deleted: true });
  if (c === current) list.refresh(m);
}

function onRead(f) {
  if (!f.with) return;
  const c = store.dm(f.with, false);
  if (!c) return;
  if (store.isMe(f.nick)) {
    // Read in another of this user's sessions.
    c.unread = 0;
    c.sentRead = Math.max(c.sentRead, f.seq);
  } else {
    c.peerRead = Math.max(c.peerRead, f.seq);
  }
  redraw(c);
}

function onTyping(f) {
  const c = store.convOf(f);
  if (!c || store.isMe(f.nick)) return;
  const k = fold(f.nick);
  clearTimeout(c.typing.get(k)?.timer);
  if (f.active) {
    const timer = setTimeout(() => stopShowingTyping(c, f.nick), 6000);
    c.typing.set(k, { nick: f.nick, at: Date.now(), timer });
  } else {
    c.typing.delete(k);
  }
  if (c === current) ui.renderTyping();
}

function stopShowingTyping(c, nick) {
  const k = fold(nick);
  if (!c.typing.has(k)) return;
  clearTimeout(c.typing.get(k).timer);
  c.typing.delete(k);
  if (c === current) ui.renderTyping();
}

const whoTimers = new Map();

function onPresence(f) {
  const c = store.room(f.room, false);
  if (!c) return;
  const name = store.displayName(f.nick);
  if (f.event === 'join') {
    c.members.set(fold(f.nick), { nick: f.nick, display_name: name, away: false });
    c.addEvent(`${name} joined`);
    // The presence frame names the nick only: ask for the display names.
    clearTimeout(whoTimers.get(c.id));
    whoTimers.set(c.id, setTimeout(() => conn.send({ type: 'who', room: c.name }), 250));
  } else {
    c.members.delete(fold(f.nick));
    stopShowingTyping(c, f.nick);
    c.addEvent(f.event === 'quit' ? `${name} went offline` : `${name} left`);
  }
  redraw(c);
}

// ---- keeping conversations whole ------------------------------------------

const placeOf = (c) => (c.kind === 'room' ? { room: c.name } : c.kind === 'dm' ? { with: c.name } : { everyone: true });

/** A hole between the held messages (a live message jumped ahead): fill it. */
function checkGap(c) {
  if (!c.loaded || c.filling) return;
  const gap = c.firstGap();
  if (gap !== null) fillAfter(c, gap);
}

/** Pages `history … after` until the server says nothing newer is left. */
async function fillAfter(c, after) {
  if (c.filling) return;
  c.filling = true;
  try {
    for (let guard = 0; guard < 100; guard++) {
      const r = await conn.request({ type: 'history', ...placeOf(c), after, limit: 200 });
      if (r.type !== 'history') {
        if (r.code !== 'lost' && r.code !== 'offline') ui.toast(`Could not load missed messages: ${errorText(r)}`);
        break;
      }
      if (!r.more || !r.messages.length) break;
      after = r.messages[r.messages.length - 1].seq;
    }
  } finally {
    c.filling = false;
  }
  checkGap(c);
}

/** The latest page of a conversation not loaded yet (a DM opened or written to). */
async function loadLatest(c) {
  if (c.loading) return;
  c.loading = true;
  const r = await conn.request({ type: 'history', ...placeOf(c), limit: 50 });
  c.loading = false;
  if (r.type === 'error' && r.code !== 'lost' && r.code !== 'offline') {
    // Nothing to show yet (a conversation never used): an empty one.
    c.loaded = true;
    redraw(c);
  }
}

async function loadOlder(c) {
  if (!c.hasOlder || c.loadingOlder) return;
  c.loadingOlder = true;
  const r = await conn.request({ type: 'history', ...placeOf(c), before: c.min, limit: 50 });
  c.loadingOlder = false;
  if (r.type === 'history' && !r.messages.length) {
    c.olderDone = true;
    redraw(c);
  } else if (r.type === 'error' && r.code !== 'lost' && r.code !== 'offline') {
    ui.toast(errorText(r));
  }
}

// ---- user actions ---------------------------------------------------------

function select(c) {
  if (!c) {
    current = null;
    ui.current = null;
    list.show(null);
    ui.renderEmpty();
    ui.renderSidebar();
    return;
  }
  const input = document.getElementById('input');
  if (current !== c) {
    stopTyping();
    // Each conversation keeps its own unsent text.
    if (current) current.draft = input.value;
    input.value = c.draft || '';
    ui.autosize();
  }
  current = c;
  ui.current = c;
  c.unread = 0;
  if (c.kind === 'dm' && !c.loaded) loadLatest(c);
  document.body.classList.remove('sidebar-open');
  ui.syncScrim();
  list.show(c);
  ui.renderHeader();
  ui.renderMembers();
  ui.renderTyping();
  ui.renderSidebar();
  markRead(c);
  ui.focusComposer();
}

/** This conversation is on screen in a visible tab. */
function viewing(c) {
  return c === current && document.visibilityState === 'visible';
}

/** Clears the unread count; in a DM, tells the peer how far this user read. */
function markRead(c) {
  if (!c || !viewing(c)) return;
  if (c.unread) {
    c.unread = 0;
    ui.renderSidebar();
  }
  if (c.kind !== 'dm' || !conn?.online) return;
  const last = c.lastFromOthers(store.me.nick);
  if (last && last.seq > c.sentRead) {
    c.sentRead = c.max;
    conn.send({ type: 'read', with: c.name, seq: c.max });
  }
}

document.addEventListener('visibilitychange', () => {
  if (current && viewing(current)) markRead(current);
});

async function joinRoom(name, show) {
  const c = store.room(name, false);
  if (show && c?.joined) return select(c);
  if (show) firstRoom = name;
  const frame = { type: 'join', room: name };
  if (c?.joined && c.loaded) frame.since = c.max;
  else frame.history = 50;
  const r = await conn.request(frame);
  if (r.type === 'error') {
    if (show) firstRoom = null;
    if (!current) select(null);
    if (r.code !== 'lost' && r.code !== 'offline') ui.toast(`Could not join ${name}: ${errorText(r)}`);
    return;
  }
  if (mode === 'app') conn.send({ type: 'rooms' });
}

async function leaveRoom(c) {
  const r = await conn.request({ type: 'leave', room: c.name });
  if (r.type === 'error') ui.toast(errorText(r));
}

function openDM(nick) {
  if (store.isMe(nick)) return;
  const c = store.dm(nick);
  rememberDM(nick);
  select(c);
  if (!ui.wide.matches) ui.toggleMembers(false);
}

async function setTopic(c, text) {
  const r = await conn.request({ type: 'topic', room: c.name, topic: text });
  if (r.type === 'error') ui.toast(errorText(r));
}

async function send(raw) {
  const c = current;
  if (!c) return;
  const text = raw.trim();
  if (mode === 'app' && text.startsWith('/') && command(text)) return;
  typingSent = 0;
  clearTimeout(typingIdle);
  const target = c.kind === 'room' ? { room: c.name } : c.kind === 'dm' ? { to: c.name } : { everyone: true };
  const r = await conn.request({ type: 'say', ...target, text });
  if (r.type === 'error') {
    ui.toast(errorText(r), 'error', `say:${r.code}`);
    // Give the text back, unless the user has typed something else since.
    const input = document.getElementById('input');
    if (r.code === 'lost') return;
    if (current !== c) c.draft ||= raw;
    else if (!input.value) {
      input.value = raw;
      ui.autosize();
    }
  }
}

/** Slash commands: /join ROOM, /leave, /topic TEXT, /msg NICK TEXT. */
function command(text) {
  const [cmd, ...rest] = text.split(/\s+/);
  const arg = text.slice(cmd.length).trim();
  switch (cmd.toLowerCase()) {
    case '/join':
      if (validRoom(arg)) joinRoom(arg, true);
      else ui.toast('Usage: /join ROOM');
      return true;
    case '/leave':
      if (current?.kind === 'room') leaveRoom(current);
      return true;
    case '/topic':
      if (current?.kind === 'room') setTopic(current, arg);
      return true;
    case '/msg':
      if (rest.length >= 2) {
        openDM(rest[0]);
        conn.request({ type: 'say', to: rest[0], text: arg.slice(rest[0].length).trim() })
          .then((r) => r.type === 'error' && ui.toast(errorText(r)));
      } else ui.toast('Usage: /msg NICK TEXT');
      return true;
    case '/help':
      ui.toast('Commands: /join ROOM, /leave, /topic TEXT, /msg NICK TEXT. Enter sends, Shift+Enter starts a new line, ↑ edits your last message, Alt+↑/↓ switches conversations.', 'info');
      return true;
    default:
      return false;
  }
}

/** `typing` at most every 3 s while the user types; `active:false` after 5 s idle. */
function typing(text) {
  const c = current;
  if (!c || c.kind === 'everyone' || !conn?.online) return;
  if (!text.trim()) return stopTyping();
  const now = Date.now();
  if (now - typingSent > TYPING_EVERY || typingConv !== c) {
    typingSent = now;
    typingConv = c;
    conn.send({ type: 'typing', ...(c.kind === 'room' ? { room: c.name } : { to: c.name }), active: true });
  }
  clearTimeout(typingIdle);
  typingIdle = setTimeout(stopTyping, TYPING_IDLE);
}

function stopTyping() {
  clearTimeout(typingIdle);
  if (typingSent && typingConv && conn?.online) {
    const c = typingConv;
    conn.send({ type: 'typing', ...(c.kind === 'room' ? { room: c.name } : { to: c.name }), active: false });
  }
  typingSent = 0;
}

async function editMessage(m, text) {
  const r = await conn.request({ type: 'edit', msg_id: m.msg_id, text });
  if (r.type === 'error') {
    ui.toast(errorText(r));
    return false;
  }
  Object.assign(m, { text, edited_at: Date.now() });
  return true;
}

async function deleteMessage(m) {
  if (!confirm('Delete this message? Everyone will see that it was deleted.')) return;
  const r = await conn.request({ type: 'delete', msg_id: m.msg_id });
  if (r.type === 'error') return ui.toast(errorText(r));
  Object.assign(m, { text: '', deleted: true });
  list.refresh(m);
}

// ---- direct-message list, kept per user in this browser --------------------

const dmKey = () => `chat.dms.${fold(store.me?.nick || '')}`;

function savedDMs() {
  const peers = load(dmKey());
  return Array.isArray(peers) ? peers.filter((n) => typeof n === 'string') : [];
}

function rememberDM(nick) {
  if (mode === 'embed') return;
  const peers = savedDMs();
  if (!peers.some((p) => fold(p) === fold(nick))) {
    peers.push(nick);
    save(dmKey(), peers.slice(-100));
    conn.send({ type: 'watch', nicks: [nick] });
  }
}

function watchPeers() {
  const nicks = store.dms().filter((c) => c.kind === 'dm').map((c) => c.name);
  if (nicks.length) conn.send({ type: 'watch', nicks });
}

// ---- drawing ----------------------------------------------------------------

/** Redraws what depends on `c` (or everything), and the sidebar. */
function redraw(c = null) {
  if (current && (!c || c === current)) {
    list.show(current);
    ui.renderHeader();
    ui.renderMembers();
  }
  ui.renderSidebar();
}

setInterval(() => {
  if (mode === 'app' && conn?.online && document.visibilityState === 'visible') conn.send({ type: 'rooms' });
}, 30_000);

boot();
