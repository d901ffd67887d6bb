// lib.mjs — shared by the browser tests: launching Debian's Chromium through
// playwright-core, users in their own browser contexts, guest sign-in, site
// tokens (HS256, like an embedding site mints them), the HTTP API, asking
// tests/browser.rs to stop or start the server, screenshots, checks, and
// files to upload (a PNG made here, a small PDF).
//
// Environment (set by tests/browser.rs): CHAT_URL, CHAT_API_KEY,
// CHAT_TOKEN_SECRET, SCREENSHOT_DIR, CHROMIUM, EMBED_PORT, FOREIGN_PORT,
// and DOCS_SCREENSHOT (a path: copy the main screenshot there).

import { createHmac } from 'node:crypto';
import { deflateSync } from 'node:zlib';
import { mkdirSync, copyFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const env = {
  url: need('CHAT_URL'),
  apiKey: process.env.CHAT_API_KEY || '',
  tokenSecret: process.env.CHAT_TOKEN_SECRET || '',
  shots: process.env.SCREENSHOT_DIR || 'screenshots',
  chromium: process.env.CHROMIUM || '/usr/bin/chromium',
  embedPort: Number(process.env.EMBED_PORT || 0),
  foreignPort: Number(process.env.FOREIGN_PORT || 0),
  docsShot: process.env.DOCS_SCREENSHOT || '',
};

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run through cargo test --test browser)`);
  return v;
}

export const WAIT = 15_000;

const t0 = Date.now();
export function log(...args) {
  console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...args);
}

export function check(cond, message) {
  if (!cond) throw new Error(`check failed: ${message}`);
}

/** Runs one named step, logging it; the first failure ends the script. */
export async function step(name, fn) {
  log(`▶ ${name}`);
  await fn();
}

// ---- the browser -------------------------------------------------------------

export async function launch() {
  return chromium.launch({
    executablePath: env.chromium,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      // A fake microphone and camera (a beep, a test pattern), allowed
      // without a prompt, and media that may play without a click.
      '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      '--autoplay-policy=no-user-gesture-required'],
  });
}

const problems = [];
const users = [];

/** On failure: what each page showed, to tell what went wrong. */
async function describePages() {
  for (const { name, page } of users) {
    if (page.isClosed()) continue;
    const seen = await page.evaluate(() => ({
      conv: document.getElementById('conv-name')?.textContent,
      status: document.getElementById('status')?.hidden ? '(hidden)' : document.getElementById('status')?.textContent,
      toasts: [...document.querySelectorAll('.toast')].map((t) => t.textContent),
      last: [...document.querySelectorAll('#message-list .msg .text')].slice(-3).map((t) => t.textContent),
    })).catch((e) => e.message);
    console.error(`  ${name}: ${JSON.stringify(seen)}`);
  }
}

/**
 * A user: a browser context of its own (its own storage) and one page.
 * Page errors and CSP violations are collected and fail the run at the end.
 */
export async function user(browser, name, { width = 1280, height = 800, dark = false, mobile = false, perms = [] } = {}) {
  const context = await browser.newContext({
    viewport: { width, height },
    deviceScaleFactor: 1,
    colorScheme: dark ? 'dark' : 'light',
    isMobile: mobile,
    hasTouch: mobile,
    permissions: perms,
  });
  context.setDefaultTimeout(WAIT);
  const page = await context.newPage();
  watch(page, name);
  users.push({ name, page });
  return { name, context, page };
}

/** Collects page errors and CSP reports of `page` (and of its frames). */
export function watch(page, name) {
  page.on('pageerror', (e) => problems.push(`${name}: page error: ${e.message}`));
  page.on('console', (m) => {
    const text = m.text();
    if (m.type() === 'error' && /Content.Security.Policy|Refused to/i.test(text)) problems.push(`${name}: ${text}`);
    if (m.type() === 'error' && !/WebSocket|Failed to load resource|ERR_CONNECTION_REFUSED|ERR_BLOCKED/i.test(text)) {
      log(`${name} console: ${text}`);
    }
  });
}

/** Fails when a page threw or broke the CSP. */
export function checkNoProblems() {
  check(problems.length === 0, `pages reported problems:\n  ${problems.join('\n  ')}`);
}

/** Opens the client and enters as a guest; waits for the first room. */
export async function guest(u, nick, path = '/') {
  await u.page.goto(env.url + path);
  await u.page.locator('#login-nick').fill(nick);
  await u.page.locator('#login-nick').press('Enter');
  await u.page.locator('#app').waitFor({ state: 'visible' });
  return u;
}

/** Text of every message in the open conversation, in order. */
export async function texts(page) {
  return page.locator('#message-list .msg .text').allTextContents();
}

/** Waits until `fn` (polled) returns something truthy. */
export async function until(what, fn, timeout = WAIT) {
  const end = Date.now() + timeout;
  let last;
  while (Date.now() < end) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
}

/** Clicks the sidebar entry of a conversation (opening the drawer on phones). */
export async function openConv(page, label) {
  const item = page.locator('#sidebar .conv', { hasText: label }).first();
  if (!(await item.isVisible())) await page.locator('#open-sidebar').click();
  await item.click();
  await page.locator('#conv-name', { hasText: label }).waitFor();
}

/**
 * Opens a direct message with `nick` from the open room's member list: the
 * member's card, then its "Send a message".
 */
export async function dmFromMembers(page, nick) {
  await page.locator(`#member-list button[data-nick="${nick}"]`).click();
  await page.locator('#person-card[open]').waitFor();
  await page.locator('#card-dm').click();
  await page.locator('#conv-name').filter({ hasNotText: /^lobby$/ }).waitFor();
}

/** Types a message in the composer and sends it with Enter. */
export async function say(page, text) {
  await page.locator('#input').fill(text);
  await page.locator('#input').press('Enter');
}

// ---- screenshots -------------------------------------------------------------

export async function shot(page, name) {
  mkdirSync(env.shots, { recursive: true });
  // Earlier steps' toasts and a hovered button are not part of the picture.
  await page.locator('.toast button').evaluateAll((bs) => bs.forEach((b) => b.click())).catch(() => {});
  await page.mouse.move(1, (page.viewportSize()?.height || 600) - 1);
  const path = join(env.shots, `${name}.png`);
  await page.screenshot({ path });
  log(`screenshot ${path}`);
  return path;
}

/** Copies a screenshot into docs/ when the harness asks for it. */
export function toDocs(path) {
  if (!env.docsShot) return;
  copyFileSync(path, env.docsShot);
  log(`copied to ${env.docsShot}`);
}

// ---- files to upload ---------------------------------------------------------------

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

/**
 * A real RGB PNG of `width` × `height`: a diagonal gradient from `from` to
 * `to` ([r, g, b]) with a white disc in the middle, so a picture (and its
 * thumbnail) is easy to tell apart in a screenshot.
 */
export function png(width, height, from = [79, 70, 229], to = [236, 72, 153]) {
  const raw = Buffer.alloc((width * 3 + 1) * height);
  const r = Math.min(width, height) / 4;
  for (let y = 0; y < height; y++) {
    const row = y * (width * 3 + 1);
    raw[row] = 0;
    for (let x = 0; x < width; x++) {
      const t = (x / width + y / height) / 2;
      const inDisc = (x - width / 2) ** 2 + (y - height / 2) ** 2 < r * r;
      for (let i = 0; i < 3; i++) raw[row + 1 + x * 3 + i] = inDisc ? 255 : Math.round(from[i] + (to[i] - from[i]) * t);
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** A small, valid one-page PDF. */
export function pdf(text = 'Minutes of the meeting') {
  const content = `BT /F1 24 Tf 72 720 Td (${text}) Tj ET`;
  const objs = [
    '<< /Type /Catalog /Pages 2 0 R >>',
    '<< /Type /Pages /Kids [3 0 R] /Count 1 >>',
    '<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>',
    `<< /Length ${content.length} >>\nstream\n${content}\nendstream`,
    '<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>',
  ];
  let out = '%PDF-1.4\n';
  const offsets = [];
  objs.forEach((o, i) => {
    offsets.push(out.length);
    out += `${i + 1} 0 obj\n${o}\nendobj\n`;
  });
  const xref = out.length;
  out += `xref\n0 ${objs.length + 1}\n0000000000 65535 f \n`;
  for (const off of offsets) out += `${String(off).padStart(10, '0')} 00000 n \n`;
  out += `trailer\n<< /Size ${objs.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return Buffer.from(out, 'latin1');
}

/** GET a path or URL of the server without credentials: {status, type, disposition, length}. */
export async function head(url) {
  const res = await fetch(new URL(url, env.url));
  const body = Buffer.from(await res.arrayBuffer());
  return {
    status: res.status,
    type: res.headers.get('content-type'),
    disposition: res.headers.get('content-disposition'),
    length: body.length,
  };
}

// ---- the server ------------------------------------------------------------------

/** An HS256 site token, as an embedding site mints it. */
export function siteToken(claims) {
  const b64 = (s) => Buffer.from(s).toString('base64url');
  const header = b64(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const payload = b64(JSON.stringify({ exp: Math.floor(Date.now() / 1000) + 3600, ...claims }));
  const sig = createHmac('sha256', env.tokenSecret).update(`${header}.${payload}`).digest('base64url');
  return `${header}.${payload}.${sig}`;
}

/** Calls the HTTP API with the API key; returns {status, body}. */
export async function api(method, path, body) {
  const res = await fetch(env.url + path, {
    method,
    headers: { Authorization: `Bearer ${env.apiKey}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json().catch(() => null) };
}

let stdinLines = null;

/**
 * Asks tests/browser.rs to act on the server: `stop` (SIGTERM, graceful),
 * `kill` (SIGKILL) or `start` (same port, same database). Resolves when done.
 */
export async function control(command) {
  if (!stdinLines) {
    const rl = createInterface({ input: process.stdin });
    const queue = [];
    const waiting = [];
    rl.on('line', (line) => (waiting.length ? waiting.shift()(line) : queue.push(line)));
    stdinLines = () => (queue.length ? Promise.resolve(queue.shift()) : new Promise((r) => waiting.push(r)));
  }
  log(`server: ${command}`);
  process.stdout.write(`@@control ${command}\n`);
  const answer = await stdinLines();
  check(answer === 'ok', `server ${command}: ${answer}`);
}

/** Runs `main`, reports, and exits 0 only when everything passed. */
export async function run(main) {
  let browser;
  try {
    browser = await launch();
    await main(browser);
    checkNoProblems();
    log('PASS');
    await browser.close();
    process.exit(0);
  } catch (e) {
    console.error(`FAIL: ${e.stack || e}`);
    await describePages().catch(() => {});
    await browser?.close().catch(() => {});
    process.exit(1);
  }
}
