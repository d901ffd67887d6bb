// pane.js — the conversation on screen: choosing it, redrawing it, read
// receipts, keeping its messages whole (filling gaps, the latest page,
// older pages on scroll), and editing or deleting a message in it.

import { errorText } from './format.js';
import { stopTyping } from './typing.js';
import { renderTray } from './uploads.js';
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
    stopTyping();
    // Each conversation keeps its own unsent text.
    if (app.current) app.current.draft = input.value;
    input.value = c.draft || '';
    ui.autosize();
  }
  app.current = c;
  ui.current = c;
  c.unread = 0;
  if (c.kind === 'dm' && !c.loaded) loadLatest(c);
  document.body.classList.remove('sidebar-open');
  ui.syncScrim();
  list.show(c);
  renderTray();
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

/** Clears the unread count; in a DM, tells the peer how far this user read. */
export function markRead(c) {
  if (!c || !viewing(c)) return;
  if (c.unread) {
    c.unread = 0;
    app.ui.renderSidebar();
  }
  if (c.kind !== 'dm' || !app.conn?.online) return;
  const last = c.lastFromOthers(store.me.nick);
  if (last && last.seq > c.sentRead) {
    c.sentRead = c.max;
    app.conn.send({ type: 'read', with: c.name, seq: c.max });
  }
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
