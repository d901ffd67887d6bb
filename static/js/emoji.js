// emoji.js — the emoji picker: a small dialog of common emoji, opened by
// the ☺ button next to the message box (the emoji goes in at the caret) or
// by a message's React action (the emoji becomes a reaction). Arrow keys
// move, Enter picks, Esc closes and puts the focus back.

import { h, $, replace } from './dom.js';
import { EMOJI, PICKER } from './richtext.js';

const names = new Map();
for (const [name, e] of Object.entries(EMOJI)) if (!names.has(e)) names.set(e, name.replace(/_/g, ' '));

let onPick = null;
let returnTo = null;

/** Opens the picker; `pick(emoji)` gets the choice. */
export function openPicker(pick, anchor) {
  const dialog = $('emoji-picker');
  if (!dialog) return;
  onPick = pick;
  returnTo = anchor || document.activeElement;
  const grid = $('emoji-grid');
  if (!grid.childElementCount) {
    replace(grid, ...PICKER.map((e) => h('button', {
      type: 'button', class: 'emoji-btn', text: e, title: `:${names.get(e)?.replace(/ /g, '_') || ''}:`,
      attrs: { 'aria-label': names.get(e) || e },
      on: { click: () => choose(e) },
    })));
  }
  dialog.showModal();
  grid.firstElementChild?.focus();
}

function choose(e) {
  const pick = onPick;
  $('emoji-picker').close();
  pick?.(e);
}

export function bindEmoji() {
  const dialog = $('emoji-picker');
  if (!dialog) return;
  dialog.addEventListener('close', () => {
    onPick = null;
    // A message redrawn meanwhile (the reaction arrived): its React button, or the message itself.
    let back = returnTo;
    if (back && !back.isConnected) {
      const id = back.closest?.('.msg')?.dataset.id;
      const msg = id && document.querySelector(`#message-list .msg[data-id="${CSS.escape(id)}"]`);
      back = msg?.querySelector('.msg-actions button') || msg;
    }
    back?.focus();
  });
  // A click on the backdrop closes it.
  dialog.addEventListener('click', (e) => { if (e.target === dialog) dialog.close(); });
  const grid = $('emoji-grid');
  grid.addEventListener('keydown', (e) => {
    const buttons = [...grid.children];
    const i = buttons.indexOf(document.activeElement);
    const cols = Math.round(grid.clientWidth / (buttons[0]?.offsetWidth || 40)) || 6;
    const move = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: cols, ArrowUp: -cols }[e.key];
    if (move === undefined || i < 0) return;
    e.preventDefault();
    buttons[Math.max(0, Math.min(buttons.length - 1, i + move))].focus();
  });
  $('emoji-open')?.addEventListener('click', (e) => openPicker((emoji) => insert(emoji), e.currentTarget));
}

/** Puts text in the message box at the caret. */
export function insert(text) {
  const input = $('input');
  const start = input.selectionStart ?? input.value.length;
  const end = input.selectionEnd ?? start;
  input.value = input.value.slice(0, start) + text + input.value.slice(end);
  const caret = start + text.length;
  input.focus();
  input.setSelectionRange(caret, caret);
  input.dispatchEvent(new Event('input'));
}
