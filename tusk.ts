// tusk's entry point and its only composition root: `node dist/tusk.js <server|worker|all>`.
//   server  the API server (tus endpoint, JSON API, health checks)
//   worker  the background workers (BullMQ processors, cleanup of expired uploads)
//   all     both in one process: the all-in-one mode of `npm start`
// Everything a process shares (hooks/core.ts) is made here, once, and closed here on shutdown.
import fs from 'node:fs';
import { Queue } from 'bullmq';
import { ConfigError, loadConfig, type Config } from './config/index.js';
import { createAccessControl } from './hooks/access.js';
import { authSummary } from './hooks/auth.js';
import type { Core } from './hooks/core.js';
import { countUploads, UploadLifecycle } from './hooks/lifecycle.js';
import { startEmbeddedRedis, type EmbeddedRedis } from './lib/embedded-redis.js';
import { renderBanner, type StartupFacts } from './lib/banner.js';
import { createLogger, redactUrl, type Logger } from './lib/logger.js';
import { Metrics, metricsSummary, serveMetrics } from './lib/metrics.js';
import { createObjectStorage } from './lib/object-storage.js';
import { PROCESS_UPLOAD_QUEUE, type ProcessUploadJob, type ReprocessFields } from './lib/queues.js';
import { RecordStore } from './lib/record-store.js';
import { bullmqConnectionOptions, connectRedis } from './lib/redis.js';
import { RedisKeys } from './lib/redis-keys.js';
import { createS3Client, Presigner } from './lib/s3.js';
import { createDatastore, uploadsDirectory } from './lib/stores/datastore.js';
import { processingGap, WorkerRegistry } from './lib/worker-registry.js';
import { startServer } from './server/main.js';
import { startWorkers } from './workers/main.js';

type Mode = 'server' | 'worker' | 'all';

async function main(): Promise<void> {
  const mode = (process.argv[2] ?? 'all') as Mode;
  if (!['server', 'worker', 'all'].includes(mode)) {
    console.error(`usage: tusk <server|worker|all>   (got "${mode}")`);
    process.exit(2);
  }
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`tusk: ${err.message}\nSee README.md, "Configuration".`);
      process.exit(78); // EX_CONFIG
    }
    throw err;
  }
  const logger = createLogger(config.logLevel, `tusk-${mode}`);
  installCrashGuards(logger);

  let embedded: EmbeddedRedis | undefined;
  let redisUrl = config.redisUrl;
  if (!redisUrl) {
    embedded = await startEmbeddedRedis(config.dataDir, logger);
    redisUrl = embedded.url;
  }
  const { core, close } = compose(config, redisUrl, logger);
  const stops: Array<() => Promise<void>> = [];
  if (mode === 'worker' || mode === 'all') stops.push((await startWorkers(core)).stop);
  let port: number | undefined;
  if (mode === 'server' || mode === 'all') {
    const server = await startServer(core);
    port = server.port;
    stops.push(server.stop);
  }
  // Metrics: the process's own listener (METRICS_PORT); otherwise the faces answer /metrics.
  if (config.metrics.enabled && config.metrics.port !== undefined) {
    stops.push((await serveMetrics(core.metrics, { host: config.host, port: config.metrics.port, token: config.metrics.token }, logger)).close);
  }
  await announce(core, mode, { port, redis: embedded ? `private, ${embedded.url}` : redactUrl(redisUrl) });

  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    // Bounded: whatever happens, the process exits shortly after SHUTDOWN_TIMEOUT.
    setTimeout(() => {
      logger.error('shutdown timed out; exiting');
      process.exit(1);
    }, config.shutdownTimeoutMs + 2000).unref();
    void Promise.allSettled(stops.map((stop) => stop()))
      .then(() => close())
      .then(() => embedded?.stop())
      .then(() => {
        logger.info('stopped');
        process.exit(0);
      });
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

/** Builds what the process shares, and how to close all of it (after the faces stopped). */
function compose(config: Config, redisUrl: string, logger: Logger): { core: Core; close: () => Promise<void> } {
  // Request-path commands fail fast (503) rather than queue for long; BullMQ's workers must not
  // retry per request (their blocking commands would fail); the subscriber is in pub/sub mode.
  const redis = connectRedis(redisUrl, { maxRetriesPerRequest: 2, connectTimeout: 5000 });
  const subscriber = connectRedis(redisUrl, { connectTimeout: 5000 });
  const bullmq = connectRedis(redisUrl, bullmqConnectionOptions);
  for (const [name, conn] of [['redis', redis], ['redis-subscriber', subscriber], ['redis-bullmq', bullmq]] as const) {
    conn.on('error', (err) => logger.warn({ err: err.message, connection: name }, 'Redis connection error'));
  }
  const keys = new RedisKeys(config.redisPrefix);
  const metrics = new Metrics({ processMetrics: config.metrics.enabled });
  let s3: Core['s3'];
  if (config.storage === 's3' && config.s3) {
    const client = createS3Client(config.s3, logger.child({ component: 's3' }), metrics);
    s3 = { client, presigner: new Presigner(client, config.s3, config.pipeline.s3PublicEndpoint), bucket: config.s3.bucket };
  }
  const storage = createObjectStorage(config, s3);
  const datastore = createDatastore(config, redis, logger, s3?.client);
  const records = new RecordStore(redis, config.redisPrefix);
  const access = createAccessControl(config, redis, keys, metrics);
  const processQueue = new Queue<ProcessUploadJob & ReprocessFields>(PROCESS_UPLOAD_QUEUE, { connection: redis, prefix: keys.bullPrefix });
  processQueue.on('error', (err) => logger.warn({ err: err.message }, 'queue connection error'));
  const lifecycle = new UploadLifecycle({ access, records, processQueue, storage, redis, keys, logger: logger.child({ component: 'lifecycle' }) });
  countUploads(lifecycle, metrics);
  const workers = new WorkerRegistry(redis, keys);
  const core: Core = { config, logger, redis, subscriber, bullmq, keys, s3, datastore, storage, records, access, lifecycle, workers, metrics };
  const close = async () => {
    await processQueue.close().catch(() => {});
    storage.close();
    s3?.presigner.close();
    s3?.client.destroy();
    for (const conn of [redis, subscriber, bullmq]) conn.disconnect();
  };
  return { core, close };
}

/**
 * Says once that the process is ready and what it serves: a banner on a terminal, one JSON log line
 * otherwise; plus what is not set up (authentication off, no worker for the server's uploads).
 */
async function announce(core: Core, mode: Mode, facts: { port: number | undefined; redis: string }): Promise<void> {
  const { config, logger } = core;
  const base = config.publicUrl ?? (facts.port === undefined ? undefined : `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${facts.port}`);
  const lines: StartupFacts['lines'] = [];
  const warnings: string[] = [];
  if (base) {
    lines.push(['tus', 'tus endpoint', `${base}/files/`], ['api', 'status API', `${base}/api/uploads/<id>`]);
  }
  lines.push(['storage', 'storage', core.s3 ? `S3 bucket ${core.s3.bucket}${config.s3?.endpoint ? ` at ${config.s3.endpoint}` : ' (AWS)'}` : `local disk, ${uploadsDirectory(config)}`]);
  lines.push(['redis', 'Redis', facts.redis]);
  const p = config.pipeline;
  if (mode !== 'server') {
    const clamd = p.clamd?.socket ?? (p.clamd ? `${p.clamd.host}:${p.clamd.port}` : undefined);
    lines.push(['scan', 'virus scan', clamd ? `clamd at ${clamd}` : p.scanRequired ? 'required, but no clamd configured' : 'off (SCAN_REQUIRED=false)']);
  }
  if (mode !== 'worker') {
    const auth = authSummary(config);
    lines.push(['auth', 'authentication', auth.state]);
    if (auth.warning) warnings.push(auth.warning);
  }
  const metrics = metricsSummary(config, base, mode !== 'server');
  lines.push(['metrics', 'metrics', metrics.state]);
  if (metrics.warning) warnings.push(metrics.warning);
  if (mode === 'server') {
    const gap = await processingGap(core.workers, config).catch(() => undefined);
    const live = (await core.workers.live().catch(() => [])).length;
    lines.push(['workers', 'workers', gap ? `${live} running elsewhere; none for ${gap.queues.join(', ')}` : `${live} running elsewhere`]);
    if (gap) warnings.push(gap.message);
  } else {
    lines.push(['workers', 'workers', `in this process (${p.workerQueues.join(', ')})`]);
  }
  const version = packageVersion();
  if (process.stdout.isTTY) {
    process.stdout.write(renderBanner({ mode, version, lines, warnings }, true));
  } else {
    logger.info({ mode, version, ...Object.fromEntries(lines.map(([key, , value]) => [key, value])) }, 'tusk ready');
    for (const warning of warnings) logger.warn(warning);
  }
}

function packageVersion(): string {
  try {
    return (JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? '';
  } catch {
    return '';
  }
}

/** Nothing a client sends may take the process down: log stray errors instead of exiting. */
function installCrashGuards(logger: Logger): void {
  process.on('unhandledRejection', (reason) => logger.error({ err: reason }, 'unhandled promise rejection'));
  process.on('uncaughtException', (err) => logger.error({ err }, 'uncaught exception'));
}

main().catch((err: unknown) => {
  console.error('tusk failed to start:', err instanceof Error ? err.message : err);
  process.exit(1);
});
