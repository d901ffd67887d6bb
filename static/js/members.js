// members.js — who is in a room (the member panel): the member lists the
// server sends, and joins, leaves and quits as they happen.

import { fold } from './store.js';
import { redraw } from './pane.js';
import { stopShowingTyping } from './typing.js';
import { app } from './state.js';

const { store } = app;
// Per room: the pending `who` after someone joined.
const whoTimers = new Map();

export function setMembers(c, members) {
  c.members = new Map();
  for (const m of members || []) {
    c.members.set(fold(m.nick), m);
    store.learn(m);
  }
}

export function onPresence(f) {
  const c = store.room(f.room, false);
  if (!c) return;
  const name = store.displayName(f.nick);
  if (f.event === 'join') {
    c.members.set(fold(f.nick), { nick: f.nick, display_name: name, avatar: store.avatar(f.nick), away: false });
    c.addEvent(`${name} joined`);
    // The presence frame names the nick only: ask for the display names.
    clearTimeout(whoTimers.get(c.id));
    whoTimers.set(c.id, setTimeout(() => app.conn.send({ type: 'who', room: c.name }), 250));
  } else {
    c.members.delete(fold(f.nick));
    stopShowingTyping(c, f.nick);
    c.addEvent(f.event === 'quit' ? `${name} went offline` : `${name} left`);
  }
  redraw(c);
}
