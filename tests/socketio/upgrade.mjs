// The official client's default: long-polling first, then the upgrade to
// WebSocket. Two users chat before, during and after it; nothing is lost or
// repeated, and the connection ends up on the WebSocket.
import { connect, next, call, drain, done, assert } from "./lib.mjs";

const a = await connect("/", { nick: "ann" });
const engine = a.io.engine;
const upgraded = new Promise((resolve) => {
  if (engine.transport.name === "websocket") resolve();
  else engine.once("upgrade", resolve);
});
// Right away, while the upgrade is (most likely) under way.
const b = await connect("/", { nick: "ben" }, { transports: ["polling"] });
await next(a, "welcome");
await next(a, "joined");
await next(b, "welcome");
await next(b, "joined");
for (let i = 1; i <= 8; i++) {
  const ack = await call(b, "say", { room: "lobby", text: `m${i}` });
  assert.equal(ack.type, "ack", JSON.stringify(ack));
}
await upgraded;
assert.equal(engine.transport.name, "websocket");
for (let i = 9; i <= 10; i++) {
  const ack = await call(b, "say", { room: "lobby", text: `m${i}` });
  assert.equal(ack.type, "ack", JSON.stringify(ack));
}
const got = [];
for (let i = 1; i <= 10; i++) got.push((await next(a, "message")).text);
assert.deepEqual(got, Array.from({ length: 10 }, (_, i) => `m${i + 1}`));
const mine = await call(a, "say", { room: "lobby", text: "after the upgrade" });
assert.equal(mine.type, "ack");
assert.equal((await next(b, "message")).text, "after the upgrade");
// Nothing else (ben's presence came before the messages).
const rest = (await drain(a)).filter((e) => e.name !== "presence");
assert.deepEqual(rest, []);
done(a, b);
