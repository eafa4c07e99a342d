// The worker process: the processing pipeline (workers/pipeline.ts: process-upload -> virus scan,
// metadata, thumbnails, transcode, finalize, webhooks), the periodic cleanup of expired, unfinished
// uploads (workers/jobs/cleanup-expired.ts), an optional health check, and the metrics of the
// queues (workers/metrics.ts), answered on the health port unless METRICS_PORT has its own listener.
import http from 'node:http';
import { Queue, Worker } from 'bullmq';
import type { Core } from '../hooks/core.js';
import { DirectUploads } from '../hooks/direct/service.js';
import { answerMetricsRequest, type Metrics } from '../lib/metrics.js';
import { cleanupExpiredJob } from './jobs/cleanup-expired.js';
import { watchQueues } from './metrics.js';
import { startPipeline } from './pipeline.js';

export interface RunningWorkers {
  stop(): Promise<void>;
}

export async function startWorkers(core: Core): Promise<RunningWorkers> {
  const { config, bullmq: redis } = core;
  const log = core.logger.child({ component: 'workers' });
  const prefix = core.keys.bullPrefix;
  const direct = core.s3 ? new DirectUploads(core) : undefined;

  const maintenance = new Queue(cleanupExpiredJob.queue, { connection: redis, prefix });
  await cleanupExpiredJob.schedule(maintenance, config);
  const cleanupWorker = new Worker(cleanupExpiredJob.queue, cleanupExpiredJob.handler(core, direct), { connection: redis, prefix, ...cleanupExpiredJob.worker() });
  cleanupWorker.on('failed', (job, err) => log.error({ err, job: job?.name }, 'maintenance job failed'));
  cleanupWorker.on('error', (err) => log.warn({ err: err.message }, 'maintenance worker error'));
  log.info({ every: config.cleanupIntervalMs }, 'worker started: cleanup of expired uploads scheduled');
  if (!core.scanner) throw new Error('startWorkers: core.scanner is not set (tusk.ts starts the scanner where workers run)');
  const pipeline = await startPipeline({ config, redis, records: core.records, storage: core.storage, scanner: core.scanner, logger: core.logger, metrics: core.metrics });
  // Servers tell their clients when nothing would process their uploads (lib/worker-registry.ts).
  const withdraw = core.workers.start(config.pipeline.workerQueues);
  const queueMetrics = config.metrics.enabled ? watchQueues(core) : undefined;
  // The health port answers /metrics too, unless METRICS_PORT has its own listener (tusk.ts).
  const metricsHere = config.metrics.enabled && config.metrics.port === undefined ? { metrics: core.metrics, token: config.metrics.token } : undefined;
  const health = config.pipeline.workerHealthPort === undefined ? undefined : await startHealthServer(config.host, config.pipeline.workerHealthPort, () => redis.status === 'ready', metricsHere);
  if (health) log.info({ port: config.pipeline.workerHealthPort, metrics: !!metricsHere }, `worker health check: GET /healthz${metricsHere ? ', GET /metrics' : ''}`);

  return {
    stop: async () => {
      await withdraw();
      health?.close();
      await queueMetrics?.close();
      await pipeline.stop();
      await cleanupWorker.close();
      await maintenance.close();
    },
  };
}

/** GET /healthz for orchestrators (docker compose, k8s): 200 while the worker's Redis connection is up. */
async function startHealthServer(host: string, port: number, healthy: () => boolean, metrics?: { metrics: Metrics; token: string | undefined }): Promise<http.Server> {
  const answer = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (metrics && (await answerMetricsRequest(req, res, metrics.metrics, metrics.token))) return;
    if (req.url !== '/healthz') {
      res.writeHead(404).end();
      return;
    }
    const ok = healthy();
    res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ status: ok ? 'ok' : 'redis unavailable' }));
  };
  const server = http.createServer((req, res) => {
    answer(req, res).catch(() => (res.headersSent ? res.destroy() : res.writeHead(500).end()));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}
