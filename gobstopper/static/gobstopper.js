/* gobstopper.js: the browser client of gobstopper's message protocol (docs/protocol.md):
 * JSON-RPC 2.0 over a WebSocket, with named events, channels, streams, and a connection
 * that comes back by itself. Plain JavaScript, no dependencies, no build step:
 *
 *   <script src="/gobstopper.js"></script>
 *   const client = new Gobstopper.Client("/rpc");
 *   await client.connect();
 *   await client.call("add", [2, 3]);          // 5
 *
 * Also: credentials that expire and are refreshed (`credentials`), live presence views
 * of channels (`client.presence(channel)`), and MessagePack in binary frames instead of
 * JSON (`encoding: "msgpack"`). Times (timeout, backoff, maxBackoff) are in milliseconds.
 */
(function (root) {
  "use strict";

  /** The protocol's names and error codes (gobstopper/messages/protocol.py; a test
   * checks that they match). */
  const RPC = Object.freeze({
    VERSION: "2.0",
    // Methods the client calls.
    SUBSCRIBE: "rpc.subscribe",
    UNSUBSCRIBE: "rpc.unsubscribe",
    PUBLISH: "rpc.publish",
    CANCEL: "rpc.cancel",
    INFO: "rpc.info",
    HISTORY: "rpc.history",
    PRESENCE: "rpc.presence",
    REFRESH: "rpc.refresh",
    // Notifications the server pushes.
    MESSAGE: "rpc.message",
    EVENT: "rpc.event",
    STREAM: "rpc.stream",
    PRESENCE_DIFF: "rpc.presence_diff",
    REFRESH_DUE: "rpc.refresh_due",
    CLOSING_EVENT: "rpc.close",
    // Error codes: JSON-RPC's, then gobstopper's.
    PARSE_ERROR: -32700,
    INVALID_REQUEST: -32600,
    METHOD_NOT_FOUND: -32601,
    INVALID_PARAMS: -32602,
    INTERNAL_ERROR: -32603,
    ACCESS_DENIED: -32001,
    RATE_LIMITED: -32002,
    TOO_MANY_SUBSCRIPTIONS: -32003,
    TOO_MANY_TASKS: -32004,
    UNAUTHORIZED: -32005,
    REQUEST_CANCELLED: -32800,
  });

  /** The server answered a call with a JSON-RPC error: `code`, `message`, `data`. */
  class CallError extends Error {
    constructor(code, message, data) {
      super(message);
      this.name = "CallError";
      this.code = code;
      this.data = data;
    }
  }

  /** The connection dropped (or the client was closed) before the answer came. */
  class ConnectionError extends Error {
    constructor(message) {
      super(message);
      this.name = "ConnectionError";
    }
  }

  /** No answer within the client's `timeout`. */
  class TimeoutError extends Error {
    constructor(message) {
      super(message);
      this.name = "TimeoutError";
    }
  }

  /** Whether `channel` falls under `pattern`: segments split by ".", "*" is exactly one
   * segment, a final "**" one or more (the server's rule). */
  function matches(pattern, channel) {
    const want = pattern.split(".");
    const have = channel.split(".");
    if (want[want.length - 1] === "**") {
      want.pop();
      if (have.length <= want.length) return false;
    } else if (have.length !== want.length) {
      return false;
    }
    return want.every((w, i) => w === "*" || w === have[i]);
  }

  function checkParams(params) {
    if (params != null && typeof params !== "object") {
      throw new TypeError("params must be an array or an object (JSON-RPC)");
    }
  }

  /** Whether `pattern` is a pattern (wildcards), not a channel name. */
  function isPattern(pattern) {
    return pattern.includes("*");
  }

  /** The {offset, epoch} a push, a publication or an answer carries, or null (a channel
   * without history). */
  function readPosition(obj) {
    if (!obj || !Number.isInteger(obj.offset) || typeof obj.epoch !== "string") return null;
    return { offset: obj.offset, epoch: obj.epoch };
  }

  /** Where a channel's subscriptions resume from: they share their messages, so they
   * stand at one position; should they not, the earliest (the others skip what they had). */
  function resumePosition(subs) {
    let found = null;
    for (const sub of subs) {
      if (sub.position && (!found || sub.position.offset < found.offset)) found = sub.position;
    }
    return found;
  }

  /** The subscriptions a renewal subscribes again: not those whose own rpc.subscribe is
   * still waiting to be sent or answered (it goes to the new connection). */
  function renewable(subs) {
    return [...subs].filter((sub) => !sub.asking || sub.asking.done);
  }

  // A callback that throws must not break the client's dispatching.
  function safely(fn, ...args) {
    try {
      fn(...args);
    } catch (err) {
      console.error("gobstopper: a callback failed", err);
    }
  }

  // A promise nobody awaits must not report an unhandled rejection; one that is
  // awaited still rejects.
  function quiet(promise) {
    promise.catch(() => {});
    return promise;
  }

  // The URL of one connection attempt: `token` as its query parameter (replacing one
  // already there); null or undefined: the URL as given.
  function withToken(url, token) {
    if (token == null) return url;
    if (typeof token !== "string") {
      throw new TypeError(`credentials() must give a string or null, not ${typeof token}`);
    }
    const full = new URL(url);
    full.searchParams.set("token", token);
    return full.href;
  }

  // A user's metas as the view compares them (apply by assignment: same list, no news).
  function sameMetas(a, b) {
    return JSON.stringify(a) === JSON.stringify(b);
  }

  /** MessagePack, the subset JSON values need (the server's binary encoding, chosen with
   * the `encoding: "msgpack"` option): nil, booleans, integers (64-bit ones as numbers
   * within Number.MAX_SAFE_INTEGER, or BigInt), float64, strings, bin (Uint8Array),
   * arrays and maps with string keys. Decoding also reads float32 and the timestamp
   * extension (type -1, what msgspec writes for a datetime with a time zone), as the
   * RFC 3339 text in UTC the server's JSON sends ("2026-01-02T03:04:05.123456Z"), so that
   * both encodings give the page the same value; other ext types are refused with an
   * error naming them. Encoding follows JSON.stringify: toJSON is used, boxed primitives
   * are unwrapped, what it leaves out (undefined properties, functions) is left out, and
   * NaN and the infinities are nil, as JSON's null. Integers (up to 64 bits) are sent as
   * integers, even past Number.MAX_SAFE_INTEGER. */
  let decodeLenient; // msgpack's decode, an unknown ext type read as null
  const msgpack = (() => {
    const MAX_DEPTH = 1000; // deeper (or cyclic, which never ends): refused, like JSON
    const utf8 = new TextEncoder();
    // ignoreBOM: a string that starts with U+FEFF keeps it.
    const fromUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
    const TWO_32 = 0x100000000;

    // Also an ArrayBuffer of another realm (an iframe's, a test's), which instanceof misses.
    function isArrayBuffer(value) {
      return Object.prototype.toString.call(value) === "[object ArrayBuffer]";
    }

    class Writer {
      constructor() {
        this.bytes = new Uint8Array(64);
        this.view = new DataView(this.bytes.buffer);
        this.length = 0;
      }

      room(n) {
        if (this.length + n <= this.bytes.length) return this.length;
        let size = this.bytes.length * 2;
        while (size < this.length + n) size *= 2;
        const bigger = new Uint8Array(size);
        bigger.set(this.bytes.subarray(0, this.length));
        this.bytes = bigger;
        this.view = new DataView(bigger.buffer);
        return this.length;
      }

      put(setter, size, value) {
        const at = this.room(size);
        this.view[setter](at, value);
        this.length += size;
      }

      byte(value) {
        this.put("setUint8", 1, value);
      }

      typed(tag, setter, size, value) {
        this.byte(tag);
        this.put(setter, size, value);
      }

      raw(bytes) {
        const at = this.room(bytes.length);
        this.bytes.set(bytes, at);
        this.length += bytes.length;
      }

      // The header of a string, bin, array or map of `n` items: the fix form if it has
      // one (fix: [tag, max]), then 8-, 16- or 32-bit lengths.
      header(n, fix, tags, what) {
        if (fix && n <= fix[1]) this.byte(fix[0] | n);
        else if (tags[0] !== null && n < 0x100) this.typed(tags[0], "setUint8", 1, n);
        else if (n < 0x10000) this.typed(tags[1], "setUint16", 2, n);
        else if (n < TWO_32) this.typed(tags[2], "setUint32", 4, n);
        else throw new TypeError(`msgpack cannot carry a ${what} of ${n} items`);
      }
    }

    function writeInt(w, n) {
      if (n >= 0) {
        if (n < 0x80) w.byte(n);
        else if (n < 0x100) w.typed(0xcc, "setUint8", 1, n);
        else if (n < 0x10000) w.typed(0xcd, "setUint16", 2, n);
        else if (n < TWO_32) w.typed(0xce, "setUint32", 4, n);
        else w.typed(0xcf, "setBigUint64", 8, BigInt(n));
      } else if (n >= -0x20) w.byte(n & 0xff);
      else if (n >= -0x80) w.typed(0xd0, "setInt8", 1, n);
      else if (n >= -0x8000) w.typed(0xd1, "setInt16", 2, n);
      else if (n >= -0x80000000) w.typed(0xd2, "setInt32", 4, n);
      else w.typed(0xd3, "setBigInt64", 8, BigInt(n));
    }

    function writeBigInt(w, n) {
      if (n >= -(2n ** 63n) && n <= BigInt(Number.MAX_SAFE_INTEGER)) {
        if (n >= BigInt(Number.MIN_SAFE_INTEGER)) writeInt(w, Number(n));
        else w.typed(0xd3, "setBigInt64", 8, n);
      } else if (n < 2n ** 64n && n > 0n) {
        w.typed(0xcf, "setBigUint64", 8, n);
      } else {
        throw new TypeError(`msgpack cannot carry the integer ${n} (64 bits at most)`);
      }
    }

    const isBytes = (value) => isArrayBuffer(value) || ArrayBuffer.isView(value);

    // What JSON.stringify would send for `value` (the value of `key`): its toJSON's
    // (a Date's text), a boxed primitive unwrapped. Bytes stay bytes (a Node Buffer has
    // a toJSON).
    function prepare(value, key) {
      if (value === null || typeof value !== "object" || isBytes(value)) return value;
      if (typeof value.toJSON === "function") {
        value = value.toJSON(key);
        if (value === null || typeof value !== "object") return value;
      }
      if (value instanceof Number || tag(value) === "[object Number]") return Number(value);
      if (value instanceof String || tag(value) === "[object String]") return String(value);
      if (value instanceof Boolean || tag(value) === "[object Boolean]") {
        return Boolean.prototype.valueOf.call(value);
      }
      return value;
    }

    function tag(value) {
      return Object.prototype.toString.call(value);
    }

    // What JSON leaves out of an object, and writes as null in an array.
    function absent(value) {
      const kind = typeof value;
      return kind === "undefined" || kind === "function" || kind === "symbol";
    }

    function write(w, value, depth) {
      if (depth > MAX_DEPTH) throw new TypeError("msgpack: nested too deeply (or cyclic)");
      if (value === null || value === undefined) {
        w.byte(0xc0);
      } else if (typeof value === "boolean") {
        w.byte(value ? 0xc3 : 0xc2);
      } else if (typeof value === "number") {
        if (Number.isSafeInteger(value)) writeInt(w, value);
        // An integer past 2**53 is still one (msgspec refuses a float for an int).
        else if (Number.isInteger(value) && value >= -(2 ** 63) && value < 2 ** 64) {
          writeBigInt(w, BigInt(value));
        } else if (Number.isFinite(value)) w.typed(0xcb, "setFloat64", 8, value);
        else w.byte(0xc0); // NaN, Infinity: null in JSON
      } else if (typeof value === "bigint") {
        writeBigInt(w, value);
      } else if (typeof value === "string") {
        const bytes = utf8.encode(value);
        w.header(bytes.length, [0xa0, 31], [0xd9, 0xda, 0xdb], "string");
        w.raw(bytes);
      } else if (isBytes(value)) {
        const bytes = ArrayBuffer.isView(value)
          ? new Uint8Array(value.buffer, value.byteOffset, value.byteLength)
          : new Uint8Array(value);
        w.header(bytes.length, null, [0xc4, 0xc5, 0xc6], "bin");
        w.raw(bytes);
      } else if (Array.isArray(value)) {
        w.header(value.length, [0x90, 15], [null, 0xdc, 0xdd], "array");
        for (let i = 0; i < value.length; i += 1) {
          // As in JSON: what has no value there is null.
          const prepared = prepare(value[i], String(i));
          write(w, absent(prepared) ? null : prepared, depth + 1);
        }
      } else if (typeof value === "object") {
        const entries = [];
        for (const key of Object.keys(value)) {
          const prepared = prepare(value[key], key);
          if (!absent(prepared)) entries.push([key, prepared]);
        }
        w.header(entries.length, [0x80, 15], [null, 0xde, 0xdf], "map");
        for (const [key, item] of entries) {
          write(w, key, depth + 1);
          write(w, item, depth + 1);
        }
      } else {
        throw new TypeError(`msgpack cannot carry a ${typeof value}`);
      }
    }

    /** `value` as msgpack bytes. Throws TypeError for what it cannot carry. */
    function encode(value) {
      const w = new Writer();
      write(w, prepare(value, ""), 0);
      return w.bytes.slice(0, w.length);
    }

    class Reader {
      constructor(bytes, lenient = false) {
        this.bytes = bytes;
        this.lenient = lenient; // an unknown ext type reads as null, not an error
        this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        this.at = 0;
      }

      fail(why, at = this.at) {
        throw new SyntaxError(`msgpack: ${why} (at byte ${at})`);
      }

      take(n) {
        if (this.at + n > this.bytes.length) this.fail(`truncated: ${n} bytes expected`);
        const at = this.at;
        this.at += n;
        return at;
      }

      get(getter, size) {
        return this.view[getter](this.take(size));
      }

      // A length of 1 << k bytes (k: 0, 1, 2).
      size(k) {
        return this.get(["getUint8", "getUint16", "getUint32"][k], 1 << k);
      }
    }

    // A 64-bit integer: a number within the safe range, else a number that lost digits,
    // as JSON.parse gives the same integer sent as JSON.
    function wide(big) {
      return Number(big);
    }

    function readStr(r, n) {
      const at = r.take(n);
      try {
        return fromUtf8.decode(r.bytes.subarray(at, at + n));
      } catch {
        return r.fail("a string that is not UTF-8", at);
      }
    }

    function readArray(r, n, depth) {
      const items = [];
      for (let i = 0; i < n; i += 1) items.push(read(r, depth + 1));
      return items;
    }

    function readMap(r, n, depth) {
      const map = {};
      for (let i = 0; i < n; i += 1) {
        const at = r.at;
        const key = read(r, depth + 1);
        if (typeof key !== "string" && typeof key !== "number") {
          r.fail(`a map key must be a string or an integer, not ${typeof key}`, at);
        }
        // Defined, not assigned: a "__proto__" key is data, as with JSON.parse.
        Object.defineProperty(map, String(key), {
          value: read(r, depth + 1),
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
      return map;
    }

    function readExt(r, size, start) {
      const type = r.get("getInt8", 1);
      const at = r.take(size);
      if (type === -1) return readTimestamp(r, at, size, start);
      if (r.lenient) return null;
      return r.fail(`ext type ${type} is not supported`, start);
    }

    const SECONDS = { min: -62135596800, max: 253402300799 }; // years 1 to 9999
    const pad = (n, width) => String(n).padStart(width, "0");

    // The timestamp extension (32, 64 or 96 bits: seconds since 1970 and nanoseconds) as
    // msgspec's JSON writes the same datetime: "YYYY-MM-DDTHH:MM:SS[.ffffff]Z".
    function readTimestamp(r, at, size, start) {
      let seconds;
      let nanos = 0;
      if (size === 4) {
        seconds = r.view.getUint32(at);
      } else if (size === 8) {
        const both = r.view.getBigUint64(at);
        nanos = Number(both >> 34n);
        seconds = Number(both & 0x3ffffffffn);
      } else if (size === 12) {
        nanos = r.view.getUint32(at);
        seconds = Number(r.view.getBigInt64(at + 4));
      } else {
        return r.fail(`a timestamp of ${size} bytes (4, 8 or 12)`, start);
      }
      if (nanos > 999999999) return r.fail(`a timestamp of ${nanos} nanoseconds`, start);
      if (seconds < SECONDS.min || seconds > SECONDS.max) {
        return r.fail("a timestamp outside the years 1 to 9999", start);
      }
      const d = new Date(seconds * 1000);
      const day = [pad(d.getUTCFullYear(), 4), pad(d.getUTCMonth() + 1, 2), pad(d.getUTCDate(), 2)];
      const time = [d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds()].map((n) => pad(n, 2));
      let fraction = "";
      if (nanos % 1000) fraction = `.${pad(nanos, 9)}`;
      else if (nanos) fraction = `.${pad(nanos / 1000, 6)}`;
      return `${day.join("-")}T${time.join(":")}${fraction}Z`;
    }

    function read(r, depth) {
      if (depth > MAX_DEPTH) r.fail("nested too deeply");
      const start = r.at;
      const tag = r.get("getUint8", 1);
      if (tag < 0x80) return tag;
      if (tag >= 0xe0) return tag - 0x100;
      if (tag < 0x90) return readMap(r, tag & 0x0f, depth);
      if (tag < 0xa0) return readArray(r, tag & 0x0f, depth);
      if (tag < 0xc0) return readStr(r, tag & 0x1f);
      switch (tag) {
        case 0xc0:
          return null;
        case 0xc2:
          return false;
        case 0xc3:
          return true;
        case 0xc4:
        case 0xc5:
        case 0xc6: {
          const n = r.size(tag - 0xc4);
          const at = r.take(n);
          return r.bytes.slice(at, at + n);
        }
        case 0xc7:
        case 0xc8:
        case 0xc9: {
          return readExt(r, r.size(tag - 0xc7), start);
        }
        case 0xca:
          return r.get("getFloat32", 4);
        case 0xcb:
          return r.get("getFloat64", 8);
        case 0xcc:
          return r.get("getUint8", 1);
        case 0xcd:
          return r.get("getUint16", 2);
        case 0xce:
          return r.get("getUint32", 4);
        case 0xcf:
          return wide(r.get("getBigUint64", 8));
        case 0xd0:
          return r.get("getInt8", 1);
        case 0xd1:
          return r.get("getInt16", 2);
        case 0xd2:
          return r.get("getInt32", 4);
        case 0xd3:
          return wide(r.get("getBigInt64", 8));
        case 0xd4:
        case 0xd5:
        case 0xd6:
        case 0xd7:
        case 0xd8:
          return readExt(r, 1 << (tag - 0xd4), start);
        case 0xd9:
          return readStr(r, r.get("getUint8", 1));
        case 0xda:
          return readStr(r, r.get("getUint16", 2));
        case 0xdb:
          return readStr(r, r.get("getUint32", 4));
        case 0xdc:
          return readArray(r, r.get("getUint16", 2), depth);
        case 0xdd:
          return readArray(r, r.get("getUint32", 4), depth);
        case 0xde:
          return readMap(r, r.get("getUint16", 2), depth);
        case 0xdf:
          return readMap(r, r.get("getUint32", 4), depth);
        default:
          return r.fail(`0x${tag.toString(16)} is not a msgpack type`, start); // 0xc1
      }
    }

    /** The value of the msgpack bytes `data` (Uint8Array, ArrayBuffer or a view): one
     * value, nothing after it. Throws SyntaxError naming what is wrong and where. */
    function decode(data) {
      return decodeWith(data, false);
    }

    // `lenient`: an unknown ext type reads as null (to find which call an answer that
    // cannot be read was for).
    function decodeWith(data, lenient) {
      let bytes;
      if (ArrayBuffer.isView(data)) {
        bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      } else if (isArrayBuffer(data)) {
        bytes = new Uint8Array(data);
      } else {
        throw new TypeError(`msgpack.decode needs bytes, not ${typeof data}`);
      }
      const r = new Reader(bytes, lenient);
      const value = read(r, 0);
      if (r.at !== bytes.length) r.fail(`${bytes.length - r.at} bytes after the value`);
      return value;
    }

    decodeLenient = (data) => decodeWith(data, true);
    return Object.freeze({ encode, decode });
  })();

  /** A live view of the presence of one channel that tracks presence (`client.presence`):
   * who is there, on how many connections, kept current by the server's diffs and
   * replaced by the state of each subscribe answer (after every reconnection). */
  class PresenceView {
    constructor(client, channel, callbacks) {
      this.channel = channel;
      /** user -> metas ([{conn, meta}], sorted by conn id), as last shown. */
      this.users = new Map();
      /** Connections in the channel: users' and anonymous ones (the latter as of the
       * last subscribe answer: they send no diffs). */
      this.connections = 0;
      this.onJoin = callbacks.onJoin || null;
      this.onLeave = callbacks.onLeave || null;
      this.onUpdate = callbacks.onUpdate || null;
      this.onSync = callbacks.onSync || null;
      this._client = client;
      this._syncedOn = null; // the socket whose subscribe answer the state comes from
      this._closed = false;
      this.ready = quiet(
        new Promise((resolve, reject) => {
          this._resolve = resolve;
          this._reject = reject;
        }),
      );
    }

    /** Users present (each once, whatever its number of connections). */
    get uniqueUsers() {
      return this.users.size;
    }

    /** Whether the state is live: it came with the current connection's answer. */
    get synced() {
      return this._syncedOn !== null && this._syncedOn === this._client._ws;
    }

    /** Stop the view (and its subscription, unless something else holds the channel). */
    close() {
      if (this._closed) return;
      this._closed = true;
      this._client._dropView(this);
      this._forget();
      this._reject(new ConnectionError("presence view closed"));
    }

    // A subscribe answer's state replaces the shown one; what differs is told.
    _reset(state, ws) {
      const before = this.users;
      this.users = new Map(Object.entries(state.users || {}));
      this.connections = state.connections ?? 0;
      this._syncedOn = ws;
      for (const [user, metas] of before) {
        if (!this.users.has(user)) this._tell(this.onLeave, user, metas);
      }
      for (const [user, metas] of this.users) {
        if (!before.has(user)) this._tell(this.onJoin, user, metas);
        else if (!sameMetas(before.get(user), metas)) this._tell(this.onUpdate, user, metas);
      }
      if (this.onSync) safely(this.onSync, this);
      this._resolve(this);
    }

    // A diff, newer than the state: by assignment, whatever its event says, so that a
    // repeated one changes nothing.
    _apply({ event, user, metas }) {
      const had = this.users.get(user);
      if (event === "leave") {
        if (!had) return;
        this.users.delete(user);
        this.connections -= had.length;
        this._tell(this.onLeave, user, had);
        return;
      }
      if (had && sameMetas(had, metas)) return;
      this.users.set(user, metas);
      this.connections += metas.length - (had ? had.length : 0);
      this._tell(had ? this.onUpdate : this.onJoin, user, metas);
    }

    _tell(callback, user, metas) {
      if (callback) safely(callback, user, metas);
    }
  }

  class Client {
    /**
     * @param {string} url  ws://, wss://, or a path ("/rpc") on the page's own host.
     * @param {{timeout?: number, backoff?: number, maxBackoff?: number,
     *   credentials?: () => (string|null|Promise<string|null>),
     *   encoding?: "json"|"msgpack"}} options
     *   credentials: called before every connection attempt (its token goes as the
     *   `token` query parameter) and when the server says the credential is due for
     *   renewal (then sent with rpc.refresh).
     *   encoding: "msgpack" asks the server for MessagePack (`?encoding=msgpack`):
     *   binary frames both ways. Throws RangeError for another name.
     */
    constructor(url, options = {}) {
      const encoding = options.encoding ?? "json";
      if (encoding !== "json" && encoding !== "msgpack") {
        throw new RangeError(`unknown encoding ${JSON.stringify(encoding)}: "json" or "msgpack"`);
      }
      const base = root.location ? root.location.href : undefined;
      const full = new URL(url, base);
      if (full.protocol === "http:") full.protocol = "ws:";
      if (full.protocol === "https:") full.protocol = "wss:";
      if (encoding === "msgpack") full.searchParams.set("encoding", "msgpack");
      this.url = full.href;
      /** "json" (text frames) or "msgpack" (binary frames). */
      this.encoding = encoding;
      this.timeout = options.timeout ?? 10000;
      this.backoff = options.backoff ?? 500;
      this.maxBackoff = options.maxBackoff ?? 8000;
      this._credentials = options.credentials ?? null;
      /** This connection's id (from rpc.info), null while disconnected. */
      this.id = null;
      /** "idle", "connecting", "open", "reconnecting" or "closed". */
      this.status = "idle";
      /** Connections opened so far. */
      this.connections = 0;
      /** Called with rpc.info's result after every (re)connection. */
      this.onopen = null;
      /** Called with {code, reason, attempt, delay, closeReason} when a connection drops
       * or an attempt fails; delay is the wait (ms) before the next attempt. */
      this.onclose = null;
      /** Called with (status, closeReason) whenever the status changes. */
      this.onstatus = null;
      /** {code, reason} the server gave when it closed the last connection that dropped
       * (its rpc.close event, or a close code of 4000-4999), else null. */
      this.closeReason = null;
      /** Called with (error, stage) when getting a credential ("credentials") or
       * renewing one ("refresh") failed; without it, a warning on the console. */
      this.onerror = null;
      /** rpc.info's result for the current connection. */
      this.info = null;
      /** Called with (method, params) for pushes other than rpc.event/message/stream. */
      this.onnotification = null;
      this._ws = null;
      this._nextId = 1;
      this._pending = new Map(); // request id -> entry, until answered
      this._queue = []; // entries not sent yet, in order
      this._events = new Map(); // event name -> Set of callbacks
      this._subs = new Map(); // channel pattern -> Set of {callback, position, onRecoveryFailed}
      this._views = new Map(); // channel -> Set of PresenceView
      this._opening = null; // the attempt waiting for its credential
      this._serverClose = null; // rpc.close's {code, reason} on the current connection
      this._waiters = new Set(); // connect() promises waiting for the next open
      this._attempt = 0;
      this._timer = null;
      this._stopped = true;
    }

    /** Start connecting (and reconnecting); resolves with rpc.info's result once
     * connected, rejects after `timeout` (the client keeps trying). */
    connect() {
      if (this._stopped) {
        this._stopped = false;
        this._attempt = 0;
        this._open();
      }
      if (this.status === "open") return Promise.resolve(this.info);
      return new Promise((resolve, reject) => {
        const waiter = { resolve, reject };
        waiter.timer = setTimeout(() => {
          this._waiters.delete(waiter);
          reject(new TimeoutError(`no connection to ${this.url} within ${this.timeout} ms`));
        }, this.timeout);
        this._waiters.add(waiter);
      });
    }

    /** Close the connection and stop reconnecting; whatever waits fails. */
    close() {
      this._stopped = true;
      this._opening = null;
      clearTimeout(this._timer);
      const ws = this._ws;
      this._ws = null;
      this.id = null;
      this.info = null;
      this._setStatus("closed");
      if (ws) ws.close(1000);
      for (const entry of [...this._pending.values(), ...this._queue]) {
        this._settle(entry, new ConnectionError("client closed"));
      }
      this._queue = [];
      for (const waiter of this._waiters) {
        clearTimeout(waiter.timer);
        waiter.reject(new ConnectionError("client closed"));
      }
      this._waiters.clear();
    }

    /** Call `method` with `params` (an array or an object); resolves with its result,
     * rejects with CallError, TimeoutError or ConnectionError. */
    call(method, params) {
      return this._request(method, params).promise;
    }

    /** Send a notification (no answer); resolves once sent. */
    notify(method, params) {
      checkParams(params);
      const message = { jsonrpc: RPC.VERSION, method };
      if (params != null) message.params = params; // null or undefined: none
      const entry = this._entry(message, this._encode(message));
      this._send(entry);
      return quiet(entry.promise);
    }

    /** Send the named event `event` with `data` (an array or an object) as a
     * notification. With `{ack: true}` it is a request: the promise then resolves with
     * what the handler returned, or rejects with its error. */
    emit(event, data, { ack = false } = {}) {
      return ack ? this.call(event, data) : this.notify(event, data);
    }

    /** Listen to the named event `event` (rpc.event): callback(data, from). */
    on(event, callback) {
      if (!this._events.has(event)) this._events.set(event, new Set());
      this._events.get(event).add(callback);
      return this;
    }

    /** Stop listening (one callback, or every callback of the event). */
    off(event, callback) {
      const set = this._events.get(event);
      if (set && callback) set.delete(callback);
      if (set && (!callback || set.size === 0)) this._events.delete(event);
      return this;
    }

    /** Subscribe to a channel or pattern ("news.*", "chat.**"): callback(data, channel,
     * {offset, epoch}) for every message whose channel matches (offset and epoch are null
     * unless the channel keeps history). Returns a function that unsubscribes; its
     * `ready` promise settles with the server's answer, its `position` is where this
     * subscription stands. Subscriptions are sent again after every reconnection, a
     * channel with a position since it: what was missed comes first, in order.
     *
     * Options (channels that keep history, by name, not pattern): `since`, a position
     * {offset, epoch} saved earlier, to resume after it; `onRecoveryFailed({channel,
     * position})`, called when the server could not replay what was missed, before the
     * messages after the break (position: what live messages continue after). */
    subscribe(pattern, callback, { since = null, onRecoveryFailed = null } = {}) {
      if (since && isPattern(pattern)) {
        throw new TypeError(`since needs a channel name, not a pattern: ${pattern}`);
      }
      const sub = { callback, position: since, onRecoveryFailed };
      if (!this._subs.has(pattern)) this._subs.set(pattern, new Set());
      this._subs.get(pattern).add(sub);
      const forget = () => {
        const set = this._subs.get(pattern);
        if (!set || !set.delete(sub) || set.size) return;
        this._subs.delete(pattern);
        // Sent in order after the subscription, even if that is still queued or on its
        // way (before the connection counts as open); unknown ones are ignored.
        if (!this._stopped) quiet(this.call(RPC.UNSUBSCRIBE, { channel: pattern }));
      };
      Object.defineProperty(forget, "position", { get: () => sub.position });
      // Refused (access denied, too many): the subscription is dropped here too.
      const entry = this._subscribeRequest(pattern, since, [sub]);
      sub.asking = entry;
      forget.ready = quiet(
        entry.promise.catch((err) => {
          if (err instanceof CallError) forget();
          throw err;
        }),
      );
      return forget;
    }

    /** The position (`{offset, epoch}`) the subscriptions to channel `name` stand at,
     * or null (a pattern, a channel without history, or not subscribed). */
    position(name) {
      return resumePosition(this._subs.get(name) || []);
    }

    /** The publications a channel that keeps history still holds: the last `limit`, or
     * those after `since` ({offset, epoch}). Resolves with {publications: [{offset,
     * epoch, data}], position: {offset, epoch}, recovered} (recovered: null without
     * `since`; false when what followed it is gone, and publications is then empty). */
    async history(channel, { limit = null, since = null } = {}) {
      const params = { channel };
      if (limit != null) params.limit = limit;
      if (since) params.since = { offset: since.offset, epoch: since.epoch };
      const result = await this.call(RPC.HISTORY, params);
      const position = readPosition(result);
      const publications = (result.publications || []).map((p) => ({
        offset: p.offset,
        epoch: position && position.epoch,
        data: p.data,
      }));
      return { publications, position, recovered: result.recovered ?? null };
    }

    /** Publish `data` to `channel` (if the server lets clients publish); resolves with
     * the number of subscribers reached on the server's node. */
    publish(channel, data, { echo = false } = {}) {
      return this.call(RPC.PUBLISH, { channel, data, echo });
    }

    /** Call a streaming method: onItem(item) for each item; the promise resolves with
     * the final result (the number of items). `promise.cancel()` stops it (rpc.cancel):
     * the promise then rejects with CallError RPC.REQUEST_CANCELLED. The timeout counts
     * from the last item. */
    stream(method, params, onItem) {
      const entry = this._request(method, params, onItem);
      const promise = entry.promise;
      promise.cancel = () => {
        if (!entry.sent) {
          // Still waiting for a connection: the server never saw it.
          this._settle(entry, new CallError(RPC.REQUEST_CANCELLED, "Request cancelled"));
          return Promise.resolve(false);
        }
        return this.call(RPC.CANCEL, { id: entry.id });
      };
      return promise;
    }

    /** A live view of the presence of `channel` (a name that tracks presence on the
     * server): subscribes to it (sharing the subscription with `subscribe`), keeps
     * `view.users` (user -> [{conn, meta}]), `connections` and `uniqueUsers` current,
     * and calls `onJoin(user, metas)`, `onLeave(user, metas)`, `onUpdate(user, metas)`
     * for each change, `onSync(view)` after each full state (every (re)subscription).
     * `view.ready` resolves with the view once it holds a state; `view.close()` stops it. */
    presence(channel, { onJoin, onLeave, onUpdate, onSync } = {}) {
      if (isPattern(channel)) {
        throw new TypeError(`presence needs a channel name, not a pattern: ${channel}`);
      }
      const view = new PresenceView(this, channel, { onJoin, onLeave, onUpdate, onSync });
      if (!this._views.has(channel)) this._views.set(channel, new Set());
      this._views.get(channel).add(view);
      view._forget = this.subscribe(channel, () => {});
      view._forget.ready.then(
        (answer) => {
          if (!answer || !answer.presence) {
            console.warn(`gobstopper: ${channel} does not track presence on the server`);
          }
        },
        (err) => {
          // Refused: the view ends with it (a lost connection only delays it).
          if (!(err instanceof CallError)) return;
          this._dropView(view);
          view._reject(err);
        },
      );
      return view;
    }

    /** The presence of `channel` now, across the server's nodes (rpc.presence): resolves
     * with {channel, users: {user: [{conn, meta}]}, connections, unique_users}. */
    presenceState(channel) {
      return this.call(RPC.PRESENCE, { channel });
    }

    /** Present a new credential (from the `credentials` option) to the server now
     * (rpc.refresh); resolves with {user, expires_at}. The client does it by itself
     * when the server says the credential is due. A refusal rejects with CallError
     * RPC.UNAUTHORIZED, and the server then closes the connection (the client comes
     * back with a fresh credential). */
    async refresh() {
      if (!this._credentials) throw new TypeError("refresh() needs the credentials option");
      const ws = this._ws;
      if (!ws || ws.readyState !== 1) throw new ConnectionError(`not connected: ${this.url}`);
      const token = await this._credentials();
      if (this._ws !== ws) throw new ConnectionError("the connection changed meanwhile");
      if (typeof token !== "string") {
        throw new TypeError(`credentials() must give a string to refresh, not ${token}`);
      }
      return this.call(RPC.REFRESH, { token });
    }

    // -- internals ----------------------------------------------------------------------

    _dropView(view) {
      const set = this._views.get(view.channel);
      if (set && set.delete(view) && !set.size) this._views.delete(view.channel);
    }

    _failed(error, stage) {
      if (this.onerror) safely(this.onerror, error, stage);
      else console.warn(`gobstopper: ${stage} failed`, error);
    }

    // `frame`: the message encoded, once, when asked for (what cannot be encoded throws
    // then, with nothing registered or queued).
    _entry(message, frame, onItem) {
      const entry = { message, frame, onItem, sent: false, done: false };
      entry.promise = new Promise((resolve, reject) => {
        entry.resolve = resolve;
        entry.reject = reject;
      });
      this._arm(entry);
      return entry;
    }

    _arm(entry) {
      clearTimeout(entry.timer);
      entry.timer = setTimeout(() => {
        const what = entry.sent ? "no answer" : "no connection";
        const error = new TimeoutError(`${entry.message.method}: ${what} in ${this.timeout} ms`);
        this._settle(entry, error);
      }, this.timeout);
    }

    // rpc.subscribe for `asked` (null: every subscription of the pattern, a renewal);
    // its answer updates their positions as it is read, before the frames after it.
    _subscribeRequest(pattern, since, asked, first = false) {
      const params = { channel: pattern };
      if (since) params.since = { offset: since.offset, epoch: since.epoch };
      const entry = this._request(RPC.SUBSCRIBE, params, undefined, first);
      entry.onAnswer = (m) => this._subscribed(pattern, since, asked, m);
      return entry;
    }

    _subscribed(pattern, since, asked, m) {
      if (isPattern(pattern)) return; // positions and presence are a channel name's
      const state = m.result && m.result.presence;
      if (state) {
        // Newer than every diff before it on this connection, older than those after.
        for (const view of [...(this._views.get(pattern) || [])]) view._reset(state, this._ws);
      }
      const subs = [...(this._subs.get(pattern) || [])];
      const targets = asked ? asked.filter((sub) => subs.includes(sub)) : renewable(subs);
      if (m.error) {
        // A renewal from a position the server no longer takes (the channel lost its
        // history): the stream broke here; the caller subscribes again without it.
        if (since && !asked && m.error.code === RPC.INVALID_PARAMS) {
          for (const sub of targets) this._broke(pattern, sub, null);
        }
        return;
      }
      const reply = m.result || {};
      const position = readPosition(reply);
      if (since && reply.recovered === false) {
        for (const sub of targets) this._broke(pattern, sub, position);
      } else if (position) {
        for (const sub of targets) sub.position = position;
      }
      if (position) {
        for (const sub of subs) if (!sub.position) sub.position = position;
      }
    }

    _broke(channel, sub, position) {
      sub.position = position;
      if (sub.onRecoveryFailed) safely(sub.onRecoveryFailed, { channel, position });
      else console.warn(`gobstopper: missed messages of ${channel} could not be recovered`);
    }

    _request(method, params, onItem, first = false) {
      checkParams(params);
      const id = this._nextId++;
      const message = { jsonrpc: RPC.VERSION, method, id };
      if (params != null) message.params = params; // null or undefined: none
      const entry = this._entry(message, this._encode(message), onItem);
      entry.id = id;
      this._pending.set(id, entry);
      this._send(entry, first);
      return entry;
    }

    // Send now if connected, else queue for the next connection (until the timeout).
    _send(entry, first = false) {
      const ws = this._ws;
      if (this.status === "closed") {
        this._settle(entry, new ConnectionError("client closed"));
      } else if (ws && ws.readyState === 1 && !first) {
        ws.send(entry.frame);
        entry.sent = true;
        if (entry.id === undefined) this._settle(entry, null, undefined);
      } else if (first) {
        this._queue.unshift(entry);
      } else {
        this._queue.push(entry);
      }
    }

    _flush() {
      const queue = this._queue;
      this._queue = [];
      for (const entry of queue) if (!entry.done) this._send(entry);
    }

    _settle(entry, error, result) {
      if (entry.done) return;
      entry.done = true;
      clearTimeout(entry.timer);
      if (entry.id !== undefined) this._pending.delete(entry.id);
      const at = this._queue.indexOf(entry);
      if (at >= 0) this._queue.splice(at, 1);
      if (error) entry.reject(error);
      else entry.resolve(result);
    }

    _setStatus(status, closeReason = null) {
      if (status === this.status) return;
      this.status = status;
      if (this.onstatus) safely(this.onstatus, status, closeReason);
    }

    _open() {
      this._setStatus(this._attempt ? "reconnecting" : "connecting", this.closeReason);
      if (!this._credentials) {
        this._dial(this.url);
        return;
      }
      // A fresh credential for every attempt; close() (or a new connect()) meanwhile
      // makes this attempt stale.
      const attempt = {};
      this._opening = attempt;
      new Promise((resolve) => resolve(this._credentials()))
        .then((token) => withToken(this.url, token))
        .then(
          (url) => {
            if (this._opening !== attempt) return;
            this._opening = null;
            this._dial(url);
          },
          (err) => {
            if (this._opening !== attempt) return;
            this._opening = null;
            this._failed(err, "credentials");
            if (this._stopped || this._opening) return; // onerror closed or restarted it
            this._retry({ code: null, reason: "no credentials" });
          },
        );
    }

    _dial(url) {
      this._serverClose = null;
      const ws = new WebSocket(url);
      if (this.encoding === "msgpack") ws.binaryType = "arraybuffer"; // not Blobs
      this._ws = ws;
      ws.onopen = () => this._opened(ws);
      ws.onmessage = (event) => {
        if (this._ws === ws) this._receive(event.data);
      };
      ws.onclose = (event) => this._dropped(ws, event);
      // Browsers follow an error with a close event, some other implementations do not:
      // the first of the two counts, the second finds the socket replaced.
      ws.onerror = () => this._dropped(ws, { code: 1006, reason: "" });
    }

    _opened(ws) {
      if (this._ws !== ws) return;
      this.connections += 1;
      // First on the new connection, before what waited for it: the subscriptions again
      // (the server kept nothing of the old connection), then who we are. The server
      // handles them in order, so they are in place before the queued calls run.
      const info = this._request(RPC.INFO, undefined, undefined, true);
      for (const [pattern, subs] of this._subs) {
        const again = renewable(subs);
        if (again.length) this._resubscribe(pattern, resumePosition(again));
      }
      this._flush();
      info.promise.then(
        (result) => {
          if (this._ws !== ws) return;
          this._attempt = 0; // a connection that answers: the next drop starts over
          this.id = result.id;
          this.info = result;
          this._setStatus("open");
          for (const waiter of this._waiters) {
            clearTimeout(waiter.timer);
            waiter.resolve(result);
          }
          this._waiters.clear();
          if (this.onopen) safely(this.onopen, result);
        },
        () => {
          // Dropped at once: _dropped deals with it. No answer in time on a socket that
          // is still open: start over, rather than wait for ever half connected.
          if (this._ws === ws && ws.readyState === 1) ws.close();
        },
      );
    }

    // Subscribe again on a new connection, a channel with a position since it (the server
    // then replays what was missed, or says it cannot).
    // `first`: ahead of the calls that waited for the connection (sent by _flush).
    _resubscribe(pattern, since, first = true) {
      const ws = this._ws;
      const again = this._subscribeRequest(pattern, since, null, first);
      again.promise.catch((err) => {
        if (!(err instanceof CallError)) return; // dropped again: the next one retries
        if (since && err.code === RPC.INVALID_PARAMS && this._subs.has(pattern)) {
          this._resubscribe(pattern, null, false); // the channel keeps no history now
          return;
        }
        if (err.code === RPC.INTERNAL_ERROR) {
          // The server could not do it now (its history store is away): no refusal.
          // Start over on a new connection, the position kept.
          console.warn(`gobstopper: subscribing again to ${pattern} failed for now`, err);
          if (this._ws === ws && ws && ws.readyState === 1) ws.close();
          return;
        }
        console.warn(`gobstopper: subscription ${pattern} refused`, err);
        this._subs.delete(pattern);
      });
    }

    _dropped(ws, event) {
      if (this._ws !== ws) return; // an old socket, or close() was called
      this._ws = null;
      if (ws.readyState < 2) ws.close();
      this.id = null;
      this.info = null;
      // Calls in flight may or may not have run: fail them, never send them twice.
      // Those not sent yet wait for the next connection.
      for (const entry of [...this._pending.values()]) {
        if (entry.sent) this._settle(entry, new ConnectionError(`connection lost: ${this.url}`));
      }
      // The server's own word (RSGI servers close without a code the browser sees).
      const { code, reason } = event;
      const own = code >= 4000 && code < 5000 ? { code, reason } : null;
      this.closeReason = this._serverClose || own;
      this._retry(event);
    }

    _retry({ code, reason }) {
      // Backoff with jitter, so that many pages do not come back at the same instant
      // after a server restart: 0.5 s, 1 s, 2 s ... up to maxBackoff, times 0.5 to 1.
      const ceiling = Math.min(this.maxBackoff, this.backoff * 2 ** this._attempt);
      const delay = ceiling * (0.5 + Math.random() / 2);
      this._attempt += 1;
      this._setStatus("reconnecting", this.closeReason);
      this._timer = setTimeout(() => this._open(), delay);
      if (this.onclose) {
        const closeReason = this.closeReason;
        safely(this.onclose, { code, reason, attempt: this._attempt, delay, closeReason });
      }
    }

    _encode(message) {
      return this.encoding === "msgpack" ? msgpack.encode(message) : JSON.stringify(message);
    }

    _decode(raw) {
      const text = typeof raw === "string";
      if (this.encoding === "json") {
        if (!text) throw new TypeError("a binary frame, where JSON comes in text frames");
        return JSON.parse(raw);
      }
      if (text) throw new TypeError("a text frame, where msgpack comes in binary frames");
      return msgpack.decode(raw);
    }

    _receive(raw) {
      let payload;
      try {
        payload = this._decode(raw);
      } catch (err) {
        console.warn(`gobstopper: ignored a message that is not ${this.encoding}`, err);
        this._unreadable(raw, err);
        return;
      }
      for (const m of Array.isArray(payload) ? payload : [payload]) {
        if (!m || typeof m !== "object") continue;
        if (typeof m.method !== "string" || "id" in m) this._answer(m);
        else this._push(m.method, m.params || {});
      }
    }

    // An answer that holds what cannot be read (a msgpack ext type other than the
    // timestamp): its call fails with the reason now, rather than time out.
    _unreadable(raw, err) {
      if (this.encoding !== "msgpack" || typeof raw === "string") return;
      let payload;
      try {
        payload = decodeLenient(raw);
      } catch {
        return; // not msgpack at all: no id to go by
      }
      for (const m of Array.isArray(payload) ? payload : [payload]) {
        if (!m || typeof m !== "object") continue;
        // An answer, or an item of a stream (whose params name the call).
        const stream = m.method === RPC.STREAM && m.params && !("id" in m);
        const entry = this._pending.get(stream ? m.params.id : m.id);
        if (entry && (stream || "id" in m)) this._settle(entry, err);
      }
    }

    _answer(m) {
      const entry = this._pending.get(m.id);
      if (!entry) return; // timed out already, or an error about no request (id null)
      if (entry.onAnswer) safely(entry.onAnswer, m);
      if (m.error) {
        const e = m.error;
        this._settle(entry, new CallError(e.code, e.message, e.data));
      } else {
        this._settle(entry, null, m.result);
      }
    }

    _push(method, params) {
      if (method === RPC.EVENT) {
        if (params.event === RPC.CLOSING_EVENT && params.from === null) {
          // The server closes next, with this code and reason.
          const data = params.data || {};
          this._serverClose = { code: data.code, reason: data.reason };
          this.closeReason = this._serverClose;
        }
        for (const callback of [...(this._events.get(params.event) || [])]) {
          safely(callback, params.data, params.from);
        }
      } else if (method === RPC.MESSAGE) {
        // The server sends a message once per connection: every local subscription
        // whose pattern matches gets it.
        const at = readPosition(params);
        const meta = { offset: at ? at.offset : null, epoch: at ? at.epoch : null };
        for (const [pattern, subs] of [...this._subs]) {
          if (!matches(pattern, params.channel)) continue;
          for (const sub of [...subs]) {
            if (at && !isPattern(pattern)) {
              const last = sub.position;
              // At or before where it stands in the same epoch: a replay it had already.
              if (last && last.epoch === at.epoch && at.offset <= last.offset) continue;
              sub.position = at;
            }
            safely(sub.callback, params.data, params.channel, meta);
          }
        }
      } else if (method === RPC.STREAM) {
        const entry = this._pending.get(params.id);
        if (!entry) return;
        this._arm(entry);
        if (entry.onItem) safely(entry.onItem, params.item);
      } else if (method === RPC.PRESENCE_DIFF) {
        for (const view of [...(this._views.get(params.channel) || [])]) {
          // Before this connection's subscribe answer: older than its state.
          if (view.synced) view._apply(params);
        }
      } else if (method === RPC.REFRESH_DUE) {
        if (this._credentials) this.refresh().catch((err) => this._failed(err, "refresh"));
        else console.warn("gobstopper: the credential expires soon, and no credentials option");
      } else if (this.onnotification) {
        safely(this.onnotification, method, params);
      }
    }
  }

  const api = {
    Client,
    PresenceView,
    CallError,
    ConnectionError,
    TimeoutError,
    RPC,
    matches,
    msgpack,
  };
  if (typeof module === "object" && module.exports) module.exports = api;
  else root.Gobstopper = api;
})(typeof window !== "undefined" ? window : globalThis);
