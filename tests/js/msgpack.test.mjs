// gobstopper.js's MessagePack: agreement with msgspec (the server's encoder) on fixed
// vectors, round trips, the errors it gives, and a client speaking it.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { frames, lastFrame, load, plain, settle } from "./harness.mjs";

const VECTORS = JSON.parse(readFileSync(new URL("./msgpack-vectors.json", import.meta.url)));
const { msgpack } = load().G;

const hex = (bytes) => Buffer.from(bytes).toString("hex");
const bytes = (text) => new Uint8Array(Buffer.from(text.replace(/ /g, ""), "hex"));

/** A vector's value in JavaScript: {"$bin": hex} is bytes. */
function fromJson(value) {
  if (Array.isArray(value)) return value.map(fromJson);
  if (value && typeof value === "object") {
    if (Object.keys(value).length === 1 && "$bin" in value) return bytes(value.$bin);
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fromJson(v)]));
  }
  return value;
}

test("the vectors cover every form msgspec writes", () => {
  assert.ok(VECTORS.length >= 30);
});

for (const vector of VECTORS) {
  test(`msgspec's ${vector.name} decodes to its value`, () => {
    assert.deepStrictEqual(plain(msgpack.decode(bytes(vector.hex))), fromJson(vector.value));
  });
  if (vector.exact) {
    test(`${vector.name} encodes to msgspec's bytes`, () => {
      assert.equal(hex(msgpack.encode(fromJson(vector.value))), vector.hex);
    });
  }
}

test("values round-trip, in every length form", () => {
  const values = [
    "s".repeat(70000), // str32
    new Uint8Array(70000).fill(7), // bin32
    Array.from({ length: 70000 }, (_, i) => i % 3), // array32
    Object.fromEntries(Array.from({ length: 70000 }, (_, i) => [`k${i}`, i])), // map32
    [0, -1, 2 ** 31, -(2 ** 31) - 1, 2 ** 53 - 1, -(2 ** 53 - 1), 0.1, -1e-300, 1e300],
    { nested: { deeper: [{ bin: new Uint8Array([0, 255]) }, null, true, "\u{1F600}"] } },
  ];
  for (const value of values) {
    assert.deepStrictEqual(plain(msgpack.decode(msgpack.encode(value))), value);
  }
});

test("what JSON leaves out is left out; toJSON is used", () => {
  const value = {
    a: undefined,
    f() {},
    kept: [undefined, () => 1],
    when: new Date(Date.UTC(2026, 0, 2)),
  };
  assert.deepStrictEqual(plain(msgpack.decode(msgpack.encode(value))), {
    kept: [null, null],
    when: "2026-01-02T00:00:00.000Z",
  });
});

test("BigInts of 64 bits are integers; beyond the safe range they decode as numbers", () => {
  assert.equal(hex(msgpack.encode(2n ** 64n - 1n)), "cfffffffffffffffff");
  assert.equal(hex(msgpack.encode(-(2n ** 63n))), "d38000000000000000");
  assert.equal(hex(msgpack.encode(5n)), "05");
  assert.equal(msgpack.decode(bytes("cf ffffffffffffffff")), 2 ** 64);
  assert.throws(() => msgpack.encode(2n ** 64n), { name: "TypeError", message: /64 bits/ });
  assert.throws(() => msgpack.encode(-(2n ** 63n) - 1n), { name: "TypeError" });
});

test("float32 is read", () => {
  assert.equal(msgpack.decode(bytes("ca 3fc00000")), 1.5);
});

test("a __proto__ key is data, not a prototype", () => {
  const decoded = msgpack.decode(bytes("81 a9 5f5f70726f746f5f5f 81 a1 78 01"));
  assert.equal(Object.getPrototypeOf(decoded), Object.getPrototypeOf(msgpack.decode(bytes("80"))));
  assert.deepEqual(Object.keys(decoded), ["__proto__"]);
  assert.equal(decoded.x, undefined);
});

test("an integer map key becomes a string key, as in JSON", () => {
  assert.deepStrictEqual(plain(msgpack.decode(bytes("81 01 a3 6f6e65"))), { 1: "one" });
});

test("bad bytes are refused with an error naming what and where", () => {
  const cases = [
    ["d4 05 00", /ext type 5 is not supported \(at byte 0\)/],
    ["92 01 c7 01 02 00", /ext type 2 is not supported \(at byte 2\)/],
    ["c1", /0xc1 is not a msgpack type/],
    ["92 01", /truncated/],
    ["a3 61", /truncated/],
    ["01 02", /1 bytes after the value/],
    ["a2 c3 28", /not UTF-8/],
    ["81 c0 01", /map key must be a string or an integer, not object/],
    ["", /truncated/],
  ];
  for (const [input, message] of cases) {
    assert.throws(() => msgpack.decode(bytes(input)), { name: "SyntaxError", message }, input);
  }
  assert.throws(() => msgpack.decode("c0"), { name: "TypeError", message: /needs bytes/ });
});

test("values msgpack cannot carry are refused with TypeError", () => {
  const cyclic = {};
  cyclic.self = cyclic;
  assert.throws(() => msgpack.encode(cyclic), { name: "TypeError", message: /cyclic/ });
  assert.throws(() => msgpack.encode(Symbol("s")), { name: "TypeError", message: /symbol/ });
});

test("an ArrayBuffer and a typed array view are bytes", () => {
  assert.equal(hex(msgpack.encode(new Uint8Array([1, 2]).buffer)), "c4020102");
  assert.equal(hex(msgpack.encode(new Uint16Array([0x0201]))), "c4020102");
  assert.equal(hex(msgpack.encode(new Uint8Array([9, 1, 2, 9]).subarray(1, 3))), "c4020102");
  assert.deepStrictEqual(plain(msgpack.decode(bytes("c4020102").buffer)), new Uint8Array([1, 2]));
});

test("a msgpack client asks for it, sends binary frames and reads binary answers", async () => {
  const env = load();
  const client = new env.G.Client("ws://example.test/rpc?room=a", { encoding: "msgpack" });
  assert.equal(client.encoding, "msgpack");
  const ready = client.connect();
  const socket = env.sockets[0];
  assert.equal(socket.url, "ws://example.test/rpc?room=a&encoding=msgpack");
  assert.equal(socket.binaryType, "arraybuffer");
  socket.open();
  const info = lastFrame(env, socket);
  assert.ok(ArrayBuffer.isView(socket.sent[0]));
  assert.deepEqual(info, { jsonrpc: "2.0", method: "rpc.info", id: info.id });
  const reply = (message) => socket.receive(msgpack.encode(message).buffer);
  reply({ jsonrpc: "2.0", id: info.id, result: { id: "c1", encoding: "msgpack" } });
  assert.equal((await ready).encoding, "msgpack");

  const call = client.call("echo", [new Uint8Array([1, 2, 3])]);
  const sent = lastFrame(env, socket);
  assert.deepStrictEqual(sent.params, [new Uint8Array([1, 2, 3])]);
  reply({ jsonrpc: "2.0", id: sent.id, result: { got: new Uint8Array([3, 2, 1]), n: 2 ** 40 } });
  assert.deepStrictEqual(plain(await call), { got: new Uint8Array([3, 2, 1]), n: 2 ** 40 });

  // A text frame, or bytes that are not msgpack: ignored, with a warning.
  socket.receive('{"jsonrpc": "2.0", "id": 99, "result": 1}');
  socket.receive(new Uint8Array([0xc1]).buffer);
  await settle();
  assert.equal(env.warnings.length, 2);
  assert.match(env.warnings[0], /not msgpack.*text frame/);
  assert.match(env.warnings[1], /not msgpack.*0xc1/);
  assert.equal(frames(env, socket).length, 2);
});

test("a JSON client ignores binary frames; an unknown encoding is refused", () => {
  const env = load();
  assert.throws(() => new env.G.Client("ws://example.test/rpc", { encoding: "cbor" }), {
    name: "RangeError",
    message: /unknown encoding "cbor"/,
  });
  const client = new env.G.Client("ws://example.test/rpc");
  assert.equal(client.url, "ws://example.test/rpc");
  client.connect().catch(() => {});
  env.sockets[0].open();
  env.sockets[0].receive(new Uint8Array([0xc0]).buffer);
  assert.match(env.warnings[0], /not json.*binary frame/);
  client.close();
});

test("a timestamp is read as the text the server's JSON sends", () => {
  // 2**34 seconds needs the 96-bit form; 1 nanosecond keeps nine digits.
  assert.equal(msgpack.decode(bytes("d7ff 00000004 00000000")), "1970-01-01T00:00:00.000000001Z");
  assert.equal(msgpack.decode(bytes("c70cff 00000000 ffffffffffffffff")), "1969-12-31T23:59:59Z");
  const cases = [
    ["d5ff 0000", /a timestamp of 2 bytes \(4, 8 or 12\) \(at byte 0\)/],
    ["d7ff ffffffff 00000000", /a timestamp of 1073741823 nanoseconds/],
    ["c70cff 3b9aca00 0000000000000000", /1000000000 nanoseconds/],
    ["c70cff 00000000 fffffff1886e08ff", /outside the years 1 to 9999/],
    ["c70cff 00000000 0000003afff44180", /outside the years 1 to 9999/],
  ];
  for (const [input, message] of cases) {
    assert.throws(() => msgpack.decode(bytes(input)), { name: "SyntaxError", message }, input);
  }
});

test("integers past 2**53 are sent as integers, up to 64 bits; others as float64", () => {
  assert.equal(hex(msgpack.encode(2 ** 53)), "cf0020000000000000");
  assert.equal(hex(msgpack.encode(2 ** 63)), "cf8000000000000000");
  assert.equal(hex(msgpack.encode(-(2 ** 60))), "d3f000000000000000");
  assert.equal(hex(msgpack.encode(2 ** 64)), "cb43f0000000000000");
  assert.equal(hex(msgpack.encode(-(2 ** 64))), "cbc3f0000000000000");
  assert.equal(hex(msgpack.encode(2 ** 53 + 0.5 * 0)), "cf0020000000000000");
  assert.equal(msgpack.decode(msgpack.encode(2 ** 60)), 2 ** 60);
});

test("as JSON.stringify: NaN is nil, boxed values unwrapped, a toJSON undefined left out", () => {
  const absent = { toJSON: () => undefined };
  const value = {
    nan: NaN,
    inf: [Infinity, -Infinity],
    s: Object("ab"),
    n: Object(5),
    b: Object(false),
    gone: absent,
    list: [absent, 1],
    key: { toJSON: (key) => `key ${key}` },
  };
  const asJson = JSON.parse(JSON.stringify(value));
  assert.deepStrictEqual(plain(msgpack.decode(msgpack.encode(value))), asJson);
  assert.deepStrictEqual(plain(msgpack.decode(msgpack.encode(value))), {
    nan: null,
    inf: [null, null],
    s: "ab",
    n: 5,
    b: false,
    list: [null, 1],
    key: "key key",
  });
  assert.equal(hex(msgpack.encode(Object("ab"))), "a26162");
  assert.equal(hex(msgpack.encode([, 1])), "92c001"); // a hole is null, as in JSON
});

test("a Node Buffer is bytes, not what its toJSON says", () => {
  assert.equal(hex(msgpack.encode(Buffer.from([1, 2]))), "c4020102");
  assert.equal(hex(msgpack.encode({ b: Buffer.from([1]) })), "81a162c40101");
});

test("a string that starts with U+FEFF keeps it", () => {
  assert.equal(msgpack.decode(bytes("a4 efbbbf 61")), "\uFEFFa");
  assert.equal(msgpack.decode(msgpack.encode("\uFEFF")), "\uFEFF");
});

/** A msgpack client, connected: {env, client, socket, reply(message)}. */
async function msgpackClient(options = {}) {
  const env = load();
  const client = new env.G.Client("ws://example.test/rpc", { encoding: "msgpack", ...options });
  const ready = client.connect();
  const socket = env.sockets[0];
  const reply = (message) => socket.receive(env.G.msgpack.encode(message).buffer);
  socket.open();
  const info = lastFrame(env, socket);
  reply({ jsonrpc: "2.0", id: info.id, result: { id: "c1", encoding: "msgpack" } });
  await ready;
  return { env, client, socket, reply };
}

// msgspec's bytes of {"jsonrpc": "2.0", "id": id, "result": {"at": <ext>}}.
const answerWith = (id, ext) =>
  bytes(`83 a7 6a736f6e727063 a3 322e30 a2 6964 ${id} a6 726573756c74 81 a2 6174 ${ext}`);

test("a datetime in an answer or a push reaches the page as the JSON client's text", async () => {
  const { env, client, socket } = await msgpackClient();
  const call = client.call("when", []);
  const id = lastFrame(env, socket).id;
  socket.receive(answerWith(id.toString(16).padStart(2, "0"), "d7ff 1d6f2800 695735a5").buffer);
  assert.deepStrictEqual(plain(await call), { at: "2026-01-02T03:04:05.123456Z" });

  const seen = [];
  client.on("tick", (data) => seen.push(data));
  // {"jsonrpc": "2.0", "method": "rpc.event", "params": {"event": "tick", "data": <ts>}}
  const params = { event: "tick", data: 0 };
  const push = env.G.msgpack.encode({ jsonrpc: "2.0", method: "rpc.event", params });
  const at = Buffer.from(push).lastIndexOf(0x00); // the data: 0
  const framed = Buffer.concat([Buffer.from(push).subarray(0, at), bytes("d6ff 695735a5")]);
  socket.receive(new Uint8Array(framed).buffer);
  await settle();
  assert.deepStrictEqual(seen, ["2026-01-02T03:04:05Z"]);
  assert.deepStrictEqual(env.warnings, []);
});

test("an answer holding an ext type it cannot read fails its call at once", async () => {
  const { env, client, socket } = await msgpackClient();
  const call = client.call("odd", []);
  const other = client.call("fine", []);
  const id = lastFrame(env, socket).id - 1;
  socket.receive(answerWith(id.toString(16).padStart(2, "0"), "d4 05 00").buffer);
  await assert.rejects(call, { name: "SyntaxError", message: /ext type 5 is not supported/ });
  assert.equal(env.warnings.length, 1);
  assert.match(env.warnings[0], /not msgpack.*ext type 5/);
  // The other call still waits for its answer.
  let settled = false;
  other.finally(() => (settled = true)).catch(() => {});
  await settle();
  assert.equal(settled, false);
  client.close();
});

test("a value that cannot be encoded, called offline, throws and queues nothing", async () => {
  const env = load();
  const client = new env.G.Client("ws://example.test/rpc", { encoding: "msgpack" });
  const ready = client.connect();
  const cyclic = {};
  cyclic.self = cyclic;
  assert.throws(() => client.call("x", [2n ** 70n]), { name: "TypeError", message: /64 bits/ });
  assert.throws(() => client.notify("x", [cyclic]), { name: "TypeError", message: /cyclic/ });
  const good = client.call("y", [1]);
  const socket = env.sockets[0];
  socket.open(); // must not throw
  const sent = frames(env, socket);
  assert.deepStrictEqual(sent.map((m) => m.method), ["rpc.info", "y"]);
  const answer = { jsonrpc: "2.0", id: sent[0].id, result: { id: "c1" } };
  socket.receive(env.G.msgpack.encode(answer).buffer);
  assert.equal((await ready).id, "c1");
  socket.receive(env.G.msgpack.encode({ jsonrpc: "2.0", id: sent[1].id, result: 2 }).buffer);
  assert.equal(await good, 2);
  assert.equal(client._pending.size, 0);
});

test("a value that cannot be encoded, called while connected, leaves no timer behind", async () => {
  const { env, client, socket } = await msgpackClient();
  const unhandled = [];
  const onUnhandled = (err) => unhandled.push(err);
  process.on("unhandledRejection", onUnhandled);
  try {
    assert.throws(() => client.call("x", [2n ** 70n]), { name: "TypeError" });
    assert.throws(() => client.stream("x", [2n ** 70n], () => {}), { name: "TypeError" });
    assert.equal(client._pending.size, 0);
    assert.equal(env.clock.timers.size, 0);
    await env.clock.advance(60000);
    await new Promise((resolve) => setTimeout(resolve, 0));
    assert.deepStrictEqual(unhandled, []);
    assert.equal(socket.sent.length, 1); // rpc.info only
  } finally {
    process.off("unhandledRejection", onUnhandled);
  }
});

test("a stream item holding an ext type it cannot read fails the stream at once", async () => {
  const { env, client, socket } = await msgpackClient();
  const items = [];
  const stream = client.stream("count", { n: 2 }, (item) => items.push(item));
  const params = { id: lastFrame(env, socket).id, item: 0 };
  const push = env.G.msgpack.encode({ jsonrpc: "2.0", method: "rpc.stream", params });
  const framed = Buffer.concat([Buffer.from(push).subarray(0, -1), bytes("d4 05 00")]);
  socket.receive(new Uint8Array(framed).buffer);
  await assert.rejects(stream, { name: "SyntaxError", message: /ext type 5/ });
  assert.deepStrictEqual(items, []);
});
