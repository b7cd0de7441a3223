// Browser test of the local gateway's demo page (local/assets/index.html), run with Node's test
// runner: `node --test tests/browser/`.
//
// Starts `marquee-local serve --port <free port>` (the binary from MARQUEE_LOCAL_BIN, default
// target/debug/marquee-local), drives headless Chromium through playwright-core (installed under
// .local/node/node_modules) and stops the gateway again by its PID. A missing binary, Chromium or
// playwright-core is a failure, never a skip.
//
// Environment: MARQUEE_LOCAL_BIN (the gateway), CHROMIUM_PATH (default /usr/bin/chromium).
// Output: a screenshot of the demo page in target/browser/demo.png.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';

import {
  RECONNECT_TIMEOUT_MS,
  UI_TIMEOUT_MS,
  launchChromium,
  repoRoot,
  startGateway,
  withGatewayLog as withLogOf,
} from './harness.mjs';

const screenshotPath = join(repoRoot, 'target/browser/demo.png');

describe('the demo page served by marquee-local', { timeout: 60_000 }, () => {
  let gateway;
  let browser;
  const contexts = [];

  // Set up once, by the first test that needs it (not in a before() hook: a failing hook only
  // cancels the tests, and a missing binary must count as a failed test).
  let setup;
  const ready = () => {
    setup ??= (async () => {
      gateway = await startGateway();
      // Each page gets its own incognito-like context in the browser's temporary profile.
      browser = await launchChromium();
    })();
    return setup;
  };

  after(async () => {
    for (const context of contexts) await context.close().catch(() => {});
    if (browser) await browser.close().catch(() => {});
    if (gateway) await gateway.stop();
  });

  /** A fresh page on the gateway's demo, connected as `user`. */
  async function connectedPage(user) {
    await ready();
    const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
    contexts.push(context);
    const page = await context.newPage();
    // Uncaught exceptions in the page's script fail the test (console errors about a socket
    // closing are expected when it drops, so those don't).
    page.problems = [];
    page.on('pageerror', (error) => page.problems.push(`page error: ${error.message}`));
    await page.goto(`${gateway.base}/`);
    await page.locator('#user').fill(user);
    await page.locator('#connect').click();
    await page.locator('#state[data-state="open"]').waitFor({ timeout: UI_TIMEOUT_MS });
    return page;
  }

  /** Subscribes through the page's form and waits until the server confirmed it. */
  async function subscribe(page, artist) {
    await page.locator('#artist').fill(artist);
    await page.locator('#subscribe').click();
    await subscribed(page, artist).waitFor({ timeout: UI_TIMEOUT_MS });
  }

  const subscribed = (page, artist) =>
    page.locator(`#subscriptions li[data-artist="${artist}"][data-status="subscribed"]`);
  const notifications = (page, artist) =>
    page.locator(artist ? `.notification[data-artist="${artist}"]` : '.notification');
  const stateOf = (page) => page.locator('#state').textContent();

  /** `body` as a test whose failure message ends with the gateway's recent log lines. */
  const withGatewayLog = (body) => withLogOf(() => gateway, body);

  test('two pages subscribed to different artists each receive only their own notification', withGatewayLog(async () => {
    const a = await connectedPage('fan-browser-a');
    const b = await connectedPage('fan-browser-b');
    await subscribe(a, 'Adele');
    await subscribe(b, 'Muse');

    // Adele, from page A's own "Tickets on sale" button.
    await subscribed(a, 'Adele').locator('button.publish').click();
    await notifications(a, 'Adele').first().waitFor({ timeout: UI_TIMEOUT_MS });
    await a.locator('#publish-result.ok, #publish-result.error').waitFor({ timeout: UI_TIMEOUT_MS });
    const published = await a.locator('#publish-result').textContent();
    assert.match(published, /EventId \S+/, `page A shows no EventId: ${published}`);
    const adele = notifications(a, 'Adele');
    assert.equal(await adele.count(), 1);
    assert.match(await adele.textContent(), /Demo Arena/);
    assert.equal(await notifications(b).count(), 0, 'page B got a notification for Adele');

    // Muse, from the test (the EventId must come back as the notification's id).
    const museId = await gateway.publish('Muse');
    const muse = notifications(b, 'Muse');
    await muse.first().waitFor({ timeout: UI_TIMEOUT_MS });
    assert.equal(await muse.count(), 1);
    assert.equal(await muse.getAttribute('data-id'), museId);
    assert.match(await muse.textContent(), /Test Hall/);
    // Each connection's frames arrive in order, so by now a stray Adele would have shown up on B.
    assert.equal(await notifications(b).count(), 1, 'page B has more than the Muse notification');
    assert.equal(await notifications(a).count(), 1, 'page A has more than the Adele notification');
    assert.equal(await notifications(a, 'Adele').count(), 1);

    assert.equal(await stateOf(a), 'open');
    assert.equal(await stateOf(b), 'open');
    assert.deepEqual([...a.problems, ...b.problems], []);

    mkdirSync(join(repoRoot, 'target/browser'), { recursive: true });
    await a.screenshot({ path: screenshotPath, fullPage: true });
  }));

  test('the page reconnects with backoff after the server closes the socket and subscribes again', withGatewayLog(async () => {
    const page = await connectedPage('fan-browser-c');
    await subscribe(page, 'Taylor Swift');

    // Record every state the badge shows from here on (the reconnect wait is short).
    await page.evaluate(() => {
      const badge = document.getElementById('state');
      window.seenStates = [];
      new MutationObserver(() => window.seenStates.push(badge.textContent)).observe(badge, {
        childList: true,
        characterData: true,
        subtree: true,
      });
      window.droppedSocket = window.marquee.socket;
      window.marquee.socket.close(4000, 'test');
    });

    await page.waitForFunction(
      () => window.seenStates.some((s) => /^reconnecting in \d+s$/.test(s)),
      null,
      { timeout: UI_TIMEOUT_MS },
    );
    await page.locator('#state[data-state="open"]').waitFor({ timeout: RECONNECT_TIMEOUT_MS });
    assert.ok(
      await page.evaluate(() => window.marquee.socket && window.marquee.socket !== window.droppedSocket),
      'the page did not open a new socket',
    );
    const seen = await page.evaluate(() => window.seenStates);
    assert.ok(seen.includes('connecting'), `states seen: ${JSON.stringify(seen)}`);
    assert.equal(seen.at(-1), 'open', `states seen: ${JSON.stringify(seen)}`);

    // The new connection subscribed again by itself: a publish still arrives.
    await subscribed(page, 'Taylor Swift').waitFor({ timeout: UI_TIMEOUT_MS });
    const eventId = await gateway.publish('Taylor Swift');
    const notification = notifications(page, 'Taylor Swift');
    await notification.first().waitFor({ timeout: UI_TIMEOUT_MS });
    assert.equal(await notification.getAttribute('data-id'), eventId);
    assert.equal(await stateOf(page), 'open');
    assert.deepEqual(await page.evaluate(() => window.marquee.subscriptions), ['Taylor Swift']);
    assert.deepEqual(page.problems, []);
  }));
});
