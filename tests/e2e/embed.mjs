// embed.mjs — the widget on another site: a tiny web server on a second
// origin (http://localhost:EMBED_PORT, listed in auth.allowed_origins) serves
// a page with the one-line embed.js snippet. A site user (site token) chats
// from the iframe with an agent in the full client, who sends a picture (a
// thumbnail in the widget that opens full size there); a visitor without a
// token picks a nick inside the iframe on a phone-sized screen; a page on
// an origin that is not allowed (FOREIGN_PORT) cannot frame the chat.

import { createServer } from 'node:http';
import { run, step, user, guest, say, until, check, siteToken, env, shot, log, png } from './lib.mjs';

check(env.embedPort && env.foreignPort, 'EMBED_PORT and FOREIGN_PORT are set');

/** The embedding site's page: the snippet, and a token when it has a user. */
function hostPage(token) {
  const attrs = [`src="${env.url}/embed.js"`, `data-server="${env.url}"`, 'data-room="support"', 'data-height="500"'];
  if (token) attrs.push(`data-token="${token}"`);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Acme support</title>
<style>body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f3efe6;color:#2b2620}
main{max-width:760px;margin:0 auto;padding:1.5rem 1rem}h1{margin:0 0 .25rem}p{margin:0 0 1rem}</style></head>
<body><main><h1>Acme support</h1><p>Questions about your order? Ask us below — we answer within minutes.</p>
<script ${attrs.join(' ')}></script>
<p>Opening hours: 9:00–17:00.</p></main></body></html>`;
}

const wendyToken = siteToken({ sub: '42', nick: 'wendy', name: 'Wendy Weaver', rooms: ['support'] });

/** Serves the host pages on `localhost:port` (IPv4 and, when there is one, IPv6 loopback). */
function serve(port, address) {
  const server = createServer((req, res) => {
    const page = req.url.startsWith('/guest') ? hostPage(null) : hostPage(wendyToken);
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(page);
  });
  return new Promise((resolve) => {
    server.once('error', () => resolve(null));
    server.listen(port, address, () => resolve(server));
  });
}

const servers = [];
for (const port of [env.embedPort, env.foreignPort]) {
  servers.push(await serve(port, '127.0.0.1'), await serve(port, '::1'));
}
check(servers[0] && servers[2], 'host pages served');
const host = `http://localhost:${env.embedPort}`;
const foreign = `http://localhost:${env.foreignPort}`;

await run(async (browser) => {
  await step('headers: embed.js cached an hour, the widget page framable by the site', async () => {
    const js = await fetch(`${env.url}/embed.js`);
    check(js.status === 200 && /javascript/.test(js.headers.get('content-type')), 'embed.js served');
    check(js.headers.get('cache-control') === 'public, max-age=3600', `embed.js cache: ${js.headers.get('cache-control')}`);
    const page = await fetch(`${env.url}/embed?room=support`);
    const csp = page.headers.get('content-security-policy');
    check(csp.includes(`frame-ancestors 'self' ${host}`), `frame-ancestors: ${csp}`);
    check(!csp.includes(foreign), 'the foreign origin is not allowed');
  });

  const wendy = await user(browser, 'wendy', { width: 1024, height: 760 });
  const W = wendy.page;
  const frame = W.frameLocator('iframe.chat-embed');

  await step('the snippet inserts the widget; the site token signs wendy in', async () => {
    await W.goto(`${host}/`);
    await frame.locator('#conv-name', { hasText: 'support' }).waitFor();
    const box = await W.locator('iframe.chat-embed').boundingBox();
    check(Math.round(box.height) === 500, `data-height: ${box.height}`);
    const f = W.frames().find((fr) => fr.url().includes('/embed'));
    check(f && !f.url().includes('token='), `token left the frame's address: ${f?.url()}`);
  });

  const agent = await guest(await user(browser, 'agent'), 'agent', '/?room=support');
  const A = agent.page;

  await step('an agent in the full client and wendy in the widget talk', async () => {
    await A.locator('#conv-name', { hasText: 'support' }).waitFor();
    await A.locator('#member-list', { hasText: 'Wendy Weaver' }).waitFor();
    await frame.locator('#message-list .event', { hasText: 'agent joined' }).waitFor();
    await say(A, 'Hi Wendy, how can I help?');
    await frame.locator('#message-list .msg', { hasText: 'how can I help?' }).waitFor();
    await frame.locator('#input').fill('My order');
    await A.locator('#typing', { hasText: 'Wendy Weaver is typing…' }).waitFor();
    await frame.locator('#input').fill('My order #1234 has not arrived yet.');
    await frame.locator('#input').press('Enter');
    const msg = A.locator('#message-list .msg', { hasText: '#1234' });
    await msg.waitFor();
    check((await msg.locator('.from').textContent()) === 'Wendy Weaver', 'display name from the token');
    await say(A, 'Let me check that for you.');
    await frame.locator('#message-list .msg', { hasText: 'Let me check' }).waitFor();
    check(await frame.locator('#message-list .msg', { hasText: 'lobby' }).count() === 0, 'only the one room');
    await shot(W, 'embed-desktop');
  });

  await step('a picture the agent sends: a thumbnail in the widget that opens full size there', async () => {
    await A.locator('#file-input').setInputFiles({ name: 'label.png', mimeType: 'image/png', buffer: png(800, 600) });
    await until('uploaded', async () => (await A.locator('#tray .tray-item').getAttribute('data-state')) === 'done');
    await say(A, 'Here is the shipping label.');
    const img = frame.locator('#message-list .msg', { hasText: 'shipping label' }).locator('.att-image img');
    await until('the thumbnail loaded in the widget', () => img.evaluate((i) => i.complete && i.naturalWidth === 320));
    await img.click();
    const big = frame.locator('#viewer[open] #viewer-body img');
    await until('the full picture in the widget\'s viewer', () => big.evaluate((i) => i.complete && i.naturalWidth === 800));
    await frame.locator('#viewer-close').click();
    await until('closed', async () => (await frame.locator('#viewer[open]').count()) === 0);
  });

  await step('a visitor without a token picks a nick inside the widget, at 375 px', async () => {
    const visitor = await user(browser, 'visitor', { width: 375, height: 740, mobile: true });
    const V = visitor.page;
    const vf = V.frameLocator('iframe.chat-embed');
    await V.goto(`${host}/guest`);
    await vf.locator('#login-nick').fill('visitor');
    await vf.locator('#login-nick').press('Enter');
    await vf.locator('#conv-name', { hasText: 'support' }).waitFor();
    await vf.locator('#message-list .msg', { hasText: 'Let me check' }).waitFor();
    await say(vf, 'Is anyone there?');
    await A.locator('#message-list .msg', { hasText: 'Is anyone there?' }).waitFor();
    const fits = await V.evaluate(() => document.documentElement.scrollWidth <= innerWidth);
    check(fits, 'the host page does not scroll sideways');
    const inner = V.frames().find((fr) => fr.url().includes('/embed'));
    check(await inner.evaluate(() => document.documentElement.scrollWidth <= innerWidth), 'the widget fits its frame');
    await shot(V, 'embed-phone');
    await visitor.context.close();
  });

  await step('a page on an origin that is not allowed cannot frame the chat', async () => {
    const context = await browser.newContext();
    const page = await context.newPage(); // not watched: the refusal is logged as a CSP error on purpose
    await page.goto(`${foreign}/`);
    await page.waitForTimeout(1500);
    let shown = 0;
    for (const f of page.frames()) {
      if (f === page.mainFrame()) continue;
      shown += await f.evaluate(() => document.querySelectorAll('#app, #login').length).catch(() => 0);
    }
    check(shown === 0, 'the chat did not render in a foreign frame');
    await context.close();
  });
  log('embed: all steps passed');
});

for (const s of servers) s?.close();
