// Who owns which upload: `<prefix>owner:{<uploadId>}` (lib/redis-keys.ts) = user id, set by tusk at
// creation from the authenticated principal, never from client metadata. A separate small key
// (not a field of the status record) so that it exists before anything else about the upload.
// Another user's upload is answered exactly like an unknown one (404): do not reveal it exists.
//
// The same store keeps each user's uploads in a sorted set, `<prefix>user-uploads:{<user>}`
// (score: creation time in ms), for `GET /api/uploads`: an upload enters it with its owner and
// leaves it when its owner is forgotten, so the listing never needs a scan of the keyspace.
import type { Redis } from 'ioredis';
import type { RedisKeys } from '../lib/redis-keys.js';
import type { Principal } from './auth.js';

/** A position in a user's listing: the entry after which the next page starts (newest first). */
export interface ListingCursor {
  createdMs: number;
  id: string;
}

export class OwnershipStore {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    /** False while authentication is off: everything is the anonymous user's. */
    private readonly authEnabled = true,
  ) {}

  private key(id: string): string {
    return this.keys.owner(id);
  }

  async setOwner(id: string, userId: string, createdMs = Date.now()): Promise<void> {
    await this.redis.multi().set(this.key(id), userId).zadd(this.keys.userUploads(userId), createdMs, id).exec();
  }

  async ownerOf(id: string): Promise<string | undefined> {
    return (await this.redis.get(this.key(id))) ?? undefined;
  }

  async forget(id: string): Promise<void> {
    const owner = await this.ownerOf(id);
    const tx = this.redis.multi().del(this.key(id));
    if (owner !== undefined) tx.zrem(this.keys.userUploads(owner), id);
    await tx.exec();
  }

  /**
   * Keeps the owner for `seconds` more, then forgets it (an expired upload's client still hears
   * 410); the upload leaves its owner's listing now, since there is nothing left to show.
   */
  async forgetAfter(id: string, seconds: number): Promise<void> {
    const owner = await this.ownerOf(id);
    const tx = this.redis.multi().expire(this.key(id), seconds);
    if (owner !== undefined) tx.zrem(this.keys.userUploads(owner), id);
    await tx.exec();
  }

  /**
   * May this principal see the upload? With auth off, always (one user). With auth on, only
   * its owner; an upload without an owner (created before auth was turned on) belongs to nobody.
   */
  async canAccess(principal: Principal, id: string): Promise<boolean> {
    if (!this.authEnabled) return true;
    return (await this.ownerOf(id)) === principal.userId;
  }

  /**
   * Up to `count` of the user's uploads, newest first, after `after` (exclusive). Ties in the
   * creation time are ordered by id, descending, so that a cursor names one place exactly.
   */
  async uploadsOf(userId: string, count: number, after?: ListingCursor): Promise<ListingCursor[]> {
    const key = this.keys.userUploads(userId);
    const max = after ? String(after.createdMs) : '+inf';
    // Entries sharing the cursor's score come first and some of them are before it: fetch enough
    // to skip those (a handful at most: they were created in the same millisecond).
    const ties = after ? await this.redis.zcount(key, after.createdMs, after.createdMs) : 0;
    const raw = await this.redis.zrevrangebyscore(key, max, '-inf', 'WITHSCORES', 'LIMIT', 0, count + ties);
    const entries: ListingCursor[] = [];
    for (let i = 0; i + 1 < raw.length; i += 2) entries.push({ id: raw[i] as string, createdMs: Number(raw[i + 1]) });
    // ZREVRANGEBYSCORE orders equal scores by member descending already.
    return entries.filter((e) => !after || e.createdMs < after.createdMs || (e.createdMs === after.createdMs && e.id < after.id)).slice(0, count);
  }

  /**
   * Indexes the uploads that have an owner but no place in their owner's listing (made before the
   * listing existed): once per Redis, after which a marker key says it is done. Idempotent, so two
   * processes starting at once only do the same work twice. `createdMs` is the creation time of
   * an upload, undefined when it has no status record (gone): those are left out.
   */
  async indexExisting(createdMs: (id: string) => Promise<number | undefined>): Promise<number> {
    const marker = this.keys.userUploadsIndexed;
    if (await this.redis.exists(marker)) return 0;
    const ownerPrefix = this.keys.owner('');
    const prefixLength = ownerPrefix.indexOf('{') + 1;
    let cursor = '0';
    let indexed = 0;
    do {
      const [next, found] = await this.redis.scan(cursor, 'MATCH', `${ownerPrefix.slice(0, prefixLength).replace(/[*?[\]\\]/g, '\\$&')}*}`, 'COUNT', 500);
      cursor = next;
      if (found.length === 0) continue;
      const owners = await this.redis.mget(...found);
      for (const [i, key] of found.entries()) {
        const owner = owners[i];
        const id = key.slice(prefixLength, -1);
        if (!owner) continue;
        const created = await createdMs(id);
        if (created === undefined) continue;
        indexed += await this.redis.zadd(this.keys.userUploads(owner), 'NX', created, id);
      }
    } while (cursor !== '0');
    await this.redis.set(marker, new Date().toISOString());
    return indexed;
  }

  /** Drops ids from a user's listing whose uploads are gone (their records expired). */
  async unlist(userId: string, ids: string[]): Promise<void> {
    if (ids.length) await this.redis.zrem(this.keys.userUploads(userId), ...ids);
  }
}
