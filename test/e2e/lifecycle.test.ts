// The life of an upload end to end through the one lifecycle (hooks/lifecycle.ts): created, finished
// and processed, then deleted by its owner over tus - and then nothing of it is left: no status
// record, no derived outputs, no owner, no reservation. A real tusk (server + workers, file store),
// real Redis, sharp.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import sharp from 'sharp';
import { testRedisUrl, uniqueRedisPrefix } from '../helpers/services.js';
import { startTusk, type TuskProcess } from '../helpers/tusk-process.js';
import { JWT_SECRET, tokenFor } from '../helpers/direct.js';
import { OCTET, TUS, rawRequest, waitFor } from '../helpers/tus.js';

let tusk: TuskProcess;
let redis: Redis;
let dir: string;
let prefix: string;

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tusk-lifecycle-'));
  prefix = uniqueRedisPrefix();
  redis = new Redis(testRedisUrl());
  tusk = await startTusk({
    mode: 'all',
    env: { STORAGE: 'file', DATA_DIR: path.join(dir, 'data'), REDIS_URL: testRedisUrl(), REDIS_PREFIX: prefix, AUTH_JWT_SECRET: JWT_SECRET, SCAN_REQUIRED: 'false', THUMBNAIL_WIDTHS: '160', THUMBNAIL_FORMATS: 'webp' },
  });
});
afterAll(async () => {
  redis?.disconnect();
  await tusk?.kill();
  await fs.rm(dir, { recursive: true, force: true });
});

test('a finished, processed upload deleted by its owner leaves nothing behind', async () => {
  const token = await tokenFor('lifecycle-user');
  const auth = { Authorization: `Bearer ${token}` };
  const jpeg = await sharp({ create: { width: 320, height: 240, channels: 3, background: '#38a' } }).jpeg().toBuffer();
  const meta = `filename ${Buffer.from('p.jpg').toString('base64')},filetype ${Buffer.from('image/jpeg').toString('base64')}`;
  const created = await rawRequest(tusk.url, {
    method: 'POST',
    path: '/files/',
    headers: { ...TUS, ...auth, 'Upload-Length': String(jpeg.length), 'Upload-Metadata': meta, 'Content-Type': OCTET },
    body: jpeg,
  });
  expect(created.status).toBe(201);
  const id = String(created.headers.location).split('/').pop()!;
  const status = async () => JSON.parse((await rawRequest(tusk.url, { method: 'GET', path: `/api/uploads/${id}`, headers: auth })).body) as { status: string };
  await waitFor('the upload to be ready', async () => (await status()).status === 'ready', 60_000);
  const derived = path.join(dir, 'data', 'derived', id);
  expect((await fs.readdir(path.join(derived, 'thumbnails'))).length).toBeGreaterThan(0);
  expect(await redis.hget(`${prefix}quota:user:{lifecycle-user}`, 'bytes')).toBe(String(jpeg.length));

  const deleted = await rawRequest(tusk.url, { method: 'DELETE', path: `/files/${id}`, headers: { ...TUS, ...auth } });
  expect(deleted.status).toBe(204);

  expect((await rawRequest(tusk.url, { method: 'GET', path: `/api/uploads/${id}`, headers: auth })).status).toBe(404);
  await expect(fs.access(derived)).rejects.toThrow();
  expect(await redis.exists(`${prefix}record:${id}`, `${prefix}owner:{${id}}`, `${prefix}quota:upload:{${id}}`)).toBe(0);
  expect(await redis.hget(`${prefix}quota:user:{lifecycle-user}`, 'bytes')).toBe('0');
});
