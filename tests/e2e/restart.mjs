// restart.mjs — the server goes away mid-conversation, twice (SIGTERM, then
// SIGKILL), on the same database and port. Both pages say so in words,
// reconnect with backoff, and resume: every room with `join … since`, every
// direct message with `history … after`. Bob is kept offline while the
// others talk, so his resume must fetch what he missed. At the end each
// page holds every message exactly once, in seq order, with no gap.

import { run, step, user, guest, say, texts, until, check, api, control, openConv, shot, dmFromMembers } from './lib.mjs';

const LONG = 40_000;

/** The seqs and texts of the messages shown, checked gap-free and unique. */
async function whole(page, label) {
  const rows = await page.locator('#message-list .msg').evaluateAll((els) =>
    els.map((el) => ({ seq: Number(el.dataset.seq), id: el.dataset.id, text: el.querySelector('.text')?.textContent })));
  const ids = new Set(rows.map((r) => r.id));
  check(ids.size === rows.length, `${label}: a message shows twice`);
  rows.forEach((r, i) => check(i === 0 || r.seq === rows[i - 1].seq + 1, `${label}: gap or disorder at seq ${r.seq} (after ${rows[i - 1]?.seq})`));
  return rows.map((r) => r.text);
}

await run(async (browser) => {
  const alice = await guest(await user(browser, 'alice'), 'alice');
  const bob = await guest(await user(browser, 'bob'), 'bob');
  const A = alice.page;
  const B = bob.page;
  const expected = [];
  const dms = [];

  await step('a conversation in the lobby and a direct message', async () => {
    await A.locator('#member-list', { hasText: '@bob' }).waitFor();
    for (let i = 1; i <= 5; i++) {
      const [P, who] = i % 2 ? [A, 'alice'] : [B, 'bob'];
      const text = `before ${i} (${who})`;
      await say(P, text);
      expected.push(text);
      await A.locator('#message-list .msg', { hasText: text }).waitFor();
      await B.locator('#message-list .msg', { hasText: text }).waitFor();
    }
    await dmFromMembers(A, 'bob');
    await say(A, 'dm before the restart');
    dms.push('dm before the restart');
    await B.locator('#dm-list .conv', { hasText: 'alice' }).waitFor();
    await openConv(A, 'lobby');
  });

  await step('graceful restart (SIGTERM) while bob is offline; alice and the API talk meanwhile', async () => {
    await control('stop');
    await A.locator('#status', { hasText: /The server is restarting|Reconnecting|Connection lost/ }).waitFor();
    await B.locator('#status', { hasText: /The server is restarting|Reconnecting|Connection lost/ }).waitFor();
    // Bob's browser goes offline: his reconnection attempts fail until he is back.
    await bob.context.setOffline(true);
    check(await A.locator('#input').isEnabled(), 'the composer stays usable');
    await shot(A, 'restart-waiting');
    await control('start');
    await A.locator('#status', { hasText: 'Connected again.' }).waitFor({ timeout: LONG });
    for (let i = 1; i <= 3; i++) {
      const text = `during ${i} (api)`;
      const r = await api('POST', '/api/rooms/lobby/messages', { text, from: 'carol' });
      check(r.status === 201, `publish: ${JSON.stringify(r.body)}`);
      expected.push(text);
    }
    await say(A, 'alice after the restart');
    expected.push('alice after the restart');
    await openConv(A, 'bob');
    await say(A, 'dm while you were away');
    dms.push('dm while you were away');
    await A.locator('#message-list .msg', { hasText: 'dm while you were away' }).waitFor();
    await openConv(A, 'lobby');
    await until('alice has everything', async () => (await texts(A)).length === expected.length);
    check(JSON.stringify(await whole(A, 'alice')) === JSON.stringify(expected), 'alice: every message once, in order');
  });

  await step('bob comes back online and resumes: nothing missing, nothing twice', async () => {
    await B.locator('#status', { hasText: /Reconnecting|restarting|lost/ }).waitFor();
    await bob.context.setOffline(false);
    await B.locator('#status', { hasText: 'Connected again.' }).waitFor({ timeout: LONG });
    await until('bob has everything', async () => (await texts(B)).length === expected.length, LONG);
    check(JSON.stringify(await whole(B, 'bob')) === JSON.stringify(expected), `bob: ${JSON.stringify(await texts(B))}`);
    const dm = B.locator('#dm-list .conv', { hasText: 'alice' });
    await until('DM unread', async () => (await dm.locator('.badge').textContent()) === '1');
    await dm.click();
    await until('both DMs', async () => (await texts(B)).length === dms.length);
    check(JSON.stringify(await whole(B, 'bob dm')) === JSON.stringify(dms), 'bob: the DMs once each');
    await openConv(B, 'lobby');
  });

  await step('hard kill (SIGKILL) and restart: both resume again', async () => {
    await control('kill');
    await A.locator('#status', { hasText: /Reconnecting|Connection lost/ }).waitFor();
    await control('start');
    await A.locator('#status', { hasText: 'Connected again.' }).waitFor({ timeout: LONG });
    await B.locator('#status', { hasText: 'Connected again.' }).waitFor({ timeout: LONG });
    await say(B, 'bob after the kill');
    expected.push('bob after the kill');
    await say(A, 'alice after the kill');
    expected.push('alice after the kill');
    for (const [P, who] of [[A, 'alice'], [B, 'bob']]) {
      await until(`${who} has everything`, async () => (await texts(P)).length === expected.length, LONG);
      check(JSON.stringify(await whole(P, who)) === JSON.stringify(expected), `${who}: ${JSON.stringify(await texts(P))}`);
    }
    await shot(B, 'restart-resumed');
  });
});
