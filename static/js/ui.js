// ui.js — the page around the message list: the sidebar (rooms, direct
// messages, the room directory), the conversation header and topic form,
// the member list, the typing line, the composer, the connection banner,
// toasts, and the drawers on narrow screens. It draws what the store holds
// and hands user actions to the app's handlers; all user data is text.

import { h, $, replace } from './dom.js';
import { ago, validRoom } from './format.js';
import { avatarEl } from './messages.js';

const TYPING_SHOWN = 6000;

export class UI {
  /**
   * handlers: select(convId), join(name), leave(conv), openDM(nick),
   * setTopic(conv, text), send(text), typing(text), editLast(), logout(),
   * toggleNotifications(), toggleSound(), toggleAway(), person(nick, anchor),
   * browse(), retry().
   */
  constructor(store, mode, handlers) {
    this.store = store;
    this.mode = mode;
    this.handlers = handlers;
    this.current = null;
    this.wide = matchMedia('(min-width: 1100px)');
    this.narrow = matchMedia('(max-width: 760px)');
    this.bind();
  }

  bind() {
    const hd = this.handlers;
    const input = $('input');
    $('composer').addEventListener('submit', (e) => {
      e.preventDefault();
      const text = input.value;
      if (!text.trim() && !hd.hasFiles()) return;
      input.value = '';
      this.autosize();
      hd.send(text);
    });
    input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        $('composer').requestSubmit();
      } else if (e.key === 'ArrowUp' && !input.value && hd.editLast()) {
        e.preventDefault();
      }
    });
    input.addEventListener('input', () => {
      this.autosize();
      hd.typing(input.value);
    });
    $('toggle-members').addEventListener('click', () => this.toggleMembers());
    $('close-members').addEventListener('click', () => this.toggleMembers(false));
    addEventListener('keydown', (e) => {
      if (e.key !== 'Escape') return;
      if (document.body.classList.contains('sidebar-open')) this.toggleSidebar(false);
      else if (this.narrowMembersOpen()) this.toggleMembers(false);
    });
    if (this.mode === 'embed') return;

    $('open-sidebar').addEventListener('click', () => this.toggleSidebar(true));
    $('close-sidebar').addEventListener('click', () => this.toggleSidebar(false));
    $('scrim').addEventListener('click', () => {
      this.toggleSidebar(false);
      this.toggleMembers(false);
    });
    $('join-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const name = $('join-name').value.trim();
      if (!name) return;
      if (!validRoom(name)) {
        this.toast('A room name is 1 to 64 letters, digits, _ - . (a # in front is allowed).');
        return;
      }
      $('join-name').value = '';
      hd.join(name);
    });
    $('leave').addEventListener('click', () => this.current && hd.leave(this.current));
    $('logout').addEventListener('click', () => hd.logout());
    $('notify').addEventListener('click', () => hd.toggleNotifications());
    $('sound').addEventListener('click', () => hd.toggleSound());
    $('away').addEventListener('click', () => hd.toggleAway());
    $('browse').addEventListener('toggle', () => $('browse').open && hd.browse());
    $('edit-topic').addEventListener('click', () => this.openTopicForm());
    $('topic-cancel').addEventListener('click', () => this.closeTopicForm());
    $('topic-form').addEventListener('submit', (e) => {
      e.preventDefault();
      if (this.current) hd.setTopic(this.current, $('topic-input').value.trim());
      this.closeTopicForm();
    });
    $('topic-form').addEventListener('keydown', (e) => e.key === 'Escape' && this.closeTopicForm());
    // Alt+↑ / Alt+↓: previous / next conversation.
    addEventListener('keydown', (e) => {
      if (!e.altKey || (e.key !== 'ArrowUp' && e.key !== 'ArrowDown')) return;
      const ids = [...this.store.rooms(), ...this.store.dms()].map((c) => c.id);
      const i = ids.indexOf(this.current?.id);
      const next = ids[(i + (e.key === 'ArrowDown' ? 1 : ids.length - 1)) % ids.length];
      if (next) {
        e.preventDefault();
        hd.select(next);
      }
    });
  }

  showApp() {
    $('login').hidden = true;
    if (!$('app').hidden) return;
    $('app').hidden = false;
    if (this.wide.matches) this.toggleMembers(true);
  }

  autosize() {
    const input = $('input');
    input.style.height = 'auto';
    input.style.height = `${Math.min(input.scrollHeight, 180)}px`;
  }

  focusComposer() {
    // Not on phones (the keyboard would cover the page), and never inside
    // the widget: focusing an iframe scrolls the host page to it.
    if (!this.narrow.matches && this.mode !== 'embed') $('input').focus();
  }

  // ---- sidebar ------------------------------------------------------------

  renderMe(user, notifications) {
    if (this.mode === 'embed') return;
    $('me-avatar').replaceWith(Object.assign(avatarEl(this.store, user.nick), { id: 'me-avatar' }));
    $('me-name').textContent = user.display_name || user.nick;
    $('me-nick').textContent = user.guest ? `@${user.nick} · guest` : `@${user.nick}`;
    this.renderNotify(notifications);
  }

  renderNotify(on) {
    const b = $('notify');
    if (!b) return;
    b.textContent = `Notifications: ${on ? 'on' : 'off'}`;
    b.setAttribute('aria-pressed', String(on));
    b.hidden = !('Notification' in window);
  }

  renderSound(on) {
    const b = $('sound');
    if (!b) return;
    b.textContent = `Sound: ${on ? 'on' : 'off'}`;
    b.setAttribute('aria-pressed', String(on));
  }

  renderAway(away) {
    const b = $('away');
    if (!b) return;
    b.textContent = away ? 'Away · set back' : 'Set yourself away';
    b.setAttribute('aria-pressed', String(away));
    $('me-avatar')?.classList.toggle('is-away', away);
  }

  renderSidebar() {
    const unread = this.store.totalUnread();
    const mentions = this.store.totalMentions();
    // The title: unread messages, and mentions of the user in front (`(@2) 5`).
    const badge = unread ? `(${mentions ? `@${mentions} · ` : ''}${unread}) ` : '';
    document.title = `${badge}${this.current ? `${this.title(this.current)} · ` : ''}chat`;
    if (this.mode === 'embed') return;
    const menu = $('menu-badge');
    const elsewhere = unread - (this.current?.unread || 0);
    menu.hidden = elsewhere <= 0;
    menu.textContent = elsewhere > 99 ? '99+' : String(elsewhere);
    $('open-sidebar').setAttribute('aria-label', elsewhere > 0 ? `Conversations, ${menu.textContent} unread` : 'Conversations');
    menu.classList.toggle('mention', mentions - (this.current?.mentions || 0) > 0);
    const focused = document.activeElement?.dataset?.conv;
    replace($('room-list'), ...this.store.rooms().map((c) => this.convItem(c)));
    const dms = this.store.dms();
    replace($('dm-list'), ...dms.map((c) => this.convItem(c)));
    $('dm-empty').hidden = dms.some((c) => c.kind === 'dm');
    if (focused) document.querySelector(`[data-conv="${CSS.escape(focused)}"]`)?.focus();
    this.renderDirectory();
  }

  title(c) {
    if (c.kind === 'dm') return this.store.displayName(c.name);
    if (c.kind === 'everyone') return 'Everyone';
    return c.name;
  }

  convItem(c) {
    const active = c === this.current;
    const label = this.title(c);
    const b = h('button', {
      type: 'button', class: `conv${active ? ' active' : ''}${c.unread ? ' unread' : ''}`,
      dataset: { conv: c.id },
      attrs: { 'aria-current': active ? 'true' : null },
      on: { click: () => this.handlers.select(c.id) },
    });
    if (c.kind === 'room') b.append(h('span', { class: 'hash', attrs: { 'aria-hidden': 'true' }, text: c.name.startsWith('#') ? '' : '#' }));
    else if (c.kind === 'dm') b.append(h('span', { class: `dot ${dotClass(c.status)}`, attrs: { 'aria-hidden': 'true' } }));
    else b.append(h('span', { class: 'hash', attrs: { 'aria-hidden': 'true' }, text: '@' }));
    b.append(h('span', { class: 'label', text: label }));
    // Mentions and unread messages, apart; in words for screen readers.
    // (A DM is all for the user: its one badge is in the mention colour.)
    if (c.mentions && c.kind !== 'dm') b.append(h('span', { class: 'badge mention', text: `@${c.mentions > 99 ? '99+' : c.mentions}`, title: `${c.mentions} mentioning you` }),
      h('span', { class: 'visually-hidden', text: `, ${c.mentions} mentioning you` }));
    if (c.unread) b.append(h('span', { class: `badge${c.kind === 'dm' ? ' mention' : ''}`, text: c.unread > 99 ? '99+' : String(c.unread), title: `${c.unread} unread` }),
      h('span', { class: 'visually-hidden', text: `, ${c.unread} unread` }));
    return h('li', {}, b);
  }

  renderDirectory() {
    const list = $('directory');
    if (!list) return;
    const rooms = [...this.store.directory].sort((a, b) => b.members - a.members || a.name.localeCompare(b.name));
    if (!rooms.length) {
      replace(list, h('li', { class: 'hint', text: 'No rooms yet.' }));
      return;
    }
    replace(list, ...rooms.map((r) => {
      const mine = this.store.room(r.name, false)?.joined;
      return h('li', {}, h('button', {
        type: 'button', class: 'conv dir', dataset: { room: r.name },
        attrs: { 'aria-label': `${r.name}, ${r.members} ${r.members === 1 ? 'member' : 'members'}${mine ? ', joined' : ''}` },
        on: { click: () => this.handlers.join(r.name) },
      },
      h('span', { class: 'hash', attrs: { 'aria-hidden': 'true' }, text: r.name.startsWith('#') ? '' : '#' }),
      h('span', { class: 'label' }, h('span', { class: 'dir-name', text: r.name }), r.topic ? h('span', { class: 'sub', text: r.topic }) : null),
      h('span', { class: 'count', text: String(r.members), title: `${r.members} online` })));
    }));
  }

  toggleSidebar(open) {
    document.body.classList.toggle('sidebar-open', open);
    this.syncScrim();
    if (open) (document.querySelector('#sidebar .conv.active') || document.querySelector('#sidebar .conv') || $('join-name'))?.focus();
    else if (this.narrow.matches) $('open-sidebar')?.focus();
  }

  narrowMembersOpen() {
    return !this.wide.matches && document.body.classList.contains('members-open');
  }

  toggleMembers(open = !document.body.classList.contains('members-open')) {
    if (open && document.body.classList.contains('no-members')) open = false;
    document.body.classList.toggle('members-open', open);
    $('toggle-members').setAttribute('aria-expanded', String(open));
    this.syncScrim();
    if (open && !this.wide.matches) ($('member-list').querySelector('button') || $('close-members')).focus();
  }

  syncScrim() {
    const scrim = $('scrim');
    if (!scrim) return;
    scrim.hidden = !(document.body.classList.contains('sidebar-open') || this.narrowMembersOpen());
  }

  // ---- the open conversation ---------------------------------------------

  renderHeader() {
    const c = this.current;
    if (!c) return;
    $('conv-name').textContent = this.title(c);
    const sub = $('conv-sub');
    if (c.kind === 'room') {
      sub.textContent = c.topic || (this.mode === 'embed' ? '' : 'No topic yet');
      sub.classList.toggle('muted', !c.topic);
      $('member-count').textContent = String(c.members.size);
      $('toggle-members').setAttribute('aria-label', `Members: ${c.members.size}`);
    } else if (c.kind === 'dm') {
      const s = c.status;
      const state = !s ? '' : s.online ? (s.away ? 'away' : 'online') : s.last_seen ? `last seen ${ago(s.last_seen)}` : 'offline';
      sub.textContent = [`@${c.name}`, state].filter(Boolean).join(' · ');
      sub.classList.remove('muted');
    } else {
      sub.textContent = 'Messages to every connected user';
    }
    $('toggle-members').hidden = c.kind !== 'room';
    // A DM or Everyone has no member list: no empty panel either.
    document.body.classList.toggle('no-members', c.kind !== 'room');
    $('input').disabled = false;
    $('send').disabled = false;
    if (this.mode === 'embed') return;
    $('edit-topic').hidden = c.kind !== 'room';
    $('leave').hidden = c.kind !== 'room';
    $('input').placeholder = c.kind === 'room' ? `Message ${c.name}` : c.kind === 'dm' ? `Message ${this.title(c)}` : 'Message everyone';
  }

  /** No conversation open (nothing joined yet, or the last one left). */
  renderEmpty() {
    $('conv-name').textContent = this.mode === 'embed' ? 'Not connected to a room' : 'No conversation open';
    $('conv-sub').textContent = this.mode === 'embed' ? '' : 'Join or create a room from the list.';
    $('toggle-members').hidden = true;
    document.body.classList.add('no-members');
    $('input').disabled = true;
    $('send').disabled = true;
    $('typing').textContent = '';
    replace($('member-list'));
    if (this.mode === 'embed') return;
    $('edit-topic').hidden = true;
    $('leave').hidden = true;
  }

  openTopicForm() {
    if (!this.current) return;
    $('topic-form').hidden = false;
    $('topic-input').value = this.current.topic || '';
    $('topic-input').focus();
  }

  closeTopicForm() {
    $('topic-form').hidden = true;
    $('edit-topic').focus();
  }

  renderMembers() {
    const c = this.current;
    const list = $('member-list');
    if (!c || c.kind !== 'room') return replace(list);
    const focusedNick = document.activeElement?.dataset?.nick;
    replace(list, ...c.memberList().map((m) => {
      const me = this.store.isMe(m.nick);
      const names = h('span', { class: 'names' },
        h('span', { class: 'name', text: m.display_name || m.nick }),
        h('span', { class: 'sub', text: [`@${m.nick}`, me ? 'you' : null, m.away ? 'away' : null, this.store.status(m.nick) || null].filter(Boolean).join(' · '), title: this.store.status(m.nick) || undefined }));
      const content = [avatarEl(this.store, m.nick), names, h('span', { class: `dot ${m.away ? 'away' : 'online'}`, title: m.away ? 'away' : 'online', attrs: { 'aria-hidden': 'true' } })];
      // A click shows the member's card (and, from there, a direct message).
      return h('li', {}, h('button', {
        type: 'button', class: `member${m.away ? ' away' : ''}`, dataset: { nick: m.nick },
        attrs: { 'aria-haspopup': 'dialog' },
        on: { click: (e) => this.handlers.person(m.nick, e.currentTarget) },
      }, content));
    }));
    if (focusedNick) list.querySelector(`[data-nick="${CSS.escape(focusedNick)}"]`)?.focus();
  }

  renderTyping() {
    const c = this.current;
    const el = $('typing');
    const names = c ? [...c.typing.values()].filter((t) => Date.now() - t.at < TYPING_SHOWN).map((t) => this.store.displayName(t.nick)) : [];
    let text = '';
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) text = 'Several people are typing…';
    if (el.textContent !== text) el.textContent = text;
  }

  // ---- connection state and messages to the user -------------------------

  /** The banner: connecting, waiting to reconnect (with a countdown), back. */
  setStatus(s) {
    const el = $('status');
    clearInterval(this.countdown);
    clearTimeout(this.statusHide);
    el.classList.remove('ok');
    const wasOnline = this.wasOnline;
    this.wasOnline = s.state === 'online' || (this.wasOnline && s.state !== 'stopped');
    if (s.state === 'online') {
      if (!wasOnline) el.hidden = true;
      else if (!el.hidden) {
        replace(el, 'Connected again.');
        el.classList.add('ok');
        this.statusHide = setTimeout(() => { el.hidden = true; }, 2000);
      }
      return;
    }
    if (s.state === 'stopped') {
      el.hidden = true;
      return;
    }
    el.hidden = false;
    if (s.state === 'connecting') {
      replace(el, wasOnline ? 'Reconnecting…' : 'Connecting…');
      return;
    }
    if (s.state === 'notice') {
      replace(el, s.text);
      return;
    }
    // waiting
    const until = Date.now() + (s.retryIn || 0);
    const why = s.reason === 'the server is restarting' ? 'The server is restarting.' : s.reason === 'connection lost' ? 'Connection lost.' : `Not connected (${s.reason}).`;
    const text = h('span');
    const tick = () => {
      const secs = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      text.textContent = `${why} Reconnecting in ${secs} s…`;
    };
    tick();
    this.countdown = setInterval(tick, 500);
    replace(el, text, ' ', h('button', { type: 'button', class: 'link', text: 'Retry now', on: { click: () => this.handlers.retry() } }));
  }

  /** A message to the user that goes away by itself (errors stay longer). */
  toast(text, kind = 'error', key = text) {
    const box = $('toasts');
    // The same problem again (a burst of rate_limited): one toast, kept longer.
    for (const old of [...box.children]) if (old.dataset.key === key) old.remove();
    const el = h('div', { class: `toast ${kind}`, dataset: { key }, attrs: { role: kind === 'error' ? 'alert' : 'status' } },
      h('span', { text }),
      h('button', { type: 'button', class: 'icon', text: '✕', attrs: { 'aria-label': 'Dismiss' }, on: { click: () => el.remove() } }));
    box.append(el);
    while (box.childElementCount > 4) box.firstElementChild.remove();
    setTimeout(() => el.remove(), kind === 'error' ? 9000 : 4000);
  }
}

function dotClass(status) {
  if (!status) return 'unknown';
  if (!status.online) return 'offline';
  return status.away ? 'away' : 'online';
}
