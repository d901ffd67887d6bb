// notify.js — browser notifications for messages that arrive while the tab
// is hidden. Off until the user turns them on; the browser's permission is
// asked at that moment, never on page load.

import { load, save } from './saved.js';

const KEY = 'chat.notifications';

export class Notifier {
  constructor() {
    this.supported = 'Notification' in window;
    this.enabled = this.supported && load(KEY) === 'on' && Notification.permission === 'granted';
  }

  /** Turns notifications on or off; returns a sentence when it could not. */
  async toggle() {
    if (!this.supported) return 'This browser cannot show notifications.';
    if (this.enabled) {
      this.enabled = false;
      save(KEY, 'off');
      return null;
    }
    let permission = Notification.permission;
    if (permission === 'default') permission = await Notification.requestPermission();
    if (permission !== 'granted') {
      return 'Notifications are blocked for this site. Allow them in the browser\'s site settings, then try again.';
    }
    this.enabled = true;
    save(KEY, 'on');
    return null;
  }

  /** Shows one notification when enabled and the page is hidden. */
  show(title, body, tag, onClick) {
    if (!this.enabled || document.visibilityState === 'visible') return;
    try {
      const n = new Notification(title, { body, tag, icon: new URL('../favicon.svg', import.meta.url).href });
      n.onclick = () => {
        window.focus();
        onClick();
        n.close();
      };
    } catch {
      // Some platforms allow notifications only from a service worker.
    }
  }
}
