// conn.js — the WebSocket connection: `hello` on every (re)connect,
// requests with ids and promised replies, reconnection with exponential
// backoff and jitter, and a heartbeat that notices a dead link.
//
// Events (CustomEvent, `detail`):
//   frame    every frame from the server, after `welcome` (detail: frame)
//   welcome  identified (detail: {frame, resumed}); resumed = a reconnect
//   refused  `hello` failed and retrying will not help (detail: error frame)
//   status   {state: 'connecting'|'online'|'waiting'|'stopped', retryIn, reason}

const BACKOFF_MIN = 500;
const BACKOFF_MAX = 15_000;
const REQUEST_TIMEOUT = 15_000;
const HEARTBEAT = 25_000;

/** `ws(s)://<this page's folder>/ws`, so a path prefix behind a proxy works. */
export function wsUrl(base = location.href) {
  const url = new URL('ws', base);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.search = '';
  url.hash = '';
  return url.href;
}

export class Connection extends EventTarget {
  /** `hello` returns the fields of the `hello` frame for each attempt. */
  constructor(url, hello) {
    super();
    this.url = url;
    this.hello = hello;
    this.ws = null;
    this.ready = false; // welcome received on the current socket
    this.everWelcomed = false;
    this.stopped = false;
    this.attempt = 0;
    this.nextId = 1;
    this.pending = new Map(); // id -> {resolve, timer}
    this.retryTimer = null;
    this.heartbeat = null;
    this.lastHeard = 0;
    this.helloRetries = 0;
    addEventListener('online', () => this.retryNow());
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible') this.retryNow();
    });
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  start() {
    this.stopped = false;
    this.open();
  }

  /** Closes for good (logging out). */
  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.heartbeat);
    if (this.ws) this.ws.close(1000, 'bye');
    this.ws = null;
    this.ready = false;
    this.failPending('offline');
    this.emit('status', { state: 'stopped' });
  }

  /** Skips the rest of the backoff wait (the network came back, the tab woke). */
  retryNow() {
    if (this.stopped || this.ws || !this.retryTimer) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.open();
  }

  open() {
    this.retryTimer = null;
    this.emit('status', { state: 'connecting' });
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (e) {
      this.scheduleRetry('cannot connect');
      return;
    }
    this.ws = ws;
    this.ready = false;
    ws.onopen = () => {
      this.lastHeard = Date.now();
      ws.send(JSON.stringify({ type: 'hello', id: 'hello', ...this.hello() }));
    };
    ws.onmessage = (ev) => this.onMessage(ws, ev);
    ws.onclose = (ev) => this.onClose(ws, ev);
    ws.onerror = () => {}; // onclose follows and says what to do
  }

  onMessage(ws, ev) {
    if (ws !== this.ws) return;
    this.lastHeard = Date.now();
    let frame;
    try {
      frame = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (!this.ready) return this.onHelloReply(frame);
    if (frame.type === 'notice' && frame.code === 'shutdown') this.shuttingDown = true;
    if (frame.id !== undefined && this.pending.has(frame.id)) {
      const p = this.pending.get(frame.id);
      this.pending.delete(frame.id);
      clearTimeout(p.timer);
      p.resolve(frame);
    }
    this.emit('frame', frame);
  }

  onHelloReply(frame) {
    if (frame.type === 'welcome') {
      const resumed = this.everWelcomed;
      this.ready = true;
      this.everWelcomed = true;
      this.attempt = 0;
      this.helloRetries = 0;
      this.startHeartbeat();
      this.emit('status', { state: 'online' });
      this.emit('welcome', { frame, resumed });
    } else if (frame.type === 'error' && frame.id === 'hello') {
      // A guest's old session may not be gone yet after a reload or a
      // network change: its nick comes free within moments.
      const transient = frame.code === 'nick_taken' && (this.everWelcomed || this.helloRetries < 3);
      if (transient || frame.code === 'rate_limited' || frame.code === 'unavailable') {
        this.helloRetries += 1;
        this.ws.onclose = null;
        this.ws.close(1000);
        this.ws = null;
        this.scheduleRetry(frame.code === 'nick_taken' ? 'waiting for the old session to end' : frame.code);
      } else {
        this.stop();
        this.emit('refused', frame);
      }
    } else if (frame.type === 'error') {
      this.emit('frame', frame);
    }
  }

  onClose(ws, ev) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.ready = false;
    clearInterval(this.heartbeat);
    this.failPending('lost');
    if (this.stopped) return;
    const reason = ev.code === 1001 || this.shuttingDown ? 'the server is restarting' : 'connection lost';
    this.shuttingDown = false;
    this.scheduleRetry(reason);
  }

  scheduleRetry(reason) {
    if (this.stopped) return;
    const base = Math.min(BACKOFF_MAX, BACKOFF_MIN * 2 ** this.attempt);
    const delay = Math.round(base / 2 + Math.random() * (base / 2));
    this.attempt += 1;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.open(), delay);
    this.emit('status', { state: 'waiting', retryIn: delay, reason });
  }

  /**
   * A `ping` when the line has been quiet; nothing heard within 10 s of it:
   * the link is dead (a laptop that slept, a network that changed), so
   * reconnect. Only an unanswered ping counts, so a background tab whose
   * timers the browser slows down is not taken for a dead one.
   */
  startHeartbeat() {
    clearInterval(this.heartbeat);
    this.pingSent = 0;
    this.heartbeat = setInterval(() => {
      if (!this.ready) return;
      const now = Date.now();
      if (this.pingSent && this.lastHeard < this.pingSent && now - this.pingSent > 10_000) {
        const ws = this.ws;
        this.onClose(ws, { code: 1006 });
        ws.onclose = null;
        ws.close();
        return;
      }
      if (now - this.lastHeard > HEARTBEAT && !(this.pingSent > this.lastHeard)) {
        this.pingSent = now;
        this.send({ type: 'ping' });
      }
    }, 5000);
  }

  get online() {
    return this.ready && this.ws?.readyState === WebSocket.OPEN;
  }

  /** Sends without waiting for a reply; false when offline. */
  send(frame) {
    if (!this.online) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /**
   * Sends with an id; resolves with the reply (`ack`, a result frame or an
   * `error`). Offline or no reply in time resolves with a local error frame.
   */
  request(frame) {
    const id = `r${this.nextId++}`;
    if (!this.send({ ...frame, id })) {
      return Promise.resolve({ type: 'error', id, code: 'offline', message: 'not connected' });
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        resolve({ type: 'error', id, code: 'timeout', message: 'no answer' });
      }, REQUEST_TIMEOUT);
      this.pending.set(id, { resolve, timer });
    });
  }

  failPending(code) {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.resolve({ type: 'error', id, code, message: 'the connection closed before the answer' });
    }
    this.pending.clear();
  }
}
