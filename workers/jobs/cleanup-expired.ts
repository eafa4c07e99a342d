// cleanup-expired-uploads: the periodic housekeeping on the maintenance queue. A BullMQ job
// scheduler (every CLEANUP_INTERVAL) hands each tick to exactly one worker, so several worker
// processes never race on the same cleanup. One run: abandoned direct-to-storage sessions, expired
// unfinished tus uploads in the store, then the quota reservations and owners of uploads that
// expired unfinished.
import type { DataStore } from '@tus/utils';
import type { Processor, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../../config/index.js';
import type { Logger } from '../../lib/logger.js';
import { CLEANUP_EXPIRED_JOB, MAINTENANCE_QUEUE } from '../../lib/queues.js';
import { OwnershipStore } from '../../hooks/ownership.js';
import { QuotaService, releaseExpiredReservations } from '../../hooks/quota.js';
import { runDirectCleanup } from '../direct-cleanup.js';
import type { WorkerTuning } from './context.js';

export interface CleanupDeps {
  config: Config;
  redis: Redis;
  /** The tus store whose expired uploads are deleted (lib/stores/datastore.ts). */
  datastore: DataStore;
  log: Logger;
}

export const cleanupExpiredJob = {
  queue: MAINTENANCE_QUEUE,
  worker: (): WorkerTuning => ({ concurrency: 1 }),

  /** Registers (or updates) the schedule: one run every CLEANUP_INTERVAL. */
  async schedule(queue: Queue, config: Config): Promise<void> {
    await queue.upsertJobScheduler(CLEANUP_EXPIRED_JOB, { every: config.cleanupIntervalMs }, { name: CLEANUP_EXPIRED_JOB, opts: { removeOnComplete: 100, removeOnFail: 100 } });
  },

  handler({ config, redis, datastore, log }: CleanupDeps): Processor {
    return async (job) => {
      if (job.name !== CLEANUP_EXPIRED_JOB) return;
      const started = Date.now();
      // Abandoned direct-to-storage sessions and orphaned direct/ parts first (the tus store's pass
      // would abort their multipart uploads too, unaccounted); logs what it freed.
      await runDirectCleanup(config, redis, log);
      const deleted = await datastore.deleteExpired();
      // Reservations of uploads that expired unfinished hold their bytes and a slot until released.
      const quota = await releaseExpiredReservations({
        quota: new QuotaService(redis, config.redisPrefix, { quotaBytes: config.access.quotaBytes, maxConcurrentUploads: config.access.maxConcurrentUploads }),
        forgetOwner: (id) => new OwnershipStore(redis, config.redisPrefix).forget(id),
        uploadState: (id) => datastore.getUpload(id).then((u) => (u.size !== undefined && u.offset === u.size ? 'finished' : 'unfinished'), () => 'missing' as const),
      });
      log.info({ deleted, released: quota.released.length, releasedBytes: quota.bytes, ms: Date.now() - started, store: config.storage }, 'cleanup of expired uploads done');
      return { deleted, released: quota.released.length };
    };
  },
};
