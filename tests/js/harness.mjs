// What the unit tests of gobstopper.js run it in: a fresh `vm` context per test, as a
// page would load the plain script (it then defines the global `Gobstopper`), with a fake
// WebSocket the test drives as the server, timers on a clock the test advances, and
// Math.random the test sets. Nothing here touches the network or waits on real time.

import { readFileSync } from "node:fs";
import vm from "node:vm";

const SOURCE_URL = new URL("../../gobstopper/static/gobstopper.js", import.meta.url);
const SOURCE = readFileSync(SOURCE_URL, "utf8");

/** Let every promise callback that can run, run (a macrotask comes after them all). */
export const settle = () => new Promise((resolve) => setImmediate(resolve));

/** Timers on a clock that moves only when the test says so. */
export class FakeClock {
  constructor() {
    this.now = 0;
    this.timers = new Map();
    this.nextId = 1;
    this.setTimeout = (fn, ms = 0, ...args) => {
      const id = this.nextId++;
      this.timers.set(id, { id, at: this.now + Math.max(0, Number(ms) || 0), fn, args });
      return id;
    };
    this.clearTimeout = (id) => {
      this.timers.delete(id);
    };
  }

  /** Move the clock `ms` on, running each timer that falls due, in order, and what its
   * promises do after it. */
  async advance(ms) {
    const end = this.now + ms;
    for (;;) {
      let due = null;
      for (const timer of this.timers.values()) {
        if (timer.at <= end && (!due || timer.at < due.at)) due = timer;
      }
      if (!due) break;
      this.timers.delete(due.id);
      this.now = due.at;
      due.fn(...due.args);
      await settle();
    }
    this.now = end;
    await settle();
  }
}

/** A WebSocket whose other end is the test: `open()`, `receive(data)`, `drop(code)`. */
function socketClass(sockets) {
  return class FakeSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.binaryType = "blob";
      this.sent = [];
      this.closedWith = undefined;
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      sockets.push(this);
    }

    send(data) {
      if (this.readyState !== 1) throw new Error(`send on a socket in state ${this.readyState}`);
      this.sent.push(data);
    }

    close(code) {
      if (this.readyState >= 2) return;
      this.readyState = 2; // closing: the close event is the test's to deliver (drop)
      this.closedWith = code ?? null;
    }

    open() {
      this.readyState = 1;
      this.onopen?.({});
    }

    receive(data) {
      this.onmessage?.({ data });
    }

    drop(code = 1006, reason = "") {
      this.readyState = 3;
      this.onclose?.({ code, reason });
    }
  };
}

/** A fresh gobstopper.js: {G (its global), clock, sockets (every socket it opened),
 * warnings (console.warn's), errors (console.error's), random (what Math.random gives:
 * a number, or a function)}. */
export function load() {
  const env = { clock: new FakeClock(), sockets: [], warnings: [], errors: [], random: 0.5 };
  const context = vm.createContext({
    WebSocket: socketClass(env.sockets),
    setTimeout: env.clock.setTimeout,
    clearTimeout: env.clock.clearTimeout,
    URL,
    TextEncoder,
    TextDecoder,
    console: {
      warn: (...args) => env.warnings.push(args.map(String).join(" ")),
      error: (...args) => env.errors.push(args.map(String).join(" ")),
      log: console.log,
    },
    __random: () => (typeof env.random === "function" ? env.random() : env.random),
  });
  vm.runInContext("Math.random = () => __random();", context);
  vm.runInContext(SOURCE, context, { filename: SOURCE_URL.pathname });
  env.G = context.Gobstopper;
  return env;
}

/** `value` made in this realm (the script's arrays and objects have its own prototypes,
 * which deepStrictEqual would tell apart). */
export const plain = (value) => structuredClone(value);

/** The messages a socket was sent, decoded (JSON text, or msgpack bytes). */
export function frames(env, socket) {
  return socket.sent.map((data) =>
    typeof data === "string" ? JSON.parse(data) : plain(env.G.msgpack.decode(data)),
  );
}

/** The last message a socket was sent. */
export function lastFrame(env, socket) {
  const all = frames(env, socket);
  return all[all.length - 1];
}

/** Answer request `id` on `socket` with `result` (or `{error}`), as JSON. */
export function answer(socket, id, result, { error = null } = {}) {
  const message = error ? { jsonrpc: "2.0", id, error } : { jsonrpc: "2.0", id, result };
  socket.receive(JSON.stringify(message));
}

/** Push the notification `method` on `socket`, as JSON. */
export function push(socket, method, params) {
  socket.receive(JSON.stringify({ jsonrpc: "2.0", method, params }));
}

/** Open `socket` and answer the client's rpc.info (its first request there) as
 * connection `id`. */
export async function accept(env, socket, id = "c1") {
  socket.open();
  await settle();
  const info = frames(env, socket).find((m) => m.method === "rpc.info");
  if (!info) throw new Error("the client sent no rpc.info on its new connection");
  answer(socket, info.id, { id, encoding: "json", subscriptions: [] });
  await settle();
}

/** A client of a fresh gobstopper.js, connected: {env, client, socket}. */
export async function connected(options = {}, url = "ws://example.test/rpc") {
  const env = load();
  const client = new env.G.Client(url, options);
  const ready = client.connect();
  const socket = env.sockets[0];
  await accept(env, socket);
  await ready;
  return { env, client, socket };
}
