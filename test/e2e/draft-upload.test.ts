// Resumable Uploads for HTTP (the IETF draft, interop versions 3 to 8) on /files/ of a real tusk
// (S3 store on the test RGW, real Redis, authentication on): a client written from draft -11
// (interop 8) and one from -01 (interop 3), both over raw sockets so that the 104 interim
// responses are read as a client reads them; tus-js-client's two draft protocols; a tus client
// and a draft client taking over each other's uploads; hostile headers, other users, odd URLs.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createTestBucket, tuskEnvForTests, uniqueRedisPrefix, testRedisUrl } from '../helpers/services.js';
import { startTusk, type TuskProcess } from '../helpers/tusk-process.js';
import { JWT_SECRET, tokenFor } from '../helpers/direct.js';
import { DraftClient, DraftClient01, exchange, pathOf, type DraftResult } from '../helpers/draft.js';
import { OCTET, TUS, processUploadJobs, sha256, storedSha256, tusJsUpload, waitFor, type StoreTarget } from '../helpers/tus.js';

const MiB = 1024 * 1024;
const MAX_UPLOAD_SIZE = 64 * MiB;
/** A body that spans more than one S3 part (S3_PART_SIZE below), so progress is visible mid-body. */
const BIG = 12 * MiB;

const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });
const STACK = /\n\s+at [^\n]+:\d+/;
const idOf = (url: string) => pathOf(url).split('/').pop() ?? '';

function problemOf(r: DraftResult): Record<string, unknown> {
  expect(r.headers['content-type']).toBe('application/problem+json');
  return JSON.parse(r.body) as Record<string, unknown>;
}

describe('IETF resumable uploads (draft interop 3-8) on /files/', () => {
  let tusk: TuskProcess;
  let target: StoreTarget;
  let prefix: string;
  let alice: string;
  let bob: string;
  let v8: DraftClient;
  let v3: DraftClient01;

  beforeAll(async () => {
    const bucket = await createTestBucket('draft');
    target = { kind: 's3', bucket };
    prefix = uniqueRedisPrefix();
    tusk = await startTusk({
      env: {
        ...tuskEnvForTests(bucket),
        REDIS_PREFIX: prefix,
        S3_PART_SIZE: '5MiB',
        AUTH_JWT_SECRET: JWT_SECRET,
        MAX_UPLOAD_SIZE: String(MAX_UPLOAD_SIZE),
        UPLOAD_EXPIRY: '1h',
        RATE_LIMIT_CREATIONS_PER_MINUTE_USER: '0',
        RATE_LIMIT_CREATIONS_PER_MINUTE_IP: '0',
        LOG_LEVEL: 'warn',
      },
    });
    alice = await tokenFor('alice');
    bob = await tokenFor('bob');
    v8 = new DraftClient(tusk.url, bearer(alice));
    v3 = new DraftClient01(tusk.url, bearer(alice));
  });
  afterAll(async () => {
    await tusk?.kill();
  });

  async function expectStored(url: string, data: Buffer): Promise<void> {
    expect(await storedSha256(target, idOf(url))).toBe(sha256(data));
  }

  describe('interop 8 (draft -11)', () => {
    test('OPTIONS announces application/partial-upload and the limits', async () => {
      const r = await exchange(tusk.url, 'OPTIONS', '/files/', { 'Upload-Draft-Interop-Version': '8' });
      expect(r.status).toBeLessThan(300);
      expect(r.headers['accept-patch']).toContain('application/partial-upload');
      expect(r.headers['upload-limit']).toContain(`max-size=${MAX_UPLOAD_SIZE}`);
      expect(r.headers['upload-limit']).toMatch(/max-age=\d+/);
    });

    test('creation with the complete body: a 104 with the URL first, then 201 Upload-Complete: ?1; filename and type kept', async () => {
      const data = randomBytes(300_000);
      const r = await v8.create(data, { complete: true, headers: { 'Content-Disposition': 'inline; filename="holiday photo.jpg"', 'Content-Type': 'image/jpeg' } });
      expect(r.status).toBe(201);
      const interim = r.interims.find((i) => i.status === 104);
      expect(interim?.headers['upload-draft-interop-version']).toBe('8');
      expect(interim?.headers.location).toMatch(/\/files\/[^/]+$/);
      expect(interim?.headers['upload-limit']).toContain(`max-size=${MAX_UPLOAD_SIZE}`);
      expect(r.headers.location).toBe(interim?.headers.location);
      expect(r.headers['upload-complete']).toBe('?1');
      expect(r.headers['upload-offset']).toBe(String(data.length));
      await expectStored(r.location!, data);
      // The same pipeline as a tus upload: one processing job with the metadata.
      const jobs = await processUploadJobs(testRedisUrl(), prefix);
      const job = jobs.find((j) => j.data.uploadId === idOf(r.location!));
      expect(job?.data.metadata).toMatchObject({ filename: 'holiday photo.jpg', filetype: 'image/jpeg' });
      expect(job?.data.owner).toBe('alice');
      const state = await v8.offset(r.location!);
      expect([state.status, state.offset, state.complete, state.length, state.headers['cache-control']]).toEqual([200, data.length, true, data.length, 'no-store']);
    });

    test('creation without a body, then appends; the last one completes', async () => {
      const data = randomBytes(200_000);
      const c = await v8.create(undefined, { complete: false, headers: { 'Upload-Length': String(data.length), 'Content-Disposition': "attachment; filename*=UTF-8''%E2%82%AC%20rates.csv" } });
      expect([c.status, c.headers['upload-complete'], c.headers['upload-offset']]).toEqual([201, '?0', '0']);
      expect(c.interims.filter((i) => i.status === 104).map((i) => i.headers.location)).toEqual([c.headers.location]);
      const url = c.location!;
      const a1 = await v8.append(url, 0, data.subarray(0, 70_000), { complete: false });
      expect([a1.status, a1.headers['upload-complete'], a1.headers['upload-offset']]).toEqual([204, '?0', '70000']);
      const mid = await v8.offset(url);
      expect([mid.offset, mid.complete, mid.length]).toEqual([70_000, false, data.length]);
      expect(mid.limit['max-age']).toBeGreaterThan(0);
      const a2 = await v8.append(url, 70_000, data.subarray(70_000), { complete: true });
      expect([a2.status, a2.headers['upload-complete']]).toEqual([204, '?1']);
      await expectStored(url, data);
      const jobs = await processUploadJobs(testRedisUrl(), prefix);
      expect(jobs.find((j) => j.data.uploadId === idOf(url))?.data.metadata).toMatchObject({ filename: '€ rates.csv' });
    });

    test('unknown length: appends, the last one (Upload-Complete: ?1) declares it', async () => {
      const data = randomBytes(50_000);
      const c = await v8.create(data.subarray(0, 10_000), { complete: false });
      expect([c.status, c.headers['upload-offset'], c.headers['upload-length']]).toEqual([201, '10000', undefined]);
      const a = await v8.append(c.location!, 10_000, data.subarray(10_000), { complete: true });
      expect([a.status, a.headers['upload-complete'], a.headers['upload-length']]).toEqual([204, '?1', String(data.length)]);
      await expectStored(c.location!, data);
    });

    test('a body without Content-Length (chunked) that completes an upload of unknown length', async () => {
      const data = randomBytes(40_000);
      const x = v8.startCreation({ complete: true, headers: { 'Transfer-Encoding': 'chunked' } });
      await x.write(`${data.length.toString(16)}\r\n`);
      await x.write(data);
      await x.write('\r\n0\r\n\r\n');
      const r = await x.final();
      expect([r.status, r.headers['upload-complete'], r.headers['upload-offset']]).toEqual([201, '?1', String(data.length)]);
      await expectStored(r.headers.location!, data);
      await waitFor('its processing job', async () => (await processUploadJobs(testRedisUrl(), prefix)).some((j) => j.data.uploadId === idOf(r.headers.location!)), 10_000);
    });

    test('connection lost mid-body: the URL of the 104 resumes it, byte-identical', async () => {
      const data = randomBytes(BIG);
      const { url, final, resumedFrom } = await v8.upload(data, { dropAfter: 7 * MiB });
      expect(resumedFrom).toBeGreaterThan(0);
      expect(resumedFrom).toBeLessThanOrEqual(7 * MiB);
      expect([final.status, final.headers['upload-complete']]).toEqual([204, '?1']);
      await expectStored(url, data);
    });

    test('progress of a creation: its 104s carry the offset and the same Location', async () => {
      const data = randomBytes(BIG);
      const x = v8.startCreation({ complete: true, contentLength: data.length, headers: { 'Content-Disposition': 'inline; filename="big.bin"' } });
      const url = (await x.interim((i) => i.headers.location !== undefined)).headers.location!;
      await x.write(data.subarray(0, 6 * MiB));
      const progress = await x.interim((i) => i.headers['upload-offset'] !== undefined);
      expect(progress.headers.location).toBe(url);
      expect(Number(progress.headers['upload-offset'])).toBeGreaterThanOrEqual(5 * MiB);
      await x.write(data.subarray(6 * MiB));
      const r = await x.final();
      expect([r.status, r.headers.location, r.headers['upload-complete']]).toEqual([201, url, '?1']);
      // The status API knows it like any upload, and only for its owner.
      const own = await exchange(tusk.url, 'GET', `/api/uploads/${idOf(url)}`, bearer(alice));
      expect(own.status).toBe(200);
      expect(JSON.parse(own.body)).toMatchObject({ filename: 'big.bin' });
      expect((await exchange(tusk.url, 'GET', `/api/uploads/${idOf(url)}`, bearer(bob))).status).toBe(404);
      await expectStored(url, data);
    });

    test('final response lost: the client learns through the 104 URL that the upload is complete', async () => {
      const data = randomBytes(1 * MiB);
      const x = v8.startCreation({ complete: true, contentLength: data.length });
      const url = (await x.interim((i) => i.headers.location !== undefined)).headers.location!;
      await x.write(data);
      x.destroy(); // before reading the final response
      await waitFor('the upload to be complete', async () => (await v8.offset(url)).complete === true, 15_000);
      const state = await v8.offset(url);
      expect([state.offset, state.length]).toEqual([data.length, data.length]);
      await expectStored(url, data);
    });

    test('progress: 104s with the persisted Upload-Offset while an append streams (no Location)', async () => {
      const data = randomBytes(BIG);
      const c = await v8.create(undefined, { complete: false, headers: { 'Upload-Length': String(data.length) } });
      const x = v8.startAppend(c.location!, 0, { complete: true, contentLength: data.length });
      await x.write(data.subarray(0, 6 * MiB));
      const progress = await x.interim((i) => i.status === 104 && i.headers['upload-offset'] !== undefined);
      expect(Number(progress.headers['upload-offset'])).toBeGreaterThanOrEqual(5 * MiB);
      expect(Number(progress.headers['upload-offset'])).toBeLessThanOrEqual(6 * MiB);
      expect(progress.headers.location).toBeUndefined();
      expect(progress.headers['upload-draft-interop-version']).toBe('8');
      await x.write(data.subarray(6 * MiB));
      const r = await x.final();
      expect([r.status, r.headers['upload-complete']]).toEqual([204, '?1']);
      await expectStored(c.location!, data);
    });

    test('concurrency: offset retrieval during a stalled append ends that append first, so the offset it gives is accepted', async () => {
      const data = randomBytes(BIG);
      const c = await v8.create(undefined, { complete: false, headers: { 'Upload-Length': String(data.length) } });
      const stalled = v8.startAppend(c.location!, 0, { complete: true, contentLength: data.length });
      await stalled.write(data.subarray(0, 6 * MiB));
      // Its progress shows the server is receiving it (and holds the upload's lock); then the body stalls.
      await stalled.interim((i) => i.headers['upload-offset'] !== undefined);
      // The client believes the append failed and retrieves the offset: the server ends the stalled
      // append, keeps what it received, and only then answers.
      const state = await v8.offset(c.location!);
      expect(state.status).toBe(200);
      expect(state.offset).toBeGreaterThanOrEqual(5 * MiB);
      expect(state.offset).toBeLessThanOrEqual(6 * MiB);
      const r = await v8.append(c.location!, state.offset!, data.subarray(state.offset!), { complete: true });
      expect([r.status, r.headers['upload-complete']]).toEqual([204, '?1']);
      const first = await stalled.result;
      // The stalled append got no success for bytes it did not deliver.
      expect(first instanceof Error || first.headers['upload-complete'] !== '?1').toBe(true);
      await expectStored(c.location!, data);
    });

    test('offset mismatch: 409 problem with both offsets and the right Upload-Offset', async () => {
      const c = await v8.create(Buffer.from('0123456789'), { complete: false, headers: { 'Upload-Length': '20' } });
      const r = await v8.append(c.location!, 4, Buffer.from('xxxxxx'), { complete: false });
      expect(r.status).toBe(409);
      expect(r.headers['upload-offset']).toBe('10');
      expect(problemOf(r)).toMatchObject({
        type: 'https://iana.org/assignments/http-problem-types#mismatching-upload-offset',
        'expected-offset': 10,
        'provided-offset': 4,
      });
      expect((await v8.offset(c.location!)).offset).toBe(10);
    });

    test('inconsistent lengths: 400 inconsistent-upload-length, nothing stored', async () => {
      const typeOf = (r: DraftResult) => problemOf(r).type;
      const inconsistent = 'https://iana.org/assignments/http-problem-types#inconsistent-upload-length';
      // Upload-Length against a complete body.
      const a = await v8.create(Buffer.from('12345'), { complete: true, headers: { 'Upload-Length': '10' } });
      expect([a.status, typeOf(a), a.location]).toEqual([400, inconsistent, undefined]);
      // A body beyond the declared length.
      const c = await v8.create(undefined, { complete: false, headers: { 'Upload-Length': '8' } });
      const b = await v8.append(c.location!, 0, Buffer.from('0123456789'), { complete: false });
      expect([b.status, typeOf(b)]).toEqual([400, inconsistent]);
      // Completing before the declared length.
      const d = await v8.append(c.location!, 0, Buffer.from('0123'), { complete: true });
      expect([d.status, typeOf(d)]).toEqual([400, inconsistent]);
      expect((await v8.offset(c.location!)).offset).toBe(0);
      // Appending to a complete upload.
      const done = await v8.create(Buffer.from('done'), { complete: true });
      const e = await v8.append(done.location!, 4, Buffer.from('more'), { complete: true });
      expect([e.status, typeOf(e)]).toEqual([400, inconsistent]);
      // An empty append completing it again is answered as complete (its first answer may be lost).
      const f = await v8.append(done.location!, 4, Buffer.alloc(0), { complete: true });
      expect([f.status, f.headers['upload-complete']]).toEqual([204, '?1']);
    });

    test('cancellation: 204, then the upload is gone', async () => {
      const c = await v8.create(Buffer.from('to be cancelled'), { complete: false });
      const r = await v8.cancel(c.location!);
      expect(r.status).toBe(204);
      expect((await v8.offset(c.location!)).status).toBe(404);
      expect((await v8.append(c.location!, 15, Buffer.from('x'), { complete: true })).status).toBe(404);
    });

    test('limits: a length above max-size is refused before anything is stored', async () => {
      const r = await v8.create(undefined, { complete: false, headers: { 'Upload-Length': String(MAX_UPLOAD_SIZE + 1) } });
      expect(r.status).toBe(413);
      expect(r.interims).toEqual([]);
      expect(problemOf(r).code).toBe('too_large');
      const c = await v8.create(undefined, { complete: false });
      const x = v8.startAppend(c.location!, 0, { complete: false, contentLength: MAX_UPLOAD_SIZE + 1 });
      const refused = await x.final();
      expect(refused.status).toBe(413);
    });

    test('GET of the upload resource retrieves the offset like HEAD (the latest draft)', async () => {
      const c = await v8.create(Buffer.from('abc'), { complete: false });
      const r = await exchange(tusk.url, 'GET', pathOf(c.location!), { 'Upload-Draft-Interop-Version': '8', ...bearer(alice) });
      expect([r.status, r.headers['upload-offset'], r.headers['upload-complete'], r.body]).toEqual([200, '3', '?0', '']);
    });
  });

  describe('interop 3 (draft -01)', () => {
    test('creation with Upload-Incomplete, appends, the last without it; HEAD answers 204', async () => {
      const data = randomBytes(120_000);
      const c = await v3.create(data.subarray(0, 20_000), true);
      expect([c.status, c.headers['upload-incomplete'], c.headers['upload-offset']]).toEqual([201, '?1', '20000']);
      expect(c.interims.find((i) => i.status === 104)?.headers['upload-draft-interop-version']).toBe('3');
      const url = c.location!;
      const a1 = await v3.append(url, 20_000, data.subarray(20_000, 90_000), false);
      expect([a1.status, a1.headers['upload-incomplete'], a1.headers['upload-offset']]).toEqual([201, '?1', '90000']);
      const mid = await v3.offset(url);
      expect([mid.status, mid.offset, mid.incomplete]).toEqual([204, 90_000, true]);
      const a2 = await v3.append(url, 90_000, data.subarray(90_000), true);
      expect([a2.status, a2.headers['upload-incomplete']]).toEqual([201, '?0']);
      expect((await v3.offset(url)).incomplete).toBe(false);
      await expectStored(url, data);
    });

    test('lost connection during creation: resumed through the 104 URL', async () => {
      const data = randomBytes(8 * MiB);
      const x = v3.startCreation({ incomplete: false, contentLength: data.length });
      const url = (await x.interim((i) => i.headers.location !== undefined)).headers.location!;
      await x.write(data.subarray(0, 6 * MiB));
      x.destroy();
      let state = await v3.offset(url);
      await waitFor('the interrupted body to be saved', async () => (state = await v3.offset(url)).status === 204, 10_000);
      expect(state.incomplete).toBe(true);
      const r = await v3.append(url, state.offset!, data.subarray(state.offset!), true);
      expect([r.status, r.headers['upload-incomplete']]).toEqual([201, '?0']);
      await expectStored(url, data);
    });

    test('offset mismatch answers 409 with Upload-Offset; HEAD and DELETE refuse Upload-Offset / Upload-Incomplete', async () => {
      const c = await v3.create(Buffer.from('abcdef'), true);
      const r = await v3.append(c.location!, 2, Buffer.from('zz'), false);
      expect([r.status, r.headers['upload-offset']]).toEqual([409, '6']);
      expect((await v3.offset(c.location!, { 'Upload-Offset': '0' })).status).toBe(400);
      expect((await v3.offset(c.location!, { 'Upload-Incomplete': '?1' })).status).toBe(400);
      expect((await exchange(tusk.url, 'DELETE', pathOf(c.location!), { 'Upload-Draft-Interop-Version': '3', 'Upload-Offset': '6', ...bearer(alice) })).status).toBe(400);
      expect((await v3.cancel(c.location!)).status).toBe(204);
      expect((await v3.offset(c.location!)).status).toBe(404);
    });
  });

  describe('versions 4 to 7', () => {
    test.each([4, 5, 6, 7])('interop %i: create, append, complete', async (version) => {
      const client = new DraftClient(tusk.url, bearer(alice), version);
      const data = randomBytes(30_000);
      const c = await client.create(data.subarray(0, 10_000), { complete: false, headers: { 'Upload-Length': String(data.length) } });
      expect(c.status).toBe(201);
      expect(c.interims.find((i) => i.status === 104)?.headers['upload-draft-interop-version']).toBe(String(version));
      const a = await client.append(c.location!, 10_000, data.subarray(10_000), { complete: true });
      expect([a.status, a.headers['upload-complete']]).toEqual([version <= 6 ? 201 : 204, '?1']);
      const state = await client.offset(c.location!);
      expect([state.status, state.complete]).toEqual([version === 4 ? 204 : 200, true]);
      expect(state.headers['upload-limit'] !== undefined).toBe(version >= 6);
      if (version === 6) expect(state.headers['upload-limit']).not.toMatch(/max-age/);
      await expectStored(c.location!, data);
    });

    test('from interop 6 an append must be application/partial-upload; before, any type', async () => {
      for (const [version, expected] of [[5, 201], [6, 415]] as const) {
        const client = new DraftClient(tusk.url, bearer(alice), version);
        const c = await client.create(undefined, { complete: false });
        const r = await exchange(tusk.url, 'PATCH', pathOf(c.location!), { 'Upload-Draft-Interop-Version': String(version), ...bearer(alice), 'Upload-Offset': '0', 'Upload-Complete': '?0', 'Content-Type': 'text/plain' }, Buffer.from('abc'));
        expect([version, r.status]).toEqual([version, expected]);
      }
    });
  });

  describe('tus-js-client', () => {
    test.each(['ietf-draft-03', 'ietf-draft-05'] as const)('%s: upload, connection dropped mid-body, resumed, byte-identical', async (protocol) => {
      const data = randomBytes(BIG);
      // 4 MiB requests, cut during the second one: the upload cannot be complete yet.
      const first = await tusJsUpload({ endpoint: `${tusk.url}/files/`, data, protocol, chunkSize: 4 * MiB, headers: bearer(alice), abortAt: 0.5, metadata: { filename: 'clip.bin' } });
      expect(first.aborted).toBe(true);
      const before = await v8.offset(first.url);
      expect(before.complete).toBe(false);
      expect(before.offset).toBeGreaterThanOrEqual(4 * MiB);
      const second = await tusJsUpload({ uploadUrl: first.url, data, protocol, headers: bearer(alice) });
      expect(second.url).toBe(first.url);
      await expectStored(first.url, data);
      const jobs = await processUploadJobs(testRedisUrl(), prefix);
      expect(jobs.find((j) => j.data.uploadId === idOf(first.url))?.data.metadata).toMatchObject({ filename: 'clip.bin' });
    });
  });

  describe('one upload, either protocol', () => {
    test('a tus client finishes an upload a draft client started (known length)', async () => {
      const data = randomBytes(3 * MiB);
      const c = await v8.create(data.subarray(0, MiB), { complete: false, headers: { 'Upload-Length': String(data.length) } });
      const done = await tusJsUpload({ uploadUrl: c.location!, data, headers: bearer(alice) });
      expect(done.aborted).toBe(false);
      await expectStored(c.location!, data);
      expect((await v8.offset(c.location!)).complete).toBe(true);
    });

    test('a draft client finishes an upload a tus client started', async () => {
      const data = randomBytes(2 * MiB);
      const first = await tusJsUpload({ endpoint: `${tusk.url}/files/`, data, headers: bearer(alice), chunkSize: MiB, abortAt: 0.5 });
      const state = await v8.offset(first.url);
      expect([state.complete, state.length]).toEqual([false, data.length]);
      const r = await v8.append(first.url, state.offset!, data.subarray(state.offset!), { complete: true });
      expect([r.status, r.headers['upload-complete']]).toEqual([204, '?1']);
      await expectStored(first.url, data);
    });
  });

  describe('digests (RFC 9530)', () => {
    const sf = (algorithm: 'sha256' | 'sha512', data: Buffer) => `:${createHash(algorithm).update(data).digest('base64')}:`;
    const digest = (data: Buffer) => `sha-256=${sf('sha256', data)}, sha-512=${sf('sha512', data)}`;
    const jobFor = async (url: string) => (await processUploadJobs(testRedisUrl(), prefix)).find((j) => j.data.uploadId === idOf(url));

    test('Content-Digest and Repr-Digest that match: stored as sent', async () => {
      const data = randomBytes(BIG);
      const r = await v8.create(data, { complete: true, headers: { 'Content-Digest': digest(data), 'Repr-Digest': `sha-512=${sf('sha512', data)}` } });
      expect([r.status, r.headers['upload-complete']]).toEqual([201, '?1']);
      await expectStored(r.location!, data);
    });

    test('a Content-Digest that does not match: 400 digest_mismatch, the upload is cancelled, nothing processed', async () => {
      const data = randomBytes(2 * MiB);
      const r = await v8.create(data, { complete: true, headers: { 'Content-Digest': digest(Buffer.from('something else')) } });
      expect(r.status).toBe(400);
      expect(problemOf(r).code).toBe('digest_mismatch');
      const url = r.interims.find((i) => i.headers.location)?.headers.location;
      expect(url).toBeDefined();
      expect((await v8.offset(url!)).status).toBe(404);
      expect(await jobFor(url!)).toBeUndefined();
      // On an append too.
      const c = await v8.create(data.subarray(0, 1000), { complete: false, headers: { 'Upload-Length': String(data.length) } });
      const a = await v8.append(c.location!, 1000, data.subarray(1000), { complete: true, headers: { 'Content-Digest': `sha-256=${sf('sha256', data)}` } });
      expect([a.status, problemOf(a).code]).toEqual([400, 'digest_mismatch']);
      expect((await v8.offset(c.location!)).status).toBe(404);
      expect(await jobFor(c.location!)).toBeUndefined();
    });

    test('a Repr-Digest sent at creation is checked when the last append completes the upload', async () => {
      const data = randomBytes(3 * MiB);
      const good = await v8.create(undefined, { complete: false, headers: { 'Upload-Length': String(data.length), 'Repr-Digest': digest(data) } });
      await v8.append(good.location!, 0, data.subarray(0, MiB), { complete: false });
      const ok = await v8.append(good.location!, MiB, data.subarray(MiB), { complete: true });
      expect([ok.status, ok.headers['upload-complete']]).toEqual([204, '?1']);
      expect(await jobFor(good.location!)).toBeDefined();

      const bad = await v8.create(data.subarray(0, MiB), { complete: false, headers: { 'Repr-Digest': `sha-256=${sf('sha256', Buffer.from('not it'))}` } });
      const refused = await v8.append(bad.location!, MiB, data.subarray(MiB), { complete: true });
      expect([refused.status, problemOf(refused).code]).toEqual([400, 'digest_mismatch']);
      expect((await v8.offset(bad.location!)).status).toBe(404);
      expect(await jobFor(bad.location!)).toBeUndefined();
    });

    test('malformed digest fields are refused; unknown algorithms ignored', async () => {
      for (const value of ['sha-256=abc', 'sha-256=:!!!:', `sha-256=:${Buffer.alloc(5).toString('base64')}:`, 'x'.repeat(5000)]) {
        const r = await v8.create(Buffer.from('x'), { complete: true, headers: { 'Content-Digest': value } });
        expect([value.slice(0, 20), r.status, r.interims]).toEqual([value.slice(0, 20), 400, []]);
      }
      const r = await v8.create(Buffer.from('x'), { complete: true, headers: { 'Content-Digest': `md5=:${Buffer.alloc(16).toString('base64')}:` } });
      expect(r.status).toBe(201);
    });
  });

  describe('quota', () => {
    let limited: TuskProcess;
    let client: DraftClient;
    beforeAll(async () => {
      const bucket = await createTestBucket('draft-quota');
      limited = await startTusk({
        env: { ...tuskEnvForTests(bucket), AUTH_JWT_SECRET: JWT_SECRET, QUOTA_BYTES: String(MiB), MAX_CONCURRENT_UPLOADS: '2', LOG_LEVEL: 'warn' },
      });
      client = new DraftClient(limited.url, bearer(alice));
    });
    afterAll(async () => {
      await limited?.kill();
    });

    test('the same quota as tus: over it 413, no upload and no 104; a deferred body needs Content-Length; a slot per unfinished upload', async () => {
      const over = await client.create(undefined, { complete: false, headers: { 'Upload-Length': String(2 * MiB) } });
      expect([over.status, problemOf(over).code, over.interims]).toEqual([413, 'quota_exceeded', []]);
      const overByBody = await client.create(randomBytes(MiB + 1), { complete: true });
      expect([overByBody.status, overByBody.interims]).toEqual([413, []]);
      const x = client.startCreation({ complete: true, headers: { 'Transfer-Encoding': 'chunked' } });
      await x.write('3\r\nabc\r\n0\r\n\r\n').catch(() => {});
      const chunked = await x.final();
      expect([chunked.status, problemOf(chunked).code]).toEqual([411, 'length_required']);
      const a = await client.create(undefined, { complete: false, headers: { 'Upload-Length': '10' } });
      const b = await client.create(undefined, { complete: false, headers: { 'Upload-Length': '10' } });
      const c = await client.create(undefined, { complete: false, headers: { 'Upload-Length': '10' } });
      expect([a.status, b.status, c.status, problemOf(c).code]).toEqual([201, 201, 403, 'too_many_uploads']);
      expect((await client.cancel(a.location!)).status).toBe(204);
      expect((await client.create(Buffer.from('ok'), { complete: true })).status).toBe(201);
    });
  });

  describe('hostile input', () => {
    let url = '';
    beforeAll(async () => {
      url = (await v8.create(Buffer.from('alice-draft-bytes'), { complete: false, headers: { 'Upload-Length': '40' } })).location!;
    });

    test("another user's draft upload is answered as unknown (404) and stays untouched", async () => {
      const eve = new DraftClient(tusk.url, bearer(bob));
      expect((await eve.offset(url)).status).toBe(404);
      expect((await eve.append(url, 17, Buffer.from('x'), { complete: false })).status).toBe(404);
      expect((await eve.cancel(url)).status).toBe(404);
      expect((await exchange(tusk.url, 'GET', pathOf(url), { 'Upload-Draft-Interop-Version': '8', ...bearer(bob) })).status).toBe(404);
      const anonymous = new DraftClient(tusk.url);
      expect((await anonymous.offset(url)).status).toBe(401);
      expect((await anonymous.create(Buffer.from('x'), { complete: true })).status).toBe(401);
      const state = await v8.offset(url);
      expect([state.status, state.offset, state.complete]).toEqual([200, 17, false]);
    });

    test('unsupported interop versions are refused with a clear 412 problem', async () => {
      for (const value of ['9', '2', '0', 'abc', '8, 8', '-8', '99999999999999999999', '']) {
        const r = await exchange(tusk.url, 'POST', '/files/', { 'Upload-Draft-Interop-Version': value, 'Upload-Complete': '?1', ...bearer(alice) }, Buffer.from('x'));
        expect([value, r.status]).toEqual([value, 412]);
        expect(problemOf(r)).toMatchObject({ code: 'unsupported_version', supported: [3, 4, 5, 6, 7, 8] });
        expect(r.interims).toEqual([]);
      }
    });

    test('malformed Upload-Offset, Upload-Complete, Upload-Length: 4xx, never a 500, nothing changes', async () => {
      const bad: Array<Record<string, string>> = [
        { 'Upload-Offset': '99999999999999999999999', 'Upload-Complete': '?0' },
        { 'Upload-Offset': '-1', 'Upload-Complete': '?0' },
        { 'Upload-Offset': '1e3', 'Upload-Complete': '?0' },
        { 'Upload-Offset': '17.0', 'Upload-Complete': '?0' },
        { 'Upload-Offset': ' ', 'Upload-Complete': '?0' },
        { 'Upload-Offset': '9'.repeat(8000), 'Upload-Complete': '?0' },
        { 'Upload-Offset': '17', 'Upload-Complete': '?2' },
        { 'Upload-Offset': '17', 'Upload-Complete': 'true' },
        { 'Upload-Offset': '17', 'Upload-Complete': '?1;x' },
        { 'Upload-Offset': '17' },
        { 'Upload-Offset': '17', 'Upload-Complete': '?0', 'Upload-Length': '5' },
      ];
      for (const headers of bad) {
        const r = await exchange(tusk.url, 'PATCH', pathOf(url), { 'Upload-Draft-Interop-Version': '8', ...bearer(alice), 'Content-Type': 'application/partial-upload', ...headers }, Buffer.from('zz'));
        expect([headers, r.status >= 400 && r.status < 500]).toEqual([headers, true]);
        expect(r.body).not.toMatch(STACK);
      }
      for (const complete of ['?2', 'yes', '', '?1, ?0']) {
        const r = await exchange(tusk.url, 'POST', '/files/', { 'Upload-Draft-Interop-Version': '8', ...bearer(alice), 'Upload-Complete': complete }, Buffer.from('x'));
        expect([complete, r.status]).toEqual([complete, 400]);
      }
      // A creation must not become a tus concatenation or a checksummed tus request.
      const concat = await exchange(tusk.url, 'POST', '/files/', { 'Upload-Draft-Interop-Version': '8', ...bearer(alice), 'Upload-Complete': '?0', 'Upload-Concat': `final;${url}` });
      expect(concat.status).toBe(201);
      expect((await v8.offset(concat.headers.location!)).offset).toBe(0);
      const state = await v8.offset(url);
      expect([state.offset, state.length]).toEqual([17, 40]);
    });

    test('odd URL forms name nothing', async () => {
      const id = idOf(url);
      for (const path of [`/files/${id}/`, `/FILES/${id}`, `/files/${id}%2F`, `/files/%2e%2e/${id}`, `/files/${id}?x=/files/other`, `/files//${id}`, `/files/${id.toUpperCase()}x`]) {
        const r = await exchange(tusk.url, 'HEAD', path, { 'Upload-Draft-Interop-Version': '8', ...bearer(alice) });
        if (path.includes('?')) expect(r.status).toBe(200); // the query string is never part of the path
        else expect([path, r.status]).toEqual([path, 404]);
      }
    });

    test('a hostile Content-Disposition never reaches the metadata as a path', async () => {
      const r = await v8.create(Buffer.from('x'), { complete: true, headers: { 'Content-Disposition': 'inline; filename="../../etc/passwd"' } });
      expect(r.status).toBe(201);
      const jobs = await processUploadJobs(testRedisUrl(), prefix);
      expect(jobs.find((j) => j.data.uploadId === idOf(r.location!))?.data.metadata.filename).toBe('passwd');
    });

    test('the tus face is unchanged: no draft header, tus answers', async () => {
      const r = await exchange(tusk.url, 'POST', '/files/', { ...TUS, ...bearer(alice), 'Upload-Length': '3', 'Content-Type': OCTET }, Buffer.from('abc'));
      expect([r.status, r.headers['tus-resumable'], r.interims]).toEqual([201, '1.0.0', []]);
    });
  });
});

describe('IETF resumable uploads on the file store', () => {
  let tusk: TuskProcess;
  let target: StoreTarget;
  let client: DraftClient;
  let dataDir = '';

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'tusk-draft-file-'));
    target = { kind: 'file', dataDir };
    tusk = await startTusk({ env: { STORAGE: 'file', DATA_DIR: dataDir, REDIS_URL: testRedisUrl(), REDIS_PREFIX: uniqueRedisPrefix(), LOG_LEVEL: 'warn' } });
    client = new DraftClient(tusk.url);
  });
  afterAll(async () => {
    await tusk?.kill();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  test('lost connection resumed through the 104 URL; a chunked final body declares the length', async () => {
    const data = randomBytes(6 * MiB);
    const { url, final, resumedFrom } = await client.upload(data, { dropAfter: 3 * MiB });
    expect(resumedFrom).toBeLessThanOrEqual(3 * MiB);
    expect([final.status, final.headers['upload-complete']]).toEqual([204, '?1']);
    expect(await storedSha256(target, idOf(url))).toBe(sha256(data));

    const c = await client.create(data.subarray(0, MiB), { complete: false });
    const x = client.startAppend(c.location!, MiB, { complete: true, headers: { 'Transfer-Encoding': 'chunked' } });
    const rest = data.subarray(MiB);
    await x.write(`${rest.length.toString(16)}\r\n`);
    await x.write(rest);
    await x.write('\r\n0\r\n\r\n');
    const r = await x.final();
    expect([r.status, r.headers['upload-complete'], r.headers['upload-length']]).toEqual([204, '?1', String(data.length)]);
    expect(await storedSha256(target, idOf(c.location!))).toBe(sha256(data));
  });

  test('a Content-Digest mismatch cancels the upload on this store too', async () => {
    const data = randomBytes(MiB);
    const r = await client.create(data, { complete: true, headers: { 'Content-Digest': `sha-256=:${createHash('sha256').update('x').digest('base64')}:` } });
    expect([r.status, problemOf(r).code]).toEqual([400, 'digest_mismatch']);
    const url = r.interims.find((i) => i.headers.location)?.headers.location;
    expect((await client.offset(url!)).status).toBe(404);
  });
});
