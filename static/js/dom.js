// dom.js — tiny DOM helpers. Every piece of user data goes in as text
// (textContent / text nodes); nothing here ever parses HTML.

/**
 * Creates an element. `props`: `class`, `text` (textContent), `attrs`
 * (attributes), `on` (event listeners), `dataset`, or any DOM property
 * (`type`, `hidden`, `title`, …). Children are nodes or strings (text nodes).
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key === 'attrs') for (const [a, v] of Object.entries(value)) { if (v !== undefined && v !== null && v !== false) el.setAttribute(a, v === true ? '' : String(v)); }
    else if (key === 'on') for (const [ev, fn] of Object.entries(value)) el.addEventListener(ev, fn);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else el[key] = value;
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(typeof child === 'string' ? document.createTextNode(child) : child);
  }
}

/** `document.getElementById`, or null when this page has no such element. */
export const $ = (id) => document.getElementById(id);

/** Removes every child of `el`. */
export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
}

/** Replaces the children of `el` by `children` (nodes or strings). */
export function replace(el, ...children) {
  clear(el);
  append(el, children);
}
