// Access control shared by the tus endpoint, the JSON API and the cleanup jobs, made once per process: who the caller is
// (hooks/auth.ts), what they own (hooks/ownership.ts), how much they may store and upload at once
// (hooks/quota.ts), how fast they may create uploads (hooks/rate-limit.ts).
import type { IncomingMessage } from 'node:http';
import type { Redis } from 'ioredis';
import type { Config } from '../config/index.js';
import type { Metrics, RefusalReason } from '../lib/metrics.js';
import { RedisKeys } from '../lib/redis-keys.js';
import { createAuthenticator, type Authenticator } from './auth.js';
import { OwnershipStore } from './ownership.js';
import { QuotaService } from './quota.js';
import { CreationRateLimiter } from './rate-limit.js';

export interface AccessControl {
  authenticator: Authenticator;
  ownership: OwnershipStore;
  quota: QuotaService;
  rateLimiter: CreationRateLimiter;
  /** When an unfinished upload created now expires (ms since epoch), 0 = never (UPLOAD_EXPIRY). */
  expiresAt(): number;
}

export function createAccessControl(config: Config, redis: Redis, keys = new RedisKeys(config.redisPrefix), metrics?: Metrics): AccessControl {
  const authenticator = createAuthenticator(config);
  const { access } = config;
  const onRefusal = metrics ? (reason: RefusalReason) => metrics.refusals.inc({ reason }) : undefined;
  return {
    authenticator,
    ownership: new OwnershipStore(redis, keys, authenticator.enabled),
    quota: new QuotaService(redis, keys, { quotaBytes: access.quotaBytes, maxConcurrentUploads: access.maxConcurrentUploads }, onRefusal),
    rateLimiter: new CreationRateLimiter(redis, keys, {
      perUserPerMinute: access.rateLimit.creationsPerMinuteUser,
      perIpPerMinute: access.rateLimit.creationsPerMinuteIp,
      perUser: authenticator.enabled,
      onRefusal,
    }),
    expiresAt: () => (config.uploadExpiryMs > 0 ? Date.now() + config.uploadExpiryMs : 0),
  };
}

/** The client address: express's req.ip (honours TRUST_PROXY), else the socket's. */
export function clientIp(req: IncomingMessage): string | undefined {
  return (req as IncomingMessage & { ip?: string }).ip ?? req.socket.remoteAddress ?? undefined;
}
