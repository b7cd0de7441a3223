// Test doubles for the client library: a manual clock and a WebSocket the test plays the
// server of. Nothing here touches the network or real timers.

import { Marquee } from '../marquee.js';

/** Timers that run only when the test advances the clock. */
export class FakeClock {
  nowMs = 1_000_000;
  #timers = new Map();
  #ids = 0;

  setTimeout = (fn, ms) => {
    this.#ids += 1;
    this.#timers.set(this.#ids, { at: this.nowMs + Math.max(0, ms), fn, id: this.#ids });
    return this.#ids;
  };

  clearTimeout = (id) => {
    this.#timers.delete(id);
  };

  now = () => this.nowMs;

  /** Runs every timer due within `ms` in time order (and what they schedule), then settles. */
  async advance(ms) {
    const end = this.nowMs + ms;
    for (;;) {
      const due = [...this.#timers.values()]
        .filter((t) => t.at <= end)
        .sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!due) break;
      this.#timers.delete(due.id);
      this.nowMs = due.at;
      due.fn();
      await settle();
    }
    this.nowMs = end;
    await settle();
  }

  /** When the earliest pending timer fires, relative to now (null when none). */
  get nextIn() {
    const times = [...this.#timers.values()].map((t) => t.at);
    return times.length ? Math.min(...times) - this.nowMs : null;
  }
}

/** Lets promise callbacks (the token provider, the first connect) run. */
export async function settle() {
  for (let i = 0; i < 10; i += 1) await Promise.resolve();
}

/** A WebSocket whose server side is the test. Every instance is kept in `FakeSocket.all`. */
export class FakeSocket {
  static all = [];
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSING = 2;
  static CLOSED = 3;

  readyState = 0;
  sent = [];
  closedWith = null;
  onopen = null;
  onmessage = null;
  onclose = null;
  onerror = null;

  constructor(url) {
    this.url = url;
    FakeSocket.all.push(this);
  }

  send(text) {
    if (this.readyState !== 1) throw new Error(`send on a socket in state ${this.readyState}`);
    this.sent.push(JSON.parse(text));
  }

  close(code = 1005, reason = '') {
    if (this.readyState >= 2) return;
    this.closedWith = { code, reason };
    this.readyState = 3;
    this.onclose?.({ code, reason, wasClean: true });
  }

  // --- the server's side --------------------------------------------------------------------

  accept() {
    this.readyState = 1;
    this.onopen?.({});
  }

  /** Refuses the handshake (401/403): the browser sees an error, then a 1006 close. */
  refuse() {
    this.readyState = 3;
    this.onerror?.({});
    this.onclose?.({ code: 1006, reason: '', wasClean: false });
  }

  deliver(frame) {
    this.onmessage?.({ data: typeof frame === 'string' ? frame : JSON.stringify(frame) });
  }

  /** The server ends the connection. */
  drop(code = 1001, reason = 'Going away') {
    this.readyState = 3;
    this.onclose?.({ code, reason, wasClean: true });
  }

  /** Sent frames with this action. */
  actions(action) {
    return this.sent.filter((m) => m.action === action);
  }

  /** Answers every request sent so far that has no answer yet the way the server would. */
  answerAll({ connectionId = 'conn', expiresAt = null } = {}) {
    this.answered ??= 0;
    const pending = this.sent.slice(this.answered);
    this.answered = this.sent.length;
    for (const m of pending) {
      if (m.action === 'ping') {
        this.deliver({ type: 'pong', connectionId, expiresAt, ref: m.ref });
      } else if (m.action === 'publish') {
        this.deliver({ type: 'published', id: `msg-${m.ref}`, ref: m.ref });
      } else {
        this.deliver({ type: `${m.action}d`, artists: m.artists, ref: m.ref });
      }
    }
  }
}

/** An event target standing in for the browser's window (only `online` matters). */
export class FakeWindow {
  listeners = new Map();
  addEventListener(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
  }
  removeEventListener(type, fn) {
    this.listeners.get(type)?.delete(fn);
  }
  dispatch(type) {
    for (const fn of this.listeners.get(type) ?? []) fn({ type });
  }
}

/**
 * A Marquee on fakes, with everything it emits recorded in `events` (in order) and the tokens it
 * asked for counted. `random` defaults to 0.5.
 */
export function harness(options = {}) {
  FakeSocket.all = [];
  const clock = new FakeClock();
  const window = new FakeWindow();
  const events = [];
  let tokens = 0;
  const client = new Marquee({
    url: 'ws://gateway.test/',
    token: async () => {
      tokens += 1;
      return `token-${tokens}`;
    },
    WebSocket: FakeSocket,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    now: clock.now,
    random: () => 0.5,
    onlineTarget: window,
    ...options,
  });
  for (const type of [
    'notification',
    'gap',
    'state',
    'error',
    'subscribed',
    'unsubscribed',
    'message',
    'welcome',
    'joined',
    'left',
    'announcement',
  ]) {
    client.on(type, (...args) => events.push([type, ...args]));
  }
  return {
    client,
    clock,
    window,
    events,
    get tokens() {
      return tokens;
    },
    sockets: () => FakeSocket.all,
    last: () => FakeSocket.all.at(-1),
    of: (type) => events.filter((e) => e[0] === type).map((e) => e.slice(1)),
  };
}

/** A notification frame as the server sends it. */
export function notification(id, seq, artist = 'Adele') {
  return {
    type: 'notification',
    id,
    seq,
    artist,
    detail: { artist, venue: 'Hall' },
    time: '2026-11-23T09:00:00Z',
  };
}

/** A room message frame as the server sends it to the other subscribers. */
export function message(id, data, { artist = 'Adele', from = 'bob' } = {}) {
  return { type: 'message', id, artist, from, data, time: '2026-11-23T09:00:01Z' };
}

/** An operator's announcement as the server sends it to every connection. */
export function announcement(id, text = 'Sale delayed 10 minutes') {
  return { type: 'announcement', id, message: text, time: '2026-11-23T09:00:02Z' };
}

/** A harness whose first socket is open, its ping answered. */
export async function connected(options) {
  const h = harness(options);
  await settle();
  h.last().accept();
  h.last().answerAll();
  return h;
}

/** Reconnects after the server drops the socket (backoff with random 0.5: 250 ms first). */
export async function reconnect(h) {
  h.last().drop();
  await h.clock.advance(h.events.at(-1)[2].delayMs);
  h.last().accept();
}
