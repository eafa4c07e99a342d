// The processing pipeline: one BullMQ Worker per job (workers/jobs/*: process-upload, virus-scan,
// extract-metadata, thumbnail, transcode, finalize, webhook) on the queues this process consumes
// (WORKER_QUEUES), each with its own concurrency, all built from one JobContext.
//
// Lock renewal: every heavy step runs outside the worker's JavaScript thread - ffmpeg/ffprobe are
// child processes, sharp/libvips work runs on libuv's thread pool, the clamd INSTREAM is socket
// I/O - so the event loop stays free and BullMQ renews each job lock on time (lockDuration/2).
// Sandboxed processors would add a process per job (and a second copy of sharp) for no gain.
//
// Crash safety: a worker killed mid-job (kill -9) stops renewing the lock; another worker (or
// the restarted one) takes the job as stalled and runs it again. Every step is idempotent:
// outputs go to fixed keys (derived/<id>/...), record writes carry the run and terminal states
// are written once (Lua in lib/record-store.ts), webhooks have one job id per event and run.
import { DelayedError, FlowProducer, Queue, WaitingError, Worker, type Processor } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../config/index.js';
import type { Logger } from '../lib/logger.js';
import type { Metrics, StepOutcome } from '../lib/metrics.js';
import type { ObjectStorage } from '../lib/object-storage.js';
import { RecordStore } from '../lib/record-store.js';
import { RedisKeys } from '../lib/redis-keys.js';
import type { Scanner } from '../lib/scanner.js';
import type { JobContext, PipelineJob } from './jobs/context.js';
import { extractMetadataJob } from './jobs/extract-metadata.js';
import { finalizeJob } from './jobs/finalize.js';
import { processUploadJob } from './jobs/process-upload.js';
import { recordFailedJob } from './jobs/step.js';
import { VIRUS_SCAN_QUEUE, WEBHOOK_QUEUE } from '../lib/queues.js';
import { thumbnailJob } from './jobs/thumbnail.js';
import { transcodeJob } from './jobs/transcode.js';
import { virusScanJob } from './jobs/virus-scan.js';
import { Webhooks, webhookJob } from './jobs/webhook.js';

export interface RunningPipeline {
  stop(): Promise<void>;
}

export interface PipelineDeps {
  config: Config;
  /** A connection for BullMQ (maxRetriesPerRequest: null); left open on stop. */
  redis: Redis;
  logger: Logger;
  /** The process's status records and object storage (hooks/core.ts). */
  records: RecordStore;
  storage: ObjectStorage;
  /** Virus scanning (tusk.ts starts it: lib/scanner.ts). */
  scanner: Scanner;
  metrics: Metrics;
}

export async function startPipeline({ config, redis, logger, records, storage, scanner, metrics }: PipelineDeps): Promise<RunningPipeline> {
  const log = logger.child({ component: 'pipeline' });
  const p = config.pipeline;
  const keys = new RedisKeys(config.redisPrefix);
  const connection = redis;
  const prefix = keys.bullPrefix;
  const flows = new FlowProducer({ connection, prefix });
  const webhooks = new Webhooks(p, connection, prefix);
  // Shutdown: steps in flight stop their work (ffmpeg, downloads, scans) and put their job back,
  // to run again after a restart (workers/jobs/step.ts), rather than being waited for or failed.
  const stopping = new AbortController();
  const ctx: JobContext = {
    config,
    redis,
    keys,
    records,
    storage,
    flows,
    webhooks,
    scanner,
    stopping: stopping.signal,
    log,
    metrics,
  };

  const wanted = new Set<string>(p.workerQueues);
  const workers: Worker[] = [];
  const consume = <T>(job: PipelineJob<T>) => {
    if (!wanted.has(job.queue)) return;
    const handler = job.handler(ctx);
    if (!handler) return;
    const timed: Processor<T> = async (j, token) => {
      const started = process.hrtime.bigint();
      let outcome: StepOutcome = 'failed';
      try {
        const result: unknown = await handler(j, token);
        outcome = 'completed';
        return result;
      } catch (err) {
        // Put back to run later (waiting for a scanner, interrupted by shutdown): not a failure.
        if (err instanceof DelayedError || err instanceof WaitingError) outcome = 'delayed';
        throw err;
      } finally {
        metrics.stepDuration.observe({ queue: job.queue, outcome }, Number(process.hrtime.bigint() - started) / 1e9);
      }
    };
    const worker = new Worker<T>(job.queue, timed, { connection, prefix, ...job.worker(p) });
    worker.on('error', (err) => log.warn({ err: err.message, queue: job.queue }, 'pipeline worker error'));
    // Failures outside the handler (a job stalled too often, a parent failed by its child) show in
    // the record too. Not a webhook's: a receiver that is down does not make the upload's processing fail.
    if (job.queue !== WEBHOOK_QUEUE) {
      worker.on('failed', (failed, err) => {
        recordFailedJob(ctx, job.queue, job.task, failed, err).catch((e: unknown) => log.warn({ err: e }, 'could not record a failed job'));
      });
    }
    workers.push(worker);
  };
  consume(processUploadJob);
  consume(virusScanJob);
  consume(extractMetadataJob);
  consume(thumbnailJob);
  consume(transcodeJob);
  consume(finalizeJob);
  consume(webhookJob);
  // Scans waiting for a scanner back off up to a minute; once one answers they go at once.
  const scanQueue = wanted.has(VIRUS_SCAN_QUEUE) ? new Queue(VIRUS_SCAN_QUEUE, { connection, prefix }) : undefined;
  const releaseWaitingScans = () => void scanQueue?.promoteJobs().catch((err: unknown) => log.warn({ err }, 'could not release the waiting scans'));
  scanner.onAvailable(releaseWaitingScans);
  // Scans that waited while no worker ran, or for a scanner that this start has (or does without: SCAN_REQUIRED=false).
  if (scanner.state().kind !== 'waiting') releaseWaitingScans();
  log.info({ queues: [...wanted], concurrency: p.concurrency, scan: scanner.state().kind, webhooks: !!p.webhook }, 'processing pipeline started');

  return {
    stop: async () => {
      stopping.abort(new Error('the worker is shutting down'));
      await Promise.allSettled(workers.map((w) => w.close()));
      await scanQueue?.close();
      await flows.close();
      await webhooks.close();
    },
  };
}
