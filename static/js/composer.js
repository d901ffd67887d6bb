// composer.js — what the user writes: a message to the conversation on
// screen with the files in its tray (uploads.js; both given back on
// failure), or a slash command in the full client.

import { errorText, validRoom } from './format.js';
import { joinRoom, leaveRoom, setTopic } from './rooms.js';
import { openDM } from './dms.js';
import { typingSentMessage } from './typing.js';
import { readyFiles, sending, sent } from './uploads.js';
import { app } from './state.js';

export async function send(raw) {
  const c = app.current;
  if (!c) return;
  const text = raw.trim();
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
  sending(files.items, true);
  const r = await app.conn.request(frame);
  if (r.type !== 'error') {
    sent(c, files.items);
    return;
  }
  sending(files.items, false);
  app.ui.toast(errorText(r), 'error', `say:${r.code}`);
  // The files stay in the tray; the text comes back unless it may have gone.
  if (r.code !== 'lost') giveBack(c, raw);
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

/** Slash commands: /join ROOM, /leave, /topic TEXT, /msg NICK TEXT. */
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
    case '/help':
      ui.toast('Commands: /join ROOM, /leave, /topic TEXT, /msg NICK TEXT. Enter sends, Shift+Enter starts a new line, ↑ edits your last message, Alt+↑/↓ switches conversations.', 'info');
      return true;
    default:
      return false;
  }
}
