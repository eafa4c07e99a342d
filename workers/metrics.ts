// The worker process's side of the metrics (definitions: lib/metrics.ts): each pipeline queue's
// jobs by state and the age of its oldest waiting job, and whether the scanner (lib/scanner.ts)
// has a clamd that answers PING. Read when
// /metrics is scraped, not on a timer: at most once every STATS_TTL_MS whatever the scrape rate
// (a few Redis commands per queue, one PING), each read bounded in time, on the request-path Redis
// connection (which fails fast rather than queueing while Redis is down).
import { Queue } from 'bullmq';
import { PIPELINE_QUEUES } from '../config/index.js';
import type { Core } from '../hooks/core.js';
import type { QueueStats } from '../lib/metrics.js';
import { pingClamd } from './scan/clamd.js';

const STATS_TTL_MS = 5_000;
const READ_TIMEOUT_MS = 2_000;
const STATES = ['waiting', 'active', 'delayed', 'prioritized', 'waiting-children', 'failed'] as const;

export function watchQueues(core: Core): { close(): Promise<void> } {
  const { metrics, redis, keys } = core;
  const log = core.logger.child({ component: 'metrics' });
  const queues = PIPELINE_QUEUES.map((name) => new Queue(name, { connection: redis, prefix: keys.bullPrefix }));
  for (const q of queues) q.on('error', (err) => log.debug({ err: err.message, queue: q.name }, 'queue stats connection error'));

  const readStats = async (): Promise<QueueStats[]> =>
    Promise.all(
      queues.map(async (q) => {
        const counts = await q.getJobCounts(...STATES);
        // The list's far end: the job that has waited longest.
        const [oldest] = await q.getJobs(['wait'], 0, 0, true);
        return { queue: q.name, counts, oldestWaitingSeconds: oldest ? Math.max(0, (Date.now() - oldest.timestamp) / 1000) : 0 };
      }),
    );
  metrics.setQueueStats(
    cachedFor(STATS_TTL_MS, () =>
      bounded(readStats(), 'queue stats').catch((err: unknown) => {
        log.warn({ err: (err as Error).message }, 'could not read the queue stats for /metrics');
        return [];
      }),
    ),
  );
  const scanner = core.scanner;
  if (scanner) {
    metrics.setScannerProbe(
      cachedFor(STATS_TTL_MS, async () => {
        const state = scanner.state();
        if (state.kind === 'off') return undefined;
        if (state.kind === 'waiting') return false;
        return pingClamd({ ...state.target, timeoutMs: READ_TIMEOUT_MS }).then(() => true, () => false);
      }),
    );
  }
  return {
    close: async () => {
      await Promise.allSettled(queues.map((q) => q.close()));
    },
  };
}

/** `fn`'s promise, shared by every call within `ms` of the call that made it. */
function cachedFor<T>(ms: number, fn: () => Promise<T>): () => Promise<T> {
  let made = 0;
  let value: Promise<T> | undefined;
  return () => {
    if (!value || Date.now() - made >= ms) {
      made = Date.now();
      value = fn();
    }
    return value;
  };
}

function bounded<T>(promise: Promise<T>, what: string): Promise<T> {
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what} not read within ${READ_TIMEOUT_MS} ms`)), READ_TIMEOUT_MS).unref()),
  ]);
}
