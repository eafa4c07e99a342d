// Who owns which upload: `<prefix>owner:{<uploadId>}` (lib/redis-keys.ts) = user id, set by tusk at
// creation from the authenticated principal, never from client metadata. A separate small key
// (not a field of the status record) so that it exists before anything else about the upload.
// Another user's upload is answered exactly like an unknown one (404): do not reveal it exists.
import type { Redis } from 'ioredis';
import type { RedisKeys } from '../lib/redis-keys.js';
import type { Principal } from './auth.js';

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

  async setOwner(id: string, userId: string): Promise<void> {
    await this.redis.set(this.key(id), userId);
  }

  async ownerOf(id: string): Promise<string | undefined> {
    return (await this.redis.get(this.key(id))) ?? undefined;
  }

  async forget(id: string): Promise<void> {
    await this.redis.del(this.key(id));
  }

  /** Keeps the owner for `seconds` more, then forgets it (an expired upload's client still hears 410). */
  async forgetAfter(id: string, seconds: number): Promise<void> {
    await this.redis.expire(this.key(id), seconds);
  }

  /**
   * May this principal see the upload? With auth off, always (one user). With auth on, only
   * its owner; an upload without an owner (created before auth was turned on) belongs to nobody.
   */
  async canAccess(principal: Principal, id: string): Promise<boolean> {
    if (!this.authEnabled) return true;
    return (await this.ownerOf(id)) === principal.userId;
  }
}
