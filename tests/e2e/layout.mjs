// layout.mjs — layout and accessibility (issue 18, items 6 and 7): the
// widget at 1,200 px keeps its member list beside Send and the message
// actions, not over them; a 375 px phone has a Leave button, an unclipped
// unread badge, touch targets of at least 44 px and inputs of at least
// 16 px; DMs and Everyone show no empty member panel; axe-core finds no
// serious or critical violation on the main views, in light and dark;
// the keyboard alone reaches every action with the focus visible, Esc
// closes every dialog, and new messages are announced politely.
// Screenshots: desktop, phone and widget, light and dark.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { run, step, user, guest, say, until, check, shot, log, env } from './lib.mjs';

const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

/**
 * axe-core on the page as it is: the serious and critical violations (each
 * with where), and a line per lesser one in the log.
 */
async function axe(page, what) {
  // The page's CSP allows no injected script: evaluate the source instead.
  await page.evaluate(AXE);
  const result = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 4).map((n) => n.target.join(' ')) }));
  });
  for (const v of result) log(`axe ${what}: ${v.impact} ${v.id} (${v.help}) at ${v.nodes.join(', ')}`);
  const bad = result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  check(bad.length === 0, `axe on ${what}: ${JSON.stringify(bad, null, 1)}`);
}

/** Whether the focused element shows a focus ring (box-shadow or outline). */
const focusShown = (page) => page.evaluate(() => {
  const el = document.activeElement;
  if (!el || el === document.body) return false;
  const s = getComputedStyle(el);
  return (s.boxShadow && s.boxShadow !== 'none') || (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0);
});

await run(async (browser) => {
  const alice = await guest(await user(browser, 'alice'), 'alice');
  const A = alice.page;
  const bob = await guest(await user(browser, 'bob', { dark: true }), 'bob');
  const B = bob.page;
  await A.locator('#member-list button[data-nick="bob"]').waitFor();
  for (const [P, text] of [[B, 'Morning! The **release** is at 15:00, notes at https://example.com/notes'],
    [A, 'Thanks @bob, I will review the _changelog_ first.'], [B, '/me brings coffee ☕'], [A, 'Perfect 👍']]) {
    await say(P, text);
    await A.locator('#message-list .msg', { hasText: text.replace(/\*\*|_|\/me /g, '').slice(0, 12) }).waitFor();
  }

  await step('a reaction and a reply, so that every view has them', async () => {
    const morning = A.locator('#message-list .msg', { hasText: 'Morning!' });
    await morning.hover();
    await morning.getByRole('button', { name: 'React' }).click();
    await A.locator('#emoji-grid button[aria-label="tada"]').click();
    await B.locator('#message-list .msg', { hasText: 'Morning!' }).locator('.reaction', { hasText: '🎉' }).waitFor();
    await morning.hover();
    await morning.getByRole('button', { name: 'Reply' }).click();
    await say(A, 'On it, notes by noon.');
    await B.locator('#message-list .msg', { hasText: 'On it, notes by noon.' }).locator('.reply-quote').waitFor();
  });

  await step('new messages are announced politely to screen readers', async () => {
    check((await A.locator('#announce').getAttribute('aria-live')) === 'polite', 'a polite live region');
    await say(B, 'one for the screen reader');
    await until('announced', async () => (await A.locator('#announce').textContent()).includes('bob: one for the screen reader'));
  });

  await step('axe: login, room, dialogs, DM, in light and dark', async () => {
    const fresh = await user(browser, 'axe-login');
    await fresh.page.goto(env.url);
    await fresh.page.locator('#login-nick').waitFor();
    await axe(fresh.page, 'the login form');
    await fresh.context.close();
    for (const [P, theme] of [[A, 'light'], [B, 'dark']]) {
      await axe(P, `the room (${theme})`);
      await P.locator('#open-profile').click();
      await P.locator('#profile-dialog[open]').waitFor();
      await axe(P, `the settings (${theme})`);
      await P.keyboard.press('Escape');
      await until('settings closed by Esc', async () => (await P.locator('#profile-dialog[open]').count()) === 0);
      await P.locator('#open-search').click();
      await P.locator('#search-dialog[open]').waitFor();
      await axe(P, `search (${theme})`);
      await P.keyboard.press('Escape');
      await until('search closed by Esc', async () => (await P.locator('#search-dialog[open]').count()) === 0);
      await P.locator('#emoji-open').click();
      await P.locator('#emoji-picker[open]').waitFor();
      await axe(P, `the emoji picker (${theme})`);
      await P.keyboard.press('Escape');
      await until('picker closed by Esc', async () => (await P.locator('#emoji-picker[open]').count()) === 0);
      const other = P === A ? 'bob' : 'alice';
      await P.locator(`#member-list button[data-nick="${other}"]`).click();
      await P.locator('#person-card[open]').waitFor();
      await axe(P, `a card (${theme})`);
      await P.keyboard.press('Escape');
      await until('card closed by Esc', async () => (await P.locator('#person-card[open]').count()) === 0);
    }
    await B.locator('#member-list button[data-nick="alice"]').click();
    await B.locator('#card-dm').click();
    await say(B, 'a direct word');
    await B.locator('#message-list .msg', { hasText: 'a direct word' }).waitFor();
    await axe(B, 'a DM (dark)');
    check(await B.locator('#members').isHidden(), 'no empty member panel in a DM');
    await B.locator('#room-list .conv', { hasText: 'lobby' }).click();
  });

  await step('keyboard alone: every message action, focus visible, Esc cancels', async () => {
    await A.locator('#room-list .conv', { hasText: 'lobby' }).focus();
    check(await focusShown(A), 'a sidebar entry shows its focus');
    // From the message box, Shift+Tab goes back up into the message list's actions.
    await A.locator('#input').focus();
    const reached = new Set();
    for (let i = 0; i < 60; i++) {
      await A.keyboard.press('Shift+Tab');
      const info = await A.evaluate(() => ({ text: document.activeElement?.textContent, inMsg: !!document.activeElement?.closest('.msg-actions') }));
      if (info.inMsg) {
        reached.add(info.text);
        check(await focusShown(A), `the focused action "${info.text}" shows its focus`);
        const shown = await A.evaluate(() => getComputedStyle(document.activeElement.closest('.msg-actions')).opacity);
        check(shown === '1', 'the action bar shows while one of its buttons has the focus');
      }
      if (reached.has('Edit') && reached.has('Reply') && reached.has('Copy link') && reached.has('☺') && reached.has('Delete')) break;
    }
    check(['☺', 'Reply', 'Copy link', 'Edit', 'Delete'].every((a) => reached.has(a)), `reached: ${[...reached]}`);
    // Reply by keyboard, then Esc cancels it.
    await A.locator('#message-list .msg', { hasText: 'one for the screen reader' }).locator('button', { hasText: 'Reply' }).focus();
    await A.keyboard.press('Enter');
    await A.locator('#reply-bar').waitFor();
    check(await A.evaluate(() => document.activeElement?.id) === 'input', 'the message box has the focus');
    await A.keyboard.press('Escape');
    await A.locator('#reply-bar').waitFor({ state: 'hidden' });
  });

  await step('desktop screenshots, light and dark', async () => {
    await shot(A, 'layout-desktop-light');
    await shot(B, 'layout-desktop-dark');
  });

  await step('the widget at 1,200 px: the member list beside Send and the actions, not over them', async () => {
    for (const dark of [false, true]) {
      const w = await user(browser, dark ? 'widget-dark' : 'widget', { width: 1200, height: 700, dark });
      await w.page.goto(`${env.url}/embed?room=lobby`);
      await w.page.locator('#login-nick').fill(dark ? 'wanda' : 'walt');
      await w.page.locator('#login-nick').press('Enter');
      await w.page.locator('#message-list .msg', { hasText: 'Perfect' }).waitFor();
      await until('the member list is open', async () => w.page.locator('#members').isVisible());
      const members = await w.page.locator('#members').boundingBox();
      const send = await w.page.locator('#send').boundingBox();
      check(send.x + send.width <= members.x, `Send (${send.x}+${send.width}) left of the members (${members.x})`);
      const msg = w.page.locator('#message-list .msg', { hasText: 'Perfect' });
      await msg.hover();
      const actions = await msg.locator('.msg-actions').boundingBox();
      check(actions.x + actions.width <= members.x, 'the message actions are not under the member list');
      const onTop = await w.page.evaluate(() => {
        const b = document.getElementById('send').getBoundingClientRect();
        return document.elementFromPoint(b.x + b.width / 2, b.y + b.height / 2)?.id;
      });
      check(onTop === 'send', `Send can be clicked: ${onTop}`);
      if (!dark) await axe(w.page, 'the widget');
      await shot(w.page, dark ? 'layout-embed-dark' : 'layout-embed-light');
      await w.context.close();
    }
  });

  await step('375 px: Leave, an unclipped badge, 44 px targets, 16 px inputs; axe', async () => {
    for (const dark of [false, true]) {
      const p = await guest(await user(browser, dark ? 'phone-dark' : 'phone', { width: 375, height: 740, mobile: true, dark }), dark ? 'pia' : 'pat');
      const P = p.page;
      await P.locator('#conv-name', { hasText: 'lobby' }).waitFor();
      check(await P.locator('#leave').isVisible(), 'Leave is there');
      // A DM arrives while the room is open: the menu's badge counts it.
      await say(A, `/msg ${dark ? 'pia' : 'pat'} psst`);
      const badge = P.locator('#menu-badge');
      await badge.waitFor();
      const clip = await badge.evaluate((el) => {
        const r = el.getBoundingClientRect();
        const head = el.closest('.conv-head').getBoundingClientRect();
        const hit = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
        return { inside: r.top >= head.top && r.right <= innerWidth && r.left >= 0, hit: hit === el || el.contains(hit) };
      });
      check(clip.inside && clip.hit, `the badge shows whole: ${JSON.stringify(clip)}`);
      const small = await P.evaluate(() => [...document.querySelectorAll('#app button, #app input, #app textarea, #app select, #app a')]
        .filter((el) => {
          const r = el.getBoundingClientRect();
          const s = getComputedStyle(el);
          return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && !el.closest('.visually-hidden') && r.right > 0 && r.left < innerWidth
            && el.type !== 'file' && !el.closest('.msg .text'); // links inside a sentence are exempt (WCAG 2.5.8)
        })
        .filter((el) => { const r = el.getBoundingClientRect(); return r.width < 44 || r.height < 44; })
        .map((el) => `${el.id || el.className || el.tagName} ${Math.round(el.getBoundingClientRect().width)}×${Math.round(el.getBoundingClientRect().height)}`));
      check(small.length === 0, `touch targets under 44 px: ${small.join(', ')}`);
      const fonts = await P.evaluate(() => [...document.querySelectorAll('input:not([type=checkbox]):not([type=radio]):not([type=file]), textarea, select')]
        .filter((el) => parseFloat(getComputedStyle(el).fontSize) < 16).map((el) => el.id));
      check(fonts.length === 0, `inputs under 16 px: ${fonts}`);
      const wide = await P.evaluate(() => document.documentElement.scrollWidth <= innerWidth);
      check(wide, 'no sideways scrolling');
      await axe(P, `the phone (${dark ? 'dark' : 'light'})`);
      await shot(P, dark ? 'layout-phone-dark' : 'layout-phone-light');
      await P.locator('#open-sidebar').click();
      await P.locator('#sidebar .conv.active').waitFor();
      await axe(P, 'the phone\'s drawer');
      await P.keyboard.press('Escape');
      await p.context.close();
    }
  });
});
