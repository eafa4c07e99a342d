// The API server process: express app with the tus endpoint and health checks, on a Node HTTP
// server whose timeouts suit long uploads, with graceful shutdown.
import http from 'node:http';
import type { Socket } from 'node:net';
import express from 'express';
import type { Core } from '../hooks/core.js';
import { servingRefusal } from '../lib/record-store.js';
import { processingGap } from '../lib/worker-registry.js';
import { uploadsDirectory } from '../lib/stores/datastore.js';
import { TuskS3Store } from '../lib/stores/s3-store.js';
import { bootstrapBucket } from '../minio/bootstrap.js';
import { healthz, readyz, type ReadinessDeps } from './health.js';
import { handleUncaught } from './http/errors.js';
import { metricsRoute, observeRequests } from './http/metrics.js';
import { requireValidHost } from './http/public-url.js';
import { isTusPath } from './http/request-target.js';
import { requestId } from './http/request-id.js';
import { SpoolBudget } from './tus/checksum.js';
import { ConcatRegistry } from './tus/concatenation.js';
import { ReprDigestRegistry } from './tus/digest.js';
import { createTusEndpoint } from './tus/endpoint.js';
import { RedisLocker } from './tus/redis-locker.js';
import { createApiRouter } from './status/routes.js';
import { createDirectUploadsRouter } from './direct/routes.js';
import { createSignedDerivedRouter } from './status/signed-derived.js';
import { createWebUiRouter } from './http/web-ui.js';

export interface RunningServer {
  port: number;
  stop(): Promise<void>;
}

export async function startServer(core: Core): Promise<RunningServer> {
  const { config, logger, redis, subscriber, datastore, access, records } = core;
  let storage: ReadinessDeps['storage'];
  if (core.s3) {
    if (config.s3?.bootstrap) {
      const summary = await bootstrapBucket(core.s3.client, {
        bucket: core.s3.bucket,
        corsOrigins: config.corsOrigins,
        abortIncompleteAfterDays: config.s3.abortIncompleteAfterDays,
        logger,
      });
      logger.info({ bucket: core.s3.bucket, summary }, 'bucket bootstrap done');
    }
    storage = { kind: 's3', client: core.s3.client, bucket: core.s3.bucket };
  } else {
    storage = { kind: 'file', directory: uploadsDirectory(config) };
  }

  // UPLOAD_ACK=disk: PATCHes are acknowledged from this process's write buffer; what a previous
  // process left there goes to S3 first.
  const writeBuffer = config.s3?.ack === 'disk' && datastore instanceof TuskS3Store ? datastore : undefined;
  if (writeBuffer && config.s3) await writeBuffer.startWriteBuffer(config.s3.buffer, subscriber);

  const locker = new RedisLocker({
    redis,
    subscriber,
    prefix: config.redisPrefix,
    acquireTimeoutMs: config.lockAcquireTimeoutMs,
    ttlMs: config.lockTtlMs,
    logger,
    metrics: core.metrics,
  });
  const contentGate = async (id: string) => servingRefusal(await records.get(id), config.pipeline.scanRequired);
  const tusEndpoint = createTusEndpoint({
    config,
    datastore,
    locker,
    lifecycle: core.lifecycle,
    downloadStorage: storage.kind === 's3' ? storage : { kind: 'file' },
    concat: new ConcatRegistry(redis, config.redisPrefix, config.uploadExpiryMs + 86_400_000),
    reprDigests: new ReprDigestRegistry(redis, config.redisPrefix, config.uploadExpiryMs + 86_400_000),
    storage: core.storage,
    access,
    contentGate,
    spoolBudget: new SpoolBudget(config.checksumSpoolLimit),
    logger: logger.child({ component: 'tus' }),
  });
  const api = createApiRouter(core);

  let shuttingDown = false;
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', config.proxyTrust);
  // Paths are matched exactly as written: /FILES/<id> or /api/uploads/<id>/ name nothing.
  app.set('case sensitive routing', true);
  app.set('strict routing', true);
  // Request id and metrics first: every answer, an early refusal too, carries the id and is counted.
  app.use(requestId);
  app.use(observeRequests(core.metrics));
  app.use(requireValidHost);
  app.get('/healthz', healthz);
  const gap = () => processingGap(core.workers, config);
  app.get('/readyz', readyz({ redis, storage, isShuttingDown: () => shuttingDown, processingGap: gap }));
  const metrics = metricsRoute(core.metrics, config);
  if (metrics) app.get('/metrics', metrics);
  // The tus endpoint parses its own URLs (server/http/request-target.ts): one parser for the id
  // that is authorized and the id that is acted on.
  app.use((req, res, next) => {
    if (!isTusPath(req.url)) return next();
    void tusEndpoint.handle(req, res);
  });
  app.use(createSignedDerivedRouter(core));
  app.use(createDirectUploadsRouter(core));
  app.use(api.router);
  const webUi = createWebUiRouter(config);
  if (webUi) app.use(webUi);
  app.use((_req, res) => {
    res.status(404).json({ error: { code: 'not_found', message: 'No such route' } });
  });
  app.use(handleUncaught(logger));

  const server = http.createServer(app);
  // Node's default 5-minute requestTimeout would cut a long PATCH. Instead, a socket that
  // receives nothing for IDLE_TIMEOUT is closed: the stalled PATCH ends, what it received is
  // saved, and its lock is released.
  server.requestTimeout = 0;
  server.timeout = config.idleTimeoutMs;
  server.headersTimeout = Math.min(60_000, config.idleTimeoutMs);
  server.keepAliveTimeout = 5_000;
  const sockets = new Set<Socket>();
  server.on('connection', (socket) => {
    sockets.add(socket);
    core.metrics.connectionsOpen.inc();
    socket.once('close', () => {
      sockets.delete(socket);
      core.metrics.connectionsOpen.dec();
    });
  });
  server.on('clientError', (err, socket) => {
    // Malformed HTTP from a client: answer 400 if we still can, never crash.
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy(err);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;

  // A server whose uploads nothing would process says so in its log, once per change.
  let lastGap: string | undefined = '';
  const watchWorkers = async () => {
    const g = await gap().catch(() => undefined);
    const now = g?.queues.join(',');
    if (now !== lastGap && lastGap !== '') {
      if (g) logger.warn({ queues: g.queues }, g.message);
      else logger.info('workers consume every pipeline queue again');
    }
    lastGap = now;
  };
  void watchWorkers();
  // Uploads made before the listing existed get their place in it, once per Redis.
  void access.ownership
    .indexExisting(async (id) => {
      const rec = await records.get(id);
      return rec ? Date.parse(rec.base.created_at) || 0 : undefined;
    })
    .then(
      (n) => n > 0 && logger.info({ uploads: n }, 'uploads made before the listing existed were indexed'),
      (err: unknown) => logger.warn({ err }, 'could not index earlier uploads for the listing; the next start tries again'),
    );
  const workersWatch = setInterval(() => void watchWorkers(), 30_000);
  workersWatch.unref();

  async function stop(): Promise<void> {
    if (shuttingDown) return;
    shuttingDown = true;
    clearInterval(workersWatch);
    const deadline = Date.now() + config.shutdownTimeoutMs;
    server.close();
    server.closeIdleConnections();
    api.close(); // event streams end: their clients reconnect to another instance
    // Give requests in flight a third of the budget to finish on their own; then cut the
    // sockets of uploads still streaming: each PATCH then saves what it received.
    await waitUntil(() => tusEndpoint.inFlight() === 0, Math.min(deadline, Date.now() + config.shutdownTimeoutMs / 3));
    if (tusEndpoint.inFlight() > 0) logger.info({ inFlight: tusEndpoint.inFlight() }, 'shutdown: ending uploads in flight; they save what arrived');
    for (const socket of sockets) socket.destroy();
    await waitUntil(() => tusEndpoint.inFlight() === 0, deadline - 1000);
    if (tusEndpoint.inFlight() > 0) logger.warn({ inFlight: tusEndpoint.inFlight() }, 'shutdown: requests still saving at the deadline');
    // Acknowledged bytes still on this disk go to S3 now (what does not make it stays for the next start).
    await writeBuffer?.stopWriteBuffer(deadline);
    await locker.close();
  }

  return { port, stop };
}

async function waitUntil(condition: () => boolean, deadline: number): Promise<void> {
  while (!condition() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
}
