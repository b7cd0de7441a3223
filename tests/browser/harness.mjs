// What the browser tests share: the marquee-local child process, a free port, playwright-core
// and Chromium's flags. Not a test file itself (`node --test tests/browser/` runs *.test.mjs).
//
// Environment: MARQUEE_LOCAL_BIN (the gateway, default target/debug/marquee-local),
// CHROMIUM_PATH (default /usr/bin/chromium).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
export const gatewayBin = resolve(
  repoRoot,
  process.env.MARQUEE_LOCAL_BIN || join(repoRoot, 'target/debug/marquee-local'),
);
export const chromiumPath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

export const HEALTH_TIMEOUT_MS = 20_000;
export const UI_TIMEOUT_MS = 10_000; // one step in the page: connecting, a frame arriving
export const RECONNECT_TIMEOUT_MS = 15_000;

// Chromium must not try to reach the network (there is none here) nor a GPU.
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** playwright-core from .local/node/node_modules, resolved from the repo root. */
export function loadPlaywright() {
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
export function freePort() {
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

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The gateway child process and its output so far (the tail, for failure messages). */
export class Gateway {
  /** `args`: more `serve` flags, e.g. `['--max-duration', '6']`. */
  constructor(bin, port, args = []) {
    this.port = port;
    this.args = ['serve', '--port', String(port), ...args];
    this.base = `http://127.0.0.1:${port}`;
    this.output = '';
    this.exit = null;
    this.child = spawn(bin, this.args, {
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
      `marquee-local (${gatewayBin} ${this.args.join(' ')}) ${what}.\n` +
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

  /** `DELETE /@connections/{id}` (the Management API): the gateway closes that socket. */
  async deleteConnection(connectionId) {
    const response = await fetch(`${this.base}/@connections/${encodeURIComponent(connectionId)}`, {
      method: 'DELETE',
    });
    const text = await response.text();
    assert.equal(response.status, 204, `DELETE /@connections/${connectionId} answered ${response.status}: ${text}`);
  }

  /** POST /events, like EventBridge PutEvents; returns the EventId. */
  async publish(artist, venue = 'Test Hall') {
    return this.putEvent('TicketsOnSale', { artist, venue, onSaleAt: new Date().toISOString() });
  }

  /** POST /events with an operator's `Announcement` (to every connection); returns the EventId. */
  async announce(message) {
    return this.putEvent('Announcement', { message });
  }

  /** POST /events with one entry from `marquee.tickets`; asserts it was accepted; its EventId. */
  async putEvent(detailType, detail) {
    const response = await fetch(`${this.base}/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        Entries: [{ Source: 'marquee.tickets', DetailType: detailType, Detail: JSON.stringify(detail) }],
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

/**
 * A gateway on a free port, answering GET /health (`args`: more `serve` flags). A missing
 * binary fails with the fix.
 */
export async function startGateway(args = []) {
  if (!existsSync(gatewayBin)) {
    throw new Error(
      `the gateway binary ${gatewayBin} does not exist: build it (cargo build --workspace) ` +
        'or point MARQUEE_LOCAL_BIN at it',
    );
  }
  const gateway = new Gateway(gatewayBin, await freePort(), args);
  await gateway.waitHealthy();
  return gateway;
}

/** Headless Chromium with a fresh temporary profile (removed on close). */
export async function launchChromium() {
  if (!existsSync(chromiumPath)) {
    throw new Error(
      `Chromium not found at ${chromiumPath}: install it (apt-get install chromium) or set CHROMIUM_PATH`,
    );
  }
  const { chromium } = loadPlaywright();
  return chromium.launch({ executablePath: chromiumPath, headless: true, args: CHROMIUM_ARGS });
}

/** `body` as a test whose failure message ends with the recent log lines of `gateway()`. */
export const withGatewayLog = (gateway, body) => async () => {
  try {
    await body();
  } catch (error) {
    const output = gateway()?.output;
    if (output && error instanceof Error) {
      const tail = `\n--- marquee-local output (tail) ---\n${output.slice(-6_000)}`;
      error.message += tail;
      if (typeof error.stack === 'string') error.stack += tail; // what reporters print
    }
    throw error;
  }
};
