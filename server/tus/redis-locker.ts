// Redis-backed Locker for @tus/server, so that several tusk processes behind a load balancer
// can serve the same uploads without two requests writing one upload at the same time.
//
// Redis names (all under the configured prefix, e.g. 'tusk:'):
//   <prefix>lock:${id}       string key, value = random token of the holding lock, PX ttlMs.
//                             The holder renews the TTL every ttlMs/3 (compare-and-set on the
//                             token), so a crashed holder frees the lock after at most ttlMs.
//   <prefix>lock-release     pub/sub channel, message = upload id: "whoever holds <id>, let go".
//                             Every process calls requestRelease() of its local holder(s) of <id>
//                             (in tus that is context.cancel(): the request is aborted after
//                             lockDrainTimeout, the store keeps what it got, the handler unlocks).
//                             Waiters republish it at most every RELEASE_REQUEST_INTERVAL_MS.
//   <prefix>lock-released    pub/sub channel, message = upload id, published (from the unlock
//                             Lua script) when a holder unlocks, so waiters retry at once. Waiters
//                             also poll with a capped backoff, so a lost message only costs latency.
//
// The `subscriber` connection is put in subscriber mode and subscribes to the two channels once
// per RedisLocker (i.e. once per process); messages are dispatched through in-process maps.
import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { ERRORS, type Lock, type Locker, type RequestRelease } from '@tus/utils';
import { RedisKeys } from '../../lib/redis-keys.js';
import { luaScript } from '../../lib/lua.js';
import type { Metrics } from '../../lib/metrics.js';

export interface RedisLockerOptions {
  /** Connection for commands (SET, EVAL, PUBLISH). */
  redis: Redis;
  /** Separate connection; the locker puts it in subscriber mode. */
  subscriber: Redis;
  /** Prefix for every key and channel name, e.g. 'tusk:'. */
  prefix: string;
  /** Upper bound for lock(): after this long it rejects with ERRORS.ERR_LOCK_TIMEOUT. */
  acquireTimeoutMs: number;
  /** TTL of the lock key; renewed every ttlMs/3 while held. */
  ttlMs: number;
  logger?: Logger;
  /** Lock waits and release requests (tusk_lock_wait_seconds, tusk_lock_release_requests_total). */
  metrics?: Metrics;
}

/** Minimum interval between two release requests published by one waiting lock() call. */
export const RELEASE_REQUEST_INTERVAL_MS = 500;
const MIN_BACKOFF_MS = 20;
const MAX_BACKOFF_MS = 250;

const RENEW_SCRIPT = luaScript('lock-renew');

const UNLOCK_SCRIPT = luaScript('lock-unlock');

export class RedisLocker implements Locker {
  /** @internal */ readonly redis: Redis;
  /** @internal */ readonly ttlMs: number;
  /** @internal */ readonly acquireTimeoutMs: number;
  /** @internal */ readonly log: Logger | undefined;
  /** @internal */ readonly metrics: Metrics | undefined;
  /** @internal */ readonly releaseChannel: string;
  /** @internal */ readonly releasedChannel: string;
  /** @internal Aborted by close(): pending lock() calls stop waiting. */
  readonly closeController = new AbortController();

  readonly #subscriber: Redis;
  private readonly keys: RedisKeys;
  /** id → locks held by this process (normally at most one). */
  readonly #holders = new Map<string, Set<RedisLock>>();
  /** id → wake-up callbacks of lock() calls waiting in this process. */
  readonly #waiters = new Map<string, Set<() => void>>();
  #subscribed: Promise<void> | undefined;

  constructor(options: RedisLockerOptions) {
    if (!(options.ttlMs > 0)) throw new Error('RedisLocker: ttlMs must be > 0');
    if (!(options.acquireTimeoutMs > 0)) throw new Error('RedisLocker: acquireTimeoutMs must be > 0');
    this.redis = options.redis;
    this.#subscriber = options.subscriber;
    this.ttlMs = options.ttlMs;
    this.acquireTimeoutMs = options.acquireTimeoutMs;
    this.log = options.logger?.child({ component: 'redis-locker' });
    this.metrics = options.metrics;
    this.keys = new RedisKeys(options.prefix);
    this.releaseChannel = this.keys.lockReleaseChannel;
    this.releasedChannel = this.keys.lockReleasedChannel;
    this.#subscriber.on('message', this.#onMessage);
    // Every pending lock() listens on it; many concurrent requests are normal, not a leak.
    setMaxListeners(0, this.closeController.signal);
  }

  newLock(id: string): Lock {
    return new RedisLock(id, this);
  }

  /** @internal */
  key(id: string): string {
    return this.keys.lock(id);
  }

  /**
   * Stops renewal timers of locks held by this process (their keys then expire after ttlMs;
   * they are not deleted), makes pending lock() calls reject, and unsubscribes. The Redis
   * connections belong to the caller and stay open.
   */
  async close(): Promise<void> {
    if (this.closeController.signal.aborted) return;
    this.closeController.abort(new Error('RedisLocker closed'));
    for (const locks of this.#holders.values()) for (const lock of locks) lock.stopRenewal();
    this.#holders.clear();
    this.#subscriber.off('message', this.#onMessage);
    // Not ready: nothing to wait for (if it reconnects, ioredis resubscribes, but nobody listens).
    if (this.#subscribed && this.#subscriber.status === 'ready') {
      try {
        await untilAborted(
          this.#subscriber.unsubscribe(this.releaseChannel, this.releasedChannel),
          AbortSignal.timeout(1000),
        );
      } catch {
        // Connection already gone: nothing to unsubscribe from.
      }
    }
  }

  /**
   * @internal Acquires the key for `token`, waiting for the holder; rejects with signal.reason.
   * Resolves with the time the successful SET was sent (the key lives at least until then + ttl).
   */
  async acquire(id: string, token: string, signal: AbortSignal): Promise<number> {
    const key = this.key(id);
    await untilAborted(this.#ensureSubscribed(), signal);
    let lastReleaseRequest = -Infinity;
    let backoff = MIN_BACKOFF_MS;
    for (;;) {
      // Register for the unlock notification before trying, so an unlock between a failed
      // SET and the sleep below is not missed.
      const wake = this.#registerWaiter(id);
      try {
        const sentAt = Date.now();
        if (await this.#trySet(id, key, token, signal)) return sentAt;
        if (Date.now() - lastReleaseRequest >= RELEASE_REQUEST_INTERVAL_MS) {
          lastReleaseRequest = Date.now();
          await untilAborted(this.redis.publish(this.releaseChannel, id), signal);
          this.metrics?.lockReleaseRequests.inc({ direction: 'sent' });
        }
        await sleep(backoff / 2 + Math.random() * (backoff / 2), signal, wake.promise);
      } finally {
        wake.cancel();
      }
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    }
  }

  /** @internal */
  addHolder(id: string, lock: RedisLock): void {
    let locks = this.#holders.get(id);
    if (!locks) this.#holders.set(id, (locks = new Set()));
    locks.add(lock);
  }

  /** @internal */
  removeHolder(id: string, lock: RedisLock): void {
    const locks = this.#holders.get(id);
    if (!locks) return;
    locks.delete(lock);
    if (locks.size === 0) this.#holders.delete(id);
  }

  async #trySet(id: string, key: string, token: string, signal: AbortSignal): Promise<boolean> {
    const attempt = this.redis.set(key, token, 'PX', this.ttlMs, 'NX');
    try {
      return (await untilAborted(attempt, signal)) === 'OK';
    } catch (err) {
      if (signal.aborted) {
        // We gave up while SET was in flight; if it still succeeds, give the key back.
        attempt.then(
          (result) => {
            if (result === 'OK') {
              this.redis
                .eval(UNLOCK_SCRIPT, 1, key, token, this.releasedChannel, id)
                .catch(() => undefined);
            }
          },
          () => undefined,
        );
      }
      throw err;
    }
  }

  #ensureSubscribed(): Promise<void> {
    this.#subscribed ??= this.#subscriber
      .subscribe(this.releaseChannel, this.releasedChannel)
      .then(
        () => undefined,
        (err: unknown) => {
          this.#subscribed = undefined; // retry on the next lock()
          throw err;
        },
      );
    return this.#subscribed;
  }

  #registerWaiter(id: string): { promise: Promise<void>; cancel: () => void } {
    let wake!: () => void;
    const promise = new Promise<void>((resolve) => (wake = resolve));
    let waiters = this.#waiters.get(id);
    if (!waiters) this.#waiters.set(id, (waiters = new Set()));
    waiters.add(wake);
    const cancel = () => {
      const set = this.#waiters.get(id);
      if (!set) return;
      set.delete(wake);
      if (set.size === 0) this.#waiters.delete(id);
    };
    return { promise, cancel };
  }

  readonly #onMessage = (channel: string, id: string): void => {
    if (channel === this.releaseChannel) {
      for (const lock of this.#holders.get(id) ?? []) {
        this.metrics?.lockReleaseRequests.inc({ direction: 'received' });
        lock.askToRelease('requested by another request');
      }
    } else if (channel === this.releasedChannel) {
      for (const wake of this.#waiters.get(id) ?? []) wake();
    }
  };
}

/** @internal Exported for typing only; create through RedisLocker.newLock(). */
export class RedisLock implements Lock {
  #token: string | undefined;
  #requestRelease: RequestRelease | undefined;
  #renewTimer: NodeJS.Timeout | undefined;
  #renewing = false;
  /** When the last SET/renewal that succeeded was sent: the key lives at least until this + ttl. */
  #confirmedAt = 0;

  constructor(
    readonly id: string,
    private readonly locker: RedisLocker,
  ) {}

  async lock(signal: AbortSignal, requestRelease: RequestRelease): Promise<void> {
    if (this.#token) throw new Error(`RedisLock(${this.id}): lock() called while already held`);
    const { locker } = this;
    const closeSignal = locker.closeController.signal;
    if (closeSignal.aborted) throw closeSignal.reason;

    const ac = new AbortController();
    const onAbort = () => ac.abort(ERRORS.ERR_LOCK_TIMEOUT);
    const onClose = () => ac.abort(closeSignal.reason);
    const timer = setTimeout(onAbort, locker.acquireTimeoutMs);
    if (signal.aborted) onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    closeSignal.addEventListener('abort', onClose, { once: true });

    const token = randomUUID();
    const startedAt = Date.now();
    let setSentAt: number;
    try {
      setSentAt = await locker.acquire(this.id, token, ac.signal);
    } catch (err) {
      locker.metrics?.lockWait.observe({ outcome: signal.aborted || closeSignal.aborted ? 'aborted' : err === ERRORS.ERR_LOCK_TIMEOUT ? 'timeout' : 'error' }, (Date.now() - startedAt) / 1000);
      if (!ac.signal.aborted) locker.log?.warn({ err, id: this.id }, 'lock acquire failed');
      else if (err === ERRORS.ERR_LOCK_TIMEOUT)
        locker.log?.info({ id: this.id, waitedMs: Date.now() - startedAt, aborted: signal.aborted }, 'lock not acquired');
      throw err;
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      closeSignal.removeEventListener('abort', onClose);
    }

    // No await from the successful SET to here: the holder is registered before any message
    // can be dispatched.
    locker.metrics?.lockWait.observe({ outcome: 'acquired' }, (Date.now() - startedAt) / 1000);
    this.#token = token;
    this.#requestRelease = requestRelease;
    this.#confirmedAt = setSentAt;
    locker.addHolder(this.id, this);
    const interval = Math.max(1, Math.floor(locker.ttlMs / 3));
    this.#renewTimer = setInterval(() => void this.#renew(), interval);
    this.#renewTimer.unref();
  }

  /**
   * Deletes the key if it is still ours and announces the unlock. Never throws: unlocking
   * twice is a no-op, a lost lock is left to its new holder, and a Redis error only means the
   * key expires after ttl (it is no longer renewed).
   */
  async unlock(): Promise<void> {
    const token = this.#token;
    if (!token) {
      this.locker.log?.debug({ id: this.id }, 'unlock() of a lock that is not held');
      return;
    }
    this.#token = undefined;
    this.#requestRelease = undefined;
    this.stopRenewal();
    this.locker.removeHolder(this.id, this);
    const { locker } = this;
    try {
      const deleted = await untilAborted(
        locker.redis.eval(UNLOCK_SCRIPT, 1, locker.key(this.id), token, locker.releasedChannel, this.id),
        AbortSignal.timeout(locker.ttlMs),
      );
      if (deleted !== 1) locker.log?.warn({ id: this.id }, 'lock was lost before unlock');
    } catch (err) {
      locker.log?.warn({ err, id: this.id }, 'unlock failed; the lock expires after its ttl');
    }
  }

  /** @internal */
  stopRenewal(): void {
    clearInterval(this.#renewTimer);
    this.#renewTimer = undefined;
  }

  /** @internal Calls the holder's requestRelease; errors are logged, not thrown. */
  askToRelease(reason: string): void {
    const requestRelease = this.#requestRelease;
    if (!requestRelease) return;
    this.locker.log?.debug({ id: this.id, reason }, 'asking lock holder to release');
    try {
      Promise.resolve(requestRelease()).catch((err: unknown) =>
        this.locker.log?.warn({ err, id: this.id }, 'requestRelease failed'),
      );
    } catch (err) {
      this.locker.log?.warn({ err, id: this.id }, 'requestRelease failed');
    }
  }

  async #renew(): Promise<void> {
    const token = this.#token;
    if (!token) return;
    const { locker } = this;
    if (Date.now() - this.#confirmedAt >= locker.ttlMs) {
      // No renewal got through for a whole ttl (Redis down or slow): the key may be gone.
      this.#lost('lock could not be renewed within its ttl');
      return;
    }
    if (this.#renewing) return;
    this.#renewing = true;
    const sentAt = Date.now();
    try {
      const renewed = await locker.redis.eval(RENEW_SCRIPT, 1, locker.key(this.id), token, locker.ttlMs);
      if (this.#token !== token) return; // unlocked meanwhile
      if (renewed === 1) this.#confirmedAt = sentAt;
      else this.#lost('lock expired or was taken over');
    } catch (err) {
      if (this.#token === token) locker.log?.warn({ err, id: this.id }, 'lock renewal failed');
    } finally {
      this.#renewing = false;
    }
  }

  #lost(reason: string): void {
    this.locker.log?.warn({ id: this.id, reason }, 'lock lost; asking holder to stop');
    this.stopRenewal();
    this.locker.removeHolder(this.id, this);
    // Keep #token: unlock() still runs its compare-and-delete, which is a no-op unless the
    // key is in fact still ours.
    this.askToRelease(reason);
  }
}

/** Resolves/rejects like `promise`, or rejects with signal.reason as soon as `signal` aborts. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    promise.catch(() => undefined);
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/** Waits `ms`, or until `wake` resolves; rejects with signal.reason if `signal` aborts. */
function sleep(ms: number, signal: AbortSignal, wake: Promise<void>): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const finish = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    };
    const onAbort = () => {
      finish();
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      finish();
      resolve();
    }, ms);
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    void wake.then(() => {
      finish();
      resolve();
    });
  });
}
