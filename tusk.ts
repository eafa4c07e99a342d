#!/usr/bin/env node
// tusk's entry point and its only composition root: `node dist/tusk.js <server|worker|all>`.
//   server  the API server (tus endpoint, JSON API, health checks)
//   worker  the background workers (BullMQ processors, cleanup of expired uploads)
//   all     both in one process: the all-in-one mode of `npm start`
//   upload, status   the command-line client (cli/), a client only: nothing below is made for it
// Everything a process shares (hooks/core.ts) is made here, once, and closed here on shutdown.
import fs from 'node:fs';
import type { Config } from './config/index.js';
import type { Core } from './hooks/core.js';
import type { EmbeddedRedis } from './lib/embedded-redis.js';
import type { StartupFacts } from './lib/banner.js';
import type { Logger } from './lib/logger.js';
import type { ProcessUploadJob, ReprocessFields } from './lib/queues.js';
import type { Scanner } from './lib/scanner.js';

/**
 * The modules of the server and worker processes, loaded only when one is started: the
 * command-line client (cli/) shares this entry point and must start light (no express, AWS SDK,
 * BullMQ or sharp in its memory).
 */
async function loadModules() {
  const [bullmq, config, access, auth, lifecycle, embeddedRedis, banner, logger, metrics, objectStorage, queues, recordStore, redis, redisKeys, s3, datastore, workerRegistry, scanner, signedUrls, server, workers] =
    await Promise.all([
      import('bullmq'),
      import('./config/index.js'),
      import('./hooks/access.js'),
      import('./hooks/auth.js'),
      import('./hooks/lifecycle.js'),
      import('./lib/embedded-redis.js'),
      import('./lib/banner.js'),
      import('./lib/logger.js'),
      import('./lib/metrics.js'),
      import('./lib/object-storage.js'),
      import('./lib/queues.js'),
      import('./lib/record-store.js'),
      import('./lib/redis.js'),
      import('./lib/redis-keys.js'),
      import('./lib/s3.js'),
      import('./lib/stores/datastore.js'),
      import('./lib/worker-registry.js'),
      import('./lib/scanner.js'),
      import('./lib/signed-urls.js'),
      import('./server/main.js'),
      import('./workers/main.js'),
    ]);
  return {
    ...bullmq,
    ...config,
    ...access,
    ...auth,
    ...lifecycle,
    ...embeddedRedis,
    ...banner,
    ...logger,
    ...metrics,
    ...objectStorage,
    ...queues,
    ...recordStore,
    ...redis,
    ...redisKeys,
    ...s3,
    ...datastore,
    ...workerRegistry,
    ...scanner,
    ...signedUrls,
    ...server,
    ...workers,
  };
}
type Modules = Awaited<ReturnType<typeof loadModules>>;

type Mode = 'server' | 'worker' | 'all';

async function main(): Promise<void> {
  if (process.argv[2] === 'upload' || process.argv[2] === 'status') {
    process.exit(await (await import('./cli/main.js')).main(process.argv.slice(2)));
  }
  const mode = (process.argv[2] ?? 'all') as Mode;
  if (!['server', 'worker', 'all'].includes(mode)) {
    console.error(`usage: tusk <server|worker|all>  or  tusk <upload|status> --help   (got "${mode}")`);
    process.exit(2);
  }
  const m = await loadModules();
  let config: Config;
  try {
    config = m.loadConfig();
  } catch (err) {
    if (err instanceof m.ConfigError) {
      console.error(`tusk: ${err.message}\nSee README.md, "Configuration".`);
      process.exit(78); // EX_CONFIG
    }
    throw err;
  }
  const logger = m.createLogger(config.logLevel, `tusk-${mode}`);
  installCrashGuards(logger);

  let embedded: EmbeddedRedis | undefined;
  let redisUrl = config.redisUrl;
  if (!redisUrl) {
    embedded = await m.startEmbeddedRedis(config.dataDir, logger);
    redisUrl = embedded.url;
  }
  const { core, close } = compose(m, config, redisUrl, logger);
  const scanner = await startScanning(m, core, mode);
  const stops: Array<() => Promise<void>> = [];
  if (mode === 'worker' || mode === 'all') stops.push((await m.startWorkers(core)).stop);
  let port: number | undefined;
  if (mode === 'server' || mode === 'all') {
    const server = await m.startServer(core);
    port = server.port;
    stops.push(server.stop);
  }
  // Metrics: the process's own listener (METRICS_PORT); otherwise the faces answer /metrics.
  if (config.metrics.enabled && config.metrics.port !== undefined) {
    stops.push((await m.serveMetrics(core.metrics, { host: config.host, port: config.metrics.port, token: config.metrics.token }, logger)).close);
  }
  await announce(m, core, mode, { port, redis: embedded ? `private, ${embedded.url}` : m.redactUrl(redisUrl) });

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
function compose(m: Modules, config: Config, redisUrl: string, logger: Logger): { core: Core; close: () => Promise<void> } {
  // Request-path commands fail fast (503) rather than queue for long; BullMQ's workers must not
  // retry per request (their blocking commands would fail); the subscriber is in pub/sub mode.
  const redis = m.connectRedis(redisUrl, { maxRetriesPerRequest: 2, connectTimeout: 5000 });
  const subscriber = m.connectRedis(redisUrl, { connectTimeout: 5000 });
  const bullmq = m.connectRedis(redisUrl, m.bullmqConnectionOptions);
  for (const [name, conn] of [['redis', redis], ['redis-subscriber', subscriber], ['redis-bullmq', bullmq]] as const) {
    conn.on('error', (err) => logger.warn({ err: err.message, connection: name }, 'Redis connection error'));
  }
  const keys = new m.RedisKeys(config.redisPrefix);
  const metrics = new m.Metrics({ processMetrics: config.metrics.enabled });
  let s3: Core['s3'];
  if (config.storage === 's3' && config.s3) {
    const client = m.createS3Client(config.s3, logger.child({ component: 's3' }), metrics);
    s3 = { client, presigner: new m.Presigner(client, config.s3, config.pipeline.s3PublicEndpoint), bucket: config.s3.bucket };
  }
  const signer = new m.DerivedUrlSigner(m.signingKeyLoader(redis, keys, config.urlSigningSecret), config.pipeline.signedGetUrlTtlMs);
  const storage = m.createObjectStorage(config, s3, signer);
  const datastore = m.createDatastore(config, redis, logger, s3?.client, metrics);
  const records = new m.RecordStore(redis, config.redisPrefix);
  const access = m.createAccessControl(config, redis, keys, metrics);
  const processQueue = new m.Queue<ProcessUploadJob & ReprocessFields>(m.PROCESS_UPLOAD_QUEUE, { connection: redis, prefix: keys.bullPrefix });
  processQueue.on('error', (err) => logger.warn({ err: err.message }, 'queue connection error'));
  const lifecycle = new m.UploadLifecycle({ access, records, processQueue, storage, redis, keys, logger: logger.child({ component: 'lifecycle' }) });
  const workers = new m.WorkerRegistry(redis, keys);
  m.countUploads(lifecycle, metrics);
  const core: Core = { config, logger, redis, subscriber, bullmq, keys, s3, datastore, storage, signer, records, access, lifecycle, workers, metrics };
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
async function announce(m: Modules, core: Core, mode: Mode, facts: { port: number | undefined; redis: string }): Promise<void> {
  const { config, logger } = core;
  const base = config.publicUrl ?? (facts.port === undefined ? undefined : `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${facts.port}`);
  const lines: StartupFacts['lines'] = [];
  const warnings: string[] = [];
  if (base) {
    lines.push(['tus', 'tus endpoint', `${base}/files/`], ['api', 'status API', `${base}/api/uploads/<id>`]);
  }
  const peer = m.writeBufferPeerUrl(core.datastore);
  const forwarded = peer ? `; takes other instances' PATCHes for uploads held here at ${peer}` : '';
  const ack = config.s3?.ack === 'disk' && mode !== 'worker' ? `; PATCHes acknowledged once on this disk (${config.s3.buffer.directory}), then pushed${forwarded}` : '';
  lines.push(['storage', 'storage', core.s3 ? `S3 bucket ${core.s3.bucket}${config.s3?.endpoint ? ` at ${config.s3.endpoint}` : ' (AWS)'}${ack}` : `local disk, ${m.uploadsDirectory(config)}`]);
  lines.push(['redis', 'Redis', facts.redis]);
  const p = config.pipeline;
  if (core.scanner) {
    lines.push(['scan', 'virus scan', core.scanner.summary()]);
    if (core.scanner.state().kind === 'waiting' && process.stdout.isTTY) warnings.push(`virus scanning: ${core.scanner.summary()}`);
  }
  if (mode !== 'worker') {
    const auth = m.authSummary(config);
    lines.push(['auth', 'authentication', auth.state]);
    if (auth.warning) warnings.push(auth.warning);
  }
  const metrics = m.metricsSummary(config, base, mode !== 'server');
  lines.push(['metrics', 'metrics', metrics.state]);
  if (metrics.warning) warnings.push(metrics.warning);
  if (mode === 'server') {
    const gap = await m.processingGap(core.workers, config).catch(() => undefined);
    const live = (await core.workers.live().catch(() => [])).length;
    lines.push(['workers', 'workers', gap ? `${live} running elsewhere; none for ${gap.queues.join(', ')}` : `${live} running elsewhere`]);
    if (gap) warnings.push(gap.message);
  } else {
    lines.push(['workers', 'workers', `in this process (${p.workerQueues.join(', ')})`]);
  }
  const version = packageVersion();
  if (process.stdout.isTTY) {
    process.stdout.write(m.renderBanner({ mode, version, lines, warnings }, true));
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

/**
 * Virus scanning, where workers run: a configured clamd, or a private one under DATA_DIR (stopped
 * after the workers, in shutdown), or none yet (uploads wait in `scanning`), or off. Says which in
 * one line.
 */
async function startScanning(m: Modules, core: Core, mode: Mode): Promise<Scanner | undefined> {
  if (mode === 'server') return undefined;
  const scanner = await m.startScanner(core.config, core.logger);
  core.scanner = scanner;
  const state = scanner.state().kind;
  // On a terminal the banner says it (announce).
  if (!process.stdout.isTTY) core.logger[state === 'clamd' ? 'info' : 'warn']({ scanning: state }, `virus scanning: ${scanner.summary()}`);
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
