// nav.js — opening a place named by a URL's parameters: `room=NAME`,
// `dm=NICK` or `everyone=1`, and `seq=N` for one message in it (a copied
// link, a click on a push notification, a search result). Also builds
// those links.

import { joinRoom } from './rooms.js';
import { openDM } from './dms.js';
import { jumpTo, select } from './pane.js';
import { validRoom, NICK_RE } from './format.js';
import { app } from './state.js';

/** Opens what `params` (URLSearchParams) name; true when it named something. */
export async function openTarget(params) {
  const { store } = app;
  const room = params.get('room');
  const dm = params.get('dm');
  const seq = Number(params.get('seq')) || 0;
  let c = null;
  if (room && validRoom(room)) {
    await joinRoom(room, true);
    c = store.room(room, false);
    if (!c?.joined) return false;
  } else if (dm && NICK_RE.test(dm) && !store.isMe(dm)) {
    openDM(dm);
    c = store.dm(dm);
  } else if (params.get('everyone')) {
    c = store.conv('everyone', 'everyone');
    select(c);
  } else {
    return false;
  }
  if (seq) await jumpTo(c, seq);
  return true;
}

/** A link to one message: this page with `room=`/`dm=` and `seq=`. */
export function linkTo(c, m) {
  const u = new URL(location.pathname, location.href);
  if (c.kind === 'room') u.searchParams.set('room', c.name);
  else if (c.kind === 'dm') u.searchParams.set('dm', c.name);
  else u.searchParams.set('everyone', '1');
  u.searchParams.set('seq', String(m.seq));
  return u.href;
}

/** Whether the page was opened on a place (handled once, after the first welcome). */
export function hasTarget(params) {
  return !!(params.get('dm') || params.get('seq') || params.get('everyone'));
}
