// store.js — what the client knows: who it is, the conversations (rooms,
// direct messages, the everyone stream) with their messages kept by `seq`
// and `msg_id` (never twice), members, typing, unread counts, and the room
// directory. No DOM and no network here.

/** Nicks and room names compare case-insensitively. */
export const fold = (s) => String(s).toLowerCase();

/** The id of a conversation: `r:<room>`, `d:<peer>` or `everyone`. */
export function convId(kind, name) {
  if (kind === 'room') return `r:${fold(name)}`;
  if (kind === 'dm') return `d:${fold(name)}`;
  return 'everyone';
}

const MAX_EVENTS = 300;

export class Conv {
  constructor(kind, name) {
    this.kind = kind; // 'room' | 'dm' | 'everyone'
    this.name = name; // room name, peer nick, or 'everyone'
    this.id = convId(kind, name);
    this.topic = '';
    this.members = new Map(); // folded nick -> member
    this.bySeq = new Map(); // seq -> message
    this.byId = new Map(); // msg_id -> message
    this.min = 0; // lowest seq held (0: none)
    this.max = 0; // highest seq held
    this.events = []; // system lines: {key, afterSeq, at, text}
    this.eventN = 0;
    this.unread = 0;
    this.mentions = 0; // unread messages that mention this user (a DM counts as one)
    this.dividerSeq = null; // the first unread message when the conversation was opened
    this.readers = new Map(); // rooms: folded nick -> {nick, seq} from `read` frames
    this.sentReadAt = 0; // when this client last sent `read` (rooms: at most every 2 s)
    this.typing = new Map(); // folded nick -> {nick, timer}
    this.joined = false; // rooms: this session is a member
    this.loaded = false; // a first page (or the join history) arrived
    this.loadingOlder = false;
    this.filling = false;
    this.olderDone = false; // the server said there is nothing older
    this.peerRead = 0; // DMs: the peer has read up to this seq
    this.sentRead = 0; // DMs: the last `read` this client sent
    this.status = null; // DMs: {online, away, last_seen} of the peer
    this.sortedCache = null;
  }

  /** Messages oldest first. */
  sorted() {
    if (!this.sortedCache) this.sortedCache = [...this.bySeq.values()].sort((a, b) => a.seq - b.seq);
    return this.sortedCache;
  }

  /** Older messages exist that are not loaded. */
  get hasOlder() {
    return this.loaded && !this.olderDone && this.min > 1;
  }

  /**
   * Adds messages, or updates ones already held (same msg_id or same seq:
   * an edit or deletion seen in history). Returns the messages that are new.
   */
  merge(messages) {
    const added = [];
    for (const m of messages || []) {
      if (typeof m?.seq !== 'number' || !m.msg_id) continue;
      const old = this.byId.get(m.msg_id) || this.bySeq.get(m.seq);
      if (old) {
        if ((m.edited_at || 0) > (old.edited_at || 0) || (m.deleted && !old.deleted)) {
          Object.assign(old, { text: m.text, edited_at: m.edited_at, deleted: m.deleted });
        }
        // History is the truth about reactions (a reconnect may have missed some).
        if (m.reactions && typeof m.reactions === 'object') old.reactions = m.reactions;
        continue;
      }
      const msg = { ...m };
      delete msg.type;
      delete msg.id;
      this.bySeq.set(msg.seq, msg);
      this.byId.set(msg.msg_id, msg);
      this.min = this.min ? Math.min(this.min, msg.seq) : msg.seq;
      this.max = Math.max(this.max, msg.seq);
      added.push(msg);
    }
    if (added.length) this.sortedCache = null;
    return added;
  }

  /**
   * The seq after which messages are missing (held messages jump from it
   * to a higher one), or null: what to ask `history … after` for.
   */
  firstGap() {
    const s = this.sorted();
    for (let i = 1; i < s.length; i++) if (s[i].seq !== s[i - 1].seq + 1) return s[i - 1].seq;
    return null;
  }

  /** A system line ("bob joined") placed after the newest message. */
  addEvent(text, at = Date.now()) {
    this.events.push({ key: `e${this.eventN++}`, afterSeq: this.max, at, text });
    if (this.events.length > MAX_EVENTS) this.events.shift();
  }

  /** Members sorted by display name. */
  memberList() {
    return [...this.members.values()].sort((a, b) =>
      (a.display_name || a.nick).localeCompare(b.display_name || b.nick, undefined, { sensitivity: 'base' }),
    );
  }

  /** The latest message by someone else (for read receipts). */
  lastFromOthers(me) {
    const s = this.sorted();
    for (let i = s.length - 1; i >= 0; i--) if (fold(s[i].from) !== fold(me)) return s[i];
    return null;
  }
}

export class Store {
  constructor() {
    this.me = null; // welcome.user
    this.convs = new Map();
    this.directory = []; // the `rooms` frame: [{name, topic, members}]
    this.people = new Map(); // folded nick -> {nick, display_name, avatar, status}
    this.presence = new Map(); // folded nick -> {online, away, last_seen} (`status` frames)
    this.limits = { max_text: 4000 };
  }

  isMe(nick) {
    return !!this.me && fold(nick) === fold(this.me.nick);
  }

  get(id) {
    return this.convs.get(id);
  }

  conv(kind, name, create = true) {
    const id = convId(kind, name);
    let c = this.convs.get(id);
    if (!c && create) {
      c = new Conv(kind, name);
      this.convs.set(id, c);
    }
    return c;
  }

  room(name, create = true) {
    return this.conv('room', name, create);
  }

  dm(peer, create = true) {
    return this.conv('dm', peer, create);
  }

  /** The conversation a frame is about, or null (creates DMs and everyone). */
  convOf(f) {
    if (f.room) return this.room(f.room, f.type === 'joined' || f.type === 'history');
    if (f.everyone) return this.conv('everyone', 'everyone');
    if (f.with) return this.dm(f.with);
    if (f.type === 'typing' || f.type === 'event') return f.from ? this.dm(f.from) : null;
    if (f.to) return this.dm(this.isMe(f.from) ? f.to : f.from);
    return null;
  }

  /**
   * Remembers what a member object, `welcome.user` or a `profile` frame
   * says about a person: their current display name, avatar and status line,
   * which every message of theirs shows, old ones too. Returns true when
   * something shown changed.
   */
  learn(member) {
    if (!member?.nick) return false;
    const key = fold(member.nick);
    const old = this.people.get(key);
    const next = {
      nick: member.nick,
      display_name: member.display_name || member.nick,
      avatar: typeof member.avatar === 'string' && member.avatar ? member.avatar : null,
      status: typeof member.status === 'string' ? member.status : old?.status || '',
    };
    this.people.set(key, next);
    if (this.me && key === fold(this.me.nick)) Object.assign(this.me, { display_name: next.display_name, avatar: next.avatar });
    // Member lists hold copies: keep them the same.
    for (const c of this.convs.values()) {
      const m = c.members.get(key);
      if (m) Object.assign(m, { display_name: next.display_name, avatar: next.avatar });
    }
    return !old || old.display_name !== next.display_name || old.avatar !== next.avatar || old.status !== next.status;
  }

  displayName(nick) {
    return this.people.get(fold(nick))?.display_name || nick;
  }

  /** The status line someone set ("" when none is known). */
  status(nick) {
    return this.people.get(fold(nick))?.status || '';
  }

  avatar(nick) {
    return this.people.get(fold(nick))?.avatar || null;
  }

  rooms() {
    return [...this.convs.values()].filter((c) => c.kind === 'room' && c.joined)
      .sort((a, b) => a.name.localeCompare(b.name, undefined, { sensitivity: 'base' }));
  }

  dms() {
    return [...this.convs.values()].filter((c) => c.kind !== 'room')
      .sort((a, b) => (a.kind === 'everyone' ? -1 : b.kind === 'everyone' ? 1 : a.name.localeCompare(b.name)));
  }

  totalUnread() {
    let n = 0;
    for (const c of this.convs.values()) n += c.unread;
    return n;
  }

  totalMentions() {
    let n = 0;
    for (const c of this.convs.values()) n += c.mentions;
    return n;
  }

  /** A conversation's first unread message from someone else (for the divider), or null. */
  firstUnread(c) {
    if (!c.unread) return null;
    const s = c.sorted();
    let left = c.unread;
    for (let i = s.length - 1; i >= 0; i--) {
      if (this.isMe(s[i].from)) continue;
      left -= 1;
      if (left === 0) return s[i].seq;
    }
    return s.find((m) => !this.isMe(m.from))?.seq ?? null;
  }
}
