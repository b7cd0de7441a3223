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
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import { join, resolve } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const gatewayBin = resolve(
  repoRoot,
  process.env.MARQUEE_LOCAL_BIN || join(repoRoot, 'target/debug/marquee-local'),
);
const chromiumPath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const screenshotPath = join(repoRoot, 'target/browser/demo.png');

const HEALTH_TIMEOUT_MS = 20_000;
const UI_TIMEOUT_MS = 10_000; // one step in the page: connecting, a frame arriving
const RECONNECT_TIMEOUT_MS = 15_000;

// Chromium must not try to reach the network (there is none here) nor a GPU.
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** playwright-core from .local/node/node_modules, resolved from the repo root. */
function loadPlaywright() {
  const from = join(repoRoot, '.local/node/');
  try {
    return createRequire(from)('playwright-core');
  } catch (error) {
    throw new Error(
      `playwright-core not found under ${from}node_modules (${error.message.split('\n')[0]}); ` +
        'install it with: npm install --prefix .local/node playwright-core',
    );
  }
}

/** A port that was free a moment ago on 127.0.0.1. */
function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The gateway child process and its output so far (the tail, for failure messages). */
class Gateway {
  constructor(bin, port) {
    this.port = port;
    this.base = `http://127.0.0.1:${port}`;
    this.output = '';
    this.exit = null;
    this.child = spawn(bin, ['serve', '--port', String(port)], {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const keep = (chunk) => {
      this.output = (this.output + chunk.toString()).slice(-16_000);
    };
    this.child.stdout.on('data', keep);
    this.child.stderr.on('data', keep);
    // Should this process die before after() runs, don't leave the gateway behind.
    const orphanGuard = () => this.child.kill('SIGKILL');
    process.once('exit', orphanGuard);
    this.exited = new Promise((resolveExit) => {
      this.child.once('exit', () => process.removeListener('exit', orphanGuard));
      this.child.on('exit', (code, signal) => {
        this.exit = { code, signal };
        resolveExit(this.exit);
      });
      this.child.on('error', (error) => {
        this.exit = { error };
        resolveExit(this.exit);
      });
    });
  }

  describeExit() {
    if (!this.exit) return 'still running';
    if (this.exit.error) return `failed to start: ${this.exit.error.message}`;
    return `exited with ${this.exit.signal ? `signal ${this.exit.signal}` : `code ${this.exit.code}`}`;
  }

  async waitHealthy() {
    const deadline = Date.now() + HEALTH_TIMEOUT_MS;
    let last = 'no answer yet';
    while (Date.now() < deadline) {
      if (this.exit) break;
      try {
        const response = await fetch(`${this.base}/health`, { signal: AbortSignal.timeout(1_000) });
        if (response.status === 200) return;
        last = `status ${response.status}`;
      } catch (error) {
        last = error.cause?.code || error.message;
      }
      await sleep(100);
    }
    const what = this.exit
      ? `${this.describeExit()} before answering GET /health`
      : `did not answer GET /health with 200 within ${HEALTH_TIMEOUT_MS / 1000} s (last: ${last})`;
    throw new Error(
      `marquee-local (${gatewayBin} serve --port ${this.port}) ${what}.\n` +
        `--- its output ---\n${this.output || '(none)'}`,
    );
  }

  async stop() {
    if (this.exit) return;
    this.child.kill('SIGTERM');
    let timer;
    const done = await Promise.race([
      this.exited,
      new Promise((r) => {
        timer = setTimeout(() => r(null), 5_000);
      }),
    ]);
    clearTimeout(timer);
    if (!done) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
  }

  /** POST /events, like EventBridge PutEvents; returns the EventId. */
  async publish(artist) {
    const detail = { artist, venue: 'Test Hall', onSaleAt: new Date().toISOString() };
    const response = await fetch(`${this.base}/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        Entries: [
          { Source: 'marquee.tickets', DetailType: 'TicketsOnSale', Detail: JSON.stringify(detail) },
        ],
      }),
    });
    const text = await response.text();
    assert.equal(response.status, 200, `POST /events answered ${response.status}: ${text}`);
    const body = JSON.parse(text);
    assert.equal(body.FailedEntryCount, 0, `POST /events failed an entry: ${text}`);
    const eventId = body.Entries?.[0]?.EventId;
    assert.ok(eventId, `POST /events returned no EventId: ${text}`);
    return eventId;
  }
}

describe('the demo page served by marquee-local', { timeout: 60_000 }, () => {
  let gateway;
  let browser;
  const contexts = [];

  // Set up once, by the first test that needs it (not in a before() hook: a failing hook only
  // cancels the tests, and a missing binary must count as a failed test).
  let setup;
  const ready = () => {
    setup ??= (async () => {
      if (!existsSync(gatewayBin)) {
        throw new Error(
          `the gateway binary ${gatewayBin} does not exist: build it (cargo build -p marquee-local) ` +
            'or point MARQUEE_LOCAL_BIN at it',
        );
      }
      if (!existsSync(chromiumPath)) {
        throw new Error(
          `Chromium not found at ${chromiumPath}: install it (apt-get install chromium) or set CHROMIUM_PATH`,
        );
      }
      const { chromium } = loadPlaywright();
      gateway = new Gateway(gatewayBin, await freePort());
      await gateway.waitHealthy();
      // launch() gives the browser a fresh temporary profile (user-data-dir) of its own and
      // removes it on close(); each page gets its own incognito-like context on top.
      browser = await chromium.launch({
        executablePath: chromiumPath,
        headless: true,
        args: CHROMIUM_ARGS,
      });
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
  const withGatewayLog = (body) => async () => {
    try {
      await body();
    } catch (error) {
      if (gateway?.output && error instanceof Error) {
        const tail = `\n--- marquee-local output (tail) ---\n${gateway.output.slice(-6_000)}`;
        error.message += tail;
        if (typeof error.stack === 'string') error.stack += tail; // what reporters print
      }
      throw error;
    }
  };

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
