// Cleanup of abandoned direct-to-storage uploads (server/api/direct-uploads.ts), run by the
// worker's maintenance scheduler with the cleanup of expired tus uploads:
//   - sessions initiated but not completed before their expiry (UPLOAD_EXPIRY): the multipart
//     upload is aborted (its parts freed) or the PUT object deleted, the quota reservation
//     released, the session marked `expired` and the status record removed;
//   - orphans: multipart uploads under `direct/` older than UPLOAD_EXPIRY that no open session
//     owns (a crash between CreateMultipartUpload and saving the session, a lost Redis) are
//     aborted too, so storage of orphaned parts never grows without bound.
//   - Uppy's single PUT (/s3/params) makes no completion call: such a session whose object arrived
//     with the declared size is completed here, exactly like POST /api/uploads/:id/complete.
// What was done is logged (counts and bytes of the parts).
import { AbortMultipartUploadCommand, DeleteObjectCommand, HeadObjectCommand, ListMultipartUploadsCommand, type S3Client } from '@aws-sdk/client-s3';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../config/index.js';
import { QuotaService } from '../hooks/quota.js';
import type { Logger } from '../lib/logger.js';
import { createS3Client } from '../lib/s3-client.js';
import { UploadFinishedHook } from '../hooks/upload-finished.js';
import { abortStorage, DIRECT_PREFIX, DirectSessionStore, DirectUploads, listAllParts, uploadIdOfKey } from '../server/api/direct-uploads.js';
import { PROCESS_UPLOAD_QUEUE, type ProcessUploadJob } from '../lib/queues.js';
import { RecordStore } from '../lib/record-store.js';

export interface DirectCleanupResult {
  /** Companion single PUTs completed because their object arrived. */
  completed: number;
  expired: number;
  orphans: number;
  bytesFreed: number;
}

export class DirectCleanup {
  private readonly s3: S3Client;
  private readonly sessions: DirectSessionStore;
  private readonly records: RecordStore;
  private readonly quota: QuotaService;
  private readonly bucket: string;
  private readonly queue: Queue<ProcessUploadJob>;
  private readonly direct: DirectUploads;

  constructor(
    private readonly config: Config,
    private readonly redis: Redis,
    private readonly logger: Logger,
  ) {
    if (!config.s3) throw new Error('direct cleanup needs STORAGE=s3');
    this.bucket = config.s3.bucket;
    this.s3 = createS3Client(config.s3);
    this.sessions = new DirectSessionStore(redis, config.redisPrefix);
    this.records = new RecordStore(redis, config.redisPrefix);
    this.quota = new QuotaService(redis, config.redisPrefix, { quotaBytes: config.access.quotaBytes, maxConcurrentUploads: config.access.maxConcurrentUploads });
    this.queue = new Queue<ProcessUploadJob>(PROCESS_UPLOAD_QUEUE, { connection: redis, prefix: `${config.redisPrefix}bull` });
    this.queue.on('error', (err) => logger.warn({ err: err.message }, 'queue connection error'));
    // Completion exactly as the API does it (checks, quota, record, the same process-upload job).
    this.direct = new DirectUploads({ config, redis, logger, finished: new UploadFinishedHook(this.queue, logger), quota: this.quota });
  }

  private async partBytes(key: string, uploadId: string): Promise<number> {
    try {
      return (await listAllParts(this.s3, this.bucket, key, uploadId)).reduce((sum, p) => sum + p.Size, 0);
    } catch (err) {
      this.logger.debug({ err, key }, 'could not list the parts of an abandoned upload');
      return 0;
    }
  }

  /** Companion single PUTs (no completion call in Uppy) whose object arrived with the declared size. */
  private async completeArrivedPuts(): Promise<number> {
    let completed = 0;
    const ids = await this.redis.zrange(this.sessions.pendingPutKey, 0, 999);
    for (const id of ids) {
      const s = await this.sessions.get(id);
      if (!s || s.status !== 'uploading') {
        await this.redis.zrem(this.sessions.pendingPutKey, id);
        continue;
      }
      const head = await this.s3.send(new HeadObjectCommand({ Bucket: s.bucket, Key: s.upload_key ?? s.key })).catch(() => undefined);
      if (head?.ContentLength !== s.size) continue; // not there yet (or the expiry pass deals with it)
      try {
        await this.direct.complete({ userId: s.owner }, s, {});
        completed++;
      } catch (err) {
        this.logger.warn({ err, uploadId: id }, 'could not complete an arrived single PUT');
      }
    }
    return completed;
  }

  async run(now = Date.now()): Promise<DirectCleanupResult> {
    const result: DirectCleanupResult = { expired: 0, orphans: 0, bytesFreed: 0, completed: await this.completeArrivedPuts() };
    // 1. Expired sessions (in batches; the sorted set only holds open ones).
    for (;;) {
      const ids = await this.sessions.expired(now, 200);
      if (!ids.length) break;
      for (const id of ids) {
        const s = await this.sessions.get(id);
        if (!s || s.status !== 'uploading') {
          await this.redis.zrem(this.sessions.expiringKey, id);
          if (!s) await this.quota.release(id).catch(() => 0);
          continue;
        }
        const unlock = await this.sessions.lock(id);
        if (!unlock) {
          await this.redis.zadd(this.sessions.expiringKey, now + 60_000, id); // being completed/aborted now: look again later
          continue;
        }
        try {
          // Completed (or aborted) between the read above and the lock: not ours to expire.
          const fresh = await this.sessions.get(id);
          if (!fresh || fresh.status !== 'uploading') {
            await this.redis.zrem(this.sessions.expiringKey, id);
            continue;
          }
          if (fresh.s3_upload_id) result.bytesFreed += await this.partBytes(fresh.key, fresh.s3_upload_id);
          await abortStorage(this.s3, fresh);
          await this.quota.release(id);
          await this.sessions.save({ ...fresh, status: 'expired' });
          await this.redis.del(this.records.key(id));
          result.expired++;
        } finally {
          await unlock();
        }
      }
      if (ids.length < 200) break;
    }
    // PUT keys of completed single PUTs once every URL signed for them expired (a late PUT's bytes).
    for (const id of await this.redis.zrangebyscore(this.sessions.staleKey, 0, now, 'LIMIT', 0, 500)) {
      await this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: `${DIRECT_PREFIX}/${id}.put` })).catch(() => {});
      await this.redis.zrem(this.sessions.staleKey, id);
    }
    // 2. Orphaned multipart uploads under direct/ (all pages).
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      const page = await this.s3.send(
        new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: `${DIRECT_PREFIX}/`, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker, MaxUploads: 1000 }),
      );
      for (const u of page.Uploads ?? []) {
        if (!u.Key || !u.UploadId) continue;
        const age = now - (u.Initiated?.getTime() ?? now);
        if (age < this.config.uploadExpiryMs) continue;
        const id = uploadIdOfKey(u.Key);
        const s = id ? await this.sessions.get(id) : undefined;
        if (s && s.status === 'uploading' && s.s3_upload_id === u.UploadId) continue; // its session expires it
        result.bytesFreed += await this.partBytes(u.Key, u.UploadId);
        // Only the multipart upload, never the object under the key (it may be a completed upload).
        try {
          await this.s3.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: u.Key, UploadId: u.UploadId }));
          result.orphans++;
        } catch (err) {
          this.logger.warn({ err, key: u.Key }, 'could not abort an orphaned direct multipart upload');
        }
      }
      if (!page.IsTruncated) break;
      keyMarker = page.NextKeyMarker;
      uploadIdMarker = page.NextUploadIdMarker;
      if (!keyMarker && !uploadIdMarker) break;
    }
    if (result.expired || result.orphans || result.completed) this.logger.info({ ...result }, 'direct uploads: abandoned sessions cleaned up');
    return result;
  }

  async close(): Promise<void> {
    this.s3.destroy();
    this.direct.close();
    await this.queue.close();
  }
}

const instances = new WeakMap<Redis, DirectCleanup>();

/** One run for the maintenance job (workers/main.ts); nothing to do with the file store. */
export async function runDirectCleanup(config: Config, redis: Redis, logger: Logger): Promise<DirectCleanupResult | undefined> {
  if (config.storage !== 's3' || !config.s3) return undefined;
  let cleanup = instances.get(redis);
  if (!cleanup) {
    cleanup = new DirectCleanup(config, redis, logger.child({ component: 'direct-cleanup' }));
    instances.set(redis, cleanup);
  }
  return cleanup.run();
}
