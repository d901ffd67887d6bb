// xss.mjs — hostile text stays text: a display name (from a site token's
// `name` claim; nicks cannot hold markup), a room topic, a message and a
// file name full of HTML are shown literally to their author and to another
// user, and no script runs. Also: `?token=` sign-in (the token leaves the address bar)
// and `forbidden` in words for a room outside the token's `rooms`.

import { run, step, user, guest, say, texts, until, check, siteToken, env, shot, pdf } from './lib.mjs';

const NAME = '<img src=x onerror="window.__xss=\'name\'">Mallory';
const TOPIC = '<script>window.__xss="topic"</script><b>bold topic</b>';
const TEXT = '<img src=x onerror="window.__xss=\'msg\'"> <a href="javascript:window.__xss=1">click</a> <style>body{display:none}</style>';

await run(async (browser) => {
  const mallory = await user(browser, 'mallory');
  const M = mallory.page;
  const token = siteToken({ sub: '666', nick: 'mallory', name: NAME });

  await step('a site token in ?token= signs in, and leaves the address bar', async () => {
    await M.goto(`${env.url}/?room=xss&token=${encodeURIComponent(token)}`);
    await M.locator('#conv-name', { hasText: 'xss' }).waitFor();
    check(!M.url().includes('token='), `token removed from ${M.url()}`);
    check(M.url().includes('room=xss'), 'other parameters kept');
    check((await M.locator('#me-name').textContent()) === NAME, 'display name shown as text');
  });

  const victor = await guest(await user(browser, 'victor'), 'victor', '/?room=xss');
  const V = victor.page;

  await step('hostile topic and message are sent', async () => {
    await V.locator('#conv-name', { hasText: 'xss' }).waitFor();
    await M.locator('#edit-topic').click();
    await M.locator('#topic-input').fill(TOPIC);
    await M.locator('#topic-input').press('Enter');
    await say(M, TEXT);
    await V.locator('#message-list .msg', { hasText: 'click' }).waitFor();
  });

  await step('…and shown literally, inert, to both', async () => {
    for (const P of [M, V]) {
      await P.locator('#conv-sub', { hasText: 'bold topic' }).waitFor();
      check((await P.locator('#conv-sub').textContent()) === TOPIC, 'topic literal');
      check((await texts(P)).includes(TEXT), 'message literal');
      const from = await P.locator('#message-list .msg', { hasText: 'click' }).locator('.from').textContent();
      check(from === NAME, `sender literal: ${from}`);
      await P.locator('#member-list', { hasText: 'Mallory' }).waitFor();
      check((await P.locator('#member-list .name', { hasText: 'Mallory' }).textContent()) === NAME, 'member name literal');
      const found = await P.evaluate(() => ({
        xss: window.__xss,
        imgs: document.querySelectorAll('#message-list img:not(.avatar img), #conv-sub *, #member-list .name *').length,
        links: document.querySelectorAll('#app a').length,
        scripts: document.querySelectorAll('body script').length,
        styles: document.querySelectorAll('body style').length,
        visible: getComputedStyle(document.body).display !== 'none',
      }));
      check(found.xss === undefined, `no script ran: ${found.xss}`);
      check(found.imgs === 0 && found.links === 0 && found.scripts === 0 && found.styles === 0, `no markup: ${JSON.stringify(found)}`);
      check(found.visible, 'page still visible');
    }
    await V.locator('#message-list .event', { hasText: `${NAME} set the topic:` }).waitFor();
    await shot(V, 'xss-inert');
  });

  await step('a file name full of HTML is shown as text on the card, the tray and the link', async () => {
    // No `"` (a browser sends it as %22) and no `/` (the server keeps the last path component).
    const name = '<img src=x onerror=window.__xss=\'file\'><b>notes.pdf';
    await M.locator('#file-input').setInputFiles({ name, mimeType: 'application/pdf', buffer: pdf() });
    await until('uploaded', async () => (await M.locator('#tray .tray-item').getAttribute('data-state')) === 'done');
    check((await M.locator('#tray .att-name').textContent()) === name, 'tray: literal');
    await M.locator('#send').click();
    const card = V.locator('#message-list a.att-file').last();
    await card.waitFor();
    check((await card.locator('.att-name').textContent()) === name, 'card: literal');
    check((await card.getAttribute('download')) === name, 'download name: literal');
    check(/\/files\/[0-9a-f]{32}$/.test(await card.getAttribute('href')), 'the link is the server\'s path');
    check((await V.locator('#message-list .attachments img').count()) === 0, 'no image made from the name');
  });

  await step('a room outside the token\'s rooms: forbidden, in words', async () => {
    const trent = await user(browser, 'trent');
    const T = trent.page;
    await T.goto(`${env.url}/?token=${encodeURIComponent(siteToken({ sub: '7', nick: 'trent', name: 'Trent', rooms: ['support'] }))}`);
    await T.locator('#conv-name', { hasText: 'No conversation open' }).waitFor(); // lobby is not his
    await T.locator('#join-name').fill('support');
    await T.locator('#join-name').press('Enter');
    await T.locator('#conv-name', { hasText: 'support' }).waitFor();
    await T.locator('#join-name').fill('xss');
    await T.locator('#join-name').press('Enter');
    await T.locator('.toast', { hasText: 'Could not join xss: You are not allowed to do that.' }).waitFor();
    await trent.context.close();
  });

  await step('an expired site token: sent back to sign in, with words', async () => {
    const old = await user(browser, 'expired');
    await old.page.goto(`${env.url}/?token=${siteToken({ sub: '8', nick: 'olduser', exp: 1000 })}`);
    await old.page.locator('#login-error', { hasText: 'expired' }).waitFor();
    await old.context.close();
  });
  await until('nothing ran later either', async () => (await M.evaluate(() => window.__xss)) === undefined);
});
