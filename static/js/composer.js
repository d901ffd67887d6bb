// composer.js — what the user writes: a message to the conversation on
// screen with the files in its tray (uploads.js; both given back on
// failure), maybe as a reply to a message (the bar above the box), with
// `:shortcodes:` turned into emoji; or a slash command in the full client.

import { errorText, validRoom } from './format.js';
import { joinRoom, leaveRoom, setTopic } from './rooms.js';
import { openDM } from './dms.js';
import { typingSentMessage } from './typing.js';
import { readyFiles, sending, sent } from './uploads.js';
import { emojify } from './richtext.js';
import { setAway } from './away.js';
import { openSearch } from './search.js';
import { $ } from './dom.js';
import { select } from './pane.js';
import { app } from './state.js';

/** Starts a reply to `m` in the conversation on screen. */
export function replyTo(m) {
  const c = app.current;
  if (!c) return;
  c.replyTo = m;
  showReply();
  $('input').focus();
}

export function cancelReply() {
  if (app.current) app.current.replyTo = null;
  showReply();
}

/** The bar above the box: who and what is replied to (each conversation keeps its own). */
export function showReply() {
  const m = app.current?.replyTo;
  const bar = $('reply-bar');
  if (!bar) return;
  bar.hidden = !m;
  if (!m) return;
  $('reply-from').textContent = app.store.displayName(m.from);
  const t = m.text || (m.attachments?.length ? '📎' : '');
  $('reply-text').textContent = t.length > 120 ? `${t.slice(0, 120)}…` : t;
}

export function bindComposer() {
  $('reply-cancel')?.addEventListener('click', () => {
    cancelReply();
    $('input').focus();
  });
  $('input').addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && app.current?.replyTo) {
      e.preventDefault();
      cancelReply();
    }
  });
}

export async function send(raw) {
  const c = app.current;
  if (!c) return;
  const text = emojify(raw.trim());
  const files = readyFiles(c);
  if (app.mode === 'app' && text.startsWith('/') && !c.files?.length && command(text)) return;
  if (files.wait) {
    app.ui.toast(files.wait, 'error', 'files-wait');
    giveBack(c, raw);
    return;
  }
  if (!text && !files.ids.length) return;
  typingSentMessage();
  const target = c.kind === 'room' ? { room: c.name } : c.kind === 'dm' ? { to: c.name } : { everyone: true };
  const frame = { type: 'say', ...target, text };
  if (files.ids.length) frame.attachments = files.ids;
  const reply = c.replyTo;
  if (reply) frame.reply_to = reply.msg_id;
  c.replyTo = null;
  showReply();
  sending(files.items, true);
  const r = await app.conn.request(frame);
  if (r.type !== 'error') {
    sent(c, files.items);
    return;
  }
  if (reply && !c.replyTo) {
    c.replyTo = reply;
    showReply();
  }
  sending(files.items, false);
  if (c.kind === 'everyone' && r.code === 'forbidden') return noEveryone();
  app.ui.toast(errorText(r), 'error', `say:${r.code}`);
  // The files stay in the tray; the text comes back unless it may have gone.
  if (r.code !== 'lost') giveBack(c, raw);
}

/** The server allows no messages to everyone: say so, and take Everyone off the list. */
function noEveryone() {
  app.ui.toast('This server does not allow messages to everyone.', 'error', 'no-everyone');
  const c = app.store.get('everyone');
  if (!c) return;
  app.store.convs.delete('everyone');
  if (app.current === c) select(app.store.rooms()[0] || null);
  else app.ui.renderSidebar();
}

/** Puts unsent text back in the composer, unless the user has typed something else since. */
function giveBack(c, raw) {
  const input = document.getElementById('input');
  if (!raw) return;
  if (app.current !== c) c.draft ||= raw;
  else if (!input.value) {
    input.value = raw;
    app.ui.autosize();
  }
}

/**
 * Slash commands: /join ROOM, /leave, /topic TEXT, /msg NICK TEXT, /all TEXT
 * (to everyone), /away, /back, /search WORDS. (/me TEXT is a message.)
 */
function command(text) {
  const { current, ui } = app;
  const [cmd, ...rest] = text.split(/\s+/);
  const arg = text.slice(cmd.length).trim();
  switch (cmd.toLowerCase()) {
    case '/join':
      if (validRoom(arg)) joinRoom(arg, true);
      else ui.toast('Usage: /join ROOM');
      return true;
    case '/leave':
      if (current?.kind === 'room') leaveRoom(current);
      return true;
    case '/topic':
      if (current?.kind === 'room') setTopic(current, arg);
      return true;
    case '/msg':
      if (rest.length >= 2) {
        openDM(rest[0]);
        app.conn.request({ type: 'say', to: rest[0], text: arg.slice(rest[0].length).trim() })
          .then((r) => r.type === 'error' && ui.toast(errorText(r)));
      } else ui.toast('Usage: /msg NICK TEXT');
      return true;
    case '/all':
      if (arg) {
        app.conn.request({ type: 'say', everyone: true, text: arg })
          .then((r) => (r.type !== 'error' ? null : r.code === 'forbidden' ? noEveryone() : ui.toast(errorText(r))));
      } else ui.toast('Usage: /all TEXT');
      return true;
    case '/away':
      setAway(true);
      return true;
    case '/back':
      setAway(false);
      return true;
    case '/search':
      openSearch(arg);
      return true;
    case '/help':
      ui.toast('Commands: /join ROOM, /leave, /topic TEXT, /msg NICK TEXT, /me DOES, /all TEXT, /away, /back, /search WORDS. Enter sends, Shift+Enter starts a new line, ↑ edits your last message, @ mentions, Alt+↑/↓ switches conversations, Ctrl+K searches.', 'info');
      return true;
    default:
      return false;
  }
}
