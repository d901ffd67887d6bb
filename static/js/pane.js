// pane.js — the conversation on screen: choosing it, redrawing it, read
// receipts, keeping its messages whole (filling gaps, the latest page,
// older pages on scroll), and editing or deleting a message in it.

import { errorText } from './format.js';
import { stopTyping } from './typing.js';
import { renderTray } from './uploads.js';
import { showReply } from './composer.js';
import { app } from './state.js';

const { store } = app;

export function select(c) {
  const { ui, list } = app;
  if (!c) {
    app.current = null;
    ui.current = null;
    list.show(null);
    renderTray();
    ui.renderEmpty();
    ui.renderSidebar();
    return;
  }
  const input = document.getElementById('input');
  if (app.current !== c) {
    // The old conversation's divider has done its job; the new one's marks its first unread.
    if (app.current) app.current.dividerSeq = null;
    c.dividerSeq = store.firstUnread(c);
    stopTyping();
    // Each conversation keeps its own unsent text.
    if (app.current) app.current.draft = input.value;
    input.value = c.draft || '';
    ui.autosize();
  }
  app.current = c;
  ui.current = c;
  c.unread = 0;
  c.mentions = 0;
  if (c.kind === 'dm' && !c.loaded) loadLatest(c);
  document.body.classList.remove('sidebar-open');
  ui.syncScrim();
  list.show(c);
  renderTray();
  showReply();
  ui.renderHeader();
  ui.renderMembers();
  ui.renderTyping();
  ui.renderSidebar();
  markRead(c);
  ui.focusComposer();
}

/** This conversation is on screen in a visible tab. */
export function viewing(c) {
  return c === app.current && document.visibilityState === 'visible';
}

/**
 * Clears the unread counts; tells the others how far this user read (the
 * peer of a DM; a room's members, at most every 2 s).
 */
export function markRead(c) {
  if (!c || !viewing(c)) return;
  if (c.unread || c.mentions) {
    // Came back to a tab with news: the divider shows where they start.
    if (c.unread && !c.dividerSeq) {
      c.dividerSeq = store.firstUnread(c);
      app.list.render();
    }
    c.unread = 0;
    c.mentions = 0;
    app.ui.renderSidebar();
  }
  if (c.kind === 'everyone' || !app.conn?.online) return;
  const last = c.lastFromOthers(store.me.nick);
  if (!last || last.seq <= c.sentRead) return;
  if (c.kind === 'room') {
    const wait = c.sentReadAt + 2000 - Date.now();
    if (wait > 0) {
      clearTimeout(c.readTimer);
      c.readTimer = setTimeout(() => markRead(c), wait);
      return;
    }
    c.sentReadAt = Date.now();
  }
  c.sentRead = c.max;
  app.conn.send({ type: 'read', ...(c.kind === 'room' ? { room: c.name } : { with: c.name }), seq: c.max });
}

/** Redraws what depends on `c` (or everything), and the sidebar. */
export function redraw(c = null) {
  const { current, ui } = app;
  if (current && (!c || c === current)) {
    app.list.show(current);
    ui.renderHeader();
    ui.renderMembers();
  }
  ui.renderSidebar();
}

// ---- keeping conversations whole ------------------------------------------

const placeOf = (c) => (c.kind === 'room' ? { room: c.name } : c.kind === 'dm' ? { with: c.name } : { everyone: true });

/** A hole between the held messages (a live message jumped ahead): fill it. */
export function checkGap(c) {
  if (!c.loaded || c.filling) return;
  const gap = c.firstGap();
  if (gap !== null) fillAfter(c, gap);
}

/** Pages `history … after` until the server says nothing newer is left. */
export async function fillAfter(c, after) {
  if (c.filling) return;
  c.filling = true;
  try {
    for (let guard = 0; guard < 100; guard++) {
      const r = await app.conn.request({ type: 'history', ...placeOf(c), after, limit: 200 });
      if (r.type !== 'history') {
        if (r.code !== 'lost' && r.code !== 'offline') app.ui.toast(`Could not load missed messages: ${errorText(r)}`);
        break;
      }
      if (!r.more || !r.messages.length) break;
      after = r.messages[r.messages.length - 1].seq;
    }
  } finally {
    c.filling = false;
  }
  checkGap(c);
}

/** The latest page of a conversation not loaded yet (a DM opened or written to). */
export async function loadLatest(c) {
  if (c.loading) return;
  c.loading = true;
  const r = await app.conn.request({ type: 'history', ...placeOf(c), limit: 50 });
  c.loading = false;
  if (r.type === 'error' && r.code !== 'lost' && r.code !== 'offline') {
    // Nothing to show yet (a conversation never used): an empty one.
    c.loaded = true;
    redraw(c);
  }
}

export async function loadOlder(c) {
  if (!c.hasOlder || c.loadingOlder) return;
  c.loadingOlder = true;
  const r = await app.conn.request({ type: 'history', ...placeOf(c), before: c.min, limit: 50 });
  c.loadingOlder = false;
  if (r.type === 'history' && !r.messages.length) {
    c.olderDone = true;
    redraw(c);
  } else if (r.type === 'error' && r.code !== 'lost' && r.code !== 'offline') {
    app.ui.toast(errorText(r));
  }
}

/**
 * Shows one message in context: the conversation opened, history loaded
 * around it when it is not held (and the stretch up to now filled), the
 * message scrolled to and marked.
 */
export async function jumpTo(c, seq, msgId) {
  if (!c) return false;
  if (app.current !== c) select(c);
  const held = () => (msgId ? c.byId.get(msgId) : c.bySeq.get(seq));
  if (!held() && seq) {
    const r = await app.conn.request({ type: 'history', ...placeOf(c), after: Math.max(0, seq - 26), limit: 50 });
    if (r.type === 'error') {
      app.ui.toast(errorText(r));
      return false;
    }
    c.loaded = true;
    c.merge(r.messages);
    redraw(c);
  }
  const m = held();
  if (!m) {
    app.ui.toast('That message is not in this conversation any more.', 'info');
    return false;
  }
  return app.list.reveal(m.msg_id);
}

// ---- reacting -----------------------------------------------------------------

export async function react(m, emoji, on) {
  const r = await app.conn.request({ type: 'react', msg_id: m.msg_id, emoji, on });
  if (r.type === 'error') return app.ui.toast(errorText(r));
  applyReaction(m, emoji, store.me.nick, on);
  app.list.refresh(m);
}

/** Adds or removes `nick`'s `emoji` on a held message. */
export function applyReaction(m, emoji, nick, on) {
  const all = { ...(m.reactions || {}) };
  const nicks = (all[emoji] || []).filter((n) => n.toLowerCase() !== nick.toLowerCase());
  if (on) nicks.push(nick);
  if (nicks.length) all[emoji] = nicks;
  else delete all[emoji];
  m.reactions = all;
}

// ---- editing and deleting -------------------------------------------------

export async function editMessage(m, text) {
  const r = await app.conn.request({ type: 'edit', msg_id: m.msg_id, text });
  if (r.type === 'error') {
    app.ui.toast(errorText(r));
    return false;
  }
  Object.assign(m, { text, edited_at: Date.now() });
  return true;
}

export async function deleteMessage(m) {
  if (!confirm('Delete this message? Everyone will see that it was deleted.')) return;
  const r = await app.conn.request({ type: 'delete', msg_id: m.msg_id });
  if (r.type === 'error') return app.ui.toast(errorText(r));
  Object.assign(m, { text: '', deleted: true });
  app.list.refresh(m);
}
