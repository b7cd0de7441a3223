// Fan rooms and announcements (publish, message, welcome, joined, left, announcement), on a fake
// WebSocket: `node --test clients/js/tests/`.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { MAX_DATA_BYTES, MarqueeError } from '../marquee.js';
import { announcement, connected, harness, message, notification, reconnect, settle } from './fakes.mjs';

/** Asserts that `promise` rejects with a MarqueeError of `code`; returns the error. */
async function rejectsWith(promise, code) {
  let caught;
  await assert.rejects(promise, (error) => {
    caught = error;
    return error instanceof MarqueeError && error.code === code;
  });
  return caught;
}

describe('publish', () => {
  test('sends artist, data and a ref, and resolves with the published reply of that ref', async () => {
    const h = await connected();
    const chat = h.client.publish('Adele', { kind: 'chat', text: 'hi' });
    const stroke = h.client.publish('Adele', { kind: 'stroke', color: '#f00', points: [[0.1, 0.2]] });
    const [first, second] = h.last().actions('publish');
    assert.deepEqual(first, { action: 'publish', artist: 'Adele', data: { kind: 'chat', text: 'hi' }, ref: first.ref });
    assert.notEqual(first.ref, second.ref);
    // Answered out of order: each promise gets its own reply.
    h.last().deliver({ type: 'published', id: 'm2', ref: second.ref });
    h.last().deliver({ type: 'published', id: 'm1', ref: first.ref });
    assert.deepEqual(await chat, { type: 'published', id: 'm1', ref: first.ref });
    assert.deepEqual(await stroke, { type: 'published', id: 'm2', ref: second.ref });
    assert.deepEqual(h.of('message'), [], 'the sender is told published, not sent its message');
  });

  test('an error frame with its ref rejects it with the server code, and is not an error event', async () => {
    const h = await connected();
    const limited = h.client.publish('Adele', { kind: 'chat', text: 'one too many' });
    const forbidden = h.client.publish('Muse', { kind: 'chat', text: 'not my room' });
    const [a, b] = h.last().actions('publish');
    h.last().deliver({ type: 'error', code: 'rate_limited', message: 'slow down', ref: a.ref });
    h.last().deliver({ type: 'error', code: 'forbidden', message: 'not in the token', ref: b.ref });
    const error = await rejectsWith(limited, 'rate_limited');
    assert.deepEqual([error.message, error.ref], ['slow down', a.ref]);
    await rejectsWith(forbidden, 'forbidden');
    assert.deepEqual(h.of('error'), []);
  });

  test('any JSON value may be data; a copy as it was when published is sent', async () => {
    const h = await connected();
    const data = { kind: 'chat', text: 'before' };
    h.client.publish('Adele', data);
    data.text = 'after';
    h.client.publish('Adele', 'just a string');
    h.client.publish('Adele', null);
    assert.deepEqual(
      h.last().actions('publish').map((m) => m.data),
      [{ kind: 'chat', text: 'before' }, 'just a string', null],
    );
  });

  test('data over 8 KiB as JSON is refused without sending anything', async () => {
    const h = await connected();
    // A string of n ASCII characters is n + 2 bytes of JSON.
    const fits = 'x'.repeat(MAX_DATA_BYTES - 2);
    h.client.publish('Adele', fits);
    await rejectsWith(h.client.publish('Adele', `${fits}x`), 'data_too_large');
    // Counted in UTF-8 bytes: é is 2.
    await rejectsWith(h.client.publish('Adele', 'é'.repeat(MAX_DATA_BYTES / 2)), 'data_too_large');
    assert.deepEqual(h.last().actions('publish').map((m) => m.data.length), [MAX_DATA_BYTES - 2]);
  });

  test('bad arguments reject with a TypeError without sending anything', async () => {
    const h = await connected();
    const cycle = {};
    cycle.self = cycle;
    await assert.rejects(h.client.publish('Adele'), TypeError);
    await assert.rejects(h.client.publish('Adele', () => {}), TypeError);
    await assert.rejects(h.client.publish('Adele', cycle), TypeError);
    await assert.rejects(h.client.publish('Adele', 10n), TypeError);
    await assert.rejects(h.client.publish(' ', 'hi'), TypeError);
    await assert.rejects(h.client.publish(['Adele'], 'hi'), TypeError);
    assert.deepEqual(h.last().actions('publish'), []);
  });

  test('a server that echoes no ref: a published reply answers the oldest publish', async () => {
    const h = await connected();
    const first = h.client.publish('Adele', 1);
    const second = h.client.publish('Adele', 2);
    h.last().deliver({ type: 'published', id: 'm1' });
    h.last().deliver({ type: 'published', id: 'm2' });
    assert.deepEqual(await first, { type: 'published', id: 'm1' });
    assert.deepEqual(await second, { type: 'published', id: 'm2' });
  });
});

describe('publishing while not connected', () => {
  test('waits, and goes out once connected, after the subscriptions', async () => {
    const h = harness();
    h.client.subscribe('Adele');
    const pending = h.client.publish('Adele', { kind: 'chat', text: 'early' });
    await settle();
    assert.equal(h.client.state, 'connecting');
    h.last().accept();
    assert.deepEqual(
      h.last().sent.map((m) => m.action),
      ['ping', 'subscribe', 'publish'],
    );
    h.last().answerAll();
    assert.equal((await pending).type, 'published');
  });

  test('made while reconnecting, it goes out on the next socket', async () => {
    const h = await connected();
    h.last().drop();
    assert.equal(h.client.state, 'reconnecting');
    const pending = h.client.publish('Adele', 'back soon');
    await h.clock.advance(h.events.at(-1)[2].delayMs);
    h.last().accept();
    assert.deepEqual(h.last().actions('publish').map((m) => m.data), ['back soon']);
    h.last().answerAll();
    assert.equal((await pending).type, 'published');
  });

  test('one unanswered when the socket drops rejects with connection_lost, and is not sent again', async () => {
    const h = await connected();
    const pending = h.client.publish('Adele', 'did it go?');
    await reconnect(h);
    await rejectsWith(pending, 'connection_lost');
    assert.deepEqual(h.last().actions('publish'), [], 'a resent message would be a second message');
  });

  test('close rejects waiting publishes with closed', async () => {
    const h = harness();
    const pending = h.client.publish('Adele', 'never sent');
    h.client.close();
    await rejectsWith(pending, 'closed');
    await rejectsWith(h.client.publish('Adele', 'after close'), 'closed');
  });
});

describe('publishing across a renewal (make before break)', () => {
  /** A connection ending in 6 s, its renewal opened at 4.8 s but not yet subscribed. */
  async function renewing() {
    const h = harness();
    await settle();
    const first = h.last();
    first.accept();
    h.client.subscribe('Adele');
    first.answerAll({ connectionId: 'c1', expiresAt: new Date(h.clock.now() + 6_000).toISOString() });
    await h.clock.advance(4_800);
    const second = h.last();
    second.accept();
    return { h, first, second };
  }

  test('a publish sent on the old socket is answered there; the old socket closes after the reply', async () => {
    const { h, first, second } = await renewing();
    const pending = h.client.publish('Adele', 'during the overlap');
    const [sent] = first.actions('publish');
    second.answerAll({ connectionId: 'c2' }); // the new socket is subscribed: it takes over
    assert.equal(h.client.socket, second);
    assert.equal(first.closedWith, null, 'the old socket waits for the reply to its publish');
    first.deliver({ type: 'published', id: 'm1', ref: sent.ref });
    assert.deepEqual(await pending, { type: 'published', id: 'm1', ref: sent.ref });
    assert.deepEqual(first.closedWith, { code: 1000, reason: 'Replaced' });
    assert.deepEqual(second.actions('publish'), [], 'not sent twice');
  });

  test('a reply that never comes: the old socket is closed after openTimeoutMs, and the publish rejects', async () => {
    const { h, first, second } = await renewing();
    const pending = h.client.publish('Adele', 'lost in the overlap');
    second.answerAll({ connectionId: 'c2' });
    await h.clock.advance(9_999);
    assert.equal(first.closedWith, null);
    await h.clock.advance(1);
    assert.deepEqual(first.closedWith, { code: 1000, reason: 'Replaced' });
    await rejectsWith(pending, 'connection_lost');
    assert.deepEqual(second.actions('publish'), []);
  });

  test('presence frames count only from the current socket, so nothing is told twice', async () => {
    const { h, first, second } = await renewing();
    const joined = { type: 'joined', artist: 'Adele', user: 'carol', subscribers: 3 };
    first.deliver(joined);
    second.deliver(joined); // the renewal is subscribed to the room as well
    second.deliver({ type: 'welcome', artist: 'Adele', subscribers: 4 });
    second.answerAll({ connectionId: 'c2' });
    const left = { type: 'left', artist: 'Adele', user: 'carol', subscribers: 3 };
    first.deliver(left); // the old socket is closed by now: nothing comes from it
    second.deliver(left);
    assert.deepEqual(h.of('joined'), [[joined]]);
    assert.deepEqual(h.of('welcome'), []);
    assert.deepEqual(h.of('left'), [[left]]);
  });
});

describe('room frames and announcements', () => {
  test('welcome, joined and left reach their listeners as they came', async () => {
    const h = await connected();
    h.client.subscribe('Adele');
    h.last().answerAll();
    const welcome = { type: 'welcome', artist: 'Adele', subscribers: 1 };
    const joined = { type: 'joined', artist: 'Adele', user: 'bob', subscribers: 2 };
    const left = { type: 'left', artist: 'Adele', user: 'bob', subscribers: 1 };
    for (const frame of [welcome, joined, left]) h.last().deliver(frame);
    assert.deepEqual(
      h.events.filter(([type]) => ['welcome', 'joined', 'left'].includes(type)),
      [['welcome', welcome], ['joined', joined], ['left', left]],
    );
  });

  test('after a reconnect, the welcome that follows the automatic subscribe gives the count again', async () => {
    const h = await connected();
    h.client.subscribe('Adele');
    h.last().answerAll();
    h.last().deliver({ type: 'welcome', artist: 'Adele', subscribers: 2 });
    await reconnect(h);
    h.last().answerAll();
    h.last().deliver({ type: 'welcome', artist: 'Adele', subscribers: 5 });
    assert.deepEqual(h.of('welcome').map(([w]) => w.subscribers), [2, 5]);
  });

  test('a message reaches the message listeners as it came', async () => {
    const h = await connected();
    const frame = message('m1', { kind: 'chat', text: 'hello' });
    h.last().deliver(frame);
    assert.deepEqual(h.of('message'), [[frame]]);
  });

  test('a duplicate message id is dropped, across reconnects too', async () => {
    const h = await connected();
    h.last().deliver(message('m1', 'a'));
    h.last().deliver(message('m1', 'a'));
    h.last().deliver(message('m2', 'b'));
    await reconnect(h);
    h.last().deliver(message('m2', 'b'));
    h.last().deliver(message('m3', 'c'));
    assert.deepEqual(h.of('message').map(([m]) => m.id), ['m1', 'm2', 'm3']);
  });

  test('a duplicate announcement id is dropped', async () => {
    const h = await connected();
    h.last().deliver(announcement('a1'));
    h.last().deliver(announcement('a1'));
    h.last().deliver(announcement('a2', 'Doors open'));
    assert.deepEqual(h.of('announcement').map(([a]) => [a.id, a.message]), [
      ['a1', 'Sale delayed 10 minutes'],
      ['a2', 'Doors open'],
    ]);
  });

  test('ids are remembered per kind: a message does not hide a notification of the same id', async () => {
    const h = await connected({ dedupeSize: 2 });
    h.last().deliver(message('x', 'a'));
    h.last().deliver(notification('x', 1));
    h.last().deliver(announcement('x'));
    // Each kind remembers its own last two ids.
    for (const id of ['y', 'z', 'x']) h.last().deliver(message(id, 'b'));
    assert.deepEqual(h.of('message').map(([m]) => m.id), ['x', 'y', 'z', 'x']);
    assert.deepEqual(h.of('notification').map(([n]) => n.id), ['x']);
    assert.deepEqual(h.of('announcement').map(([a]) => a.id), ['x']);
  });

  test('a listener can be removed with off', async () => {
    const h = await connected();
    const heard = [];
    const listener = (m) => heard.push(m.id);
    h.client.on('message', listener);
    h.last().deliver(message('m1', 'a'));
    h.client.off('message', listener);
    h.last().deliver(message('m2', 'b'));
    assert.deepEqual(heard, ['m1']);
  });
});
