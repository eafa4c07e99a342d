// Proves the test infrastructure works: the private Redis and the Ceph RGW (S3) started by
// test/infra/global-setup.ts, reached through the variables it publishes.
import { readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListPartsCommand,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { Redis } from 'ioredis';
import { createTestBucket, makeRandomFile, s3ClientForTests, sha256OfFile, sha256OfObject, testRedisUrl } from '../helpers/services.js';

const MiB = 1024 * 1024;

describe('test infrastructure', () => {
  let s3: S3Client;
  let workDir: string;

  beforeAll(() => {
    s3 = s3ClientForTests();
    workDir = path.join(os.tmpdir(), `tusk-infra-test-${process.pid}`);
  });

  afterAll(async () => {
    s3?.destroy();
    await rm(workDir, { recursive: true, force: true });
  });

  it('publishes the services to test workers through process.env', () => {
    for (const name of [
      'TEST_REDIS_URL',
      'TEST_S3_ENDPOINT',
      'TEST_S3_ACCESS_KEY_ID',
      'TEST_S3_SECRET_ACCESS_KEY',
      'TEST_S3_BUCKET',
      'TEST_S3_REGION',
      'TEST_RGW_DIR',
      'TEST_RGW_SCRIPT',
      'TEST_SERVICES_DIR',
    ]) {
      expect(process.env[name]).toBeTruthy();
    }
    expect(process.env.TEST_REDIS_URL).toMatch(/^redis:\/\/127\.0\.0\.1:\d+$/);
    expect(process.env.TEST_REDIS_URL).not.toBe('redis://127.0.0.1:6379');
    expect(process.env.TEST_S3_REGION).toBe('us-east-1');
  });

  it('has a private Redis that answers PING', async () => {
    const redis = new Redis(testRedisUrl(), { lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await redis.connect();
      expect(await redis.ping()).toBe('PONG');
      expect(await redis.config('GET', 'maxmemory-policy')).toEqual(['maxmemory-policy', 'noeviction']);
    } finally {
      redis.disconnect();
    }
  });

  it('has the default S3 bucket', async () => {
    await expect(s3.send(new HeadBucketCommand({ Bucket: process.env.TEST_S3_BUCKET }))).resolves.toBeDefined();
  });

  it('stores a 6 MiB object with a multipart upload and reads it back intact', async () => {
    const bucket = await createTestBucket('infra');
    const source = await makeRandomFile(workDir, 6 * MiB);
    expect(await sha256OfFile(source.path)).toBe(source.sha256);
    const data = await readFile(source.path);
    const parts = [data.subarray(0, 5 * MiB), data.subarray(5 * MiB)]; // 5 MiB is the minimum for all but the last
    const key = 'multipart/six-mib.bin';

    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
    expect(UploadId).toBeTruthy();
    const etags: string[] = [];
    for (const [i, body] of parts.entries()) {
      const { ETag } = await s3.send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: i + 1, Body: body }));
      expect(ETag).toBeTruthy();
      etags.push(ETag as string);
    }

    const listed = await s3.send(new ListPartsCommand({ Bucket: bucket, Key: key, UploadId }));
    expect((listed.Parts ?? []).map((p) => ({ n: p.PartNumber, size: p.Size, etag: p.ETag }))).toEqual([
      { n: 1, size: 5 * MiB, etag: etags[0] },
      { n: 2, size: 1 * MiB, etag: etags[1] },
    ]);

    await s3.send(
      new CompleteMultipartUploadCommand({
        Bucket: bucket,
        Key: key,
        UploadId,
        MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
      }),
    );
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    expect(head.ContentLength).toBe(6 * MiB);
    expect(await sha256OfObject(bucket, key)).toBe(source.sha256);
  });
});
