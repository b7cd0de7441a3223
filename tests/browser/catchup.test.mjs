// Browser tests of issue 7, "never miss the sale": the demo page (which uses the client library,
// clients/js/marquee.js) against marquee-local in Chromium, `node --test tests/browser/`.
//
// - A socket killed around a publish (DELETE /@connections/{id}) while events keep coming: the
//   page shows every notification exactly once, in order (catch-up with `since` after the
//   reconnect, duplicates dropped by id).
// - Connections that end every 6 s, by the gateway's maximum duration (`--max-duration 6`) or by
//   the token's expiry (dev tokens with `ttl=6`): the library replaces each one shortly before
//   its end, with a fresh token (make before break); notifications published all the while
//   arrive exactly once, in order, and the page never shows a disconnection.
// - More missed than the server holds (100 per artist): the page shows a gap notice for the
//   lost seqs, then the held notifications once each.
//
// Environment and requirements: as tests/browser/demo.test.mjs (see harness.mjs). Output: a
// screenshot of a gap notice in target/browser/gap.png.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';

import { UI_TIMEOUT_MS, launchChromium, repoRoot, sleep, startGateway, withGatewayLog } from './harness.mjs';

// What the gateway's history holds per artist (HISTORY_MAX_PER_ARTIST's default).
const HISTORY_HELD = 100;
// How long connections live in the expiry tests (the gateway's maximum duration, or the token's
// lifetime: the server ends a connection 30 s after its token's `exp`, its leeway), and how
// long events go on being published after the first connection's `expiresAt`.
const EXPIRY_S = 6;
const PUBLISH_AFTER_EXPIRY_MS = 2_000;
const EXPIRY_PUBLISH_EVERY_MS = 500;

describe('never missing the sale: the demo page and the client library', { timeout: 180_000 }, () => {
  let browser;
  const gateways = [];
  const contexts = [];

  after(async () => {
    for (const context of contexts) await context.close().catch(() => {});
    if (browser) await browser.close().catch(() => {});
    for (const gateway of gateways) await gateway.stop();
  });

  /** A gateway of its own for one test (`args`: more serve flags), and the shared browser. */
  async function gatewayWith(args = []) {
    const gateway = await startGateway(args);
    gateways.push(gateway);
    browser ??= await launchChromium();
    return gateway;
  }

  /**
   * A fresh page on `gateway`'s demo, connected as `user`, its ping answered; `prepare(page)`
   * runs before it connects.
   */
  async function connectedPage(gateway, user, prepare = async () => {}) {
    const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
    contexts.push(context);
    const page = await context.newPage();
    page.problems = [];
    page.on('pageerror', (error) => page.problems.push(`page error: ${error.message}`));
    await prepare(page);
    await page.goto(`${gateway.base}/`);
    await page.locator('#user').fill(user);
    await page.locator('#connect').click();
    await page.locator('#state[data-state="open"]').waitFor({ timeout: UI_TIMEOUT_MS });
    try {
      await page.waitForFunction(() => window.marquee.connectionId !== null, null, { timeout: UI_TIMEOUT_MS });
    } catch (error) {
      error.message = `the page learned no connection id: the server answered no {"action":"ping"} with a pong. ${error.message}`;
      throw error;
    }
    return page;
  }

  async function subscribe(page, artist) {
    await page.locator('#artist').fill(artist);
    await page.locator('#subscribe').click();
    await page
      .locator(`#subscriptions li[data-artist="${artist}"][data-status="subscribed"]`)
      .waitFor({ timeout: UI_TIMEOUT_MS });
  }

  /** The notifications the page shows for `artist`, oldest first: [{ id, seq }]. */
  const shown = (page, artist) =>
    page.$$eval(`.notification[data-artist="${artist}"]`, (items) =>
      items.map((li) => ({ id: li.dataset.id, seq: Number(li.dataset.seq) })).reverse(),
    );

  /** Waits until the page shows `count` notifications for `artist`. */
  const showing = (page, artist, count, timeout = UI_TIMEOUT_MS) =>
    page.waitForFunction(
      ([a, n]) => document.querySelectorAll(`.notification[data-artist="${a}"]`).length >= n,
      [artist, count],
      { timeout },
    );

  /**
   * Holds `page`'s token requests, so that once its socket is gone it stays disconnected until
   * `release()`; `redialled` resolves when the page asks for a token again.
   */
  async function holdTokens(page) {
    let release;
    const held = new Promise((resolve) => {
      release = resolve;
    });
    let dialling;
    const redialled = new Promise((resolve) => {
      dialling = resolve;
    });
    const tokenRequests = (url) => url.pathname === '/dev/token';
    await page.route(tokenRequests, async (route) => {
      dialling();
      await held;
      await route.continue();
    });
    return {
      redialled,
      release: async () => {
        release();
        await page.locator('#state[data-state="open"]').waitFor({ timeout: UI_TIMEOUT_MS });
        await page.unroute(tokenRequests);
      },
    };
  }

  /**
   * Every published event once, nothing else, in seq order with no seq missing. (The order of
   * seqs is the order notify sequenced the events in, which need not be the order of the
   * PutEvents calls: an accepted event is sequenced asynchronously, as behind EventBridge.)
   */
  async function assertExactlyOnceInOrder(page, artist, published) {
    const items = await shown(page, artist);
    assert.deepEqual(
      items.map((n) => n.id).sort(),
      [...published].sort(),
      'the page shows each published event once, and nothing else',
    );
    const first = items[0].seq;
    assert.ok(Number.isInteger(first), `the first notification has no seq: ${JSON.stringify(items[0])}`);
    assert.deepEqual(
      items.map((n) => n.seq),
      published.map((_, i) => first + i),
    );
    assert.equal(await page.locator('#notifications li.gap').count(), 0, 'no gap notice');
  }

  test('a socket killed around a publish: every notification arrives exactly once, in order', async () => {
    const gateway = await gatewayWith();
    await withGatewayLog(() => gateway, async () => {
      const page = await connectedPage(gateway, 'fan-catchup-a');
      await subscribe(page, 'Adele');
      const published = [await gateway.publish('Adele'), await gateway.publish('Adele')];
      await showing(page, 'Adele', 2);

      // Hold the page's next token request, so it stays disconnected while events go out.
      const tokens = await holdTokens(page);

      // Killed while an event is being published: it reaches the old socket or the history.
      const killed = await page.evaluate(() => window.marquee.connectionId);
      const [third] = await Promise.all([gateway.publish('Adele'), gateway.deleteConnection(killed)]);
      published.push(third);
      await tokens.redialled; // the old socket is gone: the page is fetching a token to reconnect
      assert.notEqual(await page.locator('#state').getAttribute('data-state'), 'open');

      // Published while the page has no socket at all: only catch-up can bring these.
      published.push(await gateway.publish('Adele'), await gateway.publish('Adele'));
      await tokens.release();
      await showing(page, 'Adele', 5);

      // And live again afterwards.
      published.push(await gateway.publish('Adele'));
      await showing(page, 'Adele', 6);
      await assertExactlyOnceInOrder(page, 'Adele', published);

      // The reconnect asked for what it missed: a subscribe with since went out.
      const resubscribes = await page.$$eval('#log li.out', (items) =>
        items.map((li) => li.textContent).filter((t) => t.includes('"since":{"Adele":')),
      );
      assert.equal(resubscribes.length, 1, `subscribes with since: ${JSON.stringify(resubscribes)}`);
      assert.notEqual(await page.evaluate(() => window.marquee.connectionId), killed);
      assert.deepEqual(page.problems, []);
    })();
  });

  /**
   * Publishes to `artist` for a while on `page` (connected, subscribed) while its connections
   * are ended every few seconds; checks every notification arrived once, in order, and that
   * the page replaced its connection without ever showing a disconnection.
   */
  async function publishAcrossExpiries(gateway, page, artist) {
    // Record every connection the page uses and every state its badge shows from here on.
    const firstConnection = await page.evaluate(() => {
      window.connections = [window.marquee.connectionId];
      window.marquee.client.on('frame', (direction, text) => {
        const frame = direction === 'in' ? JSON.parse(text) : null;
        if (frame?.type === 'pong' && !window.connections.includes(frame.connectionId)) {
          window.connections.push(frame.connectionId);
        }
      });
      const badge = document.getElementById('state');
      window.seenStates = [];
      new MutationObserver(() => window.seenStates.push(badge.dataset.state)).observe(badge, {
        attributes: true,
        childList: true,
        characterData: true,
        subtree: true,
      });
      return window.marquee.connectionId;
    });

    // Events keep coming until after the server would have ended the first connection.
    const firstEnds = await page.evaluate(() => window.marquee.client.expiresAt.getTime());
    const published = [];
    while (Date.now() < firstEnds + PUBLISH_AFTER_EXPIRY_MS) {
      published.push(await gateway.publish(artist));
      await sleep(EXPIRY_PUBLISH_EVERY_MS);
    }
    await showing(page, artist, published.length);
    await assertExactlyOnceInOrder(page, artist, published);

    // The first connection is over: the page moved on to another, and made it before breaking
    // the first (its badge never left "open").
    const connections = await page.evaluate(() => window.connections);
    assert.ok(connections.length >= 2, `connections used: ${JSON.stringify(connections)}`);
    assert.notEqual(await page.evaluate(() => window.marquee.connectionId), firstConnection);
    assert.deepEqual(
      await page.evaluate(() => window.seenStates.filter((s) => s !== 'open')),
      [],
      'the page showed a disconnection',
    );
    assert.deepEqual(page.problems, []);
  }

  test('connections that reach the maximum duration are replaced without missing a notification', async () => {
    const gateway = await gatewayWith(['--max-duration', String(EXPIRY_S)]);
    await withGatewayLog(() => gateway, async () => {
      const page = await connectedPage(gateway, 'fan-catchup-b');
      await subscribe(page, 'Muse');
      await publishAcrossExpiries(gateway, page, 'Muse');
    })();
  });

  test('connections whose token expires are replaced with a fresh token without missing a notification', async () => {
    const gateway = await gatewayWith();
    await withGatewayLog(() => gateway, async () => {
      // Every dev token the page asks for lives a few seconds only.
      const tokens = [];
      const page = await connectedPage(gateway, 'fan-catchup-d', (p) =>
        p.route(
          (url) => url.pathname === '/dev/token',
          (route) => {
            const url = new URL(route.request().url());
            url.searchParams.set('ttl', String(EXPIRY_S));
            tokens.push(url.href);
            return route.continue({ url: url.href });
          },
        ),
      );
      await subscribe(page, 'Blur');
      await publishAcrossExpiries(gateway, page, 'Blur');
      assert.ok(tokens.length >= 2, `a fresh token for the new connection; token requests: ${tokens.length}`);
    })();
  });

  test('more missed than the server holds: a gap notice, then the held notifications once each', async () => {
    const gateway = await gatewayWith();
    await withGatewayLog(() => gateway, async () => {
      const page = await connectedPage(gateway, 'fan-catchup-c');
      await subscribe(page, 'Coldplay');
      const seen = await gateway.publish('Coldplay');
      await showing(page, 'Coldplay', 1);
      const [{ seq: last }] = await shown(page, 'Coldplay');

      const tokens = await holdTokens(page);
      await gateway.deleteConnection(await page.evaluate(() => window.marquee.connectionId));
      await tokens.redialled;
      // Publishing answers before notify has numbered the event (as PutEvents does): a second
      // fan, online throughout, shows when all of them have been numbered and fanned out, so the
      // page comes back only then (else the last ones would simply arrive live, with no gap).
      const witness = await connectedPage(gateway, 'fan-catchup-witness');
      await subscribe(witness, 'Coldplay');
      // Three more than the history holds: the oldest three of them are lost.
      const missed = [];
      for (let i = 0; i < HISTORY_HELD + 3; i += 1) missed.push(await gateway.publish('Coldplay'));
      await showing(witness, 'Coldplay', HISTORY_HELD + 3, 120_000);
      await tokens.release();
      await showing(page, 'Coldplay', 1 + HISTORY_HELD);

      const gaps = await page.$$eval('#notifications li.gap', (items) =>
        items.map((li) => ({ artist: li.dataset.artist, from: Number(li.dataset.from), to: Number(li.dataset.to) })),
      );
      assert.deepEqual(gaps, [{ artist: 'Coldplay', from: last + 1, to: last + 3 }]);
      // The one seen, then the hundred held (which three of the missed are lost depends on the
      // order notify sequenced them in), each once, in seq order.
      const items = await shown(page, 'Coldplay');
      assert.equal(items[0].id, seen);
      const held = items.slice(1).map((n) => n.id);
      assert.equal(new Set(held).size, HISTORY_HELD, `duplicates among ${JSON.stringify(held)}`);
      assert.deepEqual(
        held.filter((id) => !missed.includes(id)),
        [],
        'the page shows notifications that were not published',
      );
      assert.deepEqual(
        items.map((n) => n.seq),
        [last, ...missed.slice(3).map((_, i) => last + 4 + i)],
      );
      // The notice sits where the lost ones would be: below the held ones, above the one seen.
      const order = await page.$$eval('#notifications li', (list) =>
        list.map((li) => (li.classList.contains('gap') ? 'gap' : Number(li.dataset.seq))),
      );
      assert.deepEqual(order.slice(-2), ['gap', last]);
      assert.deepEqual(page.problems, []);
      mkdirSync(join(repoRoot, 'target/browser'), { recursive: true });
      await page.locator('#notifications li.gap').scrollIntoViewIfNeeded();
      await page.screenshot({ path: join(repoRoot, 'target/browser/gap.png') });
    })();
  });
});
