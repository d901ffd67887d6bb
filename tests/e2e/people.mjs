// people.mjs — presence and people (issue 18, item 5): away shown in a
// room's member list, set and cleared from the sidebar and by itself after
// idle time; a person's card on a click (name, status, picture, online /
// away / last seen) with "Send a message"; messages to everyone from the
// sidebar's Everyone and with /all in the composer.

import { run, step, user, guest, say, until, check, shot, env } from './lib.mjs';

const PASSWORD = 'a long enough password';

await run(async (browser) => {
  // bob is an account with a status line; alice is a guest.
  const reg = await fetch(`${env.url}/api/register`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ nick: 'bob', password: PASSWORD }),
  }).then((r) => r.json());
  await fetch(`${env.url}/api/me`, {
    method: 'PATCH', headers: { Authorization: `Bearer ${reg.token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ display_name: 'Bob Builder', status: 'Fixing the roof' }),
  });
  const alice = await guest(await user(browser, 'alice'), 'alice');
  const A = alice.page;
  // bob's page can fast-forward its clock (idle time).
  const bob = await user(browser, 'bob');
  const B = bob.page;
  await B.clock.install();
  await B.goto(`${env.url}/?token=${encodeURIComponent(reg.token)}`);
  await B.locator('#conv-name', { hasText: 'lobby' }).waitFor();
  const bobInList = A.locator('#member-list button[data-nick="bob"]');
  await bobInList.waitFor();

  await step('away from the sidebar: alice sees it in the member list, and back', async () => {
    check((await bobInList.locator('.dot').getAttribute('class')).includes('online'), 'online first');
    await B.locator('#away').click();
    check((await B.locator('#away').getAttribute('aria-pressed')) === 'true', 'bob\'s button says away');
    await until('away in alice\'s member list', async () => (await bobInList.locator('.dot').getAttribute('class')).includes('away'));
    check((await bobInList.locator('.sub').textContent()).includes('away'), 'in words too');
    await B.locator('#away').click();
    await until('back', async () => (await bobInList.locator('.dot').getAttribute('class')).includes('online'));
  });

  await step('away by itself after 10 minutes idle, back at the next key press', async () => {
    await B.clock.fastForward('10:05');
    await until('auto-away shows', async () => (await bobInList.locator('.dot').getAttribute('class')).includes('away'));
    check((await B.locator('#away').getAttribute('aria-pressed')) === 'true', 'bob\'s page knows');
    await B.locator('#input').press('a');
    await until('back', async () => (await bobInList.locator('.dot').getAttribute('class')).includes('online'));
    await B.locator('#input').fill('');
  });

  await step('a click on a member shows the card: name, status, presence, picture; Esc closes it', async () => {
    await bobInList.click();
    const card = A.locator('#person-card[open]');
    await card.waitFor();
    check((await card.locator('#card-name').textContent()) === 'Bob Builder', 'display name');
    check((await card.locator('#card-nick').textContent()) === '@bob', 'nick');
    check((await card.locator('#card-status').textContent()) === 'Fixing the roof', 'status line');
    await until('online', async () => (await card.locator('#card-presence').textContent()).trim() === 'Online');
    check((await card.locator('#card-avatar').textContent()) === 'B', 'the initial for a picture');
    check(await A.evaluate(() => document.activeElement?.id) === 'card-dm', 'the focus is on its action');
    await shot(A, 'people-card');
    await A.keyboard.press('Escape');
    await until('closed', async () => (await A.locator('#person-card[open]').count()) === 0);
    check(await A.evaluate(() => document.activeElement?.dataset?.nick) === 'bob', 'the focus went back to the member');
  });

  await step('the card from a message\'s author; "Send a message" starts the DM', async () => {
    await say(B, 'hello from bob');
    const msg = A.locator('#message-list .msg', { hasText: 'hello from bob' });
    await msg.locator('button.from').click();
    await A.locator('#person-card[open]').waitFor();
    await A.locator('#card-dm').click();
    await A.locator('#conv-name', { hasText: 'Bob Builder' }).waitFor();
    check(await A.evaluate(() => document.activeElement?.id) === 'input', 'ready to write');
    check(await A.locator('#members').isHidden(), 'no empty member panel in a DM');
    await say(A, 'a private hello');
    await B.locator('#dm-list .conv', { hasText: 'alice' }).waitFor();
  });

  await step('last seen on the card once bob is gone', async () => {
    await bob.context.close();
    await A.locator('#room-list .conv', { hasText: 'lobby' }).click();
    const msg = A.locator('#message-list .msg', { hasText: 'hello from bob' });
    await msg.locator('button.from').click();
    await until('last seen', async () => /^Last seen (just now|now|\d+ seconds? ago)$/.test((await A.locator('#card-presence').textContent()).trim()));
    check(await A.locator('#card-dm').isVisible(), 'a DM can still be started');
    await A.locator('#card-close').click();
  });

  await step('to everyone: the Everyone conversation and /all', async () => {
    const carol = await guest(await user(browser, 'carol'), 'carol');
    const C = carol.page;
    await A.locator('#dm-list .conv', { hasText: 'Everyone' }).click();
    await A.locator('#conv-name', { hasText: 'Everyone' }).waitFor();
    check(await A.locator('#members').isHidden() && await A.locator('#toggle-members').isHidden(), 'no member panel for Everyone');
    await say(A, 'hello, everybody');
    await C.locator('#dm-list .conv', { hasText: 'Everyone' }).locator('.badge').waitFor();
    await A.locator('#room-list .conv', { hasText: 'lobby' }).click();
    await say(A, '/all one more for everyone');
    await C.locator('#dm-list .conv', { hasText: 'Everyone' }).click();
    await C.locator('#message-list .msg', { hasText: 'one more for everyone' }).waitFor();
    check((await C.locator('#message-list .msg', { hasText: 'hello, everybody' }).count()) === 1, 'both there');
    check((await A.locator('#message-list .msg', { hasText: 'one more for everyone' }).count()) === 0, '/all did not go to the room');
  });
});
