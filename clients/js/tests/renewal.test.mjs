// Replacing the connection before the server ends it (make before break), on a fake WebSocket:
// `node --test clients/js/tests/`.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { DEFAULTS } from '../marquee.js';
import { harness, notification, settle } from './fakes.mjs';

/**
 * A client subscribed to Adele (seq 3 seen) on a socket that the server will end in 6 s (the
 * pong's expiresAt): it replaces the socket 4.8 s in (6 s less 20%).
 */
async function expiring() {
  const h = harness();
  await settle();
  const first = h.last();
  first.accept();
  h.client.subscribe('Adele');
  first.answerAll({ connectionId: 'c1', expiresAt: new Date(h.clock.now() + 6_000).toISOString() });
  first.deliver(notification('e3', 3));
  return { h, first };
}

describe('replacing the connection before it expires', () => {
  test('nothing happens before the lead time', async () => {
    const { h } = await expiring();
    assert.equal(h.client.connectionId, 'c1');
    assert.equal(h.client.expiresAt.getTime(), h.clock.now() + 6_000);
    await h.clock.advance(4_799);
    assert.equal(h.sockets().length, 1);
  });

  test('opens the new socket, subscribes with since, and only then closes the old one', async () => {
    const { h, first } = await expiring();
    await h.clock.advance(4_800);
    assert.equal(h.sockets().length, 2);
    const second = h.last();
    assert.equal(
      second.url,
      'ws://gateway.test/?token=token-2&replaces=c1',
      'a fresh token, naming the connection it replaces (the per-user cap allows the overlap)',
    );
    assert.equal(first.closedWith, null, 'the old socket stays while the new one connects');

    second.accept();
    const [subscribe] = second.actions('subscribe');
    assert.deepEqual(subscribe, { action: 'subscribe', artists: ['Adele'], since: { Adele: 3 }, ref: subscribe.ref });
    assert.equal(first.closedWith, null, 'the old socket stays until the new one is subscribed');
    assert.equal(h.client.socket, first);

    second.answerAll({ connectionId: 'c2', expiresAt: new Date(h.clock.now() + 6_000).toISOString() });
    assert.deepEqual(first.closedWith, { code: 1000, reason: 'Replaced' });
    assert.equal(h.client.socket, second);
    assert.equal(h.client.connectionId, 'c2');
    // The application saw no interruption.
    assert.deepEqual(h.of('state').map(([s]) => s), ['connecting', 'open']);
  });

  test('notifications on both sockets during the overlap arrive once each', async () => {
    const { h, first } = await expiring();
    await h.clock.advance(4_800);
    const second = h.last();
    second.accept();
    first.deliver(notification('e4', 4));
    second.deliver(notification('e4', 4)); // caught up on the new socket as well
    second.answerAll();
    second.deliver(notification('e5', 5));
    assert.deepEqual(h.of('notification').map(([n]) => n.id), ['e3', 'e4', 'e5']);
  });

  test('the old socket ending before the new one is ready does not drop to reconnecting', async () => {
    const { h, first } = await expiring();
    await h.clock.advance(4_800);
    const second = h.last();
    first.drop(1001, 'Going away');
    assert.equal(h.client.state, 'connecting');
    assert.equal(h.sockets().length, 2, 'no third socket: the renewal is on its way');
    second.accept();
    second.answerAll();
    assert.equal(h.client.state, 'open');
    assert.equal(h.client.socket, second);
  });

  test('a subscribe made during the overlap reaches the new socket too', async () => {
    const { h, first } = await expiring();
    await h.clock.advance(4_800);
    const second = h.last();
    second.accept();
    const muse = h.client.subscribe('Muse');
    assert.deepEqual(first.actions('subscribe').at(-1).artists, ['Muse']);
    assert.deepEqual(second.actions('subscribe').map((m) => m.artists), [['Adele'], ['Muse']]);
    first.answerAll();
    second.answerAll();
    assert.deepEqual((await muse).artists, ['Muse']);
    assert.deepEqual(first.closedWith, { code: 1000, reason: 'Replaced' });
  });

  test('a subscribe confirmed on the old socket after the new one subscribed is added before the switch', async () => {
    const { h, first } = await expiring();
    const muse = h.client.subscribe('Muse'); // sent on the old socket, not yet answered
    await h.clock.advance(4_800);
    const second = h.last();
    second.accept();
    assert.deepEqual(second.actions('subscribe').map((m) => m.artists), [['Adele']]);
    first.answerAll(); // Muse confirmed on the old socket
    second.answerAll(); // Adele confirmed on the new one: Muse is still missing there
    assert.deepEqual(second.actions('subscribe').map((m) => m.artists), [['Adele'], ['Muse']]);
    assert.equal(first.closedWith, null);
    second.answerAll();
    assert.deepEqual(first.closedWith, { code: 1000, reason: 'Replaced' });
    assert.deepEqual((await muse).artists, ['Muse']);
  });

  test('a renewal that cannot connect leaves the old socket in charge', async () => {
    const { h, first } = await expiring();
    await h.clock.advance(4_800);
    h.last().refuse();
    assert.equal(h.client.socket, first);
    assert.equal(h.client.state, 'open');
    assert.deepEqual(h.of('error').map(([e]) => e.code), ['connect_failed']);
    // When the old one ends, an ordinary reconnect follows, with since.
    first.drop();
    await h.clock.advance(h.events.findLast((e) => e[1] === 'reconnecting')[2].delayMs);
    h.last().accept();
    assert.deepEqual(h.last().actions('subscribe')[0].since, { Adele: 3 });
  });

  test('a connection still current at expiresAt (its renewal failed) is ended and reconnected', async () => {
    const { h, first } = await expiring();
    await h.clock.advance(4_800);
    h.last().refuse();
    await h.clock.advance(1_199);
    assert.equal(first.closedWith, null);
    await h.clock.advance(1);
    assert.deepEqual(first.closedWith, { code: 1000, reason: 'Expired' });
    assert.equal(h.client.state, 'reconnecting');
    await h.clock.advance(h.events.at(-1)[2].delayMs);
    h.last().accept();
    assert.deepEqual(h.last().actions('subscribe')[0].since, { Adele: 3 });
  });

  test('the replacement is replaced in turn before it expires', async () => {
    const { h } = await expiring();
    await h.clock.advance(4_800);
    h.last().accept();
    h.last().answerAll({ expiresAt: new Date(h.clock.now() + 6_000).toISOString() });
    await h.clock.advance(4_799);
    assert.equal(h.sockets().length, 2);
    await h.clock.advance(1);
    assert.equal(h.sockets().length, 3);
  });
});

/** As `expiring`, with a minute of lifetime: a failed renewal leaves time to try again. */
async function expiringInAMinute(artists = ['Adele']) {
  const h = harness();
  await settle();
  const first = h.last();
  first.accept();
  h.client.subscribe(artists);
  first.answerAll({ connectionId: 'c1', expiresAt: new Date(h.clock.now() + 60_000).toISOString() });
  first.deliver(notification('e3', 3));
  // The renewal: 60 s less min(30 s, 20% of 60 s) in.
  await h.clock.advance(48_000);
  const second = h.last();
  second.accept();
  return { h, first, second };
}

describe('a renewal whose subscribe fails', () => {
  test('is not promoted: the old socket stays in charge and the renewal is tried again later', async () => {
    const { h, first, second } = await expiringInAMinute();
    const [subscribe] = second.actions('subscribe');
    second.deliver({ type: 'error', code: 'internal_error', message: 'oops', ref: subscribe.ref });
    assert.deepEqual(second.closedWith, { code: 1000, reason: 'Giving up' });
    assert.equal(first.closedWith, null, 'the working socket is kept');
    assert.equal(h.client.socket, first);
    assert.equal(h.client.state, 'open');
    assert.deepEqual(h.of('error').map(([e]) => e.code), ['internal_error']);
    first.deliver(notification('e4', 4));
    assert.deepEqual(h.of('notification').map(([n]) => n.id), ['e3', 'e4'], 'the old socket still delivers');

    await h.clock.advance(249);
    assert.equal(h.sockets().length, 2);
    await h.clock.advance(1);
    assert.equal(h.sockets().length, 3, 'tried again after the backoff');
    const third = h.last();
    third.accept();
    assert.deepEqual(third.actions('subscribe')[0].since, { Adele: 4 });
    third.answerAll({ connectionId: 'c3' });
    assert.deepEqual(first.closedWith, { code: 1000, reason: 'Replaced' });
    assert.equal(h.client.socket, third);
  });

  test('busy, or no reply in time, is a failed renewal too', async () => {
    for (const fail of ['busy', 'timeout']) {
      const { h, first, second } = await expiringInAMinute();
      if (fail === 'busy') {
        const [subscribe] = second.actions('subscribe');
        second.deliver({ type: 'error', code: 'busy', message: 'busy', ref: subscribe.ref });
      } else {
        second.answered = second.sent.length; // the ping and subscribe go unanswered
        await h.clock.advance(DEFAULTS.openTimeoutMs);
      }
      assert.equal(h.client.socket, first, fail);
      assert.equal(first.closedWith, null, fail);
      assert.notEqual(second.closedWith, null, fail);
    }
  });

  test('one artist refused: dropped and reported, and the renewal still replaces the connection', async () => {
    const { h, first, second } = await expiringInAMinute(['Adele', 'Muse']);
    const [both] = second.actions('subscribe');
    second.deliver({ type: 'error', code: 'forbidden', message: 'your token does not allow: Muse', ref: both.ref });
    assert.equal(first.closedWith, null);
    const [, adele, muse] = second.actions('subscribe');
    second.deliver({ type: 'subscribed', artists: ['Adele'], ref: adele.ref });
    second.deliver({ type: 'error', code: 'forbidden', message: 'your token does not allow: Muse', ref: muse.ref });
    assert.deepEqual(h.of('error').map(([e]) => [e.code, e.artists]), [['forbidden', ['Muse']]]);
    second.answerAll();
    assert.deepEqual(first.closedWith, { code: 1000, reason: 'Replaced' });
    assert.equal(h.client.socket, second);
    assert.deepEqual(h.client.subscriptions, ['Adele']);
  });
});
