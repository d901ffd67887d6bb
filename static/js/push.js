// push.js — Web Push: the service worker (`sw.js`, registered at the
// page's folder so its scope covers the app) and the "Enable notifications"
// switch in the settings dialog. Turning it on asks the browser's
// permission, subscribes with the server's VAPID key (`GET api/push/key`)
// and hands the subscription to the server (`POST api/me/push`, whose `id`
// is kept in this browser); turning it off deletes it there
// (`DELETE api/me/push/{id}`) and unsubscribes. The server then sends a
// push for a DM or a mention while the user is away; a click on it opens
// the conversation (sw.js, then `open` below).

import { $ } from './dom.js';
import { fold } from './store.js';
import { load, save, forget } from './saved.js';
import { call, failure } from './profile.js';
import { openTarget } from './nav.js';
import { app } from './state.js';

export const pushSupported = () => 'serviceWorker' in navigator && 'PushManager' in window && 'Notification' in window;

const idKey = () => `chat.push.${fold(app.store.me?.nick || '')}`;

let registration = null;

/** Registers the service worker (full client only); null where there is none. */
export async function registerWorker() {
  if (!('serviceWorker' in navigator) || app.mode !== 'app') return null;
  if (registration) return registration;
  try {
    const folder = new URL('./', location.href);
    registration = await navigator.serviceWorker.register(new URL('sw.js', folder).href, { scope: folder.pathname });
  } catch {
    registration = null;
  }
  return registration;
}

/** base64url → bytes (the VAPID key for `applicationServerKey`). */
function bytesOf(b64) {
  const s = atob(b64.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(s, (c) => c.charCodeAt(0));
}

/** Subscribes and registers with the server; returns a sentence when it could not. */
export async function enablePush() {
  if (!pushSupported()) return 'This browser cannot receive push notifications.';
  let permission = Notification.permission;
  if (permission === 'default') permission = await Notification.requestPermission();
  if (permission !== 'granted') return 'Notifications are blocked for this site. Allow them in the browser\'s site settings, then try again.';
  const reg = await registerWorker();
  if (!reg) return 'The notification worker could not start.';
  await navigator.serviceWorker.ready;
  const key = await call('GET', 'api/push/key');
  if (!key.ok || typeof key.body?.public_key !== 'string') {
    return key.status === 404 ? 'This server does not send push notifications.' : failure(key);
  }
  let sub;
  try {
    sub = await reg.pushManager.getSubscription();
    if (sub && !sameKey(sub, key.body.public_key)) {
      await sub.unsubscribe();
      sub = null;
    }
    sub ||= await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: bytesOf(key.body.public_key) });
  } catch (e) {
    return `The browser's push service refused: ${e?.message || e}`;
  }
  const json = sub.toJSON();
  const r = await call('POST', 'api/me/push', { endpoint: json.endpoint, keys: { p256dh: json.keys?.p256dh, auth: json.keys?.auth } });
  if (!r.ok || r.body?.id === undefined) return failure(r);
  save(idKey(), r.body.id);
  // In-page notifications too (notify.js), now that the permission is there.
  if (!app.notifier.enabled) await app.notifier.toggle();
  return null;
}

function sameKey(sub, publicKey) {
  const k = sub.options?.applicationServerKey;
  if (!k) return true;
  const a = new Uint8Array(k);
  const b = bytesOf(publicKey);
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Unregisters from the server and unsubscribes; returns a sentence when it could not. */
export async function disablePush() {
  const id = load(idKey());
  if (id !== null && id !== undefined) {
    const r = await call('DELETE', `api/me/push/${encodeURIComponent(id)}`);
    if (!r.ok && r.status !== 404) return failure(r);
  }
  forget(idKey());
  try {
    const sub = await (await registerWorker())?.pushManager.getSubscription();
    await sub?.unsubscribe();
  } catch {
    // already gone
  }
  return null;
}

export const pushEnabled = () => load(idKey()) !== null;

/** The switch in the settings dialog. */
export function bindPush() {
  if (app.mode !== 'app') return;
  registerWorker();
  // A click on a push notification in a tab that is open: show that conversation here.
  navigator.serviceWorker?.addEventListener('message', (e) => {
    if (e.data?.type === 'open' && typeof e.data.url === 'string') openTarget(new URL(e.data.url, location.href).searchParams);
  });
  const box = $('push-enable');
  if (!box) return;
  $('profile-dialog').addEventListener('open-settings', () => {
    // A guest is gone once it leaves: there is nobody to notify later.
    const guest = !!app.store.me?.guest;
    box.checked = !guest && pushEnabled();
    box.disabled = guest || !pushSupported();
    $('push-status').textContent = guest ? 'Guests get no notifications while away: create an account for them.'
      : pushSupported() ? '' : 'This browser cannot receive push notifications.';
  });
  box.addEventListener('change', async () => {
    const status = $('push-status');
    box.disabled = true;
    status.textContent = box.checked ? 'Turning on…' : 'Turning off…';
    const problem = box.checked ? await enablePush() : await disablePush();
    box.disabled = false;
    if (problem) {
      box.checked = !box.checked;
      status.textContent = problem;
    } else {
      status.textContent = box.checked ? 'On: this browser is notified of direct messages and mentions while you are away.' : 'Off.';
    }
    app.ui.renderNotify(app.notifier.enabled);
  });
}
