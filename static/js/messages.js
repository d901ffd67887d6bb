// messages.js — the message list of the open conversation: day separators,
// sender and time, grouping of consecutive messages, edit and delete
// controls on one's own messages, system lines ("bob joined"), the "Seen"
// receipt in direct messages, the files a message carries (attachments.js),
// each sender's current name and picture, and the scroll position (follow the bottom;
// keep the view still when older messages arrive above it).

import { h, $, replace } from './dom.js';
import { clock, fullTime, dayKey, dayLabel, fileUrl } from './format.js';
import { fold } from './store.js';
import { attachmentsEl } from './attachments.js';

/** The nick the server's announcements come from (nobody may take it). */
const SERVER = 'server';

const GROUP_MS = 5 * 60_000;

/** A round avatar: the picture when there is one, else an initial on a colour. */
export function avatarEl(store, nick, extraClass = '') {
  const url = fileUrl(store.avatar(nick), true);
  const name = store.displayName(nick);
  const el = h('span', { class: `avatar ${extraClass}`, attrs: { 'aria-hidden': 'true' } });
  el.dataset.hue = String(hue(nick));
  if (url) {
    el.append(h('img', { src: url, alt: '', loading: 'lazy', referrerPolicy: 'no-referrer' }));
  } else {
    el.textContent = [...name.trim()][0]?.toUpperCase() || '?';
  }
  return el;
}

/** One of 12 colours, stable per nick. */
function hue(nick) {
  let x = 0;
  for (const c of fold(nick)) x = (x * 31 + c.charCodeAt(0)) >>> 0;
  return x % 12;
}

export class MessageList {
  /**
   * handlers: loadOlder(conv), edit(msg, text) → Promise<bool>,
   * remove(msg), canDelete(msg), onBottom(), unknown(nick) (an author
   * whose name and picture the store does not know).
   */
  constructor(store, handlers) {
    this.store = store;
    this.handlers = handlers;
    this.box = $('messages');
    this.list = $('message-list');
    this.olderBtn = $('load-older');
    this.jumpBtn = $('jump');
    this.conv = null;
    this.els = new Map(); // item key -> element
    this.editing = null; // msg_id being edited
    this.box.addEventListener('scroll', () => this.onScroll(), { passive: true });
    // A picture or player that grows after it loads keeps a list that was at
    // its bottom at its bottom.
    this.stuck = true;
    for (const ev of ['load', 'loadedmetadata']) {
      this.list.addEventListener(ev, () => { if (this.stuck && !this.atBottom()) this.scrollToBottom(); }, true);
    }
    this.olderBtn.addEventListener('click', () => this.conv && this.handlers.loadOlder(this.conv));
    this.jumpBtn.addEventListener('click', () => {
      this.scrollToBottom();
      $('input')?.focus();
    });
    this.box.addEventListener('keydown', (e) => {
      if ((e.key === 'PageUp' || e.key === 'Home') && this.box.scrollTop < 200 && this.conv) this.handlers.loadOlder(this.conv);
    });
  }

  atBottom() {
    return this.box.scrollHeight - this.box.scrollTop - this.box.clientHeight < 48;
  }

  scrollToBottom() {
    this.box.scrollTop = this.box.scrollHeight;
    this.stuck = true;
    this.jumpBtn.hidden = true;
  }

  onScroll() {
    if (!this.conv) return;
    this.stuck = this.atBottom();
    if (this.atBottom()) {
      this.jumpBtn.hidden = true;
      this.handlers.onBottom(this.conv);
    }
    if (this.box.scrollTop < 300 && this.conv.hasOlder) this.handlers.loadOlder(this.conv);
  }

  /** Shows `conv` (from scratch when it is another conversation). */
  show(conv) {
    if (!conv) {
      this.conv = null;
      this.els.clear();
      replace(this.list);
      this.olderBtn.hidden = true;
      this.jumpBtn.hidden = true;
      return;
    }
    if (conv !== this.conv) {
      this.conv = conv;
      this.els.clear();
      replace(this.list);
      this.editing = null;
      this.render(true);
    } else {
      this.render();
    }
  }

  /** Brings the list in line with the conversation; keeps the elements it can. */
  render(toBottom = false) {
    const conv = this.conv;
    if (!conv) return;
    const stick = toBottom || this.atBottom();
    const anchor = stick ? null : this.anchor();
    const items = this.items(conv);
    const seen = new Set();
    let lastNew = null;
    items.forEach((item, i) => {
      let el = this.els.get(item.key);
      if (!el) {
        el = this.create(item);
        this.els.set(item.key, el);
        if (item.msg) lastNew = item;
      }
      this.update(el, item);
      seen.add(item.key);
      const at = this.list.children[i];
      if (at !== el) this.list.insertBefore(el, at || null);
    });
    for (const [key, el] of this.els) {
      if (!seen.has(key)) {
        el.remove();
        this.els.delete(key);
      }
    }
    this.olderBtn.hidden = !conv.hasOlder;
    if (stick) this.scrollToBottom();
    else if (anchor) {
      this.box.scrollTop += anchor.el.getBoundingClientRect().top - anchor.top;
      if (lastNew && lastNew.msg.seq === conv.max && !this.store.isMe(lastNew.msg.from)) this.jumpBtn.hidden = false;
    }
    // Too little to scroll: nothing would ever ask for older messages.
    if (conv.hasOlder && this.box.scrollHeight <= this.box.clientHeight + 20) this.handlers.loadOlder(conv);
  }

  /** The first element in view, and where it is, to keep it still. */
  anchor() {
    const top = this.box.getBoundingClientRect().top;
    for (const el of this.list.children) {
      // Day separators and the start line move with what comes before them.
      if (!el.classList.contains('msg') && !el.classList.contains('event')) continue;
      const r = el.getBoundingClientRect();
      if (r.bottom > top) return { el, top: r.top };
    }
    return null;
  }

  /** What the list shows, in order: {key, kind, …}. */
  items(conv) {
    const out = [];
    const msgs = conv.sorted();
    const events = conv.events;
    let ei = 0;
    let day = null;
    let prev = null;
    const push = (item, at) => {
      const dk = dayKey(at);
      if (dk !== day) {
        out.push({ key: `day:${dk}`, kind: 'day', at });
        day = dk;
        prev = null;
      }
      out.push(item);
    };
    if (conv.loaded && !conv.hasOlder) {
      const what = conv.kind === 'room' ? `This is the start of ${conv.name}.`
        : conv.kind === 'dm' ? `This is the start of your conversation with ${this.store.displayName(conv.name)}.`
          : 'Messages to everyone appear here.';
      out.push({ key: 'start', kind: 'start', text: what });
    }
    let receiptAfter = null;
    if (conv.kind === 'dm' && conv.peerRead) {
      for (const m of msgs) if (m.seq <= conv.peerRead && this.store.isMe(m.from)) receiptAfter = m.seq;
    }
    for (const m of msgs) {
      while (ei < events.length && events[ei].afterSeq < m.seq) {
        const e = events[ei++];
        push({ key: e.key, kind: 'event', text: e.text, at: e.at }, e.at);
        prev = null;
      }
      const cont = !!prev && !prev.deleted && !m.deleted && fold(prev.from) === fold(m.from)
        && m.sent_at - prev.sent_at < GROUP_MS && dayKey(prev.sent_at) === dayKey(m.sent_at);
      push({ key: `m:${m.msg_id}`, kind: 'msg', msg: m, cont }, m.sent_at);
      prev = m;
      if (m.seq === receiptAfter) out.push({ key: 'receipt', kind: 'receipt' });
    }
    while (ei < events.length) {
      const e = events[ei++];
      push({ key: e.key, kind: 'event', text: e.text, at: e.at }, e.at);
    }
    return out;
  }

  create(item) {
    switch (item.kind) {
      case 'day':
        return h('li', { class: 'day', attrs: { role: 'separator' } }, h('span', { text: dayLabel(item.at) }));
      case 'start':
        return h('li', { class: 'start', text: item.text });
      case 'event':
        return h('li', { class: 'event' }, h('span', { text: item.text }), ' ', h('time', { text: clock(item.at), title: fullTime(item.at) }));
      case 'receipt':
        return h('li', { class: 'receipt', text: 'Seen' });
      default:
        // tabindex -1: a tap focuses the message, which shows its controls.
        return h('li', { class: 'msg', tabIndex: -1, dataset: { seq: item.msg.seq, id: item.msg.msg_id } });
    }
  }

  update(el, item) {
    if (item.kind === 'day') {
      el.firstChild.textContent = dayLabel(item.at);
      return;
    }
    if (item.kind !== 'msg') return;
    const m = item.msg;
    const own = this.store.isMe(m.from);
    if (m.from !== SERVER && !this.store.people.has(fold(m.from))) this.handlers.unknown?.(m.from);
    el.classList.toggle('cont', item.cont);
    el.classList.toggle('own', own);
    el.classList.toggle('deleted', !!m.deleted);
    const files = m.deleted ? '' : (m.attachments || []).map((a) => a?.id).join(',');
    const sig = [m.text, m.edited_at, m.deleted, this.store.displayName(m.from), this.store.avatar(m.from), files].join('\u0000');
    if (el._sig === sig) return;
    el._sig = sig;
    this.fill(el, m, own);
  }

  /** Writes one message's contents (all user data as text). */
  fill(el, m, own) {
    // `server` is a reserved nick: only the server's own announcements
    // carry it, and they look like no user's message.
    const announcement = m.from === SERVER;
    el.classList.toggle('announcement', announcement);
    const name = announcement ? 'Server announcement' : this.store.displayName(m.from);
    const head = h('div', { class: 'msg-head' },
      h('span', { class: 'from', text: name, title: announcement ? 'Sent by this chat server' : `@${m.from}` }),
      announcement ? h('span', { class: 'badge', text: 'server' }) : null,
      h('time', { attrs: { datetime: new Date(m.sent_at).toISOString() }, text: clock(m.sent_at), title: fullTime(m.sent_at) }));
    const body = h('div', { class: 'msg-main' }, head);
    if (m.deleted) {
      body.append(h('p', { class: 'text', text: 'This message was deleted.' }));
    } else if (this.editing === m.msg_id) {
      body.append(this.editor(m));
    } else {
      const text = h('p', { class: 'text', text: m.text });
      if (m.edited_at) text.append(' ', h('span', { class: 'edited', text: '(edited)', title: `Edited ${fullTime(m.edited_at)}` }));
      // Files alone: no empty line above them.
      if (m.text || m.edited_at || !m.attachments?.length) body.append(text);
      const files = attachmentsEl(m.attachments);
      if (files) body.append(files);
    }
    const actions = h('div', { class: 'msg-actions' });
    if (!m.deleted && own && this.editing !== m.msg_id) {
      actions.append(h('button', {
        type: 'button', class: 'act', text: 'Edit', attrs: { 'aria-label': `Edit your message from ${clock(m.sent_at)}` },
        on: { click: () => this.startEdit(m) },
      }));
    }
    if (!m.deleted && this.handlers.canDelete(m)) {
      actions.append(h('button', {
        type: 'button', class: 'act danger', text: 'Delete', attrs: { 'aria-label': `Delete the message from ${clock(m.sent_at)}` },
        on: { click: () => this.handlers.remove(m) },
      }));
    }
    replace(el, avatarEl(this.store, m.from), body, actions.childElementCount ? actions : null);
    el.title = '';
    el.dataset.from = m.from;
  }

  /** Edits the newest own message (↑ in an empty composer). */
  editLast() {
    const msgs = this.conv?.sorted() || [];
    for (let i = msgs.length - 1; i >= 0; i--) {
      if (this.store.isMe(msgs[i].from) && !msgs[i].deleted) return this.startEdit(msgs[i]), true;
    }
    return false;
  }

  startEdit(m) {
    this.editing = m.msg_id;
    this.refresh(m);
    const ta = this.els.get(`m:${m.msg_id}`)?.querySelector('textarea');
    if (ta) {
      ta.focus();
      ta.setSelectionRange(ta.value.length, ta.value.length);
    }
  }

  stopEdit(m) {
    this.editing = null;
    this.refresh(m);
    $('input')?.focus();
  }

  editor(m) {
    const ta = h('textarea', { value: m.text, rows: 2, attrs: { 'aria-label': 'Edit message' } });
    const save = async () => {
      const text = ta.value.trim();
      if (!text || text === m.text) return this.stopEdit(m);
      if (await this.handlers.edit(m, text)) this.stopEdit(m);
    };
    ta.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey) {
        e.preventDefault();
        save();
      } else if (e.key === 'Escape') {
        e.preventDefault();
        this.stopEdit(m);
      }
    });
    return h('div', { class: 'editor' }, ta,
      h('div', { class: 'editor-actions' },
        h('span', { class: 'hint', text: 'Enter to save · Esc to cancel' }),
        h('button', { type: 'button', text: 'Cancel', on: { click: () => this.stopEdit(m) } }),
        h('button', { type: 'button', class: 'primary', text: 'Save', on: { click: save } })));
  }

  /** Redraws one message (edited, deleted, editor opened or closed). */
  refresh(m) {
    const el = this.els.get(`m:${m.msg_id}`);
    if (!el) return;
    el._sig = null;
    this.render();
  }
}
