// uploads.js — files on their way into a message: picked with the attach
// button, dropped on the conversation, pasted into the composer, or
// recorded (recorder.js). Each is uploaded at once (`POST api/uploads`
// with welcome's token, over XHR for its progress; cancellable) and waits
// in the tray above the composer, per conversation, until a message takes
// it (composer.js).

import { h, $, replace } from './dom.js';
import { bytes, fileUrl, errorText } from './format.js';
import { kindOf } from './attachments.js';
import { app } from './state.js';

/** At most this many files in one message (the server's `uploads.max_attachments`). */
export const MAX_FILES = 10;

let nextKey = 1;

/** The files waiting in a conversation's tray: [{key, file, state, loaded, upload, xhr, error}]. */
function trayOf(c) {
  if (!c.files) c.files = [];
  return c.files;
}

/** Adds files to a conversation's tray (the one on screen) and starts uploading them. */
export function addFiles(fileList, c = app.current) {
  const files = [...(fileList || [])].filter((f) => f instanceof Blob);
  if (!c || !files.length) return;
  const tray = trayOf(c);
  const room = MAX_FILES - tray.length;
  if (files.length > room) app.ui.toast(`A message carries at most ${MAX_FILES} files.`, 'error', 'too-many-files');
  for (const file of files.slice(0, Math.max(0, room))) {
    const item = { key: nextKey++, file, name: file.name || 'file', state: 'uploading', loaded: 0, upload: null, xhr: null, error: '' };
    tray.push(item);
    start(c, item);
  }
  renderTray();
}

/** `POST api/uploads`, multipart `file`, with progress. */
function start(c, item) {
  const xhr = new XMLHttpRequest();
  item.xhr = xhr;
  xhr.open('POST', 'api/uploads');
  if (app.token) xhr.setRequestHeader('Authorization', `Bearer ${app.token}`);
  xhr.responseType = 'json';
  xhr.upload.addEventListener('progress', (e) => {
    item.loaded = e.loaded;
    if (e.lengthComputable) item.total = e.total;
    updateItem(c, item);
  });
  xhr.addEventListener('load', () => {
    item.xhr = null;
    const body = xhr.response;
    if (xhr.status === 201 && body?.id) {
      item.state = 'done';
      item.upload = body;
    } else {
      item.state = 'failed';
      item.error = uploadError(xhr.status, body);
    }
    renderTray();
  });
  xhr.addEventListener('error', () => {
    item.xhr = null;
    item.state = 'failed';
    item.error = 'The upload was cut off. Check your connection and try again.';
    renderTray();
  });
  const form = new FormData();
  form.append('file', item.file, item.name);
  xhr.send(form);
}

function uploadError(status, body) {
  const err = body?.error;
  if (status === 413 || err?.code === 'too_large') return `Too large to send${err?.message ? ` (${err.message})` : ''}.`;
  if (status === 401) return 'Your sign-in has expired: reload the page.';
  if (err) return errorText(err);
  return `The upload failed (HTTP ${status || 'error'}).`;
}

/** Stops an upload and drops the file from the tray. */
export function removeFile(c, item) {
  item.xhr?.abort();
  item.xhr = null;
  const tray = trayOf(c);
  const i = tray.indexOf(item);
  if (i >= 0) tray.splice(i, 1);
  renderTray();
  $('input')?.focus();
}

/** Files are in the tray of the conversation on screen. */
export function hasFiles() {
  return !!app.current?.files?.length;
}

/**
 * What a message to `c` should carry: {ids, items}, or {wait: sentence}
 * while a file is still uploading or failed.
 */
export function readyFiles(c) {
  const tray = c?.files || [];
  if (tray.some((i) => i.state === 'uploading')) return { wait: 'Wait until the files are uploaded, or remove them.' };
  if (tray.some((i) => i.state === 'failed')) return { wait: 'A file could not be uploaded: remove it first.' };
  // Files a message being sent carries already are not taken twice.
  const items = tray.filter((i) => i.state === 'done');
  return { ids: items.map((i) => i.upload.id), items };
}

/** A message with these files is on its way (`true`), or came back refused (`false`). */
export function sending(items, on) {
  for (const i of items) i.state = on ? 'sending' : 'done';
}

/** The message took these files: out of the tray. */
export function sent(c, items) {
  c.files = trayOf(c).filter((i) => !items.includes(i));
  if (c === app.current) renderTray();
}

// ---- the tray ------------------------------------------------------------

const els = new Map(); // item key -> element

/** Draws the tray of the conversation on screen. */
export function renderTray() {
  const tray = $('tray');
  if (!tray) return;
  const c = app.current;
  const items = c ? trayOf(c) : [];
  els.clear();
  replace(tray, ...items.map((item) => {
    const el = itemEl(c, item);
    els.set(item.key, el);
    return el;
  }));
  tray.hidden = items.length === 0;
}

function itemEl(c, item) {
  const u = item.upload;
  const thumb = u && kindOf(u) === 'image' ? fileUrl(u.thumbnail_url || u.url) : null;
  const ext = (item.name.includes('.') ? item.name.split('.').pop() : '').slice(0, 4).toUpperCase() || 'FILE';
  const preview = thumb
    ? h('img', { class: 'tray-thumb', src: thumb, alt: '' })
    : h('span', { class: 'tray-thumb att-icon', text: ext, attrs: { 'aria-hidden': 'true' } });
  const status = item.state === 'uploading' ? progressText(item)
    : item.state === 'failed' ? item.error : bytes(u?.size ?? item.file.size);
  const bar = h('progress', { max: item.file.size || 1, value: item.loaded, attrs: { 'aria-label': `Uploading ${item.name}` } });
  bar.hidden = item.state !== 'uploading';
  return h('li', { class: `tray-item ${item.state}`, dataset: { state: item.state, name: item.name } },
    preview,
    h('span', { class: 'tray-meta' },
      h('span', { class: 'att-name', text: item.name, title: item.name }),
      h('span', { class: 'sub tray-status', text: status }),
      bar),
    h('button', {
      type: 'button', class: 'icon tray-remove', text: '✕',
      attrs: { 'aria-label': item.state === 'uploading' ? `Cancel the upload of ${item.name}` : `Remove ${item.name}` },
      title: item.state === 'uploading' ? 'Cancel the upload' : 'Remove',
      on: { click: () => removeFile(c, item) },
    }));
}

function progressText(item) {
  const total = item.total || item.file.size || 0;
  const pct = total ? Math.min(100, Math.floor((item.loaded / total) * 100)) : 0;
  return `${pct}% of ${bytes(item.file.size)}`;
}

/** Progress only: the bar and the numbers, not the whole tray. */
function updateItem(c, item) {
  if (c !== app.current) return;
  const el = els.get(item.key);
  if (!el) return;
  const bar = el.querySelector('progress');
  bar.max = item.total || item.file.size || 1;
  bar.value = item.loaded;
  el.querySelector('.tray-status').textContent = progressText(item);
}

// ---- ways in: the button, dropping, pasting ------------------------------------

/** Wires the attach button, the drop zone and pasting (once, at start). */
export function bindUploads() {
  const picker = $('file-input');
  if (!picker) return;
  $('attach').addEventListener('click', () => picker.click());
  picker.addEventListener('change', () => {
    addFiles(picker.files);
    picker.value = '';
  });
  $('input').addEventListener('paste', (e) => {
    const files = e.clipboardData?.files;
    if (files?.length) {
      e.preventDefault();
      addFiles(files);
    }
  });
  const zone = document.querySelector('.main');
  let depth = 0;
  const carriesFiles = (e) => [...(e.dataTransfer?.types || [])].includes('Files');
  const done = () => {
    depth = 0;
    document.body.classList.remove('dropping');
  };
  zone.addEventListener('dragenter', (e) => {
    if (!carriesFiles(e) || !app.current) return;
    e.preventDefault();
    depth += 1;
    document.body.classList.add('dropping');
  });
  zone.addEventListener('dragover', (e) => {
    if (!carriesFiles(e) || !app.current) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = 'copy';
  });
  zone.addEventListener('dragleave', () => {
    depth = Math.max(0, depth - 1);
    if (!depth) done();
  });
  zone.addEventListener('drop', (e) => {
    if (!carriesFiles(e)) return;
    e.preventDefault();
    done();
    addFiles(e.dataTransfer.files);
  });
}
