// Rate limit on upload creation (issue 5): per user and per client IP, fixed one-minute windows
// in Redis (rate-limiter-flexible's RateLimiterRedis on our ioredis client), so the limit holds
// across several tusk processes. 0 disables a limit. The per-user limit only applies with
// authentication on (with it off every request is the one user `anonymous`).
import type { Redis } from 'ioredis';
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';

export class RateLimitedError extends Error {
  readonly status = 429;
  readonly code = 'rate_limited';
  constructor(
    readonly retryAfterSeconds: number,
    readonly scope: 'user' | 'ip',
  ) {
    super(`Too many uploads created; retry in ${retryAfterSeconds} s`);
    this.name = 'RateLimitedError';
  }
}

export interface CreationRateLimitOptions {
  /** Creations per minute per user; 0 = no limit. */
  perUserPerMinute: number;
  /** Creations per minute per client IP; 0 = no limit. */
  perIpPerMinute: number;
  /** Apply the per-user limit (false while authentication is off). Default true. */
  perUser?: boolean;
}

export class CreationRateLimiter {
  private readonly user?: RateLimiterRedis;
  private readonly ip?: RateLimiterRedis;

  constructor(redis: Redis, prefix: string, opts: CreationRateLimitOptions) {
    if (opts.perUserPerMinute > 0 && opts.perUser !== false) {
      this.user = new RateLimiterRedis({ storeClient: redis, keyPrefix: `${prefix}ratelimit:create:user`, points: opts.perUserPerMinute, duration: 60 });
    }
    if (opts.perIpPerMinute > 0) {
      this.ip = new RateLimiterRedis({ storeClient: redis, keyPrefix: `${prefix}ratelimit:create:ip`, points: opts.perIpPerMinute, duration: 60 });
    }
  }

  get enabled(): boolean {
    return !!(this.user || this.ip);
  }

  /**
   * Counts one upload creation for the user and the IP. Throws RateLimitedError when either is
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
        if (err instanceof RateLimiterRes) throw new RateLimitedError(Math.max(1, Math.ceil(err.msBeforeNext / 1000)), scope);
        throw err;
      }
    }
  }
}
