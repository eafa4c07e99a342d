// Direct-to-storage uploads against real S3 (Ceph RGW) and Redis: tusk signs, Node's fetch sends
// the bytes straight to the presigned URLs, tusk verifies and queues processing.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ListMultipartUploadsCommand, UploadPartCommand } from '@aws-sdk/client-s3';
import { Redis } from 'ioredis';
import { createTestBucket, s3ClientForTests, sha256OfObject, testRedisUrl, tuskEnvForTests, uniqueRedisPrefix } from '../helpers/services.js';
import { startTusk, type TuskProcess } from '../helpers/tusk-process.js';
import { processUploadJobs, sha256, sleep } from '../helpers/tus.js';
import { api, countingProxy, JWT_SECRET, putTo, tokenFor, type CountingProxy } from '../helpers/direct.js';

const MiB = 1024 * 1024;

async function openMultipartUploadsOf(bucket: string, prefix = 'direct/'): Promise<Array<{ Key: string; UploadId: string }>> {
  const client = s3ClientForTests();
  try {
    const out = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix }));
    return (out.Uploads ?? []).map((u) => ({ Key: u.Key ?? '', UploadId: u.UploadId ?? '' }));
  } finally {
    client.destroy();
  }
}

const openMultipartUploads = async (bucket: string) => (await openMultipartUploadsOf(bucket)).map((u) => u.Key);

describe('direct-to-storage uploads (S3)', () => {
  let tusk: TuskProcess;
  let proxy: CountingProxy;
  let bucket = '';
  let env: Record<string, string>;
  let alice = '';
  let bob = '';

  beforeAll(async () => {
    bucket = await createTestBucket('direct');
    env = {
      ...tuskEnvForTests(bucket),
      AUTH_JWT_SECRET: JWT_SECRET,
      QUOTA_BYTES: '200MiB',
      SINGLE_PUT_MAX: '8MiB',
      MAX_UPLOAD_SIZE: '1GiB',
      SCAN_REQUIRED: 'false',
      ALLOWED_TYPES: 'video/*,image/jpeg,application/octet-stream',
    };
    tusk = await startTusk({ env });
    proxy = await countingProxy(tusk.port);
    alice = await tokenFor('alice');
    bob = await tokenFor('bob');
  });
  afterAll(async () => {
    await proxy?.close();
    await tusk?.kill();
  });

  test('multipart: 32 MiB straight to storage; tusk sees a few KiB of API traffic; completed once, queued once', async () => {
    const data = randomBytes(32 * MiB + 12_345);
    const before = proxy.bytes();
    const init = await api(proxy.url, 'POST', '/api/uploads/initiate', alice, { filename: 'clip.mp4', filesize: data.length, content_type: 'video/mp4' });
    expect(init.status).toBe(201);
    expect(init.body).toMatchObject({ method: 'multipart', chunk_size: 10 * MiB, part_count: 4 });
    expect(init.body.upload_urls).toHaveLength(4);
    expect(Date.parse(init.body.expires_at)).toBeGreaterThan(Date.now());
    for (const url of init.body.upload_urls as string[]) expect(url).not.toMatch(/x-amz-checksum|x-amz-sdk-checksum/i);
    const id = init.body.upload_id as string;

    const etags = await Promise.all(
      (init.body.upload_urls as string[]).map(async (url, i) => {
        const r = await putTo(url, data.subarray(i * 10 * MiB, (i + 1) * 10 * MiB));
        expect(r.status).toBe(200);
        return { part_number: i + 1, etag: r.etag };
      }),
    );
    const listed = await api(proxy.url, 'GET', `/api/uploads/${id}/parts`, alice);
    expect(listed.status).toBe(200);
    expect(listed.body.parts.map((p: { part_number: number; size: number }) => [p.part_number, p.size])).toEqual([
      [1, 10 * MiB],
      [2, 10 * MiB],
      [3, 10 * MiB],
      [4, 2 * MiB + 12_345],
    ]);

    const done = await api(proxy.url, 'POST', `/api/uploads/${id}/complete`, alice, { title: 'A clip', visibility: 'private', parts: etags });
    expect(done.status).toBe(202);
    expect(done.body).toMatchObject({ upload_id: id, status: 'uploaded', filename: 'clip.mp4', size: data.length, content_type: 'video/mp4' });
    const again = await api(proxy.url, 'POST', `/api/uploads/${id}/complete`, alice, {});
    expect(again.status).toBe(202);
    expect(again.body.upload_id).toBe(id);

    const through = proxy.bytes();
    const apiBytes = through.up - before.up + (through.down - before.down);
    expect(apiBytes).toBeLessThan(64 * 1024); // the file is 32 MiB
    expect(await sha256OfObject(bucket, `direct/${id}`)).toBe(sha256(data));

    const jobs = (await processUploadJobs(testRedisUrl(), env.REDIS_PREFIX!)).filter((j) => j.data.uploadId === id);
    expect(jobs).toHaveLength(1);
    expect(jobs[0]!.id).toBe(id);
    expect(jobs[0]!.data).toMatchObject({ uploadId: id, size: data.length, owner: 'alice', location: { type: 's3', bucket, key: `direct/${id}` } });
    expect(jobs[0]!.data.metadata).toMatchObject({ filename: 'clip.mp4', filetype: 'video/mp4', title: 'A clip', visibility: 'private' });

    const redis = new Redis(testRedisUrl());
    try {
      expect(JSON.parse((await redis.hget(`${env.REDIS_PREFIX}record:${id}`, 'meta:direct')) ?? '{}')).toEqual({
        title: 'A clip',
        visibility: 'private',
        method: 'multipart',
        owner: 'alice',
      });
    } finally {
      redis.disconnect();
    }
    const status = await api(tusk.url, 'GET', `/api/uploads/${id}`, alice);
    expect(status.status).toBe(200);
    expect(status.body.upload_id).toBe(id);
  });

  test('single PUT: the signed Content-Length is enforced by storage; complete checks the object', async () => {
    const data = randomBytes(1 * MiB + 7);
    const init = await api(tusk.url, 'POST', '/api/uploads/initiate', alice, { filename: 'photo.jpg', filesize: data.length, content_type: 'image/jpeg' });
    expect(init.status).toBe(201);
    expect(init.body).toMatchObject({ method: 'put', part_count: 1 });
    expect(init.body.upload_urls).toHaveLength(1);
    const id = init.body.upload_id as string;

    const early = await api(tusk.url, 'POST', `/api/uploads/${id}/complete`, alice, {});
    expect(early.status).toBe(400);
    expect(early.body.error.code).toBe('incomplete_upload');

    const shorter = await putTo(init.body.upload_urls[0], data.subarray(1));
    expect(shorter.status).toBeGreaterThanOrEqual(400);
    const ok = await putTo(init.body.upload_urls[0], data);
    expect(ok.status).toBe(200);
    const done = await api(tusk.url, 'POST', `/api/uploads/${id}/complete`, alice, { description: 'x' });
    expect(done.status).toBe(202);
    expect(done.body).toMatchObject({ upload_id: id, status: 'uploaded', size: data.length });
    expect(await sha256OfObject(bucket, `direct/${id}`)).toBe(sha256(data));
    // The URL is still valid, but a second PUT can no longer replace what was completed (and scanned).
    expect((await putTo(init.body.upload_urls[0], randomBytes(data.length))).status).toBe(200);
    expect(await sha256OfObject(bucket, `direct/${id}`)).toBe(sha256(data));
  });

  test('resume: a dropped part is named by complete, listed as missing by GET parts, re-signed and sent', async () => {
    const data = randomBytes(25 * MiB);
    const init = await api(tusk.url, 'POST', '/api/uploads/initiate', alice, { filename: 'a.bin', filesize: data.length, content_type: 'application/octet-stream' });
    const id = init.body.upload_id as string;
    const urls = init.body.upload_urls as string[];
    expect(urls).toHaveLength(3);
    expect((await putTo(urls[0]!, data.subarray(0, 10 * MiB))).status).toBe(200);
    expect((await putTo(urls[2]!, data.subarray(20 * MiB))).status).toBe(200);

    const incomplete = await api(tusk.url, 'POST', `/api/uploads/${id}/complete`, alice, {});
    expect(incomplete.status).toBe(400);
    expect(incomplete.body.error).toMatchObject({ code: 'incomplete_upload', missing_parts: [2] });
    expect(incomplete.body.error.message).toMatch(/2/);

    const listed = await api(tusk.url, 'GET', `/api/uploads/${id}/parts`, alice);
    expect(listed.body.parts.map((p: { part_number: number }) => p.part_number)).toEqual([1, 3]);
    const bad = await api(tusk.url, 'POST', `/api/uploads/${id}/parts`, alice, { part_numbers: [0, 4] });
    expect(bad.status).toBe(400);
    const fresh = await api(tusk.url, 'POST', `/api/uploads/${id}/parts`, alice, { part_numbers: [2] });
    expect(fresh.status).toBe(200);
    expect(fresh.body.upload_urls).toEqual([{ part_number: 2, url: expect.any(String) }]);
    expect((await putTo(fresh.body.upload_urls[0].url, data.subarray(10 * MiB, 20 * MiB))).status).toBe(200);

    const done = await api(tusk.url, 'POST', `/api/uploads/${id}/complete`, alice, {});
    expect(done.status).toBe(202);
    expect(await sha256OfObject(bucket, `direct/${id}`)).toBe(sha256(data));
  });

  test('a part URL is signed for its part size: storage refuses a larger, smaller or chunked body', async () => {
    const size = 15 * MiB; // parts of 10 MiB and 5 MiB
    const init = await api(tusk.url, 'POST', '/api/uploads/initiate', alice, { filename: 'b.bin', filesize: size, content_type: 'application/octet-stream' });
    expect(init.body).toMatchObject({ method: 'multipart', chunk_size: 10 * MiB, part_count: 2 });
    const [first, last] = init.body.upload_urls as string[];
    for (const url of [first!, last!]) expect(url).toMatch(/X-Amz-SignedHeaders=content-length%3Bhost/);
    for (const [url, bytes, chunked] of [
      [first!, 10 * MiB + 1, false],
      [first!, 6 * MiB, false],
      [first!, 10 * MiB, true],
      [last!, 10 * MiB, false],
      [last!, 5 * MiB + 1, false],
    ] as const) {
      const r = await putTo(url, randomBytes(bytes), {}, { chunked });
      expect([bytes, chunked, r.status >= 400]).toEqual([bytes, chunked, true]);
    }
    expect(await api(tusk.url, 'GET', `/api/uploads/${init.body.upload_id}/parts`, alice)).toMatchObject({ status: 200, body: { parts: [] } });
    // Re-signed URLs carry the same sizes.
    const fresh = await api(tusk.url, 'POST', `/api/uploads/${init.body.upload_id}/parts`, alice, { part_numbers: [2] });
    expect((await putTo(fresh.body.upload_urls[0].url, randomBytes(10 * MiB))).status).toBe(403);
    expect((await putTo(fresh.body.upload_urls[0].url, randomBytes(5 * MiB))).status).toBe(200);
    await api(tusk.url, 'DELETE', `/api/uploads/${init.body.upload_id}`, alice);
  });

  test('a part of the wrong size that is in storage anyway is refused at complete', async () => {
    const init = await api(tusk.url, 'POST', '/api/uploads/initiate', alice, { filename: 'b.bin', filesize: 15 * MiB, content_type: 'application/octet-stream' });
    const id = init.body.upload_id as string;
    // A store that ignored the signed length: the part is written with the test's own client.
    const s3 = s3ClientForTests();
    try {
      const { UploadId } = (await openMultipartUploadsOf(bucket, `direct/${id}`))[0]!;
      await s3.send(new UploadPartCommand({ Bucket: bucket, Key: `direct/${id}`, UploadId, PartNumber: 1, Body: randomBytes(6 * MiB) }));
    } finally {
      s3.destroy();
    }
    expect((await putTo(init.body.upload_urls[1], randomBytes(5 * MiB))).status).toBe(200);
    const res = await api(tusk.url, 'POST', `/api/uploads/${id}/complete`, alice, {});
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('part_size_mismatch');
    expect(res.body.error.wrong_parts).toEqual([{ part_number: 1, size: 6 * MiB, expected: 10 * MiB }]);
    await api(tusk.url, 'DELETE', `/api/uploads/${id}`, alice);
  });

  test('validation, auth, size limit, allow-list and quota are checked before anything exists in storage', async () => {
    const before = await openMultipartUploads(bucket);
    const body = { filename: 'big.mp4', filesize: 150 * MiB, content_type: 'video/mp4' };
    expect((await api(tusk.url, 'POST', '/api/uploads/initiate', undefined, body)).status).toBe(401);
    const invalid = await api(tusk.url, 'POST', '/api/uploads/initiate', alice, { filename: '', filesize: -1 });
    expect(invalid.status).toBe(400);
    expect(invalid.body.error.code).toBe('invalid_request');
    const tooLarge = await api(tusk.url, 'POST', '/api/uploads/initiate', alice, { ...body, filesize: 2 * 1024 * MiB });
    expect(tooLarge.status).toBe(413);
    expect(tooLarge.body.error.code).toBe('too_large');
    const type = await api(tusk.url, 'POST', '/api/uploads/initiate', alice, { ...body, content_type: 'application/x-msdownload' });
    expect(type.status).toBe(415);
    expect(type.body.error.code).toBe('unsupported_type');
    // carol has a 200 MiB quota: 150 MiB fits, the next 150 MiB does not.
    const carol = await tokenFor('carol');
    const first = await api(tusk.url, 'POST', '/api/uploads/initiate', carol, body);
    expect(first.status).toBe(201);
    const over = await api(tusk.url, 'POST', '/api/uploads/initiate', carol, body);
    expect(over.status).toBe(413) // quota_exceeded is 413 on every face (lib/errors.ts);
    expect(over.body.error.code).toBe('quota_exceeded');
    const after = await openMultipartUploads(bucket);
    expect(after.length).toBe(before.length + 1); // only the accepted one
    // Aborting frees the reservation: now it fits again.
    const del = await api(tusk.url, 'DELETE', `/api/uploads/${first.body.upload_id}`, carol);
    expect(del.status).toBe(204);
    expect(await openMultipartUploads(bucket)).not.toContain(`direct/${first.body.upload_id}`);
    const retry = await api(tusk.url, 'POST', '/api/uploads/initiate', carol, body);
    expect(retry.status).toBe(201);
    await api(tusk.url, 'DELETE', `/api/uploads/${retry.body.upload_id}`, carol);
  });

  test("another user's upload is 404 on every route; odd spellings of a route are 404 for everyone; the upload stays intact", async () => {
    const data = randomBytes(12 * MiB);
    const init = await api(tusk.url, 'POST', '/api/uploads/initiate', alice, { filename: 'c.bin', filesize: data.length, content_type: 'application/octet-stream' });
    expect(init.body).toMatchObject({ method: 'multipart', part_count: 2 });
    const id = init.body.upload_id as string;
    const urls = init.body.upload_urls as string[];
    expect((await putTo(urls[0]!, data.subarray(0, 10 * MiB))).status).toBe(200);
    expect((await putTo(urls[1]!, data.subarray(10 * MiB))).status).toBe(200);

    const calls: Array<[string, string]> = [
      ['GET', `/api/uploads/${id}`],
      ['GET', `/api/uploads/${id}/parts`],
      ['POST', `/api/uploads/${id}/parts`],
      ['POST', `/api/uploads/${id}/complete`],
      ['DELETE', `/api/uploads/${id}`],
    ];
    // One spelling only: case-sensitive path, no trailing or doubled slash, the id as 32 lowercase
    // hex digits after one percent-decoding.
    const odd: Array<[string, string]> = [
      ['POST', `/API/uploads/${id}/complete`],
      ['POST', `/api/Uploads/${id}/complete`],
      ['POST', `/api/uploads/${id}/Complete`],
      ['GET', `/api/uploads/${id.toUpperCase()}/parts`],
      ['POST', `/api/uploads/${id.toUpperCase()}/complete`],
      ['DELETE', `/api/uploads/${id.toUpperCase()}`],
      ['GET', `/api/uploads/${id}/parts/`],
      ['POST', `/api/uploads/${id}/complete/`],
      ['DELETE', `/api/uploads/${id}/`],
      ['GET', `/api/uploads//${id}/parts`],
      ['GET', `/api/uploads/${id}//parts`],
      ['POST', `//api/uploads/${id}/complete`],
      ['GET', `/api/uploads/%2e%2e/uploads/${id}/parts`],
      ['GET', `/api/uploads/%2e/${id}/parts`],
      ['GET', `/api/uploads/${id}%2e/parts`],
      ['POST', `/api/uploads/${id}/%2e%2e/complete`],
      ['POST', `/api/uploads/%2e%2e%2f${id}/complete`],
      ['DELETE', `/api/uploads/${id}%2Fparts`],
      ['GET', `/api/uploads/%25${id.charCodeAt(0).toString(16)}${id.slice(1)}/parts`],
      ['GET', `/api/uploads/${id}%00/parts`],
      ['GET', `/api/uploads/${id}%20/parts`],
      ['GET', `/api/uploads/%E0%A4%A/parts`],
    ];
    const bodyOf = (method: string, p: string) => (method !== 'POST' ? undefined : p.toLowerCase().includes('/parts') ? { part_numbers: [1] } : {});
    for (const [who, token, list] of [
      ['bob', bob, [...calls, ...odd]],
      ['alice', alice, odd],
    ] as const) {
      for (const [method, p] of list) {
        const res = await api(tusk.url, method, p, token, bodyOf(method, p));
        expect([who, method, p, res.status]).toEqual([who, method, p, 404]);
        expect(res.body).toEqual({ error: { code: 'not_found', message: expect.any(String) } });
      }
    }
    const unknown = await api(tusk.url, 'GET', `/api/uploads/${'0'.repeat(32)}/parts`, bob);
    expect(unknown.status).toBe(404);
    expect(unknown.body).toEqual({ error: { code: 'not_found', message: expect.any(String) } });
    // Still alive and alice's: both parts there, she completes it.
    const listed = await api(tusk.url, 'GET', `/api/uploads/${id}/parts`, alice);
    expect(listed.body.parts.map((p: { part_number: number }) => p.part_number)).toEqual([1, 2]);
    expect((await api(tusk.url, 'POST', `/api/uploads/${id}/complete`, alice, {})).status).toBe(202);
    expect(await sha256OfObject(bucket, `direct/${id}`)).toBe(sha256(data));
  });
});

describe('direct uploads: short-lived URLs and the rate limit', () => {
  let tusk: TuskProcess;
  beforeAll(async () => {
    const bucket = await createTestBucket('direct-ttl');
    tusk = await startTusk({
      env: { ...tuskEnvForTests(bucket), AUTH_JWT_SECRET: JWT_SECRET, SIGNED_URL_TTL: '2s', RATE_LIMIT_CREATIONS_PER_MINUTE_USER: '3', SCAN_REQUIRED: 'false', ALLOWED_TYPES: 'image/jpeg' },
    });
  });
  afterAll(async () => {
    await tusk?.kill();
  });

  test('an expired URL is refused by storage; the 4th initiate in a minute is 429 with Retry-After', async () => {
    const token = await tokenFor('dave');
    const body = { filename: 'p.jpg', filesize: 1000, content_type: 'image/jpeg' };
    const init = await api(tusk.url, 'POST', '/api/uploads/initiate', token, body);
    expect(init.status).toBe(201);
    await sleep(3500);
    const late = await putTo(init.body.upload_urls[0], randomBytes(1000));
    expect(late.status).toBe(403);
    expect(late.text).toMatch(/expired|AccessDenied/i);

    expect((await api(tusk.url, 'POST', '/api/uploads/initiate', token, body)).status).toBe(201);
    expect((await api(tusk.url, 'POST', '/api/uploads/initiate', token, body)).status).toBe(201);
    const limited = await api(tusk.url, 'POST', '/api/uploads/initiate', token, body);
    expect(limited.status).toBe(429);
    expect(limited.body.error.code).toBe('rate_limited');
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
  });
});

describe('direct uploads: a huge file', () => {
  let tusk: TuskProcess;
  beforeAll(async () => {
    const bucket = await createTestBucket('direct-huge');
    tusk = await startTusk({ env: { ...tuskEnvForTests(bucket), AUTH_JWT_SECRET: JWT_SECRET, SCAN_REQUIRED: 'false', ALLOWED_TYPES: 'video/mp4', MAX_UPLOAD_SIZE: '200GiB' } });
  });
  afterAll(async () => {
    await tusk?.kill();
  });

  test('150 GiB: the chunk grows so that parts stay <= 10,000; 1,000 URLs at once, the rest via POST parts', async () => {
    const token = await tokenFor('gina');
    const size = 150 * 1024 * MiB;
    const init = await api(tusk.url, 'POST', '/api/uploads/initiate', token, { filename: 'huge.mp4', filesize: size, content_type: 'video/mp4' });
    expect(init.status).toBe(201);
    expect(init.body.chunk_size).toBe(16 * MiB);
    expect(init.body.part_count).toBe(9600);
    expect(init.body.upload_urls).toHaveLength(1000);
    const id = init.body.upload_id as string;
    const rest = await api(tusk.url, 'POST', `/api/uploads/${id}/parts`, token, { part_numbers: Array.from({ length: 1000 }, (_, i) => 8601 + i) });
    expect(rest.status).toBe(200);
    expect(rest.body.upload_urls).toHaveLength(1000);
    expect(rest.body.upload_urls[999].part_number).toBe(9600);
    expect(rest.body.upload_urls[999].url).toMatch(/partNumber=9600/);
    expect((await api(tusk.url, 'POST', `/api/uploads/${id}/parts`, token, { part_numbers: [9601] })).status).toBe(400);
    expect((await api(tusk.url, 'POST', `/api/uploads/${id}/parts`, token, { part_numbers: Array.from({ length: 1001 }, (_, i) => i + 1) })).status).toBe(400);
    expect((await api(tusk.url, 'DELETE', `/api/uploads/${id}`, token)).status).toBe(204);
  });
});

describe('direct uploads with STORAGE=file', () => {
  let tusk: TuskProcess;
  let dataDir = '';
  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'tusk-direct-file-'));
    tusk = await startTusk({ env: { STORAGE: 'file', DATA_DIR: dataDir, REDIS_URL: testRedisUrl(), REDIS_PREFIX: uniqueRedisPrefix(), SCAN_REQUIRED: 'false' } });
  });
  afterAll(async () => {
    await tusk?.kill();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  test('answers 501 with a JSON error', async () => {
    const res = await api(tusk.url, 'POST', '/api/uploads/initiate', undefined, { filename: 'a', filesize: 1, content_type: 'image/jpeg' });
    expect(res.status).toBe(501);
    expect(res.body.error.code).toBe('not_implemented');
    expect(res.body.error.message).toMatch(/STORAGE=s3/);
    expect((await api(tusk.url, 'POST', '/s3/multipart', undefined, {})).status).toBe(501);
  });
});
