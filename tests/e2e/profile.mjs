// profile.mjs — the profile and settings dialog. Alice (an account)
// changes her display name, status and picture; bob (a guest, in another
// browser) sees them at once, without a reload, on her old message, in the
// member list and on the DM; then the picture is removed (initials again).
// Once she is gone, a newcomer still sees her current name on her old
// message. The theme applies at once and is kept, the notification choice
// (and a muted room) is stored on the server and followed, the password
// changes (this browser stays signed in), and a guest gets the settings it
// can have and words for the rest.

import { run, step, user, guest, say, until, check, shot, png, env, dmFromMembers } from './lib.mjs';

const PASSWORD = 'correct horse battery';
const NEW_PASSWORD = 'staple gun 4 ever';
const NAME = 'Alice Liddell';
const STATUS = 'Down the rabbit hole';

/** `background-color` of the message pane, to tell light from dark. */
const paneColor = (page) => page.locator('.main').evaluate((m) => getComputedStyle(m).backgroundColor);
const LIGHT = 'rgb(255, 255, 255)';
const DARK = 'rgb(22, 25, 34)';

async function login(nick, password) {
  const res = await fetch(`${env.url}/api/login`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ nick, password }),
  });
  return { status: res.status, body: await res.json().catch(() => null) };
}

await run(async (browser) => {
  const alice = await user(browser, 'alice');
  const A = alice.page;
  // Notifications this page would show, and a tab that can be hidden.
  await A.addInitScript(() => {
    window.__shown = [];
    let hidden = false;
    window.__hide = (h = true) => { hidden = h; document.dispatchEvent(new Event('visibilitychange')); };
    Object.defineProperty(document, 'visibilityState', { get: () => (hidden ? 'hidden' : 'visible') });
    class FakeNotification {
      static permission = 'granted';
      static async requestPermission() { return 'granted'; }
      constructor(title, options) { window.__shown.push({ title, body: options.body }); }
      close() {}
    }
    window.Notification = FakeNotification;
  });

  await step('alice creates an account in the login form', async () => {
    await A.goto(env.url);
    await A.locator('#tab-account').click();
    await A.locator('#login-nick').fill('alice');
    await A.locator('#login-password').fill(PASSWORD);
    await A.locator('#register').click();
    await A.locator('#conv-name', { hasText: 'lobby' }).waitFor();
  });

  const bob = await guest(await user(browser, 'bob'), 'bob');
  const B = bob.page;
  const aliceMsg = B.locator('#message-list .msg', { hasText: 'before the change' });
  const aliceMember = B.locator('#member-list button[data-nick="alice"]');

  await step('before: bob sees alice by her nick, with an initial for a picture', async () => {
    await say(A, 'before the change');
    await aliceMsg.waitFor();
    check((await aliceMsg.locator('.from').textContent()) === 'alice', 'nick as the name');
    check((await aliceMsg.locator('.avatar').textContent()) === 'A', 'the initial');
    await aliceMember.waitFor();
    // A DM with alice, so her name shows in bob's sidebar too.
    await dmFromMembers(B, 'alice');
    await B.locator('#conv-name', { hasText: 'alice' }).waitFor();
    await say(B, 'hi alice');
    await B.locator('#room-list .conv', { hasText: 'lobby' }).click();
    await aliceMsg.waitFor();
  });

  await step('alice changes name, status and picture in the dialog', async () => {
    await A.locator('#open-profile').click();
    await A.locator('#profile-dialog[open]').waitFor();
    check(await A.locator('#profile-guest').isHidden(), 'no guest note for an account');
    check((await A.locator('#profile-name').inputValue()) === 'alice', 'the current name');
    check(await A.locator('input[name="notify"][value="mentions"]').isChecked(), 'notify: the default');
    check(await A.locator('input[name="theme"][value="system"]').isChecked(), 'theme: the default');
    await A.locator('#avatar-input').setInputFiles({ name: 'me.png', mimeType: 'image/png', buffer: png(400, 300, [245, 158, 11], [220, 38, 38]) });
    await A.locator('#avatar-status', { hasText: 'Your new picture is shown to everyone.' }).waitFor();
    await until('the dialog shows the picture', () => A.locator('#profile-avatar img').evaluate((i) => i.complete && i.naturalWidth > 0));
    await A.locator('#profile-name').fill(NAME);
    await A.locator('#profile-status').fill(STATUS);
    await A.locator('input[name="notify"][value="all"]').check();
    await A.locator('input[name="muted"][value="lobby"]').check();
    await A.locator('input[name="theme"][value="dark"]').check();
    await until('the theme applies at once', async () => (await paneColor(A)) === DARK);
    await shot(A, 'profile-dialog');
    await A.locator('#profile-save').click();
    await until('the dialog closed', async () => (await A.locator('#profile-dialog[open]').count()) === 0);
    await until('her own sidebar shows the name', async () => (await A.locator('#me-name').textContent()) === NAME);
  });

  let avatarSrc;
  await step('bob sees it all at once, without a reload: old message, member list, DM', async () => {
    await until('the old message shows the new name', async () => (await aliceMsg.locator('.from').textContent()) === NAME);
    const img = aliceMsg.locator('.avatar img');
    await until('…and the new picture, loaded', () => img.evaluate((i) => i.complete && i.naturalWidth > 0));
    avatarSrc = await img.getAttribute('src');
    check(/\/avatars\/[^/]+\.(png|jpg)$/.test(avatarSrc), `avatar URL ${avatarSrc}`);
    const sq = await img.evaluate((i) => [i.naturalWidth, i.naturalHeight]);
    check(sq[0] === sq[1], `a square picture: ${sq}`);
    await until('the member list too', async () => (await aliceMember.locator('.name').textContent()) === NAME);
    check((await aliceMember.locator('.avatar img').getAttribute('src')) === avatarSrc, 'same picture in the member list');
    check((await aliceMember.locator('.sub').textContent()).includes(STATUS), 'her status line in the member list');
    await until('the DM in the sidebar', async () => (await B.locator('#dm-list .conv[data-conv="d:alice"] .label').textContent()) === NAME);
    check(await B.evaluate(() => performance.getEntriesByType('navigation').length === 1), 'no reload happened');
    await shot(B, 'profile-seen-live');
  });

  await step('the notification choice is kept on the server, and followed: a muted room stays quiet', async () => {
    const r = await login('alice', PASSWORD);
    const me = await fetch(`${env.url}/api/me`, { headers: { Authorization: `Bearer ${r.body.token}` } }).then((x) => x.json());
    const s = me.settings || {};
    check(s.notify === 'all' && s.theme === 'dark' && JSON.stringify(s.muted_rooms) === '["lobby"]', `settings ${JSON.stringify(s)}`);
    check(me.display_name === NAME && me.status === STATUS, `profile ${JSON.stringify(me)}`);
    await A.locator('#notify').click();
    await A.locator('#notify', { hasText: 'Notifications: on' }).waitFor();
    await A.evaluate(() => window.__hide());
    await say(B, 'lobby chatter, @alice');
    await dmFromMembers(B, 'alice');
    await say(B, 'a direct word');
    await until('a notification', async () => (await A.evaluate(() => window.__shown)).length > 0);
    const shown = await A.evaluate(() => window.__shown);
    check(shown.length === 1 && shown[0].body === 'a direct word', `only the DM notified: ${JSON.stringify(shown)}`);
    await A.evaluate(() => window.__hide(false));
    await B.locator('#room-list .conv', { hasText: 'lobby' }).click();
    await aliceMsg.waitFor();
  });

  await step('alice removes her picture: bob sees the initial again', async () => {
    await A.locator('#open-profile').click();
    await A.locator('#avatar-remove').click();
    await A.locator('#avatar-status', { hasText: 'Picture removed.' }).waitFor();
    check(await A.locator('#avatar-remove').isHidden(), 'nothing left to remove');
    await A.locator('#profile-cancel').click();
    await until('the initial on the old message', async () =>
      (await aliceMsg.locator('.avatar img').count()) === 0 && (await aliceMsg.locator('.avatar').textContent()) === 'A');
    await until('…and in the member list', async () => (await aliceMember.locator('.avatar img').count()) === 0);
  });

  await step('the password changes; this browser stays signed in, the old password is refused', async () => {
    await A.locator('#open-profile').click();
    await A.locator('#password-old').fill('wrong password');
    await A.locator('#password-new').fill(NEW_PASSWORD);
    await A.locator('#password-again').fill(NEW_PASSWORD);
    await A.locator('#password-form-submit').click();
    await A.locator('#password-status', { hasText: 'The current password is wrong.' }).waitFor();
    await A.locator('#password-old').fill(PASSWORD);
    await A.locator('#password-again').fill('something else');
    await A.locator('#password-form-submit').click();
    await A.locator('#password-status', { hasText: 'The two new passwords differ.' }).waitFor();
    await A.locator('#password-again').fill(NEW_PASSWORD);
    await A.locator('#password-form-submit').click();
    await A.locator('#password-status', { hasText: 'Password changed.' }).waitFor();
    await A.keyboard.press('Escape');
    check((await login('alice', PASSWORD)).status === 401, 'the old password no longer works');
    check((await login('alice', NEW_PASSWORD)).status === 200, 'the new one does');
    await A.reload();
    await A.locator('#conv-name', { hasText: 'lobby' }).waitFor();
    check((await A.locator('#me-name').textContent()) === NAME, 'signed in after a reload, with the new token');
    check((await paneColor(A)) === DARK, 'the dark theme is kept');
  });

  await step('alice is gone; carol, new, still sees her current name on her old message', async () => {
    await alice.context.close();
    await until('alice left bob\'s member list', async () => (await aliceMember.count()) === 0);
    const carol = await guest(await user(browser, 'carol'), 'carol');
    const msg = carol.page.locator('#message-list .msg', { hasText: 'before the change' });
    await msg.waitFor();
    await until('her name, not her nick', async () => (await msg.locator('.from').textContent()) === NAME);
    await carol.context.close();
  });

  await step('a guest: settings only, in words; the theme applies, Cancel puts it back, Save keeps it', async () => {
    check((await paneColor(B)) === LIGHT, 'light to start with');
    await B.locator('#open-profile').click();
    await B.locator('#profile-guest', { hasText: 'Guests have no stored profile' }).waitFor();
    check(await B.locator('#profile-name').isDisabled(), 'no display name for a guest');
    check(await B.locator('#avatar-change').isDisabled(), 'no picture for a guest');
    check(await B.locator('#password-section').isHidden(), 'no password for a guest');
    await B.locator('input[name="theme"][value="dark"]').check();
    await until('dark at once', async () => (await paneColor(B)) === DARK);
    await B.locator('#profile-cancel').click();
    await until('Cancel: light again', async () => (await paneColor(B)) === LIGHT);
    await B.locator('#open-profile').click();
    await B.locator('input[name="theme"][value="dark"]').check();
    await B.locator('#profile-save').click();
    await until('saved: dark', async () => (await paneColor(B)) === DARK);
    await B.reload();
    await B.locator('#conv-name').waitFor();
    check((await paneColor(B)) === DARK, 'kept after a reload');
    await shot(B, 'profile-guest-dark');
  });
});
