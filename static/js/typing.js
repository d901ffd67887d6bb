// typing.js — "… is typing" both ways: the `typing` frames this user's
// composer sends while they type, and the indications shown for others.

import { fold } from './store.js';
import { app } from './state.js';

const TYPING_EVERY = 3000;
const TYPING_IDLE = 5000;
const TYPING_SHOWN = 6000;

let typingSent = 0;
let typingConv = null;
let typingIdle = null;

/** `typing` at most every 3 s while the user types; `active:false` after 5 s idle. */
export function typing(text) {
  const { current: c, conn } = app;
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

export function stopTyping() {
  clearTimeout(typingIdle);
  if (typingSent && typingConv && app.conn?.online) {
    const c = typingConv;
    app.conn.send({ type: 'typing', ...(c.kind === 'room' ? { room: c.name } : { to: c.name }), active: false });
  }
  typingSent = 0;
}

/** The message went out: it ends the typing (the server tells the others). */
export function typingSentMessage() {
  typingSent = 0;
  clearTimeout(typingIdle);
}

/** A `typing` frame from someone else. */
export function onTyping(f) {
  const { store } = app;
  const c = store.convOf(f);
  if (!c || store.isMe(f.nick)) return;
  const k = fold(f.nick);
  clearTimeout(c.typing.get(k)?.timer);
  if (f.active) {
    const timer = setTimeout(() => stopShowingTyping(c, f.nick), TYPING_SHOWN);
    c.typing.set(k, { nick: f.nick, at: Date.now(), timer });
  } else {
    c.typing.delete(k);
  }
  if (c === app.current) app.ui.renderTyping();
}

export function stopShowingTyping(c, nick) {
  const k = fold(nick);
  if (!c.typing.has(k)) return;
  clearTimeout(c.typing.get(k).timer);
  c.typing.delete(k);
  if (c === app.current) app.ui.renderTyping();
}
