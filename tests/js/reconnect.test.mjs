// gobstopper.js coming back by itself: backoff delays (growing, capped, jittered, reset
// after a connection that answers) measured on a fake clock, and subscriptions renewed
// on each new connection.

import assert from "node:assert/strict";
import { test } from "node:test";

import { accept, answer, connected, frames, load, push } from "./harness.mjs";

/** Drop the newest socket (or fail to open it) and return the delay the client chose,
 * after checking that it dials again exactly then, not before. */
async function dropAndMeasure(env, client) {
  const reports = [];
  client.onclose = (report) => reports.push(report);
  const count = env.sockets.length;
  env.sockets[count - 1].drop(1006);
  assert.equal(reports.length, 1);
  const { delay } = reports[0];
  await env.clock.advance(delay - 1);
  assert.equal(env.sockets.length, count, `dialled before ${delay} ms`);
  await env.clock.advance(1);
  assert.equal(env.sockets.length, count + 1, `no new attempt after ${delay} ms`);
  return delay;
}

test("failed attempts wait backoff, doubling, up to maxBackoff", async () => {
  const { env, client } = await connected({ backoff: 500, maxBackoff: 8000 });
  env.random = 0.999999; // the top of the jitter: the delay is nearly the ceiling
  const delays = [];
  for (let i = 0; i < 7; i += 1) delays.push(Math.round(await dropAndMeasure(env, client)));
  assert.deepEqual(delays, [500, 1000, 2000, 4000, 8000, 8000, 8000]);
  assert.equal(client.status, "reconnecting");
});

test("each delay is jittered between half and all of its ceiling", async () => {
  const { env, client } = await connected({ backoff: 400, maxBackoff: 10000 });
  const draws = [0, 0.5, 0.25];
  env.random = () => draws.shift();
  const delays = [];
  for (let i = 0; i < 3; i += 1) delays.push(await dropAndMeasure(env, client));
  // ceilings 400, 800, 1600; factors 0.5 + r / 2
  assert.deepEqual(delays, [200, 600, 1000]);
});

test("the backoff starts over after a connection that answers, not before", async () => {
  const { env, client } = await connected({ backoff: 500, maxBackoff: 8000 });
  env.random = 0.999999;
  await dropAndMeasure(env, client); // ~500
  await dropAndMeasure(env, client); // ~1000
  // Opened, but dropped before answering rpc.info: it does not count as connected.
  env.sockets[env.sockets.length - 1].open();
  assert.equal(Math.round(await dropAndMeasure(env, client)), 2000);
  await accept(env, env.sockets[env.sockets.length - 1], "c2");
  assert.equal(client.status, "open");
  assert.equal(client.id, "c2");
  assert.equal(Math.round(await dropAndMeasure(env, client)), 500);
});

test("onclose reports the attempt, and the server's own close code", async () => {
  const { env, client, socket } = await connected();
  const reports = [];
  client.onclose = (report) => reports.push(report);
  socket.drop(4001, "kicked");
  assert.equal(reports.length, 1);
  assert.equal(reports[0].attempt, 1);
  assert.equal(reports[0].code, 4001);
  assert.deepEqual({ ...client.closeReason }, { code: 4001, reason: "kicked" });
  assert.ok(env.warnings.length === 0);
});

test("subscriptions are sent again first on the new connection, from their positions", async () => {
  const { env, client, socket } = await connected();
  const got = [];
  client.subscribe("news.*", (data, channel) => got.push([data, channel]));
  const feed = client.subscribe("feed", (data, channel, at) => {
    got.push([data, channel, at.offset]);
  });
  const gone = client.subscribe("gone", () => {});
  const subs = frames(env, socket).filter((m) => m.method === "rpc.subscribe");
  answer(socket, subs[0].id, {});
  answer(socket, subs[1].id, { offset: 4, epoch: "e1" });
  answer(socket, subs[2].id, {});
  push(socket, "rpc.message", { channel: "feed", data: "five", offset: 5, epoch: "e1" });
  gone();
  await Promise.all([feed.ready]);
  assert.deepEqual({ ...feed.position }, { offset: 5, epoch: "e1" });

  socket.drop(1006);
  const queued = client.call("after");
  await env.clock.advance(client.maxBackoff);
  const fresh = env.sockets[1];
  fresh.open();
  const sent = frames(env, fresh);
  const renewals = sent.filter((m) => m.method === "rpc.subscribe");
  assert.deepEqual(
    renewals.map((m) => m.params).sort((a, b) => a.channel.localeCompare(b.channel)),
    [{ channel: "feed", since: { offset: 5, epoch: "e1" } }, { channel: "news.*" }],
  );
  // The renewals and rpc.info come before the call that waited for the connection.
  assert.deepEqual(
    sent.map((m) => m.method),
    ["rpc.subscribe", "rpc.subscribe", "rpc.info", "after"],
  );
  // The server replays what was missed before its answer (a repeat is skipped).
  push(fresh, "rpc.message", { channel: "feed", data: "five", offset: 5, epoch: "e1" });
  push(fresh, "rpc.message", { channel: "feed", data: "six", offset: 6, epoch: "e1" });
  for (const m of renewals) {
    answer(fresh, m.id, m.params.since ? { offset: 6, epoch: "e1", recovered: true } : {});
  }
  answer(fresh, sent[2].id, { id: "c2", encoding: "json", subscriptions: [] });
  answer(fresh, sent[3].id, "done");
  assert.equal(await queued, "done");
  push(fresh, "rpc.message", { channel: "feed", data: "seven", offset: 7, epoch: "e1" });
  push(fresh, "rpc.message", { channel: "news.a", data: "back" });
  assert.deepEqual(got, [
    ["five", "feed", 5],
    ["six", "feed", 6],
    ["seven", "feed", 7],
    ["back", "news.a"],
  ]);
});

test("a channel that cannot be recovered says so, and goes on from the new position", async () => {
  const { env, client, socket } = await connected();
  const broken = [];
  const feed = client.subscribe("feed", () => {}, {
    onRecoveryFailed: (what) => broken.push({ ...what, position: { ...what.position } }),
  });
  answer(socket, frames(env, socket).at(-1).id, { offset: 3, epoch: "e1" });
  await feed.ready;
  socket.drop(1006);
  await env.clock.advance(client.maxBackoff);
  const fresh = env.sockets[1];
  fresh.open();
  const renewal = frames(env, fresh).find((m) => m.method === "rpc.subscribe");
  assert.deepEqual(renewal.params.since, { offset: 3, epoch: "e1" });
  answer(fresh, renewal.id, { offset: 10, epoch: "e2", recovered: false });
  assert.deepEqual(broken, [{ channel: "feed", position: { offset: 10, epoch: "e2" } }]);
  assert.deepEqual({ ...feed.position }, { offset: 10, epoch: "e2" });
});

test("connect() rejects after its timeout while the client keeps trying", async () => {
  const env = load();
  const client = new env.G.Client("ws://example.test/rpc", { timeout: 1000, backoff: 100 });
  const first = assert.rejects(client.connect(), {
    name: "TimeoutError",
    message: /no connection to ws:\/\/example/,
  });
  env.sockets[0].drop(1006);
  await env.clock.advance(1000);
  await first;
  assert.ok(env.sockets.length > 1, "it stopped trying");
  const second = client.connect();
  await accept(env, env.sockets[env.sockets.length - 1]);
  assert.equal((await second).id, "c1");
});

test("a credential is asked for before every attempt and goes as ?token=", async () => {
  const env = load();
  let n = 0;
  const client = new env.G.Client("ws://example.test/rpc?room=a", {
    credentials: () => `t${(n += 1)}`,
  });
  client.connect();
  await env.clock.advance(0);
  env.sockets[0].drop(1006);
  await env.clock.advance(client.maxBackoff);
  assert.deepEqual(
    env.sockets.map((s) => s.url),
    ["ws://example.test/rpc?room=a&token=t1", "ws://example.test/rpc?room=a&token=t2"],
  );
});
