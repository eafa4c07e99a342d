// An upload's bytes and derived files are served only after a clean virus-scan verdict (with
// SCAN_REQUIRED on), never once rejected, and only to their owner by the one canonical URL.
// A tusk server and a separate worker (so the window before the verdict can be held open), the
// file store (its derived files are served by tusk), real clamd with the test signatures, sharp.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { freePort, testRedisUrl, uniqueRedisPrefix } from '../helpers/services.js';
import { startTusk, type TuskProcess } from '../helpers/tusk-process.js';
import { JWT_SECRET, tokenFor } from '../helpers/direct.js';
import { OCTET, TUS, rawRequest, sleep } from '../helpers/tus.js';
import type { StatusDoc } from '../helpers/pipeline.js';

const EICAR = Buffer.from('X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*', 'latin1');
const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });

let dir: string;
let env: Record<string, string>;
let server: TuskProcess;
let worker: TuskProcess | undefined;
let alice: string;
let bob: string;
let jpeg: Buffer;

async function upload(token: string, body: Buffer, filename: string, filetype: string): Promise<string> {
  const meta = `filename ${Buffer.from(filename).toString('base64')},filetype ${Buffer.from(filetype).toString('base64')}`;
  const res = await rawRequest(server.url, {
    method: 'POST',
    path: '/files/',
    headers: { ...TUS, ...bearer(token), 'Upload-Length': String(body.length), 'Upload-Metadata': meta, 'Content-Type': OCTET },
    body,
  });
  expect(res.status).toBe(201);
  return String(res.headers.location).split('/').pop()!;
}

async function status(token: string, id: string): Promise<StatusDoc> {
  const res = await rawRequest(server.url, { method: 'GET', path: `/api/uploads/${id}`, headers: bearer(token) });
  return JSON.parse(res.body) as StatusDoc;
}

async function waitUntil(token: string, id: string, done: (d: StatusDoc) => boolean): Promise<StatusDoc> {
  const deadline = Date.now() + 90_000;
  let last: StatusDoc | undefined;
  while (Date.now() < deadline) {
    last = await status(token, id);
    if (done(last)) return last;
    await sleep(200);
  }
  throw new Error(`timed out: ${JSON.stringify(last)}\n${worker?.output().slice(-4000)}`);
}

const download = (token: string, id: string) => rawRequest(server.url, { method: 'GET', path: `/files/${id}`, headers: bearer(token) });

beforeAll(async () => {
  if (!process.env.TEST_CLAMD_SOCKET) throw new Error('TEST_CLAMD_SOCKET not set: clamd did not start in global setup');
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tusk-content-'));
  env = {
    STORAGE: 'file',
    DATA_DIR: path.join(dir, 'data'),
    REDIS_URL: testRedisUrl(),
    REDIS_PREFIX: uniqueRedisPrefix(),
    AUTH_JWT_SECRET: JWT_SECRET,
    CLAMD_SOCKET: process.env.TEST_CLAMD_SOCKET,
    THUMBNAIL_WIDTHS: '160',
    THUMBNAIL_FORMATS: 'webp',
    LOG_LEVEL: 'warn',
  };
  server = await startTusk({ env, mode: 'server' });
  alice = await tokenFor('alice');
  bob = await tokenFor('bob');
  jpeg = await sharp({ create: { width: 320, height: 240, channels: 3, background: '#3a7' } }).jpeg().toBuffer();
});
afterAll(async () => {
  await worker?.kill();
  await server?.kill();
  await fs.rm(dir, { recursive: true, force: true });
});

test('bytes are served only after a clean verdict; rejected ones never; derived files the same, to their owner only', async () => {
  const clean = await upload(alice, jpeg, 'photo.jpg', 'image/jpeg');
  const infected = await upload(alice, EICAR, 'eicar.txt', 'text/plain');
  const bobs = await upload(bob, jpeg, 'mine.jpg', 'image/jpeg');

  // No worker yet: no verdict, nothing served.
  for (const id of [clean, infected]) {
    const res = await download(alice, id);
    expect([id, res.status]).toEqual([id, 409]);
    expect(res.body).toMatch(/virus-scan verdict/);
  }

  const port = String(await freePort());
  worker = await startTusk({ env: { ...env, PORT: port, WORKER_HEALTH_PORT: port }, mode: 'worker' });
  const ready = await waitUntil(alice, clean, (d) => d.status === 'ready');
  const rejected = await waitUntil(alice, infected, (d) => ['rejected', 'failed', 'ready'].includes(d.status));
  expect([rejected.status, rejected.reason?.code]).toEqual(['rejected', 'infected']);
  await waitUntil(bob, bobs, (d) => d.status === 'ready');

  const ok = await download(alice, clean);
  expect(ok.status).toBe(200);
  expect(Buffer.from(ok.body, 'latin1').equals(jpeg)).toBe(true);
  const refused = await download(alice, infected);
  expect(refused.status).toBe(403);
  expect(refused.body).toMatch(/rejected/);

  // Derived files: the owner by the canonical URL; B by no form at all.
  // The status API gives a signed URL (no token needed); the token route serves the same file.
  const signedPath = new URL(ready.outputs.thumbnails[0]!.url).pathname;
  expect(signedPath).toMatch(new RegExp(`^/api/derived/${clean}/\\d+\\.[\\w-]{43}/thumbnails/160\\.webp$`));
  expect((await rawRequest(server.url, { method: 'GET', path: signedPath })).status).toBe(200);
  const thumbPath = `/api/files/derived/${clean}/thumbnails/160.webp`;
  expect((await rawRequest(server.url, { method: 'GET', path: thumbPath, headers: bearer(alice) })).status).toBe(200);
  const rest = 'thumbnails/160.webp';
  for (const form of [
    thumbPath,
    `/api/files/DERIVED/${clean}/${rest}`,
    `/API/files/derived/${clean}/${rest}`,
    `/api/files/derived//${clean}/${rest}`,
    `/api/files/derived/${bobs}/../${clean}/${rest}`,
    `/api/files/derived/${bobs}/%2e%2e/${clean}/${rest}`,
    `/api/files/derived/${bobs}/..%2F${clean}/${rest}`,
    `/api/files/derived/${clean.toUpperCase()}/${rest}`,
    `/api/files/derived/${bobs}/${rest}/../../../${clean}/${rest}`,
  ]) {
    const res = await rawRequest(server.url, { method: 'GET', path: form, headers: bearer(bob) });
    expect([form, res.status]).toEqual([form, 404]);
  }
  expect((await rawRequest(server.url, { method: 'GET', path: `/api/files/derived/${bobs}/${rest}`, headers: bearer(bob) })).status).toBe(200);

  // A new run starts with no verdict: bytes and derived files wait for it again.
  await worker.kill();
  worker = undefined;
  const again = await rawRequest(server.url, { method: 'POST', path: `/api/uploads/${clean}/reprocess`, headers: bearer(alice) });
  expect(again.status).toBe(202);
  expect((await download(alice, clean)).status).toBe(409);
  expect((await rawRequest(server.url, { method: 'GET', path: thumbPath, headers: bearer(alice) })).status).toBe(409);
  expect((await rawRequest(server.url, { method: 'GET', path: signedPath })).status).toBe(409);
});
