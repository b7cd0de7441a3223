// Marquee's client library: one connection to the Marquee WebSocket API that does not miss the
// sale. An ES module with no dependencies and no build step, for browsers and Node 22+.
//
// - Connects with a fresh token from an async provider at every connect (`?token=` on the URL).
// - Reconnects with full-jitter exponential backoff, at once when the browser comes back online.
// - Subscribes again after every reconnect with `since` (per artist, the last seq seen without a
//   hole before it), so the server sends what was missed, or a `gap` when it no longer holds it.
//   Its own subscribes are asked again when the server was busy or failing (or did not answer),
//   with backoff; an artist the server refuses (`forbidden`) is dropped and reported.
// - Drops duplicate notifications, room messages and announcements by id (delivery is at least
//   once).
// - Publishes to fan rooms (`publish`), and passes on what rooms say: `welcome`, `joined`, `left`,
//   `message`; and the operator's `announcement`s.
// - Pings before API Gateway's idle timeout, and replaces the connection shortly before the
//   server ends it (`expiresAt` from `pong`): make before break, so nothing is missed.
//
// The token is never logged, emitted or put in an error message.

/** Artists per subscribe message the server accepts. */
export const MAX_ARTISTS_PER_MESSAGE = 25;

/** The largest `data` a room message may carry, in bytes of its JSON (UTF-8). */
export const MAX_DATA_BYTES = 8 * 1024;

/** What a `Marquee` does unless told otherwise (all durations in milliseconds). */
export const DEFAULTS = Object.freeze({
  backoffBaseMs: 500,
  backoffCapMs: 30_000,
  // A connection up this long resets the backoff.
  stableAfterMs: 10_000,
  // Token fetch plus handshake (plus, when replacing a connection, its subscriptions).
  openTimeoutMs: 10_000,
  // A ping after this much silence from the client (API Gateway closes idle sockets at 10 min).
  pingIntervalMs: 5 * 60_000,
  // Replace the connection min(renewLeadMs, renewLeadFraction × its remaining lifetime) before
  // it ends.
  renewLeadMs: 30_000,
  renewLeadFraction: 0.2,
  // A connection with less lifetime than this left is not replaced early (it just reconnects).
  minRenewLifetimeMs: 1_000,
  // Ids remembered to drop duplicates, per kind (notifications, messages, announcements).
  dedupeSize: 1_000,
  // A hole in an artist's seqs (n, then n + 2) still open this long: subscribe again with
  // `since: n`, and the server sends the missing one or a gap.
  holeGraceMs: 2_000,
  // One of the library's own subscribes unanswered this long is asked again (after the backoff).
  replyTimeoutMs: 10_000,
});

const STATES = ['connecting', 'open', 'reconnecting', 'closed'];
const EVENTS = [
  'notification',
  'gap',
  'state',
  'error',
  'subscribed',
  'unsubscribed',
  'frame',
  'message',
  'welcome',
  'joined',
  'left',
  'announcement',
];
const OPEN = 1; // WebSocket.OPEN
// Error codes after which the same subscribe may well succeed: asked again, with backoff.
// (`reply_timeout` is the library's own: no reply in time.)
const TRANSIENT = new Set(['busy', 'internal_error', 'rate_limited', 'reply_timeout']);
// Seqs seen above a hole, per artist, before the hole is given up on.
const MAX_AHEAD = 1_000;

// Where the server's full case folding (Unicode's CaseFolding.txt, statuses C and F, no Turkic
// rules: the `caseless` crate) differs from lower-casing one code point: `ß` is `ss`, `ς` is
// `σ`, Cherokee folds to its capitals, `ᾳ` is `αι`, ... As `hex=hex.hex` entries; one that maps a
// code point to itself has a lower case but no folding (Cherokee capitals, and letters newer than
// the server's folding data). Generated from the server's folding by shared/tests/client.rs,
// which fails when it is stale (rewrite it with `MARQUEE_WRITE_FOLDS=1 cargo test --workspace
// --test client`); never edit it by hand.
const FOLD_TABLE = [
  'b5=3bc df=73.73 149=2bc.6e 17f=73 1f0=6a.30c 345=3b9 390=3b9.308.301 3b0=3c5.308.301 3c2=3c3',
  '3d0=3b2 3d1=3b8 3d5=3c6 3d6=3c0 3f0=3ba 3f1=3c1 3f5=3b5 587=565.582 13a0=13a0 13a1=13a1',
  '13a2=13a2 13a3=13a3 13a4=13a4 13a5=13a5 13a6=13a6 13a7=13a7 13a8=13a8 13a9=13a9 13aa=13aa',
  '13ab=13ab 13ac=13ac 13ad=13ad 13ae=13ae 13af=13af 13b0=13b0 13b1=13b1 13b2=13b2 13b3=13b3',
  '13b4=13b4 13b5=13b5 13b6=13b6 13b7=13b7 13b8=13b8 13b9=13b9 13ba=13ba 13bb=13bb 13bc=13bc',
  '13bd=13bd 13be=13be 13bf=13bf 13c0=13c0 13c1=13c1 13c2=13c2 13c3=13c3 13c4=13c4 13c5=13c5',
  '13c6=13c6 13c7=13c7 13c8=13c8 13c9=13c9 13ca=13ca 13cb=13cb 13cc=13cc 13cd=13cd 13ce=13ce',
  '13cf=13cf 13d0=13d0 13d1=13d1 13d2=13d2 13d3=13d3 13d4=13d4 13d5=13d5 13d6=13d6 13d7=13d7',
  '13d8=13d8 13d9=13d9 13da=13da 13db=13db 13dc=13dc 13dd=13dd 13de=13de 13df=13df 13e0=13e0',
  '13e1=13e1 13e2=13e2 13e3=13e3 13e4=13e4 13e5=13e5 13e6=13e6 13e7=13e7 13e8=13e8 13e9=13e9',
  '13ea=13ea 13eb=13eb 13ec=13ec 13ed=13ed 13ee=13ee 13ef=13ef 13f0=13f0 13f1=13f1 13f2=13f2',
  '13f3=13f3 13f4=13f4 13f5=13f5 13f8=13f0 13f9=13f1 13fa=13f2 13fb=13f3 13fc=13f4 13fd=13f5',
  '1c80=432 1c81=434 1c82=43e 1c83=441 1c84=442 1c85=442 1c86=44a 1c87=463 1c88=a64b 1e96=68.331',
  '1e97=74.308 1e98=77.30a 1e99=79.30a 1e9a=61.2be 1e9b=1e61 1e9e=73.73 1f50=3c5.313',
  '1f52=3c5.313.300 1f54=3c5.313.301 1f56=3c5.313.342 1f80=1f00.3b9 1f81=1f01.3b9 1f82=1f02.3b9',
  '1f83=1f03.3b9 1f84=1f04.3b9 1f85=1f05.3b9 1f86=1f06.3b9 1f87=1f07.3b9 1f88=1f00.3b9',
  '1f89=1f01.3b9 1f8a=1f02.3b9 1f8b=1f03.3b9 1f8c=1f04.3b9 1f8d=1f05.3b9 1f8e=1f06.3b9',
  '1f8f=1f07.3b9 1f90=1f20.3b9 1f91=1f21.3b9 1f92=1f22.3b9 1f93=1f23.3b9 1f94=1f24.3b9',
  '1f95=1f25.3b9 1f96=1f26.3b9 1f97=1f27.3b9 1f98=1f20.3b9 1f99=1f21.3b9 1f9a=1f22.3b9',
  '1f9b=1f23.3b9 1f9c=1f24.3b9 1f9d=1f25.3b9 1f9e=1f26.3b9 1f9f=1f27.3b9 1fa0=1f60.3b9',
  '1fa1=1f61.3b9 1fa2=1f62.3b9 1fa3=1f63.3b9 1fa4=1f64.3b9 1fa5=1f65.3b9 1fa6=1f66.3b9',
  '1fa7=1f67.3b9 1fa8=1f60.3b9 1fa9=1f61.3b9 1faa=1f62.3b9 1fab=1f63.3b9 1fac=1f64.3b9',
  '1fad=1f65.3b9 1fae=1f66.3b9 1faf=1f67.3b9 1fb2=1f70.3b9 1fb3=3b1.3b9 1fb4=3ac.3b9 1fb6=3b1.342',
  '1fb7=3b1.342.3b9 1fbc=3b1.3b9 1fbe=3b9 1fc2=1f74.3b9 1fc3=3b7.3b9 1fc4=3ae.3b9 1fc6=3b7.342',
  '1fc7=3b7.342.3b9 1fcc=3b7.3b9 1fd2=3b9.308.300 1fd3=3b9.308.301 1fd6=3b9.342 1fd7=3b9.308.342',
  '1fe2=3c5.308.300 1fe3=3c5.308.301 1fe4=3c1.313 1fe6=3c5.342 1fe7=3c5.308.342 1ff2=1f7c.3b9',
  '1ff3=3c9.3b9 1ff4=3ce.3b9 1ff6=3c9.342 1ff7=3c9.342.3b9 1ffc=3c9.3b9 a7ce=a7ce a7d2=a7d2',
  'a7d4=a7d4 ab70=13a0 ab71=13a1 ab72=13a2 ab73=13a3 ab74=13a4 ab75=13a5 ab76=13a6 ab77=13a7',
  'ab78=13a8 ab79=13a9 ab7a=13aa ab7b=13ab ab7c=13ac ab7d=13ad ab7e=13ae ab7f=13af ab80=13b0',
  'ab81=13b1 ab82=13b2 ab83=13b3 ab84=13b4 ab85=13b5 ab86=13b6 ab87=13b7 ab88=13b8 ab89=13b9',
  'ab8a=13ba ab8b=13bb ab8c=13bc ab8d=13bd ab8e=13be ab8f=13bf ab90=13c0 ab91=13c1 ab92=13c2',
  'ab93=13c3 ab94=13c4 ab95=13c5 ab96=13c6 ab97=13c7 ab98=13c8 ab99=13c9 ab9a=13ca ab9b=13cb',
  'ab9c=13cc ab9d=13cd ab9e=13ce ab9f=13cf aba0=13d0 aba1=13d1 aba2=13d2 aba3=13d3 aba4=13d4',
  'aba5=13d5 aba6=13d6 aba7=13d7 aba8=13d8 aba9=13d9 abaa=13da abab=13db abac=13dc abad=13dd',
  'abae=13de abaf=13df abb0=13e0 abb1=13e1 abb2=13e2 abb3=13e3 abb4=13e4 abb5=13e5 abb6=13e6',
  'abb7=13e7 abb8=13e8 abb9=13e9 abba=13ea abbb=13eb abbc=13ec abbd=13ed abbe=13ee abbf=13ef',
  'fb00=66.66 fb01=66.69 fb02=66.6c fb03=66.66.69 fb04=66.66.6c fb05=73.74 fb06=73.74 fb13=574.576',
  'fb14=574.565 fb15=574.56b fb16=57e.576 fb17=574.56d 16ea0=16ea0 16ea1=16ea1 16ea2=16ea2',
  '16ea3=16ea3 16ea4=16ea4 16ea5=16ea5 16ea6=16ea6 16ea7=16ea7 16ea8=16ea8 16ea9=16ea9 16eaa=16eaa',
  '16eab=16eab 16eac=16eac 16ead=16ead 16eae=16eae 16eaf=16eaf 16eb0=16eb0 16eb1=16eb1 16eb2=16eb2',
  '16eb3=16eb3 16eb4=16eb4 16eb5=16eb5 16eb6=16eb6 16eb7=16eb7 16eb8=16eb8',
].join(' ');
const FOLDS = new Map(
  FOLD_TABLE.split(' ').map((entry) => {
    const [from, to] = entry.split('=');
    const codePoints = (hex) => hex.split('.').map((h) => Number.parseInt(h, 16));
    return [String.fromCodePoint(...codePoints(from)), String.fromCodePoint(...codePoints(to))];
  }),
);

/**
 * The key the server matches artists by (`Artist::parse` in shared/src/domain.rs): NFKC, full
 * case folding (one code point at a time, so a final `ς` folds like any other sigma), NFKC
 * again, whitespace collapsed. It does not check the name: the server refuses what it will not
 * take (empty, too long, control or format characters).
 */
export function artistKey(name) {
  let folded = '';
  for (const c of String(name).normalize('NFKC')) folded += FOLDS.get(c) ?? c.toLowerCase();
  return folded.normalize('NFKC').replace(/\s+/g, ' ').trim();
}

/**
 * Full jitter: a uniformly random wait in [0, min(cap, base × 2^attempt)), attempt counting from
 * 0. `random` returns a number in [0, 1), like `Math.random`.
 */
export function backoffDelay(attempt, baseMs, capMs, random) {
  const span = Math.min(capMs, baseMs * 2 ** attempt);
  return Math.floor(random() * span);
}

/**
 * When to replace a connection that ends in `remainingMs`: `min(leadMs, fraction × remaining)`
 * before its end; `null` when too little lifetime is left to bother.
 */
export function renewDelay(remainingMs, { renewLeadMs, renewLeadFraction, minRenewLifetimeMs }) {
  if (!Number.isFinite(remainingMs) || remainingMs < minRenewLifetimeMs) return null;
  const lead = Math.min(renewLeadMs, remainingMs * renewLeadFraction);
  return Math.floor(remainingMs - lead);
}

/**
 * `url` with `token=<token>` in its query string (kept or replaced, nothing else changed), and
 * `replaces=<connection id>` when given: a renewal names the connection it replaces, so the
 * server's per-user cap lets the overlap through.
 */
export function withToken(url, token, replaces = null) {
  const base = globalThis.location?.href;
  const parsed = base ? new URL(url, base) : new URL(url);
  parsed.searchParams.set('token', token);
  if (replaces) parsed.searchParams.set('replaces', replaces);
  else parsed.searchParams.delete('replaces');
  return parsed.href;
}

/** The ids seen most recently, oldest forgotten first. */
class Recent {
  #ids = new Set();
  #size;

  constructor(size) {
    this.#size = size;
  }

  /** True the first time `id` is seen (and remembers it), false for a duplicate. */
  first(id) {
    if (this.#ids.has(id)) return false;
    this.#ids.add(id);
    if (this.#ids.size > this.#size) this.#ids.delete(this.#ids.values().next().value);
    return true;
  }
}

/** An error frame from the server, or a failure of the library (`code` says which). */
export class MarqueeError extends Error {
  constructor(code, message, ref) {
    super(message || code);
    this.name = 'MarqueeError';
    this.code = code;
    if (ref !== undefined) this.ref = ref;
  }
}

/**
 * Per artist, the highest seq up to which nothing is missing (`last`), the seqs seen above
 * a hole, and the latest seq the server said it has (`latest`, from `subscribed`). `since` is
 * `last`: a live notification that overtakes catch-up must not move it.
 */
class SeqTrack {
  last = null;
  ahead = new Set();
  latest = null;
  // Asking again for what is missing: how many asks in a row brought nothing, and `last` then.
  asks = 0;
  askedAt = undefined;

  /** Whether anything below a seq seen, or up to `latest`, is missing. */
  missing() {
    return this.ahead.size > 0 || (this.latest !== null && this.last !== null && this.last < this.latest);
  }

  saw(seq) {
    if (this.last === null) this.last = seq;
    else if (seq === this.last + 1) this.last = seq;
    else if (seq > this.last) this.ahead.add(seq);
    this.#absorb();
  }

  /** The server no longer holds `from..=to`: nothing to wait for up to `to`. */
  skip(to) {
    if (this.last === null || to > this.last) this.last = to;
    this.#absorb();
  }

  #absorb() {
    while (this.ahead.delete(this.last + 1)) this.last += 1;
    for (const seq of this.ahead) if (seq <= this.last) this.ahead.delete(seq);
    if (this.ahead.size > MAX_AHEAD) {
      // A hole that never fills: stop waiting for it.
      this.last = Math.max(...this.ahead);
      this.ahead.clear();
    }
  }
}

/**
 * `error` naming the artists a subscribe of the library's own failed for: with `retryInMs`,
 * they are asked for again then; without it, the server refused them and they are dropped.
 */
function about(error, artists, retryInMs) {
  error.artists = artists;
  if (retryInMs !== undefined) error.retryInMs = retryInMs;
  return error;
}

let instances = 0;

/** One logical connection to Marquee, kept alive across socket drops, expiry and token renewal. */
export class Marquee {
  #url;
  #token;
  #WebSocket;
  #setTimeout;
  #clearTimeout;
  #now;
  #random;
  #options;
  #online;
  #refPrefix;
  #listeners = new Map();
  #state = null;
  #closed = false;
  #attempt = 0;
  #retryTimer = null;
  #stableTimer = null;
  #current = null; // the link requests go out on
  #next = null; // a link being dialled (a connect, or a renewal of #current)
  #draining = new Set(); // replaced links waiting for their publishes' replies
  #requests = new Map(); // ref → request, in the order sent
  #refs = 0;
  #subscriptions = new Map(); // artist key → { name, confirmed }
  #seqs = new Map(); // artist key → SeqTrack
  #askTimers = new Map(); // artist key → timer that asks again for what it is missing
  #renewals = 0; // renewals failed in a row (their backoff)
  #seen; // per frame type with ids: a Recent

  constructor(options) {
    if (!options || typeof options !== 'object') throw new TypeError('Marquee: options are required');
    const { url, token } = options;
    if (typeof url !== 'string' || url === '') throw new TypeError('Marquee: `url` must be a WebSocket URL');
    if (typeof token !== 'function') {
      throw new TypeError('Marquee: `token` must be a function returning the token or a promise of it');
    }
    const WebSocketClass = options.WebSocket ?? globalThis.WebSocket;
    if (typeof WebSocketClass !== 'function') {
      throw new TypeError('Marquee: no WebSocket constructor here; pass one as the `WebSocket` option');
    }
    this.#url = url;
    this.#token = token;
    this.#WebSocket = WebSocketClass;
    this.#setTimeout = options.setTimeout ?? ((fn, ms) => globalThis.setTimeout(fn, ms));
    this.#clearTimeout = options.clearTimeout ?? ((id) => globalThis.clearTimeout(id));
    this.#now = options.now ?? (() => Date.now());
    this.#random = options.random ?? Math.random;
    this.#options = { ...DEFAULTS };
    for (const key of Object.keys(DEFAULTS)) {
      if (options[key] === undefined) continue;
      if (typeof options[key] !== 'number' || !(options[key] >= 0)) {
        throw new TypeError(`Marquee: \`${key}\` must be a non-negative number`);
      }
      this.#options[key] = options[key];
    }
    this.#seen = {
      notification: new Recent(this.#options.dedupeSize),
      message: new Recent(this.#options.dedupeSize),
      announcement: new Recent(this.#options.dedupeSize),
    };
    this.#refPrefix = `m${(instances += 1).toString(36)}.`;
    const online = options.onlineTarget === undefined ? globalThis : options.onlineTarget;
    if (online && typeof online.addEventListener === 'function') {
      this.#online = online;
      online.addEventListener('online', this.#onOnline);
    }
    // After the caller's synchronous code, so listeners added right away see `connecting`.
    Promise.resolve().then(() => this.#connect());
  }

  /** `connecting`, `open`, `reconnecting` or `closed`. */
  get state() {
    return this.#state ?? 'connecting';
  }

  /** The artists the application subscribed to (as it spelled them), in order. */
  get subscriptions() {
    return [...this.#subscriptions.values()].map((s) => s.name);
  }

  /** The current connection's id (from its `pong`), or null. */
  get connectionId() {
    return this.#current?.connectionId ?? null;
  }

  /** When the server will end the current connection (from its `pong`), or null. */
  get expiresAt() {
    const at = this.#current?.expiresAt;
    return Number.isFinite(at) ? new Date(at) : null;
  }

  /** The current WebSocket, for diagnostics and tests; send nothing on it. */
  get socket() {
    return this.#current?.ws ?? null;
  }

  /** Adds a listener for `type`. */
  on(type, fn) {
    if (!EVENTS.includes(type)) throw new TypeError(`Marquee: no event ${JSON.stringify(type)} (one of ${EVENTS.join(', ')})`);
    if (typeof fn !== 'function') throw new TypeError('Marquee: a listener must be a function');
    if (!this.#listeners.has(type)) this.#listeners.set(type, new Set());
    this.#listeners.get(type).add(fn);
    return this;
  }

  /** Removes a listener added with `on`. */
  off(type, fn) {
    this.#listeners.get(type)?.delete(fn);
    return this;
  }

  /**
   * Subscribes to `artists` (a name or a list), now and after every reconnect. Resolves with the
   * server's `subscribed` frame; rejects with a `MarqueeError` on its `error` frame (the artists
   * are then forgotten), or when the client is closed first. `options.since` ({ name: seq })
   * resumes from seqs the application kept (across page loads, say).
   */
  subscribe(artists, options = {}) {
    let names;
    try {
      names = artistList(artists);
    } catch (error) {
      return Promise.reject(error);
    }
    const added = [];
    for (const name of names) {
      const key = artistKey(name);
      if (!this.#subscriptions.has(key)) {
        this.#subscriptions.set(key, { name, confirmed: false });
        added.push(key);
      }
      const since = options.since?.[name];
      if (Number.isSafeInteger(since) && since >= 0 && !this.#seqs.has(key)) {
        this.#seqs.set(key, new SeqTrack());
        this.#seqs.get(key).skip(since);
      }
    }
    return this.#ask('subscribe', names, added);
  }

  /** Unsubscribes from `artists`. Resolves with the `unsubscribed` frame; rejects like subscribe. */
  unsubscribe(artists) {
    let names;
    try {
      names = artistList(artists);
    } catch (error) {
      return Promise.reject(error);
    }
    for (const name of names) this.#dropArtist(artistKey(name));
    return this.#ask('unsubscribe', names, []);
  }

  /**
   * Says `data` (any JSON value, at most `MAX_DATA_BYTES` as JSON) in `artist`'s fan room: every
   * other connection subscribed to the artist gets it as a `message` (the sender does not). The
   * token must allow it (its `publish` claim); being subscribed is not needed. Resolves with the
   * server's `published` frame (the message's `id`); rejects with a `MarqueeError`: the server's
   * error (`forbidden`, `rate_limited`, `data_too_large`, …), `data_too_large` before sending,
   * `closed`, or `connection_lost` when the socket ended before the server answered (the message
   * may or may not have gone out: it is not sent again, as a resent message would be a second
   * message). Made while not connected, it waits and goes out once connected.
   */
  publish(artist, data) {
    let text;
    try {
      if (typeof artist !== 'string' || artist.trim() === '') {
        throw new TypeError('Marquee: the artist must be a non-empty string');
      }
      text = data === undefined ? undefined : JSON.stringify(data);
      if (text === undefined) throw new TypeError('Marquee: data must be a JSON value');
    } catch (error) {
      // JSON.stringify throws on cycles and BigInts.
      return Promise.reject(error instanceof TypeError ? error : new TypeError(`Marquee: data is not JSON (${describe(error)})`));
    }
    const bytes = new TextEncoder().encode(text).length;
    if (bytes > MAX_DATA_BYTES) {
      return Promise.reject(new MarqueeError('data_too_large', `data is ${bytes} bytes as JSON, more than ${MAX_DATA_BYTES}`));
    }
    return this.#ask('publish', [artist], [], JSON.parse(text));
  }

  /** While waiting to reconnect (`reconnecting`), reconnects now instead. */
  reconnect() {
    if (this.#state === 'reconnecting') this.#connect();
  }

  /** Closes the connection for good; requests still waiting reject with code `closed`. */
  close() {
    if (this.#closed) return;
    this.#closed = true;
    this.#clear('retryTimer');
    this.#clear('stableTimer');
    for (const timer of this.#askTimers.values()) this.#clearTimeout(timer);
    this.#askTimers.clear();
    this.#online?.removeEventListener?.('online', this.#onOnline);
    for (const link of [this.#current, this.#next, ...this.#draining]) if (link) this.#drop(link, 1000, 'Client closed');
    this.#current = null;
    this.#next = null;
    const requests = [...this.#requests.values()];
    this.#requests.clear();
    for (const request of requests) request.reject?.(new MarqueeError('closed', 'the client was closed'));
    this.#setState('closed');
  }

  // --- connecting ------------------------------------------------------------------------------

  #onOnline = () => this.reconnect();

  #connect() {
    if (this.#closed || this.#current || this.#next) return;
    this.#clear('retryTimer');
    this.#setState('connecting');
    this.#dial('connect');
  }

  #renew() {
    if (this.#closed || !this.#current || this.#next) return;
    this.#dial('renew');
  }

  /** Opens a link: token, socket, handshake. `kind` is `connect` or `renew`. */
  async #dial(kind) {
    const link = {
      kind,
      ws: null,
      opened: false,
      done: false,
      connectionId: null,
      expiresAt: null,
      openTimer: null,
      pingTimer: null,
      renewTimer: null,
      endTimer: null,
      drainTimer: null, // a replaced link kept open for its publishes' replies
      draining: false,
      waiting: 0, // a renewal's subscribe replies still to come
      covered: new Set(), // artist keys subscribed on this link
      timers: new Set(), // reply timeouts and retries of the library's subscribes on this link
    };
    this.#next = link;
    link.openTimer = this.#setTimeout(() => {
      this.#fail(link, new MarqueeError('open_timeout', `not ready within ${this.#options.openTimeoutMs} ms`));
    }, this.#options.openTimeoutMs);
    let token;
    try {
      token = await this.#token();
    } catch (error) {
      this.#fail(link, new MarqueeError('token_failed', `the token provider failed: ${describe(error)}`));
      return;
    }
    if (link.done) return;
    if (typeof token !== 'string' || token === '') {
      this.#fail(link, new MarqueeError('token_failed', 'the token provider returned no token'));
      return;
    }
    try {
      const replaces = kind === 'renew' ? this.#current?.connectionId : null;
      link.ws = new this.#WebSocket(withToken(this.#url, token, replaces));
    } catch (error) {
      // The message of a constructor error may quote the URL, and with it the token.
      this.#fail(link, new MarqueeError('connect_failed', `could not open a WebSocket (${error?.name ?? 'error'})`));
      return;
    }
    link.ws.onopen = () => this.#onOpen(link);
    link.ws.onmessage = (event) => this.#onMessage(link, event.data);
    link.ws.onclose = (event) => this.#onClose(link, event);
    link.ws.onerror = () => {}; // a close event follows
  }

  #onOpen(link) {
    if (link.done || this.#closed) return;
    link.opened = true;
    // Learn when the server will end this connection.
    this.#transmit(link, { kind: 'ping', app: false });
    this.#resubscribe(link);
    if (link.kind === 'connect') {
      this.#stableTimer = this.#setTimeout(() => {
        this.#stableTimer = null;
        this.#attempt = 0;
      }, this.#options.stableAfterMs);
      this.#promote(link);
    } else {
      // Make before break: the old link carries on until this one is subscribed.
      this.#promoteWhenSubscribed(link);
    }
  }

  /** Sends a subscribe (with since) for every confirmed subscription on `link`. */
  #resubscribe(link) {
    const names = [...this.#subscriptions.values()].filter((s) => s.confirmed).map((s) => s.name);
    for (let i = 0; i < names.length; i += MAX_ARTISTS_PER_MESSAGE) {
      this.#transmit(link, { kind: 'subscribe', artists: names.slice(i, i + MAX_ARTISTS_PER_MESSAGE), app: false });
    }
  }

  /**
   * Promotes a renewal once every subscription is confirmed on it, including any the old link
   * confirmed after the renewal's own subscribe went out.
   */
  #promoteWhenSubscribed(link) {
    if (link !== this.#next || link.done || link.waiting > 0) return;
    const missing = [...this.#subscriptions]
      .filter(([key, s]) => s.confirmed && !link.covered.has(key))
      .map(([, s]) => s.name);
    for (let i = 0; i < missing.length; i += MAX_ARTISTS_PER_MESSAGE) {
      this.#transmit(link, { kind: 'subscribe', artists: missing.slice(i, i + MAX_ARTISTS_PER_MESSAGE), app: false });
    }
    if (link.waiting === 0) this.#promote(link);
  }

  /** Makes `link` the one requests go out on; closes the link it replaces. */
  #promote(link) {
    const old = this.#current;
    this.#current = link;
    if (this.#next === link) this.#next = null;
    this.#renewals = 0;
    this.#clearOf(link, 'openTimer');
    this.#armRenewal(link);
    // Application requests waiting for a link, or sent on the old one and not yet answered
    // (but a publish is never sent twice: the old link stays open until it is answered).
    for (const request of [...this.#requests.values()]) {
      if (!request.app) continue;
      if (request.link === null || (request.link === old && request.kind !== 'publish')) this.#transmit(link, request);
    }
    if (old) this.#retire(old);
    this.#setState('open');
  }

  #onClose(link, event) {
    if (link.done || this.#closed) return;
    link.done = true;
    this.#draining.delete(link);
    this.#stopTimers(link);
    this.#forget(link);
    if (!link.opened) {
      this.#report(new MarqueeError('connect_failed', `the connection closed before opening (code ${event?.code ?? 1006})`));
    }
    const renewal = link === this.#next && link.kind === 'renew';
    if (link === this.#next) this.#next = null;
    if (link === this.#current) {
      this.#current = null;
      this.#clear('stableTimer');
      if (this.#next) this.#setState('connecting'); // a renewal is on its way
    }
    if (!this.#current && !this.#next) this.#scheduleReconnect();
    else if (renewal) this.#renewLater();
  }

  /**
   * A link that never became current (or a renewal that did not finish: it never replaces the
   * current link) gives up, reporting `error`.
   */
  #fail(link, error) {
    if (link.done || this.#closed) return;
    this.#drop(link, 1000, 'Giving up');
    this.#forget(link);
    const renewal = link === this.#next && link.kind === 'renew';
    if (link === this.#next) this.#next = null;
    this.#report(error);
    if (!this.#current && !this.#next) this.#scheduleReconnect();
    else if (renewal) this.#renewLater();
  }

  /**
   * After a failed renewal the current link carries on, and another renewal is tried after a
   * backoff, while one can still finish (`openTimeoutMs`) before the current link ends; later
   * than that, the current link ends at `expiresAt` and the reconnect catches up with since.
   */
  #renewLater() {
    const link = this.#current;
    if (this.#closed || !link || link.done || this.#next || !Number.isFinite(link.expiresAt)) return;
    const { backoffBaseMs, backoffCapMs, openTimeoutMs } = this.#options;
    const delayMs = backoffDelay(this.#renewals, backoffBaseMs, backoffCapMs, this.#random);
    this.#renewals += 1;
    if (this.#now() + delayMs + openTimeoutMs > link.expiresAt) return;
    this.#clearOf(link, 'renewTimer');
    link.renewTimer = this.#setTimeout(() => {
      link.renewTimer = null;
      this.#renew();
    }, delayMs);
  }

  #scheduleReconnect() {
    if (this.#closed) return;
    const { backoffBaseMs, backoffCapMs } = this.#options;
    const delayMs = backoffDelay(this.#attempt, backoffBaseMs, backoffCapMs, this.#random);
    this.#attempt += 1;
    this.#clear('retryTimer');
    this.#retryTimer = this.#setTimeout(() => {
      this.#retryTimer = null;
      this.#connect();
    }, delayMs);
    this.#setState('reconnecting', { delayMs, attempt: this.#attempt });
  }

  #armRenewal(link) {
    this.#clearOf(link, 'renewTimer');
    this.#clearOf(link, 'endTimer');
    if (link !== this.#current || !Number.isFinite(link.expiresAt)) return;
    const remaining = link.expiresAt - this.#now();
    // Past `expiresAt` the server delivers nothing more on this connection, even before it
    // closes it: a connection still current then (its renewal failed) is ended here, and the
    // reconnect catches up with since.
    link.endTimer = this.#setTimeout(() => {
      link.endTimer = null;
      if (link.done || link !== this.#current) return;
      try {
        link.ws?.close(1000, 'Expired');
      } catch {
        // already closing
      }
      this.#onClose(link, { code: 1000 });
    }, Math.max(0, remaining));
    const delay = renewDelay(remaining, this.#options);
    if (delay === null) return;
    link.renewTimer = this.#setTimeout(() => {
      link.renewTimer = null;
      this.#renew();
    }, delay);
  }

  /**
   * Closes a replaced link, once the publishes sent on it are answered (or after
   * `openTimeoutMs`: those still unanswered then reject with `connection_lost`).
   */
  #retire(link) {
    this.#stopTimers(link);
    if (!this.#publishesOn(link)) {
      this.#drop(link, 1000, 'Replaced');
      this.#forget(link);
      return;
    }
    link.draining = true;
    this.#draining.add(link);
    link.drainTimer = this.#setTimeout(() => {
      link.drainTimer = null;
      this.#drop(link, 1000, 'Replaced');
      this.#forget(link);
    }, this.#options.openTimeoutMs);
  }

  #publishesOn(link) {
    for (const request of this.#requests.values()) {
      if (request.link === link && request.kind === 'publish') return true;
    }
    return false;
  }

  /** Closes a link's socket (if any) without the close counting as a drop. */
  #drop(link, code, reason) {
    link.done = true;
    this.#draining.delete(link);
    this.#stopTimers(link);
    try {
      link.ws?.close(code, reason);
    } catch {
      // already closing
    }
  }

  #stopTimers(link) {
    for (const name of ['openTimer', 'pingTimer', 'renewTimer', 'endTimer', 'drainTimer']) this.#clearOf(link, name);
    for (const timer of link.timers) this.#clearTimeout(timer);
    link.timers.clear();
  }

  /** A timer that belongs to `link`: stopped with the link's other timers. */
  #linkTimer(link, ms, fn) {
    const timer = this.#setTimeout(() => {
      link.timers.delete(timer);
      fn();
    }, ms);
    link.timers.add(timer);
    return timer;
  }

  /**
   * Internal requests sent on `link` are gone with it; application ones wait for the next, but
   * a publish, which may have gone out, rejects (`connection_lost`) rather than go out twice.
   */
  #forget(link) {
    for (const [ref, request] of [...this.#requests]) {
      if (request.link !== link) continue;
      if (request.app && request.kind !== 'publish') {
        request.link = null;
        continue;
      }
      this.#requests.delete(ref);
      if (request.app) {
        request.reject(new MarqueeError('connection_lost', 'the connection ended before the server answered; the message may not have been sent'));
      }
    }
  }

  // --- requests --------------------------------------------------------------------------------

  #ask(kind, artists, added, data) {
    if (this.#closed) return Promise.reject(new MarqueeError('closed', 'the client was closed'));
    return new Promise((resolve, reject) => {
      const request = { kind, artists, added, data, app: true, link: null, ref: this.#newRef(), resolve, reject };
      this.#requests.set(request.ref, request);
      if (this.#current) this.#transmit(this.#current, request);
      // A renewal being subscribed must learn of changes too, or it would miss or keep them.
      if (kind !== 'publish' && this.#next?.opened) {
        this.#transmit(this.#next, { kind, artists, app: false });
      }
    });
  }

  #newRef() {
    this.#refs += 1;
    return `${this.#refPrefix}${this.#refs}`;
  }

  /** Sends `request` on `link` under a fresh ref (so refs are in the order sent). */
  #transmit(link, request) {
    if (request.ref !== undefined && this.#requests.get(request.ref) === request) {
      this.#requests.delete(request.ref);
    }
    const ref = this.#newRef();
    request.ref = ref;
    request.link = link;
    this.#requests.set(ref, request);
    if (!request.app && link.kind === 'renew' && link !== this.#current && request.kind !== 'ping') {
      request.renewal = true;
      link.waiting += 1;
    }
    const message = { action: request.kind };
    if (request.kind === 'publish') {
      message.artist = request.artists[0];
      message.data = request.data;
    } else if (request.kind !== 'ping') {
      message.artists = request.artists;
      for (const name of request.artists) {
        if (request.kind === 'subscribe') link.covered.add(artistKey(name));
        else link.covered.delete(artistKey(name));
      }
      if (request.kind === 'subscribe') {
        const since = this.#sinceFor(request.artists);
        if (since) message.since = since;
      }
    }
    message.ref = ref;
    this.#send(link, message);
    if (!request.app && request.kind === 'subscribe' && !request.renewal) {
      // A renewal has its own limit (openTimeoutMs); on any other link, the library's own
      // subscribe is asked again when no reply comes.
      const { replyTimeoutMs } = this.#options;
      request.timer = this.#linkTimer(link, replyTimeoutMs, () => {
        request.timer = null;
        if (this.#requests.get(request.ref) !== request) return;
        this.#requests.delete(request.ref);
        this.#subscribeFailed(request, new MarqueeError('reply_timeout', `no reply within ${replyTimeoutMs} ms`));
      });
    }
  }

  /**
   * The server's latest seq per artist as a subscription took effect: where an artist with
   * nothing seen yet resumes from, so what is published while offline is caught up too. For an
   * artist already tracked, what must arrive (by catch-up, or as a gap): still missing after the
   * hole's grace, it is asked for again.
   */
  #baseline(seqs) {
    if (!seqs || typeof seqs !== 'object') return;
    for (const [name, seq] of Object.entries(seqs)) {
      const key = artistKey(name);
      if (!Number.isSafeInteger(seq) || seq < 0) continue;
      const track = this.#seqs.get(key);
      if (track) {
        track.latest = seq;
        if (this.#subscriptions.has(key)) this.#watchHole(key, false);
        continue;
      }
      const fresh = new SeqTrack();
      fresh.skip(seq);
      this.#seqs.set(key, fresh);
    }
  }

  #sinceFor(names) {
    let since = null;
    for (const name of names) {
      const last = this.#seqs.get(artistKey(name))?.last;
      if (last !== null && last !== undefined) (since ??= {})[name] = last;
    }
    return since;
  }

  #send(link, message) {
    if (!link.ws || link.ws.readyState !== OPEN) return;
    const text = JSON.stringify(message);
    link.ws.send(text);
    this.#emit('frame', 'out', text);
    // Silence from the client is what API Gateway times out.
    this.#clearOf(link, 'pingTimer');
    link.pingTimer = this.#setTimeout(() => {
      link.pingTimer = null;
      if (!link.done) this.#transmit(link, { kind: 'ping', app: false });
    }, this.#options.pingIntervalMs);
  }

  // --- inbound ---------------------------------------------------------------------------------

  #onMessage(link, data) {
    if (this.#closed) return;
    if (typeof data !== 'string') {
      this.#report(new MarqueeError('unsupported_frame', 'the server sent a binary frame'));
      return;
    }
    this.#emit('frame', 'in', data);
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      this.#report(new MarqueeError('invalid_frame', 'the server sent a frame that is not JSON'));
      return;
    }
    if (!frame || typeof frame !== 'object') return;
    switch (frame.type) {
      case 'notification':
        this.#onNotification(frame);
        break;
      case 'gap':
        this.#onGap(frame);
        break;
      case 'pong':
        link.connectionId = typeof frame.connectionId === 'string' ? frame.connectionId : link.connectionId;
        link.expiresAt = Date.parse(frame.expiresAt);
        this.#armRenewal(link);
        this.#onReply(link, frame);
        break;
      case 'subscribed':
      case 'unsubscribed':
      case 'published':
      case 'error':
        this.#onReply(link, frame);
        break;
      case 'message':
      case 'announcement':
        if (this.#firstOf(frame)) this.#emit(frame.type, frame);
        break;
      case 'welcome':
      case 'joined':
      case 'left':
        // Who is in a room: only from the current connection, so that nothing is told twice
        // while a renewal overlaps it (both subscribed). These carry no id to dedupe by.
        if (link === this.#current) this.#emit(frame.type, frame);
        break;
      case 'revoked':
        // The server closes the socket next; the reconnect asks the token provider again, and
        // only a token issued after the revocation is accepted.
        this.#report(new MarqueeError('revoked', 'the server revoked this user; tokens issued before now are refused'));
        break;
      default:
      // Frame types of later versions of the protocol are ignored.
    }
    if (link.draining && !link.done && !this.#publishesOn(link)) {
      this.#drop(link, 1000, 'Replaced');
      this.#forget(link);
    }
  }

  /** False for a frame whose id was seen already (delivery is at least once). */
  #firstOf(frame) {
    return typeof frame.id !== 'string' || this.#seen[frame.type].first(frame.id);
  }

  #onNotification(frame) {
    if (!this.#firstOf(frame)) return;
    if (typeof frame.artist === 'string' && Number.isSafeInteger(frame.seq) && frame.seq >= 0) {
      const key = artistKey(frame.artist);
      if (this.#subscriptions.has(key)) {
        if (!this.#seqs.has(key)) this.#seqs.set(key, new SeqTrack());
        const track = this.#seqs.get(key);
        const before = track.last;
        track.saw(frame.seq);
        this.#watchHole(key, track.last !== before);
      }
    }
    this.#emit('notification', frame);
  }

  /**
   * A seq that jumped (n, then n + 2) is usually catch-up overtaken by a live notification,
   * and fills in soon; so does a `subscribed.seq` ahead of what arrived, by catch-up. Still
   * missing after the grace (counted from the last progress: a long catch-up is not asked for
   * twice), it is asked for again: the server sends it, or a gap.
   */
  #watchHole(key, progressed) {
    if (!this.#seqs.get(key)?.missing()) {
      this.#clearAsk(key);
      return;
    }
    if (this.#askTimers.has(key) && !progressed) return;
    this.#clearAsk(key);
    this.#askTimers.set(key, this.#setTimeout(() => {
      this.#askTimers.delete(key);
      if (this.#seqs.get(key)?.missing()) this.#askAgain(key);
    }, this.#options.holeGraceMs));
  }

  /**
   * Subscribes `key` again (with since) on the current link: at once when the last ask brought
   * something, else after a backoff that grows while asks bring nothing (a server failing the
   * catch-up again and again is not asked in a tight loop).
   */
  #askAgain(key) {
    this.#clearAsk(key);
    const entry = this.#subscriptions.get(key);
    const track = this.#seqs.get(key);
    if (!entry?.confirmed || !track) return;
    track.asks = track.askedAt === track.last ? track.asks + 1 : 0;
    track.askedAt = track.last;
    const ask = () => {
      const link = this.#current;
      if (link && this.#subscriptions.get(key) === entry) {
        this.#transmit(link, { kind: 'subscribe', artists: [entry.name], app: false });
      }
    };
    if (track.asks === 0) {
      ask();
      return;
    }
    const { backoffBaseMs, backoffCapMs } = this.#options;
    const delayMs = backoffDelay(track.asks - 1, backoffBaseMs, backoffCapMs, this.#random);
    this.#askTimers.set(key, this.#setTimeout(() => {
      this.#askTimers.delete(key);
      ask();
    }, delayMs));
  }

  #clearAsk(key) {
    const timer = this.#askTimers.get(key);
    if (timer === undefined) return;
    this.#clearTimeout(timer);
    this.#askTimers.delete(key);
  }

  /** Forgets an artist: no longer subscribed, tracked or asked for. */
  #dropArtist(key) {
    this.#subscriptions.delete(key);
    this.#seqs.delete(key);
    this.#clearAsk(key);
  }

  #onGap(frame) {
    if (frame.retry === true && typeof frame.artist === 'string') {
      // The catch-up stopped short (out of time, or the server failed); the rest is still held:
      // ask again with since.
      const key = artistKey(frame.artist);
      const track = this.#seqs.get(key);
      if (track && Number.isSafeInteger(frame.to)) track.latest = Math.max(track.latest ?? 0, frame.to);
      this.#askAgain(key);
      this.#emit('gap', frame);
      return;
    }
    if (typeof frame.artist === 'string' && Number.isSafeInteger(frame.to)) {
      const key = artistKey(frame.artist);
      const track = this.#seqs.get(key);
      if (track) {
        track.skip(frame.to);
        this.#watchHole(key, true);
      }
    }
    this.#emit('gap', frame);
  }

  #onReply(link, frame) {
    const request = this.#requestFor(link, frame);
    if (request) {
      this.#requests.delete(request.ref);
      if (request.timer) {
        this.#clearTimeout(request.timer);
        request.link?.timers.delete(request.timer);
        request.timer = null;
      }
    }
    if (frame.type === 'error') {
      const error = new MarqueeError(String(frame.code ?? 'error'), String(frame.message ?? ''), frame.ref);
      if (request?.app) {
        for (const key of request.added ?? []) {
          if (!this.#subscriptions.get(key)?.confirmed) this.#subscriptions.delete(key);
        }
        request.reject(error);
      } else if (request?.kind === 'subscribe') {
        this.#subscribeFailed(request, error);
        return;
      } else {
        this.#report(error);
      }
    } else if (frame.type === 'subscribed' || frame.type === 'unsubscribed') {
      if (frame.type === 'subscribed') {
        const artists = request?.artists ?? (Array.isArray(frame.artists) ? frame.artists : []);
        for (const name of artists) {
          const entry = this.#subscriptions.get(artistKey(name));
          if (entry) entry.confirmed = true;
        }
        this.#baseline(frame.seq);
      }
      this.#emit(frame.type, frame);
      request?.resolve?.(frame);
    } else if (frame.type === 'published') {
      request?.resolve?.(frame);
    }
    if (request?.renewal) {
      request.link.waiting -= 1;
      this.#promoteWhenSubscribed(request.link);
    }
  }

  /**
   * One of the library's own subscribes failed (`error`: the server's, or `reply_timeout`).
   * - Busy, failing or silent: asked again on the same link after a backoff (capped, full
   *   jitter, growing with each failure of it in a row). On a renewal, the renewal fails
   *   instead: the current link carries on and the renewal is tried again later.
   * - `unknown_connection`: the server closes the link; the next one subscribes again.
   * - Refused (`forbidden`, or any other refusal): a message of several artists is asked again
   *   one artist at a time, as the server refuses a message whole; a refused artist is dropped
   *   and reported (`error.artists`), and not asked for again.
   */
  #subscribeFailed(request, error) {
    const link = request.link;
    if (link.done || this.#closed) return;
    const names = request.artists.filter((name) => this.#subscriptions.has(artistKey(name)));
    if (link !== this.#current && !request.renewal) {
      // A replaced link: the current one has subscribed on its own.
      this.#report(error);
      return;
    }
    if (TRANSIENT.has(error.code) || error.code === 'unknown_connection') {
      if (request.renewal) {
        this.#fail(link, error);
      } else if (error.code === 'unknown_connection' || names.length === 0) {
        this.#report(error);
      } else {
        this.#retrySubscribe(link, names, request.attempt ?? 0, error);
      }
      return;
    }
    if (names.length > 1) {
      for (const name of names) this.#transmit(link, { kind: 'subscribe', artists: [name], app: false });
    } else if (names.length === 1) {
      this.#dropArtist(artistKey(names[0]));
      this.#report(about(error, names));
    }
    if (request.renewal) {
      link.waiting -= 1;
      this.#promoteWhenSubscribed(link);
    }
  }

  /** Asks for `names` again on `link` after the backoff of its `attempt`-th failure. */
  #retrySubscribe(link, names, attempt, error) {
    const { backoffBaseMs, backoffCapMs } = this.#options;
    const delayMs = backoffDelay(attempt, backoffBaseMs, backoffCapMs, this.#random);
    this.#report(about(error, names, delayMs));
    this.#linkTimer(link, delayMs, () => {
      // Unsubscribed meanwhile: not asked for.
      const still = names.filter((name) => this.#subscriptions.has(artistKey(name)));
      if (still.length === 0 || link !== this.#current || link.done) return;
      this.#transmit(link, { kind: 'subscribe', artists: still, app: false, attempt: attempt + 1 });
    });
  }

  /** The request a reply answers: by ref, or (from a server that echoes none) the oldest. */
  #requestFor(link, frame) {
    if (typeof frame.ref === 'string') return this.#requests.get(frame.ref) ?? null;
    if (frame.type === 'error') return null;
    const kind = { subscribed: 'subscribe', unsubscribed: 'unsubscribe', published: 'publish', pong: 'ping' }[frame.type];
    for (const request of this.#requests.values()) {
      if (request.link === link && request.kind === kind) return request;
    }
    return null;
  }

  // --- events ----------------------------------------------------------------------------------

  #setState(next, detail = {}) {
    if (!STATES.includes(next)) throw new Error(`unknown state ${next}`);
    if (next === this.#state && next !== 'reconnecting') return;
    this.#state = next;
    this.#emit('state', next, detail);
  }

  #report(error) {
    this.#emit('error', error);
  }

  #emit(type, ...args) {
    for (const fn of [...(this.#listeners.get(type) ?? [])]) {
      try {
        fn(...args);
      } catch (error) {
        // A listener's bug must not break the connection.
        if (typeof globalThis.reportError === 'function') globalThis.reportError(error);
        else globalThis.console?.error(error);
      }
    }
  }

  #clear(name) {
    if (name === 'retryTimer' && this.#retryTimer !== null) this.#clearTimeout(this.#retryTimer);
    if (name === 'stableTimer' && this.#stableTimer !== null) this.#clearTimeout(this.#stableTimer);
    if (name === 'retryTimer') this.#retryTimer = null;
    if (name === 'stableTimer') this.#stableTimer = null;
  }

  #clearOf(link, name) {
    if (link[name] !== null) this.#clearTimeout(link[name]);
    link[name] = null;
  }
}

function artistList(artists) {
  const names = typeof artists === 'string' ? [artists] : artists;
  if (!Array.isArray(names) || names.length === 0) {
    throw new TypeError('Marquee: artists must be a name or a non-empty list of names');
  }
  for (const name of names) {
    if (typeof name !== 'string' || name.trim() === '') {
      throw new TypeError('Marquee: every artist must be a non-empty string');
    }
  }
  return [...names];
}

function describe(error) {
  if (error instanceof Error) return error.message || error.name;
  return String(error);
}
