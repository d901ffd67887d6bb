// messages.js — the message list of the open conversation: day separators,
// the unread divider (and "jump to first unread"), sender and time,
// grouping of consecutive messages, formatted text (richtext.js) with
// mentions of the reader highlighted, `/me` actions, reactions, the quote
// of the message replied to, an action bar (react, reply, copy link; edit
// and delete on one's own), system lines ("bob joined"), read receipts
// ("Seen" in DMs, "Seen by …" in rooms), the files a message carries
// (attachments.js), each sender's current name and picture, and the scroll
// position (follow the bottom; keep the view still when older messages
// arrive above it).

import { h, $, replace } from './dom.js';
import { clock, fullTime, dayKey, dayLabel, fileUrl } from './format.js';
import { fold } from './store.js';
import { attachmentsEl } from './attachments.js';
import { richText, mentionsOf } from './richtext.js';

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
   * whose name and picture the store does not know), person(nick, anchor)
   * (show someone's card), react(msg, emoji, on), pickReaction(msg,
   * anchor), reply(msg), link(msg) (a URL to the message), jumpTo(msg_id).
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
    this.unreadBtn = $('jump-unread');
    this.unreadBtn?.addEventListener('click', () => this.showDivider());
    $('mark-read')?.addEventListener('click', () => this.clearDivider());
    // A click on a mention shows that person's card.
    this.list.addEventListener('click', (e) => {
      const el = e.target.closest?.('.mention[data-nick]');
      if (el) this.handlers.person?.(el.dataset.nick, el);
    });
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
    this.syncUnreadBar();
  }

  /** "N new messages · Jump": shown while the unread divider is above the view. */
  syncUnreadBar() {
    if (!this.unreadBtn) return;
    const d = this.els.get('divider');
    const above = !!d && d.getBoundingClientRect().top < this.box.getBoundingClientRect().top;
    $('unread-bar').hidden = !above;
  }

  /** Scrolls to the unread divider. */
  showDivider() {
    const d = this.els.get('divider');
    if (!d) return;
    d.scrollIntoView({ block: 'start' });
    this.stuck = this.atBottom();
    this.syncUnreadBar();
    $('messages').focus({ preventScroll: true });
  }

  clearDivider() {
    if (!this.conv) return;
    this.conv.dividerSeq = null;
    this.render();
    $('unread-bar').hidden = true;
  }

  /** Scrolls to one message and marks it for a moment (a search result, a link, a quote). */
  reveal(msgId) {
    const el = this.els.get(`m:${msgId}`);
    if (!el) return false;
    el.scrollIntoView({ block: 'center' });
    this.stuck = this.atBottom();
    el.classList.add('flash');
    setTimeout(() => el.classList.remove('flash'), 2500);
    el.focus({ preventScroll: true });
    return true;
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
      // Opened with unread messages: start at the divider when it would scroll out of view.
      const d = this.els.get('divider');
      if (d && d.getBoundingClientRect().top < this.box.getBoundingClientRect().top) {
        d.scrollIntoView({ block: 'start' });
        this.stuck = this.atBottom();
      }
      this.syncUnreadBar();
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
    // Rooms: who has read up to which message (the last held one at or below their seq).
    const seenBy = new Map(); // seq -> [nick]
    if (conv.kind === 'room' && conv.readers?.size && msgs.length) {
      for (const [, r] of conv.readers) {
        if (this.store.isMe(r.nick)) continue;
        let at = null;
        for (let i = msgs.length - 1; i >= 0; i--) if (msgs[i].seq <= r.seq) { at = msgs[i].seq; break; }
        if (at === null) continue;
        if (!seenBy.has(at)) seenBy.set(at, []);
        seenBy.get(at).push(r.nick);
      }
    }
    for (const m of msgs) {
      if (conv.dividerSeq && m.seq === conv.dividerSeq) {
        out.push({ key: 'divider', kind: 'divider' });
        prev = null;
      }
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
      if (seenBy.has(m.seq)) {
        out.push({ key: `seen:${m.seq}`, kind: 'seen', nicks: seenBy.get(m.seq) });
        prev = null;
      }
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
        return h('li', { class: 'day' }, h('span', { text: dayLabel(item.at) }));
      case 'divider':
        return h('li', { class: 'divider', id: 'unread-divider' }, h('span', { text: 'New messages' }));
      case 'seen':
        return h('li', { class: 'receipt seen' });
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
    if (item.kind === 'seen') {
      const names = item.nicks.map((n) => this.store.displayName(n));
      const text = names.length > 3 ? `Seen by ${names.slice(0, 3).join(', ')} and ${names.length - 3} more` : `Seen by ${names.join(', ')}`;
      if (el.textContent !== text) el.textContent = text;
      el.title = names.join(', ');
      return;
    }
    if (item.kind !== 'msg') return;
    const m = item.msg;
    const own = this.store.isMe(m.from);
    if (m.from !== SERVER && !this.store.people.has(fold(m.from))) this.handlers.unknown?.(m.from);
    el.classList.toggle('cont', item.cont);
    el.classList.toggle('own', own);
    el.classList.toggle('deleted', !!m.deleted);
    el.classList.toggle('mentions-me', !own && !m.deleted && mentionsOf(m, this.store.me?.nick));
    const files = m.deleted ? '' : (m.attachments || []).map((a) => a?.id).join(',');
    const reactions = JSON.stringify(m.reactions || null);
    const reply = m.reply_to ? `${m.reply_to.msg_id}:${this.store.displayName(m.reply_to.from)}:${m.reply_to.text}` : '';
    const sig = [m.text, m.edited_at, m.deleted, this.store.displayName(m.from), this.store.avatar(m.from), files, reactions, reply].join('\u0000');
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
    const from = announcement
      ? h('span', { class: 'from', text: name, title: 'Sent by this chat server' })
      : h('button', { type: 'button', class: 'from', text: name, title: `@${m.from}`, on: { click: (e) => this.handlers.person?.(m.from, e.currentTarget) } });
    const head = h('div', { class: 'msg-head' },
      from,
      announcement ? h('span', { class: 'badge', text: 'server' }) : null,
      h('time', { attrs: { datetime: new Date(m.sent_at).toISOString() }, text: clock(m.sent_at), title: fullTime(m.sent_at) }));
    const body = h('div', { class: 'msg-main' }, head);
    if (m.reply_to && typeof m.reply_to === 'object' && !m.deleted) body.append(this.quote(m.reply_to));
    const action = !m.deleted && /^\/me\s+\S/.test(m.text || '');
    el.classList.toggle('action', action);
    if (m.deleted) {
      body.append(h('div', { class: 'text', text: 'This message was deleted.' }));
    } else if (this.editing === m.msg_id) {
      body.append(this.editor(m));
    } else {
      const ctx = { me: this.store.me?.nick, mentions: m.mentions };
      const text = action
        ? h('div', { class: 'text', attrs: { dir: 'auto' } }, h('span', { class: 'actor', text: `* ${name} ` }), richText(m.text.replace(/^\/me\s+/, ''), ctx))
        : h('div', { class: 'text', attrs: { dir: 'auto' } }, richText(m.text, ctx));
      if (m.edited_at) text.append(' ', h('span', { class: 'edited', text: '(edited)', title: `Edited ${fullTime(m.edited_at)}` }));
      // Files alone: no empty line above them.
      if (m.text || m.edited_at || !m.attachments?.length) body.append(text);
      const files = attachmentsEl(m.attachments);
      if (files) body.append(files);
      const reactions = this.reactions(m);
      if (reactions) body.append(reactions);
    }
    const when = clock(m.sent_at);
    const actions = h('div', { class: 'msg-actions', attrs: { role: 'group', 'aria-label': `Actions on the message from ${name} at ${when}` } });
    if (!m.deleted && !announcement && this.editing !== m.msg_id) {
      actions.append(
        h('button', { type: 'button', class: 'act', text: '☺', title: 'React', attrs: { 'aria-label': 'React', 'aria-haspopup': 'dialog' },
          on: { click: (e) => this.handlers.pickReaction?.(m, e.currentTarget) } }),
        h('button', { type: 'button', class: 'act', text: 'Reply', on: { click: () => this.handlers.reply?.(m) } }),
        h('button', { type: 'button', class: 'act', text: 'Copy link', on: { click: () => this.handlers.link?.(m) } }));
    }
    if (!m.deleted && own && this.editing !== m.msg_id) {
      actions.append(h('button', { type: 'button', class: 'act', text: 'Edit', on: { click: () => this.startEdit(m) } }));
    }
    if (!m.deleted && this.handlers.canDelete(m)) {
      actions.append(h('button', { type: 'button', class: 'act danger', text: 'Delete', on: { click: () => this.handlers.remove(m) } }));
    }
    replace(el, avatarEl(this.store, m.from), body, actions.childElementCount ? actions : null);
    el.title = '';
    el.dataset.from = m.from;
  }

  /** The quote of the message replied to; a click shows it. */
  quote(r) {
    // Plain words: the formatting marks of the quoted text are left out.
    const text = typeof r.text === 'string' ? r.text.replace(/\*\*|`+/g, '').replace(/\s+/g, ' ') : '';
    return h('button', {
      type: 'button', class: 'reply-quote', attrs: { 'aria-label': `Reply to ${this.store.displayName(r.from || '')}: ${text}` },
      on: { click: () => this.handlers.jumpTo?.(r.msg_id) },
    }, h('span', { class: 'reply-from', text: this.store.displayName(r.from || '') }), ' ', h('span', { class: 'reply-text', attrs: { dir: 'auto' }, text }));
  }

  /** The reactions under a message: one button each (yours pressed), a click toggles yours. */
  reactions(m) {
    const r = m.reactions && typeof m.reactions === 'object' ? Object.entries(m.reactions) : [];
    const shown = r.filter(([e, nicks]) => typeof e === 'string' && Array.isArray(nicks) && nicks.length);
    if (!shown.length) return null;
    return h('div', { class: 'reactions' }, shown.map(([emoji, nicks]) => {
      const mine = nicks.some((n) => this.store.isMe(n));
      const who = nicks.map((n) => this.store.displayName(n)).join(', ');
      return h('button', {
        type: 'button', class: `reaction${mine ? ' mine' : ''}`, title: who,
        attrs: { 'aria-pressed': String(mine), 'aria-label': `${emoji} ${nicks.length}: ${who}` },
        on: { click: () => this.handlers.react?.(m, emoji, !mine) },
      }, h('span', { class: 'emoji', text: emoji }), h('span', { class: 'n', text: String(nicks.length) }));
    }));
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
