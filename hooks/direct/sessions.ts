// A direct-to-storage upload session: what was declared at initiate and how far it got, in Redis
// (lib/redis-keys.ts: `direct:<id>` JSON, kept a week past its expiry; open sessions indexed by
// expiry for the cleanup; Companion single PUTs awaiting their object; completed PUTs whose PUT
// key is deleted once every URL signed for it expired), and a short lock per session so complete,
// delete and the cleanup never run at once on one session.
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { RedisKeys } from '../../lib/redis-keys.js';
import { luaScript } from '../../lib/lua.js';

export type DirectStatus = 'uploading' | 'completed' | 'aborted' | 'expired';

export interface DirectSession {
  upload_id: string;
  /** The owner when it was initiated (the ownership store, hooks/ownership.ts, is what decides access). */
  owner: string;
  filename: string;
  size: number;
  content_type: string;
  method: 'multipart' | 'put';
  bucket: string;
  key: string;
  /** S3 UploadId of the multipart upload. */
  s3_upload_id?: string;
  /**
   * Single PUT: where the client PUTs (`direct/<id>.put`). Complete copies it to `key`, so a
   * second PUT with a still-valid URL can never replace the object the pipeline scanned.
   */
  upload_key?: string;
  chunk_size: number;
  part_count: number;
  sha256?: string;
  created_at: string;
  /** The session (not the URLs) expires: then the cleanup aborts it. */
  expires_at: string;
  status: DirectStatus;
  /** Who asked: the API (tusk's chunk size) or the Companion-compatible routes (Uppy's default chunk size). */
  via: 'api' | 'companion';
  title?: string;
  description?: string;
  visibility?: string;
  completed_at?: string;
  /** A dedup hit: the upload whose object and outputs this one shares. */
  dedup_of?: string;
}

const UNLOCK = luaScript('direct-session-unlock');

export class DirectSessionStore {
  constructor(
    readonly redis: Redis,
    readonly keys: RedisKeys,
  ) {}

  async get(id: string): Promise<DirectSession | undefined> {
    const raw = await this.redis.get(this.keys.directSession(id));
    return raw ? (JSON.parse(raw) as DirectSession) : undefined;
  }

  /** Saves the session; open ones are indexed by expiry for the cleanup. Kept a week past expiry. */
  async save(s: DirectSession): Promise<void> {
    const { keys } = this;
    const ttl = Math.max(60, Math.ceil((Date.parse(s.expires_at) - Date.now()) / 1000) + 7 * 86_400);
    const multi = this.redis.multi().set(keys.directSession(s.upload_id), JSON.stringify(s), 'EX', ttl);
    if (s.status === 'uploading') multi.zadd(keys.directExpiring, Date.parse(s.expires_at), s.upload_id);
    else multi.zrem(keys.directExpiring, s.upload_id);
    // Uppy's single PUT (/s3/params) has no completion call: the cleanup completes it once the object is there.
    if (s.status === 'uploading' && s.via === 'companion' && s.method === 'put') multi.zadd(keys.directPendingPut, Date.parse(s.created_at), s.upload_id);
    else multi.zrem(keys.directPendingPut, s.upload_id);
    await multi.exec();
  }

  /** Open sessions whose expiry is before `now`. */
  expired(now: number, limit = 500): Promise<string[]> {
    return this.redis.zrangebyscore(this.keys.directExpiring, 0, now, 'LIMIT', 0, limit);
  }

  /** Takes a session off the expiry index (it is no longer open). */
  forgetExpiring(id: string): Promise<number> {
    return this.redis.zrem(this.keys.directExpiring, id);
  }

  /** Looks at an expired session again at `at` (it was busy being completed or aborted). */
  async expireLater(id: string, at: number): Promise<void> {
    await this.redis.zadd(this.keys.directExpiring, at, id);
  }

  /** Companion single PUTs still waiting for their object (oldest first). */
  pendingPuts(limit = 1000): Promise<string[]> {
    return this.redis.zrange(this.keys.directPendingPut, 0, limit - 1);
  }

  forgetPendingPut(id: string): Promise<number> {
    return this.redis.zrem(this.keys.directPendingPut, id);
  }

  /** A completed single PUT whose PUT key is to be deleted after `at` (every URL signed for it expired). */
  async markStalePut(id: string, at: number): Promise<void> {
    await this.redis.zadd(this.keys.directStalePut, at, id);
  }

  /** Completed single PUTs whose PUT key may be deleted now. */
  stalePuts(now: number, limit = 1000): Promise<string[]> {
    return this.redis.zrangebyscore(this.keys.directStalePut, 0, now, 'LIMIT', 0, limit);
  }

  forgetStalePut(id: string): Promise<number> {
    return this.redis.zrem(this.keys.directStalePut, id);
  }

  /** A short lock per session (complete / delete / cleanup never run at once on one session). */
  async lock(id: string, ttlMs = 120_000): Promise<(() => Promise<void>) | undefined> {
    const token = randomBytes(8).toString('hex');
    const key = this.keys.directLock(id);
    const ok = await this.redis.set(key, token, 'PX', ttlMs, 'NX');
    if (!ok) return undefined;
    return async () => {
      await this.redis.eval(UNLOCK, 1, key, token);
    };
  }
}
