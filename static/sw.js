// sw.js — the web client's service worker, served at the client's own
// folder (`/sw.js`) so that its scope covers the app. It shows the Web Push
// notifications the server sends while the user is away (the decrypted
// body is JSON {title, body, room | with, msg_id, url}) and, on a click,
// brings an open chat tab forward on that conversation (or opens one).
// It caches nothing: the pages and assets have their own HTTP caching.

'use strict';

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

/** Where a notification leads: the server's `url` when it is on this origin, else `?room=` / `?dm=`. */
function target(d) {
  const scope = self.registration.scope;
  if (typeof d.url === 'string' && d.url) {
    try {
      const u = new URL(d.url, scope);
      if (u.origin === self.location.origin) return u.href;
    } catch (e) {
      // not a URL: fall through
    }
  }
  const u = new URL(scope);
  if (typeof d.room === 'string' && d.room) u.searchParams.set('room', d.room);
  else if (typeof d.with === 'string' && d.with) u.searchParams.set('dm', d.with);
  return u.href;
}

self.addEventListener('push', (event) => {
  let d = {};
  try {
    d = event.data ? event.data.json() : {};
  } catch (e) {
    d = { body: event.data ? event.data.text() : '' };
  }
  if (!d || typeof d !== 'object') d = {};
  const title = typeof d.title === 'string' && d.title ? d.title : 'New message';
  const tag = d.room ? `r:${String(d.room).toLowerCase()}` : d.with ? `d:${String(d.with).toLowerCase()}` : 'chat';
  event.waitUntil(self.registration.showNotification(title, {
    body: typeof d.body === 'string' ? d.body : '',
    tag,
    icon: new URL('favicon.svg', self.registration.scope).href,
    data: { url: target(d) },
  }));
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const url = (event.notification.data && event.notification.data.url) || self.registration.scope;
  event.waitUntil((async () => {
    const tabs = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    for (const tab of tabs) {
      const path = new URL(tab.url).pathname;
      if (tab.url.startsWith(self.registration.scope) && !path.endsWith('/embed')) {
        tab.postMessage({ type: 'open', url });
        return tab.focus();
      }
    }
    return self.clients.openWindow(url);
  })());
});
