// A Socket.IO user on each of two cluster nodes (CHAT_URL, CHAT_URL2), in
// one room: messages cross the cluster both ways, in order, once.
import { io, connect, next, call, drain, done, assert, TRANSPORTS } from "./lib.mjs";

const one = await connect("/", { nick: "one" });
await next(one, "welcome");
await next(one, "joined");
const two = await connect("/", { nick: "two" }, {}, process.env.CHAT_URL2);
await next(two, "welcome");
await next(two, "joined");
const came = await next(one, "presence");
assert.deepEqual([came.nick, came.event], ["two", "join"]);

for (let i = 1; i <= 3; i++) {
  const ack = await call(one, "say", { room: "lobby", text: `from one ${i}` });
  assert.equal(ack.message.seq, 2 * i - 1);
  const m = await next(two, "message");
  assert.deepEqual([m.from, m.text, m.seq], ["one", `from one ${i}`, 2 * i - 1]);
  const ack2 = await call(two, "say", { room: "lobby", text: `from two ${i}` });
  assert.equal(ack2.message.seq, 2 * i);
  const m2 = await next(one, "message");
  assert.deepEqual([m2.from, m2.text, m2.seq], ["two", `from two ${i}`, 2 * i]);
}
assert.deepEqual(await drain(one), []);
assert.deepEqual(await drain(two), []);
// The nick is taken cluster-wide.
await assert.rejects(connect("/", { nick: "ONE" }, {}, process.env.CHAT_URL2), (e) => e.data.code === "nick_taken");
done(one, two);
