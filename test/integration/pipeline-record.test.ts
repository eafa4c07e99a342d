// The status record's run bookkeeping against the real test Redis: when a new run may start
// (reprocess, with and without force), and how a step watching its run learns that it was
// superseded, that the upload's record was deleted, or that the run ended.
import { Redis } from 'ioredis';
import { baseFromMetadata, RecordStore, RunStopped, type RunWatch } from '../../lib/record-store.js';
import type { ProcessUploadJob } from '../../lib/queues.js';
import { testRedisUrl, uniqueRedisPrefix } from '../helpers/services.js';

let redis: Redis;
let records: RecordStore;
let n = 0;

beforeAll(() => {
  redis = new Redis(testRedisUrl());
  records = new RecordStore(redis, uniqueRedisPrefix());
});
afterAll(() => redis.disconnect());

const source: ProcessUploadJob = { uploadId: 'x', location: { type: 'file', path: '/nowhere' }, size: 1, metadata: {}, owner: null, finishedAt: new Date().toISOString() };

/** A finished upload whose run 1 is going (status processing). */
async function finishedUpload(): Promise<string> {
  const id = `record-test-${++n}`;
  await records.create({ ...baseFromMetadata(id, 1, {}), source: { ...source, uploadId: id } }, 'uploaded');
  await records.update(id, 1, { status: 'processing' });
  return id;
}

/** The watch's stop reason once it has one, or undefined if it has none after `ms`. */
async function stoppedWithin(watch: RunWatch, ms: number): Promise<RunStopped | undefined> {
  const deadline = Date.now() + ms;
  while (!watch.signal.aborted && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  return watch.signal.aborted ? (watch.signal.reason as RunStopped) : undefined;
}

test('a running run is replaced only with force, and only once it has been going long enough', async () => {
  const id = await finishedUpload();
  expect(await records.newRun(id)).toEqual({ refused: 'in_progress', retryAfterMs: 0 });
  const tooSoon = await records.newRun(id, { force: true, minRunAgeMs: 60_000 });
  expect(tooSoon).toMatchObject({ refused: 'too_soon' });
  expect((tooSoon as { retryAfterMs: number }).retryAfterMs).toBeGreaterThan(50_000);
  expect((tooSoon as { retryAfterMs: number }).retryAfterMs).toBeLessThanOrEqual(60_000);
  expect((await records.get(id))?.run).toBe(1);
  expect(await records.newRun(id, { force: true, minRunAgeMs: 0 })).toEqual({ run: 2 });
  // The new run starts the clock again.
  expect(await records.newRun(id, { force: true, minRunAgeMs: 60_000 })).toMatchObject({ refused: 'too_soon' });
  // A run that ended is replaced without force, at once.
  await records.update(id, 2, { status: 'failed' });
  expect(await records.newRun(id, { minRunAgeMs: 60_000 })).toEqual({ run: 3 });
  expect(await records.newRun('record-test-missing')).toEqual({ refused: 'missing', retryAfterMs: 0 });
  const unfinished = `record-test-${++n}`;
  await records.create(baseFromMetadata(unfinished, 1, {}), 'uploading');
  expect(await records.newRun(unfinished, { force: true })).toEqual({ refused: 'not_finished', retryAfterMs: 0 });
});

test('watchRun: a newer run, a deleted record or the run ending aborts the signal with why; the current run is left alone', async () => {
  const id = await finishedUpload();
  const watch = records.watchRun(id, 1, 100);
  try {
    expect(await stoppedWithin(watch, 400)).toBeUndefined();
    await expect(watch.check()).resolves.toBeUndefined();
    expect(await records.newRun(id, { force: true })).toEqual({ run: 2 });
    const superseded = await stoppedWithin(watch, 5000);
    expect(superseded).toBeInstanceOf(RunStopped);
    expect(superseded?.why).toBe('superseded');
    await expect(watch.check()).rejects.toBe(superseded);
  } finally {
    watch.stop();
  }

  const current = records.watchRun(id, 2, 100);
  const deleted = await finishedUpload();
  const watchDeleted = records.watchRun(deleted, 1, 100);
  try {
    await redis.del(records.key(deleted));
    expect((await stoppedWithin(watchDeleted, 5000))?.why).toBe('deleted');
    await records.update(id, 2, { status: 'failed' });
    expect((await stoppedWithin(current, 5000))?.why).toBe('ended');
  } finally {
    current.stop();
    watchDeleted.stop();
  }
});
