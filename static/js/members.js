// members.js — who is in a room (the member panel): the member lists the
// server sends, joins, leaves and quits as they happen, and who is away:
// the members of a room are watched (`watch`), so a `status` frame turns
// their dot to away and back in every list, and the card shows last seen.

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
  watchNicks(c.memberList().map((m) => m.nick));
}

// Nicks this session watches (the server keeps at most 1,000 a session).
const watched = new Set();

/** Asks for the status of nicks not watched yet (again after a reconnect: `rewatch`). */
export function watchNicks(nicks) {
  const fresh = nicks.filter((n) => !store.isMe(n) && !watched.has(fold(n)) && watched.size < 1000);
  if (!fresh.length || !app.conn?.online) return;
  for (const n of fresh) watched.add(fold(n));
  app.conn.send({ type: 'watch', nicks: fresh });
}

/** A new connection watches nothing: everyone again. */
export function rewatch() {
  const nicks = [...watched];
  watched.clear();
  if (nicks.length) watchNicks(nicks);
}

/** A `status` frame: someone's online / away / last seen, wherever it shows. */
export function onMemberStatus(f) {
  const key = fold(f.nick);
  store.presence.set(key, { online: !!f.online, away: !!f.away, last_seen: f.last_seen ?? null });
  let changed = false;
  for (const c of store.convs.values()) {
    const m = c.members.get(key);
    if (m && m.away !== !!f.away) {
      m.away = !!f.away;
      changed = true;
    }
  }
  return changed;
}

export function onPresence(f) {
  const c = store.room(f.room, false);
  if (!c) return;
  const name = store.displayName(f.nick);
  if (f.event === 'join') {
    c.members.set(fold(f.nick), { nick: f.nick, display_name: name, avatar: store.avatar(f.nick), away: false });
    watchNicks([f.nick]);
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
