// app.js — the entry point: makes the views, hands their actions to the
// controller modules, and starts. Both pages use it: the full client (`/`,
// body data-mode="app") and the one-room widget (`/embed`, "embed").
//
// The controller, by what it looks after (an import only points down the list):
//   frames.js     the server's frames, each to the module below that handles it
//   composer.js   what the user writes: messages (with files) and slash commands
//   profile.js    the profile and settings dialog, the theme, which messages notify
//   recorder.js   voice and video messages recorded in the browser
//   rooms.js      joining, leaving, topics, the room directory
//   dms.js        direct messages: opening one, the saved peers, status, read receipts
//   members.js    the member panel: member lists and presence
//   pane.js       the conversation on screen, its history paging, edit/delete
//   typing.js     typing indications, sent and shown
//   uploads.js    files on their way: attach, drop, paste, progress, the tray
//   identify.js   who the user is (saved, `?token=`, the login form), the connection
//   state.js      what they share: mode, store, connection, the conversation on screen
// The views they draw with: ui.js (the page around the messages), messages.js
// (the message list), attachments.js (files in messages, the picture
// viewer), login.js (the login form).

import { UI } from './ui.js';
import { MessageList } from './messages.js';
import { boot, logout } from './identify.js';
import { onWelcome, onFrame } from './frames.js';
import { send } from './composer.js';
import { joinRoom, leaveRoom, setTopic } from './rooms.js';
import { openDM } from './dms.js';
import { select, markRead, viewing, loadOlder, editMessage, deleteMessage } from './pane.js';
import { typing } from './typing.js';
import { bindUploads, hasFiles } from './uploads.js';
import { bindRecorder } from './recorder.js';
import { bindProfile, lookUp } from './profile.js';
import { app } from './state.js';

const { store, notifier, mode } = app;

const ui = new UI(store, mode, {
  select: (id) => select(store.get(id)),
  join: (name) => joinRoom(name, true),
  leave: (c) => leaveRoom(c),
  openDM: (nick) => openDM(nick),
  setTopic: (c, text) => setTopic(c, text),
  send: (text) => send(text),
  hasFiles: () => hasFiles(),
  typing: (text) => typing(text),
  editLast: () => list.editLast(),
  logout: () => logout(),
  toggleNotifications: async () => {
    const problem = await notifier.toggle();
    if (problem) ui.toast(problem);
    ui.renderNotify(notifier.enabled);
  },
  browse: () => app.conn?.send({ type: 'rooms' }),
  retry: () => app.conn?.retryNow(),
});
app.ui = ui;

const list = new MessageList(store, {
  loadOlder: (c) => loadOlder(c),
  edit: (m, text) => editMessage(m, text),
  remove: (m) => deleteMessage(m),
  canDelete: (m) => store.isMe(m.from) || !!store.me?.admin,
  onBottom: (c) => markRead(c),
  unknown: (nick) => lookUp(nick),
});
app.list = list;

bindUploads();
bindRecorder();
bindProfile();

document.addEventListener('visibilitychange', () => {
  if (app.current && viewing(app.current)) markRead(app.current);
});

setInterval(() => {
  if (mode === 'app' && app.conn?.online && document.visibilityState === 'visible') app.conn.send({ type: 'rooms' });
}, 30_000);

boot({ welcome: onWelcome, frame: onFrame });
