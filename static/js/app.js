// app.js — the entry point: makes the views, hands their actions to the
// controller modules, and starts. Both pages use it: the full client (`/`,
// body data-mode="app") and the one-room widget (`/embed`, "embed").
//
// The controller, by what it looks after (an import only points down the list):
//   frames.js     the server's frames, each to the module below that handles it
//   composer.js   what the user writes: messages (with files, replies) and slash commands
//   complete.js   `@` autocompletion from the conversation's people
//   emoji.js      the emoji picker (for the message box and for reactions)
//   search.js     the search dialog, results opening the message in context
//   card.js       a person's card (presence, status, start a DM)
//   push.js       the service worker and Web Push (the settings switch)
//   nav.js        opening a place named by a URL (?room=, ?dm=, &seq=), links to messages
//   alerts.js     sound, in-page notifications, the screen reader's live region
//   away.js       away and back: by hand and after idle time
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
// (the message list), richtext.js (a message's formatted text),
// attachments.js (files in messages, the picture viewer), login.js (the
// login form).

import { UI } from './ui.js';
import { MessageList } from './messages.js';
import { boot, logout } from './identify.js';
import { onWelcome, onFrame } from './frames.js';
import { send, replyTo, bindComposer } from './composer.js';
import { bindComplete } from './complete.js';
import { bindEmoji, openPicker } from './emoji.js';
import { bindSearch } from './search.js';
import { bindCard, openCard } from './card.js';
import { bindPush } from './push.js';
import { linkTo } from './nav.js';
import { soundOn, setSound } from './alerts.js';
import { bindAway, toggleAway } from './away.js';
import { joinRoom, leaveRoom, setTopic } from './rooms.js';
import { openDM } from './dms.js';
import { select, markRead, viewing, loadOlder, editMessage, deleteMessage, react, jumpTo } from './pane.js';
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
  toggleSound: () => {
    setSound(!soundOn());
    ui.renderSound(soundOn());
  },
  toggleAway: () => toggleAway(),
  person: (nick, anchor) => openCard(nick, anchor),
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
  person: (nick, anchor) => openCard(nick, anchor),
  react: (m, emoji, on) => react(m, emoji, on),
  pickReaction: (m, anchor) => openPicker((emoji) => react(m, emoji, true), anchor),
  reply: (m) => replyTo(m),
  link: (m) => copyLink(m),
  jumpTo: (msgId) => app.current && jumpTo(app.current, 0, msgId),
});
app.list = list;

bindUploads();
bindRecorder();
bindProfile();
bindComposer();
bindComplete();
bindEmoji();
bindSearch();
bindCard();
bindPush();
bindAway();
ui.renderSound(soundOn());

/** Copies a link to a message (this page, opened on it). */
async function copyLink(m) {
  const url = linkTo(app.current, m);
  try {
    await navigator.clipboard.writeText(url);
    ui.toast('Link copied.', 'info', 'link-copied');
  } catch {
    // No clipboard (an insecure page, a denied permission): show it to copy by hand.
    ui.toast(url, 'info', 'link-copied');
  }
}

document.addEventListener('visibilitychange', () => {
  if (app.current && viewing(app.current)) markRead(app.current);
});

setInterval(() => {
  if (mode === 'app' && app.conn?.online && document.visibilityState === 'visible') app.conn.send({ type: 'rooms' });
}, 30_000);

boot({ welcome: onWelcome, frame: onFrame });
