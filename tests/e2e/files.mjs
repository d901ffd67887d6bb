// files.mjs — files in messages, between two guests in two browsers: a
// picture by the attach button (the thumbnail the other sees, the
// full-size viewer), a picture pasted from the clipboard, a PDF dropped on
// the conversation (a download card), a file over the cap, upload progress
// and cancelling, and
// a voice message and a short video recorded with Chromium's fake
// microphone and camera, which the other user plays.

import { run, step, user, guest, until, check, shot, png, pdf, head, log, env } from './lib.mjs';

const PHOTO = png(1280, 960);
const PASTED = png(300, 200, [16, 185, 129], [14, 116, 144]);

/** The newest message in the list that carries files. */
const lastWithFiles = (page) => page.locator('#message-list .msg:has(.attachments)').last();

/** Waits until the tray holds `n` files, all uploaded. */
async function trayReady(page, n) {
  await until(`${n} file(s) uploaded`, async () => {
    const states = await page.locator('#tray .tray-item').evaluateAll((els) => els.map((e) => e.dataset.state));
    return states.length === n && states.every((s) => s === 'done') ? states : false;
  });
}

await run(async (browser) => {
  const perms = ['microphone', 'camera'];
  const alice = await guest(await user(browser, 'alice', { perms }), 'alice');
  const bob = await guest(await user(browser, 'bob', { perms }), 'bob');
  const A = alice.page;
  const B = bob.page;
  await A.locator('#member-list', { hasText: '@bob' }).waitFor();

  await step('a picture by the attach button: a tray entry, then the message', async () => {
    const [chooser] = await Promise.all([A.waitForEvent('filechooser'), A.locator('#attach').click()]);
    await chooser.setFiles({ name: 'sunset.png', mimeType: 'image/png', buffer: PHOTO });
    await trayReady(A, 1);
    const item = A.locator('#tray .tray-item');
    check((await item.locator('.att-name').textContent()) === 'sunset.png', 'the tray names the file');
    await until('the tray shows the thumbnail', () => item.locator('img.tray-thumb').evaluate((i) => i.complete && i.naturalWidth > 0));
    await A.locator('#input').fill('the view from here');
    await A.locator('#input').press('Enter');
    await until('the tray empties once sent', async () => (await A.locator('#tray .tray-item').count()) === 0);
    check(await A.locator('#tray').isHidden(), 'the empty tray is hidden');
  });

  let full;
  await step('bob sees the preview: a thumbnail (≤ 320 px) that loaded, and the text', async () => {
    const msg = B.locator('#message-list .msg', { hasText: 'the view from here' });
    await msg.waitFor();
    const img = msg.locator('.att-image img');
    await until('the thumbnail loaded', () => img.evaluate((i) => i.complete && i.naturalWidth > 0));
    const seen = await img.evaluate((i) => ({ src: i.src, w: i.naturalWidth, h: i.naturalHeight, shownW: i.width, alt: i.alt }));
    check(/\/files\/[0-9a-f]{32}\/thumbnail$/.test(seen.src), `thumbnail URL: ${seen.src}`);
    check(seen.w === 320 && seen.h === 240, `thumbnail size ${seen.w}x${seen.h}`);
    check(seen.shownW <= 320 && seen.alt === 'sunset.png', `shown ${seen.shownW} px wide, alt ${seen.alt}`);
    const thumb = await head(seen.src);
    check(thumb.status === 200 && thumb.type === 'image/png', `thumbnail answers ${thumb.status} ${thumb.type}`);
    full = seen.src.replace(/\/thumbnail$/, '');
  });

  await step('a click opens the full-size viewer; Escape closes it', async () => {
    await B.locator('#message-list .att-image').last().click();
    const big = B.locator('#viewer[open] #viewer-body img');
    await until('the full picture loaded', () => big.evaluate((i) => i.complete && i.naturalWidth === 1280 && i.naturalHeight === 960));
    check((await big.getAttribute('src')).endsWith(new URL(full).pathname), 'the viewer shows the file itself');
    check((await B.locator('#viewer-name').textContent()) === 'sunset.png', 'named');
    check((await B.locator('#viewer-size').textContent()).startsWith('1280 × 960'), 'its size');
    check((await B.locator('#viewer-download').getAttribute('download')) === 'sunset.png', 'a download link');
    await shot(B, 'files-viewer');
    await B.keyboard.press('Escape');
    await until('viewer closed', async () => (await B.locator('#viewer[open]').count()) === 0);
  });

  await step('bob pastes a picture into the composer; alice sees it', async () => {
    await B.locator('#input').focus();
    await B.evaluate((bytes) => {
      const dt = new DataTransfer();
      dt.items.add(new File([new Uint8Array(bytes)], 'image.png', { type: 'image/png' }));
      document.getElementById('input').dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
    }, [...PASTED]);
    await trayReady(B, 1);
    check((await B.locator('#input').inputValue()) === '', 'the picture did not land in the text');
    await B.locator('#input').fill('pasted');
    await B.locator('#send').click();
    const msg = A.locator('#message-list .msg', { hasText: 'pasted' });
    await msg.waitFor();
    const img = msg.locator('.att-image img');
    await until('alice sees the pasted picture', () => img.evaluate((i) => i.complete && i.naturalWidth === 300 && i.naturalHeight === 200));
  });

  await step('a PDF dropped on the conversation: a download card with name and size', async () => {
    await A.evaluate((bytes) => {
      const dt = new DataTransfer();
      dt.items.add(new File([new Uint8Array(bytes)], 'minutes.pdf', { type: 'application/pdf' }));
      const zone = document.getElementById('messages');
      for (const type of ['dragenter', 'dragover']) zone.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
      if (!document.body.classList.contains('dropping')) throw new Error('no drop hint while dragging');
      zone.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    }, [...pdf()]);
    check(!(await A.evaluate(() => document.body.classList.contains('dropping'))), 'the drop hint went away');
    await trayReady(A, 1);
    await A.locator('#send').click(); // files alone, no text
    const card = lastWithFiles(B).locator('a.att-file');
    await card.waitFor();
    check((await card.locator('.att-name').textContent()) === 'minutes.pdf', 'the card names the file');
    const sub = await card.locator('.sub').textContent();
    check(/^\d+(\.\d)? (B|KB) · application\/pdf$/.test(sub), `the card gives size and type: ${sub}`);
    check((await card.getAttribute('download')) === 'minutes.pdf', 'a download');
    check((await lastWithFiles(B).locator('.text').count()) === 0, 'no empty text line');
    const got = await head(await card.getAttribute('href'));
    check(got.status === 200 && /^attachment/.test(got.disposition || '') && got.length === pdf().length,
      `the PDF downloads: ${JSON.stringify(got)}`);
  });

  await step('a file over the cap (uploads.max_bytes, 4 MiB here): refused in words, nothing sent', async () => {
    const before = await B.locator('#message-list .msg').count();
    await A.locator('#file-input').setInputFiles({ name: 'huge.bin', mimeType: 'application/octet-stream', buffer: Buffer.alloc(5 * 1024 * 1024, 1) });
    const item = A.locator('#tray .tray-item[data-state="failed"]');
    await item.waitFor();
    const why = await item.locator('.tray-status').textContent();
    check(why.startsWith('Too large to send'), `said in words: ${why}`);
    await A.locator('#input').fill('with the huge file');
    await A.locator('#input').press('Enter');
    await A.locator('.toast', { hasText: 'A file could not be uploaded: remove it first.' }).waitFor();
    check((await A.locator('#input').inputValue()) === 'with the huge file', 'the text stays');
    await item.locator('.tray-remove').click();
    check((await A.locator('#tray .tray-item').count()) === 0, 'removed');
    await A.locator('#input').press('Enter');
    await B.locator('#message-list .msg', { hasText: 'with the huge file' }).waitFor();
    check((await B.locator('#message-list .msg').count()) === before + 1, 'the text alone arrived');
    check((await lastWithFiles(B).locator('.att-name', { hasText: 'huge.bin' }).count()) === 0, 'no file');
  });

  await step('upload progress on a slow link, and cancel: nothing is sent', async () => {
    const cdp = await alice.context.newCDPSession(A);
    await cdp.send('Network.enable');
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 20, downloadThroughput: -1, uploadThroughput: 200 * 1024 });
    const before = await B.locator('#message-list .msg').count();
    await A.locator('#file-input').setInputFiles({ name: 'big.bin', mimeType: 'application/octet-stream', buffer: Buffer.alloc(3 * 1024 * 1024, 7) });
    const item = A.locator('#tray .tray-item[data-state="uploading"]');
    await until('progress shows', async () => {
      const v = await item.locator('progress').evaluate((p) => p.value / p.max);
      return v > 0.05 && v < 0.95 ? v : false;
    });
    check(/^\d+% of 3\.1 MB$/.test(await item.locator('.tray-status').textContent()), 'progress in words');
    await shot(A, 'files-uploading');
    // Enter while uploading: not sent, the text stays.
    await A.locator('#input').fill('not yet');
    await A.locator('#input').press('Enter');
    await A.locator('.toast', { hasText: 'Wait until the files are uploaded' }).waitFor();
    check((await A.locator('#input').inputValue()) === 'not yet', 'the text stays');
    await item.locator('.tray-remove').click();
    check((await A.locator('#tray .tray-item').count()) === 0, 'cancelled: out of the tray');
    await A.locator('#input').fill('');
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    await cdp.detach();
    await A.locator('#input').fill('after the cancel');
    await A.locator('#input').press('Enter');
    await B.locator('#message-list .msg', { hasText: 'after the cancel' }).waitFor();
    check((await B.locator('#message-list .msg').count()) === before + 1, 'only the text message arrived');
  });

  await step('alice records a voice message; bob plays it', async () => {
    // Players load `/files/…` as media: the page must allow it.
    const csp = (await fetch(env.url)).headers.get('content-security-policy') || '';
    check(/(^|;)\s*media-src[^;]*'self'/.test(csp), `the page's CSP lacks media-src 'self' (audio and video cannot load): ${csp}`);
    await A.locator('#record-voice').click();
    await A.locator('#record-bar', { hasText: 'Recording a voice message' }).waitFor();
    check(await A.locator('#composer').isHidden(), 'the recording bar stands in for the composer');
    await until('two seconds recorded', async () => (await A.locator('#record-time').textContent()).startsWith('0:02'));
    await shot(A, 'files-recording');
    await A.locator('#record-stop').click();
    await trayReady(A, 1);
    const name = await A.locator('#tray .att-name').textContent();
    check(/^voice-message-\d{8}-\d{6}\.webm$/.test(name), `named ${name}`);
    await A.locator('#send').click();
    const audio = lastWithFiles(B).locator('audio');
    await audio.waitFor();
    const src = await audio.getAttribute('src');
    const got = await head(src);
    check(got.status === 200 && /^(audio|video)\/webm/.test(got.type) && got.length > 2000, `the recording is served: ${JSON.stringify(got)}`);
    await until('bob\'s player has the sound', () => audio.evaluate((a) => a.readyState >= 1 && !a.error));
    await audio.evaluate((a) => a.play());
    await until('it plays', () => audio.evaluate((a) => a.currentTime > 0.5));
    await audio.evaluate((a) => a.pause());
    log(`voice message: ${got.length} bytes, ${got.type}`);
  });

  await step('bob records a short video; alice\'s player shows the picture', async () => {
    await B.locator('#record-video').click();
    await B.locator('#record-bar', { hasText: 'Recording a video' }).waitFor();
    await until('the camera preview runs', () => B.locator('#record-preview').evaluate((v) => v.videoWidth > 0));
    await until('two seconds recorded', async () => (await B.locator('#record-time').textContent()).startsWith('0:02'));
    await B.locator('#record-stop').click();
    await trayReady(B, 1);
    await B.locator('#input').fill('a short video');
    await B.locator('#input').press('Enter');
    const video = A.locator('#message-list .msg', { hasText: 'a short video' }).locator('video');
    await video.waitFor();
    await until('alice\'s player has the picture', () => video.evaluate((v) => v.readyState >= 1 && v.videoWidth > 0));
    const got = await head(await video.getAttribute('src'));
    check(got.status === 200 && got.type === 'video/webm', `the video is served: ${JSON.stringify(got)}`);
  });

  await step('a recording can be cancelled: nothing in the tray', async () => {
    await A.locator('#record-voice').click();
    await A.locator('#record-bar').waitFor();
    await A.locator('#record-cancel').click();
    await until('the composer is back', () => A.locator('#composer').isVisible());
    check((await A.locator('#tray .tray-item').count()) === 0, 'nothing kept');
  });

  await step('screenshots: what bob sees', async () => {
    await B.locator('#messages').evaluate((m) => { m.scrollTop = m.scrollHeight; });
    await shot(B, 'files-bob');
    await A.setViewportSize({ width: 375, height: 740 });
    if (await A.locator('#members').isVisible()) await A.locator('#close-members').click();
    await shot(A, 'files-phone');
  });
});
