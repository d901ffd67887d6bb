// Namespace `/max`: cMaxtalk's protocol, with its README's client code.
// `user.name` connects the README's way (no auth: a guest); `bee` brings a
// site token (SITE_TOKEN) whose `rooms` are lobby and conv-a.
import { io, next, call, track, drainMax, done, assert, URL, TRANSPORTS } from "./lib.mjs";

// --- the README's client code, unchanged but for the URL -------------------
const socket = io.connect(URL + "/max", { transports: TRANSPORTS, reconnection: false });
track(socket);
const packet = {
  username: "user.name",
  timestamp: 347815255145614,
};
socket.emit("join", packet);
// ----------------------------------------------------------------------------
const listening = await next(socket, "listening");
assert.deepEqual(listening.conversations, ["lobby"]);

const bee = io(URL + "/max", { transports: TRANSPORTS, reconnection: false, forceNew: true, auth: { token: process.env.SITE_TOKEN } });
track(bee);
await new Promise((resolve, reject) => { bee.once("connect", resolve); bee.once("connect_error", reject); });
// The callback form gets `listening` too.
const beeListening = await call(bee, "join", { username: "bee", timestamp: 1 });
assert.deepEqual(beeListening.conversations, ["lobby", "conv-a"]);
// The one listening already is told, once; never the joiner.
const joined = await next(socket, "joined");
assert.deepEqual(joined, { conversation: "lobby", username: "bee" });

// talk → update to the others, with the original timestamp; not the sender.
socket.emit("talk", { conversation: "lobby", timestamp: 347815255145999, messageID: "0f2343512345252" });
const update = await next(bee, "update");
assert.deepEqual(update, {
  username: "user.name",
  conversation: "lobby",
  timestamp: 347815255145999,
  messageID: "0f2343512345252",
});
const ok = await call(bee, "talk", { conversation: "conv-a", timestamp: 5, messageID: "m5" });
assert.equal(ok.type, "ack");

// Refused, reaching no one: a username that is not the user's, a
// conversation the user is not in, an unknown event, a bad argument.
let e = await call(bee, "join", { username: "user.name", timestamp: 2 });
assert.deepEqual([e.type, e.code], ["error", "forbidden"]);
e = await call(socket, "talk", { conversation: "conv-a", timestamp: 3, messageID: "x" });
assert.deepEqual([e.type, e.code], ["error", "not_in_room"]);
e = await call(socket, "talk", { timestamp: 3 });
assert.deepEqual([e.type, e.code], ["error", "invalid"]);
e = await call(socket, "message", { conversation: "lobby" });
assert.deepEqual([e.type, e.code], ["error", "unknown_type"]);
assert.deepEqual(await drainMax(bee, "bee"), []);
assert.deepEqual(await drainMax(socket, "user.name"), []);

// A site token for another user cannot listen as someone else; a bad token
// is refused at the handshake with {code, message}.
const bad = io(URL + "/max", { transports: TRANSPORTS, reconnection: false, forceNew: true, auth: { token: "forged" } });
const err = await new Promise((resolve) => bad.once("connect_error", resolve));
assert.equal(err.data.code, "unauthorized");
done(socket, bee, bad);
