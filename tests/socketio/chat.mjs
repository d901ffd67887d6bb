// Namespace `/` with the official client, over the transports in
// SIO_TRANSPORTS: the handshake's auth is `hello`, events are frames, the
// ack callback gets the reply frame, refusals are `connect_error {code,
// message}`, and nothing meant for one user reaches another.
import { connect, next, call, drain, done, assert } from "./lib.mjs";

const alice = await connect("/", { nick: "alice" });
const welcome = await next(alice, "welcome");
assert.equal(welcome.type, "welcome");
assert.equal(welcome.nick, "alice");
assert.deepEqual(welcome.rooms, ["lobby"]);
const joined = await next(alice, "joined");
assert.equal(joined.room, "lobby");
assert.deepEqual(joined.members.map((m) => m.nick), ["alice"]);

const bob = await connect("/", { nick: "bob" });
await next(bob, "welcome");
await next(bob, "joined");
const came = await next(alice, "presence");
assert.deepEqual([came.room, came.nick, came.event], ["lobby", "bob", "join"]);

// say with a callback: the callback gets the `ack` (stored: it has a seq).
const ack = await call(alice, "say", { room: "lobby", text: "hello from socket.io" });
assert.equal(ack.type, "ack", JSON.stringify(ack));
assert.equal(ack.message.seq, 1);
const m = await next(bob, "message");
assert.deepEqual([m.type, m.room, m.from, m.text, m.seq], ["message", "lobby", "alice", "hello from socket.io", 1]);
assert.equal(m.msg_id, ack.message.msg_id);

// say without a callback: the `ack` comes as an event.
alice.emit("say", { room: "lobby", text: "second" });
assert.equal((await next(bob, "message")).text, "second");
const ack2 = await next(alice, "ack");
assert.deepEqual([ack2.message.seq, ack2.message.text], [2, "second"]);

// A request whose reply is a frame of its own type.
const history = await call(bob, "history", { room: "lobby", limit: 10 });
assert.equal(history.type, "history");
assert.deepEqual(history.messages.map((x) => x.text), ["hello from socket.io", "second"]);
const who = await call(bob, "who", { room: "lobby" });
assert.deepEqual([who.type, who.count], ["room_status", 2]);

// Errors: through the callback, or as an `error` event without one.
let e = await call(alice, "dance", { room: "lobby" });
assert.deepEqual([e.type, e.code], ["error", "unknown_type"]);
alice.emit("dance", {});
e = await next(alice, "error");
assert.equal(e.code, "unknown_type");
e = await call(alice, "say", "not an object");
assert.deepEqual([e.type, e.code], ["error", "invalid"]);
e = await call(alice, "say", { room: "elsewhere", text: "x" });
assert.deepEqual([e.type, e.code], ["error", "not_in_room"]);
e = await call(alice, "say", { room: "lobby" });
assert.deepEqual([e.type, e.code], ["error", "invalid"]);
e = await call(alice, "hello", { nick: "again" });
assert.deepEqual([e.type, e.code], ["error", "invalid"]);

// Refused connections: `connect_error` with data {code, message}.
await assert.rejects(connect("/", { nick: "Alice" }), (err) => {
  assert.equal(err.data.code, "nick_taken", JSON.stringify(err.data));
  assert.equal(typeof err.data.message, "string");
  assert.equal(err.message, err.data.message);
  return true;
});
await assert.rejects(connect("/", { nick: "9 bad" }), (err) => err.data.code === "invalid");
await assert.rejects(connect("/", {}), (err) => err.data.code === "invalid");
await assert.rejects(connect("/", { nick: 42 }), (err) => err.data.code === "invalid");
await assert.rejects(connect("/", { token: "not-a-token" }), (err) => err.data.code === "unauthorized");
await assert.rejects(connect("/nope", { nick: "carol" }), (err) => /namespace/i.test(err.message));

// Nothing of alice's errors or refused clients reached bob; alice got
// nothing but what she asked for.
assert.deepEqual(await drain(bob), []);
assert.deepEqual(await drain(alice), []);

// Leaving: bob sees alice quit.
alice.close();
const quit = await next(bob, "presence");
assert.deepEqual([quit.nick, quit.event], ["alice", "quit"]);
done(bob);
