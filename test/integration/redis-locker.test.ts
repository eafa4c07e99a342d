// RedisLocker against a real Redis (TEST_REDIS_URL, started for the run by the test infra).
// Each "process" is a RedisLocker with its own pair of ioredis connections; every test uses its
// own key prefix, so tests never see each other's keys or messages.
import { randomUUID } from 'node:crypto';
import type { Redis, RedisOptions } from 'ioredis';
import { ERRORS } from '@tus/utils';
import { connectRedis } from '../../lib/redis.js';
import { RedisLocker, type RedisLockerOptions } from '../../server/tus/redis-locker.js';

const REDIS_URL = process.env.TEST_REDIS_URL;
if (!REDIS_URL) {
  throw new Error(
    'TEST_REDIS_URL is not set. The jest global setup starts a Redis and sets it; to run this file ' +
      'alone, start redis-server yourself and run e.g. TEST_REDIS_URL=redis://127.0.0.1:16391 npm run test:jest',
  );
}
const redisUrl: string = REDIS_URL;

const TTL = 1000;

interface Proc {
  locker: RedisLocker;
  redis: Redis;
  subscriber: Redis;
}

let admin: Redis;
let prefix: string;
let procs: Proc[] = [];

function startProcess(
  options: Partial<RedisLockerOptions> = {},
  url = redisUrl,
  redisOptions: RedisOptions = {},
): Proc {
  const redis = connectRedis(url, redisOptions);
  const subscriber = connectRedis(url, redisOptions);
  const locker = new RedisLocker({ redis, subscriber, prefix, acquireTimeoutMs: 3000, ttlMs: TTL, ...options });
  const proc = { locker, redis, subscriber };
  procs.push(proc);
  return proc;
}

const never = () => new AbortController().signal;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const key = (id: string) => `${prefix}lock:${id}`;

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(10);
  }
}

beforeAll(() => {
  admin = connectRedis(redisUrl);
});

afterAll(async () => {
  await admin.quit();
});

beforeEach(() => {
  prefix = `tusk-test:${randomUUID()}:`;
});

afterEach(async () => {
  for (const { locker, redis, subscriber } of procs) {
    await locker.close();
    // (disconnect() of an already ended connection leaves a 2 s ioredis timer behind)
    if (redis.status !== 'end') redis.disconnect();
    if (subscriber.status !== 'end') subscriber.disconnect();
  }
  procs = [];
  const keys = await admin.keys(`${prefix}*`);
  if (keys.length > 0) await admin.del(...keys);
});

test('a second process asks the holder to release and gets the lock once it unlocks', async () => {
  const a = startProcess();
  const b = startProcess();
  const lockA = a.locker.newLock('up');
  let releaseCalls = 0;
  let aUnlocked = false;
  await lockA.lock(never(), () => {
    releaseCalls++;
    if (releaseCalls === 1) {
      // Like tus: context.cancel() aborts the request after lockDrainTimeout, then it unlocks.
      setTimeout(() => {
        aUnlocked = true;
        void lockA.unlock();
      }, 150);
    }
  });
  expect(await admin.exists(key('up'))).toBe(1);

  const lockB = b.locker.newLock('up');
  const started = Date.now();
  await lockB.lock(never(), () => {});
  const waited = Date.now() - started;

  expect(releaseCalls).toBeGreaterThanOrEqual(1);
  expect(aUnlocked).toBe(true);
  expect(waited).toBeGreaterThanOrEqual(140);
  expect(waited).toBeLessThan(TTL); // handed over by unlock, not by expiry
  expect(await admin.exists(key('up'))).toBe(1);
  await lockB.unlock();
  expect(await admin.exists(key('up'))).toBe(0);
});

test('an unlock wakes a waiter in another process at once (not only by polling)', async () => {
  const a = startProcess();
  const b = startProcess();
  for (let round = 0; round < 3; round++) {
    const lockA = a.locker.newLock('up');
    await lockA.lock(never(), () => {});
    const lockB = b.locker.newLock('up');
    let acquiredAt = 0;
    const waiting = lockB.lock(never(), () => {}).then(() => (acquiredAt = Date.now()));
    await sleep(400); // the waiter's poll backoff is at its maximum by now
    const unlockedAt = Date.now();
    await lockA.unlock();
    await waiting;
    expect(acquiredAt - unlockedAt).toBeLessThan(60);
    await lockB.unlock();
  }
});

test('acquire times out with ERR_LOCK_TIMEOUT and rate-limits release requests', async () => {
  const a = startProcess();
  const b = startProcess({ acquireTimeoutMs: 700 });
  let releaseCalls = 0;
  const lockA = a.locker.newLock('up');
  await lockA.lock(never(), () => {
    releaseCalls++; // a stubborn holder
  });
  const holderToken = await admin.get(key('up'));

  const started = Date.now();
  await expect(b.locker.newLock('up').lock(never(), () => {})).rejects.toBe(ERRORS.ERR_LOCK_TIMEOUT);
  const waited = Date.now() - started;
  expect(waited).toBeGreaterThanOrEqual(690);
  expect(waited).toBeLessThan(1000);
  // Waiter polled for 700 ms but republished the release request only every 500 ms.
  expect(releaseCalls).toBeGreaterThanOrEqual(1);
  expect(releaseCalls).toBeLessThanOrEqual(2);
  expect(await admin.get(key('up'))).toBe(holderToken);
  await lockA.unlock();
});

test('a crashed holder (connections gone, no unlock) frees the lock after ttl', async () => {
  const a = startProcess();
  const b = startProcess();
  let aReleaseCalls = 0;
  await a.locker.newLock('up').lock(never(), () => {
    aReleaseCalls++;
  });
  a.redis.disconnect();
  a.subscriber.disconnect();
  const crashedAt = Date.now();

  await b.locker.newLock('up').lock(never(), () => {});
  const waited = Date.now() - crashedAt;
  // Renewed at most ttl/3 ago, so the key lived at least ~2/3 ttl more, and at most ttl.
  expect(waited).toBeGreaterThanOrEqual((TTL * 2) / 3 - 50);
  expect(waited).toBeLessThan(TTL + 400);
  // The orphaned holder could not renew for a whole ttl, so it was told to stop.
  await waitFor(() => aReleaseCalls > 0, TTL);
});

test('renewal keeps a long holder\'s lock well past ttl', async () => {
  const a = startProcess();
  const b = startProcess({ acquireTimeoutMs: 300 });
  let aReleaseCalls = 0;
  const lockA = a.locker.newLock('up');
  await lockA.lock(never(), () => {
    aReleaseCalls++;
  });
  const token = await admin.get(key('up'));
  expect(token).not.toBeNull();

  await sleep(TTL * 2.5);
  expect(await admin.get(key('up'))).toBe(token);
  expect(await admin.pttl(key('up'))).toBeGreaterThan(TTL / 2);
  expect(aReleaseCalls).toBe(0); // nobody asked, and the lock was never considered lost

  await expect(b.locker.newLock('up').lock(never(), () => {})).rejects.toBe(ERRORS.ERR_LOCK_TIMEOUT);
  await lockA.unlock();
  expect(await admin.exists(key('up'))).toBe(0);
  await b.locker.newLock('up').lock(never(), () => {});
});

test('a lock acquired after waiting longer than ttl is renewed like any other', async () => {
  const a = startProcess();
  const b = startProcess();
  const lockA = a.locker.newLock('up');
  await lockA.lock(never(), () => {});
  setTimeout(() => void lockA.unlock(), TTL * 1.3); // a slow holder, unlocking eventually

  let bReleaseCalls = 0;
  const lockB = b.locker.newLock('up');
  await lockB.lock(never(), () => {
    bReleaseCalls++;
  });
  const tokenB = await admin.get(key('up'));
  await sleep(TTL * 1.2);
  expect(bReleaseCalls).toBe(0); // not mistaken for lost
  expect(await admin.get(key('up'))).toBe(tokenB);
  await lockB.unlock();
});

test('aborting the signal stops waiting', async () => {
  const a = startProcess();
  const b = startProcess({ acquireTimeoutMs: 5000 });
  const lockA = a.locker.newLock('up');
  await lockA.lock(never(), () => {});

  const controller = new AbortController();
  setTimeout(() => controller.abort(), 200);
  const started = Date.now();
  await expect(b.locker.newLock('up').lock(controller.signal, () => {})).rejects.toBe(ERRORS.ERR_LOCK_TIMEOUT);
  expect(Date.now() - started).toBeLessThan(400);

  const aborted = AbortSignal.abort();
  const startedAborted = Date.now();
  await expect(b.locker.newLock('up').lock(aborted, () => {})).rejects.toBe(ERRORS.ERR_LOCK_TIMEOUT);
  expect(Date.now() - startedAborted).toBeLessThan(100);

  // Nothing left behind: once A unlocks, a new lock in B is immediate.
  await lockA.unlock();
  const startedAfter = Date.now();
  await b.locker.newLock('up').lock(never(), () => {});
  expect(Date.now() - startedAfter).toBeLessThan(100);
});

test('a holder whose lock was lost is told to stop, and its unlock leaves the new holder alone', async () => {
  const a = startProcess();
  const b = startProcess();
  let aReleaseCalls = 0;
  const lockA = a.locker.newLock('up');
  await lockA.lock(never(), () => {
    aReleaseCalls++;
  });
  const tokenA = await admin.get(key('up'));
  // The key vanishes behind A's back (e.g. A stalled longer than ttl and it expired).
  await admin.del(key('up'));

  const lockB = b.locker.newLock('up');
  await lockB.lock(never(), () => {});
  const tokenB = await admin.get(key('up'));
  expect(tokenB).not.toBeNull();
  expect(tokenB).not.toBe(tokenA);

  // A's next renewal (every ttl/3) finds the key is not its own any more (well before the
  // "no renewal for a whole ttl" fallback would).
  await waitFor(() => aReleaseCalls > 0, TTL / 2);
  await expect(lockA.unlock()).resolves.toBeUndefined();
  expect(await admin.get(key('up'))).toBe(tokenB);

  await lockB.unlock();
  expect(await admin.exists(key('up'))).toBe(0);
});

test('unlock twice, or without lock, is harmless', async () => {
  const a = startProcess();
  const b = startProcess();
  const lockA = a.locker.newLock('up');
  await expect(lockA.unlock()).resolves.toBeUndefined();
  await lockA.lock(never(), () => {});
  await lockA.unlock();
  const lockB = b.locker.newLock('up');
  await lockB.lock(never(), () => {});
  const tokenB = await admin.get(key('up'));
  await expect(lockA.unlock()).resolves.toBeUndefined();
  expect(await admin.get(key('up'))).toBe(tokenB);
  await lockB.unlock();
});

test('mutual exclusion under contention across two processes', async () => {
  const processes = [startProcess({ acquireTimeoutMs: 10_000 }), startProcess({ acquireTimeoutMs: 10_000 })];
  const cyclesPerProcess = 20;
  let counter = 0;
  let inside = 0;
  let maxInside = 0;

  const cycle = async (proc: Proc) => {
    const lock = proc.locker.newLock('counter');
    await lock.lock(never(), () => {});
    try {
      inside++;
      maxInside = Math.max(maxInside, inside);
      const read = counter; // non-atomic read-modify-write across an await
      await sleep(Math.random() * 5);
      counter = read + 1;
      inside--;
    } finally {
      await lock.unlock();
    }
  };

  await Promise.all(
    processes.flatMap((proc) => Array.from({ length: cyclesPerProcess }, () => cycle(proc))),
  );
  expect(maxInside).toBe(1);
  expect(counter).toBe(processes.length * cyclesPerProcess);
  expect(await admin.exists(key('counter'))).toBe(0);
});

test('different ids do not block each other', async () => {
  const a = startProcess();
  const b = startProcess({ acquireTimeoutMs: 300 });
  const lockA = a.locker.newLock('one');
  await lockA.lock(never(), () => {});
  const lockB = b.locker.newLock('two');
  await lockB.lock(never(), () => {});
  await lockA.unlock();
  await lockB.unlock();
});

test('close() makes pending lock() calls reject', async () => {
  const a = startProcess();
  const b = startProcess({ acquireTimeoutMs: 5000 });
  const lockA = a.locker.newLock('up');
  await lockA.lock(never(), () => {});
  const pending = b.locker.newLock('up').lock(never(), () => {});
  await sleep(100);
  const closedAt = Date.now();
  void b.locker.close();
  await expect(pending).rejects.toThrow('closed');
  expect(Date.now() - closedAt).toBeLessThan(200);
  await lockA.unlock();
});

test('an unreachable Redis makes lock() reject within acquireTimeoutMs instead of hanging', async () => {
  // Nothing listens on port 1. (disconnectTimeout: ioredis otherwise keeps a 2 s timer after
  // disconnect() of a connection that is reconnecting.)
  const dead = 'redis://127.0.0.1:1';
  // Default options: commands wait in the offline queue, only the timeout ends lock().
  const queued = startProcess({ acquireTimeoutMs: 400 }, dead, { disconnectTimeout: 10 });
  // No retries per request: commands fail fast with a connection error, which lock() surfaces.
  const failing = startProcess({ acquireTimeoutMs: 400 }, dead, { disconnectTimeout: 10, maxRetriesPerRequest: 0 });
  for (const proc of [queued, failing]) {
    proc.redis.on('error', () => {});
    proc.subscriber.on('error', () => {});
  }

  let started = Date.now();
  await expect(queued.locker.newLock('up').lock(never(), () => {})).rejects.toBe(ERRORS.ERR_LOCK_TIMEOUT);
  expect(Date.now() - started).toBeGreaterThanOrEqual(390);
  expect(Date.now() - started).toBeLessThan(800);

  started = Date.now();
  await expect(failing.locker.newLock('up').lock(never(), () => {})).rejects.toThrow(/max retries/);
  expect(Date.now() - started).toBeLessThan(400);
});
