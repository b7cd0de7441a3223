// Type declarations for marquee.js, Marquee's client library.

/** Connection states, in the order a client usually goes through them. */
export type State = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** `{"type":"notification",…}`: tickets went on sale. */
export interface Notification {
  type: 'notification';
  /** The event's id: the same event always has the same id (duplicates are dropped by it). */
  id: string;
  /** Per artist, +1 per notification. */
  seq: number;
  /** The event's spelling of the name (may differ from the one subscribed with). */
  artist: string;
  /** The EventBridge event's `detail`, whole. */
  detail: Record<string, unknown>;
  /** The event's time, RFC 3339. */
  time: string;
}

/** `{"type":"gap",…}`: the server no longer holds seqs `from` to `to` (inclusive) of `artist`. */
export interface Gap {
  type: 'gap';
  artist: string;
  from: number;
  to: number;
  /**
   * The catch-up stopped short (it ran out of time, or the server failed to read or send them):
   * the seqs are still held, and the client asks for them again (with backoff while nothing
   * new comes of it).
   */
  retry?: true;
}

/** `{"type":"subscribed",…}` or `{"type":"unsubscribed",…}`. */
export interface SubscriptionReply {
  type: 'subscribed' | 'unsubscribed';
  artists: string[];
  /**
   * `subscribed` only: each artist's latest seq as the subscription took effect. An artist the
   * connection was already subscribed to may be left out (its seq could not be read just then).
   * For an artist the client already tracks, a seq ahead of what arrived is waited for (catch-up
   * or gap) and asked for again after `holeGraceMs` without progress.
   */
  seq?: Record<string, number>;
  ref?: string;
}

/** `{"type":"published",…}`: the reply to `publish`. */
export interface Published {
  type: 'published';
  /** The message's id (the other subscribers get it as `message.id`). */
  id: string;
  ref?: string;
}

/** `{"type":"message",…}`: someone else said `data` in `artist`'s fan room. */
export interface Message {
  type: 'message';
  /** The same message always has the same id (duplicates are dropped by it). */
  id: string;
  artist: string;
  /** The sender's user id (the `sub` of its token). */
  from: string;
  /** What was published, as it was published. */
  data: unknown;
  /** When the server took it, RFC 3339. */
  time: string;
}

/** `{"type":"welcome",…}`: after `subscribed`, per artist: how many are in the room, you included. */
export interface Welcome {
  type: 'welcome';
  artist: string;
  subscribers: number;
}

/**
 * `{"type":"joined",…}` or `{"type":"left",…}`: someone subscribed to the room, or left it
 * (unsubscribed, disconnected, or their connection was found gone). Only in rooms of at most 100
 * subscribers; `subscribers` is the count after the change.
 */
export interface Presence {
  type: 'joined' | 'left';
  artist: string;
  /** Their user id (the `sub` of their token). */
  user: string;
  subscribers: number;
}

/** `{"type":"announcement",…}`: the operator's word, to every connection. */
export interface Announcement {
  type: 'announcement';
  /** The event's id (duplicates are dropped by it). */
  id: string;
  message: string;
  /** RFC 3339. */
  time: string;
}

/** Set with the `reconnecting` state: how long until the next attempt. */
export interface StateDetail {
  delayMs?: number;
  /** Failed attempts in a row, this one included. */
  attempt?: number;
}

/**
 * An `error` frame from the server (its `code`: `forbidden`, `invalid_artists`, `rate_limited`,
 * `data_too_large`, `busy`, `internal_error`, …) or a failure of the client: `closed`,
 * `token_failed`, `connect_failed`, `open_timeout`, `reply_timeout` (one of the library's own
 * subscribes got no reply within `replyTimeoutMs`), `invalid_frame`, `unsupported_frame`,
 * `data_too_large` (refused before sending), `connection_lost` (a publish whose connection ended
 * before the server answered), `revoked` (the server revoked the user and closes the connection;
 * only a token issued after that connects).
 */
export class MarqueeError extends Error {
  constructor(code: string, message?: string, ref?: string);
  readonly code: string;
  readonly ref?: string;
  /**
   * On an `error` event about one of the library's own subscribes (after a reconnect, for a
   * hole, for a catch-up cut short): the artists it was for. With `retryInMs` (`busy`,
   * `internal_error`, `rate_limited`, `reply_timeout`) they are asked for again then; without it
   * the server refused them (`forbidden`, …): they are dropped from `subscriptions` and not
   * asked for again.
   */
  readonly artists?: string[];
  /** When the artists are asked for again (full-jitter backoff, `backoffBaseMs` to `backoffCapMs`). */
  readonly retryInMs?: number;
}

export interface Listeners {
  notification: (notification: Notification) => void;
  gap: (gap: Gap) => void;
  state: (state: State, detail: StateDetail) => void;
  error: (error: MarqueeError) => void;
  /** Every confirmation, including the automatic ones after a reconnect. */
  subscribed: (reply: SubscriptionReply) => void;
  unsubscribed: (reply: SubscriptionReply) => void;
  /** Every JSON text frame in or out (for logs and debugging; frames never hold the token). */
  frame: (direction: 'in' | 'out', text: string) => void;
  /** Someone else's message in a room you are subscribed to (never your own: you get `published`). */
  message: (message: Message) => void;
  /** After every `subscribed`, the automatic ones too: per artist, the room's size. */
  welcome: (welcome: Welcome) => void;
  joined: (presence: Presence) => void;
  left: (presence: Presence) => void;
  announcement: (announcement: Announcement) => void;
}

/** Durations in milliseconds. */
export interface Tuning {
  /** Backoff: the first window (default 500). */
  backoffBaseMs?: number;
  /** Backoff: the largest window (default 30 000). */
  backoffCapMs?: number;
  /** A connection up this long resets the backoff (default 10 000). */
  stableAfterMs?: number;
  /** Token plus handshake (plus a replacement's subscriptions) must take less (default 10 000). */
  openTimeoutMs?: number;
  /** Ping after this much silence from the client (default 300 000; API Gateway idles out at 600 000). */
  pingIntervalMs?: number;
  /** Replace the connection min(renewLeadMs, renewLeadFraction × lifetime left) before it ends. */
  renewLeadMs?: number;
  renewLeadFraction?: number;
  /** Less lifetime than this left: do not replace early, reconnect when it ends (default 1 000). */
  minRenewLifetimeMs?: number;
  /** Ids remembered to drop duplicates, per kind: notifications, messages, announcements (default 1 000). */
  dedupeSize?: number;
  /**
   * A hole in an artist's seqs (or a `subscribed.seq` ahead of what arrived) still open this long
   * without progress is asked for again with since (default 2 000).
   */
  holeGraceMs?: number;
  /** One of the library's own subscribes unanswered this long is asked for again (default 10 000). */
  replyTimeoutMs?: number;
}

export interface MarqueeOptions extends Tuning {
  /** The WebSocket API, e.g. `wss://abc.execute-api.eu-west-1.amazonaws.com/prod`. */
  url: string;
  /** Called at every connect: a fresh token each time. */
  token: () => string | Promise<string>;
  /** Defaults to `globalThis.WebSocket`. */
  WebSocket?: new (url: string) => WebSocket;
  /** For tests: timers, clock and randomness. */
  setTimeout?: (fn: () => void, ms: number) => unknown;
  clearTimeout?: (id: any) => void;
  now?: () => number;
  random?: () => number;
  /** Where `online` events come from (default `globalThis`; `null` for none). */
  onlineTarget?: Pick<EventTarget, 'addEventListener' | 'removeEventListener'> | null;
}

export interface SubscribeOptions {
  /** The last seq the application saw per artist (kept across page loads, say). */
  since?: Record<string, number>;
}

export class Marquee {
  /** Starts connecting right after the calling code has run (listeners added at once see `connecting`). */
  constructor(options: MarqueeOptions);
  readonly state: State;
  /** The artists subscribed to, as the application spelled them. */
  readonly subscriptions: string[];
  /** The current connection's id (from `pong`), or null. */
  readonly connectionId: string | null;
  /** When the server will end the current connection (from `pong`), or null. */
  readonly expiresAt: Date | null;
  /** The current WebSocket, for diagnostics and tests; send nothing on it. */
  readonly socket: WebSocket | null;
  on<K extends keyof Listeners>(type: K, fn: Listeners[K]): this;
  off<K extends keyof Listeners>(type: K, fn: Listeners[K]): this;
  /** Now and after every reconnect; resolves on `subscribed`, rejects with the error frame. */
  subscribe(artists: string | string[], options?: SubscribeOptions): Promise<SubscriptionReply>;
  unsubscribe(artists: string | string[]): Promise<SubscriptionReply>;
  /**
   * Says `data` (any JSON value, at most `MAX_DATA_BYTES` as JSON) in `artist`'s room; the token
   * must allow it (`publish` claim). Resolves on `published`; rejects with the error frame, or
   * `connection_lost` when the socket ended before the reply (never sent twice). Made while not
   * connected, it goes out once connected.
   */
  publish(artist: string, data: unknown): Promise<Published>;
  /** While waiting to reconnect (`reconnecting`), reconnects now instead (a "Retry now" button). */
  reconnect(): void;
  /** For good: waiting requests reject with code `closed`. */
  close(): void;
}

export const MAX_ARTISTS_PER_MESSAGE: 25;
/** The largest `data` of a room message, in bytes of its JSON (8 KiB). */
export const MAX_DATA_BYTES: 8192;
export const DEFAULTS: Readonly<Required<Tuning>>;
/** The key the server matches artists by: NFKC, full case folding, NFKC, whitespace collapsed. */
export function artistKey(name: string): string;
/** Full jitter: uniformly random in [0, min(cap, base × 2^attempt)). */
export function backoffDelay(attempt: number, baseMs: number, capMs: number, random: () => number): number;
/** When to replace a connection ending in `remainingMs`, or null when too little is left. */
export function renewDelay(
  remainingMs: number,
  tuning: Pick<Required<Tuning>, 'renewLeadMs' | 'renewLeadFraction' | 'minRenewLifetimeMs'>,
): number | null;
/**
 * `url` with `token=<token>` in its query string, and `replaces=<connection id>` when given (a
 * renewal names the connection it replaces, for the server's per-user cap).
 */
export function withToken(url: string, token: string, replaces?: string | null): string;
