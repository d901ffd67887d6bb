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

import { run, step, user, guest, say, until, check, shot, api, env, log } from './lib.mjs';

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
    await cdp.send('ServiceWorker.deliverPushMessage', { origin: env.url, registrationId, data });
    const shown = await until('the notification', () => A.evaluate(async () => {
      const r = await navigator.serviceWorker.ready;
      const n = await r.getNotifications();
      return n.length ? n.map((x) => ({ title: x.title, body: x.body, tag: x.tag, url: x.data?.url })) : null;
    }));
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

  await step('the settings switch: permission, the server\'s key, the subscription handed over', async () => {
    await A.evaluate(() => {
      // Headless Chromium has no push service: the browser's half is a stand-in, the server's is real.
      window.__subscribed = null;
      PushManager.prototype.getSubscription = async () => window.__subscribed;
      PushManager.prototype.subscribe = async (options) => {
        const key = new Uint8Array(options.applicationServerKey);
        window.__subscribed = {
          options: { applicationServerKey: key.buffer },
          toJSON: () => ({ endpoint: 'https://push.example.com/send/abc123', keys: { p256dh: 'BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM', auth: 'tBHItJI5svbpez7KI4CCXg' } }),
          unsubscribe: async () => { window.__subscribed = null; return true; },
        };
        window.__applicationServerKey = key.length;
        return window.__subscribed;
      };
    });
    const key = await fetch(`${env.url}/api/push/key`);
    await A.locator('#open-profile').click();
    await A.locator('#profile-dialog[open]').waitFor();
    const box = A.locator('#push-enable');
    check(!(await box.isChecked()) && !(await box.isDisabled()), 'off, and can be turned on');
    await box.click(); // (not check(): a refusal may turn it back off before check() looks)
    if (key.status === 404) {
      log('SKIPPED push subscription to the server: this server has no GET /api/push/key yet');
      await A.locator('#push-status', { hasText: 'This server does not send push notifications.' }).waitFor();
      check(!(await box.isChecked()), 'the switch goes back off');
    } else {
      check(key.status === 200, `GET /api/push/key: ${key.status}`);
      const { public_key: publicKey } = await key.json();
      await A.locator('#push-status', { hasText: 'On:' }).waitFor();
      check(await box.isChecked(), 'on');
      check(await A.evaluate(() => window.__applicationServerKey) === Buffer.from(publicKey, 'base64url').length, 'subscribed with the server\'s key');
      const id = await A.evaluate(() => JSON.parse(localStorage.getItem('chat.push.alice')));
      check(id !== null, 'the server gave the subscription an id');
      await shot(A, 'notify-settings');
      await box.uncheck();
      await A.locator('#push-status', { hasText: 'Off.' }).waitFor();
      check(await A.evaluate(() => window.__subscribed === null && localStorage.getItem('chat.push.alice') === null), 'unsubscribed and forgotten');
    }
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
});
