// profile.js — the profile and settings dialog: display name, status line,
// avatar (upload or remove), which messages notify (all, DMs and mentions,
// none; rooms never to notify about), the theme (applied at once), and the
// password (accounts). An
// account's settings live on the server (`GET`/`PATCH api/me`); a guest
// has no stored profile, so its settings stay in this browser. The theme
// is also kept here so that it applies before the connection is up.

import { h, $, replace } from './dom.js';
import { errorText } from './format.js';
import { fold } from './store.js';
import { avatarEl } from './messages.js';
import { mentionsOf } from './richtext.js';
import { load, save } from './saved.js';
import { redraw } from './pane.js';
import { newToken } from './identify.js';
import { app } from './state.js';

const LOCAL_KEY = 'chat.settings';
const DEFAULTS = { notify: 'mentions', theme: 'system', muted_rooms: [] };
const NOTIFY = ['all', 'mentions', 'none'];
const THEMES = ['light', 'dark', 'system'];

/** The settings in force: {notify, theme, muted_rooms, …} (other keys kept as the server has them). */
app.settings = sanitize(load(LOCAL_KEY));
applyTheme(app.settings.theme);

function sanitize(s) {
  const out = { ...DEFAULTS, ...(s && typeof s === 'object' ? s : {}) };
  if (!NOTIFY.includes(out.notify)) out.notify = DEFAULTS.notify;
  if (!THEMES.includes(out.theme)) out.theme = DEFAULTS.theme;
  if (!Array.isArray(out.muted_rooms)) out.muted_rooms = [];
  return out;
}

/** `light` or `dark` on <html>, or nothing for the system's choice. */
export function applyTheme(theme) {
  const root = document.documentElement;
  if (theme === 'light' || theme === 'dark') root.dataset.theme = theme;
  else delete root.dataset.theme;
}

function keepLocally() {
  save(LOCAL_KEY, app.settings);
}

const isAccount = () => !!app.store.me && !app.store.me.guest;

/** HTTP to the API with this user's token: {ok, status, body}. */
export async function call(method, path, body) {
  const init = { method, headers: { Authorization: `Bearer ${app.token}` } };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  try {
    const res = await fetch(path, init);
    return { ok: res.ok, status: res.status, body: await res.json().catch(() => null) };
  } catch {
    return { ok: false, status: 0, body: { error: { code: 'offline', message: 'the server cannot be reached' } } };
  }
}

export const failure = (r) => errorText(r.body?.error || { code: r.status === 0 ? 'offline' : 'internal' });

/** After `welcome`: an account's profile and settings from the server. */
export async function loadProfile() {
  if (!isAccount() || app.mode !== 'app') return;
  const r = await call('GET', 'api/me');
  if (!r.ok || !r.body) return;
  app.store.learn({ nick: app.store.me.nick, ...r.body });
  app.settings = sanitize(r.body.settings);
  applyTheme(app.settings.theme);
  keepLocally();
}

// Authors of messages shown whose profile this client has not seen (not in
// any member list now: offline, or gone): asked once each.
const asked = new Set();

/**
 * Someone's current name and picture from `GET api/users/{nick}`, for an
 * author nobody has described yet; redraws when it brings something new.
 */
export async function lookUp(nick) {
  const key = fold(nick);
  if (asked.has(key) || !app.token || app.store.people.has(key)) return;
  asked.add(key);
  const r = await call('GET', `api/users/${encodeURIComponent(nick)}`);
  // A guest has no stored profile (404): the nick is all there is.
  if (r.ok && r.body?.nick && !app.store.people.has(key) && app.store.learn(r.body)) redraw();
}

/** Whether a new message from someone else should raise a notification. */
export function notifyWanted(m, c) {
  const s = app.settings;
  if (s.notify === 'none') return false;
  if (c.kind === 'room' && s.muted_rooms.some((r) => fold(r) === fold(c.name))) return false;
  if (s.notify === 'all' || c.kind === 'dm') return true;
  return mentionsOf(m, app.store.me?.nick);
}

// ---- the dialog ------------------------------------------------------------------

let shownTheme = null; // the theme before the dialog opened (Cancel puts it back)

export function bindProfile() {
  const dialog = $('profile-dialog');
  if (!dialog) return;
  $('open-profile').addEventListener('click', () => open());
  $('profile-close').addEventListener('click', () => dialog.close('cancel'));
  $('profile-cancel').addEventListener('click', () => dialog.close('cancel'));
  dialog.addEventListener('close', () => {
    if (dialog.returnValue !== 'saved' && shownTheme !== null) applyTheme(shownTheme);
    shownTheme = null;
  });
  for (const radio of document.querySelectorAll('input[name="theme"]')) {
    radio.addEventListener('change', () => applyTheme(radio.value));
  }
  $('profile-form').addEventListener('submit', (e) => {
    e.preventDefault();
    saveProfile();
  });
  $('avatar-change').addEventListener('click', () => $('avatar-input').click());
  $('avatar-input').addEventListener('change', () => {
    const file = $('avatar-input').files?.[0];
    $('avatar-input').value = '';
    if (file) setAvatar(file);
  });
  $('avatar-remove').addEventListener('click', () => removeAvatar());
  $('password-form-submit').addEventListener('click', () => changePassword());
}

async function open() {
  const dialog = $('profile-dialog');
  const me = app.store.me;
  if (!me) return;
  const account = isAccount();
  $('profile-error').textContent = '';
  $('avatar-status').textContent = '';
  $('password-status').textContent = '';
  for (const id of ['password-old', 'password-new', 'password-again']) $(id).value = '';
  $('profile-guest').hidden = account;
  for (const id of ['profile-name', 'profile-status', 'avatar-change', 'avatar-remove']) $(id).disabled = !account;
  $('password-section').hidden = !account;
  const person = app.store.people.get(fold(me.nick));
  $('profile-name').value = account ? (person?.display_name || me.display_name || me.nick) : me.nick;
  $('profile-status').value = person?.status || '';
  drawAvatar();
  setRadios(app.settings);
  shownTheme = app.settings.theme;
  dialog.returnValue = '';
  dialog.dispatchEvent(new Event('open-settings'));
  dialog.showModal();
  if (account) {
    $('profile-name').focus();
    // The freshest values (another device may have changed them).
    const r = await call('GET', 'api/me');
    if (r.ok && r.body && dialog.open) {
      app.store.learn({ nick: me.nick, ...r.body });
      $('profile-name').value = r.body.display_name || me.nick;
      $('profile-status').value = r.body.status || '';
      drawAvatar();
    }
  }
}

function setRadios(s) {
  for (const r of document.querySelectorAll('input[name="notify"]')) r.checked = r.value === s.notify;
  for (const r of document.querySelectorAll('input[name="theme"]')) r.checked = r.value === s.theme;
  // The rooms joined now, and any muted before (kept unless unticked).
  const names = new Map();
  for (const c of app.store.rooms()) names.set(fold(c.name), c.name);
  for (const r of s.muted_rooms) if (typeof r === 'string' && !names.has(fold(r))) names.set(fold(r), r);
  const muted = new Set(s.muted_rooms.map((r) => fold(r)));
  replace($('muted-rooms'), ...[...names.values()].map((name) => h('label', {},
    h('input', { type: 'checkbox', name: 'muted', value: name, checked: muted.has(fold(name)) }), ` ${name}`)));
  $('muted-h').hidden = names.size === 0;
}

function mutedRooms() {
  return [...document.querySelectorAll('input[name="muted"]:checked')].map((c) => c.value);
}

function chosen(name) {
  return document.querySelector(`input[name="${name}"]:checked`)?.value;
}

function drawAvatar() {
  const me = app.store.me;
  const el = avatarEl(app.store, me.nick, 'big');
  el.id = 'profile-avatar';
  $('profile-avatar').replaceWith(el);
  $('avatar-remove').hidden = !app.store.avatar(me.nick);
}

/** Redraws what shows this user (the sidebar, messages, member lists). */
function showChange() {
  app.ui.renderMe(app.store.me, app.notifier.enabled);
  redraw();
}

async function saveProfile() {
  const dialog = $('profile-dialog');
  const err = $('profile-error');
  err.textContent = '';
  const settings = sanitize({ ...app.settings, notify: chosen('notify'), theme: chosen('theme'), muted_rooms: mutedRooms() });
  if (isAccount()) {
    const change = { display_name: $('profile-name').value.trim(), status: $('profile-status').value.trim(), settings };
    $('profile-save').disabled = true;
    const r = await call('PATCH', 'api/me', change);
    $('profile-save').disabled = false;
    if (!r.ok) {
      err.textContent = failure(r);
      return;
    }
    if (app.store.learn({ nick: app.store.me.nick, ...r.body })) showChange();
    app.settings = sanitize(r.body?.settings || settings);
  } else {
    app.settings = settings;
  }
  keepLocally();
  applyTheme(app.settings.theme);
  dialog.close('saved');
  app.ui.toast('Saved.', 'info', 'profile-saved');
}

async function setAvatar(file) {
  const status = $('avatar-status');
  status.textContent = 'Uploading…';
  const form = new FormData();
  form.append('file', file, file.name || 'avatar');
  const r = await call('POST', 'api/me/avatar', form);
  if (!r.ok || typeof r.body?.avatar !== 'string') {
    status.textContent = r.status === 413 ? 'That picture is too large.' : failure(r);
    return;
  }
  status.textContent = 'Your new picture is shown to everyone.';
  avatarChanged(r.body.avatar);
}

async function removeAvatar() {
  const status = $('avatar-status');
  const r = await call('DELETE', 'api/me/avatar');
  if (!r.ok) {
    status.textContent = failure(r);
    return;
  }
  status.textContent = 'Picture removed.';
  avatarChanged(null);
}

function avatarChanged(url) {
  const me = app.store.me;
  const person = app.store.people.get(fold(me.nick));
  app.store.learn({ ...person, nick: me.nick, avatar: url || null });
  drawAvatar();
  showChange();
}

async function changePassword() {
  const status = $('password-status');
  const old = $('password-old').value;
  const next = $('password-new').value;
  status.classList.remove('ok');
  if (next.length < 8) {
    status.textContent = 'The new password needs at least 8 characters.';
    return;
  }
  if (next !== $('password-again').value) {
    status.textContent = 'The two new passwords differ.';
    return;
  }
  const r = await call('POST', 'api/me/password', { old, new: next });
  if (!r.ok || !r.body?.token) {
    status.textContent = r.body?.error?.code === 'unauthorized' ? 'The current password is wrong.' : failure(r);
    return;
  }
  newToken(r.body.token);
  for (const id of ['password-old', 'password-new', 'password-again']) $(id).value = '';
  status.classList.add('ok');
  replace(status, h('span', { text: 'Password changed. Your other devices must sign in again.' }));
}
