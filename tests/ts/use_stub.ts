// A module using a stub generated from tests/ts/openrpc.json (api.ts, beside it with
// gobstopper.d.ts when tests/unit/test_typescript.py type-checks it), as
// docs/browser-client.md shows: the server's signatures, checked by tsc.
/// <reference path="./gobstopper.d.ts" />
import { ChatApi, type Message, type Room, type Shape } from "./api";

export async function useTheStub(): Promise<void> {
  const api = new ChatApi(new Gobstopper.Client("/rpc", { encoding: "msgpack" }));
  const sum: number = await api.add(2, 3);
  const also: number = await api.add(2);
  const counting = api.count((item: number) => console.log(item.toFixed()), 10, 2);
  const stopped: boolean = await counting.cancel();
  const items: number = await counting;
  api.ticks((m: Message) => console.log(m.room.name, m.text, m["reply-to"]));
  const left: { left: number } = await api.accountWithdraw(5, undefined, "rent");
  const rooms: Room[] = await api.rooms("mine");
  await api.move([1, 2]);
  const scores: { [key: string]: number } = await api.scores();
  const shape: Shape = { type: "Circle", r: 1 };
  const last: Message | null = await api.last(shape);
  const members: string[] = await api.emit.join({ name: "lobby", members: [] });
  await api.emit.typing({ room: "lobby" });
  await api.emit.ping();
  const poked: boolean = await api.emit.poke();
  await api.emit.note();
  console.log(sum, also, stopped, items, left, rooms, scores, last, members, poked);
  api.client.close();
}

export function refused(api: ChatApi): void {
  // @ts-expect-error: add takes numbers
  void api.add("2", 3);
  // @ts-expect-error: a is required
  void api.add();
  // @ts-expect-error: its result is a number
  const sum: Promise<string> = api.add(1, 2);
  // @ts-expect-error: a Mode is "all" or "mine"
  void api.rooms("some");
  // @ts-expect-error: a Room has members
  void api.emit.join({ name: "lobby" });
  // @ts-expect-error: the shapes are tagged
  void api.last({ type: "Circle", side: 1 });
  // @ts-expect-error: shout cannot be sent (its data is a string)
  void api.emit.shout("hi");
  // @ts-expect-error: a stream's onItem gets its item type
  api.count((item: string) => item, 1);
  // @ts-expect-error: a tuple of two numbers
  void api.move([1]);
  void sum;
}
