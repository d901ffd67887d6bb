// saved.js — what the browser keeps between visits (localStorage) and for
// this tab (sessionStorage), as JSON. Never throws: a widget in a
// third-party iframe may be denied storage, and then nothing is kept.

function area(session) {
  try {
    return session ? window.sessionStorage : window.localStorage;
  } catch {
    return null;
  }
}

/** The value under `key`, or null. */
export function load(key, session = false) {
  try {
    return JSON.parse(area(session)?.getItem(key) ?? 'null');
  } catch {
    return null;
  }
}

export function save(key, value, session = false) {
  try {
    area(session)?.setItem(key, JSON.stringify(value));
  } catch {
    // storage denied or full: not kept
  }
}

/** Removes `key` from both areas. */
export function forget(key) {
  for (const session of [true, false]) {
    try {
      area(session)?.removeItem(key);
    } catch {
      // storage denied
    }
  }
}
