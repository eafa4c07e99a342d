// Every Redis key and channel name tusk uses, in one place (the way BullMQ's queue-keys.ts does
// it): nothing else builds a key by hand. All of them start with REDIS_PREFIX. `{...}` is a Redis
// Cluster hash tag: the keys one Lua script touches together share it.
//
//   <p>bull:*                          BullMQ queues (process-upload, the step queues, webhook, maintenance)
//   <p>lock:<id>                       upload lock (token, PX ttl)           server/tus/redis-locker.ts
//   <p>lock-release, <p>lock-released  pub/sub: "let go of <id>", "<id> was unlocked"
//   <p>upload:{<id>}, ...:parts        S3 upload state (info JSON; part number -> "size etag")
//   <p>concat:{<id>}                   "partial" | "final;<urls>"
//   <p>repr-digest:{<id>}              Repr-Digest a draft upload must match once complete  server/tus/digest.ts
//   <p>owner:{<id>}                    user id of the upload's owner
//   <p>user-uploads:{<user>}           zset of the user's uploads (score: creation ms) hooks/ownership.ts
//   <p>user-uploads-indexed            marker: uploads older than the listing were indexed
//   <p>quota:user:{<user>}             hash bytes, active
//   <p>quota:upload:{<id>}             hash user, bytes, state, expires_at
//   <p>quota:expiring                  zset unfinished reservations by expiry
//   <p>ratelimit:create:user|ip<key>   rate-limiter-flexible counters
//   <p>record:<id>                     status record (hash)                  lib/records/record-store.ts
//   <p>record-events:<id>              pub/sub: the record changed
//   <p>direct:<id>                     direct-upload session (JSON)
//   <p>direct-lock:<id>                short lock of a session
//   <p>direct-expiring                 zset open sessions by expiry
//   <p>direct-pending-put              zset Companion single PUTs awaiting their object
//   <p>direct-stale-put                zset completed PUTs whose PUT key is deleted once URLs expired
//   <p>dedup:{<user>}:<sha256>:<size>  upload id of a ready upload with that content
//   <p>url-signing-key                 key of tusk's signed derived-file URLs (lib/signed-urls.ts)
//   <p>workers                         hash worker process id -> { queues, seen } (lib/worker-registry.ts)
//   <p>upload-buffers                  hash buffer instance id -> last heartbeat (ms) (UPLOAD_ACK=disk,
//                                      lib/stores/s3-write-buffer.ts)
//   <p>upload-buffer-peers             hash buffer instance id -> { url, token } where it takes PATCH
//                                      bodies other instances forward (lib/stores/s3-buffer-peers.ts)
//   <p>upload-buffer                   pub/sub: "flush <id>": whoever holds bytes of <id>, push them to S3
//   <p>upload-buffer-flush:<instance>  set of upload ids <instance> is asked to push (the same request,
//                                      polled: a message published while it was not listening is not lost)
export class RedisKeys {
  constructor(readonly prefix: string) {}

  /** BullMQ's `prefix` option: its own keys are `<this>:<queue>:...`. */
  get bullPrefix(): string {
    return `${this.prefix}bull`;
  }

  lock(id: string): string {
    return `${this.prefix}lock:${id}`;
  }
  get lockReleaseChannel(): string {
    return `${this.prefix}lock-release`;
  }
  get lockReleasedChannel(): string {
    return `${this.prefix}lock-released`;
  }

  uploadState(id: string): string {
    return `${this.prefix}upload:{${id}}`;
  }
  uploadParts(id: string): string {
    return `${this.prefix}upload:{${id}}:parts`;
  }

  concat(id: string): string {
    return `${this.prefix}concat:{${id}}`;
  }

  reprDigest(id: string): string {
    return `${this.prefix}repr-digest:{${id}}`;
  }

  owner(id: string): string {
    return `${this.prefix}owner:{${id}}`;
  }
  userUploads(userId: string): string {
    return `${this.prefix}user-uploads:{${userId}}`;
  }
  get userUploadsIndexed(): string {
    return `${this.prefix}user-uploads-indexed`;
  }

  /** The part of quotaUser(user) before the hash tag, for Lua scripts that find the user themselves. */
  get quotaUserPrefix(): string {
    return `${this.prefix}quota:user:`;
  }
  quotaUser(userId: string): string {
    return `${this.quotaUserPrefix}{${userId}}`;
  }
  quotaUpload(id: string): string {
    return `${this.prefix}quota:upload:{${id}}`;
  }
  get quotaExpiring(): string {
    return `${this.prefix}quota:expiring`;
  }

  rateLimit(scope: 'user' | 'ip'): string {
    return `${this.prefix}ratelimit:create:${scope}`;
  }

  record(id: string): string {
    return `${this.prefix}record:${id}`;
  }
  recordEvents(id: string): string {
    return `${this.prefix}record-events:${id}`;
  }

  directSession(id: string): string {
    return `${this.prefix}direct:${id}`;
  }
  directLock(id: string): string {
    return `${this.prefix}direct-lock:${id}`;
  }
  get directExpiring(): string {
    return `${this.prefix}direct-expiring`;
  }
  get directPendingPut(): string {
    return `${this.prefix}direct-pending-put`;
  }
  get directStalePut(): string {
    return `${this.prefix}direct-stale-put`;
  }

  get urlSigningKey(): string {
    return `${this.prefix}url-signing-key`;
  }

  get workers(): string {
    return `${this.prefix}workers`;
  }

  get uploadBuffers(): string {
    return `${this.prefix}upload-buffers`;
  }
  get uploadBufferPeers(): string {
    return `${this.prefix}upload-buffer-peers`;
  }
  get uploadBufferChannel(): string {
    return `${this.prefix}upload-buffer`;
  }
  uploadBufferFlushes(instanceId: string): string {
    return `${this.prefix}upload-buffer-flush:${instanceId}`;
  }

  dedup(userId: string, sha256: string, size: number): string {
    return `${this.prefix}dedup:{${userId}}:${sha256.toLowerCase()}:${size}`;
  }
}
