// recorder.js — a voice message or a short video recorded in the browser
// (MediaRecorder: WebM with Opus, and VP8 for video). While recording, a
// bar over the composer shows the time (and the camera); Stop puts the
// recording in the tray like any other file (uploads.js), Cancel drops it.
// The microphone and camera are asked for when the user clicks, never
// before, and released as soon as the recording ends.

import { $ } from './dom.js';
import { duration } from './format.js';
import { addFiles } from './uploads.js';
import { app } from './state.js';

/** How long a recording may run, in seconds (it stops by itself then). */
export const MAX_VOICE_SECS = 300;
export const MAX_VIDEO_SECS = 60;

const KINDS = {
  voice: {
    constraints: { audio: { echoCancellation: true, noiseSuppression: true }, video: false },
    types: ['audio/webm;codecs=opus', 'audio/webm'],
    options: { audioBitsPerSecond: 32_000 },
    prefix: 'voice-message',
    max: MAX_VOICE_SECS,
  },
  video: {
    constraints: { audio: true, video: { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 24 } } },
    types: ['video/webm;codecs=vp8,opus', 'video/webm;codecs=vp8', 'video/webm'],
    options: { audioBitsPerSecond: 32_000, videoBitsPerSecond: 600_000 },
    prefix: 'video-message',
    max: MAX_VIDEO_SECS,
  },
};

let rec = null; // {recorder, stream, chunks, kind, started, timer, keep}

export function bindRecorder() {
  if (!$('record-voice')) return;
  const supported = typeof MediaRecorder !== 'undefined' && !!navigator.mediaDevices?.getUserMedia;
  $('record-voice').hidden = !supported;
  $('record-video').hidden = !supported;
  if (!supported) return;
  $('record-voice').addEventListener('click', () => start('voice'));
  $('record-video').addEventListener('click', () => start('video'));
  $('record-stop').addEventListener('click', () => stop(true));
  $('record-cancel').addEventListener('click', () => stop(false));
  addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && rec) stop(false);
  });
}

/** Recording now (the composer shows the recording bar). */
export function recording() {
  return !!rec;
}

async function start(kind) {
  if (rec || !app.current) return;
  const k = KINDS[kind];
  const type = k.types.find((t) => MediaRecorder.isTypeSupported(t));
  if (!type) {
    app.ui.toast(`This browser cannot record ${kind === 'voice' ? 'sound' : 'video'} as WebM.`);
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia(k.constraints);
  } catch (e) {
    const what = kind === 'voice' ? 'the microphone' : 'the camera and microphone';
    app.ui.toast(e?.name === 'NotAllowedError'
      ? `The browser did not allow ${what}. Allow it in the site settings, then try again.`
      : `Could not use ${what}${e?.message ? ` (${e.message})` : ''}.`);
    return;
  }
  let recorder;
  try {
    recorder = new MediaRecorder(stream, { mimeType: type, ...k.options });
  } catch (e) {
    stream.getTracks().forEach((t) => t.stop());
    app.ui.toast(`Could not start recording (${e?.message || e}).`);
    return;
  }
  const conv = app.current;
  const r = { recorder, stream, chunks: [], kind, started: Date.now(), timer: null, keep: false, type, conv };
  rec = r;
  recorder.addEventListener('dataavailable', (e) => { if (e.data?.size) r.chunks.push(e.data); });
  recorder.addEventListener('stop', () => finish(r));
  recorder.start(1000);
  showBar(r);
  r.timer = setInterval(() => {
    const secs = (Date.now() - r.started) / 1000;
    $('record-time').textContent = `${duration(secs)} / ${duration(k.max)}`;
    if (secs >= k.max) stop(true);
  }, 250);
}

/** Ends the recording; `keep`: into the tray, else thrown away. */
function stop(keep) {
  const r = rec;
  if (!r) return;
  r.keep = keep;
  clearInterval(r.timer);
  if (r.recorder.state !== 'inactive') r.recorder.stop();
  else finish(r);
}

function finish(r) {
  if (rec !== r) return;
  rec = null;
  r.stream.getTracks().forEach((t) => t.stop());
  hideBar();
  if (!r.keep) return;
  const blob = new Blob(r.chunks, { type: r.type.split(';')[0] });
  if (!blob.size) {
    app.ui.toast('Nothing was recorded.');
    return;
  }
  const stamp = new Date(r.started).toISOString().slice(0, 19).replace(/[-:]/g, '').replace('T', '-');
  const file = new File([blob], `${KINDS[r.kind].prefix}-${stamp}.webm`, { type: blob.type });
  if (app.current !== r.conv) app.ui.toast('The recording went to the conversation it was made in.', 'info');
  addFiles([file], r.conv);
  $('send')?.focus();
}

function showBar(r) {
  document.body.classList.add('recording');
  $('record-bar').hidden = false;
  $('record-what').textContent = r.kind === 'voice' ? 'Recording a voice message' : 'Recording a video';
  $('record-time').textContent = `${duration(0)} / ${duration(KINDS[r.kind].max)}`;
  const preview = $('record-preview');
  preview.hidden = r.kind !== 'video';
  // A live stream (srcObject) is no URL: the page's media rules do not apply.
  if (r.kind === 'video') preview.srcObject = r.stream;
  $('record-stop').focus();
}

function hideBar() {
  document.body.classList.remove('recording');
  $('record-bar').hidden = true;
  const preview = $('record-preview');
  preview.srcObject = null;
  preview.hidden = true;
}
