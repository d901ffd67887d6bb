// notify.mjs — mentions and notifications in the web client (issue 15).
// The service worker is registered with a scope that covers the app and
// shows a push message as a notification that leads to the conversation;
// the "Enable notifications" switch subscribes with the server's key and
// hands the subscription over (or says in words why it could not); a
// mention of the reader stands out and is completed from the room's
// members with `@`; mentions are counted apart from unread messages, in the
// sidebar and the title; a hidden tab notifies of a DM and a click on the
// notification opens it; the sound follows its toggle; a URL `?dm=` /
// `?room=&seq=` opens that place (what a click on a push leads to).

import { createECDH, createPublicKey, randomBytes, hkdfSync, createDecipheriv, verify } from 'node:crypto';
import { createServer } from 'node:http';
import { run, step, user, guest, say, until, check, shot, env, log } from './lib.mjs';

/** RFC 8291: the aes128gcm body of a push, decrypted as the browser would. */
function decrypt(body, ua, auth) {
  const salt = body.subarray(0, 16);
  const idlen = body[20];
  const asPublic = body.subarray(21, 21 + idlen);
  const cipher = body.subarray(21 + idlen);
  const secret = ua.computeSecret(asPublic);
  const info = Buffer.concat([Buffer.from('WebPush: info\0'), ua.getPublicKey(), asPublic]);
  const ikm = Buffer.from(hkdfSync('sha256', secret, auth, info, 32));
  const cek = Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from('Content-Encoding: aes128gcm\0'), 16));
  const nonce = Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from('Content-Encoding: nonce\0'), 12));
  const d = createDecipheriv('aes-128-gcm', cek, nonce);
  d.setAuthTag(cipher.subarray(cipher.length - 16));
  const plain = Buffer.concat([d.update(cipher.subarray(0, cipher.length - 16)), d.final()]);
  let end = plain.length;
  while (end > 0 && plain[end - 1] === 0) end -= 1;
  check(plain[end - 1] === 2, 'the last record\'s delimiter');
  return plain.subarray(0, end - 1);
}

/** An ES256 JWT checked against a base64url P-256 point. */
function verifyJwt(jwt, point) {
  const raw = Buffer.from(point, 'base64url');
  const key = createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: raw.subarray(1, 33).toString('base64url'), y: raw.subarray(33, 65).toString('base64url') }, format: 'jwk' });
  const [h, p, sig] = jwt.split('.');
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
  check(claims.aud === `http://127.0.0.1:${env.foreignPort}` && claims.exp * 1000 > Date.now(), `JWT claims ${JSON.stringify(claims)}`);
  return verify('sha256', Buffer.from(`${h}.${p}`), { key, dsaEncoding: 'ieee-p1363' }, Buffer.from(sig, 'base64url'));
}

/** Fake notifications and a tab that can be hidden; counts the sound's tones. */
function instrument() {
  window.__shown = [];
  window.__tones = 0;
  let hidden = false;
  window.__hide = (hide = true) => { hidden = hide; document.dispatchEvent(new Event('visibilitychange')); };
  Object.defineProperty(document, 'visibilityState', { get: () => (hidden ? 'hidden' : 'visible') });
  class FakeNotification {
    static permission = 'granted';
    static async requestPermission() { return 'granted'; }
    constructor(title, options) {
      this.title = title;
      window.__shown.push({ title, body: options.body });
      window.__last = this;
    }
    close() {}
  }
  window.Notification = FakeNotification;
  const start = OscillatorNode.prototype.start;
  OscillatorNode.prototype.start = function (...a) { window.__tones += 1; return start.apply(this, a); };
}

await run(async (browser) => {
  const alice = await user(browser, 'alice', { perms: ['notifications'] });
  const A = alice.page;
  await A.addInitScript(instrument);
  await guest(alice, 'alice');
  const bob = await guest(await user(browser, 'bob'), 'bob');
  const B = bob.page;
  await A.locator('#member-list button[data-nick="bob"]').waitFor();

  await step('the service worker is registered at /sw.js, its scope the whole app', async () => {
    const reg = await A.evaluate(async () => {
      const r = await navigator.serviceWorker.ready;
      return { scope: r.scope, script: r.active?.scriptURL, controlled: !!navigator.serviceWorker.controller };
    });
    check(reg.scope === `${env.url}/`, `scope ${reg.scope}`);
    check(reg.script === `${env.url}/sw.js`, `script ${reg.script}`);
    const res = await fetch(`${env.url}/sw.js`);
    check(res.status === 200 && /javascript/.test(res.headers.get('content-type')), `sw.js served as JavaScript: ${res.status} ${res.headers.get('content-type')}`);
    check(res.headers.get('cache-control') === 'no-cache', 'sw.js revalidated, so an update reaches browsers');
  });

  await step('a push message becomes a notification that leads to the conversation', async () => {
    const cdp = await alice.context.newCDPSession(A);
    const registration = new Promise((resolve) => cdp.on('ServiceWorker.workerRegistrationUpdated', (e) => {
      const r = e.registrations.find((x) => x.scopeURL === `${env.url}/` && !x.isDeleted);
      if (r) resolve(r.registrationId);
    }));
    await cdp.send('ServiceWorker.enable');
    const registrationId = await registration;
    const data = JSON.stringify({ title: 'bob · Direct message', body: 'are you there?', with: 'bob', msg_id: '01TEST', url: '/?dm=bob' });
    // A push reaches only an activated worker, and on a busy machine the
    // registration is seen before it has activated: the push is delivered
    // again each second until it shows (same tag: one notification).
    let sent = 0;
    const shown = await until('the notification', async () => {
      if (Date.now() - sent > 1000) {
        sent = Date.now();
        await cdp.send('ServiceWorker.deliverPushMessage', { origin: env.url, registrationId, data });
      }
      return A.evaluate(async () => {
        const r = await navigator.serviceWorker.ready;
        const n = await r.getNotifications();
        return n.length ? n.map((x) => ({ title: x.title, body: x.body, tag: x.tag, url: x.data?.url })) : null;
      });
    });
    check(shown.length === 1 && shown[0].title === 'bob · Direct message' && shown[0].body === 'are you there?', `shown: ${JSON.stringify(shown)}`);
    check(shown[0].url === `${env.url}/?dm=bob` && shown[0].tag === 'd:bob', `it leads to the DM: ${JSON.stringify(shown[0])}`);
    // A foreign URL in the push is not followed: the conversation's own address is used.
    await cdp.send('ServiceWorker.deliverPushMessage', {
      origin: env.url, registrationId, data: JSON.stringify({ title: 'x', body: 'y', room: 'lobby', url: 'https://evil.example/' }),
    });
    const second = await until('the second notification', () => A.evaluate(async () => {
      const n = (await (await navigator.serviceWorker.ready).getNotifications()).filter((x) => x.tag === 'r:lobby');
      return n.length ? n[0].data?.url : null;
    }));
    check(second === `${env.url}/?room=lobby`, `a foreign url is replaced: ${second}`);
    await A.evaluate(async () => (await (await navigator.serviceWorker.ready).getNotifications()).forEach((n) => n.close()));
    await cdp.detach();
  });

  await step('what a notification click opens: ?dm= opens the DM, ?room=&seq= the message', async () => {
    const carol = await user(browser, 'carol');
    const C = carol.page;
    await C.goto(`${env.url}/?dm=bob`);
    await C.locator('#login-nick').fill('carol');
    await C.locator('#login-nick').press('Enter');
    await C.locator('#conv-name', { hasText: 'bob' }).waitFor();
    check((await C.locator('#conv-sub').textContent()).startsWith('@bob'), 'the DM with bob is open');
    await say(B, 'a message to link to');
    const id = await until('bob sees it', () => B.locator('#message-list .msg', { hasText: 'a message to link to' }).getAttribute('data-seq'));
    await C.goto(`${env.url}/?room=lobby&seq=${id}`);
    await C.locator('#message-list .msg.flash', { hasText: 'a message to link to' }).waitFor();
    await carol.context.close();
    // A tab already open: the worker tells it what was clicked (sw.js posts `open`), and it goes there.
    await A.evaluate((url) => navigator.serviceWorker.dispatchEvent(new MessageEvent('message', { data: { type: 'open', url } })), `${env.url}/?dm=bob`);
    await A.locator('#conv-name', { hasText: 'bob' }).waitFor();
    await A.locator('#room-list .conv', { hasText: 'lobby' }).click();
  });

  await step('the settings switch is off for a guest, in words', async () => {
    await A.locator('#open-profile').click();
    await A.locator('#profile-dialog[open]').waitFor();
    check(await A.locator('#push-enable').isDisabled(), 'a guest cannot turn it on');
    await A.locator('#push-status', { hasText: 'Guests get no notifications while away' }).waitFor();
    await A.keyboard.press('Escape');
    await until('the dialog closed', async () => (await A.locator('#profile-dialog[open]').count()) === 0);
  });

  await step('@ completes from the room\'s members; the mention of the reader stands out', async () => {
    await B.locator('#input').fill('');
    await B.locator('#input').pressSequentially('look @al');
    const option = B.locator('#complete [role="option"]', { hasText: '@alice' });
    await option.waitFor();
    check(await B.locator('#input').getAttribute('aria-activedescendant') === 'complete-0', 'the input points at the chosen option');
    await B.locator('#input').press('Enter');
    check((await B.locator('#input').inputValue()) === 'look @alice ', `completed: ${await B.locator('#input').inputValue()}`);
    check(await B.locator('#complete').isHidden(), 'the list closed');
    await B.locator('#input').pressSequentially('at this');
    await B.locator('#input').press('Enter');
    const msg = A.locator('#message-list .msg', { hasText: 'look @alice at this' });
    await msg.waitFor();
    check(await msg.evaluate((el) => el.classList.contains('mentions-me')), 'the message is marked for alice');
    check((await msg.locator('.mention.mention-me').textContent()) === '@alice', 'the mention is highlighted');
    const onB = B.locator('#message-list .msg', { hasText: 'look @alice at this' });
    check(!(await onB.evaluate((el) => el.classList.contains('mentions-me'))), 'not marked for its sender');
    // Esc closes the list and sends nothing; bob himself is never offered.
    await B.locator('#input').pressSequentially('@');
    await B.locator('#complete [role="option"]', { hasText: '@alice' }).waitFor();
    check((await B.locator('#complete [role="option"]', { hasText: '@bob' }).count()) === 0, 'not oneself');
    await B.locator('#input').press('Escape');
    await B.locator('#complete').waitFor({ state: 'hidden' });
    check((await B.locator('#input').inputValue()) === '@', 'the text stays');
    await B.locator('#input').fill('');
  });

  await step('mentions are counted apart from unread messages, in the sidebar and the title', async () => {
    await A.locator('#join-name').fill('quiet');
    await A.locator('#join-name').press('Enter');
    await A.locator('#conv-name', { hasText: 'quiet' }).waitFor();
    const tones = await A.evaluate(() => window.__tones);
    await say(B, 'just talking');
    await say(B, 'but @alice should see this');
    const lobby = A.locator('#room-list .conv', { hasText: 'lobby' });
    await until('two unread, one mention', async () =>
      (await lobby.locator('.badge:not(.mention)').textContent()) === '2' && (await lobby.locator('.badge.mention').textContent()) === '@1');
    check((await A.title()) === '(@1 · 2) quiet · chat', `title: ${await A.title()}`);
    check((await lobby.textContent()).includes('1 mentioning you') && (await lobby.textContent()).includes('2 unread'), 'both in words for screen readers');
    await until('the sound played for the mention only', async () => (await A.evaluate(() => window.__tones)) === tones + 2);
    await shot(A, 'notify-counts');
    await A.locator('#sound').click();
    check((await A.locator('#sound').getAttribute('aria-pressed')) === 'false', 'sound off');
    await say(B, 'again @alice');
    await until('three unread', async () => (await lobby.locator('.badge:not(.mention)').textContent()) === '3');
    check((await A.evaluate(() => window.__tones)) === tones + 2, 'no sound while it is off');
    await lobby.click();
    await A.locator('#message-list .divider', { hasText: 'New messages' }).waitFor();
    check((await lobby.locator('.badge').count()) === 0, 'both counts cleared on open');
    check((await A.title()) === 'lobby · chat', `title: ${await A.title()}`);
  });

  await step('a hidden tab notifies of a DM; a click on the notification opens it', async () => {
    await A.locator('#notify').click();
    await A.locator('#notify', { hasText: 'Notifications: on' }).waitFor();
    await A.evaluate(() => window.__hide());
    await B.locator('#member-list button[data-nick="alice"]').click();
    await B.locator('#card-dm').click();
    await say(B, 'a word in private');
    await until('a notification', async () => (await A.evaluate(() => window.__shown)).length > 0);
    const shown = await A.evaluate(() => window.__shown);
    check(shown.length === 1 && shown[0].body === 'a word in private' && shown[0].title.startsWith('bob'), `shown: ${JSON.stringify(shown)}`);
    check((await A.title()).startsWith('(@1 · 1)'), `the title counts it: ${await A.title()}`);
    await A.evaluate(() => { window.__hide(false); window.__last.onclick(); });
    await A.locator('#conv-name', { hasText: 'bob' }).waitFor();
    await A.locator('#message-list .msg', { hasText: 'a word in private' }).waitFor();
  });
  await step('push end to end: an account turns it on, goes away, and a DM reaches its endpoint encrypted', async () => {
    const key = await fetch(`${env.url}/api/push/key`);
    check(key.status === 200, `GET /api/push/key: ${key.status}`);
    const { public_key: vapidKey } = await key.json();
    // The browser's half of a subscription (headless Chromium has no push service): real keys, a local endpoint.
    const ua = createECDH('prime256v1');
    ua.generateKeys();
    const auth = randomBytes(16);
    const pushes = [];
    const endpoint = createServer((req, res) => {
      const body = [];
      req.on('data', (c) => body.push(c));
      req.on('end', () => {
        pushes.push({ headers: req.headers, url: req.url, body: Buffer.concat(body) });
        res.writeHead(201);
        res.end();
      });
    });
    await new Promise((r) => endpoint.listen(env.foreignPort, '127.0.0.1', r));
    const sub = { endpoint: `http://127.0.0.1:${env.foreignPort}/push/dora`, keys: { p256dh: ua.getPublicKey().toString('base64url'), auth: auth.toString('base64url') } };

    const reg = await fetch(`${env.url}/api/register`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ nick: 'dora', password: 'a long enough password' }),
    }).then((r) => r.json());
    const dora = await user(browser, 'dora', { perms: ['notifications'] });
    const D = dora.page;
    await D.addInitScript((s) => {
      window.__subscribed = null;
      PushManager.prototype.getSubscription = async () => window.__subscribed;
      PushManager.prototype.subscribe = async (options) => {
        window.__serverKey = new Uint8Array(options.applicationServerKey).length;
        window.__subscribed = { options, toJSON: () => s, unsubscribe: async () => { window.__subscribed = null; return true; } };
        return window.__subscribed;
      };
    }, sub);
    await D.goto(`${env.url}/?token=${encodeURIComponent(reg.token)}`);
    await D.locator('#conv-name', { hasText: 'lobby' }).waitFor();
    await D.locator('#open-profile').click();
    const box = D.locator('#push-enable');
    await box.click();
    await D.locator('#push-status', { hasText: 'On:' }).waitFor();
    check(await D.evaluate(() => window.__serverKey) === 65, 'subscribed with the server\'s 65-byte key');
    const id = await D.evaluate(() => JSON.parse(localStorage.getItem('chat.push.dora')));
    check(typeof id === 'string' && id.length > 0, `the server's id: ${id}`);
    await shot(D, 'notify-settings');
    // Off: the server forgets it (DELETE); on again: a new one.
    await box.click();
    await D.locator('#push-status', { hasText: 'Off.' }).waitFor();
    check(await D.evaluate(() => localStorage.getItem('chat.push.dora') === null && window.__subscribed === null), 'forgotten and unsubscribed');
    const gone = await fetch(`${env.url}/api/me/push/${id}`, { method: 'DELETE', headers: { Authorization: `Bearer ${reg.token}` } });
    check(gone.status === 404, `the old subscription is gone on the server: ${gone.status}`);
    await box.click();
    await D.locator('#push-status', { hasText: 'On:' }).waitFor();
    await D.keyboard.press('Escape');
    await dora.context.close();

    await say(B, '/msg dora are you around?');
    const push = await until('a push at the endpoint', async () => pushes[0], 30_000);
    check(push.url === '/push/dora', `endpoint path ${push.url}`);
    check(push.headers['content-encoding'] === 'aes128gcm', `content-encoding ${push.headers['content-encoding']}`);
    const m = /^vapid t=([^,]+), k=(.+)$/.exec(push.headers.authorization || '');
    check(m && m[2] === vapidKey, `VAPID header with the server's key: ${push.headers.authorization}`);
    check(verifyJwt(m[1], vapidKey), 'the VAPID JWT verifies with that key');
    const payload = JSON.parse(decrypt(push.body, ua, auth).toString('utf8'));
    check(payload.with === 'bob' && payload.body === 'are you around?' && typeof payload.title === 'string', `decrypted: ${JSON.stringify(payload)}`);
    log(`push payload: ${JSON.stringify(payload)}`);
    endpoint.close();
  });
});
