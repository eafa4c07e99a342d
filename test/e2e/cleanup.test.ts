// Expiration that frees storage: the worker's periodic cleanup deletes expired UNFINISHED uploads
// (S3: multipart upload aborted, .info and .part removed; disk: file and record removed), keeps
// finished ones, and the expired upload then answers 404 or 410. Real tusk in `all` mode.
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createTestBucket, testRedisUrl, tuskEnvForTests, uniqueRedisPrefix } from '../helpers/services.js';
import { startTusk, type TuskProcess } from '../helpers/tusk-process.js';
import { TUS, createUpload, headUpload, patchRest, s3Leftovers, sleep, waitFor, type StoreKind } from '../helpers/tus.js';

const MiB = 1024 * 1024;
const cleanupEnv = { UPLOAD_EXPIRY: '2s', CLEANUP_INTERVAL: '1s', LOG_LEVEL: 'info', SCAN_REQUIRED: 'false' };

describe.each<StoreKind>(['s3', 'file'])('cleanup of expired uploads (%s store)', (kind) => {
  let tusk: TuskProcess;
  let bucket = '';
  let dataDir = '';

  beforeAll(async () => {
    let env: Record<string, string>;
    if (kind === 's3') {
      bucket = await createTestBucket('cleanup');
      env = { ...tuskEnvForTests(bucket), ...cleanupEnv };
    } else {
      dataDir = await mkdtemp(path.join(os.tmpdir(), 'tusk-cleanup-'));
      env = { STORAGE: 'file', DATA_DIR: dataDir, REDIS_URL: testRedisUrl(), REDIS_PREFIX: uniqueRedisPrefix(), ...cleanupEnv };
    }
    tusk = await startTusk({ env, mode: 'all' });
  });
  afterAll(async () => {
    await tusk?.kill();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  test('an expired unfinished upload and its leftovers are deleted; a finished one stays', async () => {
    // Unfinished: one full part and a tail below S3's minimum part size (a .part object).
    const unfinished = await createUpload(tusk.url, { length: 20 * MiB });
    await patchRest(unfinished.url, randomBytes(6 * MiB + 100), 0, 6 * MiB);
    const finished = await createUpload(tusk.url, { length: 1000 });
    await patchRest(finished.url, randomBytes(1000), 0);

    if (kind === 's3') {
      const before = await s3Leftovers(bucket, unfinished.id);
      expect(before.multipart).toHaveLength(1);
      expect(before.keys).toEqual(expect.arrayContaining([`${unfinished.id}.info`, `${unfinished.id}.part`]));
    }

    await waitFor(
      'cleanup to delete the expired upload',
      async () => {
        if (kind === 's3') {
          const left = await s3Leftovers(bucket, unfinished.id);
          return left.keys.length === 0 && left.multipart.length === 0;
        }
        return !(await readdir(path.join(dataDir, 'uploads'))).some((f) => f.startsWith(unfinished.id));
      },
      20_000,
    );
    expect([404, 410]).toContain((await headUpload(unfinished.url, { ...TUS })).status);

    await sleep(1500); // at least one more cleanup run after the finished upload expired too
    const head = await headUpload(finished.url, { ...TUS });
    expect(head.status).toBe(200);
    expect(head.headers.get('upload-offset')).toBe('1000');
    expect(tusk.output()).toMatch(/cleanup of expired uploads done/);
    expect(tusk.output()).toMatch(/"deleted":[1-9]/);
  });
});
