// search.js — searching messages (`search` frame → `search_results`,
// newest first, only what this user may read): the dialog (the magnifier in
// the header, Ctrl+K or /search WORDS), everywhere or in one conversation;
// each result shows where, who, when and the text with the words marked
// (as text nodes), and a click opens the conversation at that message with
// the history around it loaded (pane.js `jumpTo`).

import { h, $, replace } from './dom.js';
import { clock, fullTime, dayLabel, errorText } from './format.js';
import { jumpTo } from './pane.js';
import { joinRoom } from './rooms.js';
import { app } from './state.js';

const PAGE = 25;
let limit = PAGE;

export function openSearch(q = '') {
  const dialog = $('search-dialog');
  if (!dialog) return;
  const where = $('search-where');
  const keep = where.value;
  const { store } = app;
  replace(where, h('option', { value: '', text: 'Everywhere' }),
    ...store.rooms().map((c) => h('option', { value: c.id, text: `#${c.name.replace(/^#/, '')}` })),
    ...store.dms().filter((c) => c.kind === 'dm').map((c) => h('option', { value: c.id, text: `${store.displayName(c.name)} (direct)` })));
  where.value = [...where.options].some((o) => o.value === keep) ? keep : '';
  if (q) $('search-q').value = q;
  if (!dialog.open) dialog.showModal();
  $('search-q').focus();
  if (q) run();
}

async function run(more = false) {
  const q = $('search-q').value.trim();
  const status = $('search-status');
  if (!q) {
    status.textContent = 'Type the words to find.';
    return;
  }
  limit = more ? limit + PAGE : PAGE;
  const c = app.store.get($('search-where').value);
  const frame = { type: 'search', q, limit };
  if (c?.kind === 'room') frame.room = c.name;
  else if (c?.kind === 'dm') frame.with = c.name;
  status.textContent = 'Searching…';
  const r = await app.conn.request(frame);
  if (r.type !== 'search_results') {
    status.textContent = errorText(r);
    return;
  }
  const list = Array.isArray(r.messages) ? r.messages : [];
  status.textContent = list.length ? `${list.length}${r.more ? '+' : ''} message${list.length === 1 ? '' : 's'} found.` : 'Nothing found.';
  replace($('search-results'), ...list.map((m) => result(m, q)));
  $('search-more').hidden = !r.more;
}

/** The conversation a result belongs to. */
function convOf(m) {
  const { store } = app;
  if (m.room) return store.room(m.room, false) || store.room(m.room);
  if (m.with) return store.dm(m.with);
  return store.convOf(m);
}

function result(m, q) {
  const { store } = app;
  const where = m.room ? `#${String(m.room).replace(/^#/, '')}` : m.everyone ? 'Everyone' : `${store.displayName(m.with || (store.isMe(m.from) ? m.to : m.from) || '')} (direct)`;
  return h('li', {}, h('button', {
    type: 'button', class: 'search-hit',
    on: {
      click: async () => {
        $('search-dialog').close();
        const c = convOf(m);
        if (c?.kind === 'room' && !c.joined) await joinRoom(c.name, true);
        jumpTo(c, m.seq, m.msg_id);
      },
    },
  },
  h('span', { class: 'hit-head' },
    h('span', { class: 'hit-where', text: where }), ' · ',
    h('span', { class: 'name', text: store.displayName(m.from) }), ' · ',
    h('time', { text: `${dayLabel(m.sent_at)} ${clock(m.sent_at)}`, title: fullTime(m.sent_at) })),
  h('span', { class: 'hit-text', attrs: { dir: 'auto' } }, marked(m.text || '', q))));
}

/** `text` with the searched words in <mark> (all as text nodes). */
function marked(text, q) {
  const words = q.split(/\s+/).filter((w) => w.length > 1).map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  const short = text.length > 300 ? `${text.slice(0, 300)}…` : text;
  if (!words.length) return [short];
  const re = new RegExp(`(${words.join('|')})`, 'gi');
  return short.split(re).map((part, i) => (i % 2 ? h('mark', { text: part }) : part));
}

export function bindSearch() {
  const dialog = $('search-dialog');
  if (!dialog) return;
  $('open-search').addEventListener('click', () => openSearch());
  $('search-close').addEventListener('click', () => dialog.close());
  $('search-form').addEventListener('submit', (e) => {
    e.preventDefault();
    run();
  });
  $('search-more').addEventListener('click', () => run(true));
  addEventListener('keydown', (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === 'k' && !$('app').hidden) {
      e.preventDefault();
      openSearch();
    }
  });
}
