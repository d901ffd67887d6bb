// richtext.js — a message's text as DOM nodes: a small, safe formatting
// subset (`*bold*`, `**bold**`, `_italic_`, `` `code` ``, fenced code blocks,
// `> quote` lines, line breaks), clickable links (http, https and mailto
// only, `rel="noopener noreferrer"`), `@nick` mentions (the reader's own
// stand out), emoji shortcodes (`:smile:`), and `/me` actions. Every piece
// of the text goes in as a text node: no HTML is ever built from it, so
// nothing a user writes can become markup.

import { h } from './dom.js';
import { fold } from './store.js';

/** Shortcodes the composer turns into emoji (and the picker offers). */
export const EMOJI = {
  smile: '😄', grin: '😁', joy: '😂', rofl: '🤣', wink: '😉', blush: '😊', heart_eyes: '😍',
  thinking: '🤔', neutral_face: '😐', sweat_smile: '😅', sob: '😭', cry: '😢', angry: '😠',
  scream: '😱', sunglasses: '😎', upside_down: '🙃', shrug: '🤷', facepalm: '🤦', wave: '👋',
  '+1': '👍', thumbsup: '👍', '-1': '👎', thumbsdown: '👎', clap: '👏', pray: '🙏', muscle: '💪',
  ok_hand: '👌', raised_hands: '🙌', eyes: '👀', heart: '❤️', broken_heart: '💔', fire: '🔥',
  tada: '🎉', sparkles: '✨', star: '⭐', rocket: '🚀', check: '✅', white_check_mark: '✅',
  x: '❌', warning: '⚠️', question: '❓', bulb: '💡', coffee: '☕', beer: '🍺', pizza: '🍕',
  cake: '🍰', bug: '🐛', zap: '⚡', 100: '💯', poop: '💩', see_no_evil: '🙈', party: '🥳',
};

/** The picker's emoji, in order (one of each). */
export const PICKER = ['😄', '😂', '😉', '😊', '😍', '🤔', '😅', '😭', '😎', '🙃', '🥳', '😱',
  '👍', '👎', '👏', '🙏', '👌', '🙌', '💪', '👋', '👀', '❤️', '🔥', '🎉', '✨', '🚀', '✅',
  '❌', '⚠️', '💡', '☕', '🍺', '🍕', '🐛', '⚡', '💯'];

/** Replaces known `:shortcodes:` in `text` by their emoji (what the composer sends). */
export function emojify(text) {
  return text.replace(/:([a-z0-9_+-]{1,32}):/gi, (all, name) => EMOJI[name.toLowerCase()] || all);
}

const NICK = '[A-Za-z_.][A-Za-z0-9_.-]{0,31}';
// Alternatives, in order: `code`, a link, **bold**, *bold*, _italic_, @nick, :shortcode:.
const INLINE = new RegExp([
  '(`[^`\\n]+`)',
  '((?:https?://|mailto:)[^\\s<>"`]+)',
  '(\\*\\*[^*\\n]+?\\*\\*)',
  '((?<![\\w*])\\*[^*\\s](?:[^*\\n]*?[^*\\s])?\\*(?![\\w*]))',
  '((?<!\\w)_[^_\\s](?:[^_\\n]*?[^_\\s])?_(?!\\w))',
  `((?<![\\w.@-])@${NICK})`,
  '(:[a-z0-9_+-]{1,32}:)',
].join('|'), 'gi');

/** Whether the message names `me` (`mentions` from the server, else the text). */
export function mentionsOf(m, me) {
  if (!me) return false;
  if (Array.isArray(m.mentions)) return m.mentions.some((n) => fold(n) === fold(me));
  const esc = me.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`(^|[^\\w.-])@${esc}(?![\\w-])`, 'i').test(m.text || '');
}

/** A URL a link may go to: http, https or mailto only; null otherwise. */
export function safeHref(raw) {
  try {
    const u = new URL(raw);
    return ['http:', 'https:', 'mailto:'].includes(u.protocol) ? u.href : null;
  } catch {
    return null;
  }
}

/**
 * The nodes of one message's text. ctx: {me (nick), mentions (array or
 * undefined), onMention(nick) (a click on a mention)}.
 */
export function richText(text, ctx = {}) {
  const out = [];
  const lines = String(text ?? '').split('\n');
  let para = [];
  const flush = () => {
    if (!para.length) return;
    const nodes = [];
    para.forEach((line, i) => {
      if (i) nodes.push(h('br'));
      nodes.push(...inline(line, ctx));
    });
    out.push(h('span', { class: 'para' }, nodes));
    para = [];
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (/^\s*```/.test(line)) {
      // A fenced block: up to the closing fence (or the end), shown as it is.
      const body = [];
      const first = line.replace(/^\s*```[\w+-]*\s*/, '');
      if (first.includes('```')) {
        flush();
        out.push(h('pre', {}, h('code', { text: first.slice(0, first.indexOf('```')) })));
        continue;
      }
      if (first) body.push(first);
      let j = i + 1;
      while (j < lines.length && !/^\s*```\s*$/.test(lines[j])) body.push(lines[j++]);
      if (j >= lines.length && !body.length && !first) { para.push(line); continue; }
      flush();
      out.push(h('pre', {}, h('code', { text: body.join('\n') })));
      i = j;
      continue;
    }
    if (/^>\s?/.test(line)) {
      flush();
      const quote = [];
      while (i < lines.length && /^>\s?/.test(lines[i])) quote.push(lines[i++].replace(/^>\s?/, ''));
      i -= 1;
      const nodes = [];
      quote.forEach((q, k) => {
        if (k) nodes.push(h('br'));
        nodes.push(...inline(q, ctx));
      });
      out.push(h('blockquote', {}, nodes));
      continue;
    }
    para.push(line);
  }
  flush();
  return out;
}

/** The inline formatting of one line. */
function inline(line, ctx, depth = 0) {
  const nodes = [];
  let last = 0;
  INLINE.lastIndex = 0;
  const re = new RegExp(INLINE.source, INLINE.flags);
  let m;
  while ((m = re.exec(line))) {
    let [all] = m;
    let end = m.index + all.length;
    let node = null;
    if (m[1]) {
      node = h('code', { text: all.slice(1, -1) });
    } else if (m[2]) {
      // Trailing punctuation belongs to the sentence, not the link (a
      // closing parenthesis only when it opens none in the link).
      let url = all;
      while (/[.,;:!?'"\])]$/.test(url) && !(url.endsWith(')') && (url.match(/\(/g) || []).length >= (url.match(/\)/g) || []).length)) url = url.slice(0, -1);
      end = m.index + url.length;
      const href = safeHref(url);
      node = href ? h('a', { href, text: url, target: '_blank', rel: 'noopener noreferrer', class: 'link' }) : document.createTextNode(url);
    } else if (m[3] && depth < 3) {
      node = h('strong', {}, inline(all.slice(2, -2), ctx, depth + 1));
    } else if (m[4] && depth < 3) {
      node = h('strong', {}, inline(all.slice(1, -1), ctx, depth + 1));
    } else if (m[5] && depth < 3) {
      node = h('em', {}, inline(all.slice(1, -1), ctx, depth + 1));
    } else if (m[6]) {
      // A nick does not end in `.` or `-` (the end of a sentence).
      const nick = all.slice(1).replace(/[.-]+$/, '');
      end = m.index + 1 + nick.length;
      const known = !Array.isArray(ctx.mentions) || ctx.mentions.some((n) => fold(n) === fold(nick));
      if (known && nick) {
        const mine = !!ctx.me && fold(ctx.me) === fold(nick);
        node = h('span', { class: `mention${mine ? ' mention-me' : ''}`, text: `@${nick}`, dataset: { nick } });
      } else {
        node = document.createTextNode(`@${nick}`);
      }
    } else if (m[7]) {
      const e = EMOJI[all.slice(1, -1).toLowerCase()];
      node = document.createTextNode(e || all);
    } else {
      node = document.createTextNode(all);
    }
    if (m.index > last) nodes.push(document.createTextNode(line.slice(last, m.index)));
    nodes.push(node);
    last = end;
    re.lastIndex = end;
  }
  if (last < line.length) nodes.push(document.createTextNode(line.slice(last)));
  return nodes;
}
