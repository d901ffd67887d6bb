// alerts.js — telling the user about a message they would want to see:
// a browser notification while the tab is hidden (notify.js), a short
// sound (the sound toggle, kept in this browser), and a polite live region
// that screen readers announce new messages of the open conversation from.
// Which messages count is profile.js's `notifyWanted` (settings.notify and
// muted_rooms); the unread badge in the title is ui.js's.

import { $ } from './dom.js';
import { load, save } from './saved.js';
import { app } from './state.js';

const SOUND_KEY = 'chat.sound';

/** Whether the sound is on (default: on). */
export function soundOn() {
  return load(SOUND_KEY) !== 'off';
}

export function setSound(on) {
  save(SOUND_KEY, on ? 'on' : 'off');
  if (on) beep();
}

let audio = null;
/** The AudioContext, made at the first user gesture (browsers allow sound only after one). */
function context() {
  if (!audio) {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return null;
    audio = new Ctx();
  }
  if (audio.state === 'suspended') audio.resume().catch(() => {});
  return audio;
}
for (const ev of ['pointerdown', 'keydown']) addEventListener(ev, () => context(), { once: true, capture: true });

/** Two soft tones (no file to fetch: the page's CSP needs no media source for it). */
export function beep() {
  const ctx = context();
  if (!ctx) return;
  const t = ctx.currentTime;
  for (const [freq, at] of [[880, 0], [1320, 0.09]]) {
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.type = 'sine';
    osc.frequency.value = freq;
    gain.gain.setValueAtTime(0.0001, t + at);
    gain.gain.exponentialRampToValueAtTime(0.12, t + at + 0.015);
    gain.gain.exponentialRampToValueAtTime(0.0001, t + at + 0.16);
    osc.connect(gain).connect(ctx.destination);
    osc.start(t + at);
    osc.stop(t + at + 0.18);
  }
}

/**
 * A message the user wants to hear about arrived outside the conversation
 * on screen (or in a hidden tab): the sound, and a notification when the
 * tab is hidden.
 */
export function alertUser(title, body, tag, onClick) {
  if (soundOn()) beep();
  if (document.visibilityState !== 'visible') app.notifier.show(title, body, tag, onClick);
}

let announceTimer = null;
const queued = [];
/** Says `text` politely to screen readers (a burst is read as one). */
export function announce(text) {
  const el = $('announce');
  if (!el) return;
  queued.push(text);
  clearTimeout(announceTimer);
  announceTimer = setTimeout(() => {
    el.textContent = queued.splice(0).slice(-3).join('. ');
  }, 400);
}
