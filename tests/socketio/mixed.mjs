// A Socket.IO user and a WebSocket user (the Rust test, nick `web`) in one
// room: each sees the other's messages, presence and typing, and a DM.
// The default transports: long-polling first, then the upgrade to WebSocket.
import { connect, next, call, drain, done, assert } from "./lib.mjs";

const sio = await connect("/", { nick: "sio" });
await next(sio, "welcome");
const joined = await next(sio, "joined");
assert.equal(joined.room, "lobby");
assert.ok(joined.members.some((m) => m.nick === "web"), JSON.stringify(joined.members));
console.log("@@ready");

// The web user says something first (the Rust side waits for @@ready).
const m = await next(sio, "message");
assert.deepEqual([m.from, m.text, m.room], ["web", "hello from the web", "lobby"]);
await call(sio, "typing", { room: "lobby", active: true });
const ack = await call(sio, "say", { room: "lobby", text: "hello from socket.io" });
assert.equal(ack.type, "ack");
const dm = await call(sio, "say", { to: "web", text: "a private word" });
assert.equal(dm.type, "ack");
const back = await next(sio, "message");
assert.deepEqual([back.from, back.to, back.text], ["web", "sio", "private answer"]);
// Nothing else arrived.
assert.deepEqual(await drain(sio), []);
done(sio);
