// dms.js — direct messages: opening one from the member list, the list of
// peers kept per user in this browser, their online status, and read
// receipts.

import { fold } from './store.js';
import { load, save } from './saved.js';
import { select, redraw } from './pane.js';
import { onMemberStatus } from './members.js';
import { refreshCard } from './card.js';
import { app } from './state.js';

const { store, mode } = app;

export function openDM(nick) {
  if (store.isMe(nick)) return;
  const c = store.dm(nick);
  rememberDM(nick);
  select(c);
  if (!app.ui.wide.matches) app.ui.toggleMembers(false);
}

const dmKey = () => `chat.dms.${fold(store.me?.nick || '')}`;

export function savedDMs() {
  const peers = load(dmKey());
  return Array.isArray(peers) ? peers.filter((n) => typeof n === 'string') : [];
}

export function rememberDM(nick) {
  if (mode === 'embed') return;
  const peers = savedDMs();
  if (!peers.some((p) => fold(p) === fold(nick))) {
    peers.push(nick);
    save(dmKey(), peers.slice(-100));
    app.conn.send({ type: 'watch', nicks: [nick] });
  }
}

/** Asks for the online status of every DM peer. */
export function watchPeers() {
  const nicks = store.dms().filter((c) => c.kind === 'dm').map((c) => c.name);
  if (nicks.length) app.conn.send({ type: 'watch', nicks });
}

/** Someone's online status (`watch`): a DM peer, a room member, the card. */
export function onStatus(f) {
  if (!f.nick) return;
  const inRooms = onMemberStatus(f);
  refreshCard(f.nick);
  const c = store.dm(f.nick, false);
  if (c) c.status = { online: f.online, away: f.away, last_seen: f.last_seen };
  if (c || inRooms) redraw(inRooms ? null : c);
}

export function onRead(f) {
  if (f.room) {
    // Read receipts in rooms: who has seen up to where.
    const c = store.room(f.room, false);
    if (!c || !f.nick || typeof f.seq !== 'number') return;
    if (store.isMe(f.nick)) {
      c.unread = 0;
      c.mentions = 0;
      c.sentRead = Math.max(c.sentRead, f.seq);
    } else {
      const key = fold(f.nick);
      c.readers.set(key, { nick: f.nick, seq: Math.max(f.seq, c.readers.get(key)?.seq || 0) });
    }
    return redraw(c);
  }
  if (!f.with) return;
  const c = store.dm(f.with, false);
  if (!c) return;
  if (store.isMe(f.nick)) {
    // Read in another of this user's sessions.
    c.unread = 0;
    c.mentions = 0;
    c.sentRead = Math.max(c.sentRead, f.seq);
  } else {
    c.peerRead = Math.max(c.peerRead, f.seq);
  }
  redraw(c);
}
