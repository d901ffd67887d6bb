// state.js — what the controller modules share: the page's mode, the
// store, the connection and the conversation on screen. One object, so
// every module sees the same values (an imported binding cannot be
// assigned by its importer). Imports nothing of the controller.

import { Store } from './store.js';
import { Notifier } from './notify.js';

const mode = document.body.dataset.mode === 'embed' ? 'embed' : 'app';
const params = new URLSearchParams(location.search);

export const app = {
  /** 'app' (the full client, `/`) or 'embed' (the one-room widget, `/embed`). */
  mode,
  /** The page's query string (identify.js takes `token` out of it). */
  params,
  /** The widget's one room; null in the full client. */
  embedRoom: mode === 'embed' ? (params.get('room') || 'lobby').trim() : null,
  store: new Store(),
  notifier: new Notifier(),
  /** welcome's token: `Authorization: Bearer` for this user's HTTP calls (uploads, profile). */
  token: null,
  /** The settings in force (profile.js): {notify, theme, muted_rooms}. */
  settings: null,
  /** The Connection, opened by identify.js. */
  conn: null,
  /** The conversation on screen (pane.js `select`). */
  current: null,
  /** A room to show as soon as it is joined (`?room=`, or one the user just asked to join). */
  firstRoom: params.get('room'),
  /** The views, made by app.js: the UI (ui.js) and the MessageList (messages.js). */
  ui: null,
  list: null,
};
