// Which worker processes are alive and which queues they consume, so that a server can say when
// nothing processes its uploads (a `tusk server` started without `tusk worker`). Each worker
// process announces itself every HEARTBEAT_MS in one Redis hash (lib/redis-keys.ts `workers`);
// an entry not renewed for STALE_MS is a dead worker and is dropped when read.
import os from 'node:os';
import type { Redis } from 'ioredis';
import type { Config } from '../config/index.js';
import { PIPELINE_QUEUES } from '../config/index.js';
import type { RedisKeys } from './redis-keys.js';

export const HEARTBEAT_MS = 10_000;
const STALE_MS = 3 * HEARTBEAT_MS;

export interface WorkerEntry {
  id: string;
  queues: string[];
  /** Last heartbeat, ms since epoch (the worker's clock). */
  seen: number;
}

export class WorkerRegistry {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
  ) {}

  /** A worker process's id: host and pid (unique while it runs). */
  static processId(): string {
    return `${os.hostname()}:${process.pid}`;
  }

  /** Announces this worker now and every HEARTBEAT_MS; the returned function stops and withdraws it. */
  start(queues: readonly string[], id = WorkerRegistry.processId()): () => Promise<void> {
    const beat = () =>
      this.redis.hset(this.keys.workers, id, JSON.stringify({ queues, seen: Date.now() })).catch(() => {
        // Redis down: the next beat tries again; readers treat a missed beat as a dead worker after STALE_MS.
      });
    void beat();
    const timer = setInterval(() => void beat(), HEARTBEAT_MS);
    timer.unref();
    return async () => {
      clearInterval(timer);
      await this.redis.hdel(this.keys.workers, id).catch(() => {});
    };
  }

  /** Live workers (stale entries are removed on the way). */
  async live(now = Date.now()): Promise<WorkerEntry[]> {
    const all = await this.redis.hgetall(this.keys.workers);
    const live: WorkerEntry[] = [];
    for (const [id, raw] of Object.entries(all)) {
      let entry: { queues?: unknown; seen?: unknown } = {};
      try {
        entry = JSON.parse(raw) as typeof entry;
      } catch {
        // not ours: dropped below
      }
      const seen = Number(entry.seen);
      if (!Array.isArray(entry.queues) || !Number.isFinite(seen) || now - seen > STALE_MS) {
        await this.redis.hdel(this.keys.workers, id);
        continue;
      }
      live.push({ id, queues: entry.queues.map(String), seen });
    }
    return live;
  }

  /** The queues of `wanted` that no live worker consumes. */
  async unconsumed(wanted: readonly string[]): Promise<string[]> {
    const consumed = new Set((await this.live()).flatMap((w) => w.queues));
    return wanted.filter((q) => !consumed.has(q));
  }
}

/** Why uploads are not being processed: queues no live worker consumes. */
export interface ProcessingGap {
  code: 'no_worker';
  queues: string[];
  message: string;
}

/**
 * The pipeline queues this deployment needs (the webhook queue only with WEBHOOK_URL) that no live
 * worker consumes, as the notice the status API, /readyz and the server's log give; undefined when
 * every one has a worker.
 */
export async function processingGap(registry: WorkerRegistry, config: Pick<Config, 'pipeline'>): Promise<ProcessingGap | undefined> {
  const needed = PIPELINE_QUEUES.filter((q) => q !== 'webhook' || config.pipeline.webhook);
  const queues = await registry.unconsumed(needed);
  if (!queues.length) return undefined;
  const none = queues.length === needed.length;
  const message = none
    ? 'No tusk worker is running: finished uploads wait in "uploaded" until one starts (`npm run worker`, or `node dist/tusk.js worker`)'
    : `No tusk worker consumes ${queues.join(', ')}: uploads wait at that step until one does (WORKER_QUEUES)`;
  return { code: 'no_worker', queues, message };
}
