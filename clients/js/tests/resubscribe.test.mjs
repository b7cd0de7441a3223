// The library's own subscribes (after a reconnect, for a hole, for a catch-up cut short): asked
// again when the server was busy or failing, refused artists dropped, and a `subscribed` whose
// seq is ahead of what arrived followed up. On a fake WebSocket: `node --test clients/js/tests/`.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { DEFAULTS } from '../marquee.js';
import { connected, notification, reconnect } from './fakes.mjs';

/** A client subscribed to `artists` (Adele at seq 3), dropped and reconnected: its automatic subscribe is out, unanswered. */
async function reconnected(artists = ['Adele']) {
  const h = await connected();
  h.client.subscribe(artists);
  h.last().answerAll();
  h.last().deliver(notification('e3', 3));
  await reconnect(h);
  return h;
}

/** The server's error reply to the last subscribe sent on the current socket. */
function refuseLast(h, code, message = code) {
  const sent = h.last().actions('subscribe').at(-1);
  h.last().deliver({ type: 'error', code, message, ref: sent.ref });
  return sent;
}

describe('the subscribe after a reconnect', () => {
  test('busy, then internal_error: asked again with capped, jittered backoff until subscribed', async () => {
    const h = await reconnected();
    refuseLast(h, 'busy');
    const [[busy]] = h.of('error');
    assert.deepEqual([busy.code, busy.artists, busy.retryInMs], ['busy', ['Adele'], 250]);
    await h.clock.advance(249);
    assert.equal(h.last().actions('subscribe').length, 1, 'not before the backoff');
    await h.clock.advance(1);
    const [, second] = h.last().actions('subscribe');
    assert.deepEqual(second, { action: 'subscribe', artists: ['Adele'], since: { Adele: 3 }, ref: second.ref });

    refuseLast(h, 'internal_error');
    assert.equal(h.of('error').at(-1)[0].retryInMs, 500, 'the window doubles');
    await h.clock.advance(500);
    assert.equal(h.last().actions('subscribe').length, 3);
    h.last().answerAll();
    assert.deepEqual(h.of('subscribed').at(-1)[0].artists, ['Adele']);

    await h.clock.advance(60_000);
    assert.equal(h.last().actions('subscribe').length, 3, 'subscribed: nothing more is asked');
    h.last().deliver(notification('e4', 4));
    assert.deepEqual(h.of('notification').map(([n]) => n.id), ['e3', 'e4']);
    assert.equal(h.client.state, 'open');
  });

  test('the backoff stops growing at backoffCapMs', async () => {
    const h = await reconnected();
    const waits = [];
    for (let i = 0; i < 9; i += 1) {
      refuseLast(h, 'busy');
      waits.push(h.of('error').at(-1)[0].retryInMs);
      await h.clock.advance(waits.at(-1));
    }
    assert.deepEqual(waits, [250, 500, 1000, 2000, 4000, 8000, 15000, 15000, 15000]);
    assert.equal(h.last().actions('subscribe').length, 10);
  });

  test('a subscribe never answered is sent again after replyTimeoutMs and the backoff', async () => {
    const h = await reconnected();
    await h.clock.advance(DEFAULTS.replyTimeoutMs - 1);
    assert.equal(h.last().actions('subscribe').length, 1);
    await h.clock.advance(1);
    const [[timeout]] = h.of('error');
    assert.deepEqual([timeout.code, timeout.artists], ['reply_timeout', ['Adele']]);
    await h.clock.advance(timeout.retryInMs);
    const [, again] = h.last().actions('subscribe');
    assert.deepEqual(again.since, { Adele: 3 });
    h.last().answerAll();
    await h.clock.advance(DEFAULTS.replyTimeoutMs * 3);
    assert.equal(h.last().actions('subscribe').length, 2, 'answered: no more timeouts');
  });

  test('an artist unsubscribed while its retry waits is left out of it', async () => {
    const h = await reconnected(['Adele', 'Muse']);
    refuseLast(h, 'busy');
    h.client.unsubscribe('Muse');
    await h.clock.advance(250);
    assert.deepEqual(h.last().actions('subscribe').at(-1).artists, ['Adele']);
  });

  test('forbidden: asked per artist, the refused one dropped and reported, never asked for again', async () => {
    const h = await reconnected(['Adele', 'Muse']);
    refuseLast(h, 'forbidden', 'your token does not allow: Muse');
    const [, adele, muse] = h.last().actions('subscribe');
    assert.deepEqual([adele.artists, muse.artists], [['Adele'], ['Muse']]);
    assert.deepEqual(h.of('error'), [], 'not yet known which artist was refused');

    h.last().deliver({ type: 'subscribed', artists: ['Adele'], ref: adele.ref });
    h.last().deliver({ type: 'error', code: 'forbidden', message: 'your token does not allow: Muse', ref: muse.ref });
    const [[refused]] = h.of('error');
    assert.deepEqual([refused.code, refused.artists, refused.retryInMs], ['forbidden', ['Muse'], undefined]);
    assert.deepEqual(h.client.subscriptions, ['Adele']);

    await h.clock.advance(60_000);
    assert.equal(h.last().actions('subscribe').length, 3, 'a refusal is not retried');
    await reconnect(h);
    assert.deepEqual(h.last().actions('subscribe').map((m) => m.artists), [['Adele']]);
  });

  test('unknown_connection is not retried on that socket: the server closes it and the next one subscribes', async () => {
    const h = await reconnected();
    refuseLast(h, 'unknown_connection');
    await h.clock.advance(60_000);
    assert.equal(h.last().actions('subscribe').length, 1);
    assert.deepEqual(h.client.subscriptions, ['Adele']);
    await reconnect(h);
    assert.deepEqual(h.last().actions('subscribe')[0].since, { Adele: 3 });
  });
});

describe('subscribed.seq ahead of what arrived', () => {
  test('a catch-up that stops short with no gap is asked for again, from the last seq seen, after the grace', async () => {
    const h = await reconnected();
    const [sent] = h.last().actions('subscribe');
    h.last().deliver({ type: 'subscribed', artists: ['Adele'], seq: { Adele: 6 }, ref: sent.ref });
    h.last().deliver(notification('e4', 4)); // 5 and 6 never come
    await h.clock.advance(DEFAULTS.holeGraceMs - 1);
    assert.equal(h.last().actions('subscribe').length, 1);
    await h.clock.advance(1);
    const [, again] = h.last().actions('subscribe');
    assert.deepEqual(again, { action: 'subscribe', artists: ['Adele'], since: { Adele: 4 }, ref: again.ref });
  });

  test('a catch-up that arrives, however long it takes while it makes progress, is not asked for again', async () => {
    const h = await reconnected();
    const [sent] = h.last().actions('subscribe');
    h.last().deliver({ type: 'subscribed', artists: ['Adele'], seq: { Adele: 6 }, ref: sent.ref });
    for (const seq of [4, 5, 6]) {
      await h.clock.advance(DEFAULTS.holeGraceMs - 1);
      h.last().deliver(notification(`e${seq}`, seq));
    }
    await h.clock.advance(60_000);
    assert.equal(h.last().actions('subscribe').length, 1);
  });

  test('a retry gap that brings nothing is asked for again at once, then with growing backoff', async () => {
    const h = await reconnected();
    const answer = () => {
      const sent = h.last().actions('subscribe').at(-1);
      h.last().deliver({ type: 'subscribed', artists: ['Adele'], seq: { Adele: 6 }, ref: sent.ref });
      h.last().deliver({ type: 'gap', artist: 'Adele', from: 4, to: 6, retry: true });
    };
    answer();
    assert.equal(h.last().actions('subscribe').length, 2, 'the first at once');
    answer(); // the server failed again: nothing new
    assert.equal(h.last().actions('subscribe').length, 2);
    await h.clock.advance(250);
    assert.equal(h.last().actions('subscribe').length, 3);
    answer();
    await h.clock.advance(499);
    assert.equal(h.last().actions('subscribe').length, 3);
    await h.clock.advance(1);
    assert.equal(h.last().actions('subscribe').length, 4);
    assert.deepEqual(h.last().actions('subscribe').at(-1).since, { Adele: 3 });
  });
});
