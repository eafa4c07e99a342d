// virus-scan: the first step of a run. Streams the stored object to clamd (workers/scan/clamd.ts)
// and hashes it on the way (the record's sha256, for the dedup index: no second read). Infected:
// the object is quarantined (or deleted, QUARANTINE_MODE) and the upload rejected; too large to
// scan or empty: rejected; clamd unreachable or no usable answer: retried, then failed - never
// "clean". Without a clamd and with SCAN_REQUIRED=false the task is `skipped`.
import { createHash } from 'node:crypto';
import { Transform } from 'node:stream';
import { UnrecoverableError } from 'bullmq';
import { VIRUS_SCAN_QUEUE, type StepJob } from '../../lib/queues.js';
import { scanStream, ScanTooLargeError, type ScanResult } from '../scan/clamd.js';
import type { PipelineJob } from './context.js';
import { endRun, now, step } from './step.js';

export const virusScanJob: PipelineJob<StepJob> = {
  queue: VIRUS_SCAN_QUEUE,
  task: 'virus_scan',
  worker: (p) => ({ concurrency: p.concurrency.scan }),
  handler: (ctx) => {
    const { records, storage, log, metrics } = ctx;
    const p = ctx.config.pipeline;
    if (!p.clamd) {
      if (p.scanRequired) log.error('SCAN_REQUIRED is on but no clamd is configured (CLAMD_SOCKET or CLAMD_HOST): every virus scan will fail');
      else log.warn('virus scanning is OFF (SCAN_REQUIRED=false and no clamd configured): scan tasks are marked "skipped"');
    }
    return step(ctx, 'virus_scan', async (job, watch) => {
      const { uploadId, run, location } = job.data;
      if (!p.clamd && !p.scanRequired) {
        await records.setTask(uploadId, run, 'virus_scan', { status: 'skipped', finished_at: now() });
        metrics.scanVerdicts.inc({ verdict: 'skipped' });
        return { verdict: 'skipped' };
      }
      await records.update(uploadId, run, { status: 'scanning' });
      const size = await storage.sizeOf(location);
      if (size === undefined) throw new UnrecoverableError('the uploaded object no longer exists');
      if (size === 0) {
        // clamd answers nothing usable for an empty stream; an empty file is not processed either.
        await records.setTask(uploadId, run, 'virus_scan', { status: 'skipped', error: 'empty upload', finished_at: now() });
        await endRun(ctx, uploadId, run, 'rejected', { code: 'empty', message: 'the upload is empty: nothing to scan or process' });
        metrics.scanVerdicts.inc({ verdict: 'empty' });
        return { verdict: 'empty' };
      }
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
          result = await scanStream(stream, size, {
            socket: p.clamd?.socket,
            host: p.clamd?.host,
            port: p.clamd?.socket ? undefined : p.clamd?.port,
            timeoutMs: p.clamd?.timeoutMs ?? 60_000,
            maxStreamBytes: p.scanMaxBytes,
          });
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
        // No usable answer (clamd unreachable, a timeout, a stopped stream): retried, never "clean".
        if (!watch.signal.aborted) metrics.scanVerdicts.inc({ verdict: 'error' });
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
