// Helpers for the Socket.IO client scripts (run by tests/socketio.rs).
// Every event a socket receives is kept in order (socket.log), so a script
// can wait for one and prove that nothing else came: a `ping` through the
// ack callback comes back after everything the server queued before it.
import { io } from "socket.io-client";
import assert from "node:assert/strict";

export { io, assert };
export const URL = process.env.CHAT_URL;
export const TRANSPORTS = (process.env.SIO_TRANSPORTS || "polling,websocket").split(",");
const WAIT = 10_000;

/// Connects to `nsp` with `auth`; resolves once connected, rejects with the
/// `connect_error`.
export function connect(nsp, auth, opts = {}, url = URL) {
  const socket = io(url + nsp, { auth, transports: TRANSPORTS, reconnection: false, forceNew: true, ...opts });
  track(socket);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no connect on ${nsp} within ${WAIT} ms`)), WAIT);
    socket.once("connect", () => { clearTimeout(t); resolve(socket); });
    socket.once("connect_error", (err) => { clearTimeout(t); socket.close(); reject(err); });
  });
}

/// Keeps every event the socket receives, in order.
export function track(socket) {
  socket.log = [];
  socket.waiters = [];
  socket.onAny((name, arg) => {
    socket.log.push({ name, arg });
    socket.waiters = socket.waiters.filter((w) => !w());
  });
  return socket;
}

/// The next not yet taken event named `name` (older ones of other names
/// stay in the log).
export function next(socket, name, wait = WAIT) {
  return new Promise((resolve, reject) => {
    const take = () => {
      const i = socket.log.findIndex((e) => e.name === name);
      if (i < 0) return false;
      const [e] = socket.log.splice(i, 1);
      clearTimeout(t);
      resolve(e.arg);
      return true;
    };
    const t = setTimeout(() => reject(new Error(`no ${name} within ${wait} ms; log: ${JSON.stringify(socket.log)}`)), wait);
    if (!take()) socket.waiters.push(take);
  });
}

/// Emits with an ack callback; resolves with the callback's argument.
export function call(socket, name, arg) {
  return socket.timeout(WAIT).emitWithAck(name, arg);
}

/// Everything received so far, taken; after a `ping` round trip, so that
/// whatever the server queued before it is in.
export async function drain(socket) {
  const pong = await call(socket, "ping", {});
  assert.equal(pong.type, "pong");
  return socket.log.splice(0);
}

/// Like drain, for /max (which has no ping): a `join` again answers
/// `listening` through the same queue.
export async function drainMax(socket, username) {
  const l = await call(socket, "join", { username, timestamp: Date.now() });
  assert.equal(l.type, "listening", JSON.stringify(l));
  return socket.log.splice(0);
}

export function done(...sockets) {
  for (const s of sockets) s.close();
  console.log("OK");
  process.exit(0);
}

process.on("unhandledRejection", (e) => {
  console.error("FAILED:", e && e.stack ? e.stack : e, e && e.data ? JSON.stringify(e.data) : "");
  process.exit(1);
});
