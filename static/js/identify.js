// identify.js — who the user is: a saved guest nick or session token,
// `?token=` from an embedding site, or the login form; opening the
// connection as that user (again after a refusal), and logging out.

import { Connection, wsUrl } from './conn.js';
import { showLogin, accountToken } from './login.js';
import { errorText } from './format.js';
import { load, save, forget } from './saved.js';
import { app } from './state.js';

const { params } = app;
const AUTH_KEY = `chat.auth.${app.mode}`;

// {nick, guestToken?} for a guest (guestToken: welcome's token, so that a
// reload or another tab is the same guest), {token, persist} for a token.
let auth = null;
// Where the connection's frames go: {welcome(frame, resumed), frame(frame)}.
let on = null;

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

/** Starts the page: connects as the given or saved user, else shows the login form. */
export function boot(handlers) {
  on = handlers;
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
    roomLabel: app.embedRoom || '',
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
  app.conn?.stop();
  const conn = new Connection(wsUrl(), () => {
    if (auth.token) return { token: auth.token };
    return auth.guestToken ? { token: auth.guestToken } : { nick: auth.nick };
  });
  app.conn = conn;
  conn.addEventListener('status', (e) => app.ui.setStatus(e.detail));
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
  conn.addEventListener('welcome', (e) => welcomed(e.detail.frame, e.detail.resumed));
  conn.addEventListener('frame', (e) => on.frame(e.detail));
  conn.start();
}

/** Keeps who the user is (a guest keeps welcome's token), then hands the welcome on. */
function welcomed(f, resumed) {
  if (!auth.token && f.token) auth.guestToken = f.token;
  saveAuth();
  on.welcome(f, resumed);
}

/**
 * A new session token for this user (a password change ended the old
 * ones): for HTTP calls, the next `hello`, and the next visit.
 */
export function newToken(token) {
  app.token = token;
  if (!auth?.token) return;
  auth.token = token;
  saveAuth();
}

export function logout() {
  app.conn?.stop();
  forgetAuth();
  location.href = location.pathname;
}
