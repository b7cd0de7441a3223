// Browser tests of issue 9, "fan rooms": two fans (two pages, tokens that may publish to the room)
// in one artist's room on the demo page, against marquee-local in Chromium,
// `node --test tests/browser/`.
//
// - Each sees the other join and the waiting count 2.
// - They chat: each sees the other's message; the sender sees its own line as published (the id
//   the other page got the message under), never its own message echoed back.
// - They draw: a stroke drawn with the mouse on one page is published and drawn on the other's
//   sketch pad (checked by the pad's counters and its pixels), both ways.
// - One page closes: the other sees it leave, and the count 1.
// - A token that may not publish to the room: the room is read only (no message box, no pen).
// - The library against the gateway: a publish to a room outside the token's claim rejects with
//   `forbidden`, data over 8 KiB with `data_too_large`, fifty at once (on a gateway allowing one
//   message a second after a burst of 20) are each published or `rate_limited`, no more published
//   than the burst and the refills allow, and the room gets exactly the published ones.
// - An operator's announcement (POST /events, `Announcement`) is a banner on both pages.
//
// Environment and requirements: as tests/browser/demo.test.mjs (see harness.mjs). Output: a
// screenshot of a room in target/browser/rooms.png.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';

import { UI_TIMEOUT_MS, launchChromium, repoRoot, startGateway, withGatewayLog } from './harness.mjs';

describe('fan rooms on the demo page', { timeout: 120_000 }, () => {
  let gateway;
  // A second gateway, for the rate limit: one message a second after a burst of 20, so how many
  // of a burst are refused does not depend on how fast this machine handles them.
  let slowGateway;
  let browser;
  const contexts = [];

  // Set up once, by the first test (a failing before() hook would only cancel the tests).
  let setup;
  const ready = () => {
    setup ??= (async () => {
      gateway = await startGateway();
      browser = await launchChromium();
    })();
    return setup;
  };

  after(async () => {
    for (const context of contexts) await context.close().catch(() => {});
    if (browser) await browser.close().catch(() => {});
    if (gateway) await gateway.stop();
    if (slowGateway) await slowGateway.stop();
  });

  /**
   * A fresh page connected as `user` with a token that may publish to `artist`'s room (unless
   * `publish` is false), subscribed to `artist` (so in its room), on gateway `on` (the shared
   * one by default).
   */
  async function inRoom(user, artist, { publish = true, on } = {}) {
    await ready();
    on ??= gateway;
    const context = await browser.newContext({ viewport: { width: 1100, height: 1000 } });
    contexts.push(context);
    const page = await context.newPage();
    page.problems = [];
    page.on('pageerror', (error) => page.problems.push(`page error: ${error.message}`));
    await page.goto(`${on.base}/`);
    await page.locator('#user').fill(user);
    if (publish) await page.locator('#token-publish').fill(artist);
    await page.locator('#connect').click();
    await page.locator('#state[data-state="open"]').waitFor({ timeout: UI_TIMEOUT_MS });
    await page.locator('#artist').fill(artist);
    await page.locator('#subscribe').click();
    await page
      .locator(`#subscriptions li[data-artist="${artist}"][data-status="subscribed"]`)
      .waitFor({ timeout: UI_TIMEOUT_MS });
    return page;
  }

  const room = (page, artist) => page.locator(`.room[data-artist="${artist}"]`);

  /** Waits until `artist`'s room on `page` shows `count` waiting. */
  const counting = (page, artist, count) =>
    room(page, artist).locator(`.count[data-count="${count}"]`).waitFor({ timeout: UI_TIMEOUT_MS });

  /** The join and leave notices of a room: [{ kind, user }], oldest first. */
  const notices = (page, artist) =>
    room(page, artist)
      .locator('.notices li')
      .evaluateAll((items) => items.map((li) => ({ kind: li.dataset.kind, user: li.dataset.user })));

  /** The chat lines of a room, oldest first. */
  const chat = (page, artist) =>
    room(page, artist)
      .locator('.messages li')
      .evaluateAll((items) =>
        items.map((li) => ({
          origin: li.dataset.origin,
          from: li.dataset.from ?? null,
          status: li.dataset.status ?? null,
          id: li.dataset.id ?? null,
          text: li.textContent,
        })),
      );

  async function say(page, artist, text) {
    await room(page, artist).locator('input.say').fill(text);
    await room(page, artist).getByRole('button', { name: 'Send' }).click();
  }

  /** Two pages, `a` then `b`, in `artist`'s room on gateway `on`, both told it holds 2. */
  async function twoFans(artist, a, b, on = undefined) {
    const first = await inRoom(a, artist, { on });
    await counting(first, artist, 1);
    const second = await inRoom(b, artist, { on });
    await counting(first, artist, 2);
    await counting(second, artist, 2);
    return [first, second];
  }

  test('two fans in one room: each sees the other join, and 2 waiting', async () => {
    await ready();
    await withGatewayLog(() => gateway, async () => {
      const alice = await inRoom('alice-join', 'Adele');
      await counting(alice, 'Adele', 1);

      const bob = await inRoom('bob-join', 'Adele');

      await counting(alice, 'Adele', 2);
      await counting(bob, 'Adele', 2);
      assert.deepEqual(await notices(alice, 'Adele'), [{ kind: 'joined', user: 'bob-join' }]);
      // Bob came second: his welcome says 2; no one joined after him.
      assert.deepEqual(await notices(bob, 'Adele'), []);
      assert.equal(await room(alice, 'Adele').locator('.count').textContent(), '2 waiting');
      assert.deepEqual([...alice.problems, ...bob.problems], []);
    })();
  });

  test('they chat: each sees the other’s message, and its own only as published', async () => {
    await ready();
    await withGatewayLog(() => gateway, async () => {
      const [alice, bob] = await twoFans('Muse', 'alice-chat', 'bob-chat');

      await say(alice, 'Muse', 'Queue opens at nine?');
      await room(alice, 'Muse').locator('.messages li[data-status="published"]').waitFor({ timeout: UI_TIMEOUT_MS });
      await room(bob, 'Muse').locator('.messages li[data-origin="message"]').waitFor({ timeout: UI_TIMEOUT_MS });
      await say(bob, 'Muse', 'Nine sharp!');
      await room(bob, 'Muse').locator('.messages li[data-status="published"]').waitFor({ timeout: UI_TIMEOUT_MS });
      await room(alice, 'Muse').locator('.messages li[data-origin="message"]').waitFor({ timeout: UI_TIMEOUT_MS });

      const [aliceSaid, bobHeard] = [(await chat(alice, 'Muse'))[0], (await chat(bob, 'Muse'))[0]];
      const [bobSaid, aliceHeard] = [(await chat(bob, 'Muse'))[1], (await chat(alice, 'Muse'))[1]];
      assert.ok(aliceSaid.id && bobSaid.id, 'published replies carry the message ids');
      assert.deepEqual(await chat(alice, 'Muse'), [
        { origin: 'self', from: null, status: 'published', id: aliceSaid.id, text: 'alice-chat (you): Queue opens at nine?' },
        { origin: 'message', from: 'bob-chat', status: null, id: bobSaid.id, text: 'bob-chat: Nine sharp!' },
      ]);
      assert.deepEqual(await chat(bob, 'Muse'), [
        { origin: 'message', from: 'alice-chat', status: null, id: aliceSaid.id, text: 'alice-chat: Queue opens at nine?' },
        { origin: 'self', from: null, status: 'published', id: bobSaid.id, text: 'bob-chat (you): Nine sharp!' },
      ]);
      assert.deepEqual([bobHeard.id, aliceHeard.id], [aliceSaid.id, bobSaid.id]);

      // The frames themselves: each page got the other's message (at least once: delivery may
      // repeat it, the library drops copies), and no message of its own.
      for (const [page, self, other, id] of [
        [alice, 'alice-chat', 'bob-chat', bobSaid.id],
        [bob, 'bob-chat', 'alice-chat', aliceSaid.id],
      ]) {
        const frames = await page.$$eval('#log li.in', (items) =>
          items.map((li) => li.textContent.slice(li.textContent.indexOf('{'))).filter((t) => t.includes('"type":"message"')),
        );
        const senders = [...new Set(frames.map((t) => JSON.parse(t)).map((f) => `${f.from} ${f.id}`))];
        assert.deepEqual(senders, [`${other} ${id}`], `${self} got message frames: ${JSON.stringify(frames)}`);
      }
      assert.deepEqual([...alice.problems, ...bob.problems], []);
    })();
  });

  /**
   * Draws a line with the mouse on `page`'s pad of `artist`, from and to points given in 0..1 of
   * the pad; waits until every piece of it was answered; returns how many were published.
   */
  async function draw(page, artist, [x1, y1], [x2, y2]) {
    const canvas = room(page, artist).locator('canvas');
    await canvas.scrollIntoViewIfNeeded();
    const box = await canvas.boundingBox();
    await page.mouse.move(box.x + x1 * box.width, box.y + y1 * box.height);
    await page.mouse.down();
    await page.mouse.move(box.x + x2 * box.width, box.y + y2 * box.height, { steps: 25 });
    await page.mouse.up();
    await page.waitForFunction(
      (c) => c.dataset.pending === '0' && Number(c.dataset.sent) + Number(c.dataset.failed) > 0,
      await canvas.elementHandle(),
      { timeout: UI_TIMEOUT_MS },
    );
    assert.equal(await canvas.getAttribute('data-failed'), '0', 'no piece of the stroke was refused');
    return Number(await canvas.getAttribute('data-sent'));
  }

  /** The colour of the pad's pixel at (x, y) in 0..1: '#rrggbb', or null where nothing is drawn. */
  const pixel = (page, artist, [x, y]) =>
    room(page, artist)
      .locator('canvas')
      .evaluate(
        (canvas, [px, py]) => {
          const [r, g, b, a] = canvas
            .getContext('2d')
            .getImageData(Math.floor(px * canvas.width), Math.floor(py * canvas.height), 1, 1).data;
          if (a === 0) return null;
          return `#${[r, g, b].map((v) => v.toString(16).padStart(2, '0')).join('')}`;
        },
        [x, y],
      );

  // A drawn pixel in `expected` (#rrggbb). A line's edge is antialiased: a sample that lands
  // on it is partly transparent, and un-premultiplying its alpha rounds each channel by one or
  // two, so each channel may differ by at most 3.
  const assertColour = (actual, expected, message) => {
    assert.notEqual(actual, null, `${message}: nothing drawn there`);
    const channels = (hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
    const [a, e] = [channels(actual), channels(expected)];
    assert.ok(a.every((v, i) => Math.abs(v - e[i]) <= 3), `${message}: ${actual} is not ${expected}`);
  };

  const received = (page, artist) => room(page, artist).locator('canvas').getAttribute('data-received');

  test('they draw: a stroke drawn with the mouse on one page appears on the other, both ways', async () => {
    await ready();
    await withGatewayLog(() => gateway, async () => {
      const [alice, bob] = await twoFans('Blur', 'alice-draw', 'bob-draw');
      const aliceColour = await room(alice, 'Blur').locator('input[type="color"]').inputValue();
      const bobColour = await room(bob, 'Blur').locator('input[type="color"]').inputValue();
      assert.equal(await pixel(bob, 'Blur', [0.5, 0.5]), null, 'the pad starts empty');

      // Alice draws a horizontal line across the middle.
      const pieces = await draw(alice, 'Blur', [0.2, 0.5], [0.8, 0.5]);
      await room(bob, 'Blur').locator(`canvas[data-received="${pieces}"]`).waitFor({ timeout: UI_TIMEOUT_MS });
      assertColour(await pixel(bob, 'Blur', [0.5, 0.5]), aliceColour, 'drawn on Bob’s pad in Alice’s colour');
      assert.equal(await pixel(bob, 'Blur', [0.5, 0.2]), null, 'and nowhere else');
      assertColour(await pixel(alice, 'Blur', [0.5, 0.5]), aliceColour, 'Alice sees her own line');
      assert.equal(await received(alice, 'Blur'), '0', 'Alice’s own pieces do not come back to her');

      // Bob draws a vertical line on the left, away from Alice's.
      assert.equal(await pixel(alice, 'Blur', [0.3, 0.25]), null);
      const back = await draw(bob, 'Blur', [0.3, 0.1], [0.3, 0.4]);
      await room(alice, 'Blur').locator(`canvas[data-received="${back}"]`).waitFor({ timeout: UI_TIMEOUT_MS });
      assertColour(await pixel(alice, 'Blur', [0.3, 0.25]), bobColour, 'drawn on Alice’s pad in Bob’s colour');
      assert.equal(await received(bob, 'Blur'), String(pieces), 'Bob got Alice’s pieces once each');

      mkdirSync(join(repoRoot, 'target/browser'), { recursive: true });
      await room(alice, 'Blur').screenshot({ path: join(repoRoot, 'target/browser/rooms.png') });
      assert.deepEqual([...alice.problems, ...bob.problems], []);
    })();
  });

  test('one page closes: the other sees it leave, and 1 waiting', async () => {
    await ready();
    await withGatewayLog(() => gateway, async () => {
      const [alice, bob] = await twoFans('Coldplay', 'alice-leave', 'bob-leave');

      await bob.close();

      await counting(alice, 'Coldplay', 1);
      assert.deepEqual(await notices(alice, 'Coldplay'), [
        { kind: 'joined', user: 'bob-leave' },
        { kind: 'left', user: 'bob-leave' },
      ]);
      assert.deepEqual(alice.problems, []);
    })();
  });

  test('a token that may not publish to the room: no message box, and the pad does not draw', async () => {
    await ready();
    await withGatewayLog(() => gateway, async () => {
      const carol = await inRoom('carol-quiet', 'Pulp', { publish: false });
      const pulp = room(carol, 'Pulp');
      assert.equal(await pulp.locator('form.chat').isVisible(), false);
      assert.equal(await pulp.locator('.readonly').isVisible(), true);
      assert.equal(await pulp.locator('canvas').getAttribute('data-drawable'), 'false');

      const box = await pulp.locator('canvas').boundingBox();
      await carol.mouse.move(box.x + 10, box.y + 10);
      await carol.mouse.down();
      await carol.mouse.move(box.x + 100, box.y + 60, { steps: 5 });
      await carol.mouse.up();
      const drawn = await pulp.locator('canvas').evaluate((canvas) =>
        canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data.filter((v, i) => i % 4 === 3 && v > 0).length,
      );
      assert.equal(drawn, 0, 'nothing drawn on the pad');
      const sent = await carol.$$eval('#log li.out', (items) => items.filter((li) => li.textContent.includes('"publish"')).length);
      assert.equal(sent, 0);
      assert.deepEqual(carol.problems, []);
    })();
  });

  test('the library against the gateway: refused publishes reject with their code, and send nothing', async () => {
    await ready();
    // Its own table too, when the gateways share DynamoDB Local: no fan-out of one gateway meets
    // the other's connections.
    slowGateway ??= await startGateway(['--publish-rate', '1', '--publish-burst', '20', '--table', 'marquee-rate-limit']);
    await withGatewayLog(() => slowGateway, async () => {
      const [dave, erin] = await twoFans('Suede', 'dave-burst', 'erin-burst', slowGateway);

      // Fifty at once, well over the burst: each is published or refused as rate_limited.
      const outcomes = await dave.evaluate(async () => {
        const { client } = window.marquee;
        const settle = (promise) =>
          promise.then(
            (reply) => ({ ok: reply.type, id: reply.id }),
            (error) => ({ code: error.code }),
          );
        const started = performance.now();
        const burst = Array.from({ length: 50 }, (_, i) => settle(client.publish('Suede', { kind: 'chat', text: `burst ${i}` })));
        const elsewhere = settle(client.publish('Elastica', { kind: 'chat', text: 'not my room' }));
        const huge = settle(client.publish('Suede', 'x'.repeat(8 * 1024)));
        const settled = await Promise.all(burst);
        return {
          burst: settled,
          seconds: (performance.now() - started) / 1000,
          elsewhere: await elsewhere,
          huge: await huge,
        };
      });
      assert.deepEqual(outcomes.elsewhere, { code: 'forbidden' });
      assert.deepEqual(outcomes.huge, { code: 'data_too_large' });
      const published = outcomes.burst.filter((o) => o.ok === 'published').map((o) => o.id);
      const refused = outcomes.burst.filter((o) => !o.ok);
      // The bucket refills one a second while the fifty go out, one after another.
      const most = 20 + Math.floor(outcomes.seconds);
      const report = `${outcomes.seconds.toFixed(1)} s: ${JSON.stringify(outcomes.burst)}`;
      assert.ok(published.length >= 20, `a burst of 20 is allowed; ${report}`);
      assert.ok(published.length <= most, `at most ${most} in ${report}`);
      assert.equal(published.length + refused.length, 50);
      assert.deepEqual(refused, refused.map(() => ({ code: 'rate_limited' })));

      // The room got exactly the published ones, once each.
      await erin.waitForFunction(
        (n) => document.querySelectorAll('.room[data-artist="Suede"] .messages li[data-origin="message"]').length >= n,
        published.length,
        { timeout: UI_TIMEOUT_MS },
      );
      const heard = (await chat(erin, 'Suede')).filter((line) => line.origin === 'message').map((line) => line.id);
      assert.deepEqual(heard.sort(), [...published].sort());
      assert.deepEqual([...dave.problems, ...erin.problems], []);
    })();
  });

  test('an announcement published through POST /events is a banner on both pages', async () => {
    await ready();
    await withGatewayLog(() => gateway, async () => {
      const [alice, bob] = await twoFans('Oasis', 'alice-news', 'bob-news');

      const eventId = await gateway.announce('Sale delayed 10 minutes');

      for (const page of [alice, bob]) {
        await page.locator(`#announcements .announcement[data-id="${eventId}"]`).waitFor({ timeout: UI_TIMEOUT_MS });
        const banners = await page.$$eval('#announcements .announcement', (items) =>
          items.map((b) => ({ id: b.dataset.id, text: b.querySelector('.msg').textContent })),
        );
        assert.deepEqual(banners, [{ id: eventId, text: 'Sale delayed 10 minutes' }]);
      }
      assert.deepEqual([...alice.problems, ...bob.problems], []);
    })();
  });
});
