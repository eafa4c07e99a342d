// tusk's entry point and its only composition root: `node dist/tusk.js <server|worker|all>`.
//   server  the API server (tus endpoint, JSON API, health checks)
//   worker  the background workers (BullMQ processors, cleanup of expired uploads)
//   all     both in one process: the all-in-one mode of `npm start`
// Everything a process shares (hooks/core.ts) is made here, once, and closed here on shutdown.
import { Queue } from 'bullmq';
import { ConfigError, loadConfig, type Config } from './config/index.js';
import { createAccessControl } from './hooks/access.js';
import type { Core } from './hooks/core.js';
import { UploadLifecycle } from './hooks/lifecycle.js';
import { startEmbeddedRedis, type EmbeddedRedis } from './lib/embedded-redis.js';
import { createLogger, type Logger } from './lib/logger.js';
import { createObjectStorage } from './lib/object-storage.js';
import { PROCESS_UPLOAD_QUEUE, type ProcessUploadJob, type ReprocessFields } from './lib/queues.js';
import { RecordStore } from './lib/record-store.js';
import { bullmqConnectionOptions, connectRedis } from './lib/redis.js';
import { RedisKeys } from './lib/redis-keys.js';
import { createS3Client, Presigner } from './lib/s3.js';
import { startScanner, type Scanner } from './lib/scanner.js';
import { createDatastore } from './lib/stores/datastore.js';
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
  const scanner = await startScanning(core, mode);
  const stops: Array<() => Promise<void>> = [];
  if (mode === 'worker' || mode === 'all') stops.push((await startWorkers(core)).stop);
  if (mode === 'server' || mode === 'all') stops.push((await startServer(core)).stop);

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
      .then(() => scanner?.stop())
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
  let s3: Core['s3'];
  if (config.storage === 's3' && config.s3) {
    const client = createS3Client(config.s3, logger.child({ component: 's3' }));
    s3 = { client, presigner: new Presigner(client, config.s3, config.pipeline.s3PublicEndpoint), bucket: config.s3.bucket };
  }
  const storage = createObjectStorage(config, s3);
  const datastore = createDatastore(config, redis, logger, s3?.client);
  const records = new RecordStore(redis, config.redisPrefix);
  const access = createAccessControl(config, redis);
  const processQueue = new Queue<ProcessUploadJob & ReprocessFields>(PROCESS_UPLOAD_QUEUE, { connection: redis, prefix: keys.bullPrefix });
  processQueue.on('error', (err) => logger.warn({ err: err.message }, 'queue connection error'));
  const lifecycle = new UploadLifecycle({ access, records, processQueue, storage, redis, keys, logger: logger.child({ component: 'lifecycle' }) });
  const core: Core = { config, logger, redis, subscriber, bullmq, keys, s3, datastore, storage, records, access, lifecycle };
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
 * Virus scanning, where workers run: a configured clamd, or a private one under DATA_DIR (stopped
 * after the workers, in shutdown), or none yet (uploads wait in `scanning`), or off. Says which in
 * one line.
 */
async function startScanning(core: Core, mode: Mode): Promise<Scanner | undefined> {
  if (mode === 'server') return undefined;
  const scanner = await startScanner(core.config, core.logger);
  core.scanner = scanner;
  const state = scanner.state().kind;
  core.logger[state === 'clamd' ? 'info' : 'warn']({ scanning: state }, `virus scanning: ${scanner.summary()}`);
  return scanner;
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
