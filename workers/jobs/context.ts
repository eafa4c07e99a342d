// What a pipeline job is made of, and what it is built from. Each job (one file in workers/jobs/)
// is its queue, the tuning of its BullMQ Worker and a handler made from a JobContext: the
// process's connections and stores, created once by startPipeline (workers/pipeline.ts) and
// shared by every job. A job keeps no state of its own between runs.
import type { FlowProducer, Processor, WorkerOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config, PipelineConfig } from '../../config/index.js';
import type { Logger } from '../../lib/logger.js';
import type { Metrics } from '../../lib/metrics.js';
import type { ObjectStorage } from '../../lib/object-storage.js';
import type { WebhookJob } from '../../lib/queues.js';
import type { RecordStore, TaskName } from '../../lib/record-store.js';
import type { RedisKeys } from '../../lib/redis-keys.js';
import type { Scanner } from '../../lib/scanner.js';

/** Queues webhook events of a run (workers/jobs/webhook.ts). */
export interface WebhookEvents {
  send(event: WebhookJob['event'], uploadId: string, run: number, payload: Record<string, unknown>): Promise<void>;
}

export interface JobContext {
  config: Config;
  redis: Redis;
  keys: RedisKeys;
  /** Status records; records.watchRun tells a step when its run no longer wants its work. */
  records: RecordStore;
  storage: ObjectStorage;
  /** Adds the flows of a run (workers/jobs/flow.ts). */
  flows: FlowProducer;
  webhooks: WebhookEvents;
  /** Which clamd the virus scan talks to, or why there is none yet (lib/scanner.ts). */
  scanner: Scanner;
  /** Aborted when the worker shuts down: steps stop their work and are left to run again after a restart. */
  stopping: AbortSignal;
  log: Logger;
  /** Scan verdicts, webhook deliveries (lib/metrics.ts). */
  metrics: Metrics;
}

/** What a job sets on its Worker besides the connection and the prefix. */
export type WorkerTuning = Pick<WorkerOptions, 'concurrency' | 'lockDuration' | 'stalledInterval'>;

export interface PipelineJob<T> {
  /** The queue it consumes (lib/queues.ts); WORKER_QUEUES selects the queues a process consumes. */
  queue: string;
  /** The record task it does: a failure outside its handler (a job stalled too often) is written there. */
  task?: TaskName;
  worker(config: PipelineConfig): WorkerTuning;
  /** Undefined when there is nothing to consume (webhooks without WEBHOOK_URL). */
  handler(ctx: JobContext): Processor<T> | undefined;
}
