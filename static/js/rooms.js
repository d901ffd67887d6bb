// rooms.js — the rooms in the sidebar: joining (and rejoining after a
// reconnect), leaving, the topic, the room directory, and the server's
// frames about them.

import { errorText } from './format.js';
import { fold } from './store.js';
import { select, redraw, checkGap, fillAfter } from './pane.js';
import { setMembers } from './members.js';
import { app } from './state.js';

const { store, mode } = app;

/** Joins `name`; `show`: the user asked for it, so it is shown once joined. */
export async function joinRoom(name, show) {
  const c = store.room(name, false);
  if (show && c?.joined) return select(c);
  if (show) app.firstRoom = name;
  const frame = { type: 'join', room: name };
  if (c?.joined && c.loaded) frame.since = c.max;
  else frame.history = 50;
  const r = await app.conn.request(frame);
  if (r.type === 'error') {
    if (show) app.firstRoom = null;
    if (!app.current) select(null);
    if (r.code !== 'lost' && r.code !== 'offline') app.ui.toast(`Could not join ${name}: ${errorText(r)}`);
    return;
  }
  if (mode === 'app') app.conn.send({ type: 'rooms' });
}

export async function leaveRoom(c) {
  const r = await app.conn.request({ type: 'leave', room: c.name });
  if (r.type === 'error') app.ui.toast(errorText(r));
}

export async function setTopic(c, text) {
  const r = await app.conn.request({ type: 'topic', room: c.name, topic: text });
  if (r.type === 'error') app.ui.toast(errorText(r));
}

export function onJoined(f) {
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
  const { current, firstRoom } = app;
  const wanted = firstRoom && fold(firstRoom) === fold(f.room);
  if (current !== c && (!current || wanted || mode === 'embed')) select(c);
  if (wanted) app.firstRoom = null;
  redraw(c);
}

export function onLeft(f) {
  const c = store.room(f.room, false);
  if (!c) return;
  c.joined = false;
  c.members.clear();
  if (f.reason === 'kicked') app.ui.toast(`You were removed from ${c.name}${f.by ? ` by ${store.displayName(f.by)}` : ''}.`);
  else if (f.reason === 'destroyed') app.ui.toast(`The room ${c.name} was closed.`);
  if (mode === 'embed') {
    c.addEvent(f.reason === 'kicked' ? 'You were removed from this room.' : 'You are no longer in this room.');
    return redraw(c);
  }
  store.convs.delete(c.id);
  if (app.current === c) select(store.rooms()[0] || store.dms()[0] || null);
  app.conn.send({ type: 'rooms' });
  redraw();
}

export function onRoomStatus(f) {
  const c = store.room(f.room, false);
  if (!c) return;
  setMembers(c, f.members);
  c.topic = f.topic;
  return redraw(c);
}

export function onTopic(f) {
  const c = store.room(f.room, false);
  if (!c) return;
  c.topic = f.topic;
  c.addEvent(f.topic ? `${store.displayName(f.by)} set the topic: ${f.topic}` : `${store.displayName(f.by)} cleared the topic`);
  return redraw(c);
}

/** The `rooms` reply: the directory of rooms one may join. */
export function onDirectory(f) {
  store.directory = f.rooms || [];
  return app.ui.renderDirectory();
}
