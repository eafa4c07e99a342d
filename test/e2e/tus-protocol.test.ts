// tus 1.0 protocol conformance of a real tusk server process (`node dist/tusk.js server`), against
// both stores: S3 (the test RGW, a fresh bucket per store group) and the local file store (a
// temporary DATA_DIR). Black-box: HTTP only, plus reading what was stored (S3 objects / files)
// and what was queued (the `process-upload` BullMQ queue on the same Redis and prefix).
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createTestBucket, tuskEnvForTests, testRedisUrl, uniqueRedisPrefix } from '../helpers/services.js';
import { startTusk, type TuskProcess } from '../helpers/tusk-process.js';
import {
  TUS,
  OCTET,
  controlledPatch,
  createUpload,
  decodeMetadata,
  deleteUpload,
  emptyBucket,
  headUpload,
  offsetOf,
  patchRest,
  patchUpload,
  processUploadJobs,
  s3Leftovers,
  sha256,
  sleep,
  storedFileSize,
  storedSha256,
  tusJsUpload,
  uploadIdOf,
  within,
  type StoreKind,
  type StoreTarget,
} from '../helpers/tus.js';

const MiB = 1024 * 1024;
const MAX_UPLOAD_SIZE = 100 * MiB;
const EXPIRY_SECONDS = 2;

interface Group {
  tusk: TuskProcess;
  target: StoreTarget;
  prefix: string;
  env: Record<string, string>;
}

/** Environment for a tusk on `kind`, with its own Redis prefix; the store target it writes to. */
async function storeEnv(kind: StoreKind, label: string): Promise<{ env: Record<string, string>; target: StoreTarget }> {
  if (kind === 's3') {
    const bucket = await createTestBucket(`proto-${label}`);
    return { env: { ...tuskEnvForTests(bucket), LOG_LEVEL: 'warn' }, target: { kind, bucket } };
  }
  const dataDir = await mkdtemp(path.join(os.tmpdir(), `tusk-proto-${label}-`));
  return {
    env: { STORAGE: 'file', DATA_DIR: dataDir, REDIS_URL: testRedisUrl(), REDIS_PREFIX: uniqueRedisPrefix(), LOG_LEVEL: 'warn' },
    target: { kind, dataDir },
  };
}

async function startGroup(kind: StoreKind, label: string, extra: Record<string, string> = {}): Promise<Group> {
  const { env, target } = await storeEnv(kind, label);
  const full: Record<string, string> = { ...env, MAX_UPLOAD_SIZE: String(MAX_UPLOAD_SIZE), ...extra };
  const tusk = await startTusk({ env: full, mode: 'server' });
  return { tusk, target, prefix: full.REDIS_PREFIX as string, env: full };
}

async function cleanupGroup(group: Group | undefined): Promise<void> {
  if (!group) return;
  await group.tusk.kill('SIGKILL');
  if (group.target.kind === 'file') await rm(group.target.dataDir as string, { recursive: true, force: true });
  else await emptyBucket(group.target.bucket as string);
}

async function jobsFor(group: Group, id: string) {
  return (await processUploadJobs(testRedisUrl(), group.prefix)).filter((job) => job.id === id);
}

describe.each<StoreKind>(['s3', 'file'])('tus protocol, %s store', (kind) => {
  let g: Group;
  let expiring: Group;

  beforeAll(async () => {
    [g, expiring] = await Promise.all([startGroup(kind, kind), startGroup(kind, `${kind}-exp`, { UPLOAD_EXPIRY: `${EXPIRY_SECONDS}s` })]);
  }, 60_000);

  afterAll(async () => {
    await Promise.all([cleanupGroup(g), cleanupGroup(expiring)]);
  }, 60_000);

  /** Prints the server output when an assertion fails (jest shows only the error). */
  async function withServerOutput<T>(group: Group, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      const output = group.tusk
        .output()
        .split('\n')
        .slice(-40)
        .map((line) => (line.length > 600 ? `${line.slice(0, 600)}… [${line.length} chars]` : line))
        .join('\n');
      if (err instanceof Error) err.message += `\n--- tusk output (last lines) ---\n${output}`;
      throw err;
    }
  }

  test('a 50 MiB upload with tus-js-client in 8 MiB chunks is stored byte-identically', async () => {
    await withServerOutput(g, async () => {
      const data = randomBytes(50 * MiB);
      const result = await tusJsUpload({
        endpoint: `${g.tusk.url}/files/`,
        data,
        chunkSize: 8 * MiB,
        metadata: { filename: 'big.bin', filetype: 'application/octet-stream' },
        timeoutMs: 90_000,
      });
      expect(result.aborted).toBe(false);
      const id = uploadIdOf(result.url);
      const head = await headUpload(result.url);
      expect(head.status).toBe(200);
      expect(head.offset).toBe(50 * MiB);
      expect(head.length).toBe(50 * MiB);
      expect(await storedSha256(g.target, id)).toBe(sha256(data));
    });
  }, 120_000);

  test('metadata (non-ASCII filename, filetype, key without value) round-trips through HEAD', async () => {
    const metadata = { filename: 'Ünïcødé résumé 東京 🚀.pdf', filetype: 'application/pdf', flag: null };
    const created = await createUpload(g.tusk.url, { length: 10, metadata });
    expect(created.status).toBe(201);
    const head = await headUpload(created.url);
    expect(head.status).toBe(200);
    expect(head.headers.get('cache-control')).toBe('no-store');
    expect(decodeMetadata(head.headers.get('upload-metadata'))).toEqual(metadata);
  });

  test('termination: DELETE answers 204, then the upload is gone (HEAD and PATCH 404/410, nothing left in storage)', async () => {
    // Big enough for the S3 store to have uploaded a real multipart part.
    const data = randomBytes(12 * MiB);
    const created = await createUpload(g.tusk.url, { length: 20 * MiB, body: data });
    expect(created.status).toBe(201);
    expect(Number(created.headers.get('upload-offset'))).toBe(data.length);
    const id = created.id;

    const del = await deleteUpload(created.url);
    expect(del.status).toBe(204);
    expect(del.headers.get('tus-resumable')).toBe('1.0.0');

    expect([404, 410]).toContain((await headUpload(created.url)).status);
    expect([404, 410]).toContain((await patchUpload(created.url, data.length, Buffer.from('more'))).status);
    if (kind === 's3') {
      expect(await s3Leftovers(g.target.bucket as string, id)).toEqual({ keys: [], multipart: [] });
    } else {
      const left = (await readdir(path.join(g.target.dataDir as string, 'uploads'))).filter((f) => f.startsWith(id));
      expect(left).toEqual([]);
    }
    // A second DELETE finds nothing.
    expect([404, 410]).toContain((await deleteUpload(created.url)).status);
  });

  test(`expiration: an unfinished upload answers 404/410 after UPLOAD_EXPIRY=${EXPIRY_SECONDS}s; a finished one still answers HEAD 200`, async () => {
    await withServerOutput(expiring, async () => {
      const unfinished = await createUpload(expiring.tusk.url, { length: 100, body: Buffer.alloc(10, 1) });
      const finishedData = randomBytes(64);
      const finished = await createUpload(expiring.tusk.url, { length: 64, body: finishedData });
      expect(unfinished.status).toBe(201);
      expect(finished.status).toBe(201);
      // The unfinished upload announces its expiry (RFC 7231 date, about now + 2 s).
      const expires = unfinished.headers.get('upload-expires');
      expect(expires).not.toBeNull();
      expect(Math.abs(Date.parse(expires as string) - (Date.now() + EXPIRY_SECONDS * 1000))).toBeLessThan(5000);
      expect((await headUpload(unfinished.url)).status).toBe(200);

      await sleep(EXPIRY_SECONDS * 1000 + 1000);

      expect([404, 410]).toContain((await headUpload(unfinished.url)).status);
      expect([404, 410]).toContain((await patchUpload(unfinished.url, 10, Buffer.alloc(10, 2))).status);

      const head = await headUpload(finished.url);
      expect(head.status).toBe(200);
      expect(head.offset).toBe(64);
      expect(head.length).toBe(64);
      expect(await storedSha256(expiring.target, finished.id)).toBe(sha256(finishedData));
    });
  }, 30_000);

  test('creation-with-upload: POST with the whole body finishes the upload', async () => {
    const data = randomBytes(300 * 1024);
    const created = await createUpload(g.tusk.url, { length: data.length, body: data, metadata: { filename: 'one-shot.bin' } });
    expect(created.status).toBe(201);
    expect(created.headers.get('upload-offset')).toBe(String(data.length));
    expect(created.headers.get('upload-expires')).toBeNull(); // finished: no expiry announced
    expect(await offsetOf(created.url)).toBe(data.length);
    expect(await storedSha256(g.target, created.id)).toBe(sha256(data));
    const jobs = await jobsFor(g, created.id);
    expect(jobs).toHaveLength(1);
    expect(jobs[0]?.data.size).toBe(data.length);
  });

  test('creation-with-upload: POST with part of the body, then PATCH the rest', async () => {
    const data = randomBytes(7 * MiB);
    const created = await createUpload(g.tusk.url, { length: data.length, body: data.subarray(0, 3 * MiB) });
    expect(created.status).toBe(201);
    expect(created.headers.get('upload-offset')).toBe(String(3 * MiB));
    expect(await offsetOf(created.url)).toBe(3 * MiB);
    expect(await jobsFor(g, created.id)).toHaveLength(0);
    await patchRest(created.url, data, 3 * MiB);
    expect(await offsetOf(created.url)).toBe(data.length);
    expect(await storedSha256(g.target, created.id)).toBe(sha256(data));
  });

  test('creation-defer-length: the length is declared on a later PATCH', async () => {
    const data = randomBytes(6 * MiB + 123);
    const created = await createUpload(g.tusk.url, { defer: true, metadata: { filename: 'deferred.bin' } });
    expect(created.status).toBe(201);

    let head = await headUpload(created.url);
    expect(head.status).toBe(200);
    expect(head.headers.get('upload-defer-length')).toBe('1');
    expect(head.length).toBeUndefined();
    expect(head.offset).toBe(0);

    const first = await patchUpload(created.url, 0, data.subarray(0, 5 * MiB + 7));
    expect(first.status).toBe(204);
    expect(first.headers.get('upload-offset')).toBe(String(5 * MiB + 7));
    head = await headUpload(created.url);
    expect(head.headers.get('upload-defer-length')).toBe('1');
    expect(head.offset).toBe(5 * MiB + 7);

    const last = await patchUpload(created.url, 5 * MiB + 7, data.subarray(5 * MiB + 7), { 'Upload-Length': String(data.length) });
    expect(last.status).toBe(204);
    expect(last.headers.get('upload-offset')).toBe(String(data.length));
    // Complete in storage when the PATCH that declared the length is answered (not only once a
    // later request looks at the upload): that PATCH wrote with the declared length.
    expect(await storedSha256(g.target, created.id)).toBe(sha256(data));

    head = await headUpload(created.url);
    expect(head.offset).toBe(data.length);
    expect(head.length).toBe(data.length);
    expect(head.headers.get('upload-defer-length')).toBeNull();
    expect(await storedSha256(g.target, created.id)).toBe(sha256(data));
    const jobs = await jobsFor(g, created.id);
    expect(jobs).toHaveLength(1);
    expect(jobs[0]?.data.size).toBe(data.length);
  });

  test('creation-defer-length: an empty PATCH that declares the length finishes the upload', async () => {
    const data = randomBytes(6 * MiB + 123); // S3: one whole part plus a tail that is not a part yet
    const created = await createUpload(g.tusk.url, { defer: true });
    expect(created.status).toBe(201);
    const first = await patchUpload(created.url, 0, data);
    expect(first.status).toBe(204);
    expect(first.headers.get('upload-offset')).toBe(String(data.length));
    expect(await jobsFor(g, created.id)).toHaveLength(0); // length still unknown: not finished

    const declare = await patchUpload(created.url, data.length, Buffer.alloc(0), { 'Upload-Length': String(data.length) });
    expect(declare.status).toBe(204);
    expect(declare.headers.get('upload-offset')).toBe(String(data.length));
    const head = await headUpload(created.url);
    expect({ offset: head.offset, length: head.length }).toEqual({ offset: data.length, length: data.length });
    expect(await storedSha256(g.target, created.id)).toBe(sha256(data));
    expect(await jobsFor(g, created.id)).toHaveLength(1);
  });

  test('creation-defer-length: a deferred upload declared empty (Upload-Length: 0) is finished', async () => {
    const created = await createUpload(g.tusk.url, { defer: true });
    expect(created.status).toBe(201);
    const declare = await patchUpload(created.url, 0, Buffer.alloc(0), { 'Upload-Length': '0' });
    expect(declare.status).toBe(204);
    const head = await headUpload(created.url);
    expect({ status: head.status, offset: head.offset, length: head.length }).toEqual({ status: 200, offset: 0, length: 0 });
    expect(await storedSha256(g.target, created.id)).toBe(sha256(Buffer.alloc(0)));
    expect(await jobsFor(g, created.id)).toHaveLength(1);
  });

  test('a PATCH with a chunked body (no Content-Length) is stored completely', async () => {
    const data = randomBytes(13 * MiB + 77);
    const created = await createUpload(g.tusk.url, { length: data.length });
    expect(created.status).toBe(201);
    const first = controlledPatch(created.url, 0, null);
    for (let o = 0; o < 7 * MiB + 5; o += 256 * 1024) await first.write(data.subarray(o, Math.min(o + 256 * 1024, 7 * MiB + 5)));
    first.end();
    const r1 = await within(first.result, 30_000);
    expect(r1).toMatchObject({ status: 204, headers: { 'upload-offset': String(7 * MiB + 5) } });
    const last = controlledPatch(created.url, 7 * MiB + 5, null);
    for (let o = 7 * MiB + 5; o < data.length; o += 256 * 1024) await last.write(data.subarray(o, Math.min(o + 256 * 1024, data.length)));
    last.end();
    expect(await within(last.result, 30_000)).toMatchObject({ status: 204, headers: { 'upload-offset': String(data.length) } });
    expect(await offsetOf(created.url)).toBe(data.length);
    expect(await storedSha256(g.target, created.id)).toBe(sha256(data));
    expect(await jobsFor(g, created.id)).toHaveLength(1);
  }, 60_000);

  test('a zero-length upload is finished at once (HEAD 0/0, an empty object, one job)', async () => {
    const created = await createUpload(g.tusk.url, { length: 0, metadata: { filename: 'empty.txt' } });
    expect(created.status).toBe(201);
    const head = await headUpload(created.url);
    expect(head.status).toBe(200);
    expect(head.offset).toBe(0);
    expect(head.length).toBe(0);
    expect(await storedSha256(g.target, created.id)).toBe(sha256(Buffer.alloc(0)));
    const jobs = await jobsFor(g, created.id);
    expect(jobs).toHaveLength(1);
    expect(jobs[0]?.data).toMatchObject({ uploadId: created.id, size: 0, metadata: { filename: 'empty.txt' }, owner: null });
  });

  test('a finished upload queues exactly one process-upload job with the right payload; HEAD does not add another', async () => {
    const data = randomBytes(3 * MiB + 5);
    const metadata = { filename: 'rapport annuel – été.pdf', filetype: 'application/pdf' };
    const created = await createUpload(g.tusk.url, { length: data.length, metadata });
    expect(created.status).toBe(201);
    const id = created.id;

    const first = await patchUpload(created.url, 0, data.subarray(0, 2 * MiB));
    expect(first.status).toBe(204);
    expect(await jobsFor(g, id)).toHaveLength(0); // not finished: no job yet

    const last = await patchUpload(created.url, 2 * MiB, data.subarray(2 * MiB));
    expect(last.status).toBe(204);
    expect(last.headers.get('upload-offset')).toBe(String(data.length));

    let jobs = await jobsFor(g, id);
    expect(jobs).toHaveLength(1);
    const job = jobs[0]!;
    expect(job.name).toBe('process-upload');
    const location =
      kind === 's3'
        ? { type: 's3', bucket: g.target.bucket, key: id }
        : { type: 'file', path: path.join(g.target.dataDir as string, 'uploads', id) };
    expect(job.data).toEqual({
      uploadId: id,
      location,
      size: data.length,
      metadata,
      owner: null,
      finishedAt: expect.any(String),
    });
    expect(Number.isNaN(Date.parse(job.data.finishedAt))).toBe(false);
    expect(Math.abs(Date.parse(job.data.finishedAt) - Date.now())).toBeLessThan(60_000);

    for (let i = 0; i < 3; i++) expect(await offsetOf(created.url)).toBe(data.length);
    jobs = await jobsFor(g, id);
    expect(jobs).toHaveLength(1);
    expect(jobs[0]?.timestamp).toBe(job.timestamp);
    expect(await storedSha256(g.target, id)).toBe(sha256(data));
  });

  describe('malformed requests are refused and leave the offset unchanged', () => {
    const LENGTH = 1000;
    const START = 100;
    let url = '';
    let id = '';

    beforeAll(async () => {
      const created = await createUpload(g.tusk.url, { length: LENGTH, body: randomBytes(START) });
      expect(created.status).toBe(201);
      url = created.url;
      id = created.id;
    });

    afterEach(async () => {
      const head = await headUpload(url);
      expect(head.status).toBe(200);
      expect(head.offset).toBe(START);
      expect(head.length).toBe(LENGTH);
    });

    describe.each([
      ['missing', undefined],
      ['0.2.0', '0.2.0'],
    ])('Tus-Resumable %s', (_label, version) => {
      const headers = (): Record<string, string> => (version ? { 'Tus-Resumable': version } : {});
      const expect412 = (res: { status: number; headers: Headers }) => {
        expect(res.status).toBe(412);
        expect(res.headers.get('tus-version')).toBe('1.0.0');
      };

      test('on POST → 412 with Tus-Version', async () => {
        const res = await fetch(`${g.tusk.url}/files/`, { method: 'POST', headers: { ...headers(), 'Upload-Length': '10' } });
        await res.text();
        expect412(res);
        expect(res.headers.get('location')).toBeNull();
      });

      test('on HEAD → 412 with Tus-Version', async () => {
        const res = await fetch(url, { method: 'HEAD', headers: headers() });
        expect412(res);
      });

      test('on PATCH → 412 with Tus-Version', async () => {
        const res = await fetch(url, {
          method: 'PATCH',
          headers: { ...headers(), 'Content-Type': OCTET, 'Upload-Offset': String(START) },
          body: Buffer.alloc(10, 7),
        });
        await res.text();
        expect412(res);
      });

      test('on DELETE → 412 with Tus-Version (the upload is not deleted)', async () => {
        const res = await fetch(url, { method: 'DELETE', headers: headers() });
        await res.text();
        expect412(res);
      });
    });

    test('PATCH without Content-Type → 415', async () => {
      const res = await patchUpload(url, START, Buffer.alloc(10, 1), { 'Content-Type': undefined });
      expect(res.status).toBe(415);
    });

    test('PATCH with Content-Type text/plain → 415', async () => {
      const res = await patchUpload(url, START, Buffer.alloc(10, 1), { 'Content-Type': 'text/plain' });
      expect(res.status).toBe(415);
    });

    test('PATCH without Upload-Offset → 400', async () => {
      const res = await patchUpload(url, undefined, Buffer.alloc(10, 1));
      expect(res.status).toBe(400);
    });

    test.each(['abc', '-1', '1.5', ''])('PATCH with Upload-Offset "%s" → 400', async (offset) => {
      const res = await patchUpload(url, undefined, Buffer.alloc(10, 1), { 'Upload-Offset': offset });
      expect(res.status).toBe(400);
    });

    test.each([0, START - 1, START + 1, LENGTH])('PATCH at the wrong offset %i → 409', async (offset) => {
      const res = await patchUpload(url, offset, Buffer.alloc(10, 1));
      expect(res.status).toBe(409);
    });

    test('PATCH with a body beyond Upload-Length → 413, nothing stored', async () => {
      const before = kind === 's3' ? await s3Leftovers(g.target.bucket as string, id) : undefined;
      const res = await patchUpload(url, START, randomBytes(LENGTH - START + 1));
      expect(res.status).toBe(413);
      if (kind === 'file') expect(await storedFileSize(g.target.dataDir as string, id)).toBe(START);
      else expect(await s3Leftovers(g.target.bucket as string, id)).toEqual(before);
    });

    test('PATCH that changes a known Upload-Length → 400', async () => {
      const res = await patchUpload(url, START, Buffer.alloc(10, 1), { 'Upload-Length': String(LENGTH + 10) });
      expect(res.status).toBe(400);
    });

    test('POST with Upload-Length above MAX_UPLOAD_SIZE → 413', async () => {
      const res = await createUpload(g.tusk.url, { length: MAX_UPLOAD_SIZE + 1 });
      expect(res.status).toBe(413);
      expect(res.headers.get('location')).toBeNull();
      // exactly MAX_UPLOAD_SIZE is allowed
      const ok = await createUpload(g.tusk.url, { length: MAX_UPLOAD_SIZE });
      expect(ok.status).toBe(201);
      await deleteUpload(ok.url);
    });

    test('POST with both Upload-Length and Upload-Defer-Length → 400', async () => {
      const res = await createUpload(g.tusk.url, { length: 10, defer: true });
      expect(res.status).toBe(400);
      expect(res.headers.get('location')).toBeNull();
    });

    test('POST with neither Upload-Length nor Upload-Defer-Length → 400', async () => {
      const res = await createUpload(g.tusk.url, {});
      expect(res.status).toBe(400);
      expect(res.headers.get('location')).toBeNull();
    });

    test.each([
      ['a value that is not base64', 'filename !!!not-base64!!!'],
      ['a duplicate key', `filename ${Buffer.from('a').toString('base64')},filename ${Buffer.from('b').toString('base64')}`],
      // (an empty key after a comma: fetch would trim a leading space of the whole value)
      ['an empty key', `filename ${Buffer.from('a').toString('base64')}, ${Buffer.from('b').toString('base64')}`],
    ])('POST with Upload-Metadata with %s → 400', async (_label, metadata) => {
      const res = await createUpload(g.tusk.url, { length: 10, metadata });
      expect(res.status).toBe(400);
      expect(res.headers.get('location')).toBeNull();
    });

    test('POST with more than 4 KiB of decoded Upload-Metadata → 400; just under it → 201', async () => {
      const tooBig = await createUpload(g.tusk.url, { length: 10, metadata: { filename: 'x'.repeat(5000) } });
      expect(tooBig.status).toBe(400);
      expect(tooBig.headers.get('location')).toBeNull();
      const fits = await createUpload(g.tusk.url, { length: 10, metadata: { filename: 'x'.repeat(4000) } });
      expect(fits.status).toBe(201);
      expect(decodeMetadata((await headUpload(fits.url)).headers.get('upload-metadata'))).toEqual({ filename: 'x'.repeat(4000) });
    });

    test('an unknown upload id → 404 on HEAD, PATCH and DELETE', async () => {
      const unknown = `${g.tusk.url}/files/${'0'.repeat(32)}`;
      expect((await headUpload(unknown)).status).toBe(404);
      expect((await patchUpload(unknown, 0, Buffer.alloc(1))).status).toBe(404);
      expect((await deleteUpload(unknown)).status).toBe(404);
    });

    test('OPTIONS → 204 with Tus-Version, Tus-Extension and Tus-Max-Size', async () => {
      const res = await fetch(`${g.tusk.url}/files/`, { method: 'OPTIONS' });
      expect(res.status).toBe(204);
      expect(res.headers.get('tus-version')?.split(',').map((s) => s.trim())).toContain('1.0.0');
      const extensions = (res.headers.get('tus-extension') ?? '').split(',').map((s) => s.trim());
      expect(extensions).toEqual(
        expect.arrayContaining(['creation', 'creation-with-upload', 'creation-defer-length', 'termination', 'expiration']),
      );
      expect(res.headers.get('tus-max-size')).toBe(String(MAX_UPLOAD_SIZE));
    });
  });

  test('X-HTTP-Method-Override: PATCH on a POST appends like a PATCH', async () => {
    const data = randomBytes(2000);
    const created = await createUpload(g.tusk.url, { length: data.length, body: data.subarray(0, 500) });
    expect(created.status).toBe(201);
    const res = await fetch(created.url, {
      method: 'POST',
      headers: { ...TUS, 'X-HTTP-Method-Override': 'PATCH', 'Content-Type': OCTET, 'Upload-Offset': '500' },
      body: data.subarray(500),
    });
    await res.text();
    expect(res.status).toBe(204);
    expect(res.headers.get('upload-offset')).toBe(String(data.length));
    expect(await offsetOf(created.url)).toBe(data.length);
    expect(await storedSha256(g.target, created.id)).toBe(sha256(data));
  });
});
