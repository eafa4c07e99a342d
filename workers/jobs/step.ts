// The bookkeeping every step job shares: its task in the status record (running -> done, or
// retrying / failed with a reason), the run's outcome (rejected / failed, with its webhook), the
// check that a job still belongs to the current, unfinished run, the run watch that stops a step's
// work once its run is superseded, and the step's temporary directory.
//
// Superseded runs: every step watches its run (RecordStore.watchRun, about once a second) and,
// once a reprocess started a newer run, the upload's record was deleted or the run already ended
// (another step failed it), stops its ffmpeg/ffprobe/sharp work and writes nothing more: no
// outputs (checked again right before they are stored) and no record changes.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DelayedError, UnrecoverableError, WaitingError, type Job, type Processor } from 'bullmq';
import type { PipelineConfig } from '../../config/index.js';
import type { StepJob } from '../../lib/queues.js';
import { TERMINAL, type Reason, type RunStopped, type RunWatch, type TaskName } from '../../lib/record-store.js';
import { MediaError } from '../media/errors.js';
import { FfmpegError, type FfmpegPaths } from '../media/ffmpeg.js';
import { ScannerUnavailableError } from '../scan/clamd.js';
import type { JobContext } from './context.js';

export const now = () => new Date().toISOString();

export const ffmpegPaths = (p: PipelineConfig): FfmpegPaths => ({ ffmpegPath: p.ffmpegPath, ffprobePath: p.ffprobePath });

export function reasonOf(err: unknown): Reason {
  if (err instanceof MediaError) return { code: err.code, message: err.reason };
  if (err instanceof ScannerUnavailableError) return { code: 'scan_failed', message: err.message };
  if (err instanceof Error) return { code: 'error', message: err.message };
  return { code: 'error', message: String(err) };
}

/**
 * Gives the run its outcome, with its reason, and sends its webhook. Only the first outcome of a
 * run is written (the record's Lua refuses a second), so only that one sends a webhook.
 */
export async function endRun(ctx: JobContext, uploadId: string, run: number, status: 'rejected' | 'failed', reason: Reason, extra: Record<string, string> = {}): Promise<void> {
  const { statusChanged } = await ctx.records.update(uploadId, run, { status, reason: JSON.stringify(reason), ...extra });
  if (statusChanged) {
    ctx.log.info({ uploadId, run, status, reason }, `upload ${status}`);
    await ctx.webhooks.send(status === 'rejected' ? 'upload.rejected' : 'upload.failed', uploadId, run, { status, reason });
  }
}

/** Whether a step job belongs to the current run and the run is still going. */
export async function stillWanted(ctx: JobContext, uploadId: string, run: number): Promise<boolean> {
  const rec = await ctx.records.get(uploadId);
  return !!rec && rec.run === run && !TERMINAL.includes(rec.status);
}

/** A temporary directory named after the step, upload and run (tusk-transcode-<id>.r<run>-XXXXXX), so an operator can tell whose ffmpeg a process is. */
export async function withTempDir<T>(p: PipelineConfig, label: string, job: StepJob, fn: (dir: string) => Promise<T>): Promise<T> {
  const root = p.workDir ?? os.tmpdir();
  await fs.mkdir(root, { recursive: true });
  const dir = await fs.mkdtemp(path.join(root, `tusk-${label}-${job.uploadId.replace(/[^A-Za-z0-9_.+-]/g, '_')}.r${job.run}-`));
  try {
    return await fn(dir);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/**
 * Thrown by a step's body that cannot do its work yet (no virus scanner): the task is `waiting`
 * and the job comes back after `delayMs`, without using an attempt and without holding a worker
 * slot meanwhile.
 */
export class StepWaiting extends Error {
  override readonly name = 'StepWaiting';
  constructor(
    message: string,
    readonly delayMs: number,
  ) {
    super(message);
  }
}

/** A tool of the step was stopped from outside (the Ctrl-C that also reached the worker, a service manager stopping everything). */
const interruptedFromOutside = (err: unknown) => err instanceof FfmpegError && err.details.interrupted === true;

/** Whether the worker is shutting down, or starts to within `graceMs` (a signal that killed our ffmpeg is on its way to us too). */
function shuttingDown(stopping: AbortSignal, graceMs: number): Promise<boolean> {
  if (stopping.aborted || graceMs <= 0) return Promise.resolve(stopping.aborted);
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve(true);
    };
    const timer = setTimeout(() => {
      stopping.removeEventListener('abort', onAbort);
      resolve(stopping.aborted);
    }, graceMs);
    stopping.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * A step's handler with the task bookkeeping around `body`: running -> done (written by the body),
 * or retrying / failed with a reason. The body gets the run's watch: its signal stops the step's
 * work once the run is no longer current or the worker shuts down (pass it to ffmpeg, ffprobe,
 * downloads and output uploads), and check() is called right before outputs are stored. A
 * MediaError fails the run at once (the file is bad: another attempt would not help); anything
 * else is retried while attempts are left. A step interrupted by the worker's shutdown is none of
 * these: its task goes back to `pending` and its job back to the queue, to run again after a
 * restart, whatever attempt it was.
 */
export function step(ctx: JobContext, task: TaskName, body: (job: Job<StepJob>, watch: RunWatch) => Promise<unknown>): Processor<StepJob> {
  const { records, log } = ctx;
  return async (job, token) => {
    const { uploadId, run } = job.data;
    if (!(await stillWanted(ctx, uploadId, run))) return { skipped: 'not the current run, or already finished' };
    await records.patchTask(uploadId, run, task, { status: 'running', started_at: now(), error: undefined, finished_at: undefined });
    const watch = records.watchRun(uploadId, run);
    try {
      return await body(job, { ...watch, signal: AbortSignal.any([watch.signal, ctx.stopping]) });
    } catch (err) {
      if (err instanceof StepWaiting) {
        await records.patchTask(uploadId, run, task, { status: 'waiting', error: undefined, progress: undefined, started_at: undefined });
        log.debug({ uploadId, run, task, retryInMs: err.delayMs, why: err.message }, 'step waiting');
        // Should the move fail, the job's lock expires and BullMQ hands it out again as stalled.
        await job.moveToDelayed(Date.now() + err.delayMs, token).catch((e: unknown) => log.warn({ err: e, uploadId, task }, 'could not put the waiting step back'));
        throw new DelayedError();
      }
      if (!watch.signal.aborted && (await shuttingDown(ctx.stopping, interruptedFromOutside(err) ? 1000 : 0))) {
        await records.patchTask(uploadId, run, task, { status: 'pending', error: undefined, progress: undefined, started_at: undefined });
        log.info({ uploadId, run, task }, 'step interrupted by shutdown: it runs again after a restart');
        // Back to the head of its queue (no attempt used); should the move fail, the job's lock
        // expires and BullMQ hands it out again as stalled.
        await job.moveToWait(token).catch((e: unknown) => log.warn({ err: e, uploadId, task }, 'could not requeue the interrupted step'));
        throw new WaitingError();
      }
      if (watch.signal.aborted) {
        // Not a failure of this step: its run no longer wants the work, which was stopped.
        const stopped = watch.signal.reason as RunStopped;
        log.info({ uploadId, run, task, why: stopped.why }, `step stopped: ${stopped.message}`);
        if (stopped.why === 'ended') await records.patchTask(uploadId, run, task, { status: 'skipped', error: `stopped: ${stopped.message}`, finished_at: now() });
        return { stopped: stopped.why };
      }
      const reason = reasonOf(err);
      const unrecoverable = err instanceof MediaError || err instanceof UnrecoverableError;
      const final = unrecoverable || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      log.warn({ uploadId, run, task, attempt: job.attemptsMade + 1, final, reason }, 'step failed');
      if (final) {
        await records.patchTask(uploadId, run, task, { status: 'failed', error: reason.message, finished_at: now() });
        await endRun(ctx, uploadId, run, 'failed', reason);
      } else {
        await records.patchTask(uploadId, run, task, { status: 'retrying', error: reason.message });
      }
      throw unrecoverable && !(err instanceof UnrecoverableError) ? new UnrecoverableError(reason.message) : err;
    } finally {
      watch.stop();
    }
  };
}

/**
 * A job failed outside its handler (stalled too often, a parent failed by its child) or used up its
 * attempts: make it visible in the record too. Idempotent: a run's outcome is written once. Jobs
 * without an upload and run (none yet) are left alone.
 */
export async function recordFailedJob(ctx: JobContext, queue: string, task: TaskName | undefined, job: Job | undefined, err: Error): Promise<void> {
  const data = job?.data as Partial<StepJob> | undefined;
  if (!job || !data?.uploadId || typeof data.run !== 'number') return;
  if (job.attemptsMade < (job.opts.attempts ?? 1) && !/stalled/i.test(err.message)) return;
  if (task) {
    const rec = await ctx.records.get(data.uploadId);
    if (rec && rec.run === data.run && rec.tasks[task].status !== 'failed' && rec.tasks[task].status !== 'done') {
      await ctx.records.patchTask(data.uploadId, data.run, task, { status: 'failed', error: err.message, finished_at: now() });
    }
  }
  await endRun(ctx, data.uploadId, data.run, 'failed', { code: 'step_failed', message: `${queue}: ${err.message}` });
}
