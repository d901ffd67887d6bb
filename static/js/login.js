// login.js — the way in: a guest nick, or an account (sign in or create
// one through /api/login and /api/register, which return a session token
// for `hello`). The embed page only asks for a guest nick.

import { $ } from './dom.js';
import { NICK_RE } from './format.js';

let bound = false;
let tab = 'guest';

/**
 * Shows the form. `onGuest(nick)` and `onAccount(nick, password, create)`
 * return a Promise of an error sentence, or null when it worked.
 */
export function showLogin({ error = '', nick = '', roomLabel = '', onGuest, onAccount }) {
  $('app').hidden = true;
  $('login').hidden = false;
  if (roomLabel && $('login-room')) $('login-room').textContent = roomLabel;
  $('login-error').textContent = error;
  if (nick) $('login-nick').value = nick;
  if (!bound) bind(onGuest, onAccount);
  if (document.body.dataset.mode !== 'embed') $('login-nick').focus();
}

function setTab(name) {
  tab = name;
  $('tab-guest').setAttribute('aria-selected', String(name === 'guest'));
  $('tab-account').setAttribute('aria-selected', String(name === 'account'));
  $('password-row').hidden = name !== 'account';
  $('register').hidden = name !== 'account';
  $('login-submit').textContent = name === 'account' ? 'Sign in' : 'Enter as guest';
  $('login-error').textContent = '';
}

function bind(onGuest, onAccount) {
  bound = true;
  const form = $('login-form');
  if ($('tab-guest')) {
    $('tab-guest').addEventListener('click', () => setTab('guest'));
    $('tab-account').addEventListener('click', () => setTab('account'));
    // Arrow keys move between the two tabs.
    for (const t of [$('tab-guest'), $('tab-account')]) {
      t.addEventListener('keydown', (e) => {
        if (e.key !== 'ArrowLeft' && e.key !== 'ArrowRight') return;
        const next = tab === 'guest' ? 'account' : 'guest';
        setTab(next);
        $(`tab-${next}`).focus();
      });
    }
    $('register').addEventListener('click', () => submit(true));
  }
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    submit(false);
  });

  async function submit(create) {
    const nick = $('login-nick').value.trim();
    const err = $('login-error');
    if (!NICK_RE.test(nick)) {
      err.textContent = 'A nick is 1 to 32 letters, digits, _ - . and may not start with a digit or a dash.';
      $('login-nick').focus();
      return;
    }
    const busy = [...form.querySelectorAll('button')];
    busy.forEach((b) => { b.disabled = true; });
    err.textContent = '';
    try {
      const problem = tab === 'account'
        ? await onAccount(nick, $('login-password').value, create)
        : await onGuest(nick);
      if (problem) err.textContent = problem;
    } finally {
      busy.forEach((b) => { b.disabled = false; });
    }
  }
}

/** POST /api/login or /api/register: {token, user} or an error sentence. */
export async function accountToken(nick, password, create) {
  let res;
  try {
    res = await fetch(create ? 'api/register' : 'api/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ nick, password }),
    });
  } catch {
    return { error: 'The server cannot be reached. Check your connection.' };
  }
  const body = await res.json().catch(() => ({}));
  if (res.ok && body.token) return { token: body.token };
  const code = body?.error?.code;
  if (code === 'unauthorized') return { error: 'Wrong nick or password.' };
  if (code === 'nick_taken') return { error: 'That nick is registered already. Sign in instead.' };
  if (code === 'rate_limited') return { error: 'Too many attempts. Wait a minute and try again.' };
  return { error: body?.error?.message ? `Could not sign in: ${body.error.message}` : `Could not sign in (HTTP ${res.status}).` };
}
