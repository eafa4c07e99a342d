// Helpers for tests that use the Redis and S3 (Ceph RGW) started by test/infra/global-setup.ts.
// They read the TEST_* variables global-setup publishes; run tests through `npm test` (or jest
// with this repo's jest.config.js) so that they exist.
import { createHash, randomBytes, randomFillSync, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CreateBucketCommand, GetObjectCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';

/** Reads a variable that global-setup.ts must have set. */
export function requireTestEnv(name: string): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: test services are started by test/infra/global-setup.ts; run the tests with \`npm test\``);
  }
  return value;
}

/** redis://127.0.0.1:PORT of the test Redis (never the developer's or CI's own Redis). */
export function testRedisUrl(): string {
  return requireTestEnv('TEST_REDIS_URL');
}

/** Connection settings of the test S3 (RGW) endpoint. */
export function testS3Settings(): { endpoint: string; region: string; accessKeyId: string; secretAccessKey: string; bucket: string } {
  return {
    endpoint: requireTestEnv('TEST_S3_ENDPOINT'),
    region: process.env.TEST_S3_REGION || 'us-east-1',
    accessKeyId: requireTestEnv('TEST_S3_ACCESS_KEY_ID'),
    secretAccessKey: requireTestEnv('TEST_S3_SECRET_ACCESS_KEY'),
    bucket: requireTestEnv('TEST_S3_BUCKET'),
  };
}

/**
 * An S3 client for the test RGW: path-style, us-east-1, and checksums only when an operation
 * requires them (RGW 16 rejects the CRC32 checksums the SDK sends by default). Call destroy().
 */
export function s3ClientForTests(overrides: Partial<S3ClientConfig> = {}): S3Client {
  const s3 = testS3Settings();
  return new S3Client({
    endpoint: s3.endpoint,
    region: s3.region,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    ...overrides,
  });
}

/**
 * Creates a fresh, uniquely named bucket (e.g. one per test file) and returns its name.
 * `prefix` is reduced to what bucket names allow.
 */
export async function createTestBucket(prefix = 'test'): Promise<string> {
  const clean = prefix
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 40);
  const name = `${clean || 'test'}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
  const client = s3ClientForTests();
  try {
    await client.send(new CreateBucketCommand({ Bucket: name }));
  } finally {
    client.destroy();
  }
  return name;
}

/** sha256 (hex) of an S3 object, streamed (constant memory). */
export async function sha256OfObject(bucket: string, key: string, client?: S3Client): Promise<string> {
  const s3 = client ?? s3ClientForTests();
  try {
    const response = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    if (!response.Body) throw new Error(`GetObject ${bucket}/${key}: no body`);
    const hash = createHash('sha256');
    await pipeline(response.Body as Readable, hash);
    return hash.digest('hex');
  } finally {
    if (!client) s3.destroy();
  }
}

/** sha256 (hex) of a local file, streamed. */
export async function sha256OfFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(file), hash);
  return hash.digest('hex');
}

/**
 * Writes a file of `bytes` random bytes into `dir` (created if needed) in constant memory and
 * returns its path and sha256 (hex).
 */
export async function makeRandomFile(dir: string, bytes: number): Promise<{ path: string; sha256: string; size: number }> {
  if (!Number.isSafeInteger(bytes) || bytes < 0) throw new Error(`makeRandomFile: bad size ${bytes}`);
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, `random-${bytes}-${randomUUID()}.bin`);
  const hash = createHash('sha256');
  const chunk = Buffer.allocUnsafe(Math.min(bytes, 1024 * 1024));
  const handle = await open(file, 'wx');
  try {
    let left = bytes;
    while (left > 0) {
      const piece = chunk.subarray(0, Math.min(left, chunk.length));
      randomFillSync(piece);
      hash.update(piece);
      let written = 0;
      while (written < piece.length) {
        const { bytesWritten } = await handle.write(piece, written, piece.length - written);
        written += bytesWritten;
      }
      left -= piece.length;
    }
  } finally {
    await handle.close();
  }
  return { path: file, sha256: hash.digest('hex'), size: bytes };
}

/** A TCP port that is free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** A Redis key prefix no other test uses, e.g. for REDIS_PREFIX: `tusk-test-1a2b3c4d:`. */
export function uniqueRedisPrefix(): string {
  return `tusk-test-${randomBytes(6).toString('hex')}:`;
}

/**
 * Environment for a tusk process (see tusk-process.ts) storing into the test S3 and using the
 * test Redis with a unique prefix. Pass `bucket` from createTestBucket().
 */
export function tuskEnvForTests(bucket: string): Record<string, string> {
  const s3 = testS3Settings();
  return {
    STORAGE: 's3',
    S3_ENDPOINT: s3.endpoint,
    S3_REGION: s3.region,
    S3_BUCKET: bucket,
    S3_ACCESS_KEY_ID: s3.accessKeyId,
    S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
    S3_FORCE_PATH_STYLE: 'true',
    REDIS_URL: testRedisUrl(),
    REDIS_PREFIX: uniqueRedisPrefix(),
  };
}
