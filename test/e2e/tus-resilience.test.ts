// Resilience of real tusk server processes, against both stores (S3 on the test RGW with a fresh
// bucket, and the file store in a temporary DATA_DIR): resuming after a client abort and a
// kill -9, several processes sharing one Redis and one store, concurrent PATCHes, the lock being
// handed over between processes, the idle timeout, graceful shutdown, and a storage outage.
// The shared Redis and RGW are never stopped: an outage is a tusk pointed at a dead port.
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { createTestBucket, freePort, testRedisUrl, tuskEnvForTests, uniqueRedisPrefix } from '../helpers/services.js';
import { startTusk, type TuskProcess } from '../helpers/tusk-process.js';
import {
  controlledPatch,
  createUpload,
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
  storedSha256,
  tusJsUpload,
  within,
  type RawResult,
  type StoreKind,
  type StoreTarget,
} from '../helpers/tus.js';

const MiB = 1024 * 1024;

/** Timings shared by every process of a group (short, so the tests stay short). */
const COMMON_ENV = { LOCK_TTL: '3s', LOCK_ACQUIRE_TIMEOUT: '15s', LOG_LEVEL: 'info' };

interface StoreSetup {
  env: Record<string, string>;
  target: StoreTarget;
  /** UPLOAD_ACK=disk: the processes' shared write-buffer directory. */
  bufferDir?: string;
}

/** The S3 store acknowledging from S3 (the default) or from the instance's disk (UPLOAD_ACK=disk). */
type Setup = StoreKind | 's3, UPLOAD_ACK=disk';

async function storeSetup(kind: Setup, label: string): Promise<StoreSetup> {
  if (kind === 's3') {
    const bucket = await createTestBucket(`resil-${label}`);
    return { env: { ...tuskEnvForTests(bucket), S3_PART_SIZE: '5MiB', ...COMMON_ENV }, target: { kind, bucket } };
  }
  if (kind !== 'file') {
    const bucket = await createTestBucket(`resil-disk-${label}`);
    const bufferDir = await mkdtemp(path.join(os.tmpdir(), 'tusk-resil-buffer-'));
    const env = { ...tuskEnvForTests(bucket), S3_PART_SIZE: '5MiB', UPLOAD_ACK: 'disk', UPLOAD_BUFFER_DIR: bufferDir, ...COMMON_ENV };
    return { env, target: { kind: 's3', bucket }, bufferDir };
  }
  const dataDir = await mkdtemp(path.join(os.tmpdir(), `tusk-resil-${label}-`));
  return {
    env: { STORAGE: 'file', DATA_DIR: dataDir, REDIS_URL: testRedisUrl(), REDIS_PREFIX: uniqueRedisPrefix(), ...COMMON_ENV },
    target: { kind, dataDir },
  };
}

async function removeStore(store: StoreSetup | undefined): Promise<void> {
  if (!store) return;
  if (store.target.kind === 'file') await rm(store.target.dataDir as string, { recursive: true, force: true });
  else await emptyBucket(store.target.bucket as string);
  if (store.bufferDir) await rm(store.bufferDir, { recursive: true, force: true });
}

/** The same upload URL on another tusk process (as a load balancer would route it). */
function on(tusk: TuskProcess, url: string): string {
  const u = new URL(url);
  return `${tusk.url}${u.pathname}`;
}

function describeResult(r: RawResult | Error | 'timeout'): string {
  if (r === 'timeout') return 'no response (timeout)';
  if (r instanceof Error) return `error ${(r as NodeJS.ErrnoException).code ?? ''} ${r.message}`;
  return `${r.status} offset=${String(r.headers['upload-offset'])} ${r.body.trim()}`;
}

/** The last lines a process printed, each cut short (a log line can be huge). */
function lastLines(p: TuskProcess, n = 30): string {
  return p
    .output()
    .split('\n')
    .slice(-n)
    .map((line) => (line.length > 600 ? `${line.slice(0, 600)}… [${line.length} chars]` : line))
    .join('\n');
}

/** Adds the output of the given processes to a failing test's error. */
async function withOutput<T>(procs: () => Array<TuskProcess | undefined>, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof Error) {
      for (const p of procs()) {
        if (p) err.message += `\n--- tusk pid ${p.pid} (last lines, cut at 600 chars) ---\n${lastLines(p)}`;
      }
    }
    throw err;
  }
}

describe.each<Setup>(['s3', 'file', 's3, UPLOAD_ACK=disk'])('resilience, %s store', (kind) => {
  let store: StoreSetup;

  beforeAll(async () => {
    store = await storeSetup(kind, kind === 'file' ? 'file' : 's3');
  });

  afterAll(() => removeStore(store));

  const start = (extra: Record<string, string> = {}) => startTusk({ env: { ...store.env, ...extra }, mode: 'server' });

  test('abort at ~40%, kill -9 the server, resume on a new process: byte-identical', async () => {
    const a = await start();
    let b: TuskProcess | undefined;
    await withOutput(() => [a, b], async () => {
      const data = randomBytes(24 * MiB);
      const first = await tusJsUpload({ endpoint: `${a.url}/files/`, data, abortAt: 0.4 });
      expect(first.aborted).toBe(true);
      expect(first.url).toMatch(/\/files\/[^/]+$/);
      await sleep(1000); // let the server notice the cut connection
      const exit = await a.kill('SIGKILL');
      expect(exit.signal).toBe('SIGKILL');

      b = await start();
      const url = on(b, first.url);
      const head = await headUpload(url);
      expect(head.status).toBe(200);
      expect(head.length).toBe(data.length);
      // what arrived before the abort was kept: the upload resumes, it does not restart
      expect(head.offset).toBeGreaterThan(0);
      expect(head.offset).toBeLessThanOrEqual(first.sentAtAbort as number);

      const second = await tusJsUpload({ uploadUrl: url, data, chunkSize: 8 * MiB });
      expect(second.aborted).toBe(false);
      expect(await offsetOf(url)).toBe(data.length);
      expect(await storedSha256(store.target, new URL(url).pathname.split('/').pop() as string)).toBe(sha256(data));
    });
  }, 90_000);

  test('kill -9 in the middle of a streaming PATCH (nothing saved on purpose): a new process reports a consistent offset and the upload completes byte-identically', async () => {
    const a = await start();
    let b: TuskProcess | undefined;
    await withOutput(() => [a, b], async () => {
      const data = randomBytes(24 * MiB);
      const created = await createUpload(a.url, { length: data.length });
      expect(created.status).toBe(201);
      const patch = controlledPatch(created.url, 0, data.length);
      // 11 MiB + a bit: two whole 5 MiB S3 parts and a tail in flight when the process dies
      for (let offset = 0; offset < 11 * MiB + 4321; offset += 512 * 1024) {
        await patch.write(data.subarray(offset, Math.min(offset + 512 * 1024, 11 * MiB + 4321)));
      }
      await sleep(200);
      const exit = await a.kill('SIGKILL'); // the PATCH still holds its lock: it expires after LOCK_TTL
      expect(exit.signal).toBe('SIGKILL');
      patch.destroy();

      b = await start();
      const url = on(b, created.url);
      const head = await headUpload(url, undefined, 20_000);
      expect(head.status).toBe(200);
      expect(head.length).toBe(data.length);
      expect(head.offset).toBeGreaterThanOrEqual(0);
      expect(head.offset).toBeLessThanOrEqual(patch.written());

      const resumed = await tusJsUpload({ uploadUrl: url, data, chunkSize: 8 * MiB });
      expect(resumed.aborted).toBe(false);
      expect(await offsetOf(url)).toBe(data.length);
      expect(await storedSha256(store.target, created.id)).toBe(sha256(data));
    });
  }, 90_000);

  describe('two server processes on one Redis and one store', () => {
    let a: TuskProcess;
    let b: TuskProcess;

    beforeAll(async () => {
      [a, b] = await Promise.all([start(), start()]);
    });

    afterAll(async () => {
      await Promise.all([a?.kill('SIGKILL'), b?.kill('SIGKILL')]);
    });

    test('PATCHes alternating between the processes give a byte-identical object and one job', async () => {
      await withOutput(() => [a, b], async () => {
        const chunk = 3 * MiB + 11; // not a multiple of the S3 part size: incomplete parts change hands
        const data = randomBytes(7 * chunk + 1000);
        const created = await createUpload(a.url, { length: data.length, metadata: { filename: 'ping-pong.bin' } });
        expect(created.status).toBe(201);
        let offset = 0;
        for (let i = 0; offset < data.length; i++) {
          const server = i % 2 === 0 ? a : b;
          const piece = data.subarray(offset, Math.min(data.length, offset + chunk));
          const res = await patchUpload(on(server, created.url), offset, piece);
          expect({ i, status: res.status, body: res.body }).toEqual({ i, status: 204, body: '' });
          expect(Number(res.headers.get('upload-offset'))).toBe(offset + piece.length);
          offset += piece.length;
          // both processes see the same offset
          expect(await offsetOf(on(i % 2 === 0 ? b : a, created.url))).toBe(offset);
        }
        expect(await storedSha256(store.target, created.id)).toBe(sha256(data));
        const jobs = (await processUploadJobs(testRedisUrl(), store.env.REDIS_PREFIX as string)).filter((j) => j.id === created.id);
        expect(jobs).toHaveLength(1);
      });
    }, 60_000);

    test.each([
      ['both on one process', false],
      ['one on each process', true],
    ])('two concurrent PATCHes at the same offset (%s): exactly one advances, no corruption', async (_label, split) => {
      await withOutput(() => [a, b], async () => {
        const data = randomBytes(9 * MiB);
        const startAt = 1 * MiB;
        const created = await createUpload(a.url, { length: data.length, body: data.subarray(0, startAt) });
        expect(created.status).toBe(201);
        const body = data.subarray(startAt);
        const p1 = controlledPatch(on(a, created.url), startAt, body.length);
        const p2 = controlledPatch(on(split ? b : a, created.url), startAt, body.length);
        // Both send their whole body at once; the server decides who writes.
        await Promise.allSettled([p1.write(body), p2.write(body)]);
        p1.end();
        p2.end();
        const results = await Promise.all([within(p1.result, 20_000), within(p2.result, 20_000)]);
        const summary = results.map(describeResult);

        const advanced = results.filter((r): r is RawResult => typeof r === 'object' && !(r instanceof Error) && r.status === 204);
        expect({ summary, advanced: advanced.length }).toEqual({ summary, advanced: 1 });
        const winner = advanced[0] as RawResult;
        const winnerOffset = Number(winner.headers['upload-offset']);
        expect(winnerOffset).toBeGreaterThan(startAt);
        for (const r of results) {
          if (r === winner) continue;
          expect(r).not.toBe('timeout');
          // the loser: 409 (offset moved), 423 (locked), 400 or a cut connection (aborted)
          if (!(r instanceof Error)) expect({ summary, status: [409, 423, 400].includes((r as RawResult).status) }).toEqual({ summary, status: true });
        }
        expect(await offsetOf(on(b, created.url))).toBe(winnerOffset);
        await patchRest(on(b, created.url), data, winnerOffset);
        expect(await offsetOf(on(a, created.url))).toBe(data.length);
        expect(await storedSha256(store.target, created.id)).toBe(sha256(data));
      });
    }, 60_000);

    test('DELETE on B while A is still receiving a PATCH: 204 within seconds, then nothing is left', async () => {
      await withOutput(() => [a, b], async () => {
        const data = randomBytes(12 * MiB);
        const created = await createUpload(a.url, { length: data.length, body: data.subarray(0, 1 * MiB) });
        expect(created.status).toBe(201);
        const streaming = controlledPatch(on(a, created.url), 1 * MiB, data.length - 1 * MiB);
        await streaming.write(data.subarray(1 * MiB, 7 * MiB + 99)); // a whole S3 part and a bit
        await sleep(500);

        const t0 = Date.now();
        const del = await deleteUpload(on(b, created.url));
        expect(del.status).toBe(204);
        expect(Date.now() - t0).toBeLessThan(10_000);
        expect(await within(streaming.result, 5_000)).not.toBe('timeout');
        streaming.destroy();
        await sleep(500); // anything A might still write after its PATCH ended would show up below

        expect([404, 410]).toContain((await headUpload(on(a, created.url))).status);
        expect([404, 410]).toContain((await headUpload(on(b, created.url))).status);
        if (store.target.kind === 's3') {
          expect(await s3Leftovers(store.target.bucket as string, created.id)).toEqual({ keys: [], multipart: [] });
        } else {
          const left = (await readdir(path.join(store.target.dataDir as string, 'uploads'))).filter((f) => f.startsWith(created.id));
          expect(left).toEqual([]);
        }
      });
    }, 60_000);

    test('a stalled PATCH on A gives up its lock when B asks; B sees the bytes A received and completes', async () => {
      await withOutput(() => [a, b], async () => {
        const data = randomBytes(12 * MiB);
        const created = await createUpload(a.url, { length: data.length });
        expect(created.status).toBe(201);
        const received = 3 * MiB + 333; // less than an S3 part
        const stalled = controlledPatch(on(a, created.url), 0, data.length);
        await stalled.write(data.subarray(0, received));
        await sleep(700); // A has read what we sent; the body then stalls

        const t0 = Date.now();
        const head = await headUpload(on(b, created.url), undefined, 20_000);
        const waited = Date.now() - t0;
        expect({ status: head.status, body: head.body }).toEqual({ status: 200, body: '' });
        expect(waited).toBeLessThan(10_000);
        expect(head.offset).toBe(received);

        // A stopped the stalled PATCH (answered or closed it).
        const aResult = await within(stalled.result, 5_000);
        expect(aResult).not.toBe('timeout');
        stalled.destroy();

        await patchRest(on(b, created.url), data, received);
        expect(await offsetOf(on(a, created.url))).toBe(data.length);
        expect(await storedSha256(store.target, created.id)).toBe(sha256(data));
      });
    }, 60_000);
  });

  test.each([
    ['with Content-Length', false],
    ['chunked', true],
  ])('idle timeout (IDLE_TIMEOUT=2s): a stalled PATCH (%s) is closed, its bytes are saved, the lock is free', async (_label, chunked) => {
    const tusk = await start({ IDLE_TIMEOUT: '2s' });
    await withOutput(() => [tusk], async () => {
      const data = randomBytes(4 * MiB);
      const created = await createUpload(tusk.url, { length: data.length });
      expect(created.status).toBe(201);
      const sent = 1 * MiB + 17;
      const stalled = controlledPatch(created.url, 0, chunked ? null : data.length);
      const t0 = Date.now();
      await stalled.write(data.subarray(0, sent));
      const result = await within(stalled.result, 10_000);
      const closedAfter = Date.now() - t0;
      expect(result).not.toBe('timeout'); // the server closed it
      expect(closedAfter).toBeGreaterThanOrEqual(1500);
      stalled.destroy();

      // HEAD takes the lock too: it is free at once (had the PATCH kept it, the release
      // request alone would cost lockDrainTimeout = 3 s)
      const t1 = Date.now();
      const head = await headUpload(created.url);
      const took = Date.now() - t1;
      expect({ status: head.status, offset: head.offset }).toEqual({ status: 200, offset: sent });
      expect(took).toBeLessThan(2500);

      const res = await patchUpload(created.url, sent, data.subarray(sent));
      expect(res.status).toBe(204);
      expect(res.headers.get('upload-offset')).toBe(String(data.length));
      expect(await storedSha256(store.target, created.id)).toBe(sha256(data));
    });
    await tusk.kill('SIGKILL');
  }, 60_000);

  test('graceful shutdown: SIGTERM during a streaming PATCH exits 0 in time, saves what arrived, a new process resumes', async () => {
    const SHUTDOWN_SECONDS = 6;
    const a = await start({ SHUTDOWN_TIMEOUT: `${SHUTDOWN_SECONDS}s` });
    let b: TuskProcess | undefined;
    await withOutput(() => [a, b], async () => {
      const data = randomBytes(40 * MiB);
      const created = await createUpload(a.url, { length: data.length });
      expect(created.status).toBe(201);
      const patch = controlledPatch(created.url, 0, data.length);
      let streaming = true;
      const streamer = (async () => {
        // ~2.5 MiB/s: slow enough never to finish before the shutdown cuts it
        for (let offset = 0; streaming && offset < data.length; offset += 256 * 1024) {
          try {
            await patch.write(data.subarray(offset, offset + 256 * 1024));
          } catch {
            return;
          }
          await sleep(100);
        }
      })();
      await sleep(1500);
      const t0 = Date.now();
      const sentAtTerm = patch.written();
      expect(sentAtTerm).toBeGreaterThan(0);
      await a.kill('SIGTERM').then((exit) => {
        const took = Date.now() - t0;
        expect({ code: exit.code, signal: exit.signal }).toEqual({ code: 0, signal: null });
        expect(took).toBeLessThan((SHUTDOWN_SECONDS + 3) * 1000);
      });
      streaming = false;
      await streamer;
      patch.destroy();
      const sent = patch.written();

      b = await start();
      const url = on(b, created.url);
      const offset = await offsetOf(url);
      expect(offset).toBeGreaterThan(0);
      expect(offset).toBeLessThanOrEqual(sent);
      await patchRest(url, data, offset, 8 * MiB);
      expect(await offsetOf(url)).toBe(data.length);
      expect(await storedSha256(store.target, created.id)).toBe(sha256(data));
    });
    await b?.kill('SIGKILL');
  }, 60_000);
});

describe('UPLOAD_ACK=disk: a 204 means fsynced on the instance\'s disk', () => {
  let store: StoreSetup;

  beforeAll(async () => {
    store = await storeSetup('s3, UPLOAD_ACK=disk', 'ack');
  });

  afterAll(() => removeStore(store));

  /** `count` PATCHes of `chunk` bytes from offset 0, each answered 204 with its new offset. */
  async function patchChunks(url: string, data: Buffer, chunk: number, count: number): Promise<number> {
    let offset = 0;
    for (let i = 0; i < count; i++) {
      const res = await patchUpload(url, offset, data.subarray(offset, offset + chunk));
      expect(res.status).toBe(204);
      offset += chunk;
      expect(res.headers.get('upload-offset')).toBe(String(offset));
    }
    return offset;
  }

  /**
   * On the process started after a kill -9: HEAD shows every acknowledged byte (`offset`), the rest
   * is sent in `chunk`s, the object is byte-identical and nothing of the upload is left on disk.
   */
  async function resumesAfterCrash(b: TuskProcess, created: { url: string; id: string }, data: Buffer, offset: number, chunk: number): Promise<void> {
    const url = on(b, created.url);
    expect((await headUpload(url, undefined, 20_000)).offset).toBe(offset);
    await patchRest(url, data, offset, chunk);
    expect(await offsetOf(url)).toBe(data.length);
    expect(await storedSha256(store.target, created.id)).toBe(sha256(data));
    const leftovers = (await readdir(store.bufferDir as string, { recursive: true })).filter((f) => f.includes(created.id));
    expect(leftovers).toEqual([]);
  }

  test('kill -9 right after 204s of 1 MiB chunks: the next process on the buffer directory shows every acknowledged byte, pushes them, and the upload completes byte-identically', async () => {
    const a = await startTusk({ env: store.env, mode: 'server' });
    let b: TuskProcess | undefined;
    await withOutput(() => [a, b], async () => {
      const data = randomBytes(13 * MiB + 5);
      const created = await createUpload(a.url, { length: data.length });
      expect(created.status).toBe(201);
      const offset = await patchChunks(created.url, data, MiB, 7);
      // The start-up line says what a 204 means here.
      expect(a.output()).toContain(`PATCHes acknowledged once on this disk (${store.bufferDir as string})`);
      expect(a.output()).toMatch(/takes other instances' PATCHes for uploads held here at http:\/\/127\.0\.0\.1:\d+/);
      // 7 MiB acknowledged, at most one 5 MiB part of it in S3: the rest exists only on A's disk.
      expect((await a.kill('SIGKILL')).signal).toBe('SIGKILL');

      b = await startTusk({ env: store.env, mode: 'server' });
      await resumesAfterCrash(b, created, data, offset, MiB);
    });
    await b?.kill('SIGKILL');
  }, 90_000);

  test('kill -9 right after 204s of whole-part chunks (each part streamed to S3, acknowledged once on disk): the next process shows every acknowledged byte and the upload completes byte-identically', async () => {
    const a = await startTusk({ env: store.env, mode: 'server' });
    let b: TuskProcess | undefined;
    await withOutput(() => [a, b], async () => {
      const part = 5 * MiB; // S3_PART_SIZE of this setup
      const data = randomBytes(4 * part + 9);
      const created = await createUpload(a.url, { length: data.length });
      expect(created.status).toBe(201);
      const offset = await patchChunks(created.url, data, part, 3);
      // At once after the third 204: its part (at least) may not be in S3 yet, only on A's disk.
      expect((await a.kill('SIGKILL')).signal).toBe('SIGKILL');

      b = await startTusk({ env: store.env, mode: 'server' });
      await resumesAfterCrash(b, created, data, offset, part);
    });
    await b?.kill('SIGKILL');
  }, 90_000);

  /** The upload's state in Redis (s3-upload-state.ts): bytes in parts, in `.part`, held on a disk, and by whom. */
  async function uploadState(id: string): Promise<Record<string, string>> {
    const redis = new Redis(testRedisUrl());
    try {
      return await redis.hgetall(`${store.env.REDIS_PREFIX as string}upload:{${id}}`);
    } finally {
      redis.disconnect();
    }
  }

  test('~1 MiB PATCHes alternating between two processes (no affinity): each body goes to the instance holding the upload, nothing is rewritten in S3; byte-identical', async () => {
    const [a, b] = await Promise.all([startTusk({ env: store.env, mode: 'server' }), startTusk({ env: store.env, mode: 'server' })]);
    await withOutput(() => [a, b], async () => {
      const data = randomBytes(12 * MiB + 7);
      const created = await createUpload(a.url, { length: data.length });
      expect(created.status).toBe(201);
      let holder = '';
      // Never ending on a part boundary: some bytes are always held between PATCHes (an instance
      // whose parts are all pushed holds nothing, and the next PATCH's instance takes over).
      const chunk = MiB + 7;
      for (let offset = 0, i = 0; offset < data.length; i++) {
        const piece = data.subarray(offset, Math.min(data.length, offset + chunk));
        const res = await patchUpload(on(i % 2 ? b : a, created.url), offset, piece);
        expect({ i, status: res.status }).toEqual({ i, status: 204 });
        offset += piece.length;
        if (offset === data.length) break;
        const st = await uploadState(created.id);
        holder ||= st.holder as string;
        // Never handed over (that would push the held bytes as a `.part`): the holder stays.
        expect({ i, holder: st.holder, tail: st.tail }).toEqual({ i, holder, tail: '0' });
      }
      expect(await storedSha256(store.target, created.id)).toBe(sha256(data));
    });
    await Promise.all([a.kill('SIGKILL'), b.kill('SIGKILL')]);
  }, 60_000);

  test('the holder killed while another instance streams a body to it: that PATCH fails, nothing acknowledged is lost, and once the holder is back the upload completes byte-identically', async () => {
    let a = await startTusk({ env: store.env, mode: 'server' });
    const b = await startTusk({ env: store.env, mode: 'server' });
    await withOutput(() => [a, b], async () => {
      const data = randomBytes(8 * MiB);
      const created = await createUpload(a.url, { length: data.length });
      expect((await patchUpload(created.url, 0, data.subarray(0, 2 * MiB))).status).toBe(204);
      // B gets the next PATCH and streams it to A; A dies with part of it received.
      const patch = controlledPatch(on(b, created.url), 2 * MiB, 3 * MiB);
      await patch.write(data.subarray(2 * MiB, 3 * MiB));
      await sleep(300);
      expect((await a.kill('SIGKILL')).signal).toBe('SIGKILL');
      const result = await within(patch.result, 20_000);
      // The client learns the PATCH failed (an error answer or a cut connection), never a 204.
      expect(result === 'timeout' || (!(result instanceof Error) && result.status === 204)).toBe(false);
      // A's acknowledged 2 MiB stay on its disk: shown, but not writable until it is back.
      expect(await offsetOf(on(b, created.url))).toBe(2 * MiB);
      expect((await patchUpload(on(b, created.url), 2 * MiB, data.subarray(2 * MiB, 3 * MiB))).status).toBe(503);
      a = await startTusk({ env: store.env, mode: 'server' });
      await patchRest(on(b, created.url), data, 2 * MiB, MiB);
      expect(await offsetOf(on(a, created.url))).toBe(data.length);
      expect(await storedSha256(store.target, created.id)).toBe(sha256(data));
    });
    await Promise.all([a.kill('SIGKILL'), b.kill('SIGKILL')]);
  }, 90_000);
});

describe('storage outage (S3 endpoint on a dead port)', () => {
  let tusk: TuskProcess;
  /** A healthy process on the real S3, sharing Redis (and prefix) and bucket name with `tusk`. */
  let healthy: TuskProcess;
  let bucket: string;

  beforeAll(async () => {
    const deadPort = await freePort();
    bucket = await createTestBucket('resil-outage');
    const env = { ...tuskEnvForTests(bucket), S3_PART_SIZE: '5MiB', ...COMMON_ENV };
    [tusk, healthy] = await Promise.all([
      startTusk({ env: { ...env, S3_ENDPOINT: `http://127.0.0.1:${deadPort}` }, mode: 'server' }),
      startTusk({ env, mode: 'server' }),
    ]);
  });

  afterAll(async () => {
    await Promise.all([tusk?.kill('SIGKILL'), healthy?.kill('SIGKILL')]);
    if (bucket) await emptyBucket(bucket);
  });

  test('POST answers 503 with Retry-After and a short text body; the process keeps running', async () => {
    await withOutput(() => [tusk], async () => {
      const t0 = Date.now();
      const res = await createUpload(tusk.url, { length: 1000, metadata: { filename: 'x.bin' }, timeoutMs: 30_000 });
      expect(Date.now() - t0).toBeLessThan(20_000);
      expect(res.status).toBe(503);
      const retryAfter = res.headers.get('retry-after');
      expect(retryAfter).not.toBeNull();
      expect(Number(retryAfter)).toBeGreaterThan(0);
      expect(res.headers.get('content-type') ?? '').toMatch(/^text\/plain/);
      expect(res.body.length).toBeGreaterThan(0);
      expect(res.body.length).toBeLessThan(200);
      expect(res.body).not.toMatch(/\n\s+at |ECONNREFUSED|Error:/);
      expect(res.headers.get('location')).toBeNull();

      // a HEAD of some upload cannot be answered either: 503 too, not a 404 or 500
      const head = await headUpload(`${tusk.url}/files/${'a'.repeat(32)}`);
      expect(head.status).toBe(503);
      expect(head.headers.get('retry-after')).not.toBeNull();

      const healthz = await fetch(`${tusk.url}/healthz`);
      expect(healthz.status).toBe(200);
      const readyz = await fetch(`${tusk.url}/readyz`);
      const ready = (await readyz.json()) as { failing?: string[] };
      expect(readyz.status).toBe(503);
      expect(ready.failing).toEqual(['storage']);

      // still alive after all that
      expect(await within(tusk.exited, 500)).toBe('timeout');
    });
  }, 60_000);

  // The second case fails today (see the report): with a `.part` tail to prepend, the PATCH answers
  // 400 "Request aborted due to lock acquired" (tus ERRORS.ABORTED) instead of 503, and tus clients
  // do not retry a 400: a short S3 outage fails the upload for good. Nothing is lost in either case.
  test.each([
    ['at a part boundary (no .part tail)', 5 * MiB],
    ['with an incomplete .part tail to prepend', 2 * MiB],
  ])('a PATCH while storage is down answers 503 with Retry-After and changes nothing (%s); the upload completes once storage is back', async (_label, first) => {
    await withOutput(() => [tusk, healthy], async () => {
      const data = randomBytes(9 * MiB);
      const created = await createUpload(healthy.url, { length: data.length, body: data.subarray(0, first) });
      expect(created.status).toBe(201);
      expect(await offsetOf(created.url)).toBe(first);

      const res = await patchUpload(on(tusk, created.url), first, data.subarray(first, 8 * MiB), {}, 30_000);
      expect({ status: res.status, code: res.headers.get('tusk-error-code'), body: res.body }).toEqual({ status: 503, code: 'unavailable', body: expect.stringMatching(/unavailable; retry/) });
      expect(res.headers.get('retry-after')).not.toBeNull();

      // nothing was recorded for bytes the store could not keep, and the lock is free again
      expect(await offsetOf(created.url)).toBe(first);
      await patchRest(created.url, data, first, 5 * MiB);
      expect(await offsetOf(created.url)).toBe(data.length);
      expect(await storedSha256({ kind: 's3', bucket }, created.id)).toBe(sha256(data));
    });
  }, 60_000);

  // Fails today (see the report): the S3 store logs the SDK command input of a failed UploadPart /
  // PutObject including its Body: the request stream, serialized with whatever upload bytes it
  // has buffered at that moment (a JSON array of numbers: lines of hundreds of KB that copy user
  // data into the logs). Whether bytes were buffered varies, so the check is on the Body itself.
  test('a failed S3 write is logged without the request body', async () => {
    const data = randomBytes(6 * MiB);
    const created = await createUpload(healthy.url, { length: data.length });
    expect(created.status).toBe(201);
    const before = tusk.output().length;
    const res = await patchUpload(on(tusk, created.url), 0, data, {}, 30_000);
    expect([503, 400]).toContain(res.status); // the status itself is checked above
    await sleep(500);
    const lines = tusk.output().slice(before).split('\n');
    expect(lines.some((l) => /UploadPart|PutObject/.test(l))).toBe(true); // the failure is logged
    const withBody = lines.filter((l) => /"Body":\{/.test(l));
    const withBytes = lines.filter((l) => /"data":\[\d+,\d+,\d+/.test(l));
    expect({ linesWithBody: withBody.length, linesWithBytes: withBytes.length, longest: Math.max(...lines.map((l) => l.length)) < 16 * 1024 }).toEqual({
      linesWithBody: 0,
      linesWithBytes: 0,
      longest: true,
    });
  }, 60_000);
});
