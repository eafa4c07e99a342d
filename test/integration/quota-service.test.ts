// Quota bookkeeping on the test Redis: idempotent reserve, complete, adjust, release. The quota as
// clients meet it (413, 403, shared by several processes): test/e2e/auth-quota.test.ts.
import { Redis } from 'ioredis';
import { QuotaService } from '../../hooks/quota.js';
import { RedisKeys } from '../../lib/redis-keys.js';
import { testRedisUrl, uniqueRedisPrefix } from '../helpers/services.js';

describe('QuotaService (Redis)', () => {
  let redis: Redis;
  beforeAll(() => {
    redis = new Redis(testRedisUrl());
  });
  afterAll(() => redis.disconnect());

  test('reserve is idempotent per upload; complete frees the slot, not the bytes; release frees both; expired reservations are found', async () => {
    const q = new QuotaService(redis, new RedisKeys(uniqueRedisPrefix()), { quotaBytes: 100, maxConcurrentUploads: 2 });
    expect(await q.reserve('u', 'a', 60, { expiresAt: Date.now() - 1 })).toEqual({ ok: true });
    expect(await q.reserve('u', 'a', 60)).toEqual({ ok: true });
    expect(await q.usage('u')).toMatchObject({ bytes: 60, activeUploads: 1 });
    expect(await q.reserve('u', 'b', 50)).toMatchObject({ ok: false, code: 'quota_exceeded' });
    expect(await q.reserve('u', 'b', 0, { expiresAt: Date.now() + 60_000 })).toEqual({ ok: true });
    expect(await q.reserve('u', 'c', 0)).toMatchObject({ ok: false, code: 'too_many_uploads' });
    expect(await q.adjust('b', 41)).toMatchObject({ ok: false, code: 'quota_exceeded' });
    expect(await q.adjust('b', 40)).toEqual({ ok: true });
    expect(await q.expiredReservations()).toEqual(['a']);
    await q.complete('a');
    await q.complete('a');
    expect(await q.usage('u')).toMatchObject({ bytes: 100, activeUploads: 1 });
    expect(await q.expiredReservations()).toEqual([]);
    expect(await q.release('a')).toBe(60);
    expect(await q.release('a')).toBe(0);
    expect(await q.usage('u')).toMatchObject({ bytes: 40, activeUploads: 1 });
    expect(await q.reserve('u', 'final', 40, { complete: true, replaces: ['b'] })).toEqual({ ok: true });
    expect(await q.usage('u')).toMatchObject({ bytes: 40, activeUploads: 0 });
    // zero-byte reservations (deferred lengths) and replacing complete ones (Lua must never pass "-0")
    expect(await q.reserve('u', 'zero', 0)).toEqual({ ok: true });
    expect(await q.release('zero')).toBe(0);
    expect(await q.reserve('u', 'final2', 40, { complete: true, replaces: ['final'] })).toEqual({ ok: true });
    expect(await q.usage('u')).toMatchObject({ bytes: 40, activeUploads: 0 });
  });
});
