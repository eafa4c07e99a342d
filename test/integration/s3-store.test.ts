// TuskS3Store against a real S3 (Ceph RGW) and a real Redis, both started for the run by the
// test infra (TEST_S3_*, TEST_REDIS_URL). The store is driven directly (create / write streams /
// getUpload / remove); HTTP black-box tests live elsewhere. Part size is the S3 minimum (5 MiB)
// so multi-part cases stay small. What the file store must do as well (create, write at offsets,
// deferred lengths, remove, expiry, concatenation, finished vs unfinished) is in
// store-conformance.test.ts, run against both; this file has what is particular to S3: parts,
// the .part tail, spool files, the Redis state and its rebuild from S3, S3 outages, tags, and
// acknowledging from the local write buffer (UPLOAD_ACK=disk).
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { S3, type S3ClientConfig } from '@aws-sdk/client-s3';
import { StreamLimiter, Upload } from '@tus/utils';
import { Redis } from 'ioredis';
import { Metrics } from '../../lib/metrics.js';
import { TuskS3Store, type TuskS3StoreOptions } from '../../lib/stores/s3-store.js';
import { runWithUploadRequest } from '../../lib/stores/s3-request-context.js';
import { newUploadId } from '../../lib/upload-id.js';

const REQUIRED = ['TEST_S3_ENDPOINT', 'TEST_S3_ACCESS_KEY_ID', 'TEST_S3_SECRET_ACCESS_KEY', 'TEST_S3_REGION', 'TEST_S3_BUCKET', 'TEST_REDIS_URL'];
const missing = REQUIRED.filter((k) => !process.env[k]);
if (missing.length > 0) {
  throw new Error(
    `${missing.join(', ')} not set. The jest global setup starts RGW + Redis and sets them; to run this file alone ` +
      'against your own services set all of ' + REQUIRED.join(', ') + " and pass --globalSetup='' --globalTeardown=''.",
  );
}
const env = (k: string) => process.env[k] as string;

const MiB = 1024 * 1024;
const PART = 5 * MiB;
const bucket = env('TEST_S3_BUCKET');
const s3Config: S3ClientConfig = {
  endpoint: env('TEST_S3_ENDPOINT'),
  region: env('TEST_S3_REGION'),
  forcePathStyle: true,
  credentials: { accessKeyId: env('TEST_S3_ACCESS_KEY_ID'), secretAccessKey: env('TEST_S3_SECRET_ACCESS_KEY') },
  requestChecksumCalculation: 'WHEN_REQUIRED',
  responseChecksumValidation: 'WHEN_REQUIRED',
};

let redis: Redis;
let s3: S3;
let spoolDir: string;
let prefix: string;
const stores: TuskS3Store[] = [];

function newStore(over: Partial<TuskS3StoreOptions> = {}): TuskS3Store {
  const store = new TuskS3Store({
    s3ClientConfig: { ...s3Config, bucket },
    partSize: PART,
    redis,
    redisPrefix: prefix,
    spoolDirectory: spoolDir,
    expirationPeriodInMilliseconds: 3_600_000,
    ...over,
  });
  stores.push(store);
  return store;
}

const sha = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

async function objectSha(key: string): Promise<string> {
  const res = await s3.getObject({ Bucket: bucket, Key: key });
  return sha(Buffer.from(await res.Body!.transformToByteArray()));
}

async function exists(key: string): Promise<boolean> {
  try {
    await s3.headObject({ Bucket: bucket, Key: key });
    return true;
  } catch {
    return false;
  }
}

async function tailSize(id: string): Promise<number | undefined> {
  try {
    return (await s3.headObject({ Bucket: bucket, Key: `${id}.part` })).ContentLength;
  } catch {
    return undefined;
  }
}

/** The body as a stream of 64 KiB chunks; optionally ends (or errors) after `cutAt` bytes. */
function body(data: Buffer, opts: { cutAt?: number; errorAt?: number } = {}): Readable {
  const stop = opts.cutAt ?? opts.errorAt ?? data.length;
  return Readable.from(
    (async function* () {
      for (let o = 0; o < stop; o += 64 * 1024) {
        yield data.subarray(o, Math.min(stop, o + 64 * 1024));
        if (o % (1024 * 1024) === 0) await new Promise((r) => setImmediate(r));
      }
      if (opts.errorAt !== undefined) throw new Error('client went away');
    })(),
    { objectMode: false },
  );
}

type Length = 'content-length' | 'chunked' | 'limiter';

/**
 * write() as @tus/server calls it. 'content-length': the request context carries the declared
 * length; 'chunked': no Content-Length; 'limiter': no context, the body comes through a
 * StreamLimiter sized to `declared` (what @tus/server does).
 */
function write(store: TuskS3Store, id: string, offset: number, src: Readable, declared: number, how: Length = 'content-length') {
  if (how === 'limiter') {
    const limiter = new StreamLimiter(declared);
    src.pipe(limiter);
    src.on('error', (err) => limiter.destroy(err));
    return store.write(limiter, id, offset);
  }
  const headers = how === 'content-length' ? { 'content-length': String(declared) } : {};
  return runWithUploadRequest({ headers }, () => store.write(src, id, offset));
}

/** Counts the store's S3 calls by command and outcome ('ok' | 'AbortError' | other error name). */
function countCalls(store: TuskS3Store): Record<string, number> {
  const counts: Record<string, number> = {};
  (store as unknown as { client: S3 }).client.middlewareStack.add(
    (next, ctx) => async (args) => {
      const name = String(ctx.commandName).replace(/Command$/, '');
      try {
        const out = await next(args);
        counts[`${name} ok`] = (counts[`${name} ok`] ?? 0) + 1;
        return out;
      } catch (err) {
        const k = `${name} ${(err as Error).name}`;
        counts[k] = (counts[k] ?? 0) + 1;
        throw err;
      }
    },
    { step: 'initialize', name: 'countCalls' },
  );
  return counts;
}

async function create(store: TuskS3Store, size: number | undefined): Promise<string> {
  const id = `${prefix.replace(/:$/, '')}-${crypto.randomBytes(6).toString('hex')}`;
  await store.create(new Upload({ id, size, offset: 0, metadata: { filename: 'x.bin' } }));
  return id;
}

async function stateKeys(id: string): Promise<string[]> {
  return redis.keys(`${prefix}upload:{${id}}*`);
}

beforeAll(async () => {
  redis = new Redis(env('TEST_REDIS_URL'));
  s3 = new S3(s3Config);
  await s3.headBucket({ Bucket: bucket });
});

beforeEach(() => {
  prefix = `t${crypto.randomBytes(3).toString('hex')}:`;
  spoolDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tusk-s3-test-'));
});

afterEach(async () => {
  // Every spool file is removed, whatever happened.
  const left = fs.readdirSync(spoolDir);
  fs.rmSync(spoolDir, { recursive: true, force: true });
  expect(left).toEqual([]);
  // Free the test's objects (RGW memstore keeps data in RAM) and Redis keys.
  const idPrefix = prefix.replace(/:$/, '-');
  const listed = await s3.listObjectsV2({ Bucket: bucket, Prefix: idPrefix });
  const keys = (listed.Contents ?? []).map((o) => ({ Key: o.Key! }));
  if (keys.length > 0) await s3.deleteObjects({ Bucket: bucket, Delete: { Objects: keys } });
  const mp = await s3.listMultipartUploads({ Bucket: bucket, Prefix: idPrefix });
  for (const u of mp.Uploads ?? []) await s3.abortMultipartUpload({ Bucket: bucket, Key: u.Key!, UploadId: u.UploadId! });
  const rkeys = await redis.keys(`${prefix}*`);
  if (rkeys.length > 0) await redis.del(...rkeys);
});

afterAll(async () => {
  for (const s of stores) (s as unknown as { client: S3 }).client.destroy();
  s3.destroy();
  await redis.quit();
});

describe('TuskS3Store', () => {
  test.each<[Length]>([['content-length'], ['chunked'], ['limiter']])(
    'multi-part writes end byte-identical (%s)',
    async (how) => {
      const store = newStore();
      const data = crypto.randomBytes(23 * MiB + 12345);
      const id = await create(store, data.length);
      // 13 MiB: 2 parts (5 + 8) streamed, or (chunked) 5 + 5 + a 3 MiB .part
      const first = 13 * MiB;
      expect(await write(store, id, 0, body(data.subarray(0, first)), first, how)).toBe(first);
      expect((await store.getUpload(id)).offset).toBe(first);
      const rest = data.length - first;
      expect(await write(store, id, first, body(data.subarray(first)), rest, how)).toBe(data.length);
      const up = await store.getUpload(id);
      expect(up.offset).toBe(data.length);
      expect(await objectSha(id)).toBe(sha(data));
      expect(await exists(`${id}.part`)).toBe(false);
      // state: only a small "done" record
      expect(await stateKeys(id)).toEqual([`${prefix}upload:{${id}}`]);
    },
  );

  test('without a request context, a chunked body shorter than its limiter (rest of the upload) is stored exactly', async () => {
    // @tus/server sizes the StreamLimiter to Upload-Length - offset when Content-Length is absent.
    const store = newStore();
    const data = crypto.randomBytes(17 * MiB);
    const id = await create(store, data.length);
    const steps = [7 * MiB + 5, 3 * MiB, data.length - 10 * MiB - 5];
    let offset = 0;
    for (const n of steps) {
      offset = await write(store, id, offset, body(data.subarray(offset, offset + n)), data.length - offset, 'limiter');
      expect((await store.getUpload(id)).offset).toBe(offset);
    }
    expect(offset).toBe(data.length);
    expect(await objectSha(id)).toBe(sha(data));
  });

  test('one big write uploads parts concurrently and stays byte-identical', async () => {
    const store = newStore();
    const data = crypto.randomBytes(31 * MiB);
    const id = await create(store, data.length);
    let started = 0;
    const client = (store as unknown as { client: S3 }).client;
    let inFlight = 0;
    let maxInFlight = 0;
    // Part 1 is answered only once part 2 has started (or after 10 s): whether part 2 streams while
    // part 1 is still in flight is then up to the store, not to how fast this machine is right now.
    let secondStarted = () => {};
    const second = new Promise<void>((resolve) => (secondStarted = resolve));
    client.middlewareStack.add(
      (next, ctx) => async (args) => {
        if (ctx.commandName !== 'UploadPartCommand') return next(args);
        const n = ++started;
        if (n === 2) secondStarted();
        maxInFlight = Math.max(maxInFlight, ++inFlight);
        try {
          const out = await next(args);
          if (n === 1) await Promise.race([second, new Promise((r) => setTimeout(r, 10_000))]);
          return out;
        } finally {
          inFlight--;
        }
      },
      { step: 'initialize', name: 'count' },
    );
    expect(await write(store, id, 0, body(data), data.length)).toBe(data.length);
    expect(started).toBe(6); // floor(31/5) parts, the last one 6 MiB
    expect(maxInFlight).toBeGreaterThanOrEqual(2); // part i+1 streams while part i completes
    expect(await objectSha(id)).toBe(sha(data));
  });

  test('a body that ends early is saved exactly (part + .part), and the upload resumes byte-identical', async () => {
    const store = newStore();
    const data = crypto.randomBytes(20 * MiB);
    const id = await create(store, data.length);
    // Declared 16 MiB (3 parts planned), the client goes away after 7.25 MiB: part 1 (5 MiB)
    // was streamed; part 2 is cut at 2.25 MiB -> stored as .part.
    const cut = 7 * MiB + 256 * 1024;
    const calls = countCalls(store);
    expect(await write(store, id, 0, body(data.subarray(0, 16 * MiB), { cutAt: cut }), 16 * MiB)).toBe(cut);
    // part 1 streamed; part 2's streamed UploadPart aborted, its 2.25 MiB put as .part from the spool
    expect(calls).toEqual({ 'UploadPart ok': 1, 'UploadPart AbortError': 1, 'PutObject ok': 1 });
    expect((await store.getUpload(id)).offset).toBe(cut);
    expect(await tailSize(id)).toBe(cut - PART);
    // Next PATCH declares 4.5 MiB: one piece of .part (2.25 MiB) + 4.5 MiB. Cut after 3 MiB:
    // 5.25 MiB >= 5 MiB is stored as part 2 (the .part is consumed).
    const cut2 = cut + 3 * MiB;
    expect(await write(store, id, cut, body(data.subarray(cut, cut + 4.5 * MiB), { cutAt: 3 * MiB }), 4.5 * MiB)).toBe(cut2);
    expect((await store.getUpload(id)).offset).toBe(cut2);
    expect(await tailSize(id)).toBeUndefined();
    expect(await write(store, id, cut2, body(data.subarray(cut2)), data.length - cut2)).toBe(data.length);
    expect(await objectSha(id)).toBe(sha(data));
  });

  test('a body that ends early inside a big piece keeps it as a part (>= 5 MiB)', async () => {
    const store = newStore();
    const data = crypto.randomBytes(14 * MiB);
    const id = await create(store, data.length);
    // one planned 14 MiB part... (floor(14/5)=2 parts: 5 + 9); cut in the 9 MiB piece at 12 MiB
    const cut = 12 * MiB;
    expect(await write(store, id, 0, body(data, { cutAt: cut }), data.length)).toBe(cut);
    expect(await tailSize(id)).toBeUndefined();
    expect(await write(store, id, cut, body(data.subarray(cut)), data.length - cut)).toBe(data.length);
    expect(await objectSha(id)).toBe(sha(data));
  });

  test('a body that errors keeps what arrived, rejects, and the upload resumes', async () => {
    const store = newStore();
    const data = crypto.randomBytes(12 * MiB);
    const id = await create(store, data.length);
    const cut = 6 * MiB + 100;
    await expect(write(store, id, 0, body(data, { errorAt: cut }), data.length)).rejects.toThrow('client went away');
    expect((await store.getUpload(id)).offset).toBe(cut);
    expect(await write(store, id, cut, body(data.subarray(cut)), data.length - cut)).toBe(data.length);
    expect(await objectSha(id)).toBe(sha(data));
  });

  test('small writes below 5 MiB accumulate in .part until a part is possible', async () => {
    const store = newStore();
    const data = crypto.randomBytes(9 * MiB);
    const id = await create(store, data.length);
    const steps = [2 * MiB, 2 * MiB, 2 * MiB, 2 * MiB, 1 * MiB];
    const tails = [2 * MiB, 4 * MiB, undefined, 2 * MiB, undefined];
    let offset = 0;
    for (const [i, n] of steps.entries()) {
      offset = await write(store, id, offset, body(data.subarray(offset, offset + n)), n);
      expect(offset).toBe(steps.slice(0, i + 1).reduce((a, b) => a + b, 0));
      expect((await store.getUpload(id)).offset).toBe(offset);
      if (i < steps.length - 1) expect(await tailSize(id)).toBe(tails[i]);
    }
    expect(await objectSha(id)).toBe(sha(data));
    expect(await exists(`${id}.part`)).toBe(false);
  });

  test('state rebuilt from S3 after the Redis state is lost gives the same offset', async () => {
    const store = newStore();
    const data = crypto.randomBytes(14 * MiB);
    const id = await create(store, data.length);
    const at = 8 * MiB; // part 1 (5 MiB) + .part (3 MiB)
    await write(store, id, 0, body(data.subarray(0, 5 * MiB)), 5 * MiB);
    await write(store, id, 5 * MiB, body(data.subarray(5 * MiB, at)), 3 * MiB);
    expect(await tailSize(id)).toBe(3 * MiB);
    await redis.del(...(await stateKeys(id)));

    const other = newStore(); // another process, nothing cached
    expect((await other.getUpload(id)).offset).toBe(at);
    expect(await stateKeys(id)).toHaveLength(2);
    // A stale .part (already copied into part 2, its delete lost) must not count on rebuild.
    const at2 = await write(other, id, at, body(data.subarray(at, 11 * MiB)), 3 * MiB); // .part 3+3 -> part 2
    expect(at2).toBe(11 * MiB);
    await s3.putObject({ Bucket: bucket, Key: `${id}.part`, Body: Buffer.alloc(1234), Metadata: { 'tusk-next-part': '2' } });
    await redis.del(...(await stateKeys(id)));
    expect((await newStore().getUpload(id)).offset).toBe(at2);

    expect(await write(other, id, at2, body(data.subarray(at2)), data.length - at2)).toBe(data.length);
    expect(await objectSha(id)).toBe(sha(data));
    // finished upload after a "restart": Redis empty, multipart gone, .info still there
    await redis.del(...(await stateKeys(id)));
    const done = await newStore().getUpload(id);
    expect(done.offset).toBe(data.length);
    expect(done.size).toBe(data.length);
  });

  test('remove() deletes the objects, the multipart upload and the state', async () => {
    // (That the upload is gone for getUpload() and remove() is in store-conformance.test.ts.)
    const store = newStore();
    const data = crypto.randomBytes(8 * MiB);
    const id = await create(store, 20 * MiB);
    await write(store, id, 0, body(data), data.length, 'chunked'); // part 1 + .part
    expect(await tailSize(id)).toBe(3 * MiB);
    await store.remove(id);
    expect(await exists(`${id}.info`)).toBe(false);
    expect(await exists(`${id}.part`)).toBe(false);
    const mp = await s3.listMultipartUploads({ Bucket: bucket, Prefix: id });
    expect(mp.Uploads ?? []).toHaveLength(0);
    expect(await stateKeys(id)).toEqual([]);

    // a finished upload too (final object included)
    const id2 = await create(store, 1000);
    await write(store, id2, 0, body(data.subarray(0, 1000)), 1000);
    expect(await exists(id2)).toBe(true);
    await store.remove(id2);
    expect(await exists(id2)).toBe(false);
    expect(await exists(`${id2}.info`)).toBe(false);
  });

  test('deferred length: size declared by the last PATCH, whose tail becomes the last part', async () => {
    const store = newStore();
    const data = crypto.randomBytes(9 * MiB + 7);
    const id = await create(store, undefined);
    expect((await store.getUpload(id)).size).toBeUndefined();
    let offset = await write(store, id, 0, body(data.subarray(0, 6 * MiB)), 6 * MiB); // part 1
    offset = await write(store, id, offset, body(data.subarray(offset)), data.length - offset); // .part (size unknown)
    expect(offset).toBe(data.length);
    expect(await tailSize(id)).toBe(data.length - 6 * MiB);
    // last PATCH: Upload-Length declared, empty body
    await store.declareUploadLength(id, data.length);
    expect(await write(store, id, offset, body(Buffer.alloc(0)), 0)).toBe(data.length);
    const up = await store.getUpload(id);
    expect([up.offset, up.size]).toEqual([data.length, data.length]);
    expect(await objectSha(id)).toBe(sha(data));

    // chunked body, length declared together with the last bytes
    const id2 = await create(store, undefined);
    const o = await write(store, id2, 0, body(data.subarray(0, 4 * MiB)), 0, 'chunked');
    expect(o).toBe(4 * MiB);
    await store.declareUploadLength(id2, data.length);
    expect(await write(store, id2, o, body(data.subarray(o)), 0, 'chunked')).toBe(data.length);
    expect(await objectSha(id2)).toBe(sha(data));
  });

  test('an S3 outage makes write() reject, keeps the state consistent, and a retry works', async () => {
    const store = newStore();
    const data = crypto.randomBytes(14 * MiB);
    const id = await create(store, data.length);
    // Another process whose S3 is unreachable (same Redis).
    const down = newStore({
      s3ClientConfig: { ...s3Config, endpoint: 'http://127.0.0.1:9', maxAttempts: 1, bucket },
      spoolRetries: 2,
    });
    let at = await write(store, id, 0, body(data.subarray(0, 5 * MiB)), 5 * MiB); // part 1
    // streamed part fails, retries from spool fail -> reject, nothing recorded
    await expect(write(down, id, at, body(data.subarray(at)), data.length - at)).rejects.toThrow();
    await expect(write(down, id, at, body(data.subarray(at)), 0, 'chunked')).rejects.toThrow();
    expect((await store.getUpload(id)).offset).toBe(at);
    at = await write(store, id, at, body(data.subarray(at, at + 2 * MiB)), 2 * MiB); // .part
    // reading the .part fails
    await expect(write(down, id, at, body(data.subarray(at)), data.length - at)).rejects.toThrow();
    expect((await store.getUpload(id)).offset).toBe(at);
    expect(await tailSize(id)).toBe(2 * MiB);
    expect(await write(store, id, at, body(data.subarray(at)), data.length - at)).toBe(data.length);
    expect(await objectSha(id)).toBe(sha(data));
  });

  test('spool files left by a dead process are swept when a store starts', async () => {
    const dead = path.join(spoolDir, 'tusk-s3-999999999-0123456789abcdef'); // no such pid
    const live = path.join(spoolDir, `tusk-s3-${process.pid}-0123456789abcdef`);
    const other = path.join(spoolDir, 'unrelated.bin');
    for (const f of [dead, live, other]) fs.writeFileSync(f, 'x');
    newStore();
    for (let i = 0; i < 100 && fs.existsSync(dead); i++) await new Promise((r) => setTimeout(r, 10));
    expect([fs.existsSync(dead), fs.existsSync(live), fs.existsSync(other)]).toEqual([false, true, true]);
    fs.rmSync(live);
    fs.rmSync(other);
  });

  test('Tus-Completed tags: false while in progress, true once completed', async () => {
    const store = newStore();
    const data = crypto.randomBytes(6 * MiB);
    const id = await create(store, data.length);
    await write(store, id, 0, body(data.subarray(0, MiB)), MiB);
    const tag = async (key: string) => (await s3.getObjectTagging({ Bucket: bucket, Key: key })).TagSet?.find((t) => t.Key === 'Tus-Completed')?.Value;
    expect(await tag(`${id}.info`)).toBe('false');
    expect(await tag(`${id}.part`)).toBe('false');
    await write(store, id, MiB, body(data.subarray(MiB)), data.length - MiB);
    expect(await tag(`${id}.info`)).toBe('true');
  });
});

describe('TuskS3Store with a write buffer (UPLOAD_ACK=disk)', () => {
  let bufferDir: string;
  const subscribers: Redis[] = [];
  const buffered: TuskS3Store[] = [];
  /** Upload ids of the real form (the buffer takes no other), removed after each test. */
  const ids: string[] = [];

  async function create(store: TuskS3Store, size: number | undefined): Promise<string> {
    const id = newUploadId();
    ids.push(id);
    await store.create(new Upload({ id, size, offset: 0, metadata: { filename: 'x.bin' } }));
    return id;
  }

  beforeEach(() => {
    bufferDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tusk-buffer-test-'));
  });

  afterEach(async () => {
    for (const st of buffered.splice(0)) await st.stopWriteBuffer(Date.now() + 5000);
    for (const sub of subscribers.splice(0)) await sub.quit();
    for (const id of ids.splice(0)) {
      await s3.deleteObjects({ Bucket: bucket, Delete: { Objects: [{ Key: id }, { Key: `${id}.info` }, { Key: `${id}.part` }] } });
      const mp = await s3.listMultipartUploads({ Bucket: bucket, Prefix: id });
      for (const u of mp.Uploads ?? []) await s3.abortMultipartUpload({ Bucket: bucket, Key: u.Key!, UploadId: u.UploadId! });
    }
    // Nothing but the (released) instance directories is left.
    const left = fs.readdirSync(bufferDir, { recursive: true }).map(String);
    fs.rmSync(bufferDir, { recursive: true, force: true });
    expect(left.filter((f) => f.includes('/'))).toEqual([]);
  });

  /** `forward`: takes bodies other instances forward (UPLOAD_BUFFER_FORWARD), on a free loopback port. */
  async function bufferedStore(buffer: { maxBytes?: number; idleFlushMs?: number; forward?: boolean } = {}, over: Partial<TuskS3StoreOptions> = {}): Promise<TuskS3Store> {
    const store = newStore(over);
    const sub = new Redis(env('TEST_REDIS_URL'));
    subscribers.push(sub);
    const peer = buffer.forward ? { host: '127.0.0.1', port: 0 } : undefined;
    await store.startWriteBuffer({ directory: bufferDir, maxBytes: buffer.maxBytes ?? 64 * MiB, idleFlushMs: buffer.idleFlushMs ?? 60_000, peer }, sub);
    buffered.push(store);
    return store;
  }

  const state = async (id: string) => redis.hgetall(`${prefix}upload:{${id}}`);

  async function until(what: string, check: () => Promise<boolean>, ms = 10_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** The files of an upload in the write buffer (any instance directory). */
  const bufferFiles = (id: string) =>
    fs
      .readdirSync(bufferDir, { recursive: true })
      .map(String)
      .filter((f) => f.includes(id) && /\/\d+$/.test(f));

  test('1 MiB writes are acknowledged from disk and reach S3 as whole parts: no .part rewritten, nothing read back', async () => {
    const store = await bufferedStore();
    const data = crypto.randomBytes(12 * MiB + 1000);
    const id = await create(store, data.length);
    const calls = countCalls(store);
    let offset = 0;
    for (; offset + MiB < data.length; ) {
      offset = await write(store, id, offset, body(data.subarray(offset, offset + MiB)), MiB);
      expect((await store.getUpload(id)).offset).toBe(offset);
    }
    // 12 MiB acknowledged: the two whole parts go up in the background, 2 MiB wait on disk.
    await until('two parts are in S3', async () => (await state(id)).nparts === '2');
    const st = await state(id);
    expect({ bytes: st.bytes, tail: st.tail, local: st.local }).toEqual({ bytes: String(2 * PART), tail: '0', local: String(2 * MiB) });
    expect(st.holder).toMatch(/^[0-9a-f]{16}$/);
    expect(bufferFiles(id).length).toBeGreaterThan(0);
    expect(calls['GetObject ok'] ?? 0).toBe(0);
    expect(calls['PutObject ok'] ?? 0).toBe(0);
    expect(calls['UploadPart ok']).toBe(2);

    // The last write completes the upload before it is acknowledged.
    expect(await write(store, id, offset, body(data.subarray(offset)), data.length - offset)).toBe(data.length);
    expect(await objectSha(id)).toBe(sha(data));
    console.log('CALLS', JSON.stringify(calls));
    expect(calls['UploadPart ok']).toBe(3);
    expect(calls['GetObject ok'] ?? 0).toBe(0);
    expect(await exists(`${id}.part`)).toBe(false);
    expect((await state(id)).done).toBe('1');
    expect(bufferFiles(id)).toEqual([]);
  });

  test('a large write after held bytes is buffered too: parts go up while the body is still arriving; byte-identical', async () => {
    const store = await bufferedStore();
    const data = crypto.randomBytes(23 * MiB + 5);
    const id = await create(store, data.length);
    await write(store, id, 0, body(data.subarray(0, MiB)), MiB);
    expect((await state(id)).local).toBe(String(MiB));
    expect(await write(store, id, MiB, body(data.subarray(MiB)), data.length - MiB)).toBe(data.length);
    expect(await objectSha(id)).toBe(sha(data));
    expect(bufferFiles(id)).toEqual([]);
  });

  /**
   * Holds the answers of UploadPart for `part` (S3 has the part, the store does not know yet)
   * until release(); `failFirst`: its first attempt fails instead, before anything is sent.
   */
  function onPart(store: TuskS3Store, part: number, how: 'hold' | 'failFirst' | 'watch') {
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let start!: () => void;
    /** Resolves when an UploadPart of `part` is sent. */
    const started = new Promise<void>((r) => (start = r));
    let failed = false;
    (store as unknown as { client: S3 }).client.middlewareStack.add(
      (next, ctx) => async (args) => {
        const input = args.input as { PartNumber?: number };
        if (ctx.commandName !== 'UploadPartCommand' || input.PartNumber !== part) return next(args);
        start();
        if (how === 'failFirst' && !failed) {
          failed = true;
          throw Object.assign(new Error('injected: connection reset'), { name: 'InjectedFault' });
        }
        const out = await next(args);
        if (how === 'hold') await released;
        return out;
      },
      { step: 'initialize', name: `onPart${part}` },
    );
    return { release, started };
  }

  test('a write of one whole part uploads it while the body arrives and is acknowledged once on disk, before S3 confirms; each part uploaded once, nothing read back', async () => {
    const store = await bufferedStore();
    const data = crypto.randomBytes(3 * PART + 7);
    const id = await create(store, data.length);
    const calls = countCalls(store);
    const held = onPart(store, 1, 'hold');
    const first = write(store, id, 0, body(data.subarray(0, PART)), PART);
    // Answered while S3's answer for part 1 is still held back: the bytes are on this disk.
    expect(await Promise.race([first, new Promise((r) => setTimeout(() => r('still waiting'), 5_000))])).toBe(PART);
    let st = await state(id);
    expect({ nparts: st.nparts, local: st.local }).toEqual({ nparts: '0', local: String(PART) });
    expect(bufferFiles(id)).toHaveLength(1);
    expect((await store.getUpload(id)).offset).toBe(PART);
    held.release();
    await until('part 1 is committed', async () => (await state(id)).nparts === '1');
    st = await state(id);
    expect({ bytes: st.bytes, local: st.local, holder: st.holder }).toEqual({ bytes: String(PART), local: '0', holder: '' });
    await until('its segment is off the disk', async () => bufferFiles(id).length === 0);

    expect(await write(store, id, PART, body(data.subarray(PART, 2 * PART)), PART)).toBe(2 * PART);
    // The last write (a part and 7 bytes) completes the upload before it is acknowledged.
    expect(await write(store, id, 2 * PART, body(data.subarray(2 * PART)), PART + 7)).toBe(data.length);
    expect(await objectSha(id)).toBe(sha(data));
    expect((await state(id)).done).toBe('1');
    expect(calls['UploadPart ok']).toBe(3); // no part twice, none from a .part
    expect(calls['GetObject ok'] ?? 0).toBe(0);
    expect(bufferFiles(id)).toEqual([]);
  });

  test('a whole-part write whose streamed upload fails is acknowledged anyway and its part uploaded again from the write buffer; byte-identical', async () => {
    const store = await bufferedStore();
    const data = crypto.randomBytes(2 * PART);
    const id = await create(store, data.length);
    const calls = countCalls(store);
    onPart(store, 1, 'failFirst');
    expect(await write(store, id, 0, body(data.subarray(0, PART)), PART)).toBe(PART);
    await until('part 1 is committed', async () => (await state(id)).nparts === '1');
    expect(await write(store, id, PART, body(data.subarray(PART)), PART)).toBe(data.length);
    expect(await objectSha(id)).toBe(sha(data));
    expect(calls['UploadPart InjectedFault']).toBe(1);
    expect(calls['UploadPart ok']).toBe(2);
    expect(bufferFiles(id)).toEqual([]);
  });

  test('an upload whose state vanishes while a whole-part body arrives (deleted, expired): the write fails as not found, its streamed part is dropped, nothing of it stays on disk', async () => {
    const store = await bufferedStore();
    const data = crypto.randomBytes(2 * PART);
    const id = await create(store, data.length);
    const calls = countCalls(store);
    const first = onPart(store, 1, 'watch');
    const split = Readable.from(
      (async function* () {
        yield data.subarray(0, PART / 2);
        await first.started; // the part is streaming: now the state goes
        await redis.del(`${prefix}upload:{${id}}`, `${prefix}upload:{${id}}:parts`);
        yield data.subarray(PART / 2, PART);
      })(),
      { objectMode: false },
    );
    await expect(write(store, id, 0, split, PART)).rejects.toMatchObject({ status_code: 404 });
    expect(await redis.exists(`${prefix}upload:{${id}}`)).toBe(0); // nothing recorded it again
    await until('its segment is off the disk', async () => bufferFiles(id).length === 0);
    // The streamed part was aborted or, if S3 already had it, never committed: no completion.
    expect(calls['CompleteMultipartUpload ok'] ?? 0).toBe(0);
  });

  test('a whole-part write the client cuts off: what arrived is kept on disk (the offset says so), its streamed upload is dropped, and the upload resumes byte-identically', async () => {
    const store = await bufferedStore();
    const data = crypto.randomBytes(2 * PART + 3);
    const id = await create(store, data.length);
    const calls = countCalls(store);
    await expect(write(store, id, 0, body(data.subarray(0, PART), { errorAt: 3 * MiB }), PART)).rejects.toThrow('client went away');
    expect((await store.getUpload(id)).offset).toBe(3 * MiB);
    expect((await state(id)).local).toBe(String(3 * MiB));
    expect(calls['UploadPart ok'] ?? 0).toBe(0);
    expect(await write(store, id, 3 * MiB, body(data.subarray(3 * MiB)), data.length - 3 * MiB)).toBe(data.length);
    expect(await objectSha(id)).toBe(sha(data));
    expect(bufferFiles(id)).toEqual([]);
  });

  test('a write of two parts or more with nothing held goes straight to S3 (acknowledged from storage)', async () => {
    const store = await bufferedStore();
    const data = crypto.randomBytes(3 * PART);
    const id = await create(store, data.length);
    expect(await write(store, id, 0, body(data.subarray(0, 2 * PART)), 2 * PART)).toBe(2 * PART);
    const st = await state(id);
    expect({ local: st.local, nparts: st.nparts }).toEqual({ local: '0', nparts: '2' });
    expect(bufferFiles(id)).toEqual([]);
    expect(await write(store, id, 2 * PART, body(data.subarray(2 * PART)), PART)).toBe(data.length);
    expect(await objectSha(id)).toBe(sha(data));
  });

  test('writes alternating between two instances: each asks the holder to push first; byte-identical, nothing duplicated', async () => {
    const a = await bufferedStore();
    const b = await bufferedStore();
    const data = crypto.randomBytes(17 * MiB + 3);
    const id = await create(a, data.length);
    const chunk = 1536 * 1024 + 7; // tails change hands, parts form across instances
    let offset = 0;
    for (let i = 0; offset < data.length; i++) {
      const n = Math.min(chunk, data.length - offset);
      offset = await write(i % 2 ? b : a, id, offset, body(data.subarray(offset, offset + n)), n);
      expect((await (i % 2 ? a : b).getUpload(id)).offset).toBe(offset);
    }
    expect(await objectSha(id)).toBe(sha(data));
    expect(bufferFiles(id)).toEqual([]);
  });

  describe('bodies forwarded to the holder (UPLOAD_BUFFER_FORWARD)', () => {
    const peerOf = async (instance: string) => JSON.parse((await redis.hget(`${prefix}upload-buffer-peers`, instance))!) as { url: string; token: string };

    test('~1 MiB writes alternating between two instances all land on the holder: no flush, no .part, nothing read back; byte-identical', async () => {
      const metrics = { a: new Metrics({ processMetrics: false }), b: new Metrics({ processMetrics: false }) };
      const a = await bufferedStore({ forward: true }, { metrics: metrics.a });
      const b = await bufferedStore({ forward: true }, { metrics: metrics.b });
      const data = crypto.randomBytes(17 * MiB + 3);
      const id = await create(a, data.length);
      const calls = { a: countCalls(a), b: countCalls(b) };
      // Never ending on a part boundary, so some bytes are always held between writes (an
      // instance holding none, its parts all pushed, gives the upload up: then the next writer
      // holds it, which is right but not what this test is about).
      const chunk = MiB + 7;
      let offset = 0;
      let holder = '';
      for (let i = 0; offset < data.length; i++) {
        const n = Math.min(chunk, data.length - offset);
        offset = await write(i % 2 ? b : a, id, offset, body(data.subarray(offset, offset + n)), n);
        if (offset < data.length) {
          expect((await (i % 2 ? a : b).getUpload(id)).offset).toBe(offset);
          const st = await state(id);
          holder ||= st.holder!;
          expect(st.holder).toBe(holder); // never handed over
        }
      }
      expect(await objectSha(id)).toBe(sha(data));
      // No .part written or read: the one PutObject is the completed upload's .info.
      expect((calls.a['PutObject ok'] ?? 0) + (calls.b['PutObject ok'] ?? 0)).toBe(1);
      expect((calls.a['GetObject ok'] ?? 0) + (calls.b['GetObject ok'] ?? 0)).toBe(0);
      // 17 MiB + 3 in 5 MiB parts: every part uploaded once, by the holder.
      expect((calls.a['UploadPart ok'] ?? 0) + (calls.b['UploadPart ok'] ?? 0)).toBe(4);
      expect(bufferFiles(id)).toEqual([]);
      // What an operator sees: B's 8 bodies (of 17) forwarded; no hand-over (A, the holder,
      // also wrote the last body and completed the upload itself).
      const text = { a: (await metrics.a.render()).body, b: (await metrics.b.render()).body };
      expect(text.b).toMatch(/^tusk_upload_buffer_forwards_total\{outcome="forwarded"\} 8$/m);
      expect(text.a + text.b).not.toMatch(/tusk_upload_buffer_forwards_total\{outcome="(refused|unreachable|failed)"\}/);
      expect(text.a).not.toContain('tusk_upload_buffer_forwards_total{');
      expect(text.a + text.b).not.toContain('tusk_upload_buffer_handovers_total{');
      expect(text.a).toMatch(/^tusk_upload_buffer_disk_bytes 0$/m);
      expect(text.a).toMatch(/^tusk_upload_buffer_uploads 0$/m);
    });

    test('a whole-part body forwarded to the holder streams its part from there: each part uploaded once, nothing read back; byte-identical', async () => {
      const metrics = new Metrics({ processMetrics: false });
      const a = await bufferedStore({ forward: true });
      const b = await bufferedStore({ forward: true }, { metrics });
      const data = crypto.randomBytes(3 * PART + 3);
      const id = await create(a, data.length);
      const calls = { a: countCalls(a), b: countCalls(b) };
      const held = onPart(a, 1, 'hold'); // A keeps holding bytes while B writes
      const second = onPart(a, 2, 'watch');
      expect(await write(a, id, 0, body(data.subarray(0, PART)), PART)).toBe(PART);
      // The body's second half is sent only once A has started uploading its part.
      const half = PART / 2;
      const split = Readable.from(
        (async function* () {
          yield data.subarray(PART, PART + half);
          const late = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the part upload did not start while its body arrived')), 10_000).unref());
          await Promise.race([second.started, late]);
          yield data.subarray(PART + half, 2 * PART);
        })(),
        { objectMode: false },
      );
      expect(await write(b, id, PART, split, PART)).toBe(2 * PART);
      expect((await metrics.render()).body).toMatch(/^tusk_upload_buffer_forwards_total\{outcome="forwarded"\} 1$/m);
      held.release();
      await until('both parts are committed', async () => (await state(id)).nparts === '2');
      expect({ a: calls.a['UploadPart ok'], b: calls.b['UploadPart ok'] ?? 0 }).toEqual({ a: 2, b: 0 });
      expect(await write(b, id, 2 * PART, body(data.subarray(2 * PART)), PART + 3)).toBe(data.length);
      expect(await objectSha(id)).toBe(sha(data));
      expect((calls.a['UploadPart ok'] ?? 0) + (calls.b['UploadPart ok'] ?? 0)).toBe(3);
      expect((calls.a['GetObject ok'] ?? 0) + (calls.b['GetObject ok'] ?? 0)).toBe(0);
      expect(bufferFiles(id)).toEqual([]);
    });

    test('a forwarded body the client cuts off: the holder keeps what arrived, the offset says so, and the upload resumes byte-identically', async () => {
      const a = await bufferedStore({ forward: true });
      const b = await bufferedStore({ forward: true });
      const data = crypto.randomBytes(6 * MiB);
      const id = await create(a, data.length);
      await write(a, id, 0, body(data.subarray(0, MiB)), MiB);
      const failed = await write(b, id, MiB, body(data.subarray(MiB, 3 * MiB), { errorAt: MiB + 100_000 }), 2 * MiB).catch((e: unknown) => e);
      expect(failed).toMatchObject({ message: 'client went away' });
      const offset = (await b.getUpload(id)).offset;
      expect(offset).toBeGreaterThan(MiB);
      expect(offset).toBeLessThanOrEqual(2 * MiB + 100_000);
      expect(await write(b, id, offset, body(data.subarray(offset)), data.length - offset)).toBe(data.length);
      expect(await objectSha(id)).toBe(sha(data));
    });

    test('a holder that cannot be reached (its advertised address is dead) is asked to push instead; byte-identical', async () => {
      const metrics = new Metrics({ processMetrics: false });
      const a = await bufferedStore({ forward: true });
      const b = await bufferedStore({ forward: true }, { metrics });
      const data = crypto.randomBytes(4 * MiB);
      const id = await create(a, data.length);
      await write(a, id, 0, body(data.subarray(0, MiB)), MiB);
      const holder = (await state(id)).holder!;
      const closed = await new Promise<number>((resolve) => {
        const srv = net.createServer().listen(0, '127.0.0.1', () => {
          const port = (srv.address() as net.AddressInfo).port;
          srv.close(() => resolve(port));
        });
      });
      await redis.hset(`${prefix}upload-buffer-peers`, holder, JSON.stringify({ ...(await peerOf(holder)), url: `http://127.0.0.1:${closed}` }));
      expect(await write(b, id, MiB, body(data.subarray(MiB, 2 * MiB)), MiB)).toBe(2 * MiB);
      expect((await state(id)).holder).not.toBe(holder); // handed over: B holds the upload now
      const text = (await metrics.render()).body;
      expect(text).toContain('tusk_upload_buffer_forwards_total{outcome="unreachable"} 1');
      expect(text).toContain('tusk_upload_buffer_handovers_total{outcome="pushed"} 1');
      expect(text).toMatch(/^tusk_upload_buffer_disk_bytes [1-9]\d*$/m); // B holds the MiB it wrote
      expect(await write(a, id, 2 * MiB, body(data.subarray(2 * MiB)), 2 * MiB)).toBe(data.length);
      expect(await objectSha(id)).toBe(sha(data));
    });

    test('the peer endpoint answers only the holder\'s token, for the upload\'s own offset; what it refuses changes nothing', async () => {
      const a = await bufferedStore({ forward: true });
      const data = crypto.randomBytes(2 * MiB);
      const id = await create(a, 4 * MiB);
      const other = await create(a, 4 * MiB); // nothing held
      await write(a, id, 0, body(data.subarray(0, MiB)), MiB);
      const peer = await peerOf((await state(id)).holder!);
      const send = (p: string, headers: Record<string, string>, method = 'PUT', payload = Buffer.alloc(0)) =>
        new Promise<{ status: number; body: string }>((resolve, reject) => {
          const { hostname, port } = new URL(peer.url);
          const req = http.request({ hostname, port, path: p, method, headers: { 'tusk-offset': String(MiB), 'tusk-length': '10', authorization: `Bearer ${peer.token}`, ...headers } }, (res) => {
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (c: string) => (text += c));
            res.on('end', () => resolve({ status: res.statusCode!, body: text }));
          });
          req.on('error', reject);
          req.end(payload);
        });
      const expectHeader = { expect: '100-continue' };
      expect(await send(`/${id}`, { ...expectHeader, authorization: '' })).toMatchObject({ status: 401 });
      expect(await send(`/${id}`, { ...expectHeader, authorization: `Bearer ${peer.token.slice(1)}x` })).toMatchObject({ status: 401 });
      expect(await send(`/${id}`, { ...expectHeader, authorization: `bearer ${peer.token}` })).toMatchObject({ status: 401 });
      for (const p of [`/${id}/x`, `/x/${id}`, `//${id}`, `/%2e%2e/${id}`, '/', `/${id.toUpperCase()}`]) expect(await send(p, expectHeader)).toMatchObject({ status: 404 });
      expect(await send(`/${id}`, expectHeader, 'POST')).toMatchObject({ status: 405 });
      expect(await send(`/${id}`, {}, 'PUT', Buffer.alloc(10))).toMatchObject({ status: 400 }); // no 100-continue
      for (const bad of ['-1', '1e3', '', '9'.repeat(16), '0x10', '5 5']) expect(await send(`/${id}`, { ...expectHeader, 'tusk-offset': bad })).toMatchObject({ status: 400 });
      expect(await send(`/${id}`, { ...expectHeader, 'tusk-length': '0' })).toMatchObject({ status: 400 });
      expect(await send(`/${id}`, { ...expectHeader, 'tusk-offset': '0' })).toMatchObject({ status: 409, body: expect.stringContaining('offset_moved') });
      expect(await send(`/${other}`, { ...expectHeader, 'tusk-offset': '0' })).toMatchObject({ status: 409, body: expect.stringContaining('not_held') });
      expect(await send(`/${id}`, { ...expectHeader, 'tusk-length': String(1024 ** 4) })).toMatchObject({ status: 409, body: expect.stringContaining('buffer_full') });
      // None of that changed the upload.
      expect((await state(id)).local).toBe(String(MiB));
      expect(await write(a, id, MiB, body(data.subarray(MiB)), MiB)).toBe(2 * MiB);
      expect((await a.getUpload(id)).offset).toBe(2 * MiB);
    });
  });

  test('a holder that missed the flush message (not subscribed at that moment) still hands over', async () => {
    const a = await bufferedStore();
    const b = await bufferedStore({}, { handOver: { abandonAfterMs: 60_000, handOverTimeoutMs: 5_000 } });
    const data = crypto.randomBytes(5 * MiB);
    const id = await create(a, data.length);
    await write(a, id, 0, body(data.subarray(0, 2 * MiB)), 2 * MiB);
    await subscribers[0]!.unsubscribe();
    expect(await write(b, id, 2 * MiB, body(data.subarray(2 * MiB)), 3 * MiB)).toBe(data.length);
    expect(await objectSha(id)).toBe(sha(data));
  });

  test('a write arriving while the upload\'s bytes are being flushed goes on from the flushed state', async () => {
    const store = await bufferedStore();
    const data = crypto.randomBytes(6 * MiB);
    const id = await create(store, data.length);
    await write(store, id, 0, body(data.subarray(0, 2 * MiB)), 2 * MiB);
    // A flush (idle, shutdown, another instance asking) starts; the next PATCH comes meanwhile.
    const flushing = (store as unknown as { buffer: { flush(id: string): Promise<void> } }).buffer.flush(id);
    expect(await write(store, id, 2 * MiB, body(data.subarray(2 * MiB, 3 * MiB)), MiB)).toBe(3 * MiB);
    await flushing;
    expect(await write(store, id, 3 * MiB, body(data.subarray(3 * MiB)), 3 * MiB)).toBe(data.length);
    expect(await objectSha(id)).toBe(sha(data));
  });

  test('a flush requested while a write is starting waits for that write: nothing acknowledged is lost', async () => {
    const store = await bufferedStore();
    const data = crypto.randomBytes(6 * MiB);
    const id = await create(store, data.length);
    await write(store, id, 0, body(data.subarray(0, MiB)), MiB);
    const buffer = (store as unknown as { buffer: { entries: Map<string, unknown>; flush(id: string): Promise<void>; flushRequested(id: string): void } }).buffer;
    await buffer.flush(id); // the MiB is in S3 (.part), the upload has no entry
    const writing = write(store, id, MiB, body(data.subarray(MiB, 3 * MiB)), 2 * MiB);
    // The request (another instance's, or a late polled one) lands as the write's entry appears.
    await new Promise<void>((resolve) => {
      const look = () => {
        if (!buffer.entries.has(id)) return void setImmediate(look);
        buffer.flushRequested(id);
        resolve();
      };
      look();
    });
    expect(await writing).toBe(3 * MiB);
    await until('the flush pushed the write', async () => (await state(id)).local === '0');
    expect(await tailSize(id)).toBe(3 * MiB);
    expect(await write(store, id, 3 * MiB, body(data.subarray(3 * MiB)), 3 * MiB)).toBe(data.length);
    expect(await objectSha(id)).toBe(sha(data));
  });

  test('after UPLOAD_BUFFER_IDLE_FLUSH without a write the bytes are in S3 (.part) and off the disk', async () => {
    const store = await bufferedStore({ idleFlushMs: 300 });
    const data = crypto.randomBytes(8 * MiB);
    const id = await create(store, data.length);
    await write(store, id, 0, body(data.subarray(0, 2 * MiB)), 2 * MiB);
    expect((await state(id)).local).toBe(String(2 * MiB));
    await until('the bytes are pushed', async () => (await state(id)).local === '0');
    expect(await tailSize(id)).toBe(2 * MiB);
    await until('the buffer files are gone', async () => bufferFiles(id).length === 0);
    // and the upload goes on from the .part (read back once, as without a buffer)
    expect(await write(store, id, 2 * MiB, body(data.subarray(2 * MiB)), 6 * MiB)).toBe(data.length);
    expect(await objectSha(id)).toBe(sha(data));
  });

  test('a body beyond UPLOAD_BUFFER_MAX is acknowledged from S3 instead', async () => {
    const store = await bufferedStore({ maxBytes: 2 * PART });
    const data = crypto.randomBytes(11 * MiB);
    const id = await create(store, 30 * MiB);
    await write(store, id, 0, body(data.subarray(0, MiB)), MiB); // buffered
    expect((await state(id)).local).toBe(String(MiB));
    // 10 MiB more do not fit: the held MiB goes first, then the body straight to S3
    expect(await write(store, id, MiB, body(data.subarray(MiB)), 10 * MiB)).toBe(11 * MiB);
    const st = await state(id);
    expect({ local: st.local, bytes: st.bytes, tail: st.tail }).toEqual({ local: '0', bytes: String(11 * MiB), tail: '0' });
    expect(bufferFiles(id)).toEqual([]);
  });

  test('the holder not running: writes elsewhere answer 503 until it is back; past UPLOAD_BUFFER_ABANDON_AFTER its bytes are given up', async () => {
    const a = await bufferedStore();
    const b = await bufferedStore({}, { handOver: { abandonAfterMs: 60_000, handOverTimeoutMs: 5_000 } });
    const data = crypto.randomBytes(6 * MiB);
    const id = await create(a, data.length);
    await write(a, id, 0, body(data.subarray(0, 2 * MiB)), 2 * MiB);
    const holder = (await state(id)).holder!;
    // A stops answering (its heartbeat ends, as when its process is killed).
    const heartbeat = (a as unknown as { buffer: { heartbeat: NodeJS.Timeout } }).buffer.heartbeat;
    clearInterval(heartbeat);
    await redis.hset(`${prefix}upload-buffers`, holder, Date.now() - 30_000);
    // HEAD shows what was acknowledged; writing must wait for A.
    expect((await b.getUpload(id)).offset).toBe(2 * MiB);
    const refused = await write(b, id, 2 * MiB, body(data.subarray(2 * MiB)), 4 * MiB).catch((err: unknown) => err);
    expect(refused).toMatchObject({ code: 'unavailable', status: 503, headers: { 'Retry-After': expect.any(String) } });
    // A gone for longer than the abandon period: the offset returns to what S3 has (0) and the
    // client re-sends from there.
    await redis.hset(`${prefix}upload-buffers`, holder, Date.now() - 120_000);
    expect((await b.getUpload(id)).offset).toBe(0);
    expect(await write(b, id, 0, body(data), data.length)).toBe(data.length);
    expect(await objectSha(id)).toBe(sha(data));
  });

  test('remove() of an upload whose bytes another instance holds: the holder pushes first, then nothing is left anywhere', async () => {
    const a = await bufferedStore();
    const b = newStore();
    const data = crypto.randomBytes(7 * MiB);
    const id = await create(a, 20 * MiB);
    await write(a, id, 0, body(data), data.length); // part 1 on its way, 2 MiB held
    await b.remove(id);
    expect(await exists(`${id}.info`)).toBe(false);
    expect(await exists(`${id}.part`)).toBe(false);
    expect((await s3.listMultipartUploads({ Bucket: bucket, Prefix: id })).Uploads ?? []).toHaveLength(0);
    expect(await stateKeys(id)).toEqual([]);
    await until('the buffer files are gone', async () => bufferFiles(id).length === 0);
  });

  test('shutdown pushes what the buffer holds; the instance directory is released', async () => {
    const store = await bufferedStore();
    const data = crypto.randomBytes(3 * MiB);
    const id = await create(store, 10 * MiB);
    await write(store, id, 0, body(data), data.length);
    await store.stopWriteBuffer(Date.now() + 10_000);
    expect((await state(id)).local).toBe('0');
    expect(await tailSize(id)).toBe(3 * MiB);
    expect(bufferFiles(id)).toEqual([]);
    expect(fs.readdirSync(bufferDir, { recursive: true }).map(String).filter((f) => f.endsWith('owner'))).toEqual([]);
  });
});
