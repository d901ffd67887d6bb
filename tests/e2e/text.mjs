// text.mjs — what a message's text becomes (issue 18, items 1 and 4):
// links that open safely (http, https, mailto only), the formatting subset
// (bold, italic, code, fenced blocks, quotes, line breaks) built without
// HTML, `/me` as an action, emoji from shortcodes and from the picker,
// right-to-left text laid out right to left; and reading: the unread
// divider with "jump to the first unread", read receipts in a room, and a
// day separator per day.

import { run, step, user, guest, say, until, check, shot, api, env } from './lib.mjs';

await run(async (browser) => {
  const alice = await guest(await user(browser, 'alice'), 'alice');
  const bob = await guest(await user(browser, 'bob', { dark: true }), 'bob');
  const A = alice.page;
  const B = bob.page;
  await A.locator('#member-list button[data-nick="bob"]').waitFor();

  await step('links: http, https and mailto open in a new tab without a referrer; javascript: stays text', async () => {
    await say(B, 'see https://example.com/docs?a=1&b=2, (also http://example.org/x_(y)) or mailto:help@example.com — not javascript:alert(1) nor data:text/html,hi');
    const msg = A.locator('#message-list .msg', { hasText: 'see https://example.com' });
    await msg.waitFor();
    const links = await msg.locator('.text a').evaluateAll((as) => as.map((a) => ({ href: a.href, text: a.textContent, rel: a.rel, target: a.target })));
    check(links.length === 3, `three links: ${JSON.stringify(links)}`);
    check(links[0].href === 'https://example.com/docs?a=1&b=2' && links[0].text === 'https://example.com/docs?a=1&b=2', `the comma is not part of it: ${JSON.stringify(links[0])}`);
    check(links[1].href === 'http://example.org/x_(y)', `balanced parentheses kept, the closing one dropped: ${links[1].href}`);
    check(links[2].href === 'mailto:help@example.com', `mailto: ${links[2].href}`);
    check(links.every((l) => l.rel === 'noopener noreferrer' && l.target === '_blank'), 'rel and target on every link');
    check((await msg.locator('.text').textContent()).includes('javascript:alert(1) nor data:text/html,hi'), 'the rest is text');
  });

  await step('formatting: bold, italic, code, a fenced block, a quote and line breaks, as elements, never parsed HTML', async () => {
    const text = [
      'Release **notes** for *today* and _tomorrow_: run `make <b>all</b>` first',
      '> the build is green',
      '> mostly',
      '```',
      'fn main() { println!("<i>hi</i>"); }',
      '```',
      'second line',
      'snake_case_names and 2*3*4 stay as they are',
    ].join('\n');
    await B.locator('#input').fill(text);
    await B.locator('#input').press('Enter');
    const msg = A.locator('#message-list .msg', { hasText: 'Release' });
    await msg.waitFor();
    const t = msg.locator('.text');
    check((await t.locator('strong').allTextContents()).join('|') === 'notes|today', `bold: ${await t.locator('strong').allTextContents()}`);
    check((await t.locator('em').allTextContents()).join('|') === 'tomorrow', 'italic');
    check((await t.locator(':scope > .para code').first().textContent()) === 'make <b>all</b>', 'inline code keeps its text');
    check((await t.locator('b, i').count()) === 0, 'no element from the text\'s own tags');
    check((await t.locator('blockquote').textContent()) === 'the build is greenmostly', 'one quote of two lines');
    check((await t.locator('blockquote br').count()) === 1, 'the quote keeps its line break');
    check((await t.locator('pre code').textContent()) === 'fn main() { println!("<i>hi</i>"); }', 'the fenced block, verbatim');
    check((await t.textContent()).includes('snake_case_names and 2*3*4 stay as they are'), 'underscores inside words and lone stars are text');
    check(await t.getAttribute('dir') === 'auto', 'dir="auto"');
  });

  await step('/me is an action; shortcodes become emoji; the picker puts one at the caret', async () => {
    await say(B, '/me waves :wave: :tada: :nonsense:');
    const action = A.locator('#message-list .msg.action');
    await action.waitFor();
    check((await action.locator('.text').textContent()) === '* bob waves 👋 🎉 :nonsense:', `action: ${await action.locator('.text').textContent()}`);
    await A.locator('#input').fill('nice ');
    await A.locator('#emoji-open').click();
    await A.locator('#emoji-picker[open]').waitFor();
    check(await A.evaluate(() => document.activeElement?.classList.contains('emoji-btn')), 'the focus is in the picker');
    await A.keyboard.press('ArrowRight');
    check(await A.evaluate(() => document.activeElement?.textContent) === '😂', 'arrow keys move');
    await A.keyboard.press('Escape');
    await until('Esc closes it', async () => (await A.locator('#emoji-picker[open]').count()) === 0);
    check(await A.evaluate(() => document.activeElement?.id) === 'emoji-open', 'the focus is back on the button');
    await A.locator('#emoji-open').click();
    await A.locator('#emoji-grid button[aria-label="tada"]').click();
    check((await A.locator('#input').inputValue()) === 'nice 🎉', `inserted: ${await A.locator('#input').inputValue()}`);
    await A.locator('#input').press('Enter');
    await B.locator('#message-list .msg', { hasText: 'nice 🎉' }).waitFor();
  });

  await step('right-to-left text is laid out right to left', async () => {
    await say(B, 'שלום לכולם, מה שלומכם?');
    const msg = A.locator('#message-list .msg', { hasText: 'שלום' });
    await msg.waitFor();
    const dir = await msg.locator('.text').evaluate((el) => getComputedStyle(el).direction);
    check(dir === 'rtl', `direction: ${dir}`);
    const ltr = await A.locator('#message-list .msg', { hasText: 'nice 🎉' }).locator('.text').evaluate((el) => getComputedStyle(el).direction);
    check(ltr === 'ltr', 'left-to-right stays');
    await shot(A, 'text-formatting');
  });

  await step('read receipts in a room: who has seen up to where', async () => {
    await say(A, 'did everyone read this?');
    // bob has the room open at its bottom: his client says how far he read.
    const where = () => A.locator('#message-list li').evaluateAll((lis) => {
      const seen = lis.filter((li) => li.classList.contains('seen'));
      return seen.map((s) => [s.previousElementSibling?.textContent || '', s.textContent]);
    });
    const seen = await until('bob has seen it', async () => {
      const w = await where();
      return w.length === 1 && w[0][0].includes('did everyone read this?') ? w : null;
    });
    check(seen[0][1] === 'Seen by bob', `one receipt, right under the last message bob read: ${JSON.stringify(seen)}`);
  });

  await step('unread divider and "jump to the first unread"; the counts clear', async () => {
    await A.locator('#join-name').fill('elsewhere');
    await A.locator('#join-name').press('Enter');
    await A.locator('#conv-name', { hasText: 'elsewhere' }).waitFor();
    for (let i = 1; i <= 40; i++) check((await api('POST', '/api/rooms/lobby/messages', { text: `unread line ${i}`, from: 'bot' })).status === 201, 'publish');
    const badge = A.locator('#room-list .conv', { hasText: 'lobby' }).locator('.badge');
    await until('40 unread', async () => (await badge.textContent()) === '40');
    await A.locator('#room-list .conv', { hasText: 'lobby' }).click();
    const divider = A.locator('#message-list .divider');
    await divider.waitFor();
    const next = await A.locator('#message-list li.divider + li').textContent();
    check(next.includes('unread line 1') && !next.includes('unread line 10'), `the divider is just above the first unread: ${next}`);
    check(await divider.isVisible() && (await divider.boundingBox()).y < 200, 'opened at the divider, not at the bottom');
    await A.locator('#messages').evaluate((m) => { m.scrollTop = m.scrollHeight; });
    await A.locator('#unread-bar').waitFor();
    await A.locator('#jump-unread').click();
    await until('back at the divider', async () => {
      const box = await divider.boundingBox();
      const pane = await A.locator('#messages').boundingBox();
      return box && box.y >= pane.y - 2 && box.y < pane.y + 60;
    });
    await A.locator('#unread-bar').waitFor({ state: 'hidden' });
    check((await badge.count()) === 0, 'the count cleared');
    await A.locator('#mark-read').evaluate((b) => b.click());
    await until('Mark as read removes the divider', async () => (await divider.count()) === 0);
  });

  await step('a day separator for each day (the browser\'s clock a day and a week on)', async () => {
    const day = A.locator('#message-list .day').first();
    check((await day.textContent()) === 'Today', 'today');
    const carol = await user(browser, 'carol');
    await carol.page.clock.install({ time: Date.now() + 86_400_000 });
    await guest(carol, 'carol');
    await carol.page.locator('#conv-name', { hasText: 'lobby' }).waitFor();
    await carol.page.locator('#message-list .day', { hasText: 'Yesterday' }).first().waitFor();
    await carol.context.close();
  });
});
