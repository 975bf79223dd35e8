// gobstopper.js's protocol: what it sends, how it reads answers, errors, batches,
// pushes, streams and call timeouts, against a fake socket and a fake clock.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  accept,
  answer,
  connected,
  frames,
  lastFrame,
  load,
  plain,
  push,
  settle,
} from "./harness.mjs";

test("a call is a request with a fresh id, resolved with its result", async () => {
  const { env, client, socket } = await connected();
  const sum = client.call("add", [2, 3]);
  const named = client.call("greet", { name: "ann" });
  const [first, second] = frames(env, socket).slice(-2);
  assert.deepEqual(first, { jsonrpc: "2.0", method: "add", params: [2, 3], id: first.id });
  assert.deepEqual(second, {
    jsonrpc: "2.0",
    method: "greet",
    params: { name: "ann" },
    id: second.id,
  });
  assert.notEqual(first.id, second.id);
  answer(socket, second.id, "hi ann");
  answer(socket, first.id, 5);
  assert.equal(await sum, 5);
  assert.equal(await named, "hi ann");
});

test("a call without params sends none", async () => {
  const { env, client, socket } = await connected();
  client.call("ping");
  assert.equal("params" in lastFrame(env, socket), false);
});

test("params that are neither an array nor an object are refused before sending", async () => {
  const { env, client, socket } = await connected();
  const before = socket.sent.length;
  assert.throws(() => client.call("add", 5), { name: "TypeError", message: /array or an object/ });
  assert.throws(() => client.notify("add", "x"), { name: "TypeError" });
  assert.equal(socket.sent.length, before);
  assert.equal(env.sockets.length, 1);
});

test("an error answer rejects with CallError carrying code, message and data", async () => {
  const { env, client, socket } = await connected();
  const call = client.call("divide", { a: 1, b: 0 });
  const { id } = lastFrame(env, socket);
  answer(socket, id, null, { error: { code: 4000, message: "division by zero", data: { a: 1 } } });
  const err = await call.catch((e) => e);
  assert.equal(err.name, "CallError");
  assert.ok(err instanceof env.G.CallError);
  assert.equal(err.code, 4000);
  assert.equal(err.message, "division by zero");
  assert.deepEqual(plain(err.data), { a: 1 });
});

test("a notification has no id and resolves once sent; emit with ack is a call", async () => {
  const { env, client, socket } = await connected();
  await client.notify("typing", { room: "a" });
  assert.deepEqual(lastFrame(env, socket), {
    jsonrpc: "2.0",
    method: "typing",
    params: { room: "a" },
  });
  await client.emit("typing", { room: "b" });
  assert.equal("id" in lastFrame(env, socket), false);
  const acked = client.emit("join", { room: "c" }, { ack: true });
  const { id, method } = lastFrame(env, socket);
  assert.equal(method, "join");
  answer(socket, id, ["ann"]);
  assert.deepEqual(plain(await acked), ["ann"]);
});

test("a batch of answers settles each call, and its pushes are delivered", async () => {
  const { env, client, socket } = await connected();
  const a = client.call("a");
  const b = client.call("b");
  const [ida, idb] = frames(env, socket).slice(-2).map((m) => m.id);
  const heard = [];
  client.on("ping", (data, from) => heard.push([data, from]));
  socket.receive(
    JSON.stringify([
      { jsonrpc: "2.0", id: idb, error: { code: -32601, message: "Method not found", data: "b" } },
      { jsonrpc: "2.0", method: "rpc.event", params: { event: "ping", data: 1, from: "c2" } },
      { jsonrpc: "2.0", id: ida, result: "A" },
    ]),
  );
  assert.equal(await a, "A");
  await assert.rejects(b, { name: "CallError", code: -32601, message: "Method not found" });
  assert.deepEqual(heard, [[1, "c2"]]);
});

test("answers to no pending call and frames that are not JSON are ignored", async () => {
  const { env, client, socket } = await connected();
  answer(socket, 999, "nobody asked");
  socket.receive("{not json");
  assert.equal(env.warnings.length, 1);
  assert.match(env.warnings[0], /not json/);
  const call = client.call("still");
  answer(socket, lastFrame(env, socket).id, "working");
  assert.equal(await call, "working");
});

test("events go to their listeners until off()", async () => {
  const { client, socket } = await connected();
  const heard = [];
  const listener = (data, from) => heard.push([data, from]);
  client.on("news", listener);
  push(socket, "rpc.event", { event: "news", data: { n: 1 }, from: null });
  push(socket, "rpc.event", { event: "other", data: 2, from: null });
  client.off("news", listener);
  push(socket, "rpc.event", { event: "news", data: { n: 3 }, from: null });
  assert.deepEqual(plain(heard), [[{ n: 1 }, null]]);
});

test("a channel's messages reach the subscriptions whose pattern matches", async () => {
  const { env, client, socket } = await connected();
  const got = [];
  client.subscribe("news.*", (data, channel) => got.push(["news.*", data, channel]));
  client.subscribe("chat.**", (data, channel) => got.push(["chat.**", data, channel]));
  const subs = frames(env, socket).filter((m) => m.method === "rpc.subscribe");
  assert.deepEqual(
    subs.map((m) => m.params),
    [{ channel: "news.*" }, { channel: "chat.**" }],
  );
  push(socket, "rpc.message", { channel: "news.sport", data: "goal" });
  push(socket, "rpc.message", { channel: "news.sport.live", data: "no" });
  push(socket, "rpc.message", { channel: "chat.a.b", data: "hi" });
  assert.deepEqual(got, [
    ["news.*", "goal", "news.sport"],
    ["chat.**", "hi", "chat.a.b"],
  ]);
});

test("unsubscribing the last subscription of a channel sends rpc.unsubscribe", async () => {
  const { env, client, socket } = await connected();
  const one = client.subscribe("room.a", () => {});
  const two = client.subscribe("room.a", () => {});
  one();
  assert.notEqual(lastFrame(env, socket).method, "rpc.unsubscribe");
  two();
  assert.deepEqual(lastFrame(env, socket).params, { channel: "room.a" });
  assert.equal(lastFrame(env, socket).method, "rpc.unsubscribe");
});

test("a stream gives its items, then its result; cancel() sends rpc.cancel", async () => {
  const { env, client, socket } = await connected();
  const items = [];
  const counting = client.stream("count", { n: 3 }, (item) => items.push(item));
  const { id } = lastFrame(env, socket);
  push(socket, "rpc.stream", { id, item: 0 });
  push(socket, "rpc.stream", { id, item: 1 });
  push(socket, "rpc.stream", { id: id + 100, item: "not ours" });
  const cancelled = counting.cancel();
  assert.deepEqual(lastFrame(env, socket).params, { id });
  assert.equal(lastFrame(env, socket).method, "rpc.cancel");
  answer(socket, lastFrame(env, socket).id, true);
  answer(socket, id, null, { error: { code: -32800, message: "Request cancelled" } });
  assert.equal(await cancelled, true);
  await assert.rejects(counting, { name: "CallError", code: -32800 });
  assert.deepEqual(items, [0, 1]);
});

test("a call with no answer within the timeout rejects with TimeoutError", async () => {
  const { env, client, socket } = await connected({ timeout: 1000 });
  let outcome = null;
  const call = client.call("slow").catch((e) => {
    outcome = e;
  });
  const { id } = lastFrame(env, socket);
  await env.clock.advance(999);
  assert.equal(outcome, null);
  await env.clock.advance(1);
  await call;
  assert.equal(outcome.name, "TimeoutError");
  assert.match(outcome.message, /slow: no answer in 1000 ms/);
  answer(socket, id, "too late"); // ignored
});

test("a stream's timeout counts from its last item", async () => {
  const { env, client, socket } = await connected({ timeout: 1000 });
  let outcome = null;
  const counting = client.stream("count", [], () => {}).catch((e) => {
    outcome = e;
  });
  const { id } = lastFrame(env, socket);
  await env.clock.advance(900);
  push(socket, "rpc.stream", { id, item: 1 });
  await env.clock.advance(900);
  assert.equal(outcome, null);
  await env.clock.advance(100);
  await counting;
  assert.equal(outcome.name, "TimeoutError");
});

test("a call made while disconnected waits for the connection, or times out unsent", async () => {
  const env = load();
  const client = new env.G.Client("ws://example.test/rpc", { timeout: 1000 });
  client.connect().catch(() => {});
  const lost = client.call("never");
  let lostError = null;
  lost.catch((e) => {
    lostError = e;
  });
  await env.clock.advance(1000);
  assert.equal(lostError.name, "TimeoutError");
  assert.match(lostError.message, /never: no connection/);
  const waiting = client.call("later", [1]);
  await accept(env, env.sockets[0]);
  const sent = frames(env, env.sockets[0]);
  assert.deepEqual(
    sent.map((m) => m.method),
    ["rpc.info", "later"],
  );
  answer(env.sockets[0], sent[1].id, "ok");
  assert.equal(await waiting, "ok");
});

test("a call in flight when the connection drops rejects with ConnectionError", async () => {
  const { client, socket } = await connected();
  const call = client.call("slow");
  socket.drop(1006);
  await assert.rejects(call, { name: "ConnectionError", message: /connection lost/ });
});

test("after close() calls reject at once and nothing reconnects", async () => {
  const { env, client, socket } = await connected();
  const pending = client.call("slow");
  client.close();
  assert.equal(socket.closedWith, 1000);
  assert.equal(client.status, "closed");
  await assert.rejects(pending, { name: "ConnectionError", message: "client closed" });
  await assert.rejects(client.call("more"), { name: "ConnectionError" });
  socket.drop(1000);
  await env.clock.advance(60000);
  assert.equal(env.sockets.length, 1);
});

test("a callback that throws does not stop the others", async () => {
  const { env, client, socket } = await connected();
  const heard = [];
  client.on("news", () => {
    throw new Error("bad listener");
  });
  client.on("news", (data) => heard.push(data));
  push(socket, "rpc.event", { event: "news", data: 1, from: null });
  await settle();
  assert.deepEqual(heard, [1]);
  assert.match(env.errors[0], /a callback failed/);
});
