// Status API with the file store and scanning explicitly off (the all-in-one dev mode without a
// clamd): `uploading` before the upload finishes, scan task `skipped` with a start-up warning,
// outputs served by tusk itself, a 24 MP JPEG with EXIF rotation + GPS -> upright thumbnails
// without any metadata, path traversal refused, reprocess rules.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import sharp from 'sharp';
import { makeRotatedJpegWithGps } from '../helpers/fixtures-media.js';
import { testRedisUrl, uniqueRedisPrefix } from '../helpers/services.js';
import { startTusk, type TuskProcess } from '../helpers/tusk-process.js';
import { createUpload, sleep } from '../helpers/tus.js';
import { type StatusDoc as Doc } from '../helpers/pipeline.js';


let tusk: TuskProcess;
let dir: string;
const prefix = uniqueRedisPrefix();

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tusk-api-file-'));
  tusk = await startTusk({
    mode: 'all',
    env: { STORAGE: 'file', DATA_DIR: path.join(dir, 'data'), REDIS_URL: testRedisUrl(), REDIS_PREFIX: prefix, SCAN_REQUIRED: 'false' },
  });
});

afterAll(async () => {
  await tusk?.kill();
  if (dir) await fs.rm(dir, { recursive: true, force: true });
});

async function doc(id: string): Promise<{ status: number; body: Doc }> {
  const res = await fetch(`${tusk.url}/api/uploads/${id}`);
  return { status: res.status, body: (await res.json()) as Doc };
}

test('scanning off without clamd: warned at start-up', () => {
  expect(tusk.output()).toMatch(/virus scanning: off \(SCAN_REQUIRED=false\)/);
});

test('uploading -> ready; scan skipped; a rotated 24 MP JPEG with GPS gives upright thumbnails without metadata, served by tusk', async () => {
  // Stored 6000x4000 with orientation 6: displayed 4000 wide x 6000 high.
  const file = await makeRotatedJpegWithGps(path.join(dir, 'rotated.jpg'), 6000, 4000);
  const body = await fs.readFile(file);
  const created = await createUpload(tusk.url, { length: body.length, metadata: { filename: 'rotated.jpg', filetype: 'image/jpeg' } });
  expect(created.status).toBe(201);
  const id = created.id;
  expect((await doc(id)).body.status).toBe('uploading');
  const redis = new Redis(testRedisUrl());
  // The record of an unfinished upload expires; a finished upload's is kept.
  expect(await redis.pttl(`${prefix}record:${id}`)).toBeGreaterThan(86_400_000);
  const early = await fetch(`${tusk.url}/api/uploads/${id}/reprocess`, { method: 'POST' });
  expect(early.status).toBe(409);

  const patch = await fetch(created.url, {
    method: 'PATCH',
    headers: { 'Tus-Resumable': '1.0.0', 'Upload-Offset': '0', 'Content-Type': 'application/offset+octet-stream' },
    body: body as Uint8Array<ArrayBuffer>,
  });
  expect(patch.status).toBe(204);
  let d: Doc | undefined;
  for (const deadline = Date.now() + 60_000; Date.now() < deadline; await sleep(200)) {
    d = (await doc(id)).body;
    if (['ready', 'rejected', 'failed'].includes(d.status)) break;
  }
  expect(d?.status).toBe('ready');
  expect(d!.tasks.virus_scan.status).toBe('skipped');
  expect(await redis.pttl(`${prefix}record:${id}`)).toBe(-1);
  redis.disconnect();
  expect(d!.tasks.transcode.status).toBe('skipped');
  expect(d!.outputs.metadata).toMatchObject({ orientation: 6, hasGps: true });
  expect(d!.outputs.metadata).not.toHaveProperty('latitude');
  const large = d!.outputs.thumbnails.find((t) => t.width === 1280 && t.format === 'jpeg')!;
  expect(large.url).toMatch(new RegExp(`^${tusk.url}/api/derived/${id}/\\d+\\.[\\w-]{43}/thumbnails/1280\\.jpg$`)); // signed: loads without a token
  const res = await fetch(large.url);
  expect(res.status).toBe(200);
  const thumb = Buffer.from(await res.arrayBuffer());
  const meta = await sharp(thumb).metadata();
  expect(meta.width).toBe(1280);
  expect(meta.height).toBe(1920); // upright: portrait, as displayed
  expect(meta.orientation ?? 1).toBe(1);
  expect(meta.exif).toBeUndefined();
  // The red band on the stored top rows is on the right side once upright (rotated 90° clockwise).
  const { data, info } = await sharp(thumb).raw().toBuffer({ resolveWithObject: true });
  const px = (x: number, y: number) => data.subarray((y * info.width + x) * info.channels, (y * info.width + x) * info.channels + 3);
  expect(px(info.width - 5, info.height / 2)[0]).toBeGreaterThan(200);
  expect(px(5, info.height / 2)[0]).toBeLessThan(100);

  const again = await fetch(`${tusk.url}/api/uploads/${id}/reprocess`, { method: 'POST' });
  expect(again.status).toBe(202);
  expect(((await again.json()) as Doc).run).toBe(2);
}, 120_000);

test('outputs outside derived/ are not served; unknown uploads are 404 JSON on every route', async () => {
  for (const p of ['/api/files/derived/..%2F..%2Fredis/redis.conf', '/api/files/uploads/x', '/api/uploads/nope', '/api/uploads/nope/events']) {
    const res = await fetch(`${tusk.url}${p}`);
    expect(res.status).toBe(404);
  }
  const res = await fetch(`${tusk.url}/api/uploads/nope/reprocess`, { method: 'POST' });
  expect(res.status).toBe(404);
  expect(await res.json()).toEqual({ error: { code: 'not_found', message: expect.any(String) } });
});
