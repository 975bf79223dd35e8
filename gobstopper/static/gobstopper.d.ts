// Types of gobstopper.js, the browser client (docs/browser-client.md). The script defines
// the global `Gobstopper` in a page (`<script src="/gobstopper.js">`), and is a CommonJS
// module elsewhere; this file describes both: in a module, `import type { Client } from
// "./gobstopper"` (or `import Gobstopper = require("./gobstopper")`); in a plain script,
// the global `Gobstopper`. Times are in milliseconds.

export as namespace Gobstopper;

/** Parameters of a call: positional (an array) or named (an object, an interface's
 * value too), as JSON-RPC has. */
export type Params = readonly unknown[] | object;

/** Where a channel that keeps history stands: the offset of a publication, in an epoch
 * (a new epoch: the history was lost, offsets start over). */
export interface Position {
  offset: number;
  epoch: string;
}

/** What a message's callback gets besides its data: its position, or nulls (a channel
 * without history). */
export interface MessageMeta {
  offset: number | null;
  epoch: string | null;
}

/** `rpc.info`'s answer: this connection on the server. */
export interface Info {
  /** The connection's id. */
  id: string;
  encoding: Encoding;
  /** Channels and patterns this connection is subscribed to. */
  subscriptions: string[];
}

/** How messages travel: JSON in text frames, MessagePack in binary frames. */
export type Encoding = "json" | "msgpack";

/** One connection of a user in a channel, and what the server attached to it. */
export interface PresenceMeta {
  conn: string;
  meta: unknown;
}

/** `rpc.presence`'s answer (`client.presenceState`): who is in a channel now. */
export interface PresenceState {
  channel: string;
  users: { [user: string]: PresenceMeta[] };
  connections: number;
  unique_users: number;
}

/** The server's answer to a subscription (`subscription.ready`). */
export interface SubscribeAnswer {
  /** A channel that keeps history: where it stands. */
  offset?: number;
  epoch?: string;
  /** Subscribed `since` a position: whether what followed it was replayed. */
  recovered?: boolean;
  /** A channel that tracks presence: who is there. */
  presence?: { users: { [user: string]: PresenceMeta[] }; connections: number };
  [key: string]: unknown;
}

/** One publication of a channel's history. */
export interface Publication<T = unknown> {
  offset: number;
  epoch: string | null;
  data: T;
}

/** `client.history(...)`'s answer. */
export interface History<T = unknown> {
  publications: Publication<T>[];
  position: Position | null;
  /** null without `since`; false when what followed it is gone. */
  recovered: boolean | null;
}

/** `client.refresh()`'s answer. */
export interface Refreshed {
  user: string;
  expires_at: number | null;
}

/** Why the server closed the last connection that dropped. */
export interface CloseReason {
  code: number;
  reason: string;
}

/** What `onclose` gets when a connection drops or an attempt fails. */
export interface CloseReport {
  code: number | null;
  reason: string;
  /** Failed attempts in a row so far. */
  attempt: number;
  /** The wait before the next attempt. */
  delay: number;
  closeReason: CloseReason | null;
}

export type Status = "idle" | "connecting" | "open" | "reconnecting" | "closed";

/** A token for the next connection attempt (or for `rpc.refresh`); null: none. */
export type Credentials = () => string | null | Promise<string | null>;

export interface ClientOptions {
  /** How long a call waits for its answer, and `connect()` for a connection (10000). */
  timeout?: number;
  /** The wait before the first reconnection attempt (500), doubling... */
  backoff?: number;
  /** ...up to this (8000); each wait times a random 0.5 to 1. */
  maxBackoff?: number;
  /** Called before every connection attempt and when the credential is due. */
  credentials?: Credentials | null;
  /** "msgpack": MessagePack in binary frames (`?encoding=msgpack`); "json" by default.
   * Another name: the constructor throws RangeError. */
  encoding?: Encoding;
}

export interface SubscribeOptions {
  /** A position saved earlier: resume after it (a channel name with history). */
  since?: Position | null;
  /** The server could not replay what was missed; `position`: where messages go on. */
  onRecoveryFailed?: ((lost: { channel: string; position: Position | null }) => void) | null;
}

/** Returned by `subscribe`: call it to unsubscribe. */
export interface Subscription {
  (): void;
  /** Settles with the server's answer; rejects with CallError when refused (the
   * subscription is then dropped). */
  readonly ready: Promise<SubscribeAnswer>;
  /** Where this subscription stands (a channel with history), else null. */
  readonly position: Position | null;
}

/** The promise of a streaming call: resolves with the final result; `cancel()` sends
 * `rpc.cancel` (the promise then rejects with CallError REQUEST_CANCELLED) and resolves
 * with whether the server still had it. */
export interface StreamCall<T = number> extends Promise<T> {
  cancel(): Promise<boolean>;
}

export type MessageCallback<T = unknown> = (data: T, channel: string, meta: MessageMeta) => void;
export type EventCallback<T = unknown> = (data: T, from: string | null) => void;
export type PresenceCallback = (user: string, metas: PresenceMeta[]) => void;

export interface PresenceCallbacks {
  onJoin?: PresenceCallback;
  onLeave?: PresenceCallback;
  onUpdate?: PresenceCallback;
  onSync?: (view: PresenceView) => void;
}

/** A live view of the presence of one channel (`client.presence(channel)`). */
export class PresenceView {
  private constructor();
  readonly channel: string;
  /** user -> its connections and metas, as last shown. */
  users: Map<string, PresenceMeta[]>;
  /** Connections in the channel, users' and anonymous ones. */
  connections: number;
  onJoin: PresenceCallback | null;
  onLeave: PresenceCallback | null;
  onUpdate: PresenceCallback | null;
  onSync: ((view: PresenceView) => void) | null;
  /** Resolves with the view once it holds a state; rejects if refused or closed. */
  readonly ready: Promise<PresenceView>;
  /** Users present, each once. */
  readonly uniqueUsers: number;
  /** Whether the state came with the current connection. */
  readonly synced: boolean;
  /** Stop the view (and its subscription, unless something else holds the channel). */
  close(): void;
}

/** A connection to a gobstopper RPC endpoint that comes back by itself. */
export class Client {
  /**
   * @param url ws://, wss://, or a path ("/rpc") on the page's own host.
   * @throws RangeError for an unknown `encoding`.
   */
  constructor(url: string, options?: ClientOptions);
  /** The full URL (ws: or wss:, with `encoding=msgpack` when chosen). */
  readonly url: string;
  readonly encoding: Encoding;
  timeout: number;
  backoff: number;
  maxBackoff: number;
  /** This connection's id, null while disconnected. */
  id: string | null;
  status: Status;
  /** Connections opened so far. */
  connections: number;
  /** `rpc.info`'s answer for the current connection. */
  info: Info | null;
  closeReason: CloseReason | null;
  /** After every (re)connection. */
  onopen: ((info: Info) => void) | null;
  /** When a connection drops or an attempt fails. */
  onclose: ((report: CloseReport) => void) | null;
  onstatus: ((status: Status, closeReason: CloseReason | null) => void) | null;
  /** Getting ("credentials") or renewing ("refresh") a credential failed. */
  onerror: ((error: unknown, stage: "credentials" | "refresh") => void) | null;
  /** Pushes other than events, messages and stream items. */
  onnotification: ((method: string, params: unknown) => void) | null;

  /** Start connecting (and reconnecting); resolves once connected, rejects with
   * TimeoutError after `timeout` (the client keeps trying). */
  connect(): Promise<Info>;
  /** Close and stop reconnecting; what waits rejects with ConnectionError. */
  close(): void;
  /** Rejects with CallError, TimeoutError or ConnectionError; throws TypeError for
   * params that are neither an array nor an object. */
  call<T = unknown>(method: string, params?: Params | null): Promise<T>;
  /** A notification (no answer); resolves once sent. */
  notify(method: string, params?: Params | null): Promise<void>;
  /** A named event; with `{ack: true}` a call, resolved with the handler's answer. */
  emit(event: string, data?: Params | null, options?: { ack?: false }): Promise<void>;
  emit<T = unknown>(
    event: string,
    data: Params | null | undefined,
    options: { ack: true },
  ): Promise<T>;
  on<T = unknown>(event: string, callback: EventCallback<T>): this;
  off(event: string, callback?: EventCallback<never>): this;
  /** A channel or pattern ("news.*", "chat.**"). */
  subscribe<T = unknown>(
    pattern: string,
    callback: MessageCallback<T>,
    options?: SubscribeOptions,
  ): Subscription;
  /** Where the subscriptions to channel `name` stand, or null. */
  position(name: string): Position | null;
  history<T = unknown>(
    channel: string,
    options?: { limit?: number | null; since?: Position | null },
  ): Promise<History<T>>;
  /** Resolves with the number of subscribers reached on the server's node. */
  publish(channel: string, data: unknown, options?: { echo?: boolean }): Promise<number>;
  /** A streaming method: `onItem` for each item; the promise resolves with the result. */
  stream<Item = unknown, Result = number>(
    method: string,
    params: Params | null | undefined,
    onItem: (item: Item) => void,
  ): StreamCall<Result>;
  /** A live view of the presence of channel `channel` (a name, not a pattern). */
  presence(channel: string, callbacks?: PresenceCallbacks): PresenceView;
  presenceState(channel: string): Promise<PresenceState>;
  /** Present a new credential now (needs the `credentials` option). */
  refresh(): Promise<Refreshed>;
}

/** The server answered with a JSON-RPC error. */
export class CallError extends Error {
  constructor(code: number, message: string, data?: unknown);
  readonly name: "CallError";
  code: number;
  data: unknown;
}

/** The connection dropped (or the client was closed) before the answer came. */
export class ConnectionError extends Error {
  constructor(message: string);
  readonly name: "ConnectionError";
}

/** No answer (or no connection) within the client's `timeout`. */
export class TimeoutError extends Error {
  constructor(message: string);
  readonly name: "TimeoutError";
}

/** The protocol's method names and error codes. */
export const RPC: {
  readonly VERSION: "2.0";
  readonly SUBSCRIBE: "rpc.subscribe";
  readonly UNSUBSCRIBE: "rpc.unsubscribe";
  readonly PUBLISH: "rpc.publish";
  readonly CANCEL: "rpc.cancel";
  readonly INFO: "rpc.info";
  readonly HISTORY: "rpc.history";
  readonly PRESENCE: "rpc.presence";
  readonly REFRESH: "rpc.refresh";
  readonly MESSAGE: "rpc.message";
  readonly EVENT: "rpc.event";
  readonly STREAM: "rpc.stream";
  readonly PRESENCE_DIFF: "rpc.presence_diff";
  readonly REFRESH_DUE: "rpc.refresh_due";
  readonly CLOSING_EVENT: "rpc.close";
  readonly PARSE_ERROR: -32700;
  readonly INVALID_REQUEST: -32600;
  readonly METHOD_NOT_FOUND: -32601;
  readonly INVALID_PARAMS: -32602;
  readonly INTERNAL_ERROR: -32603;
  readonly ACCESS_DENIED: -32001;
  readonly RATE_LIMITED: -32002;
  readonly TOO_MANY_SUBSCRIPTIONS: -32003;
  readonly TOO_MANY_TASKS: -32004;
  readonly UNAUTHORIZED: -32005;
  readonly REQUEST_CANCELLED: -32800;
};

/** Whether `channel` falls under `pattern` ("*": one segment, a final "**": one or more). */
export function matches(pattern: string, channel: string): boolean;

/** The MessagePack the client speaks with `encoding: "msgpack"`. */
export const msgpack: {
  /** @throws TypeError for what msgpack cannot carry (a symbol, a BigInt over 64 bits,
   * a cycle). */
  encode(value: unknown): Uint8Array;
  /** A timestamp (ext type -1) reads as its RFC 3339 text in UTC, as the server's JSON
   * writes a datetime.
   * @throws SyntaxError for bytes that are not one msgpack value (or another ext type). */
  decode(data: ArrayBuffer | ArrayBufferView): unknown;
};
