// The browser client used from TypeScript as docs/browser-client.md shows it, in a page
// script (the global `Gobstopper`): tests/unit/test_typescript.py type-checks it with
// `tsc --strict --noEmit` against gobstopper/static/gobstopper.d.ts.
/// <reference path="../../gobstopper/static/gobstopper.d.ts" />

async function browserClientAsDocumented(): Promise<void> {
  const client = new Gobstopper.Client("/rpc", {
    timeout: 10000,
    backoff: 500,
    maxBackoff: 8000,
    credentials: null,
    encoding: "json",
  });
  const info: Gobstopper.Info = await client.connect();
  console.log(info.id, info.encoding, info.subscriptions, client.id);

  // Calls
  const sum = await client.call<number>("add", [2, 3]);
  const left = await client.call("account.withdraw", { amount: 20 });
  console.log(sum.toFixed(1), left);
  try {
    await client.call("divide", { a: 1, b: 0 });
  } catch (err) {
    if (err instanceof Gobstopper.CallError) {
      const code: number = err.code;
      console.log(code, err.message, err.data);
    } else if (err instanceof Gobstopper.TimeoutError) {
      console.log(err.name);
    } else if (err instanceof Gobstopper.ConnectionError) {
      console.log(err.name);
    }
  }
  await client.notify("log", ["page opened"]);

  // Events
  const onNews = (data: { title: string }, from: string | null) => console.log(data.title, from);
  client.on("news", onNews).on("typing", (data) => console.log(data));
  client.off("news", onNews);
  await client.emit("typing", { room: "lobby" });
  const members = await client.emit<string[]>("join", { room: "lobby" }, { ack: true });
  console.log(members.length);

  // Channels, positions and recovery
  const unsubscribe = client.subscribe<{ text: string }>("news.*", (data, channel, meta) => {
    console.log(data.text, channel, meta.offset, meta.epoch);
  });
  const answer: Gobstopper.SubscribeAnswer = await unsubscribe.ready;
  console.log(answer.offset, unsubscribe.position);
  unsubscribe();
  const saved: Gobstopper.Position | null = client.position("feed");
  const feed = client.subscribe("feed", () => {}, {
    since: saved,
    onRecoveryFailed: ({ channel, position }) => console.log(channel, position?.offset),
  });
  feed();
  const history = await client.history<string>("feed", { limit: 20 });
  for (const p of history.publications) console.log(p.offset, p.epoch, p.data.toUpperCase());
  console.log(history.recovered, history.position);
  const reached: number = await client.publish("chat.lobby", { text: "hi" }, { echo: true });
  console.log(reached);

  // Presence
  const view = client.presence("room.lobby", {
    onJoin: (user, metas) => console.log(user, metas.map((m) => m.conn)),
    onLeave: (user) => console.log(user),
    onSync: (v) => console.log(v.uniqueUsers),
  });
  await view.ready;
  console.log([...view.users.keys()], view.connections, view.synced);
  view.close();
  const state = await client.presenceState("room.lobby");
  console.log(state.unique_users, Object.keys(state.users));

  // Credentials
  const secure = new Gobstopper.Client("wss://example.com/rpc", {
    credentials: async () => "token",
  });
  secure.onerror = (error, stage) => console.warn(stage, error);
  const refreshed = await secure.refresh();
  console.log(refreshed.user, refreshed.expires_at);

  // Why the server closed, reconnection, status
  client.onopen = (again) => void client.call("join", { room: again.id });
  client.onclose = ({ code, reason, attempt, delay, closeReason }) => {
    console.log(code, reason, attempt, (delay / 1000).toFixed(1), closeReason?.code);
  };
  client.onstatus = (status: Gobstopper.Status) => console.log(status);
  console.log(client.connections, client.closeReason?.reason);

  // Streams
  const counting = client.stream<number>("count", { n: 100 }, (item) => console.log(item + 1));
  const stopped: Promise<boolean> = counting.cancel();
  try {
    const items: number = await counting;
    console.log(items, await stopped);
  } catch (err) {
    if (err instanceof Gobstopper.CallError && err.code === Gobstopper.RPC.REQUEST_CANCELLED) {
      console.log("cancelled");
    }
  }

  // MessagePack
  const packed = new Gobstopper.Client("/rpc", { encoding: "msgpack" });
  const bytes: Uint8Array = Gobstopper.msgpack.encode({ a: new Uint8Array([1]) });
  console.log(packed.encoding, Gobstopper.msgpack.decode(bytes), Gobstopper.matches("a.*", "a.b"));

  client.close();
}

void browserClientAsDocumented;

// What the declarations refuse (tsc fails on an @ts-expect-error with nothing to refuse).
function refused(client: Gobstopper.Client): void {
  // @ts-expect-error: an encoding gobstopper.js does not speak
  new Gobstopper.Client("/rpc", { encoding: "cbor" });
  // @ts-expect-error: params are an array or an object
  void client.call("add", 5);
  // @ts-expect-error: a stream's onItem is required
  void client.stream("count", { n: 1 });
  // @ts-expect-error: a position has an offset and an epoch
  client.subscribe("feed", () => {}, { since: { offset: 1 } });
  // @ts-expect-error: the error classes carry a numeric code
  const code: string = new Gobstopper.CallError(1, "m").code;
  void code;
}

void refused;
