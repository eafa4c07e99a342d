// Signed URLs that tusk itself serves, for what players and <img> fetch without an Authorization
// header: the HLS playlists on either store (rewritten on the way out so that every playlist and
// segment they name is signed too), and every derived file of the file store.
//
//   <base>/api/derived/<upload id>/<exp>.<sig>/<path under derived/<id>/>
//
// <exp> is the expiry (seconds since the epoch), <sig> HMAC-SHA256(key, "derived:<id>:<exp>"),
// base64url. The capability covers the upload's derived outputs, nothing else, until <exp>: it
// is handed out only in answers to the upload's owner (the status API, the listing, webhooks).
// Because the token is a path segment, relative references in a playlist stay under it.
//
// The key: URL_SIGNING_SECRET, or else one made once and kept in Redis (`<prefix>url-signing-key`)
// so that every tusk process - API servers and workers (webhooks) - signs and verifies alike.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { RedisKeys } from './redis-keys.js';
import { DERIVED_PREFIX } from './s3-keys.js';

/** Where the signed derived files are served. */
export const SIGNED_DERIVED_PATH = '/api/derived';

/** Expiries are rounded up to this, so that URLs handed out within it are the same (caches, <img>). */
const EXPIRY_GRANULARITY_SECONDS = 60;

export type TokenCheck = { ok: true; expiresAtMs: number } | { ok: false; why: 'invalid' | 'expired' };

export class DerivedUrlSigner {
  private key: Promise<Buffer> | undefined;

  constructor(
    private readonly loadKey: () => Promise<Buffer>,
    /** How long a URL made now is valid (SIGNED_GET_URL_TTL). */
    private readonly ttlMs: number,
  ) {}

  private async hmacKey(): Promise<Buffer> {
    this.key ??= this.loadKey().catch((err: unknown) => {
      this.key = undefined; // Redis blinked: try again next time
      throw err;
    });
    return this.key;
  }

  private async sig(id: string, exp: number): Promise<string> {
    return createHmac('sha256', await this.hmacKey()).update(`derived:${id}:${exp}`).digest('base64url');
  }

  /** The token of a URL made now: `<exp>.<sig>`. */
  async token(id: string, nowMs = Date.now()): Promise<string> {
    const exp = Math.ceil((nowMs + this.ttlMs) / 1000 / EXPIRY_GRANULARITY_SECONDS) * EXPIRY_GRANULARITY_SECONDS;
    return `${exp}.${await this.sig(id, exp)}`;
  }

  async check(id: string, token: string, nowMs = Date.now()): Promise<TokenCheck> {
    const m = /^(\d{1,12})\.([A-Za-z0-9_-]{43})$/.exec(token);
    if (!m) return { ok: false, why: 'invalid' };
    const exp = Number(m[1]);
    const want = Buffer.from(await this.sig(id, exp));
    const got = Buffer.from(m[2] as string);
    if (want.length !== got.length || !timingSafeEqual(want, got)) return { ok: false, why: 'invalid' };
    if (exp * 1000 <= nowMs) return { ok: false, why: 'expired' };
    return { ok: true, expiresAtMs: exp * 1000 };
  }

  /** The signed URL of a derived key (`derived/<id>/<rest>`) with a given token. */
  static urlWith(baseUrl: string, key: string, token: string): string {
    const [prefix, id, ...rest] = key.split('/');
    if (prefix !== DERIVED_PREFIX || !id || rest.length === 0) throw new Error(`not a derived key: "${key}"`);
    return `${baseUrl}${SIGNED_DERIVED_PATH}/${id}/${token}/${rest.map(encodeURIComponent).join('/')}`;
  }

  async url(baseUrl: string, key: string, nowMs = Date.now()): Promise<string> {
    const id = key.split('/')[1] ?? '';
    return DerivedUrlSigner.urlWith(baseUrl, key, await this.token(id, nowMs));
  }
}

/** The signing key: the configured secret, or the one kept in Redis (made by whichever process needs it first). */
export function signingKeyLoader(redis: Redis, keys: RedisKeys, configured: string | undefined): () => Promise<Buffer> {
  if (configured) return async () => Buffer.from(configured);
  return async () => {
    await redis.set(keys.urlSigningKey, randomBytes(32).toString('base64'), 'NX');
    const stored = await redis.get(keys.urlSigningKey);
    if (!stored) throw new Error('the URL signing key vanished from Redis');
    return Buffer.from(stored, 'base64');
  };
}
