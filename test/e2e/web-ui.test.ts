// The upload page in a real browser: Debian's Chromium driven by playwright-core against a tusk
// server and a tusk worker (separate processes), the test Redis, S3 (Ceph RGW, a private bucket)
// and clamd. Files are chosen in the page's file input, as a person would; the page's elements
// (`li[data-upload-id][data-status]`, the img and video inside) are what the tests read.
// Screenshots of the main states go to test-results/web-ui/ (gitignored) for a reviewer.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { PutBucketCorsCommand } from '@aws-sdk/client-s3';
import { SignJWT } from 'jose';
import { chromium, type Browser, type BrowserContext, type CDPSession, type Page } from 'playwright-core';
import { EICAR, makeJpeg, makeVideo } from '../helpers/fixtures-media.js';
import { createTestBucket, freePort, s3ClientForTests, testRedisUrl, testS3Settings, tuskEnvForTests, uniqueRedisPrefix } from '../helpers/services.js';
import { startTusk, type TuskProcess } from '../helpers/tusk-process.js';
import { rawRequest } from '../helpers/tus.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update'];
const SHOTS = path.resolve('test-results', 'web-ui');
const JWT_SECRET = 'test-secret-of-at-least-32-bytes-0123456789';
const STEP = 90_000;

let server: TuskProcess;
let worker: TuskProcess;
let browser: Browser;
let dir: string;
let files: { jpeg: string; video: string; eicar: string; big: () => Promise<string> };
let token: string;

const tokenFor = (sub: string) =>
  new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setIssuedAt().setExpirationTime('30m').sign(new TextEncoder().encode(JWT_SECRET));

beforeAll(async () => {
  if (!process.env.TEST_CLAMD_SOCKET) throw new Error('TEST_CLAMD_SOCKET not set: clamd did not start in global setup');
  await fs.mkdir(SHOTS, { recursive: true });
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tusk-web-'));
  const bucket = await createTestBucket('web');
  // Direct uploads PUT from the page's origin straight to the bucket.
  const s3 = s3ClientForTests();
  await s3.send(
    new PutBucketCorsCommand({
      Bucket: bucket,
      CORSConfiguration: { CORSRules: [{ AllowedOrigins: ['*'], AllowedMethods: ['GET', 'PUT', 'HEAD'], AllowedHeaders: ['*'], ExposeHeaders: ['ETag'], MaxAgeSeconds: 600 }] },
    }),
  );
  s3.destroy();
  const env = {
    ...tuskEnvForTests(bucket),
    AUTH_JWT_SECRET: JWT_SECRET,
    CLAMD_SOCKET: process.env.TEST_CLAMD_SOCKET,
    THUMBNAIL_WIDTHS: '160,320',
    TRANSCODE_PRESET: 'ultrafast',
    STEP_BACKOFF: '500ms',
    // Direct uploads over 5 MiB are multipart (the big test files are 6 MiB).
    SINGLE_PUT_MAX: '5MiB',
  };
  const workerPort = String(await freePort());
  [server, worker] = await Promise.all([startTusk({ mode: 'server', env }), startTusk({ mode: 'worker', env: { ...env, PORT: workerPort, WORKER_HEALTH_PORT: workerPort } })]);
  files = {
    jpeg: await makeJpeg(path.join(dir, 'photo.jpg'), 640, 480),
    video: await makeVideo(path.join(dir, 'clip.mp4'), { width: 320, height: 240, seconds: 3, fps: 15 }),
    eicar: path.join(dir, 'eicar.txt'),
    big: async () => {
      const file = path.join(dir, `big-${randomBytes(4).toString('hex')}.bin`);
      await fs.writeFile(file, randomBytes(6 * 1024 * 1024));
      return file;
    },
  };
  await fs.writeFile(files.eicar, EICAR);
  // Chromium's own temporary files (pulse-*, profiles) go into this test's folder, removed at the end.
  const browserTmp = path.join(dir, 'browser-tmp');
  await fs.mkdir(browserTmp);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, timeout: 60_000, env: { ...process.env, TMPDIR: browserTmp } });
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await Promise.all([server?.kill(), worker?.kill()]);
  if (dir) await fs.rm(dir, { recursive: true, force: true });
});

interface Opened {
  context: BrowserContext;
  page: Page;
  problems: string[];
}

/** A fresh browser profile on the page, signed in through the URL fragment; CSP violations and page errors are collected. */
async function open(sub: string, query = '', viewport = { width: 1280, height: 900 }): Promise<Opened> {
  token = await tokenFor(sub);
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && /Content.Security.Policy|Refused to/i.test(msg.text())) problems.push(msg.text());
  });
  await page.goto(`${server.url}/${query}#token=${token}`);
  await page.locator('#uploads-heading').waitFor({ state: 'visible', timeout: 30_000 });
  expect(page.url()).not.toContain('token='); // taken out of the address bar at once
  return { context, page, problems };
}

const item = (page: Page, filename: string) => page.locator('li[data-upload-id]', { has: page.locator('h3', { hasText: filename }) });

async function statusOf(page: Page, filename: string, statuses: string[], timeout = STEP): Promise<string> {
  const li = item(page, filename);
  await page.waitForFunction(
    ({ name, want }) =>
      Array.from(document.querySelectorAll('li[data-upload-id]')).some((li) => li.querySelector('h3')?.textContent === name && want.includes(li.getAttribute('data-status') ?? '')),
    { name: filename, want: statuses },
    { timeout },
  );
  return (await li.getAttribute('data-status')) ?? '';
}

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

const sessions = new WeakMap<Page, CDPSession>();
/** Uploads move at about `bytesPerSecond` (Chromium's own network throttling; -1: full speed). */
async function throttle(page: Page, bytesPerSecond: number): Promise<void> {
  let cdp = sessions.get(page);
  if (!cdp) {
    cdp = await page.context().newCDPSession(page);
    sessions.set(page, cdp);
    await cdp.send('Network.enable');
  }
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: bytesPerSecond < 0 ? 0 : 20, downloadThroughput: -1, uploadThroughput: bytesPerSecond });
}

async function listed(sub: string, filename: string): Promise<Array<{ upload_id: string; status: string }>> {
  const res = await fetch(`${server.url}/api/uploads?limit=100`, { headers: { Authorization: `Bearer ${await tokenFor(sub)}` } });
  const body = (await res.json()) as { uploads: Array<{ upload_id: string; status: string; filename: string }> };
  return body.uploads.filter((u) => u.filename === filename);
}

test('the page is served under a strict CSP; a JPEG and a short video reach ready: the thumbnail renders and the video plays', async () => {
  const { context, page, problems } = await open('alice');
  const res = await fetch(`${server.url}/`);
  const csp = res.headers.get('content-security-policy') ?? '';
  expect(csp).toContain("script-src 'self'");
  expect(csp).not.toContain('unsafe-inline');
  expect(csp).not.toContain('unsafe-eval');
  expect(csp).toContain(new URL(testS3Settings().endpoint).origin);
  await shot(page, '01-empty');

  await page.setInputFiles('input[type=file]#file-input', [files.jpeg, files.video]);
  expect(await statusOf(page, 'photo.jpg', ['ready', 'rejected', 'failed'])).toBe('ready');
  expect(await statusOf(page, 'clip.mp4', ['ready', 'rejected', 'failed'], 150_000)).toBe('ready');

  const img = item(page, 'photo.jpg').locator('img');
  await img.waitFor({ state: 'visible' });
  await page.waitForFunction((el) => (el as HTMLImageElement).complete && (el as HTMLImageElement).naturalWidth > 0, await img.elementHandle(), { timeout: 30_000 });
  expect(await img.evaluate((el) => (el as HTMLImageElement).naturalWidth)).toBeGreaterThan(0);
  const videoThumb = item(page, 'clip.mp4').locator('img');
  await page.waitForFunction((el) => (el as HTMLImageElement).naturalWidth > 0, await videoThumb.elementHandle(), { timeout: 30_000 });

  const video = item(page, 'clip.mp4').locator('video');
  await video.waitFor({ state: 'visible' });
  await video.evaluate((el) => (el as HTMLVideoElement).play().catch(() => undefined));
  await page.waitForFunction((el) => (el as HTMLVideoElement).currentTime > 0.5, await video.elementHandle(), { timeout: 60_000 });
  const source = await video.getAttribute('data-source');
  expect(['hls', 'hls.js']).toContain(source); // HLS, not the MP4 fallback
  process.stderr.write(`[web-ui] the video played its HLS through ${source === 'hls' ? "Chromium's own player" : 'hls.js'}\n`);
  // Download link of a finished, clean file.
  expect(await item(page, 'photo.jpg').locator('a.download').getAttribute('href')).toMatch(/^\/files\/[0-9a-f]{32}$/);
  await shot(page, '02-ready');

  // Phone-sized: nothing wider than the screen.
  await page.setViewportSize({ width: 375, height: 740 });
  expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(375);
  await shot(page, '03-phone');
  expect(problems).toEqual([]);
  await context.close();
}, 300_000);

test('a browser without HLS of its own plays the video through hls.js (segments straight from the private bucket)', async () => {
  const context = await browser.newContext();
  // As in Firefox or an older Chromium: no native HLS.
  await context.addInitScript(() => {
    const original = HTMLMediaElement.prototype.canPlayType;
    HTMLMediaElement.prototype.canPlayType = function (type: string) {
      return /mpegurl/i.test(type) ? '' : original.call(this, type);
    };
  });
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('pageerror', (err) => problems.push(err.message));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && /Content.Security.Policy|Refused to/i.test(msg.text())) problems.push(msg.text());
  });
  const segments: string[] = [];
  page.on('requestfinished', (r) => {
    if (/\.ts\?/.test(r.url())) segments.push(r.url());
  });
  await page.goto(`${server.url}/#token=${await tokenFor('alice')}`);
  await statusOf(page, 'clip.mp4', ['ready']);
  const video = item(page, 'clip.mp4').locator('video');
  await video.evaluate((el) => (el as HTMLVideoElement).play().catch(() => undefined));
  await page.waitForFunction((el) => (el as HTMLVideoElement).currentTime > 0.5, await video.elementHandle(), { timeout: 60_000 });
  expect(await video.getAttribute('data-source')).toBe('hls.js');
  expect(segments.length).toBeGreaterThan(0);
  expect(segments.every((u) => u.startsWith(testS3Settings().endpoint) && u.includes('X-Amz-Signature='))).toBe(true);
  expect(problems).toEqual([]);
  await context.close();
}, 120_000);

test('EICAR is shown rejected, with the reason in plain words', async () => {
  const { context, page, problems } = await open('eve');
  await page.setInputFiles('#file-input', files.eicar);
  expect(await statusOf(page, 'eicar.txt', ['ready', 'rejected', 'failed'])).toBe('rejected');
  const reason = await item(page, 'eicar.txt').locator('.reason').textContent();
  expect(reason).toMatch(/virus/i);
  expect(reason).toMatch(/eicar/i);
  expect(await item(page, 'eicar.txt').locator('a.download').count()).toBe(0);
  await shot(page, '04-rejected');
  expect(problems).toEqual([]);
  await context.close();
}, 180_000);

test('pause and resume', async () => {
  const { context, page } = await open('paula');
  const big = await files.big();
  const name = path.basename(big);
  await throttle(page, 400 * 1024);
  await page.setInputFiles('#file-input', big);
  await statusOf(page, name, ['uploading']);
  const pause = page.getByRole('button', { name: 'Pause upload' });
  await pause.click();
  await page.getByRole('button', { name: 'Resume upload' }).waitFor({ timeout: 10_000 });
  await shot(page, '05-paused');
  const [paused] = await listed('paula', name);
  expect(paused?.status).toBe('uploading');
  await throttle(page, -1);
  await page.getByRole('button', { name: 'Resume upload' }).click();
  expect(await statusOf(page, name, ['ready', 'rejected', 'failed'])).toBe('ready');
  expect(await listed('paula', name)).toEqual([expect.objectContaining({ upload_id: paused?.upload_id, status: 'ready' })]);
  await context.close();
}, 180_000);

test('a reload in the middle of an upload resumes it (same upload, not a new one)', async () => {
  const { context, page } = await open('rita');
  const big = await files.big();
  const name = path.basename(big);
  await throttle(page, 400 * 1024);
  await page.setInputFiles('#file-input', big);
  await statusOf(page, name, ['uploading']);
  const [before] = await listed('rita', name);
  expect(before).toBeDefined();
  await shot(page, '06-before-reload');
  await throttle(page, -1);
  await page.reload();
  expect(await statusOf(page, name, ['ready', 'rejected', 'failed'])).toBe('ready');
  expect(await listed('rita', name)).toEqual([expect.objectContaining({ upload_id: before?.upload_id, status: 'ready' })]);
  await shot(page, '07-resumed');
  await context.close();
}, 180_000);

test('direct to storage (S3): a file PUT straight into the bucket is completed and processed', async () => {
  const { context, page, problems } = await open('dora', '?mode=s3');
  expect(await page.locator('input[name=mode][value=s3]').isChecked()).toBe(true);
  const requests: string[] = [];
  page.on('request', (r) => requests.push(`${r.method()} ${r.url()}`));
  const photo = path.join(dir, 'direct.jpg');
  await fs.copyFile(files.jpeg, photo);
  await page.setInputFiles('#file-input', photo);
  expect(await statusOf(page, 'direct.jpg', ['ready', 'rejected', 'failed'])).toBe('ready');
  // The bytes went to storage, not through tusk's tus endpoint.
  expect(requests.some((r) => r.startsWith('GET ') && r.includes('/s3/params?'))).toBe(true);
  expect(requests.some((r) => r.startsWith('PUT ') && !r.startsWith(`PUT ${server.url}`))).toBe(true);
  expect(requests.some((r) => r.includes('/files/'))).toBe(false);
  const img = item(page, 'direct.jpg').locator('img');
  await page.waitForFunction((el) => (el as HTMLImageElement).naturalWidth > 0, await img.elementHandle(), { timeout: 30_000 });
  await shot(page, '08-direct');
  // A larger file: an S3 multipart upload through tusk's Companion-compatible routes.
  const big = await files.big();
  await page.setInputFiles('#file-input', big);
  expect(await statusOf(page, path.basename(big), ['ready', 'rejected', 'failed'])).toBe('ready');
  expect(requests.some((r) => r.startsWith('POST ') && r.endsWith('/s3/multipart'))).toBe(true);
  expect(requests.some((r) => r.startsWith('POST ') && r.includes('/complete?key='))).toBe(true);
  expect(requests.filter((r) => r.startsWith('PUT ') && r.includes('partNumber=')).length).toBe(2);
  expect(problems).toEqual([]);
  await context.close();
}, 180_000);

test('with auth on and no token, the page asks for one; a wrong one is refused, a good one signs in', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${server.url}/`);
  const input = page.getByLabel('Access token');
  await input.waitFor({ timeout: 30_000 });
  await input.fill('not-a-token');
  await page.getByRole('button', { name: 'Use this token' }).click();
  await page.getByText('was not accepted').waitFor({ timeout: 10_000 });
  await input.fill(await tokenFor('alice'));
  await page.getByRole('button', { name: 'Use this token' }).click();
  await page.locator('li[data-upload-id]').first().waitFor({ timeout: 30_000 });
  expect(await page.locator('li[data-upload-id]').count()).toBeGreaterThanOrEqual(2); // alice's uploads
  await shot(page, '09-signed-in');
  await context.close();
}, 120_000);

test('the page\'s files: only what the bundle holds, never anything beside it', async () => {
  const page = await fetch(`${server.url}/`);
  expect(page.status).toBe(200);
  const html = await page.text();
  const script = /src="(\/assets\/[^"]+\.js)"/.exec(html)?.[1] as string;
  expect(script).toBeDefined();
  const js = await fetch(`${server.url}${script}`);
  expect(js.status).toBe(200);
  expect(js.headers.get('cache-control')).toMatch(/immutable/);
  for (const p of ['/assets/', '/assets/nothing.js', '/assets/%2e%2e/index.html', '/assets/..%2findex.html', '/assets/%2e%2e%2f%2e%2e%2fpackage.json', '/INDEX.html', '/index.html/', '/web/index.html', '/src/main.ts', '/assets/.hidden', '/UI/config.json', '/ui/config.json/', '/ui//config.json', '/ui/%2e/config.json', '/ui/config.json/..%2f..%2fpackage.json', '//index.html']) {
    const res = await rawRequest(server.url, { method: 'GET', path: p });
    expect([p, res.status]).toEqual([p, 404]);
  }
  const config = (await (await fetch(`${server.url}/ui/config.json`)).json()) as Record<string, unknown>;
  expect(config).toEqual({ auth: true, token_cookie: null, direct: true, single_put_max: 5 * 1024 * 1024 });
  // The page and its settings hold nothing of any user: the same for everyone, whatever token or
  // query comes with them (a query never selects a file).
  const withQuery = await fetch(`${server.url}/ui/config.json?user=bob&path=../../package.json`, { headers: { Authorization: 'Bearer not-a-token' } });
  expect(await withQuery.json()).toEqual(config);
  expect(await (await fetch(`${server.url}/?file=../package.json`)).text()).toBe(html);
  // Another user's valid token (header or cookie) changes nothing either: no user's data is here.
  const bob = await tokenFor('bob');
  expect(await (await fetch(`${server.url}/ui/config.json`, { headers: { Authorization: `Bearer ${bob}` } })).json()).toEqual(config);
  expect(await (await fetch(`${server.url}/`, { headers: { Authorization: `Bearer ${bob}` } })).text()).toBe(html);
  expect((await fetch(`${server.url}${script}`, { headers: { Authorization: `Bearer ${bob}` } })).status).toBe(200);
  // Only GET/HEAD: anything else is not a route of the page.
  expect((await fetch(`${server.url}/ui/config.json`, { method: 'POST', body: '{}' })).status).toBe(404);
  // Malformed input: a clear 4xx, never a 500 or a file from elsewhere.
  for (const p of ['/%zz', '/assets/%zz.js', '/assets/%00.js', `/assets/${'a'.repeat(4000)}.js`]) {
    const res = await rawRequest(server.url, { method: 'GET', path: p });
    expect([p, res.status >= 400 && res.status < 500]).toEqual([p, true]);
  }
  expect(await (await fetch(`${server.url}/ui/config.json?%`)).json()).toEqual(config);
  const badRange = await fetch(`${server.url}${script}`, { headers: { Range: 'bytes=99999999999-' } });
  expect(badRange.status).toBe(416);
});

test('authentication off, the file store (as `npm start` runs): no sign-in, uploads reach ready, previews load', async () => {
  const data = path.join(dir, 'file-store');
  const env = { STORAGE: 'file', DATA_DIR: data, REDIS_URL: testRedisUrl(), REDIS_PREFIX: uniqueRedisPrefix(), SCAN_REQUIRED: 'false', THUMBNAIL_WIDTHS: '160,320', TRANSCODE_PRESET: 'ultrafast' };
  const local = await startTusk({ mode: 'all', env });
  const context = await browser.newContext();
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('pageerror', (err) => problems.push(err.message));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && /Content.Security.Policy|Refused to/i.test(msg.text())) problems.push(msg.text());
  });
  await page.goto(`${local.url}/`);
  await page.locator('#uploads-heading').waitFor({ timeout: 30_000 });
  expect(await page.locator('#signin').isVisible()).toBe(false);
  expect(await page.locator('input[name=mode][value=s3]').isDisabled()).toBe(true); // no direct uploads on the file store
  await page.setInputFiles('#file-input', [files.jpeg, files.video]);
  expect(await statusOf(page, 'photo.jpg', ['ready', 'rejected', 'failed'])).toBe('ready');
  expect(await statusOf(page, 'clip.mp4', ['ready', 'rejected', 'failed'], 150_000)).toBe('ready');
  const img = item(page, 'photo.jpg').locator('img');
  await page.waitForFunction((el) => (el as HTMLImageElement).naturalWidth > 0, await img.elementHandle(), { timeout: 30_000 });
  expect(await img.getAttribute('src')).toContain(`${local.url}/api/derived/`);
  const video = item(page, 'clip.mp4').locator('video');
  await video.evaluate((el) => (el as HTMLVideoElement).play().catch(() => undefined));
  await page.waitForFunction((el) => (el as HTMLVideoElement).currentTime > 0.5, await video.elementHandle(), { timeout: 60_000 });
  await shot(page, '10-file-store');
  expect(problems).toEqual([]);
  await context.close();
  await local.kill();
}, 240_000);

test('WEB_UI=false: no page', async () => {
  const off = await startTusk({ env: { ...tuskEnvForTests('unused-bucket'), WEB_UI: 'false', STORAGE: 'file', DATA_DIR: path.join(dir, 'off') } });
  expect((await fetch(`${off.url}/`)).status).toBe(404);
  expect((await fetch(`${off.url}/ui/config.json`)).status).toBe(404);
  expect((await fetch(`${off.url}/assets/index.js`)).status).toBe(404);
  await off.kill();
}, 60_000);
