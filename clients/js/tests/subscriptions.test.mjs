// Requests and what the client remembers between connections (refs, since, duplicates, gaps),
// on a fake WebSocket: `node --test clients/js/tests/`.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { MarqueeError } from '../marquee.js';
import { connected, harness, notification, reconnect, settle } from './fakes.mjs';

describe('requests', () => {
  test('subscribe resolves with the reply that carries its ref', async () => {
    const h = await connected();
    const first = h.client.subscribe(['Adele']);
    const second = h.client.subscribe('Muse');
    const [adele, muse] = h.last().actions('subscribe');
    assert.deepEqual(adele, { action: 'subscribe', artists: ['Adele'], ref: adele.ref });
    assert.notEqual(adele.ref, muse.ref);
    // Answered out of order: each promise gets its own reply.
    h.last().deliver({ type: 'subscribed', artists: ['Muse'], ref: muse.ref });
    h.last().deliver({ type: 'subscribed', artists: ['Adele'], ref: adele.ref });
    assert.deepEqual(await first, { type: 'subscribed', artists: ['Adele'], ref: adele.ref });
    assert.deepEqual(await second, { type: 'subscribed', artists: ['Muse'], ref: muse.ref });
    assert.deepEqual(h.client.subscriptions, ['Adele', 'Muse']);
  });

  test('an error frame with the ref rejects that request, and its artists are forgotten', async () => {
    const h = await connected();
    const refused = h.client.subscribe(['Adele', 'Muse']);
    const [sent] = h.last().actions('subscribe');
    h.last().deliver({ type: 'error', code: 'forbidden', message: 'not in the token', ref: sent.ref });
    await assert.rejects(refused, (e) => {
      assert.ok(e instanceof MarqueeError);
      assert.deepEqual([e.code, e.message, e.ref], ['forbidden', 'not in the token', sent.ref]);
      return true;
    });
    assert.deepEqual(h.client.subscriptions, []);
    assert.deepEqual(h.of('error'), [], 'an answered request is not also an error event');
  });

  test('an error frame nobody asked for is an error event', async () => {
    const h = await connected();
    h.last().deliver({ type: 'error', code: 'internal_error', message: 'oops' });
    const [[error]] = h.of('error');
    assert.deepEqual([error.code, error.message], ['internal_error', 'oops']);
  });

  test('a server that echoes no ref: replies match the oldest request of their kind', async () => {
    const h = await connected();
    const a = h.client.subscribe('Adele');
    const b = h.client.unsubscribe('Muse');
    h.last().deliver({ type: 'unsubscribed', artists: ['Muse'] });
    h.last().deliver({ type: 'subscribed', artists: ['Adele'] });
    assert.deepEqual(await a, { type: 'subscribed', artists: ['Adele'] });
    assert.deepEqual(await b, { type: 'unsubscribed', artists: ['Muse'] });
  });

  test('requests made while disconnected go out once connected', async () => {
    const h = harness();
    const pending = h.client.subscribe('Adele');
    await settle();
    assert.equal(h.client.state, 'connecting');
    h.last().accept();
    const [sent] = h.last().actions('subscribe');
    assert.deepEqual(sent.artists, ['Adele']);
    h.last().answerAll();
    assert.deepEqual((await pending).artists, ['Adele']);
  });

  test('a request unanswered when the socket drops is sent again on the next one', async () => {
    const h = await connected();
    const pending = h.client.subscribe('Adele');
    await reconnect(h);
    const [again] = h.last().actions('subscribe');
    assert.deepEqual(again.artists, ['Adele']);
    h.last().answerAll();
    assert.deepEqual((await pending).artists, ['Adele']);
  });

  test('unsubscribe forgets the artist at once: a reconnect does not subscribe it again', async () => {
    const h = await connected();
    h.client.subscribe(['Adele', 'Muse']);
    h.last().answerAll();
    const pending = h.client.unsubscribe('adele');
    h.last().answerAll();
    assert.deepEqual((await pending).artists, ['adele']);
    await reconnect(h);
    assert.deepEqual(h.last().actions('subscribe').map((m) => m.artists), [['Muse']]);
  });

  test('bad arguments reject without sending anything', async () => {
    const h = await connected();
    await assert.rejects(h.client.subscribe([]), TypeError);
    await assert.rejects(h.client.subscribe(['  ']), TypeError);
    await assert.rejects(h.client.unsubscribe(42), TypeError);
    assert.deepEqual(h.last().actions('subscribe'), []);
    assert.throws(() => h.client.on('notifications', () => {}), TypeError);
  });
});

describe('notifications', () => {
  test('a duplicate id is dropped', async () => {
    const h = await connected();
    h.client.subscribe('Adele');
    h.last().answerAll();
    h.last().deliver(notification('e1', 1));
    h.last().deliver(notification('e1', 1));
    h.last().deliver(notification('e2', 2));
    assert.deepEqual(h.of('notification').map(([n]) => n.id), ['e1', 'e2']);
  });

  test('duplicates are recognised across reconnects', async () => {
    const h = await connected();
    h.client.subscribe('Adele');
    h.last().answerAll();
    h.last().deliver(notification('e1', 1));
    await reconnect(h);
    h.last().deliver(notification('e1', 1));
    h.last().deliver(notification('e2', 2));
    assert.deepEqual(h.of('notification').map(([n]) => n.id), ['e1', 'e2']);
  });

  test('the memory of ids is bounded: the oldest is forgotten first', async () => {
    const h = await connected({ dedupeSize: 3 });
    for (const id of ['a', 'b', 'c', 'd', 'a', 'd']) h.last().deliver(notification(id, 1, 'Muse'));
    // 'a' was pushed out by 'd', so it is new again; 'd' is still remembered.
    assert.deepEqual(h.of('notification').map(([n]) => n.id), ['a', 'b', 'c', 'd', 'a']);
  });

  test('a gap frame reaches the application as it came', async () => {
    const h = await connected();
    const gap = { type: 'gap', artist: 'Adele', from: 13, to: 20 };
    h.last().deliver(gap);
    assert.deepEqual(h.of('gap'), [[gap]]);
  });

  test('a frame that is not JSON is an error event, and the connection carries on', async () => {
    const h = await connected();
    h.last().deliver('not json');
    h.last().deliver(notification('e1', 1));
    assert.deepEqual(h.of('error').map(([e]) => e.code), ['invalid_frame']);
    assert.equal(h.of('notification').length, 1);
  });
});

describe('since: catching up after a reconnect', () => {
  test('resubscribes with the last seq seen, under the name the app subscribed with', async () => {
    const h = await connected();
    h.client.subscribe(['Taylor Swift', 'Muse']);
    h.last().answerAll();
    // The event spells the name differently; it is the same artist.
    h.last().deliver(notification('e1', 7, 'TAYLOR  swift'));
    h.last().deliver(notification('e2', 8, 'Taylor Swift'));
    await reconnect(h);
    const [resubscribe] = h.last().actions('subscribe');
    assert.deepEqual(resubscribe, {
      action: 'subscribe',
      artists: ['Taylor Swift', 'Muse'],
      since: { 'Taylor Swift': 8 },
      ref: resubscribe.ref,
    });
  });

  test('a live notification that overtakes catch-up does not move since past the hole', async () => {
    const h = await connected();
    h.client.subscribe('Adele');
    h.last().answerAll();
    h.last().deliver(notification('e5', 5));
    h.last().deliver(notification('e7', 7)); // 6 not seen yet
    await reconnect(h);
    assert.deepEqual(h.last().actions('subscribe')[0].since, { Adele: 5 });
    h.last().answerAll();
    h.last().deliver(notification('e6', 6)); // caught up: 5, 6, 7 all seen
    await reconnect(h);
    assert.deepEqual(h.last().actions('subscribe')[0].since, { Adele: 7 });
  });

  test('a gap means the missing seqs are not waited for', async () => {
    const h = await connected();
    h.client.subscribe('Adele');
    h.last().answerAll();
    h.last().deliver(notification('e12', 12));
    await reconnect(h);
    h.last().answerAll();
    h.last().deliver({ type: 'gap', artist: 'Adele', from: 13, to: 20 });
    h.last().deliver(notification('e21', 21));
    await reconnect(h);
    assert.deepEqual(h.last().actions('subscribe')[0].since, { Adele: 21 });
  });

  test('a gap with retry is asked for again at once, from the last seq seen', async () => {
    const h = await connected();
    h.client.subscribe('Adele');
    h.last().answerAll();
    h.last().deliver(notification('e12', 12));
    h.last().deliver({ type: 'gap', artist: 'Adele', from: 13, to: 20, retry: true });
    const [, again] = h.last().actions('subscribe');
    assert.deepEqual(again, { action: 'subscribe', artists: ['Adele'], since: { Adele: 12 }, ref: again.ref });
    assert.deepEqual(h.of('gap').map(([g]) => g.retry), [true]);
  });

  test('a hole still open after the grace is asked for again with since', async () => {
    const h = await connected();
    h.client.subscribe('Adele');
    h.last().answerAll();
    h.last().deliver(notification('e5', 5));
    h.last().deliver(notification('e7', 7));
    await h.clock.advance(1_999);
    assert.equal(h.last().actions('subscribe').length, 1);
    await h.clock.advance(1);
    const [, again] = h.last().actions('subscribe');
    assert.deepEqual(again, { action: 'subscribe', artists: ['Adele'], since: { Adele: 5 }, ref: again.ref });
  });

  test('a hole that fills within the grace is not asked for', async () => {
    const h = await connected();
    h.client.subscribe('Adele');
    h.last().answerAll();
    h.last().deliver(notification('e5', 5));
    h.last().deliver(notification('e7', 7));
    await h.clock.advance(1_000);
    h.last().deliver(notification('e6', 6));
    await h.clock.advance(5_000);
    assert.equal(h.last().actions('subscribe').length, 1);
  });

  test('since given by the application is sent with its first subscribe', async () => {
    const h = await connected();
    h.client.subscribe(['Adele', 'Muse'], { since: { Adele: 40 } });
    const [sent] = h.last().actions('subscribe');
    assert.deepEqual(sent.since, { Adele: 40 });
  });

  test('the seq of the subscribed reply is where an artist with nothing seen yet resumes', async () => {
    const h = await connected();
    h.client.subscribe(['Adele', 'Muse']);
    const [sent] = h.last().actions('subscribe');
    h.last().deliver({ type: 'subscribed', artists: ['Adele', 'Muse'], seq: { Adele: 4, Muse: 0 }, ref: sent.ref });
    h.last().deliver(notification('e5', 5));
    await reconnect(h);
    assert.deepEqual(h.last().actions('subscribe')[0].since, { Adele: 5, Muse: 0 });
  });

  test('an artist with no notification seen yet is resubscribed without since', async () => {
    const h = await connected();
    h.client.subscribe('Adele');
    h.last().answerAll();
    await reconnect(h);
    assert.deepEqual(h.last().actions('subscribe')[0], {
      action: 'subscribe',
      artists: ['Adele'],
      ref: h.last().actions('subscribe')[0].ref,
    });
  });

  test('more than 25 subscriptions are resubscribed 25 to a message', async () => {
    const h = await connected();
    const names = Array.from({ length: 30 }, (_, i) => `Artist ${i}`);
    h.client.subscribe(names.slice(0, 25));
    h.client.subscribe(names.slice(25));
    h.last().answerAll();
    await reconnect(h);
    assert.deepEqual(
      h.last().actions('subscribe').map((m) => m.artists),
      [names.slice(0, 25), names.slice(25)],
    );
  });
});
