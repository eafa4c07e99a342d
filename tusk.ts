// tusk's entry point: `node dist/tusk.js <server|worker|all>`.
//   server  the API server (tus endpoint, health checks)
//   worker  the background workers (BullMQ processors, cleanup of expired uploads)
//   all     both in one process: the all-in-one mode of `npm start`
import { ConfigError, loadConfig, type Config } from './config/index.js';
import { startEmbeddedRedis, type EmbeddedRedis } from './lib/embedded-redis.js';
import { createLogger, type Logger } from './lib/logger.js';
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
  const stops: Array<() => Promise<void>> = [];
  if (mode === 'worker' || mode === 'all') stops.push((await startWorkers(config, redisUrl, logger)).stop);
  if (mode === 'server' || mode === 'all') stops.push((await startServer(config, redisUrl, logger)).stop);

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
      .then(() => embedded?.stop())
      .then(() => {
        logger.info('stopped');
        process.exit(0);
      });
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
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
