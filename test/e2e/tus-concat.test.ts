// tus concatenation (parallel uploads) against a real tusk process, both stores: partials of mixed
// sizes make a byte-identical final upload, built server-side; errors are clear 400s; partials are
// deleted afterwards and never queued for processing; tus-js-client's parallelUploads works.
// The S3 part plan alone: test/unit/s3-concat-plan.test.ts.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as tus from 'tus-js-client';
import { createTestBucket, testRedisUrl, tuskEnvForTests, uniqueRedisPrefix } from '../helpers/services.js';
import { startTusk, type TuskProcess } from '../helpers/tusk-process.js';
import {
  TUS,
  createUpload,
  headUpload,
  patchRest,
  patchUpload,
  processUploadJobs,
  storedSha256,
  uploadIdOf,
  type StoreKind,
  type StoreTarget,
} from '../helpers/tus.js';

const MiB = 1024 * 1024;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function storeFor(kind: StoreKind): Promise<{ env: Record<string, string>; target: StoreTarget; prefix: string }> {
  const prefix = uniqueRedisPrefix();
  if (kind === 's3') {
    const bucket = await createTestBucket('concat');
    return { env: { ...tuskEnvForTests(bucket), REDIS_PREFIX: prefix, LOG_LEVEL: 'warn' }, target: { kind, bucket }, prefix };
  }
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'tusk-concat-'));
  return {
    env: { STORAGE: 'file', DATA_DIR: dataDir, REDIS_URL: testRedisUrl(), REDIS_PREFIX: prefix, LOG_LEVEL: 'warn' },
    target: { kind, dataDir },
    prefix,
  };
}

describe.each<StoreKind>(['s3', 'file'])('concatenation (%s store)', (kind) => {
  let tusk: TuskProcess;
  let target: StoreTarget;
  let prefix: string;

  beforeAll(async () => {
    const store = await storeFor(kind);
    target = store.target;
    prefix = store.prefix;
    tusk = await startTusk({ env: store.env });
  });
  afterAll(async () => {
    await tusk?.kill();
    if (target?.dataDir) await rm(target.dataDir, { recursive: true, force: true });
  });

  async function partial(data: Buffer): Promise<string> {
    const created = await createUpload(tusk.url, { length: data.length, headers: { 'Upload-Concat': 'partial' } });
    expect(created.status).toBe(201);
    await patchRest(created.url, data, 0, 8 * MiB);
    return created.url;
  }

  test('3 partials of mixed sizes make a byte-identical final upload; partials are then gone', async () => {
    const pieces = [randomBytes(6 * MiB), randomBytes(2 * MiB + 17), randomBytes(9 * MiB)];
    const urls = await Promise.all(pieces.map(partial));
    const head = await headUpload(urls[1]!, { ...TUS });
    expect(head.headers.get('upload-concat')).toBe('partial');

    const final = await createUpload(tusk.url, {
      headers: { 'Upload-Concat': `final;${urls.join(' ')}` },
      metadata: { filename: 'joined.bin' },
    });
    expect(final.status).toBe(201);
    const whole = Buffer.concat(pieces);
    expect(await storedSha256(target, final.id)).toBe(sha256(whole));

    const finalHead = await headUpload(final.url, { ...TUS });
    expect(finalHead.status).toBe(200);
    expect(finalHead.headers.get('upload-concat')).toBe(`final;${urls.join(' ')}`);
    expect(finalHead.headers.get('upload-length')).toBe(String(whole.length));
    expect(finalHead.headers.get('upload-offset')).toBe(String(whole.length));

    expect((await patchUpload(final.url, whole.length, Buffer.alloc(0))).status).toBe(403);
    for (const url of urls) expect([404, 410]).toContain((await headUpload(url, { ...TUS })).status);

    const jobs = await processUploadJobs(testRedisUrl(), prefix);
    const ids = jobs.map((j) => j.id);
    expect(ids).toContain(final.id);
    for (const url of urls) expect(ids).not.toContain(uploadIdOf(url));
    expect(jobs.find((j) => j.id === final.id)?.data).toMatchObject({ uploadId: final.id, size: whole.length, metadata: { filename: 'joined.bin' } });
  });

  test('unknown, unfinished or non-partial uploads are refused with a clear 400', async () => {
    const unfinished = await createUpload(tusk.url, { length: 100, headers: { 'Upload-Concat': 'partial' } });
    await patchUpload(unfinished.url, 0, randomBytes(50));
    const plain = await createUpload(tusk.url, { length: 3 });
    await patchUpload(plain.url, 0, Buffer.from('abc'));
    const done = await partial(randomBytes(10));

    const cases: Array<[string, RegExp]> = [
      [`final;${tusk.url}/files/no-such-upload`, /not a partial|not found/i],
      [`final;${done} ${unfinished.url}`, /not finished/i],
      [`final;${plain.url}`, /not a partial/i],
      ['final;', /at least one/i],
      ['sideways', /partial/i],
    ];
    for (const [header, message] of cases) {
      const res = await createUpload(tusk.url, { headers: { 'Upload-Concat': header } });
      expect([res.status, header]).toEqual([400, header]);
      expect(res.body).toMatch(message);
    }
    const withLength = await createUpload(tusk.url, { length: 10, headers: { 'Upload-Concat': `final;${done}` } });
    expect(withLength.status).toBe(400);
    // the finished partial was not consumed by the refused requests
    expect((await headUpload(done, { ...TUS })).status).toBe(200);
  });

  test('tus-js-client with parallelUploads: 4 ends byte-identical', async () => {
    const data = randomBytes(30 * MiB + 5);
    const url = await new Promise<string>((resolve, reject) => {
      const upload = new tus.Upload(data, {
        endpoint: `${tusk.url}/files/`,
        parallelUploads: 4,
        metadata: { filename: 'parallel.bin' },
        retryDelays: [],
        storeFingerprintForResuming: false,
        onError: reject,
        onSuccess: () => resolve(upload.url ?? ''),
      });
      upload.start();
    });
    expect(await storedSha256(target, uploadIdOf(url))).toBe(sha256(data));
  });

  test('OPTIONS advertises concatenation', async () => {
    const res = await fetch(`${tusk.url}/files/`, { method: 'OPTIONS' });
    expect((res.headers.get('tus-extension') ?? '').split(',')).toContain('concatenation');
  });
});
