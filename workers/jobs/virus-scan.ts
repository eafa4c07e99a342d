// virus-scan: the first step of a run. Streams the stored object to clamd (workers/scan/clamd.ts)
// and hashes it on the way (the record's sha256, for the dedup index: no second read). Infected:
// the object is quarantined (or deleted, QUARANTINE_MODE) and the upload rejected; too large to
// scan or empty: rejected; clamd answering nothing usable: retried, then failed - never "clean".
// No scanner at all (no signatures yet, clamd not installed or not reachable; lib/scanner.ts): the
// upload waits in `scanning` with the reason, and the job comes back by itself, with a delay
// doubling up to SCAN_WAIT_MAX_MS, for as long as the upload exists - never failed for that, never
// holding a worker slot meanwhile. Scanning off (SCAN_REQUIRED=false, no clamd): `skipped`.
import { createHash } from 'node:crypto';
import { Transform } from 'node:stream';
import { UnrecoverableError, type Job } from 'bullmq';
import type { PipelineConfig } from '../../config/index.js';
import { VIRUS_SCAN_QUEUE, type StepJob } from '../../lib/queues.js';
import { scanStream, ScannerUnreachableError, ScanTooLargeError, type ScanResult } from '../scan/clamd.js';
import type { PipelineJob } from './context.js';
import { endRun, now, step, StepWaiting } from './step.js';

/** Longest wait between two looks for a scanner. */
export const SCAN_WAIT_MAX_MS = 60_000;

/** STEP_BACKOFF doubling with each start of the job, up to SCAN_WAIT_MAX_MS. */
const waitDelay = (p: PipelineConfig, job: Job<StepJob>) => Math.min(SCAN_WAIT_MAX_MS, p.backoffMs * 2 ** Math.min(20, Math.max(0, job.attemptsStarted - 1)));

export const virusScanJob: PipelineJob<StepJob> = {
  queue: VIRUS_SCAN_QUEUE,
  task: 'virus_scan',
  worker: (p) => ({ concurrency: p.concurrency.scan }),
  handler: (ctx) => {
    const { records, storage, scanner, metrics } = ctx;
    const p = ctx.config.pipeline;
    return step(ctx, 'virus_scan', async (job, watch) => {
      const { uploadId, run, location } = job.data;
      const scanning = scanner.state();
      if (scanning.kind === 'off') {
        await records.setTask(uploadId, run, 'virus_scan', { status: 'skipped', finished_at: now() });
        metrics.scanVerdicts.inc({ verdict: 'skipped' });
        return { verdict: 'skipped' };
      }
      const wait = async (message: string): Promise<never> => {
        metrics.scanVerdicts.inc({ verdict: 'unavailable' });
        await records.update(uploadId, run, { status: 'scanning', reason: JSON.stringify({ code: 'scanner_unavailable', message }) });
        throw new StepWaiting(message, waitDelay(p, job));
      };
      // A reason left by an earlier wait no longer applies (the write is dropped once the run ended).
      await records.update(uploadId, run, { status: 'scanning', reason: '' });
      const size = await storage.sizeOf(location);
      if (size === undefined) throw new UnrecoverableError('the uploaded object no longer exists');
      if (size === 0) {
        // clamd answers nothing usable for an empty stream; an empty file is not processed either.
        await records.setTask(uploadId, run, 'virus_scan', { status: 'skipped', error: 'empty upload', finished_at: now() });
        await endRun(ctx, uploadId, run, 'rejected', { code: 'empty', message: 'the upload is empty: nothing to scan or process' });
        metrics.scanVerdicts.inc({ verdict: 'empty' });
        return { verdict: 'empty' };
      }
      if (scanning.kind === 'waiting') return wait(scanning.message);
      let result: ScanResult;
      const hash = createHash('sha256');
      let hashed = 0;
      try {
        const source = await storage.openRead(location);
        // A superseded run's scan stops streaming (clamd then answers nothing, and the step is stopped).
        const stopStreaming = () => source.destroy(watch.signal.reason as Error);
        watch.signal.addEventListener('abort', stopStreaming, { once: true });
        const tap = new Transform({
          transform(chunk: Buffer, _enc, cb) {
            hash.update(chunk);
            hashed += chunk.length;
            cb(null, chunk);
          },
        });
        const stream = source.pipe(tap);
        source.once('error', (err) => stream.destroy(err));
        try {
          result = await scanStream(stream, size, { ...scanning.target, timeoutMs: p.scanTimeoutMs, maxStreamBytes: p.scanMaxBytes });
        } finally {
          watch.signal.removeEventListener('abort', stopStreaming);
          stream.destroy();
          source.destroy();
        }
      } catch (err) {
        if (err instanceof ScanTooLargeError) {
          await records.setTask(uploadId, run, 'virus_scan', { status: 'failed', error: err.message, finished_at: now() });
          await endRun(ctx, uploadId, run, 'rejected', { code: 'too_large_to_scan', message: err.message });
          metrics.scanVerdicts.inc({ verdict: 'too_large' });
          return { verdict: 'too_large' };
        }
        // No usable answer (clamd broke off, timed out, a stopped stream): retried, never "clean".
        if (!(err instanceof ScannerUnreachableError) && !watch.signal.aborted) metrics.scanVerdicts.inc({ verdict: 'error' });
        if (err instanceof ScannerUnreachableError) return wait(scanner.unreachable(err.message));
        throw err;
      }
      if (result.verdict === 'infected') {
        // Out of reach first, then the status: nothing derived exists yet (scan runs first), but a
        // stray output of an earlier run would go too.
        const quarantined = await storage.quarantine(uploadId, location, p.quarantineMode);
        await storage.deleteDerived(uploadId);
        await records.setTask(uploadId, run, 'virus_scan', { status: 'done', finished_at: now() });
        await endRun(ctx, uploadId, run, 'rejected', { code: 'infected', message: `virus found: ${result.signature}`, signature: result.signature }, quarantined ? { 'out:quarantine': quarantined } : {});
        metrics.scanVerdicts.inc({ verdict: 'infected' });
        return { verdict: 'infected', signature: result.signature };
      }
      await records.setTask(uploadId, run, 'virus_scan', { status: 'done', finished_at: now() }, hashed === size ? { sha256: hash.digest('hex') } : {});
      metrics.scanVerdicts.inc({ verdict: 'clean' });
      return { verdict: 'clean' };
    });
  },
};
