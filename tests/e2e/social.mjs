// social.mjs — reactions, replies and search in the web client (issue 18,
// items 2 and 3): the action bar on every message (react, reply, copy link;
// edit and delete on one's own), reactions shown to everyone and toggled
// with a click, a reply carrying the quote of its message (a click on it
// shows the original), a copied link that opens the message, and search
// results that open the message in context with history loaded around it,
// never showing what the searcher may not read.

import { run, step, user, guest, say, until, check, shot, api, env } from './lib.mjs';

await run(async (browser) => {
  const alice = await guest(await user(browser, 'alice', { perms: ['clipboard-read', 'clipboard-write'] }), 'alice');
  const bob = await guest(await user(browser, 'bob', { dark: true }), 'bob');
  const A = alice.page;
  const B = bob.page;
  await A.locator('#member-list button[data-nick="bob"]').waitFor();
  await say(B, 'Who wants to review the release notes?');
  await A.locator('#message-list .msg', { hasText: 'Who wants to review' }).waitFor();
  // By id: a reply quoting it has the same words.
  const msgId = await A.locator('#message-list .msg', { hasText: 'Who wants to review' }).getAttribute('data-id');
  const onA = A.locator(`#message-list .msg[data-id="${msgId}"]`);
  const onB = B.locator(`#message-list .msg[data-id="${msgId}"]`);

  await step('the action bar: react, reply, copy link on others\' messages; edit and delete on one\'s own', async () => {
    await onA.hover();
    const names = await onA.locator('.msg-actions button').allTextContents();
    check(names.join('|') === '☺|Reply|Copy link', `on bob's message: ${names}`);
    await say(A, 'my own line');
    const own = A.locator('#message-list .msg', { hasText: 'my own line' });
    await own.hover();
    const mine = await own.locator('.msg-actions button').allTextContents();
    check(mine.join('|') === '☺|Reply|Copy link|Edit|Delete', `on her own: ${mine}`);
  });

  await step('a reaction from the picker shows for both; a click adds or takes back one\'s own', async () => {
    await onA.hover();
    await onA.getByRole('button', { name: 'React' }).click();
    await A.locator('#emoji-picker[open]').waitFor();
    await A.locator('#emoji-grid button[aria-label="+1"]').click();
    const mineA = onA.locator('.reaction', { hasText: '👍' });
    await until('alice sees her reaction', async () => (await mineA.locator('.n').textContent()) === '1');
    check((await mineA.getAttribute('aria-pressed')) === 'true', 'pressed for her');
    const onBReaction = onB.locator('.reaction', { hasText: '👍' });
    await until('bob sees it', async () => (await onBReaction.locator('.n').textContent()) === '1');
    check((await onBReaction.getAttribute('aria-pressed')) === 'false' && (await onBReaction.getAttribute('title')) === 'alice', 'not his, and says who');
    await onBReaction.click();
    await until('two on alice\'s side', async () => (await mineA.locator('.n').textContent()) === '2');
    check((await mineA.getAttribute('title')) === 'alice, bob', 'both named');
    await mineA.click();
    await until('back to one, bob\'s', async () => (await onBReaction.locator('.n').textContent()) === '1' && (await onBReaction.getAttribute('aria-pressed')) === 'true');
    check((await mineA.getAttribute('aria-pressed')) === 'false', 'hers is gone');
  });

  await step('reactions come back with history after a reload', async () => {
    await B.reload();
    await until('the reaction is there again', async () =>
      (await onB.locator('.reaction', { hasText: '👍' }).locator('.n').textContent()) === '1');
  });

  await step('a reply carries the quote; a click on it shows the original', async () => {
    await onA.hover();
    await onA.getByRole('button', { name: 'Reply' }).click();
    await A.locator('#reply-bar', { hasText: 'Replying to bob' }).waitFor();
    check((await A.locator('#reply-text').textContent()) === 'Who wants to review the release notes?', 'the bar quotes it');
    await A.locator('#input').fill('I will, after lunch');
    await A.locator('#input').press('Enter');
    await A.locator('#reply-bar').waitFor({ state: 'hidden' });
    const reply = B.locator('#message-list .msg', { hasText: 'I will, after lunch' });
    await reply.waitFor();
    const quote = reply.locator('.reply-quote');
    check((await quote.locator('.reply-from').textContent()) === 'bob', 'quoted author');
    check((await quote.locator('.reply-text').textContent()) === 'Who wants to review the release notes?', 'quoted text');
    for (let i = 0; i < 30; i++) await api('POST', '/api/rooms/lobby/messages', { text: `filler ${i}`, from: 'bot' });
    await B.locator('#message-list .msg', { hasText: 'filler 29' }).waitFor();
    await B.locator('#messages').evaluate((m) => { m.scrollTop = m.scrollHeight; });
    await quote.click();
    await onB.and(B.locator('.flash')).waitFor();
    check(await onB.isVisible() && (await onB.boundingBox()).y > 0, 'the original is in view');
    await shot(B, 'social-reply');
  });

  let link;
  await step('copy link: a URL that opens the message', async () => {
    await onA.hover();
    await onA.getByRole('button', { name: 'Copy link' }).click();
    await A.locator('.toast', { hasText: 'Link copied.' }).waitFor();
    link = await A.evaluate(() => navigator.clipboard.readText());
    const seq = await onA.getAttribute('data-seq');
    check(link === `${env.url}/?room=lobby&seq=${seq}`, `link: ${link}`);
    const carol = await user(browser, 'carol');
    await carol.page.goto(link);
    await carol.page.locator('#login-nick').fill('carol');
    await carol.page.locator('#login-nick').press('Enter');
    await carol.page.locator(`#message-list .msg.flash[data-id="${msgId}"]`).waitFor();
    await carol.context.close();
  });

  await step('search: results with the words marked; a click opens the message in context', async () => {
    check((await api('POST', '/api/rooms', { name: 'archive', topic: 'Old things' })).status === 201, 'room created');
    for (let i = 1; i <= 150; i++) {
      const text = i === 7 ? 'the quarterly budget spreadsheet is final' : `archive message ${i}`;
      check((await api('POST', '/api/rooms/archive/messages', { text, from: 'historian' })).status === 201, 'publish');
    }
    await A.keyboard.press('Control+k');
    await A.locator('#search-dialog[open]').waitFor();
    check(await A.evaluate(() => document.activeElement?.id) === 'search-q', 'the focus is in the search box');
    await A.locator('#search-q').fill('budget spreadsheet');
    await A.locator('#search-q').press('Enter');
    const hit = A.locator('#search-results .search-hit', { hasText: 'quarterly' });
    await hit.waitFor();
    check((await hit.locator('mark').allTextContents()).join('|') === 'budget|spreadsheet', 'the words are marked');
    check((await hit.locator('.hit-where').textContent()) === '#archive', 'where');
    await shot(A, 'social-search');
    await hit.click();
    await A.locator('#conv-name', { hasText: 'archive' }).waitFor();
    const found = A.locator('#message-list .msg.flash', { hasText: 'quarterly budget' });
    await found.waitFor();
    for (const around of ['archive message 6', 'archive message 8', 'archive message 30']) {
      check((await A.locator('#message-list .msg .text').getByText(around, { exact: true }).count()) === 1, `${around} is loaded around it`);
    }
    check(await found.isVisible(), 'in view');
  });

  await step('search never shows someone else\'s DM', async () => {
    const dave = await guest(await user(browser, 'dave'), 'dave');
    await say(B, '/msg dave the secret word is marmalade');
    await dave.page.locator('#dm-list .conv', { hasText: 'bob' }).waitFor();
    await A.keyboard.press('Control+k');
    await A.locator('#search-q').fill('marmalade');
    await A.locator('#search-q').press('Enter');
    await A.locator('#search-status', { hasText: 'Nothing found.' }).waitFor();
    await B.keyboard.press('Control+k');
    await B.locator('#search-q').fill('marmalade');
    await B.locator('#search-q').press('Enter');
    await B.locator('#search-results .search-hit', { hasText: 'marmalade' }).waitFor();
    await A.keyboard.press('Escape');
  });
});
