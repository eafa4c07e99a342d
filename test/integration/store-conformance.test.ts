// The behaviour both tus stores must share, run against each of them: TuskS3Store
// (lib/stores/s3-store.ts) on the test RGW and Redis, and TuskFileStore (lib/stores/file-store.ts)
// on a temporary directory. The stores are driven through the DataStore interface the way
// @tus/server drives them (bodies through a StreamLimiter, inside the request context tusk's
// endpoint sets), so a difference between the stores shows up here, not behind HTTP.
// Modelled on tus-node-server's shared store tests (packages/utils/src/test/stores.ts).
// What only one store does lives with it: test/integration/s3-store.test.ts (parts, the .part
// tail, spool files, state rebuilt from S3, S3 outages).
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { AbortMultipartUploadCommand, DeleteBucketCommand, GetObjectCommand, ListMultipartUploadsCommand, type S3Client } from '@aws-sdk/client-s3';
import { ERRORS, StreamLimiter, Upload, type DataStore } from '@tus/utils';
import { Redis } from 'ioredis';
import type { ConcatenatingStore } from '../../lib/stores/concatenating-store.js';
import { TuskFileStore } from '../../lib/stores/file-store.js';
import { runWithUploadRequest } from '../../lib/stores/s3-request-context.js';
import { TuskS3Store } from '../../lib/stores/s3-store.js';
import { createTestBucket, s3ClientForTests, testRedisUrl, testS3Settings, uniqueRedisPrefix } from '../helpers/services.js';
import { emptyBucket, sleep } from '../helpers/tus.js';

const MiB = 1024 * 1024;
/** The S3 minimum, so that bodies of a few MiB already make several parts. */
const PART = 5 * MiB;
const HOUR_MS = 3_600_000;

type Store = DataStore & ConcatenatingStore;

interface Opened {
  store: Store;
  /** The bytes of a finished upload, read from where the store keeps them. */
  stored(id: string): Promise<Buffer>;
  /** Another store on the same bucket or directory (another process), with its own expiry. */
  sibling(expiryMs: number): Store;
}

interface Backend {
  name: 's3' | 'file';
  /** A store on a bucket or directory of its own, so that deleteExpired() sees this test's uploads only. */
  open(expiryMs?: number): Promise<Opened>;
}

const cleanups: Array<() => Promise<void>> = [];
let redis: Redis;
let s3: S3Client;

beforeAll(() => {
  redis = new Redis(testRedisUrl());
  s3 = s3ClientForTests();
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
afterAll(async () => {
  s3.destroy();
  await redis.quit();
});

const s3Backend: Backend = {
  name: 's3',
  async open(expiryMs = HOUR_MS) {
    const bucket = await createTestBucket('conformance');
    const prefix = uniqueRedisPrefix();
    const settings = testS3Settings();
    const stores: TuskS3Store[] = [];
    const make = (expiry: number) => {
      const store = new TuskS3Store({
        s3ClientConfig: {
          endpoint: settings.endpoint,
          region: settings.region,
          credentials: { accessKeyId: settings.accessKeyId, secretAccessKey: settings.secretAccessKey },
          forcePathStyle: true,
          bucket,
        },
        partSize: PART,
        redis,
        redisPrefix: prefix,
        expirationPeriodInMilliseconds: expiry,
      });
      stores.push(store);
      return store;
    };
    cleanups.push(async () => {
      for (const store of stores) (store as unknown as { client: S3Client }).client.destroy();
      // RGW memstore keeps objects in memory: free them, the open multipart uploads and the state.
      const listed = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
      for (const u of listed.Uploads ?? []) {
        await s3.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: u.Key, UploadId: u.UploadId }));
      }
      await emptyBucket(bucket);
      await s3.send(new DeleteBucketCommand({ Bucket: bucket })).catch(() => undefined);
      const keys = await redis.keys(`${prefix}*`);
      if (keys.length > 0) await redis.del(...keys);
    });
    return {
      store: make(expiryMs),
      sibling: make,
      async stored(id) {
        const res = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: id }));
        return Buffer.from(await res.Body!.transformToByteArray());
      },
    };
  },
};

const fileBackend: Backend = {
  name: 'file',
  async open(expiryMs = HOUR_MS) {
    const directory = await fs.mkdtemp(path.join(os.tmpdir(), 'tusk-conformance-'));
    cleanups.push(() => fs.rm(directory, { recursive: true, force: true }));
    const make = (expiry: number) => new TuskFileStore({ directory, expirationPeriodInMilliseconds: expiry });
    return {
      store: make(expiryMs),
      sibling: make,
      stored: (id) => fs.readFile(path.join(directory, id)),
    };
  },
};

/** The body as a stream of 64 KiB chunks that fails with "client went away" after `errorAt` bytes. */
function body(data: Buffer, errorAt?: number): Readable {
  const stop = errorAt ?? data.length;
  return Readable.from(
    (async function* () {
      for (let o = 0; o < stop; o += 64 * 1024) yield data.subarray(o, Math.min(stop, o + 64 * 1024));
      if (errorAt !== undefined) throw new Error('client went away');
    })(),
    { objectMode: false },
  );
}

/**
 * DataStore.write() as a PATCH with Content-Length reaches it: inside tusk's request context, the
 * body through a StreamLimiter sized to the declared length (what @tus/server puts in front).
 */
function write(store: Store, id: string, offset: number, data: Buffer, opts: { errorAt?: number } = {}): Promise<number> {
  const src = body(data, opts.errorAt);
  const limiter = new StreamLimiter(data.length);
  src.on('error', (err) => limiter.destroy(err));
  src.pipe(limiter);
  return runWithUploadRequest({ headers: { 'content-length': String(data.length) } }, () => store.write(limiter, id, offset));
}

/** Writes `data` from `offset` on, in bodies of these sizes; returns the offsets after each write. */
async function writeInPieces(store: Store, id: string, data: Buffer, sizes: number[], offset = 0): Promise<number[]> {
  const offsets: number[] = [];
  for (const size of sizes) {
    offset = await write(store, id, offset, data.subarray(offset, offset + size));
    offsets.push(offset);
  }
  return offsets;
}

const newId = () => crypto.randomBytes(16).toString('hex');

async function create(store: Store, size: number | undefined, metadata: Record<string, string | null> = { filename: 'x.bin' }): Promise<Upload> {
  return store.create(new Upload({ id: newId(), size, offset: 0, metadata }));
}

const finished = (u: Upload) => u.size !== undefined && u.offset === u.size;

/**
 * @tus/server's rule (HEAD and PATCH handlers) for answering 410 Gone: the upload's creation_date
 * plus the store's expiry has passed.
 */
const expiredForTusServer = (u: Upload, expiryMs: number) => u.creation_date !== undefined && Date.now() > Date.parse(u.creation_date) + expiryMs;

describe.each<Backend>([s3Backend, fileBackend])('$name store', (backend) => {
  test('create: offset 0, the size and metadata (null values, non-ASCII) as given, where it is stored', async () => {
    const { store } = await backend.open();
    const metadata = { filename: '世界_domination_plan.pdf', filetype: 'application/pdf', is_confidential: null };
    const created = await create(store, 1000, metadata);
    expect(created).toBeInstanceOf(Upload);
    expect(created.storage?.type).toBe(backend.name);
    expect(created.storage?.path).toEqual(expect.any(String));
    const upload = await store.getUpload(created.id);
    expect(upload).toMatchObject({ id: created.id, offset: 0, size: 1000, metadata });
    expect(upload.sizeIsDeferred).toBe(false);
  });

  test('unknown ids: getUpload, remove and declareUploadLength reject with 404', async () => {
    const { store } = await backend.open();
    const id = newId();
    await expect(store.getUpload(id)).rejects.toBe(ERRORS.FILE_NOT_FOUND);
    await expect(store.remove(id)).rejects.toBe(ERRORS.FILE_NOT_FOUND);
    await expect(store.declareUploadLength(id, 10)).rejects.toMatchObject({ status_code: 404 });
  });

  test('writes at successive offsets, small, empty and several parts long, end byte-identical', async () => {
    const { store, stored } = await backend.open();
    const data = crypto.randomBytes(4 * PART + 12_345);
    const { id } = await create(store, data.length);
    // 1 byte, 100 KiB, nothing, 6 MiB (more than a part), 2 parts and a bit in one body, the rest
    const sizes = [1, 100 * 1024, 0, 6 * MiB, 2 * PART + 5];
    sizes.push(data.length - sizes.reduce((a, b) => a + b, 0));
    let expected = 0;
    for (const [i, offset] of (await writeInPieces(store, id, data, sizes)).entries()) {
      expected += sizes[i]!;
      expect(offset).toBe(expected);
    }
    const upload = await store.getUpload(id);
    expect([upload.offset, upload.size]).toEqual([data.length, data.length]);
    expect((await stored(id)).equals(data)).toBe(true);
  });

  test('getUpload after each write reports the new offset, finished once it reaches the size', async () => {
    const { store } = await backend.open();
    const data = crypto.randomBytes(PART + 1000);
    const { id } = await create(store, data.length);
    let offset = 0;
    for (const size of [1000, PART]) {
      expect(finished(await store.getUpload(id))).toBe(false);
      offset = await write(store, id, offset, data.subarray(offset, offset + size));
      expect((await store.getUpload(id)).offset).toBe(offset);
    }
    expect(finished(await store.getUpload(id))).toBe(true);
  });

  test('expiry (as @tus/server applies it) is counted from creation for unfinished uploads; finished ones never expire', async () => {
    const expiryMs = 1000;
    const { store } = await backend.open(expiryMs);
    const data = crypto.randomBytes(2000);
    const before = Date.now();
    const unfinished = await create(store, data.length);
    const after = Date.now();
    await writeInPieces(store, unfinished.id, data, [1000]);
    const done = await create(store, data.length);
    await writeInPieces(store, done.id, data, [data.length]);
    const created = Date.parse((await store.getUpload(unfinished.id)).creation_date ?? '');
    expect(created).toBeGreaterThanOrEqual(before);
    expect(created).toBeLessThanOrEqual(after);
    await sleep(expiryMs + 100);
    expect(expiredForTusServer(await store.getUpload(unfinished.id), expiryMs)).toBe(true);
    expect(expiredForTusServer(await store.getUpload(done.id), expiryMs)).toBe(false);
  });

  test('a zero-byte upload is finished as soon as it is created', async () => {
    const { store, stored } = await backend.open();
    const { id } = await create(store, 0);
    const upload = await store.getUpload(id);
    expect([upload.offset, upload.size]).toEqual([0, 0]);
    expect((await stored(id)).length).toBe(0);
  });

  test('a body that fails midway: write rejects, what was kept is the offset, and the upload resumes byte-identical', async () => {
    const { store, stored } = await backend.open();
    const data = crypto.randomBytes(2 * PART + 4321);
    const { id } = await create(store, data.length);
    const cut = PART + 777;
    await expect(write(store, id, 0, data, { errorAt: cut })).rejects.toBeDefined();
    const { offset } = await store.getUpload(id);
    expect(offset).toBeLessThanOrEqual(cut);
    expect(await write(store, id, offset, data.subarray(offset))).toBe(data.length);
    expect((await stored(id)).equals(data)).toBe(true);
  });

  test('deferred length: unknown until declared; writes before and after the declaration make the whole upload', async () => {
    const { store, stored } = await backend.open();
    const data = crypto.randomBytes(PART + 3 * MiB + 7);
    const { id } = await create(store, undefined);
    const fresh = await store.getUpload(id);
    expect([fresh.size, fresh.sizeIsDeferred, fresh.offset]).toEqual([undefined, true, 0]);
    const [offset] = await writeInPieces(store, id, data, [PART + MiB]);
    expect((await store.getUpload(id)).size).toBeUndefined();
    await store.declareUploadLength(id, data.length);
    const declared = await store.getUpload(id);
    expect([declared.size, declared.sizeIsDeferred, declared.offset]).toEqual([data.length, false, offset]);
    expect(await write(store, id, offset!, data.subarray(offset))).toBe(data.length);
    expect(finished(await store.getUpload(id))).toBe(true);
    expect((await stored(id)).equals(data)).toBe(true);
  });

  test('deferred length declared equal to the bytes already written: the upload is finished', async () => {
    const { store, stored } = await backend.open();
    const data = crypto.randomBytes(MiB + 3);
    const { id } = await create(store, undefined);
    await writeInPieces(store, id, data, [data.length]);
    await store.declareUploadLength(id, data.length);
    const upload = await store.getUpload(id);
    expect([upload.offset, upload.size]).toEqual([data.length, data.length]);
    expect((await stored(id)).equals(data)).toBe(true);
  });

  test('remove: unfinished and finished uploads are gone afterwards, bytes and all', async () => {
    const { store, stored } = await backend.open();
    const data = crypto.randomBytes(PART + 10);
    const unfinished = await create(store, 2 * PART);
    await writeInPieces(store, unfinished.id, data, [data.length]);
    const done = await create(store, data.length);
    await writeInPieces(store, done.id, data, [data.length]);
    for (const id of [unfinished.id, done.id]) {
      await store.remove(id);
      await expect(store.getUpload(id)).rejects.toBe(ERRORS.FILE_NOT_FOUND);
      await expect(store.remove(id)).rejects.toBe(ERRORS.FILE_NOT_FOUND);
      await expect(stored(id)).rejects.toBeDefined();
    }
  });

  /** Two unfinished uploads (one empty, one begun) and a finished one, then deleteExpired() once they are expired. */
  async function expireSome(): Promise<{ store: Store; stored: Opened['stored']; expired: Upload[]; done: Upload; deleted: number[] }> {
    const { store, sibling, stored } = await backend.open();
    const data = crypto.randomBytes(2000);
    const empty = await create(store, 5000);
    const begun = await create(store, 5000);
    await writeInPieces(store, begun.id, data, [1000]);
    const done = await create(store, data.length);
    await writeInPieces(store, done.id, data, [data.length]);
    const deleted = [await store.deleteExpired()]; // nothing is an hour old yet
    // Another process whose uploads expire after a second (S3 dates multipart uploads to the second).
    await sleep(1100);
    const expiring = sibling(1000);
    deleted.push(await expiring.deleteExpired(), await expiring.deleteExpired());
    return { store, stored, expired: [empty, begun], done, deleted };
  }

  test('deleteExpired removes the expired unfinished uploads, once; finished ones never expire', async () => {
    const { store, stored, expired, done, deleted } = await expireSome();
    // How many it reports differs: uploads (file store), objects deleted (S3, @tus/s3-store).
    expect(deleted[0]).toBe(0);
    expect(deleted[1]).toBeGreaterThanOrEqual(expired.length);
    expect(deleted[2]).toBe(0);
    for (const { id } of expired) await expect(stored(id)).rejects.toBeDefined();
    expect(finished(await store.getUpload(done.id))).toBe(true);
  });

  // What deleteExpired removed is gone for getUpload too (for S3: the upload's Redis state as well).
  test('after deleteExpired, getUpload of an expired upload rejects (404 or 410)', async () => {
    const { store, expired } = await expireSome();
    for (const { id } of expired) await expect(store.getUpload(id)).rejects.toMatchObject({ status_code: expect.any(Number) });
  });

  test('concatenate: the final upload is the partials in order, finished, and readable like any other', async () => {
    const { store, stored } = await backend.open();
    // A piece S3 can copy server-side (>= 5 MiB), small ones it must stream, one empty.
    const pieces = [crypto.randomBytes(PART + 3), crypto.randomBytes(17), Buffer.alloc(0), crypto.randomBytes(2 * MiB)];
    const partials: Upload[] = [];
    for (const piece of pieces) {
      const { id } = await create(store, piece.length);
      if (piece.length > 0) await writeInPieces(store, id, piece, [piece.length]);
      partials.push(await store.getUpload(id));
    }
    const whole = Buffer.concat(pieces);
    const final = new Upload({ id: newId(), size: whole.length, offset: 0, metadata: { filename: 'joined.bin' } });
    const built = await store.concatenate(final, partials);
    expect([built.id, built.offset, built.size]).toEqual([final.id, whole.length, whole.length]);
    const upload = await store.getUpload(final.id);
    expect(upload).toMatchObject({ offset: whole.length, size: whole.length, metadata: { filename: 'joined.bin' } });
    expect((await stored(final.id)).equals(whole)).toBe(true);
    // The partials are untouched (the server removes them afterwards, like any upload).
    for (const [i, partial] of partials.entries()) expect((await stored(partial.id)).equals(pieces[i]!)).toBe(true);
  });
});
