// The processing pipeline's orchestration: the process-upload consumer, one BullMQ Worker per
// step queue (own concurrency, attempts, backoff), the status record and the webhooks.
// The flow structure and job ids are in flow.ts, the record in record.ts, the steps themselves
// (clamd, file-type, ffprobe, sharp, ffmpeg) in workers/steps and workers/media.
//
// Lock renewal: every heavy step runs outside the worker's JavaScript thread - ffmpeg/ffprobe are
// child processes, sharp/libvips work runs on libuv's thread pool, the clamd INSTREAM is socket
// I/O - so the event loop stays free and BullMQ renews each job lock on time (lockDuration/2).
// Sandboxed processors would add a process per job (and a second copy of sharp) for no gain.
// Transcode gets a longer lockDuration (TRANSCODE_LOCK_DURATION) all the same.
//
// Crash safety: a worker killed mid-job (kill -9) stops renewing the lock; another worker (or
// the restarted one) takes the job as stalled and runs it again. Every step is idempotent:
// outputs go to fixed keys (derived/<id>/...), record writes carry the run and terminal states
// are written once (Lua in record.ts), webhooks have one job id per event and run.
//
// Superseded runs: every step watches its run (RecordStore.watchRun, about once a second) and,
// once a reprocess started a newer run, the upload's record was deleted or the run already ended
// (another step failed it), stops its ffmpeg/ffprobe/sharp work and writes nothing more: no
// outputs (checked again right before they are stored) and no record changes.
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Transform } from 'node:stream';
import { FlowProducer, UnrecoverableError, Worker, type Job, type Processor } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../config/index.js';
import type { Logger } from '../lib/logger.js';
import { RedisKeys } from '../lib/redis-keys.js';
import {
  detectType,
  extractMetadata,
  ffprobe,
  isAllowedType,
  makeThumbnails,
  MediaError,
  MediaRefusedError,
  probeFailure,
  ScannerUnavailableError,
  ScanTooLargeError,
  scanStream,
  transcode,
  transcodeTimeoutMs,
  type MediaMetadata,
} from './steps/index.js';
import {
  FINALIZE_QUEUE,
  METADATA_QUEUE,
  PROCESS_UPLOAD_QUEUE,
  THUMBNAIL_QUEUE,
  TRANSCODE_QUEUE,
  VIRUS_SCAN_QUEUE,
  WEBHOOK_QUEUE,
  type ProcessUploadJob,
  type ReprocessFields,
  type StepJob,
} from '../lib/queues.js';
import { createObjectStorage, type ObjectStorage } from '../lib/object-storage.js';
import { flowA, flowB } from './jobs/flow.js';
import { baseFromMetadata, DEDUP_TTL_SECONDS, publicDocument, RecordStore, type Reason, type RunStopped, type RunWatch, TERMINAL, type TaskName } from '../lib/record-store.js';
import { Webhooks } from './jobs/webhook.js';

export interface RunningPipeline {
  stop(): Promise<void>;
}

const now = () => new Date().toISOString();

function reasonOf(err: unknown): Reason {
  if (err instanceof MediaError) return { code: err.code, message: err.reason };
  if (err instanceof ScannerUnavailableError) return { code: 'scanner_unavailable', message: err.message };
  if (err instanceof Error) return { code: 'error', message: err.message };
  return { code: 'error', message: String(err) };
}

export async function startPipeline(config: Config, redis: Redis, logger: Logger): Promise<RunningPipeline> {
  const log = logger.child({ component: 'pipeline' });
  const p = config.pipeline;
  const keys = new RedisKeys(config.redisPrefix);
  const prefix = keys.bullPrefix;
  const connection = redis;
  const records = new RecordStore(redis, config.redisPrefix);
  const storage: ObjectStorage = createObjectStorage(config);
  const flows = new FlowProducer({ connection, prefix });
  const webhooks = new Webhooks(p, connection, prefix);
  const baseUrl = config.publicUrl ?? `http://${config.host === '0.0.0.0' ? '127.0.0.1' : config.host}:${config.port}`;
  const urlFor = (key: string) => storage.urlFor(key, baseUrl);
  const ffmpeg = { ffmpegPath: p.ffmpegPath, ffprobePath: p.ffprobePath };

  if (!p.clamd) {
    if (p.scanRequired) log.error('SCAN_REQUIRED is on but no clamd is configured (CLAMD_SOCKET or CLAMD_HOST): every virus scan will fail');
    else log.warn('virus scanning is OFF (SCAN_REQUIRED=false and no clamd configured): scan tasks are marked "skipped"');
  }

  async function finish(uploadId: string, run: number, status: 'rejected' | 'failed', reason: Reason, extra: Record<string, string> = {}) {
    const { statusChanged } = await records.update(uploadId, run, { status, reason: JSON.stringify(reason), ...extra });
    if (statusChanged) {
      log.info({ uploadId, run, status, reason }, `upload ${status}`);
      await webhooks.send(status === 'rejected' ? 'upload.rejected' : 'upload.failed', uploadId, run, { status, reason });
    }
  }

  /** Whether a step job belongs to the current run and the run is still going. */
  async function stillWanted(uploadId: string, run: number): Promise<boolean> {
    const rec = await records.get(uploadId);
    return !!rec && rec.run === run && !TERMINAL.includes(rec.status);
  }

  /** A temporary directory named after the step, upload and run (tusk-transcode-<id>.r<run>-XXXXXX), so an operator can tell whose ffmpeg a process is. */
  async function withTempDir<T>(label: string, job: StepJob, fn: (dir: string) => Promise<T>): Promise<T> {
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
   * Runs one step with the task bookkeeping: running -> done, or retrying / failed with a reason.
   * The body gets the run's watch: its signal stops the step's work once the run is no longer
   * current (passed to ffmpeg, ffprobe, downloads and output uploads), and check() is called
   * right before outputs are stored.
   */
  function step(task: TaskName, body: (job: Job<StepJob>, watch: RunWatch) => Promise<unknown>): Processor<StepJob> {
    return async (job) => {
      const { uploadId, run } = job.data;
      if (!(await stillWanted(uploadId, run))) return { skipped: 'not the current run, or already finished' };
      await records.patchTask(uploadId, run, task, { status: 'running', started_at: now(), error: undefined, finished_at: undefined });
      const watch = records.watchRun(uploadId, run);
      try {
        const result = await body(job, watch);
        return result;
      } catch (err) {
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
          await finish(uploadId, run, 'failed', reason);
        } else {
          await records.patchTask(uploadId, run, task, { status: 'retrying', error: reason.message });
        }
        throw unrecoverable && !(err instanceof UnrecoverableError) ? new UnrecoverableError(reason.message) : err;
      } finally {
        watch.stop();
      }
    };
  }

  // --- process-upload: the entry ------------------------------------------------------------
  const processUpload: Processor<ProcessUploadJob & ReprocessFields> = async (job) => {
    const d = job.data;
    const run = d.run ?? 1;
    // Normally the hook created the record; a job queued before the pipeline existed has none.
    const current = await records.create({ ...baseFromMetadata(d.uploadId, d.size, d.metadata ?? {}), source: d }, 'uploaded');
    const rec = await records.get(d.uploadId);
    if (current !== run || !rec) return { skipped: `run ${run} is not the current run ${current}` };
    // A completed process-upload job is never removed, so the hook's re-add on HEAD is a no-op;
    // and should one be re-run all the same, a finished run is not started again.
    if (TERMINAL.includes(rec.status)) return { skipped: `run ${run} already ${rec.status}` };
    const data: StepJob = { uploadId: d.uploadId, run, location: d.location, size: d.size };
    await webhooks.send('upload.finished', d.uploadId, run, { status: rec.status, size: d.size, filename: rec.base.filename });
    await flows.add(flowA(p, data));
    log.info({ uploadId: d.uploadId, run }, 'pipeline started');
    return { run };
  };

  // --- virus_scan ---------------------------------------------------------------------------
  const scan = step('virus_scan', async (job, watch) => {
    const { uploadId, run, location } = job.data;
    if (!p.clamd && !p.scanRequired) {
      await records.setTask(uploadId, run, 'virus_scan', { status: 'skipped', finished_at: now() });
      return { verdict: 'skipped' };
    }
    await records.update(uploadId, run, { status: 'scanning' });
    const size = await storage.sizeOf(location);
    if (size === undefined) throw new UnrecoverableError('the uploaded object no longer exists');
    if (size === 0) {
      // clamd answers nothing usable for an empty stream; an empty file is not processed either.
      await records.setTask(uploadId, run, 'virus_scan', { status: 'skipped', error: 'empty upload', finished_at: now() });
      await finish(uploadId, run, 'rejected', { code: 'empty', message: 'the upload is empty: nothing to scan or process' });
      return { verdict: 'empty' };
    }
    let result;
    // The object's sha256 on the way to clamd (for the dedup index, DEDUP_TTL_SECONDS): no second read.
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
        await finish(uploadId, run, 'rejected', { code: 'too_large_to_scan', message: err.message });
        return { verdict: 'too_large' };
      }
      throw err;
    }
    if (result.verdict === 'infected') {
      // Out of reach first, then the status: nothing derived exists yet (scan runs first), but a
      // stray output of an earlier run would go too.
      const quarantined = await storage.quarantine(uploadId, location, p.quarantineMode);
      await storage.deleteDerived(uploadId);
      await records.setTask(uploadId, run, 'virus_scan', { status: 'done', finished_at: now() });
      await finish(uploadId, run, 'rejected', { code: 'infected', message: `virus found: ${result.signature}`, signature: result.signature }, quarantined ? { 'out:quarantine': quarantined } : {});
      return { verdict: 'infected', signature: result.signature };
    }
    await records.setTask(uploadId, run, 'virus_scan', { status: 'done', finished_at: now() }, hashed === size ? { sha256: hash.digest('hex') } : {});
    return { verdict: 'clean' };
  });

  // --- metadata + validation ----------------------------------------------------------------
  const limits = { maxDurationSec: p.maxMediaDurationMs / 1000, maxPixelFrames: p.maxVideoPixelFrames, minBitsPerPixel: p.minVideoBitsPerPixel };
  const metadata = step('metadata', async (job, watch) => {
    const { uploadId, run, location } = job.data;
    await records.update(uploadId, run, { status: 'processing' });
    return withTempDir('metadata', job.data, async (dir) => {
      const file = path.join(dir, 'source');
      await storage.download(location, file, watch.signal);
      const detected = await detectType(file);
      if (!detected || !isAllowedType(detected.mime, p.allowedTypes)) {
        const rec = await records.get(uploadId);
        const claimed = rec?.base.content_type ?? rec?.base.filename ?? 'unknown';
        const message = `type ${detected?.mime ?? 'unknown'} (from the file's bytes; the client said ${claimed}) is not allowed`;
        await records.setTask(uploadId, run, 'metadata', { status: 'failed', error: message, finished_at: now() });
        await finish(uploadId, run, 'rejected', { code: 'type_not_allowed', message });
        return { rejected: true };
      }
      let meta: MediaMetadata;
      try {
        // Audio/video over the limits is refused here, from ffprobe's answer: nothing is decoded,
        // and no thumbnail or transcode job is ever queued for it.
        meta = await extractMetadata(file, detected, { timeoutMs: p.stepTimeoutMs, limitInputPixels: p.maxImagePixels, limits, ffmpeg, signal: watch.signal });
      } catch (err) {
        if (!(err instanceof MediaRefusedError)) throw err;
        log.info({ uploadId, run, code: err.code, work: err.work }, 'media refused before processing');
        await records.setTask(uploadId, run, 'metadata', { status: 'failed', error: err.reason, finished_at: now() }, err.metadata ? { 'out:metadata': JSON.stringify(err.metadata) } : {});
        await finish(uploadId, run, 'rejected', { code: err.code, message: err.reason });
        return { rejected: err.code };
      }
      const steps = {
        thumbnail: detected.kind === 'image' || (detected.kind === 'video' && meta.hasVideo !== false),
        transcode: detected.kind === 'video' || detected.kind === 'audio',
      };
      const skipped = { status: 'skipped' as const, finished_at: now() };
      if (!steps.thumbnail) await records.setTask(uploadId, run, 'thumbnail', skipped);
      if (!steps.transcode) await records.setTask(uploadId, run, 'transcode', skipped);
      await records.setTask(uploadId, run, 'metadata', { status: 'done', finished_at: now() }, { 'out:metadata': JSON.stringify(meta) });
      await flows.add(flowB(p, { ...job.data, detected, probe: meta }, steps));
      return { detected, steps };
    });
  });

  // --- thumbnails (smallest first, each published at once) ----------------------------------
  const thumbnail = step('thumbnail', async (job, watch) => {
    const { uploadId, run, location, detected, probe } = job.data;
    const meta = probe as MediaMetadata | undefined;
    return withTempDir('thumbnail', job.data, async (dir) => {
      const file = path.join(dir, 'source');
      await storage.download(location, file, watch.signal);
      const total = p.thumbnailWidths.length * p.thumbnailFormats.length;
      let done = 0;
      const made = await makeThumbnails(
        file,
        detected?.kind === 'video' ? 'video' : 'image',
        { widths: p.thumbnailWidths, formats: p.thumbnailFormats, outDir: path.join(dir, 'out'), limitInputPixels: p.maxImagePixels, timeoutMs: p.stepTimeoutMs, durationSec: meta?.durationSec, ffmpeg, signal: watch.signal },
        async (t) => {
          await watch.check(); // never over a newer run's thumbnail
          const ext = t.format === 'jpeg' ? 'jpg' : t.format;
          const key = await storage.putDerived(uploadId, `thumbnails/${t.width}.${ext}`, t.path);
          done++;
          await records.patchTask(uploadId, run, 'thumbnail', { progress: Math.min(100, Math.round((done / total) * 100)) }, {
            [`thumb:${t.width}.${t.format}`]: JSON.stringify({ width: t.width, format: t.format, key }),
          });
        },
      );
      await records.patchTask(uploadId, run, 'thumbnail', { status: 'done', progress: 100, finished_at: now() });
      return { count: Array.isArray(made) ? made.length : done };
    });
  });

  // --- transcode (HLS ladder + MP4, progress) ---------------------------------------------
  const transcodeStep = step('transcode', async (job, watch) => {
    const { uploadId, run, location, probe } = job.data;
    const meta = probe as MediaMetadata;
    // TRANSCODE_MIN_TIMEOUT + TRANSCODE_TIMEOUT_FACTOR x duration, the duration at most
    // MAX_MEDIA_DURATION (an unknown one counts as 10 min).
    const timeoutMs = transcodeTimeoutMs(meta?.durationSec, { baseMs: p.transcodeMinTimeoutMs, perSecondMs: p.transcodeTimeoutFactor * 1000, maxDurationSec: limits.maxDurationSec });
    return withTempDir('transcode', job.data, async (dir) => {
      const file = path.join(dir, 'source');
      await storage.download(location, file, watch.signal);
      let last = -1;
      let lastAt = 0;
      let pending: Promise<unknown> = Promise.resolve();
      const outDir = path.join(dir, 'out');
      // transcode() wants ffprobe's own answer (streams etc.): one more ffprobe, < 0.1 s.
      const probed = await ffprobe(file, p.stepTimeoutMs, ffmpeg, watch.signal).catch((err: unknown) => {
        throw probeFailure(err, 'ffprobe');
      });
      const result = await transcode(file, probed, {
        outDir,
        timeoutMs,
        ffmpeg,
        preset: p.transcodePreset,
        signal: watch.signal,
        onProgress: (percent: number) => {
          const pct = Math.floor(percent);
          // Throttled: at most every 500 ms and only on a change (the upload's SSE streams get each one).
          if (pct === last || (Date.now() - lastAt < 500 && pct < 100)) return;
          last = pct;
          lastAt = Date.now();
          void job.updateProgress(pct).catch(() => {});
          pending = pending.then(() => records.patchTask(uploadId, run, 'transcode', { progress: Math.min(pct, 99) })).catch(() => {});
        },
      });
      await pending;
      await watch.check(); // the same keys as a newer run's outputs: store only for the current run
      await storage.putDerivedDir(uploadId, '', outDir, watch.signal);
      const extra: Record<string, string> = {
        'out:hls': JSON.stringify({ master_key: `derived/${uploadId}/${result.hls.master}`, renditions: result.hls.renditions }),
      };
      if (result.mp4) extra['out:mp4'] = `derived/${uploadId}/${result.mp4}`;
      await records.patchTask(uploadId, run, 'transcode', { status: 'done', progress: 100, finished_at: now() }, extra);
      return { renditions: result.hls.renditions.length, mp4: !!result.mp4, elapsedMs: result.elapsedMs };
    });
  });

  // --- finalize -----------------------------------------------------------------------------
  const finalize: Processor<StepJob> = async (job) => {
    const { uploadId, run } = job.data;
    if (!(await stillWanted(uploadId, run))) return { skipped: true };
    const { statusChanged } = await records.update(uploadId, run, { status: 'ready' });
    if (statusChanged) {
      const rec = await records.get(uploadId);
      if (rec) await webhooks.send('upload.ready', uploadId, run, publicDocument(rec, urlFor));
      const owner = rec?.base.source?.owner;
      if (rec?.sha256 && owner && rec.base.size) await redis.set(keys.dedup(owner, rec.sha256, rec.base.size), uploadId, 'EX', DEDUP_TTL_SECONDS);
      log.info({ uploadId, run }, 'upload ready');
    }
    return { ready: true };
  };

  // --- workers ------------------------------------------------------------------------------
  const common = { connection, prefix };
  const wanted = new Set<string>(p.workerQueues);
  const workers: Worker[] = [];
  const consume = (queue: string, make: () => Worker) => {
    if (wanted.has(queue)) workers.push(make());
  };
  consume(PROCESS_UPLOAD_QUEUE, () => new Worker(PROCESS_UPLOAD_QUEUE, processUpload, { ...common, concurrency: 4 }));
  consume(VIRUS_SCAN_QUEUE, () => new Worker(VIRUS_SCAN_QUEUE, scan, { ...common, concurrency: p.concurrency.scan }));
  consume(METADATA_QUEUE, () => new Worker(METADATA_QUEUE, metadata, { ...common, concurrency: p.concurrency.metadata }));
  consume(THUMBNAIL_QUEUE, () => new Worker(THUMBNAIL_QUEUE, thumbnail, { ...common, concurrency: p.concurrency.thumbnail, lockDuration: 60_000 }));
  consume(
    TRANSCODE_QUEUE,
    () =>
      new Worker(TRANSCODE_QUEUE, transcodeStep, {
        ...common,
        concurrency: p.concurrency.transcode,
        lockDuration: p.transcodeLockDurationMs,
        stalledInterval: Math.min(30_000, p.transcodeLockDurationMs),
      }),
  );
  consume(FINALIZE_QUEUE, () => new Worker(FINALIZE_QUEUE, finalize, { ...common, concurrency: 4 }));
  if (wanted.has(WEBHOOK_QUEUE)) {
    const webhookWorker = webhooks.startWorker(connection, prefix, log);
    if (webhookWorker) workers.push(webhookWorker as unknown as Worker);
  }
  const taskOfQueue: Record<string, TaskName | undefined> = { [VIRUS_SCAN_QUEUE]: 'virus_scan', [METADATA_QUEUE]: 'metadata', [THUMBNAIL_QUEUE]: 'thumbnail', [TRANSCODE_QUEUE]: 'transcode' };
  for (const worker of workers) {
    worker.on('error', (err) => log.warn({ err: err.message, queue: worker.name }, 'pipeline worker error'));
    // Failures outside the processor (a job stalled too often, a parent failed by its child):
    // make them visible in the record too. Idempotent: a run's terminal status is written once.
    worker.on('failed', (job, err) => {
      const data = job?.data as StepJob | undefined;
      if (!job || !data?.uploadId || typeof data.run !== 'number') return;
      if (job.attemptsMade < (job.opts.attempts ?? 1) && !/stalled/i.test(err.message)) return;
      const task = taskOfQueue[worker.name];
      void (async () => {
        if (task) {
          const rec = await records.get(data.uploadId);
          if (rec && rec.run === data.run && rec.tasks[task].status !== 'failed' && rec.tasks[task].status !== 'done') {
            await records.patchTask(data.uploadId, data.run, task, { status: 'failed', error: err.message, finished_at: now() });
          }
        }
        await finish(data.uploadId, data.run, 'failed', { code: 'step_failed', message: `${worker.name}: ${err.message}` });
      })().catch((e: unknown) => log.warn({ err: e }, 'could not record a failed job'));
    });
  }
  log.info(
    { queues: [...wanted], concurrency: p.concurrency, scan: p.clamd ? 'clamd' : p.scanRequired ? 'required, no clamd configured' : 'skipped', webhooks: !!p.webhook },
    'processing pipeline started',
  );

  return {
    stop: async () => {
      await Promise.allSettled(workers.map((w) => w.close()));
      await flows.close();
      await webhooks.close();
      storage.close();
    },
  };
}
