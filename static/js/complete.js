// complete.js — `@` in the message box offers the people of the open
// conversation (a room's members, a DM's peer) by nick or display name:
// ↑/↓ choose, Enter or Tab puts `@nick ` in, Esc closes. A listbox the
// textarea points at (aria-controls, aria-activedescendant).

import { h, $, replace } from './dom.js';
import { fold } from './store.js';
import { app } from './state.js';

const MAX = 8;
let open = false;
let items = [];
let active = 0;
let range = null; // [start, end] of `@query` in the textarea

/** People one may mention here, best matches first. */
function candidates(c, q) {
  const { store } = app;
  const people = c.kind === 'room' ? c.memberList().map((m) => m.nick) : c.kind === 'dm' ? [c.name] : [];
  const fq = fold(q);
  const scored = [];
  for (const nick of people) {
    if (store.isMe(nick)) continue;
    const name = fold(store.displayName(nick));
    const n = fold(nick);
    let score = -1;
    if (n.startsWith(fq)) score = 0;
    else if (name.startsWith(fq)) score = 1;
    else if (n.includes(fq) || name.includes(fq)) score = 2;
    if (score >= 0) scored.push({ nick, score });
  }
  scored.sort((a, b) => a.score - b.score || a.nick.localeCompare(b.nick));
  return scored.slice(0, MAX).map((s) => s.nick);
}

function close() {
  if (!open) return;
  open = false;
  items = [];
  $('complete').hidden = true;
  $('input').removeAttribute('aria-activedescendant');
}

function draw() {
  const list = $('complete');
  const { store } = app;
  replace(list, ...items.map((nick, i) => h('li', {
    id: `complete-${i}`, attrs: { role: 'option', 'aria-selected': String(i === active) },
    class: i === active ? 'active' : '',
    on: {
      mousedown: (e) => e.preventDefault(),
      click: () => pick(i),
    },
  }, h('span', { class: 'name', text: store.displayName(nick) }), ' ', h('span', { class: 'sub', text: `@${nick}` }))));
  list.hidden = false;
  $('input').setAttribute('aria-activedescendant', `complete-${active}`);
}

function pick(i) {
  const input = $('input');
  const nick = items[i];
  if (!nick || !range) return close();
  const [start, end] = range;
  input.value = `${input.value.slice(0, start)}@${nick} ${input.value.slice(end)}`;
  const caret = start + nick.length + 2;
  input.setSelectionRange(caret, caret);
  input.focus();
  close();
  app.ui.autosize();
}

function update() {
  const input = $('input');
  const c = app.current;
  if (!c || input.selectionStart !== input.selectionEnd) return close();
  const before = input.value.slice(0, input.selectionStart);
  const m = /(^|[\s(])@([\w.-]{0,32})$/.exec(before);
  if (!m) return close();
  items = candidates(c, m[2]);
  // Nothing left to complete: the nick is typed in full.
  if (!items.length || (items.length === 1 && fold(items[0]) === fold(m[2]))) return close();
  range = [input.selectionStart - m[2].length - 1, input.selectionStart];
  if (!open) active = 0;
  active = Math.min(active, items.length - 1);
  open = true;
  draw();
}

export function bindComplete() {
  const input = $('input');
  if (!$('complete')) return;
  input.addEventListener('input', update);
  input.addEventListener('click', update);
  input.addEventListener('blur', () => setTimeout(close, 150));
  // Before the composer's own keys (Enter sends): capture on the textarea.
  input.addEventListener('keydown', (e) => {
    if (!open) return;
    let handled = true;
    if (e.key === 'ArrowDown') active = (active + 1) % items.length;
    else if (e.key === 'ArrowUp') active = (active + items.length - 1) % items.length;
    else if (e.key === 'Enter' || e.key === 'Tab') return (e.preventDefault(), e.stopImmediatePropagation(), pick(active));
    else if (e.key === 'Escape') close();
    else handled = false;
    if (handled) {
      e.preventDefault();
      e.stopImmediatePropagation();
      if (open) draw();
    }
  }, { capture: true });
}

/** Whether the list is open (Escape closes it before anything else). */
export const completing = () => open;
