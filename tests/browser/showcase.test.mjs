// End-to-end: the seed demo and the showcase in a real headless Chromium,
// on the memory store and on a real redis-server.
//
// Started by tests/browser/run, which builds the binary and passes:
//   SERVER_BIN   the `cloakroom` binary
//   CHROMIUM        the browser (default /usr/bin/chromium)
//   SCREENSHOTS     where to save a screenshot of each page

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const BIN = process.env.SERVER_BIN;
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const SHOTS = process.env.SCREENSHOTS ?? join(process.cwd(), 'screenshots');
assert.ok(BIN, 'SERVER_BIN must name the cloakroom binary');
mkdirSync(SHOTS, { recursive: true });

const children = [];

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function start(cmd, args, env = {}) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  let log = '';
  child.stderr.on('data', (d) => { log += d; });
  child.log = () => log;
  children.push(child);
  return child;
}

async function waitFor(url, child) {
  const deadline = Date.now() + 20000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`server exited: ${child.log()}`);
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not come up: ${child.log()}`);
}

async function serve(app, store, env = {}) {
  const port = await freePort();
  const args = ['serve', '--app', app, '--listen', `127.0.0.1:${port}`];
  if (store) args.push('--store', store);
  const child = start(BIN, args, env);
  const base = `http://127.0.0.1:${port}`;
  await waitFor(`${base}/health`, child);
  return base;
}

async function redisServer() {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'cloakroom-browser-redis-'));
  const child = start('redis-server', ['--port', String(port), '--bind', '127.0.0.1',
    '--save', '', '--appendonly', 'no', '--dir', dir]);
  child.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  const deadline = Date.now() + 10000;
  for (;;) {
    const up = await new Promise((resolve) => {
      const sock = new Socket();
      sock.once('error', () => resolve(false));
      sock.connect(port, '127.0.0.1', () => { sock.end(); resolve(true); });
    });
    if (up) break;
    if (Date.now() > deadline) throw new Error('redis-server did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
  return `redis://127.0.0.1:${port}`;
}

let browser;

before(async () => {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  for (const child of children) child.kill('SIGKILL');
});

const text = async (page, selector) => (await page.textContent(selector))?.trim();
const visits = async (page) => Number(await text(page, '#visits'));

async function signIn(page, base, name) {
  await page.goto(`${base}/`);
  await page.fill('#name', name);
  await Promise.all([page.waitForURL(`${base}/`), page.click('#login')]);
}

for (const storeName of ['memory', 'redis']) {
  describe(`on the ${storeName} store`, () => {
    let seed;
    let showcase;
    let store;
    const shot = (page, name) => page.screenshot({ path: join(SHOTS, `${storeName}-${name}.png`), fullPage: true });

    before(async () => {
      store = storeName === 'redis' ? await redisServer() : undefined;
      seed = await serve('seed', store);
      showcase = await serve('showcase', store);
    });

    it('runs the seed flow: /?name=alice, then /detail', async () => {
      const context = await browser.newContext();
      const page = await context.newPage();
      await page.goto(`${seed}/?name=alice`);
      assert.equal(await text(page, 'body'), 'index get ok!');
      await page.goto(`${seed}/detail`);
      assert.equal(await text(page, 'body'), 'detail get ok! alice');
      await shot(page, 'seed-detail');
      if (store) {
        // The session is in Redis, not in the server's memory.
        const keys = Number(execFileSync('redis-cli', ['-u', store, 'DBSIZE']).toString().trim());
        assert.ok(keys >= 1, `redis holds ${keys} keys`);
      }
      await context.close();
    });

    it('signs in: shows the name and the welcome once, and counts visits', async () => {
      const context = await browser.newContext();
      const page = await context.newPage();
      await page.goto(`${showcase}/`);
      assert.equal(await text(page, '#who'), 'Not signed in.');
      await shot(page, 'showcase-anonymous');
      await signIn(page, showcase, 'alice');
      assert.equal(await text(page, '#user'), 'alice');
      assert.equal(await text(page, '#welcome'), 'Welcome back, alice');
      const first = await visits(page);
      await shot(page, 'showcase-signed-in');
      await page.reload();
      assert.equal(await page.locator('#welcome').count(), 0, 'the notification is gone');
      assert.equal(await visits(page), first + 1);
      assert.equal(await text(page, '#user'), 'alice');
      await shot(page, 'showcase-reloaded');
      await context.close();
    });

    it('keeps the session cookie away from page scripts', async () => {
      const context = await browser.newContext();
      const page = await context.newPage();
      await signIn(page, showcase, 'bob');
      const cookies = await context.cookies();
      const session = cookies.find((c) => c.name === 'id');
      assert.ok(session, 'the browser holds the session cookie');
      assert.equal(session.httpOnly, true);
      assert.equal(session.sameSite, 'Lax');
      assert.equal(await page.evaluate(() => document.cookie), '');
      await context.close();
    });

    it('gives a second browser context its own anonymous session', async () => {
      const a = await browser.newContext();
      const pageA = await a.newPage();
      await signIn(pageA, showcase, 'carol');
      const b = await browser.newContext();
      const pageB = await b.newPage();
      await pageB.goto(`${showcase}/`);
      assert.equal(await text(pageB, '#who'), 'Not signed in.');
      assert.equal(await visits(pageB), 1);
      await a.close();
      await b.close();
    });

    it('makes the cookie from before sign-in worthless after it', async () => {
      const context = await browser.newContext();
      const page = await context.newPage();
      await page.goto(`${showcase}/`);
      const before = (await context.cookies()).find((c) => c.name === 'id');
      assert.ok(before, 'an anonymous session exists before sign-in');
      await signIn(page, showcase, 'dave');
      const afterLogin = (await context.cookies()).find((c) => c.name === 'id');
      assert.notEqual(afterLogin.value, before.value, 'sign-in issued a new id');

      const replay = await browser.newContext();
      await replay.addCookies([before]);
      const replayPage = await replay.newPage();
      await replayPage.goto(`${showcase}/`);
      assert.equal(await text(replayPage, '#who'), 'Not signed in.');
      await replay.close();
      await context.close();
    });

    it('signs out for good: the back button does not bring the session back', async () => {
      const context = await browser.newContext();
      const page = await context.newPage();
      await signIn(page, showcase, 'erin');
      const signedIn = (await context.cookies()).find((c) => c.name === 'id');
      await Promise.all([page.waitForURL(`${showcase}/`), page.click('#logout')]);
      assert.equal(await text(page, '#who'), 'Not signed in.');
      await shot(page, 'showcase-signed-out');
      await page.goBack();
      await page.waitForLoadState();
      assert.equal(await text(page, '#who'), 'Not signed in.', 'back shows no signed-in page');

      const replay = await browser.newContext();
      await replay.addCookies([signedIn]);
      const replayPage = await replay.newPage();
      await replayPage.goto(`${showcase}/`);
      assert.equal(await text(replayPage, '#who'), 'Not signed in.');
      await replay.close();
      await context.close();
    });

    it('loses no visit when two tabs count at the same time', async () => {
      const context = await browser.newContext();
      const tab1 = await context.newPage();
      await signIn(tab1, showcase, 'frank');
      const start = await visits(tab1);
      const tab2 = await context.newPage();
      const rounds = 15;
      const hammer = async (tab) => {
        for (let i = 0; i < rounds; i++) await tab.goto(`${showcase}/`);
      };
      await Promise.all([hammer(tab1), hammer(tab2)]);
      await tab1.reload();
      assert.equal(await visits(tab1), start + 2 * rounds + 1);
      await context.close();
    });

    it('lists your devices, and one device signs the others out', async () => {
      const device = async (name) => {
        const context = await browser.newContext({ userAgent: `Device ${name} (test browser)` });
        const page = await context.newPage();
        await signIn(page, showcase, 'grace');
        return { context, page };
      };
      const a = await device('A');
      const b = await device('B');
      const c = await device('C');

      await b.page.goto(`${showcase}/devices`);
      const rows = b.page.locator('li.device');
      assert.equal(await rows.count(), 3);
      assert.equal(await b.page.locator('li.device.current .browser').textContent(),
        'Device B (test browser)', 'this device is marked');
      for (const name of ['A', 'C']) {
        assert.equal(await b.page.locator(`li.device:has-text("Device ${name}")`).count(), 1);
      }
      assert.match(await b.page.locator('li.device.current .muted').textContent(),
        /started \d{4}-\d\d-\d\dT.*, last used \d{4}-/);
      await shot(b.page, 'showcase-devices');

      // B signs A out: A's next page is the sign-in form.
      await Promise.all([
        b.page.waitForURL(`${showcase}/devices`),
        b.page.locator('li.device:has-text("Device A") button.end').click(),
      ]);
      assert.equal(await rows.count(), 2);
      await a.page.goto(`${showcase}/`);
      assert.equal(await text(a.page, '#who'), 'Not signed in.');
      assert.equal(await a.page.locator('#login').count(), 1, 'the sign-in form');

      // Then everywhere else: C is signed out, B stays.
      await Promise.all([b.page.waitForURL(`${showcase}/devices`), b.page.click('#end-others')]);
      assert.equal(await rows.count(), 1);
      await c.page.goto(`${showcase}/`);
      assert.equal(await text(c.page, '#who'), 'Not signed in.');
      await b.page.goto(`${showcase}/`);
      assert.equal(await text(b.page, '#user'), 'grace');
      await shot(b.page, 'showcase-devices-after');
      for (const d of [a, b, c]) await d.context.close();
    });

    it('rejects a sign-in without the session CSRF token', async () => {
      const context = await browser.newContext();
      const page = await context.newPage();
      await page.goto(`${showcase}/`);
      await page.evaluate(() => { document.querySelector('input[name=csrf]').value = 'forged'; });
      await page.fill('#name', 'mallory');
      const [response] = await Promise.all([page.waitForResponse(`${showcase}/login`), page.click('#login')]);
      assert.equal(response.status(), 403);
      await page.goto(`${showcase}/`);
      assert.equal(await text(page, '#who'), 'Not signed in.');
      await context.close();
    });
  });
}

// The README's quick start keeps the default Secure cookie: over plain
// HTTP, a browser keeps it only on a host it treats as secure, such as
// localhost and 127.0.0.1.
describe('a Secure cookie over plain HTTP', () => {
  it('works on localhost and 127.0.0.1', async () => {
    const base = await serve('seed', undefined, { CLOAKROOM_COOKIES_SECURE: 'true' });
    const port = new URL(base).port;
    for (const host of ['localhost', '127.0.0.1']) {
      const context = await browser.newContext();
      const page = await context.newPage();
      await page.goto(`http://${host}:${port}/?name=alice`);
      const cookie = (await context.cookies()).find((c) => c.name === 'id');
      assert.ok(cookie?.secure, `${host}: the cookie is Secure`);
      await page.goto(`http://${host}:${port}/detail`);
      assert.equal(await text(page, 'body'), 'detail get ok! alice', host);
      await context.close();
    }
  });
});
