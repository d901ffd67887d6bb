// attachments.js — the files a message carries, as the message list shows
// them: pictures as thumbnails that open a full-size viewer, audio and
// video as players, anything else as a download card (name, size). A
// `video/*` file with no picture (a recorded voice message: WebM is sniffed
// as video) is played as audio. All names are text; every URL goes through
// fileUrl (a path on this server, or http(s)).

import { h, $, replace } from './dom.js';
import { bytes, fileUrl } from './format.js';

/** Raster types the server re-encodes or checks and serves inline. */
const PICTURES = new Set(['image/png', 'image/jpeg', 'image/gif', 'image/webp']);
/** The box a thumbnail is fitted in (CSS pixels). */
const THUMB_W = 320;
const THUMB_H = 240;

/** What kind of player or card a file gets. */
export function kindOf(a) {
  const type = String(a?.content_type || '').toLowerCase();
  if (PICTURES.has(type)) return 'image';
  if (type.startsWith('audio/')) return 'audio';
  if (type.startsWith('video/')) return /^voice-message/i.test(String(a.name || '')) ? 'audio' : 'video';
  return 'file';
}

/** The list of a message's attachments, or null when it has none. */
export function attachmentsEl(list) {
  const files = Array.isArray(list) ? list.filter((a) => a && fileUrl(a.url)) : [];
  if (!files.length) return null;
  return h('div', { class: 'attachments' }, files.map((a) => attachmentEl(a)));
}

function attachmentEl(a) {
  const url = fileUrl(a.url);
  const name = String(a.name || 'file');
  switch (kindOf(a)) {
    case 'image': return imageEl(a, url, name);
    case 'audio': return audioEl(url, name, a.size);
    case 'video': return videoEl(a, url, name);
    default: return fileCard(url, name, a.size, a.content_type);
  }
}

function imageEl(a, url, name) {
  const w = Number(a.width) || 0;
  const hgt = Number(a.height) || 0;
  const scale = w && hgt ? Math.min(1, THUMB_W / w, THUMB_H / hgt) : 1;
  // The size is reserved before the picture loads: the list does not jump.
  const img = h('img', {
    src: fileUrl(a.thumbnail_url) || url,
    alt: name,
    loading: 'lazy',
    decoding: 'async',
    attrs: w && hgt ? { width: Math.max(1, Math.round(w * scale)), height: Math.max(1, Math.round(hgt * scale)) } : {},
  });
  return h('button', {
    type: 'button', class: 'att att-image', title: `${name} (${bytes(a.size)})`,
    attrs: { 'aria-label': `Open the picture ${name}` },
    on: { click: () => openViewer(url, name, a) },
  }, img);
}

function caption(url, name, size) {
  return h('span', { class: 'att-caption' },
    h('span', { class: 'att-name', text: name }),
    h('span', { class: 'sub', text: bytes(size) }),
    h('a', { class: 'att-download', href: url, download: name, text: 'Download', attrs: { 'aria-label': `Download ${name}` } }));
}

function audioEl(url, name, size) {
  return h('div', { class: 'att att-audio' },
    h('audio', { controls: true, preload: 'metadata', src: url, attrs: { 'aria-label': name } }),
    caption(url, name, size));
}

function videoEl(a, url, name) {
  const box = h('div', { class: 'att att-video' });
  const video = h('video', { controls: true, preload: 'metadata', playsInline: true, src: url, attrs: { 'aria-label': name } });
  // A WebM with only a sound track: an audio player, not a black box.
  video.addEventListener('loadedmetadata', () => {
    if (video.videoWidth === 0 && video.videoHeight === 0) box.replaceWith(audioEl(url, name, a.size));
  }, { once: true });
  box.append(video, caption(url, name, a.size));
  return box;
}

function fileCard(url, name, size, type) {
  const ext = (name.includes('.') ? name.split('.').pop() : '').slice(0, 4).toUpperCase() || 'FILE';
  return h('a', {
    class: 'att att-file', href: url, download: name, title: `Download ${name}`,
    attrs: { 'aria-label': `Download ${name}, ${bytes(size)}` },
  },
  h('span', { class: 'att-icon', attrs: { 'aria-hidden': 'true' }, text: ext }),
  h('span', { class: 'att-meta' },
    h('span', { class: 'att-name', text: name }),
    h('span', { class: 'sub', text: [bytes(size), type].filter(Boolean).join(' · ') })));
}

// ---- the full-size viewer ----------------------------------------------------

let viewerBound = false;

/** Shows a picture at full size in a modal dialog (Esc or a click closes it). */
export function openViewer(url, name, a = {}) {
  const dialog = $('viewer');
  if (!dialog) {
    window.open(url, '_blank', 'noopener');
    return;
  }
  if (!viewerBound) {
    viewerBound = true;
    $('viewer-close').addEventListener('click', () => dialog.close());
    // A click on the dark backdrop (the dialog itself, not its contents) closes it.
    dialog.addEventListener('click', (e) => { if (e.target === dialog) dialog.close(); });
    dialog.addEventListener('close', () => replace($('viewer-body')));
  }
  const img = h('img', { src: url, alt: name });
  if (a.width && a.height) {
    img.setAttribute('width', String(a.width));
    img.setAttribute('height', String(a.height));
  }
  replace($('viewer-body'), img);
  $('viewer-name').textContent = name;
  $('viewer-size').textContent = [a.width && a.height ? `${a.width} × ${a.height}` : '', bytes(a.size)].filter(Boolean).join(' · ');
  const dl = $('viewer-download');
  dl.href = url;
  dl.download = name;
  if (!dialog.open) dialog.showModal();
  $('viewer-close').focus();
}
