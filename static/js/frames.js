// frames.js — the server's frames, each to the view it changes: the
// welcome (first, or after a reconnect: resume every conversation), new
// and changed messages, history pages, profile changes (names and pictures
// everywhere, old messages too), and everything rooms.js, members.js,
// dms.js and typing.js handle.

import { errorText, validRoom } from './format.js';
import { fold } from './store.js';
import { select, viewing, markRead, redraw, checkGap, fillAfter, loadLatest, applyReaction } from './pane.js';
import { mentionsOf } from './richtext.js';
import { alertUser, announce } from './alerts.js';
import { joinRoom, onJoined, onLeft, onRoomStatus, onTopic, onDirectory } from './rooms.js';
import { onPresence, rewatch } from './members.js';
import { resendAway } from './away.js';
import { openTarget, hasTarget } from './nav.js';
import { savedDMs, rememberDM, watchPeers, onStatus, onRead } from './dms.js';
import { onTyping, stopShowingTyping } from './typing.js';
import { loadProfile, notifyWanted } from './profile.js';
import { app } from './state.js';

const { store, notifier, mode, embedRoom } = app;

export function onWelcome(f, resumed) {
  const { ui, conn } = app;
  store.me = f.user;
  store.learn(f.user);
  if (f.token) app.token = f.token;
  loadProfile();
  store.limits = f.limits || store.limits;
  ui.showApp();
  ui.renderMe(f.user, notifier.enabled);
  resendAway();
  if (!resumed) {
    if (mode === 'embed') {
      joinRoom(embedRoom, true);
    } else {
      for (const peer of savedDMs()) store.dm(peer);
      // Messages to everyone, unless the server says it does not allow them.
      if (f.limits?.allow_everyone !== false && f.server?.allow_everyone !== false) store.conv('everyone', 'everyone');
      watchPeers();
      if (hasTarget(app.params)) {
        app.firstRoom = null;
        openTarget(app.params);
      } else if (app.firstRoom && validRoom(app.firstRoom)) joinRoom(app.firstRoom, true);
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
  rewatch();
  if (mode === 'app') conn.send({ type: 'rooms' });
}

export function onFrame(f) {
  if (mode === 'embed' && !forWidget(f)) return;
  switch (f.type) {
    case 'joined': return onJoined(f);
    case 'left': return onLeft(f);
    case 'rooms': return onDirectory(f);
    case 'room_status': return onRoomStatus(f);
    case 'topic': return onTopic(f);
    case 'message': return onMessage(f);
    case 'ack': return f.message && onMessage(f.message);
    case 'history': return onHistory(f);
    case 'edited':
    case 'deleted': return onChanged(f);
    case 'read': return onRead(f);
    case 'typing': return onTyping(f);
    case 'presence': return onPresence(f);
    case 'status': return onStatus(f);
    case 'profile': return onProfile(f);
    case 'reaction': return onReaction(f);
    case 'notice':
      if (f.code === 'shutdown') app.ui.setStatus({ state: 'notice', text: 'The server is restarting…' });
      else app.ui.toast(f.message || 'Notice from the server.', 'info');
      return;
    case 'error':
      if (!f.id) app.ui.toast(errorText(f));
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
    const mentioned = c.kind === 'dm' || mentionsOf(m, store.me?.nick);
    if (!viewing(c)) {
      c.unread += 1;
      if (mentioned) c.mentions += 1;
    }
    const files = (m.attachments || []).map((a) => a.name).join(', ');
    const text = m.text || (files ? `📎 ${files}` : '');
    if (c === app.current) announce(`${store.displayName(m.from)}: ${text}`);
    if (!viewing(c) && notifyWanted(m, c)) {
      const where = c.kind === 'room' ? c.name : c.kind === 'dm' ? 'Direct message' : 'Everyone';
      alertUser(`${store.displayName(m.from)} · ${where}`, text, c.id, () => select(c));
    }
  }
  redraw(c);
  if (viewing(c)) markRead(c);
}

/**
 * Someone's display name, picture or status changed (one frame per shared
 * room, one without `room` for this user's own change): every message,
 * member list and DM title shows the new one at once.
 */
function onProfile(f) {
  if (!f.user?.nick || !store.learn(f.user)) return;
  if (store.isMe(f.user.nick)) app.ui.renderMe(store.me, notifier.enabled);
  redraw();
}

/** Someone reacted (or took a reaction back) on a message this client may hold. */
function onReaction(f) {
  if (!f.msg_id || typeof f.emoji !== 'string' || !f.nick) return;
  const c = store.convOf(f.room ? f : { with: f.with, everyone: f.everyone });
  const m = c?.byId.get(f.msg_id);
  if (!m) return;
  applyReaction(m, f.emoji, f.nick, f.on !== false);
  if (c === app.current) app.list.refresh(m);
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
  if (c === app.current) app.list.refresh(m);
}
