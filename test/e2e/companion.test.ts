// The Companion-compatible S3 routes, exercised the way @uppy/aws-s3 (endpoint option) calls them:
// create, sign parts (one and batch), PUT the parts straight to storage, list, complete; and the
// single-PUT /s3/params flow. Real S3 (Ceph RGW) and Redis.
import { randomBytes } from 'node:crypto';
import { UploadPartCommand } from '@aws-sdk/client-s3';
import { createTestBucket, s3ClientForTests, sha256OfObject, testRedisUrl, tuskEnvForTests } from '../helpers/services.js';
import { startTusk, type TuskProcess } from '../helpers/tusk-process.js';
import { processUploadJobs, sha256 } from '../helpers/tus.js';
import { api, JWT_SECRET, putTo, tokenFor } from '../helpers/direct.js';

const MiB = 1024 * 1024;

describe('Companion-compatible /s3 routes (@uppy/aws-s3)', () => {
  let tusk: TuskProcess;
  let bucket = '';
  let env: Record<string, string>;
  let token = '';
  let other = '';

  beforeAll(async () => {
    bucket = await createTestBucket('companion');
    env = { ...tuskEnvForTests(bucket), AUTH_JWT_SECRET: JWT_SECRET, QUOTA_BYTES: '100MiB', SCAN_REQUIRED: 'false', ALLOWED_TYPES: 'video/*,image/*' };
    tusk = await startTusk({ env });
    token = await tokenFor('uppy-user');
    other = await tokenFor('someone-else');
  });
  afterAll(async () => {
    await tusk?.kill();
  });

  test('multipart like Uppy: create, sign, PUT, list, complete -> byte-identical object, one processing job', async () => {
    const data = randomBytes(12 * MiB + 333);
    const chunk = 5 * MiB; // Uppy's default chunk size for this file
    const created = await api(tusk.url, 'POST', '/s3/multipart', token, { filename: 'movie.mp4', type: 'video/mp4', metadata: { name: 'movie.mp4', type: 'video/mp4', size: data.length } });
    expect(created.status).toBe(200);
    expect(created.body).toEqual({ uploadId: expect.any(String), key: expect.stringMatching(/^direct\/[a-f0-9]{32}$/) });
    const { uploadId, key } = created.body as { uploadId: string; key: string };
    const q = `key=${encodeURIComponent(key)}`;
    const base = `/s3/multipart/${encodeURIComponent(uploadId)}`;

    const one = await api(tusk.url, 'GET', `${base}/1?${q}`, token);
    expect(one.status).toBe(200);
    expect(one.body).toEqual({ url: expect.stringMatching(/^http/), expires: expect.any(Number) });
    const batch = await api(tusk.url, 'GET', `${base}/batch?${q}&partNumbers=2,3`, token);
    expect(batch.status).toBe(200);
    expect(Object.keys(batch.body.presignedUrls).sort()).toEqual(['2', '3']);
    const urls = [one.body.url as string, batch.body.presignedUrls['2'] as string, batch.body.presignedUrls['3'] as string];

    // Part 3 "fails" first: list shows what storage has, then Uppy resumes with the rest.
    const etags: Array<{ PartNumber: number; ETag: string }> = [];
    for (const n of [1, 2]) {
      const r = await putTo(urls[n - 1]!, data.subarray((n - 1) * chunk, n * chunk));
      expect(r.status).toBe(200);
      etags.push({ PartNumber: n, ETag: r.etag });
    }
    const listed = await api(tusk.url, 'GET', `${base}?${q}`, token);
    expect(listed.status).toBe(200);
    expect(listed.body).toEqual([
      { PartNumber: 1, Size: chunk, ETag: expect.any(String) },
      { PartNumber: 2, Size: chunk, ETag: expect.any(String) },
    ]);
    const early = await api(tusk.url, 'POST', `${base}/complete?${q}`, token, { parts: etags });
    expect(early.status).toBe(400);
    expect(early.body.error).toMatchObject({ code: 'incomplete_upload', missing_parts: [3] });

    const r3 = await putTo(urls[2]!, data.subarray(2 * chunk));
    etags.push({ PartNumber: 3, ETag: r3.etag });

    // Someone else cannot touch it, even with the right uploadId and key.
    for (const [method, p] of [
      ['GET', `${base}?${q}`],
      ['GET', `${base}/1?${q}`],
      ['POST', `${base}/complete?${q}`],
      ['DELETE', `${base}?${q}`],
    ] as const) {
      expect([method, p, (await api(tusk.url, method, p, other, method === 'POST' ? { parts: etags } : undefined)).status]).toEqual([method, p, 404]);
    }
    // A key that is not this upload's, or an UploadId that does not match the key: 404.
    expect((await api(tusk.url, 'GET', `${base}?key=${encodeURIComponent('derived/x')}`, token)).status).toBe(404);
    expect((await api(tusk.url, 'GET', `/s3/multipart/not-the-upload-id?${q}`, token)).status).toBe(404);

    const done = await api(tusk.url, 'POST', `${base}/complete?${q}`, token, { parts: etags });
    expect(done.status).toBe(200);
    const id = key.slice('direct/'.length);
    expect(done.body).toEqual({ location: `${tusk.url}/api/uploads/${id}`, key, upload_id: id });
    expect(await sha256OfObject(bucket, key)).toBe(sha256(data));
    const jobs = (await processUploadJobs(testRedisUrl(), env.REDIS_PREFIX!)).filter((j) => j.data.uploadId === id);
    expect(jobs).toHaveLength(1);
    expect(jobs[0]!.data).toMatchObject({ owner: 'uppy-user', location: { type: 's3', key } });
  });

  test("another user gets 404 on every /s3 route for an upload, odd spellings are 404 for everyone; the upload stays intact", async () => {
    const data = randomBytes(6 * MiB);
    const chunk = 5 * MiB;
    const mine = await api(tusk.url, 'POST', '/s3/multipart', token, { filename: 'mine.mp4', type: 'video/mp4', size: data.length });
    const theirs = await api(tusk.url, 'POST', '/s3/multipart', other, { filename: 'theirs.mp4', type: 'video/mp4', size: data.length });
    expect([mine.status, theirs.status]).toEqual([200, 200]);
    const { uploadId, key } = mine.body as { uploadId: string; key: string };
    const id = key.slice('direct/'.length);
    const up = encodeURIComponent(uploadId);
    const q = `key=${encodeURIComponent(key)}`;
    const batch = await api(tusk.url, 'GET', `/s3/multipart/${up}/batch?${q}&partNumbers=1,2`, token);
    const etags: Array<{ PartNumber: number; ETag: string }> = [];
    for (const n of [1, 2]) {
      const r = await putTo(batch.body.presignedUrls[String(n)], data.subarray((n - 1) * chunk, n * chunk));
      expect(r.status).toBe(200);
      etags.push({ PartNumber: n, ETag: r.etag });
    }
    const theirUp = encodeURIComponent(theirs.body.uploadId as string);
    const theirQ = `key=${encodeURIComponent(theirs.body.key as string)}`;

    // Exactly `/s3/multipart/<uploadId>[/...]?key=direct/<id>`, the key naming the session whose
    // UploadId is in the path: every other spelling is no upload at all, for the owner too.
    const odd: Array<[string, string]> = [
      ['GET', `/S3/multipart/${up}?${q}`],
      ['GET', `/s3/Multipart/${up}/1?${q}`],
      ['GET', `/s3/multipart/${up}/?${q}`],
      ['GET', `/s3/multipart//${up}?${q}`],
      ['GET', `//s3/multipart/${up}?${q}`],
      ['GET', `/s3/multipart/${up}/batch/?${q}&partNumbers=1`],
      ['POST', `/s3/multipart/${up}/complete/?${q}`],
      ['POST', `/s3/multipart/${up}/COMPLETE?${q}`],
      ['POST', `/s3/multipart/${up}%2Fcomplete?${q}`],
      ['DELETE', `/s3/multipart/${up}/?${q}`],
      ['GET', `/s3/multipart/%2e%2e/multipart/${up}?${q}`],
      ['GET', `/s3/multipart/${up}%2e?${q}`],
      ['GET', `/s3/multipart/${up}?key=direct/${id.toUpperCase()}`],
      ['GET', `/s3/multipart/${up}?key=DIRECT/${id}`],
      ['GET', `/s3/multipart/${up}?key=direct/../direct/${id}`],
      ['GET', `/s3/multipart/${up}?key=direct%2F..%2Fdirect%2F${id}`],
      ['GET', `/s3/multipart/${up}?key=direct/${id}/..`],
      ['GET', `/s3/multipart/${up}?key=direct%252F${id}`],
      ['GET', `/s3/multipart/${up}?key=/direct/${id}`],
      ['GET', `/s3/multipart/${up}?key=direct//${id}`],
      ['GET', `/s3/multipart/${up}?key=direct/${id}/`],
      ['GET', `/s3/multipart/${up}?key=direct/${id}%2e`],
      ['GET', `/s3/multipart/${up}?key=${id}`],
      ['GET', `/s3/multipart/${up}?key=direct/${id}&key=direct/${id}`],
      ['GET', `/s3/multipart/${up}`],
      ['GET', `/s3/multipart/%E0%A4%A?${q}`],
      // The UploadId of one session with the key of another, both ways.
      ['GET', `/s3/multipart/${up}?${theirQ}`],
      ['GET', `/s3/multipart/${theirUp}?${q}`],
      ['GET', `/s3/multipart/${up}/1?${theirQ}`],
      ['POST', `/s3/multipart/${theirUp}/complete?${q}`],
      ['DELETE', `/s3/multipart/${theirUp}?${q}`],
      ['DELETE', `/s3/multipart/${up}?${theirQ}`],
    ];
    const plain: Array<[string, string]> = [
      ['GET', `/s3/multipart/${up}?${q}`],
      ['GET', `/s3/multipart/${up}/1?${q}`],
      ['GET', `/s3/multipart/${up}/batch?${q}&partNumbers=1,2`],
      ['POST', `/s3/multipart/${up}/complete?${q}`],
      ['DELETE', `/s3/multipart/${up}?${q}`],
      ['GET', `/api/uploads/${id}/parts`],
      ['POST', `/api/uploads/${id}/parts`],
      ['POST', `/api/uploads/${id}/complete`],
      ['DELETE', `/api/uploads/${id}`],
    ];
    const bodyOf = (method: string, p: string) => (method !== 'POST' ? undefined : p.includes('/parts') ? { part_numbers: [1] } : p.startsWith('/api/') ? {} : { parts: etags });
    for (const [caller, calls] of [
      [other, [...plain, ...odd]],
      [token, odd],
    ] as const) {
      for (const [method, p] of calls) {
        const res = await api(tusk.url, method, p, caller, bodyOf(method, p));
        expect([caller === token ? 'owner' : 'other', method, p, res.status, res.body?.error?.code]).toEqual([caller === token ? 'owner' : 'other', method, p, 404, 'not_found']);
      }
    }

    // Intact: the owner lists both parts and completes it.
    const listed = await api(tusk.url, 'GET', `/s3/multipart/${up}?${q}`, token);
    expect(listed.body.map((p: { PartNumber: number; Size: number }) => [p.PartNumber, p.Size])).toEqual([
      [1, chunk],
      [2, data.length - chunk],
    ]);
    const done = await api(tusk.url, 'POST', `/s3/multipart/${up}/complete?${q}`, token, { parts: etags });
    expect(done.status).toBe(200);
    expect(await sha256OfObject(bucket, key)).toBe(sha256(data));
    expect((await api(tusk.url, 'DELETE', `/s3/multipart/${theirUp}?${theirQ}`, other)).status).toBe(200);
  });

  test('/s3/params: one presigned PUT, then the object is completed by POST /api/uploads/:id/complete', async () => {
    const data = randomBytes(300_000);
    const params = new URLSearchParams({ filename: 'cat.jpg', type: 'image/jpeg', 'metadata[size]': String(data.length) });
    const res = await api(tusk.url, 'GET', `/s3/params?${params}`, token);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ method: 'PUT', url: expect.stringMatching(/^http/), fields: {}, headers: {} });
    const put = await putTo(res.body.url, data, res.body.headers);
    expect(put.status).toBe(200);
    const done = await api(tusk.url, 'POST', `/api/uploads/${res.body.upload_id}/complete`, token, {});
    expect(done.status).toBe(202);
    expect(await sha256OfObject(bucket, res.body.key)).toBe(sha256(data));
  });

  test('CORS: preflight answered for a browser on another origin, Authorization allowed', async () => {
    const pre = await fetch(`${tusk.url}/s3/multipart`, {
      method: 'OPTIONS',
      headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
    });
    expect(pre.status).toBe(204);
    expect(pre.headers.get('access-control-allow-origin')).toBe('*');
    expect(pre.headers.get('access-control-allow-headers')).toMatch(/Authorization/);
    const res = await fetch(`${tusk.url}/s3/multipart`, { method: 'POST', headers: { origin: 'https://app.example', 'content-type': 'application/json' }, body: '{}' });
    expect(res.status).toBe(401);
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
  });

  test('same checks as the API: size required, allow-list, quota; abort answers {}', async () => {
    const noSize = await api(tusk.url, 'POST', '/s3/multipart', token, { filename: 'a.mp4', type: 'video/mp4', metadata: {} });
    expect(noSize.status).toBe(400);
    expect(noSize.body.error.message).toMatch(/size/);
    const type = await api(tusk.url, 'POST', '/s3/multipart', token, { filename: 'a.exe', type: 'application/x-msdownload', metadata: { size: 10 * MiB } });
    expect(type.status).toBe(415);
    const quota = await api(tusk.url, 'POST', '/s3/multipart', token, { filename: 'a.mp4', type: 'video/mp4', metadata: { size: 500 * MiB } });
    expect(quota.status).toBe(413);
    expect(quota.body.error.code).toBe('quota_exceeded');
    expect((await api(tusk.url, 'POST', '/s3/multipart', undefined, { filename: 'a.mp4', type: 'video/mp4', metadata: { size: 1 } })).status).toBe(401);

    // A file of at most 5 MiB is one part (Uppy's default chunk is 5 MiB at least): part 2 does not exist.
    const tiny = await api(tusk.url, 'POST', '/s3/multipart', token, { filename: 't.mp4', type: 'video/mp4', size: 3 * MiB });
    const tq = `key=${encodeURIComponent(tiny.body.key)}`;
    const tbase = `/s3/multipart/${encodeURIComponent(tiny.body.uploadId)}`;
    const two = await api(tusk.url, 'GET', `${tbase}/batch?${tq}&partNumbers=1,2`, token);
    expect(two.status).toBe(400);
    expect(two.body.error).toMatchObject({ code: 'invalid_request', invalid_part_numbers: [2] });
    const signed = await api(tusk.url, 'GET', `${tbase}/1?${tq}`, token);
    const p1 = await putTo(signed.body.url, randomBytes(3 * MiB));
    expect(p1.status).toBe(200);
    const done = await api(tusk.url, 'POST', `${tbase}/complete?${tq}`, token, { parts: [{ PartNumber: 1, ETag: p1.etag }] });
    expect(done.status).toBe(200);

    const created = await api(tusk.url, 'POST', '/s3/multipart', token, { filename: 'a.mp4', type: 'video/mp4', metadata: { size: 10 * MiB } });
    const q = `key=${encodeURIComponent(created.body.key)}`;
    const aborted = await api(tusk.url, 'DELETE', `/s3/multipart/${encodeURIComponent(created.body.uploadId)}?${q}`, token);
    expect(aborted.status).toBe(200);
    expect(aborted.body).toEqual({});
  });
});

/** Uppy's (@uppy/aws-s3 4.x and 5.x) default part size: max(ceil(size / 10,000), 5 MiB). */
const uppyChunk = (size: number) => Math.max(Math.ceil(size / 10_000), 5 * MiB);

describe('Companion-compatible /s3 routes: bounds', () => {
  let tusk: TuskProcess;
  let bucket = '';
  let token = '';

  beforeAll(async () => {
    bucket = await createTestBucket('companion-bounds');
    const env = { ...tuskEnvForTests(bucket), AUTH_JWT_SECRET: JWT_SECRET, QUOTA_BYTES: '200GiB', MAX_UPLOAD_SIZE: '100GiB', SCAN_REQUIRED: 'false', ALLOWED_TYPES: 'video/*' };
    tusk = await startTusk({ env });
    token = await tokenFor('bounded-user');
  });
  afterAll(async () => {
    await tusk?.kill();
  });

  async function create(size: number): Promise<{ base: string; q: string; key: string; uploadId: string }> {
    const created = await api(tusk.url, 'POST', '/s3/multipart', token, { filename: 'big.mp4', type: 'video/mp4', size });
    expect(created.status).toBe(200);
    const { uploadId, key } = created.body as { uploadId: string; key: string };
    return { base: `/s3/multipart/${encodeURIComponent(uploadId)}`, q: `key=${encodeURIComponent(key)}`, key, uploadId };
  }

  test('2 GiB declared, a 1-byte part 1 in storage: complete is a 400 JSON error and the process stays up', async () => {
    const { base, q, key, uploadId } = await create(2 * 1024 * MiB);
    // The signed URL refuses a 1-byte body (its Content-Length is signed); a part that got into
    // storage anyway (a store that ignores the signed length) is written here with the test's own client.
    const s3 = s3ClientForTests();
    try {
      await s3.send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId: uploadId, PartNumber: 1, Body: Buffer.from('x') }));
    } finally {
      s3.destroy();
    }
    const res = await api(tusk.url, 'POST', `${base}/complete?${q}`, token, { parts: [{ PartNumber: 1, ETag: '"x"' }] });
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ error: expect.objectContaining({ code: expect.any(String), message: expect.any(String) }) });
    expect(res.body.error.code).toBe('part_size_mismatch');
    expect(res.body.error.wrong_parts).toEqual([{ part_number: 1, size: 1, expected: uppyChunk(2 * 1024 * MiB) }]);
    const health = await fetch(`${tusk.url}/healthz`);
    expect(health.status).toBe(200);
    expect((await api(tusk.url, 'DELETE', `${base}?${q}`, token)).status).toBe(200);
  });

  test('a part numbered beyond the part count in storage stops the completion check: 400 unexpected_parts', async () => {
    const { base, q, key, uploadId } = await create(2 * 1024 * MiB); // 410 parts
    const s3 = s3ClientForTests();
    try {
      for (const n of [411, 10_000]) await s3.send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId: uploadId, PartNumber: n, Body: Buffer.from('x') }));
    } finally {
      s3.destroy();
    }
    const res = await api(tusk.url, 'POST', `${base}/complete?${q}`, token, {});
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ code: 'unexpected_parts', part_count: 410, extra_parts: [411] });
    expect((await fetch(`${tusk.url}/healthz`)).status).toBe(200);
    expect((await api(tusk.url, 'DELETE', `${base}?${q}`, token)).status).toBe(200);
  });

  test("part numbers are bounded by the session's part count (Uppy's default chunk), not by 10,000", async () => {
    const size = 2 * 1024 * MiB; // 410 parts of 5 MiB, the last one 3 MiB
    const { base, q } = await create(size);
    const count = Math.ceil(size / uppyChunk(size));
    expect(count).toBe(410);
    expect((await api(tusk.url, 'GET', `${base}/${count}?${q}`, token)).status).toBe(200);
    for (const p of [`${base}/${count + 1}?${q}`, `${base}/10000?${q}`, `${base}/batch?${q}&partNumbers=1,${count + 1}`, `${base}/0?${q}`, `${base}/01?${q}`, `${base}/1e0?${q}`, `${base}/batch?${q}&partNumbers=1,,2`]) {
      const res = await api(tusk.url, 'GET', p, token);
      expect([p, res.status, res.body.error?.code]).toEqual([p, 400, 'invalid_request']);
    }
    expect((await api(tusk.url, 'DELETE', `${base}?${q}`, token)).status).toBe(200);
  });

  test("a signed part accepts exactly Uppy's default part size: larger, smaller or chunked bodies are refused by storage", async () => {
    // 60 GiB: Uppy's default chunk is ceil(size / 10,000) = 6,442,451 bytes, 10,000 parts.
    const size = 60 * 1024 * MiB;
    const chunk = uppyChunk(size);
    expect(chunk).toBe(6_442_451);
    const { base, q } = await create(size);
    expect((await api(tusk.url, 'GET', `${base}/10000?${q}`, token)).status).toBe(200);
    expect((await api(tusk.url, 'GET', `${base}/10001?${q}`, token)).status).toBe(400);
    const one = await api(tusk.url, 'GET', `${base}/1?${q}`, token);
    expect(one.status).toBe(200);
    const url = one.body.url as string;
    expect(url).toMatch(/X-Amz-SignedHeaders=content-length%3Bhost/);
    expect((await putTo(url, randomBytes(chunk + 1))).status).toBe(403);
    expect((await putTo(url, randomBytes(chunk - 1))).status).toBe(403);
    expect((await putTo(url, randomBytes(chunk), {}, { chunked: true })).status).toBeGreaterThanOrEqual(400);
    expect((await putTo(url, randomBytes(chunk))).status).toBe(200);
    const batch = await api(tusk.url, 'GET', `${base}/batch?${q}&partNumbers=10000`, token);
    const last = size - chunk * 9999;
    expect((await putTo(batch.body.presignedUrls['10000'], randomBytes(chunk))).status).toBe(403);
    expect((await putTo(batch.body.presignedUrls['10000'], randomBytes(last))).status).toBe(200);
    const listed = await api(tusk.url, 'GET', `${base}?${q}`, token);
    expect(listed.body.map((p: { PartNumber: number; Size: number }) => [p.PartNumber, p.Size])).toEqual([
      [1, chunk],
      [10000, last],
    ]);
    expect((await api(tusk.url, 'DELETE', `${base}?${q}`, token)).status).toBe(200);
  });
});
