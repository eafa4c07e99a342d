// The worker process: the processing pipeline (workers/pipeline.ts: process-upload -> virus scan,
// metadata, thumbnails, transcode, finalize, webhooks), the periodic cleanup of expired, unfinished
// uploads (workers/jobs/cleanup-expired.ts) and an optional health check.
import http from 'node:http';
import { Queue, Worker } from 'bullmq';
import type { Config } from '../config/index.js';
import type { Logger } from '../lib/logger.js';
import { createObjectStorage } from '../lib/object-storage.js';
import { RecordStore } from '../lib/record-store.js';
import { bullmqConnectionOptions, connectRedis } from '../lib/redis.js';
import { RedisKeys } from '../lib/redis-keys.js';
import { createDatastore } from '../lib/stores/datastore.js';
import { cleanupExpiredJob } from './jobs/cleanup-expired.js';
import { startPipeline } from './pipeline.js';

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

  const maintenance = new Queue(cleanupExpiredJob.queue, { connection: redis, prefix });
  await cleanupExpiredJob.schedule(maintenance, config);
  const cleanupWorker = new Worker(cleanupExpiredJob.queue, cleanupExpiredJob.handler({ config, redis, datastore, log }), { connection: redis, prefix, ...cleanupExpiredJob.worker() });
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
