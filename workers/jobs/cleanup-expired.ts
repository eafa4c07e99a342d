// cleanup-expired-uploads: the periodic housekeeping on the maintenance queue. A BullMQ job
// scheduler (every CLEANUP_INTERVAL) hands each tick to exactly one worker, so several worker
// processes never race on the same cleanup. One run: abandoned direct-to-storage sessions, expired
// unfinished tus uploads in the store, then the uploads whose reservations expired unfinished are
// terminated through the lifecycle (reservation, owner, record released).
import type { Processor, Queue } from 'bullmq';
import type { Config } from '../../config/index.js';
import type { Core } from '../../hooks/core.js';
import type { DirectUploads } from '../../hooks/direct/service.js';
import { CLEANUP_EXPIRED_JOB, MAINTENANCE_QUEUE } from '../../lib/queues.js';
import type { WorkerTuning } from './context.js';

export const cleanupExpiredJob = {
  queue: MAINTENANCE_QUEUE,
  worker: (): WorkerTuning => ({ concurrency: 1 }),

  /** Registers (or updates) the schedule: one run every CLEANUP_INTERVAL. */
  async schedule(queue: Queue, config: Config): Promise<void> {
    await queue.upsertJobScheduler(CLEANUP_EXPIRED_JOB, { every: config.cleanupIntervalMs }, { name: CLEANUP_EXPIRED_JOB, opts: { removeOnComplete: 100, removeOnFail: 100 } });
  },

  handler(core: Core, direct: DirectUploads | undefined): Processor {
    const { config, datastore, lifecycle } = core;
    const log = core.logger.child({ component: 'cleanup' });
    return async (job) => {
      if (job.name !== CLEANUP_EXPIRED_JOB) return;
      const started = Date.now();
      // Abandoned direct-to-storage sessions and orphaned direct/ parts first (the tus store's pass
      // would abort their multipart uploads too, unaccounted); logs what it freed.
      await direct?.cleanup();
      const deleted = await datastore.deleteExpired();
      // Reservations of uploads that expired unfinished hold their bytes and a slot until released.
      const quota = await lifecycle.expireUnfinished((id) =>
        datastore.getUpload(id).then((u) => (u.size !== undefined && u.offset === u.size ? 'finished' : 'unfinished'), () => 'missing' as const),
      );
      log.info({ deleted, released: quota.expired.length, releasedBytes: quota.bytes, ms: Date.now() - started, store: config.storage }, 'cleanup of expired uploads done');
      return { deleted, released: quota.expired.length };
    };
  },
};
