// away.js — this user's away flag (`away` frame): set and cleared from the
// sidebar (or /away and /back), and set by itself after AUTO_AWAY_MS
// without a key press, click or touch in this page (cleared again by the
// next one). A reconnect says it again: the server forgets it with the
// session.

import { app } from './state.js';

export const AUTO_AWAY_MS = 10 * 60_000;

app.away = { on: false, auto: false };
let idleTimer = null;

function send() {
  app.conn?.send({ type: 'away', away: app.away.on });
  app.ui?.renderAway(app.away.on);
}

/** Away or back by the user's choice. */
export function setAway(on) {
  app.away = { on, auto: false };
  send();
  idle();
}

export const toggleAway = () => setAway(!app.away.on);

/** After a (re)connect: the server knows nothing of it yet. */
export function resendAway() {
  if (app.away.on) send();
  else app.ui?.renderAway(false);
}

function idle() {
  clearTimeout(idleTimer);
  idleTimer = setTimeout(() => {
    if (app.away.on) return;
    app.away = { on: true, auto: true };
    send();
  }, AUTO_AWAY_MS);
}

function active() {
  if (app.away.on && app.away.auto) {
    app.away = { on: false, auto: false };
    send();
  }
  idle();
}

let last = 0;
export function bindAway() {
  for (const ev of ['keydown', 'pointerdown', 'touchstart', 'wheel']) {
    addEventListener(ev, () => {
      // At most once a second: a key press is many events.
      const now = Date.now();
      if (now - last < 1000 && !app.away.auto) return;
      last = now;
      active();
    }, { passive: true, capture: true });
  }
  document.addEventListener('visibilitychange', () => document.visibilityState === 'visible' && active());
  idle();
}
