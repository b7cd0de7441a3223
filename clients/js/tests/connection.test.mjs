// The client library's connection logic on a fake WebSocket and a manual clock:
// `node --test clients/js/tests/`.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { DEFAULTS, MarqueeError, backoffDelay, renewDelay, withToken } from '../marquee.js';
import { FakeSocket, harness, settle } from './fakes.mjs';

describe('backoff', () => {
  test('full jitter stays within [0, min(cap, base × 2^attempt))', () => {
    const spans = [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000];
    spans.forEach((span, attempt) => {
      assert.equal(backoffDelay(attempt, 500, 30_000, () => 0), 0, `attempt ${attempt}, random 0`);
      assert.equal(backoffDelay(attempt, 500, 30_000, () => 0.5), span / 2, `attempt ${attempt}, random 0.5`);
      assert.equal(backoffDelay(attempt, 500, 30_000, () => 0.999999), Math.floor(span * 0.999999));
    });
    // Far past the cap the exponent overflows to Infinity; the cap still holds.
    assert.equal(backoffDelay(5000, 500, 30_000, () => 0.5), 15_000);
  });

  test('every failed attempt doubles the window until the cap, with the given randomness', async () => {
    const randoms = [0.1, 0.9, 0.5, 0.25, 0.75, 0.5, 0.5, 0.99];
    let draws = 0;
    const h = harness({ random: () => randoms[draws++] });
    await settle();
    const delays = [];
    for (let i = 0; i < randoms.length; i += 1) {
      h.last().refuse();
      const [, , detail] = h.events.at(-1);
      delays.push(detail.delayMs);
      await h.clock.advance(detail.delayMs);
    }
    assert.deepEqual(delays, [
      Math.floor(0.1 * 500),
      Math.floor(0.9 * 1000),
      Math.floor(0.5 * 2000),
      Math.floor(0.25 * 4000),
      Math.floor(0.75 * 8000),
      Math.floor(0.5 * 16000),
      Math.floor(0.5 * 30000),
      Math.floor(0.99 * 30000),
    ]);
    assert.equal(h.sockets().length, randoms.length + 1);
    assert.equal(h.tokens, randoms.length + 1, 'a fresh token for every attempt');
  });

  test('a connection that stays up resets the backoff', async () => {
    const h = harness({ random: () => 0.5 });
    await settle();
    h.last().refuse(); // attempt 1: window 500
    await h.clock.advance(250);
    h.last().refuse(); // attempt 2: window 1000
    await h.clock.advance(500);
    h.last().accept();
    await h.clock.advance(DEFAULTS.stableAfterMs);
    h.last().drop();
    const [, state, detail] = h.events.at(-1);
    assert.equal(state, 'reconnecting');
    assert.deepEqual(detail, { delayMs: 250, attempt: 1 });
  });

  test('a connection that drops quickly does not reset the backoff', async () => {
    const h = harness({ random: () => 0.5 });
    await settle();
    h.last().refuse();
    await h.clock.advance(250);
    h.last().accept();
    await h.clock.advance(DEFAULTS.stableAfterMs - 1);
    h.last().drop();
    assert.deepEqual(h.events.at(-1), ['state', 'reconnecting', { delayMs: 500, attempt: 2 }]);
  });

  test('coming back online reconnects at once instead of waiting out the backoff', async () => {
    const h = harness({ random: () => 0.99 });
    await settle();
    h.last().accept();
    h.last().drop(); // reconnecting in 495 ms
    assert.equal(h.client.state, 'reconnecting');
    h.window.dispatch('online');
    await settle();
    assert.equal(h.sockets().length, 2);
    assert.equal(h.client.state, 'connecting');
    // The backoff timer was cancelled, not left to dial a third socket.
    await h.clock.advance(495);
    assert.equal(h.sockets().length, 2);
  });

  test('reconnect() while waiting dials at once; while open it does nothing', async () => {
    const h = harness({ random: () => 0.99 });
    await settle();
    h.last().accept();
    h.client.reconnect();
    await settle();
    assert.equal(h.sockets().length, 1);
    h.last().drop();
    h.client.reconnect();
    await settle();
    assert.equal(h.sockets().length, 2);
    assert.equal(h.client.state, 'connecting');
  });

  test('coming back online while connected changes nothing', async () => {
    const h = harness();
    await settle();
    h.last().accept();
    h.window.dispatch('online');
    await settle();
    assert.equal(h.sockets().length, 1);
    assert.equal(h.client.state, 'open');
  });
});

describe('connecting', () => {
  test('the token goes into the query string, kept beside what is there', () => {
    assert.equal(withToken('ws://127.0.0.1:3001/', 'a.b.c'), 'ws://127.0.0.1:3001/?token=a.b.c');
    assert.equal(
      withToken('wss://x.example/prod?stage=1', 'a b+c'),
      'wss://x.example/prod?stage=1&token=a+b%2Bc',
    );
    assert.equal(withToken('ws://h/?token=old&x=1', 'new'), 'ws://h/?token=new&x=1');
    assert.equal(withToken('ws://h/', 't', 'c1='), 'ws://h/?token=t&replaces=c1%3D');
    assert.equal(withToken('ws://h/?replaces=old', 't'), 'ws://h/?token=t', 'no stale replaces');
  });

  test('every connect asks the provider for a fresh token', async () => {
    const h = harness();
    await settle();
    h.last().accept();
    h.last().drop();
    await h.clock.advance(250);
    assert.deepEqual(
      h.sockets().map((s) => s.url),
      ['ws://gateway.test/?token=token-1', 'ws://gateway.test/?token=token-2'],
    );
  });

  test('states: connecting, open, reconnecting, connecting, open, closed', async () => {
    const h = harness();
    await settle();
    h.last().accept();
    h.last().drop();
    await h.clock.advance(250);
    h.last().accept();
    h.client.close();
    assert.deepEqual(h.of('state').map(([s]) => s), [
      'connecting',
      'open',
      'reconnecting',
      'connecting',
      'open',
      'closed',
    ]);
    assert.deepEqual(h.last().closedWith, { code: 1000, reason: 'Client closed' });
  });

  test('a failing token provider is retried with backoff; its error reaches the app', async () => {
    let calls = 0;
    const h = harness({
      token: async () => {
        calls += 1;
        if (calls === 1) throw new Error('auth server down');
        return 'good';
      },
    });
    await settle();
    assert.equal(h.sockets().length, 0);
    const [[error]] = h.of('error');
    assert.equal(error.code, 'token_failed');
    assert.equal(error.message, 'the token provider failed: auth server down');
    await h.clock.advance(250);
    assert.equal(h.last().url, 'ws://gateway.test/?token=good');
  });

  test('no error or frame event ever carries the token', async () => {
    class Throwing {
      constructor(url) {
        throw new SyntaxError(`The URL '${url}' is invalid.`);
      }
    }
    const h = harness({ WebSocket: Throwing, token: async () => 'SECRET-TOKEN' });
    const frames = [];
    h.client.on('frame', (...args) => frames.push(args));
    await settle();
    const [[error]] = h.of('error');
    assert.equal(error.code, 'connect_failed');
    assert.equal(error.message, 'could not open a WebSocket (SyntaxError)');
    assert.ok(!JSON.stringify(h.events).includes('SECRET'));
    assert.deepEqual(frames, []);
  });

  test('a revoked frame is reported as a revoked error', async () => {
    const h = harness();
    await settle();
    h.last().accept();

    h.last().deliver({ type: 'revoked' });

    const [[error]] = h.of('error');
    assert.equal(error.code, 'revoked');
  });

  test('a handshake that never completes counts as a failed attempt', async () => {
    const h = harness();
    await settle();
    await h.clock.advance(DEFAULTS.openTimeoutMs);
    const [[error]] = h.of('error');
    assert.equal(error.code, 'open_timeout');
    assert.deepEqual(h.sockets()[0].closedWith, { code: 1000, reason: 'Giving up' });
    assert.equal(h.client.state, 'reconnecting');
  });

  test('close() stops for good: waiting requests reject, no reconnect follows', async () => {
    const h = harness();
    await settle();
    h.last().accept();
    const pending = h.client.subscribe('Adele');
    h.client.close();
    await assert.rejects(pending, (e) => e instanceof MarqueeError && e.code === 'closed');
    await h.clock.advance(60 * 60_000);
    assert.equal(h.sockets().length, 1);
    assert.equal(h.client.state, 'closed');
    assert.equal(h.window.listeners.get('online').size, 0);
    await assert.rejects(h.client.subscribe('Muse'), (e) => e.code === 'closed');
  });
});

describe('keeping the connection alive', () => {
  test('pings right after connecting, then after five minutes of client silence', async () => {
    const h = harness();
    await settle();
    h.last().accept();
    assert.deepEqual(h.last().sent, [{ action: 'ping', ref: h.last().sent[0].ref }]);
    await h.clock.advance(DEFAULTS.pingIntervalMs - 1);
    assert.equal(h.last().actions('ping').length, 1);
    await h.clock.advance(1);
    assert.equal(h.last().actions('ping').length, 2);
  });

  test('anything the client sends postpones the next ping', async () => {
    const h = harness({ pingIntervalMs: 1000 });
    await settle();
    h.last().accept();
    await h.clock.advance(900);
    h.client.subscribe('Adele');
    await h.clock.advance(900);
    assert.deepEqual(h.last().sent.map((m) => m.action), ['ping', 'subscribe']);
    await h.clock.advance(100);
    assert.deepEqual(h.last().sent.map((m) => m.action), ['ping', 'subscribe', 'ping']);
  });

  test('the lead time before expiry: min(30 s, 20% of what is left)', () => {
    assert.equal(renewDelay(2 * 60 * 60_000, DEFAULTS), 2 * 60 * 60_000 - 30_000);
    assert.equal(renewDelay(6_000, DEFAULTS), 4_800);
    assert.equal(renewDelay(999, DEFAULTS), null);
    assert.equal(renewDelay(Number.NaN, DEFAULTS), null);
  });
});
