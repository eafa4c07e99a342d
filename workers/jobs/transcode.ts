// transcode: audio/video into the HLS ladder (+ an MP4 for video), with progress in the record.
//
// Lock renewal: ffmpeg runs as a child process, so the worker's event loop stays free and BullMQ
// renews the job lock on time (lockDuration/2); a transcode still gets a longer lockDuration
// (TRANSCODE_LOCK_DURATION), and a stalled one is noticed within that or 30 s.
import path from 'node:path';
import { TRANSCODE_QUEUE, type StepJob } from '../../lib/queues.js';
import { derivedKey } from '../../lib/s3-keys.js';
import { ffprobe } from '../media/ffmpeg.js';
import { probeFailure } from '../steps/metadata.js';
import { transcode, transcodeTimeoutMs } from '../steps/transcode.js';
import type { MediaMetadata } from '../steps/types.js';
import type { PipelineJob } from './context.js';
import { ffmpegPaths, now, step, withTempDir } from './step.js';

export const transcodeJob: PipelineJob<StepJob> = {
  queue: TRANSCODE_QUEUE,
  task: 'transcode',
  worker: (p) => ({ concurrency: p.concurrency.transcode, lockDuration: p.transcodeLockDurationMs, stalledInterval: Math.min(30_000, p.transcodeLockDurationMs) }),
  handler: (ctx) => {
    const { records, storage } = ctx;
    const p = ctx.config.pipeline;
    const ffmpeg = ffmpegPaths(p);
    return step(ctx, 'transcode', async (job, watch) => {
      const { uploadId, run, location, probe } = job.data;
      const meta = probe as MediaMetadata;
      // TRANSCODE_MIN_TIMEOUT + TRANSCODE_TIMEOUT_FACTOR x duration, the duration at most
      // MAX_MEDIA_DURATION (an unknown one counts as 10 min).
      const timeoutMs = transcodeTimeoutMs(meta?.durationSec, { baseMs: p.transcodeMinTimeoutMs, perSecondMs: p.transcodeTimeoutFactor * 1000, maxDurationSec: p.maxMediaDurationMs / 1000 });
      return withTempDir(p, 'transcode', job.data, async (dir) => {
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
          'out:hls': JSON.stringify({ master_key: derivedKey(uploadId, result.hls.master), renditions: result.hls.renditions }),
        };
        if (result.mp4) extra['out:mp4'] = derivedKey(uploadId, result.mp4);
        await records.patchTask(uploadId, run, 'transcode', { status: 'done', progress: 100, finished_at: now() }, extra);
        return { renditions: result.hls.renditions.length, mp4: !!result.mp4, elapsedMs: result.elapsedMs };
      });
    });
  },
};
