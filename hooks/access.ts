// Access control shared by the tus endpoint and the JSON API (issue 5): who the caller is
// (hooks/auth.ts), what they own (hooks/ownership.ts), how much they may store and upload at once
// (hooks/quota.ts), how fast they may create uploads (hooks/rate-limit.ts).
import type { IncomingMessage } from 'node:http';
import type { Redis } from 'ioredis';
import type { Config } from '../config/index.js';
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

export function createAccessControl(config: Config, redis: Redis): AccessControl {
  const authenticator = createAuthenticator(config);
  const { access } = config;
  return {
    authenticator,
    ownership: new OwnershipStore(redis, config.redisPrefix, authenticator.enabled),
    quota: new QuotaService(redis, config.redisPrefix, { quotaBytes: access.quotaBytes, maxConcurrentUploads: access.maxConcurrentUploads }),
    rateLimiter: new CreationRateLimiter(redis, config.redisPrefix, {
      perUserPerMinute: access.rateLimit.creationsPerMinuteUser,
      perIpPerMinute: access.rateLimit.creationsPerMinuteIp,
      perUser: authenticator.enabled,
    }),
    expiresAt: () => (config.uploadExpiryMs > 0 ? Date.now() + config.uploadExpiryMs : 0),
  };
}

/** The client address: express's req.ip (honours TRUST_PROXY), else the socket's. */
export function clientIp(req: IncomingMessage): string | undefined {
  return (req as IncomingMessage & { ip?: string }).ip ?? req.socket.remoteAddress ?? undefined;
}
