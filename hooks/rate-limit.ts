// Rate limit on upload creation: per user and per client IP, fixed one-minute windows
// in Redis (rate-limiter-flexible's RateLimiterRedis on our ioredis client), so the limit holds
// across several tusk processes. 0 disables a limit. The per-user limit only applies with
// authentication on (with it off every request is the one user `anonymous`).
import type { Redis } from 'ioredis';
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { TuskError } from '../lib/errors.js';
import type { RefusalReason } from '../lib/metrics.js';
import type { RedisKeys } from '../lib/redis-keys.js';

/** 429 with Retry-After (seconds, also as `retry_after` in a JSON answer). */
export function rateLimited(retryAfterSeconds: number, scope: 'user' | 'ip'): TuskError {
  return new TuskError('rate_limited', `Too many uploads created; retry in ${retryAfterSeconds} s`, { retry_after: retryAfterSeconds, scope }, { 'Retry-After': String(retryAfterSeconds) });
}

export interface CreationRateLimitOptions {
  /** Creations per minute per user; 0 = no limit. */
  perUserPerMinute: number;
  /** Creations per minute per client IP; 0 = no limit. */
  perIpPerMinute: number;
  /** Apply the per-user limit (false while authentication is off). Default true. */
  perUser?: boolean;
  /** Told of every refusal (metrics). */
  onRefusal?: (reason: RefusalReason) => void;
}

export class CreationRateLimiter {
  private readonly user?: RateLimiterRedis;
  private readonly ip?: RateLimiterRedis;
  private readonly onRefusal: (reason: RefusalReason) => void;

  constructor(redis: Redis, keys: RedisKeys, opts: CreationRateLimitOptions) {
    this.onRefusal = opts.onRefusal ?? (() => {});
    if (opts.perUserPerMinute > 0 && opts.perUser !== false) {
      this.user = new RateLimiterRedis({ storeClient: redis, keyPrefix: keys.rateLimit('user'), points: opts.perUserPerMinute, duration: 60 });
    }
    if (opts.perIpPerMinute > 0) {
      this.ip = new RateLimiterRedis({ storeClient: redis, keyPrefix: keys.rateLimit('ip'), points: opts.perIpPerMinute, duration: 60 });
    }
  }

  get enabled(): boolean {
    return !!(this.user || this.ip);
  }

  /**
   * Counts one upload creation for the user and the IP. Throws TuskError rate_limited when either is
   * over its limit; Redis errors propagate (the caller answers 503).
   */
  async consumeCreation(userId: string, ip: string | undefined): Promise<void> {
    const checks: Array<[RateLimiterRedis, string, 'user' | 'ip']> = [];
    if (this.ip && ip) checks.push([this.ip, ip, 'ip']);
    if (this.user) checks.push([this.user, userId, 'user']);
    for (const [limiter, key, scope] of checks) {
      try {
        await limiter.consume(key, 1);
      } catch (err) {
        if (err instanceof RateLimiterRes) {
          this.onRefusal(scope === 'user' ? 'rate_limit_user' : 'rate_limit_ip');
          throw rateLimited(Math.max(1, Math.ceil(err.msBeforeNext / 1000)), scope);
        }
        throw err;
      }
    }
  }
}
