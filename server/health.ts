// /healthz: the process is alive. /readyz: its dependencies answer (Redis, and the bucket is
// readable with the configured credentials, or the data directory is writable) — 503 naming
// the failing dependency otherwise, and while shutting down. A server without workers is ready (it
// takes uploads) but says so: `processing` names the queues no live worker consumes.
import fs from 'node:fs/promises';
import type { Request, Response } from 'express';
import type { Redis } from 'ioredis';
import type { S3Client } from '@aws-sdk/client-s3';
import type { ProcessingGap } from '../lib/worker-registry.js';
import { checkBucketReadable } from '../minio/bootstrap.js';

const CHECK_TIMEOUT_MS = 2000;

function withTimeout<T>(promise: Promise<T>, what: string): Promise<T> {
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what} did not answer within ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS).unref()),
  ]);
}

export interface ReadinessDeps {
  redis: Redis;
  storage: { kind: 's3'; client: S3Client; bucket: string } | { kind: 'file'; directory: string };
  isShuttingDown: () => boolean;
  /** Queues no live worker consumes (lib/worker-registry.ts processingGap), if any. */
  processingGap: () => Promise<ProcessingGap | undefined>;
}

export function healthz(_req: Request, res: Response): void {
  res.json({ status: 'ok' });
}

export function readyz(deps: ReadinessDeps) {
  return async (_req: Request, res: Response): Promise<void> => {
    if (deps.isShuttingDown()) {
      res.status(503).json({ status: 'unavailable', failing: ['shutting-down'] });
      return;
    }
    const checks: Record<string, Promise<unknown>> = {
      redis: withTimeout(deps.redis.ping(), 'Redis'),
      storage:
        deps.storage.kind === 's3'
          ? withTimeout(checkBucketReadable(deps.storage.client, deps.storage.bucket), 'S3')
          : withTimeout(fs.access(deps.storage.directory, fs.constants.W_OK), 'data directory'),
    };
    const results = await Promise.allSettled(Object.values(checks));
    const names = Object.keys(checks);
    const failing: Record<string, string> = {};
    results.forEach((r, i) => {
      if (r.status === 'rejected') failing[names[i] ?? '?'] = r.reason instanceof Error ? r.reason.message : String(r.reason);
    });
    if (Object.keys(failing).length) {
      res.status(503).json({ status: 'unavailable', failing: Object.keys(failing), details: failing });
      return;
    }
    const gap = await deps.processingGap().catch(() => undefined);
    res.json({ status: 'ready', ...(gap ? { processing: gap } : { processing: { code: 'ok' } }) });
  };
}
