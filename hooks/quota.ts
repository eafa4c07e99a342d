// Per-user byte quota and concurrent-upload limit, all state in Redis and every change
// one Lua script, so several tusk processes (and the direct-to-storage API) share it correctly.
//   <prefix>quota:user:{<userId>}     hash  bytes (reserved + stored), active (unfinished uploads)
//   <prefix>quota:upload:{<uploadId>} hash  user, bytes, state (active|complete), expires_at (ms, 0 = never)
//   <prefix>quota:expiring            zset  active upload ids by expires_at (releaseExpiredReservations)
// Life of a reservation:
//   reserve(user, id, bytes)  at creation, from the declared length (for a deferred length: the
//                             creation body's length, 0 without one);
//                             idempotent per upload id; refused with quota_exceeded / too_many_uploads
//   adjust(id, bytes)         the deferred length became known, or grows by each PATCH body of a
//                             still-deferred upload before it is read (may be refused: quota_exceeded)
//   complete(id)              finished: no longer counts as concurrent, keeps its bytes
//   release(id)               terminated, aborted or expired: frees the bytes and, if active, the slot
import type { Redis } from 'ioredis';
import type { RedisKeys } from '../lib/redis-keys.js';
import { luaScript } from '../lib/lua.js';
import type { RefusalReason } from '../lib/metrics.js';

export interface QuotaLimits {
  /** QUOTA_BYTES; 0 = unlimited. */
  quotaBytes: number;
  /** MAX_CONCURRENT_UPLOADS; 0 = unlimited. */
  maxConcurrentUploads: number;
}

export type QuotaRefusal = { ok: false; code: 'quota_exceeded' | 'too_many_uploads'; message: string };
export type QuotaResult = { ok: true } | QuotaRefusal;

export interface QuotaUsage {
  userId: string;
  /** Bytes reserved by unfinished uploads plus bytes of finished ones. */
  bytes: number;
  /** Unfinished uploads. */
  activeUploads: number;
  quotaBytes: number;
  maxConcurrentUploads: number;
}

export interface ReserveOptions {
  /** When the reservation lapses if the upload never finishes (ms since epoch); the cleanup job (releaseExpiredReservations) frees it. */
  expiresAt?: number;
  /** Reserve bytes for an upload that is already complete (takes no concurrent slot). */
  complete?: boolean;
  /**
   * Upload ids (of the same user) whose reservations this one replaces, released in the same
   * step: the final upload of a concatenation takes over its partials' bytes.
   */
  replaces?: string[];
}

const RESERVE = luaScript('quota-reserve');

const ADJUST = luaScript('quota-adjust');

const COMPLETE = luaScript('quota-complete');

const RELEASE = luaScript('quota-release');

export class QuotaService {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    readonly limits: QuotaLimits,
    /** Told of every refusal (metrics). */
    private readonly onRefusal: (reason: RefusalReason) => void = () => {},
  ) {}

  private userKeyPrefix(): string {
    return this.keys.quotaUserPrefix;
  }
  private userKey(userId: string): string {
    return this.keys.quotaUser(userId);
  }
  private uploadKey(uploadId: string): string {
    return this.keys.quotaUpload(uploadId);
  }
  private expiringKey(): string {
    return this.keys.quotaExpiring;
  }

  /** Reserves `bytes` (and, unless complete, a concurrent slot) for a new upload. Idempotent per upload id. */
  async reserve(userId: string, uploadId: string, bytes: number, opts: ReserveOptions = {}): Promise<QuotaResult> {
    const replaces = opts.replaces ?? [];
    const result = (await this.redis.eval(
      RESERVE,
      3 + replaces.length,
      this.userKey(userId),
      this.uploadKey(uploadId),
      this.expiringKey(),
      ...replaces.map((id) => this.uploadKey(id)),
      userId,
      uploadId,
      String(Math.max(0, Math.floor(bytes))),
      String(this.limits.quotaBytes),
      String(this.limits.maxConcurrentUploads),
      String(opts.expiresAt ?? 0),
      opts.complete ? '1' : '0',
      ...replaces,
    )) as [number, string, number?, number?];
    if (result[0] === 1) return { ok: true };
    return this.refusal(result[1], Number(result[2] ?? 0), Number(result[3] ?? 0), bytes);
  }

  /**
   * Sets the reserved bytes of an upload (a deferred length declared, or what the next body of a
   * still-deferred one can add: `growOnly`); refused when that exceeds the quota.
   */
  async adjust(uploadId: string, bytes: number, opts: { growOnly?: boolean } = {}): Promise<QuotaResult> {
    const result = (await this.redis.eval(
      ADJUST,
      1,
      this.uploadKey(uploadId),
      this.userKeyPrefix(),
      String(Math.max(0, Math.floor(bytes))),
      String(this.limits.quotaBytes),
      opts.growOnly ? '1' : '0',
    )) as [number, string, number?, number?];
    if (result[0] === 1 || result[1] === 'not_found') return { ok: true };
    return this.refusal(result[1], Number(result[2] ?? 0), Number(result[3] ?? 0), bytes);
  }

  /** The upload finished: it keeps its bytes but no longer counts as concurrent. Idempotent: true only for the call that changed it. */
  async complete(uploadId: string): Promise<boolean> {
    return Number(await this.redis.eval(COMPLETE, 2, this.uploadKey(uploadId), this.expiringKey(), this.userKeyPrefix(), uploadId)) === 1;
  }

  /** Frees the upload's bytes and slot (terminated, aborted, expired). Returns the bytes freed (0 if none). */
  async release(uploadId: string): Promise<number> {
    const freed = Number(await this.redis.eval(RELEASE, 2, this.uploadKey(uploadId), this.expiringKey(), this.userKeyPrefix(), uploadId));
    return Math.max(0, freed);
  }

  /**
   * Would reserving `bytes` more for the user be refused right now? A cheap advance check (the
   * reservation itself decides): lets a request be refused before its body is read.
   */
  async check(userId: string, bytes: number): Promise<QuotaResult> {
    if (this.limits.quotaBytes === 0 || bytes <= 0) return { ok: true };
    const { bytes: used } = await this.usage(userId);
    return used + bytes > this.limits.quotaBytes ? this.refusal('quota_exceeded', used, this.limits.quotaBytes, bytes) : { ok: true };
  }

  /** Unfinished reservations whose expiry passed (at most `limit`), for the cleanup job. */
  async expiredReservations(now = Date.now(), limit = 1000): Promise<string[]> {
    return this.redis.zrangebyscore(this.expiringKey(), '-inf', now, 'LIMIT', 0, limit);
  }

  async usage(userId: string): Promise<QuotaUsage> {
    const [bytes, active] = await this.redis.hmget(this.userKey(userId), 'bytes', 'active');
    return {
      userId,
      bytes: Math.max(0, Number(bytes ?? 0)),
      activeUploads: Math.max(0, Number(active ?? 0)),
      quotaBytes: this.limits.quotaBytes,
      maxConcurrentUploads: this.limits.maxConcurrentUploads,
    };
  }

  /** The reservation of one upload, if any. */
  async reservation(uploadId: string): Promise<{ userId: string; bytes: number; state: 'active' | 'complete'; expiresAt: number } | undefined> {
    const h = await this.redis.hgetall(this.uploadKey(uploadId));
    if (!h.user) return undefined;
    return { userId: h.user, bytes: Number(h.bytes ?? 0), state: h.state === 'complete' ? 'complete' : 'active', expiresAt: Number(h.expires_at ?? 0) };
  }

  private refusal(code: string, used: number, limit: number, requested: number): QuotaRefusal {
    this.onRefusal(code === 'too_many_uploads' ? 'too_many_uploads' : 'quota_exceeded');
    if (code === 'too_many_uploads') {
      return { ok: false, code: 'too_many_uploads', message: `Too many unfinished uploads (${used} of at most ${limit}); finish or delete one first` };
    }
    if (code === 'conflict') {
      // Another user already holds this upload id: never happens with random ids; refuse plainly.
      return { ok: false, code: 'quota_exceeded', message: 'Upload id already reserved by another user' };
    }
    return { ok: false, code: 'quota_exceeded', message: `Quota exceeded: ${requested} more bytes would make ${used + requested} of ${limit} bytes` };
  }
}
