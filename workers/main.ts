// The worker process: the processing pipeline (workers/pipeline.ts: process-upload -> virus scan,
// metadata, thumbnails, transcode, finalize, webhooks) and the periodic cleanup of expired,
// unfinished uploads on a BullMQ job scheduler: BullMQ hands each tick to exactly one worker, so
// several worker processes never race on the same cleanup.
import http from 'node:http';
import { Queue, Worker } from 'bullmq';
import type { Config } from '../config/index.js';
import type { Logger } from '../lib/logger.js';
import { createObjectStorage } from '../lib/object-storage.js';
import { RecordStore } from '../lib/record-store.js';
import { bullmqConnectionOptions, connectRedis } from '../lib/redis.js';
import { RedisKeys } from '../lib/redis-keys.js';
import { createDatastore } from '../lib/stores/datastore.js';
import { OwnershipStore } from '../hooks/ownership.js';
import { QuotaService, releaseExpiredReservations } from '../hooks/quota.js';
import { startPipeline } from './pipeline.js';
import { runDirectCleanup } from './direct-cleanup.js';
import { MAINTENANCE_QUEUE, CLEANUP_EXPIRED_JOB } from '../lib/queues.js';

export interface RunningWorkers {
  stop(): Promise<void>;
}

export async function startWorkers(config: Config, redisUrl: string, logger: Logger): Promise<RunningWorkers> {
  const log = logger.child({ component: 'workers' });
  const redis = connectRedis(redisUrl, bullmqConnectionOptions);
  redis.on('error', (err) => log.warn({ err: err.message }, 'Redis connection error'));
  const prefix = new RedisKeys(config.redisPrefix).bullPrefix;
  const datastore = createDatastore(config, redis, log);
  const storage = createObjectStorage(config);

  const maintenance = new Queue(MAINTENANCE_QUEUE, { connection: redis, prefix });
  await maintenance.upsertJobScheduler(
    CLEANUP_EXPIRED_JOB,
    { every: config.cleanupIntervalMs },
    { name: CLEANUP_EXPIRED_JOB, opts: { removeOnComplete: 100, removeOnFail: 100 } },
  );
  const cleanupWorker = new Worker(
    MAINTENANCE_QUEUE,
    async (job) => {
      if (job.name !== CLEANUP_EXPIRED_JOB) return;
      const started = Date.now();
      // Abandoned direct-to-storage sessions and orphaned direct/ parts first (the tus store's pass
      // would abort their multipart uploads too, unaccounted); logs what it freed.
      await runDirectCleanup(config, redis, log);
      const deleted = await datastore.deleteExpired();
      // Quota reservations of uploads that expired unfinished are released (they hold bytes and a slot).
      const quota = await releaseExpiredReservations({
        quota: new QuotaService(redis, config.redisPrefix, { quotaBytes: config.access.quotaBytes, maxConcurrentUploads: config.access.maxConcurrentUploads }),
        forgetOwner: (id) => new OwnershipStore(redis, config.redisPrefix).forget(id),
        uploadState: (id) => datastore.getUpload(id).then((u) => (u.size !== undefined && u.offset === u.size ? 'finished' : 'unfinished'), () => 'missing' as const),
      });
      log.info({ deleted, released: quota.released.length, releasedBytes: quota.bytes, ms: Date.now() - started, store: config.storage }, 'cleanup of expired uploads done');
      return { deleted, released: quota.released.length };
    },
    { connection: redis, prefix, concurrency: 1 },
  );
  cleanupWorker.on('failed', (job, err) => log.error({ err, job: job?.name }, 'maintenance job failed'));
  cleanupWorker.on('error', (err) => log.warn({ err: err.message }, 'maintenance worker error'));
  log.info({ every: config.cleanupIntervalMs }, 'worker started: cleanup of expired uploads scheduled');
  const pipeline = await startPipeline({ config, redis, logger, records: new RecordStore(redis, config.redisPrefix), storage });
  const health = config.pipeline.workerHealthPort === undefined ? undefined : await startHealthServer(config.host, config.pipeline.workerHealthPort, () => redis.status === 'ready');
  if (health) log.info({ port: config.pipeline.workerHealthPort }, 'worker health check: GET /healthz');

  return {
    stop: async () => {
      health?.close();
      await pipeline.stop();
      await cleanupWorker.close();
      await maintenance.close();
      storage.close();
      redis.disconnect();
    },
  };
}

/** GET /healthz for orchestrators (docker compose, k8s): 200 while the worker's Redis connection is up. */
async function startHealthServer(host: string, port: number, healthy: () => boolean): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.url !== '/healthz') {
      res.writeHead(404).end();
      return;
    }
    const ok = healthy();
    res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ status: ok ? 'ok' : 'redis unavailable' }));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}
