// format.js — words and times for people: dates, day separators, and
// every server error code turned into a sentence.

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'short' });
const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: 'long', day: 'numeric', month: 'long', year: 'numeric' });

/** "14:05" */
export const clock = (ms) => timeFmt.format(new Date(ms));
/** "Monday, 2 March 2026 at 14:05" (for tooltips). */
export const fullTime = (ms) => fullFmt.format(new Date(ms));

/** A key that is equal for two times on the same local day. */
export function dayKey(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${d.getMonth() + 1}-${d.getDate()}`;
}

/** "Today", "Yesterday" or the long date, for day separators. */
export function dayLabel(ms, now = Date.now()) {
  if (dayKey(ms) === dayKey(now)) return 'Today';
  if (dayKey(ms) === dayKey(now - 86_400_000)) return 'Yesterday';
  return dayFmt.format(new Date(ms));
}

/** "3 minutes ago"-style text for a last-seen time. */
export function ago(ms, now = Date.now()) {
  const s = Math.round((now - ms) / 1000);
  if (s < 60) return 'just now';
  const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
  if (s < 3600) return rtf.format(-Math.round(s / 60), 'minute');
  if (s < 86_400) return rtf.format(-Math.round(s / 3600), 'hour');
  return rtf.format(-Math.round(s / 86_400), 'day');
}

const WORDS = {
  bad_frame: 'The server could not read what this page sent.',
  unknown_type: 'The server does not know that request.',
  invalid: 'That is not valid.',
  unauthorized: 'You are not signed in, or your sign-in has expired.',
  forbidden: 'You are not allowed to do that.',
  nick_taken: 'That nick is taken. Pick another one.',
  not_in_room: 'You are not in that room. Join it first.',
  no_such_room: 'That room does not exist.',
  no_such_user: 'Nobody by that name has been here.',
  no_such_message: 'That message no longer exists.',
  too_large: 'That is too long.',
  rate_limited: 'You are sending too fast.',
  unavailable: 'The server cannot store messages right now. Nothing was sent.',
  internal: 'Something went wrong on the server.',
  offline: 'You are offline. Wait until the connection is back.',
  timeout: 'The server did not answer in time.',
  lost: 'The connection was lost before the server answered. If it does not show up, try again.',
};

/**
 * A sentence for an `error` frame (or `{code, message}`), with the
 * server's own explanation after it when it adds something.
 */
export function errorText(err) {
  const code = err?.code || 'internal';
  let text = WORDS[code] || 'Something went wrong.';
  if (code === 'rate_limited') {
    const s = Math.max(1, Math.ceil((err.retry_after_ms || 1000) / 1000));
    text += ` Wait ${s} second${s === 1 ? '' : 's'} and try again.`;
  } else if (err?.message && !['nick_taken', 'internal', 'unavailable', 'offline', 'lost', 'timeout'].includes(code)) {
    text += ` (${err.message})`;
  }
  return text;
}

/** 1–32 of A–Z a–z 0–9 _ - . not starting with a digit or `-`. */
export const NICK_RE = /^[A-Za-z_.][A-Za-z0-9_.-]{0,31}$/;
/** 1–64 of the same, with an optional leading `#`. */
export const ROOM_RE = /^#?[A-Za-z0-9_.-]{1,64}$/;
export const validRoom = (name) => ROOM_RE.test(name) && name !== '#' && name.length <= 64;

/** "812 B", "48.2 KB", "3.1 MB" for a file size. */
export function bytes(n) {
  const v = Number(n) || 0;
  if (v < 1000) return `${v} B`;
  const units = ['KB', 'MB', 'GB'];
  let x = v;
  let u = -1;
  do {
    x /= 1000;
    u += 1;
  } while (x >= 1000 && u < units.length - 1);
  return `${x >= 100 ? Math.round(x) : x.toFixed(1)} ${units[u]}`;
}

/** "0:07", "12:34" for a duration in seconds. */
export function duration(secs) {
  const s = Math.max(0, Math.floor(secs || 0));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

/**
 * A file URL the server gave (`/files/…`, a path on this server) made
 * absolute against this page's folder, like the WebSocket and API URLs, so a
 * path prefix behind a proxy works. `external`: an http(s) URL elsewhere is
 * taken as it is (an avatar set by URL); attachments are always paths here.
 * Anything else gives null (never a `javascript:` or `data:` URL from a peer).
 */
export function fileUrl(url, external = false, base = document.baseURI) {
  if (typeof url !== 'string' || !url) return null;
  if (/^https?:\/\//i.test(url)) return external ? url : null;
  if (!url.startsWith('/') || url.startsWith('//')) return null;
  try {
    return new URL(url.slice(1), new URL('./', base)).href;
  } catch {
    return null;
  }
}
