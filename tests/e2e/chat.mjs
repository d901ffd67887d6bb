// chat.mjs — two people in two browsers: a room and direct messages,
// presence and typing, rooms created, listed and joined, topics, unread
// counts, read receipts, editing and deleting, history on join and on
// scroll, errors in words, accounts, notifications, the keyboard alone,
// and the layout on a 375 px phone. Screenshots in light and dark mode.

import {
  run, step, user, guest, say, texts, until, check, openConv, shot, toDocs, api, log, env, dmFromMembers,
} from './lib.mjs';

await run(async (browser) => {
  const alice = await guest(await user(browser, 'alice'), 'alice');
  const bob = await guest(await user(browser, 'bob', { dark: true }), 'bob');
  const A = alice.page;
  const B = bob.page;

  await step('both are in the lobby; alice sees bob arrive', async () => {
    await A.locator('#conv-name', { hasText: 'lobby' }).waitFor();
    await B.locator('#conv-name', { hasText: 'lobby' }).waitFor();
    await A.locator('#member-list', { hasText: '@bob' }).waitFor();
    await A.locator('#message-list .event', { hasText: 'bob joined' }).waitFor();
    check((await A.locator('#member-list .dot.online').count()) === 2, 'two members online');
  });

  await step('typing shows, then the message with sender, time and day', async () => {
    await B.locator('#input').fill('hel');
    await A.locator('#typing', { hasText: 'bob is typing…' }).waitFor();
    await B.locator('#input').fill('hello alice');
    await B.locator('#input').press('Enter');
    await A.locator('#message-list .msg', { hasText: 'hello alice' }).waitFor();
    await until('typing cleared', async () => (await A.locator('#typing').textContent()) === '');
    const msg = A.locator('#message-list .msg', { hasText: 'hello alice' });
    check((await msg.locator('.from').textContent()) === 'bob', 'sender shown');
    check(/\d/.test(await msg.locator('time').textContent()), 'time shown');
    check(await A.locator('#message-list .day', { hasText: 'Today' }).count() === 1, 'one day separator');
    await say(A, 'hi bob, welcome');
    await B.locator('#message-list .msg', { hasText: 'hi bob, welcome' }).waitFor();
  });

  await step('alice creates a room; bob finds it in the directory with its count and joins', async () => {
    await A.locator('#join-name').fill('dev');
    await A.locator('#join-name').press('Enter');
    await A.locator('#conv-name', { hasText: 'dev' }).waitFor();
    await B.locator('#browse summary').click();
    const entry = B.locator('#directory button[data-room="dev"]');
    await until('dev listed with 1 member', async () => (await entry.locator('.count').textContent()) === '1');
    await until('lobby listed with 2 members', async () =>
      (await B.locator('#directory button[data-room="lobby"] .count').textContent()) === '2');
    await entry.click();
    await B.locator('#conv-name', { hasText: 'dev' }).waitFor();
    await A.locator('#message-list .event', { hasText: 'bob joined' }).waitFor();
    await until('member count 2', async () => (await A.locator('#member-count').textContent()) === '2');
  });

  await step('alice sets the topic; bob sees it', async () => {
    await A.locator('#edit-topic').click();
    await A.locator('#topic-input').fill('Release on Friday');
    await A.locator('#topic-input').press('Enter');
    await B.locator('#conv-sub', { hasText: 'Release on Friday' }).waitFor();
    await B.locator('#message-list .event', { hasText: 'alice set the topic: Release on Friday' }).waitFor();
  });

  await step('unread counts per room', async () => {
    await openConv(A, 'lobby');
    await say(B, 'dev news 1');
    await say(B, 'dev news 2');
    const badge = A.locator('#room-list .conv', { hasText: 'dev' }).locator('.badge');
    await until('dev unread 2', async () => (await badge.textContent()) === '2');
    check((await A.title()).startsWith('(2)'), `title counts unread: ${await A.title()}`);
    await openConv(A, 'dev');
    check(await badge.count() === 0, 'badge cleared on open');
    check((await texts(A)).includes('dev news 2'), 'messages there');
  });

  await step('a direct message from the member list, unread, read receipt, presence dot', async () => {
    await openConv(A, 'lobby');
    await dmFromMembers(B, 'alice');
    await B.locator('#conv-name', { hasText: 'alice' }).waitFor();
    await say(B, 'psst, alice');
    const dm = A.locator('#dm-list .conv', { hasText: 'bob' });
    await until('DM unread 1', async () => (await dm.locator('.badge').textContent()) === '1');
    await until('bob online in the DM list', async () => (await dm.locator('.dot.online').count()) === 1);
    await dm.click();
    await A.locator('#message-list .msg', { hasText: 'psst, alice' }).waitFor();
    await B.locator('#message-list .receipt', { hasText: 'Seen' }).waitFor();
    await A.locator('#input').fill('wh');
    await B.locator('#typing', { hasText: 'alice is typing…' }).waitFor();
    await say(A, 'what?');
    await B.locator('#message-list .msg', { hasText: 'what?' }).waitFor();
  });

  await step('alice edits and deletes her own message; bob sees both', async () => {
    const id = await A.locator('#message-list .msg', { hasText: 'what?' }).getAttribute('data-id');
    const mine = A.locator(`#message-list .msg[data-id="${id}"]`);
    await mine.hover();
    await mine.getByRole('button', { name: /^Edit/ }).click();
    const editor = mine.locator('textarea');
    await editor.fill('what is it?');
    await editor.press('Enter');
    await B.locator('#message-list .msg', { hasText: 'what is it? (edited)' }).waitFor();
    // ↑ in the empty composer edits the last own message; Esc cancels.
    await A.locator('#input').press('ArrowUp');
    await A.locator('#message-list .editor textarea').waitFor();
    await A.keyboard.press('Escape');
    await until('editor closed', async () => (await A.locator('#message-list .editor').count()) === 0);
    A.once('dialog', (d) => d.accept());
    await mine.hover();
    await mine.getByRole('button', { name: /^Delete/ }).click();
    await B.locator('#message-list .msg.deleted', { hasText: 'This message was deleted.' }).waitFor();
    check(!(await texts(B)).some((t) => t.includes('what is it?')), 'deleted text gone');
    check(await B.locator('#message-list .msg', { hasText: 'psst, alice' }).getByRole('button', { name: /^Edit/ }).count() === 1,
      'bob may edit his own message');
    check(await B.locator('#message-list .msg.deleted .msg-actions button').count() === 0, 'no controls on deleted');
  });

  await step('history: the last 50 on join, older pages on scroll, each message once', async () => {
    check((await api('POST', '/api/rooms', { name: 'archive', topic: 'Old things' })).status === 201, 'room created');
    for (let i = 1; i <= 120; i++) {
      const r = await api('POST', '/api/rooms/archive/messages', { text: `archive message ${i}`, from: 'historian' });
      check(r.status === 201, `publish ${i}: ${JSON.stringify(r.body)}`);
    }
    await A.locator('#join-name').fill('archive');
    await A.locator('#join-name').press('Enter');
    await A.locator('#conv-name', { hasText: 'archive' }).waitFor();
    await until('50 messages', async () => (await texts(A)).length === 50);
    const first = await texts(A);
    check(first[0] === 'archive message 71' && first[49] === 'archive message 120', `last 50: ${first[0]} … ${first[49]}`);
    for (let i = 0; i < 10 && (await texts(A)).length < 120; i++) {
      await A.locator('#messages').evaluate((el) => { el.scrollTop = 0; });
      await A.waitForTimeout(300);
    }
    const all = await texts(A);
    check(all.length === 120, `120 after scrolling, got ${all.length}`);
    check(all.every((t, i) => t === `archive message ${i + 1}`), 'in order, no duplicate, no gap');
    await A.locator('#message-list .start', { hasText: 'This is the start of archive.' }).waitFor();
  });

  await step('errors in words: rate_limited, nick_taken', async () => {
    await A.locator('#join-name').fill('flood');
    await A.locator('#join-name').press('Enter');
    await A.locator('#conv-name', { hasText: 'flood' }).waitFor();
    await A.evaluate(() => {
      const input = document.getElementById('input');
      const form = document.getElementById('composer');
      for (let i = 0; i < 40; i++) {
        input.value = `flood ${i}`;
        form.requestSubmit();
      }
    });
    await A.locator('.toast', { hasText: 'You are sending too fast. Wait' }).first().waitFor();
    check(await A.locator('.toast', { hasText: 'too fast' }).count() === 1, 'one toast for a burst of the same error');
    await A.locator('#leave').click();
    await until('flood left', async () => (await A.locator('#room-list .conv', { hasText: 'flood' }).count()) === 0);
    check((await A.locator('#conv-name').textContent()) !== 'flood', 'another conversation shown');
    const twin = await user(browser, 'twin');
    await twin.page.goto(env.url);
    await twin.page.locator('#login-nick').fill('alice');
    await twin.page.locator('#login-nick').press('Enter');
    await twin.page.locator('#login-error', { hasText: 'That nick is taken' }).waitFor();
    await twin.context.close();
  });

  await step('accounts: create, log out, wrong password, sign in', async () => {
    const dave = await user(browser, 'dave');
    const D = dave.page;
    await D.goto(env.url);
    await D.locator('#tab-account').click();
    await D.locator('#login-nick').fill('dave');
    await D.locator('#login-password').fill('correct horse battery');
    await D.locator('#register').click();
    await D.locator('#me-nick', { hasText: '@dave' }).waitFor();
    check(!(await D.locator('#me-nick').textContent()).includes('guest'), 'not a guest');
    await D.locator('#logout').click();
    await D.locator('#login-form').waitFor();
    await D.locator('#tab-account').click();
    await D.locator('#login-nick').fill('dave');
    await D.locator('#login-password').fill('wrong password');
    await D.locator('#login-submit').click();
    await D.locator('#login-error', { hasText: 'Wrong nick or password.' }).waitFor();
    await D.locator('#login-password').fill('correct horse battery');
    await D.locator('#login-submit').click();
    await D.locator('#me-nick', { hasText: '@dave' }).waitFor();
    await D.reload();
    await D.locator('#me-nick', { hasText: '@dave' }).waitFor(); // the session token was kept
    await dave.context.close();
  });

  await step('notifications: asked for when turned on, shown while the tab is hidden', async () => {
    const nora = await user(browser, 'nora');
    const N = nora.page;
    await N.addInitScript(() => {
      window.__asked = 0;
      window.__shown = [];
      let hidden = false;
      window.__hide = () => { hidden = true; document.dispatchEvent(new Event('visibilitychange')); };
      Object.defineProperty(document, 'visibilityState', { get: () => (hidden ? 'hidden' : 'visible') });
      class FakeNotification {
        static permission = 'default';
        static async requestPermission() { window.__asked += 1; FakeNotification.permission = 'granted'; return 'granted'; }
        constructor(title, options) { window.__shown.push({ title, body: options.body }); }
        close() {}
      }
      window.Notification = FakeNotification;
    });
    await guest(nora, 'nora');
    check(await N.evaluate(() => window.__asked) === 0, 'no permission asked on load');
    await N.locator('#notify').click();
    await N.locator('#notify', { hasText: 'Notifications: on' }).waitFor();
    check(await N.evaluate(() => window.__asked) === 1, 'asked once when turned on');
    await N.evaluate(() => window.__hide());
    await openConv(B, 'lobby');
    // The default choice (settings.notify "mentions"): DMs and mentions only.
    await say(B, 'just chatting');
    await say(B, 'ping for @nora');
    await until('a notification', async () => (await N.evaluate(() => window.__shown)).length > 0);
    const shown = await N.evaluate(() => window.__shown);
    check(shown.length === 1, `only the mention notified: ${JSON.stringify(shown)}`);
    const [n] = shown;
    check(n.title.includes('bob') && n.body === 'ping for @nora', `notification: ${JSON.stringify(n)}`);
    await nora.context.close();
  });

  await step('keyboard alone: sign in, create a room, write, switch conversations', async () => {
    const kim = await user(browser, 'kim');
    const K = kim.page;
    await K.goto(env.url);
    await K.keyboard.type('kim');
    await K.keyboard.press('Enter');
    await K.locator('#conv-name', { hasText: 'lobby' }).waitFor();
    let reached = false;
    for (let i = 0; i < 40 && !reached; i++) {
      await K.keyboard.press('Tab');
      reached = await K.evaluate(() => document.activeElement?.id === 'join-name');
    }
    check(reached, 'Tab reaches the room field');
    await K.keyboard.type('kbd');
    await K.keyboard.press('Enter');
    await K.locator('#conv-name', { hasText: 'kbd' }).waitFor();
    await until('composer focused', async () => K.evaluate(() => document.activeElement?.id === 'input'));
    await K.keyboard.type('typed with keys only');
    await K.keyboard.press('Enter');
    await K.locator('#message-list .msg', { hasText: 'typed with keys only' }).waitFor();
    // Rooms in order (kbd, lobby), then Everyone: Alt+↓ goes on, Alt+↑ back.
    await K.keyboard.press('Alt+ArrowDown');
    await K.locator('#conv-name', { hasText: 'lobby' }).waitFor();
    await K.keyboard.press('Alt+ArrowDown');
    await K.locator('#conv-name', { hasText: 'Everyone' }).waitFor();
    await K.keyboard.press('Alt+ArrowUp');
    await K.locator('#conv-name', { hasText: 'lobby' }).waitFor();
    await kim.context.close();
    await A.locator('#room-list .conv', { hasText: 'lobby' }).click();
    await A.locator('#message-list .event', { hasText: 'kim went offline' }).waitFor();
  });

  await step('screenshots, light and dark', async () => {
    for (const P of [A, B]) {
      await P.locator('#join-name').fill('design');
      await P.locator('#join-name').press('Enter');
      await P.locator('#conv-name', { hasText: 'design' }).waitFor();
    }
    await A.locator('#edit-topic').click();
    await A.locator('#topic-input').fill('New onboarding flow · review on Thursday');
    await A.locator('#topic-input').press('Enter');
    await B.locator('#conv-sub', { hasText: 'onboarding' }).waitFor();
    const lines = [
      [B, 'Morning! I pushed the new sign-up screens to the staging server.'],
      [A, 'Nice, looking now.'],
      [A, 'The dark mode colours are much better than last week.'],
      [B, 'Thanks! Still unsure about the empty state — too much text?'],
      [A, 'A little. Could we cut the second paragraph and keep the button?'],
    ];
    for (const [P, text] of lines) {
      await say(P, text);
      await A.locator('#message-list .msg', { hasText: text }).waitFor();
      await B.locator('#message-list .msg', { hasText: text }).waitFor();
    }
    await B.locator('#input').fill('Good idea, I');
    await A.locator('#typing', { hasText: 'bob is typing…' }).waitFor();
    toDocs(await shot(A, 'desktop-light'));
    await shot(B, 'desktop-dark');
    await B.locator('#input').fill('');
  });

  await step('375 px: no sideways scrolling, drawer and member list work', async () => {
    for (const dark of [false, true]) {
      const pat = await guest(await user(browser, dark ? 'pat-dark' : 'pat', { width: 375, height: 740, mobile: true, dark }), dark ? 'patd' : 'pat');
      const P = pat.page;
      await P.locator('#conv-name', { hasText: 'lobby' }).waitFor();
      await say(P, 'hello from a small screen, with a long line that has to wrap nicely without scrolling sideways');
      await P.locator('#message-list .msg.own', { hasText: 'small screen' }).waitFor();
      const fits = await P.evaluate(() => document.documentElement.scrollWidth <= innerWidth
        && [...document.querySelectorAll('#composer, #send, .conv-head, #message-list .msg')]
          .every((el) => el.getBoundingClientRect().right <= innerWidth + 0.5));
      check(fits, 'everything fits in 375 px');
      check(await P.locator('#sidebar').isHidden(), 'sidebar starts closed');
      await shot(P, dark ? 'phone-dark' : 'phone-light');
      await P.locator('#open-sidebar').click();
      await P.locator('#room-list .conv', { hasText: 'lobby' }).waitFor({ state: 'visible' });
      await P.waitForTimeout(250);
      if (!dark) await shot(P, 'phone-drawer');
      await P.keyboard.press('Escape');
      await until('drawer closed', async () => P.locator('#sidebar').isHidden());
      await P.locator('#toggle-members').click();
      await P.locator('#member-list', { hasText: '@alice' }).waitFor({ state: 'visible' });
      if (!dark) await shot(P, 'phone-members');
      await P.keyboard.press('Escape');
      await pat.context.close();
    }
  });
  log('chat: all steps passed');
});
