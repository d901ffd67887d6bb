// card.js — a person's card, opened by a click on a member, a message's
// author or a mention: picture, display name, nick, online / away / last
// seen (a `watch` brings it and keeps it current), status line, and (in the
// full client) "Send a message", which opens the DM. Esc or ✕ closes it
// and the focus goes back where it was.

import { h, $ } from './dom.js';
import { ago } from './format.js';
import { fold } from './store.js';
import { avatarEl } from './messages.js';
import { openDM } from './dms.js';
import { watchNicks } from './members.js';
import { call } from './profile.js';
import { redraw } from './pane.js';
import { app } from './state.js';

let shown = null; // the nick on the card
let returnTo = null;

export function openCard(nick, anchor) {
  const dialog = $('person-card');
  if (!dialog || !nick || nick === 'server') return;
  shown = nick;
  returnTo = anchor || document.activeElement;
  watchNicks([nick]);
  draw();
  fresh(nick);
  if (!dialog.open) dialog.showModal();
  ($('card-dm') && !$('card-dm').hidden ? $('card-dm') : $('card-close')).focus();
}

/** The person's stored profile (status line, picture), fetched as the card opens. */
async function fresh(nick) {
  if (!app.token) return;
  const r = await call('GET', `api/users/${encodeURIComponent(nick)}`);
  if (r.ok && r.body?.nick && fold(r.body.nick) === fold(nick)) {
    if (app.store.learn(r.body)) redraw();
    refreshCard(nick);
  }
}

/** Redraws the card when what it shows changed (a `status` or `profile` frame). */
export function refreshCard(nick) {
  if (shown && (!nick || fold(nick) === fold(shown)) && $('person-card')?.open) draw();
}

function draw() {
  const { store } = app;
  const nick = shown;
  const el = avatarEl(store, nick, 'big');
  el.id = 'card-avatar';
  $('card-avatar').replaceWith(el);
  $('card-name').textContent = store.displayName(nick);
  const me = store.isMe(nick);
  $('card-nick').textContent = me ? `@${nick} · you` : `@${nick}`;
  $('card-status').textContent = store.status(nick);
  $('card-status').hidden = !store.status(nick);
  const p = presenceOf(nick);
  const line = $('card-presence');
  line.replaceChildren(h('span', { class: `dot ${p.state}`, attrs: { 'aria-hidden': 'true' } }), ` ${p.text}`);
  const dm = $('card-dm');
  if (dm) dm.hidden = me;
}

/** {state: online|away|offline|unknown, text} for someone. */
export function presenceOf(nick) {
  const { store } = app;
  const s = store.presence.get(fold(nick));
  if (store.isMe(nick)) return app.away?.on ? { state: 'away', text: 'Away' } : { state: 'online', text: 'Online' };
  if (!s) {
    // Not heard yet: a member of an open room is online.
    for (const c of store.convs.values()) {
      const m = c.members.get(fold(nick));
      if (m) return m.away ? { state: 'away', text: 'Away' } : { state: 'online', text: 'Online' };
    }
    return { state: 'unknown', text: '…' };
  }
  if (s.online) return s.away ? { state: 'away', text: 'Away' } : { state: 'online', text: 'Online' };
  return { state: 'offline', text: s.last_seen ? `Last seen ${ago(s.last_seen)}` : 'Offline' };
}

export function bindCard() {
  const dialog = $('person-card');
  if (!dialog) return;
  $('card-close').addEventListener('click', () => dialog.close());
  dialog.addEventListener('click', (e) => { if (e.target === dialog) dialog.close(); });
  dialog.addEventListener('close', () => {
    shown = null;
    // The member list may have been redrawn meanwhile (a status changed): the same member's new button.
    let back = returnTo;
    if (back && !back.isConnected && back.dataset?.nick) back = document.querySelector(`#member-list [data-nick="${CSS.escape(back.dataset.nick)}"]`);
    back?.focus();
  });
  $('card-dm')?.addEventListener('click', () => {
    const nick = shown;
    returnTo = null;
    dialog.close();
    openDM(nick);
    $('input')?.focus();
  });
}
