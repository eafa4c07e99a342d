// extract-metadata: runs after a clean scan. Detects the type from the file's bytes (never from
// what the client said) against ALLOWED_TYPES (every type by default), notes a declared type that
// contradicts it, reads the metadata (ffprobe / sharp header) and refuses audio/video over the work
// limits before anything is decoded; then adds the run's second flow with the steps the kind
// needs (thumbnail, transcode, then finalize; workers/jobs/flow.ts). Any other file (a zip, a
// CSV, unknown bytes) gets its type and size, and is ready.
import path from 'node:path';
import type { PipelineConfig } from '../../config/index.js';
import { METADATA_QUEUE, type StepJob } from '../../lib/queues.js';
import { isAllowedType } from '../../lib/allowed-types.js';
import { DECODABLE_IMAGE_TYPES } from '../media/sharp.js';
import { detectType, typeMismatch } from '../steps/detect-type.js';
import { extractMetadata } from '../steps/metadata.js';
import { MediaRefusedError, type MediaLimits, type MediaMetadata } from '../steps/types.js';
import type { PipelineJob } from './context.js';
import { flowB } from './flow.js';
import { endRun, ffmpegPaths, now, step, withTempDir } from './step.js';

/** MAX_MEDIA_DURATION, MAX_VIDEO_PIXEL_FRAMES and MIN_VIDEO_BITS_PER_PIXEL as the steps take them. */
export const mediaLimits = (p: PipelineConfig): MediaLimits => ({
  maxDurationSec: p.maxMediaDurationMs / 1000,
  maxPixelFrames: p.maxVideoPixelFrames,
  minBitsPerPixel: p.minVideoBitsPerPixel,
});

export const extractMetadataJob: PipelineJob<StepJob> = {
  queue: METADATA_QUEUE,
  task: 'metadata',
  worker: (p) => ({ concurrency: p.concurrency.metadata }),
  handler: (ctx) => {
    const { records, storage, flows, log } = ctx;
    const p = ctx.config.pipeline;
    const limits = mediaLimits(p);
    return step(ctx, 'metadata', async (job, watch) => {
      const { uploadId, run, location } = job.data;
      await records.update(uploadId, run, { status: 'processing' });
      return withTempDir(p, 'metadata', job.data, async (dir) => {
        const file = path.join(dir, 'source');
        await storage.download(location, file, watch.signal);
        const detected = await detectType(file);
        const declared = (await records.get(uploadId))?.base.content_type;
        if (!isAllowedType(detected.mime, p.allowedTypes)) {
          const message = `type ${detected.mime} (from the file's bytes; the client said ${declared ?? 'nothing'}) is not allowed`;
          await records.setTask(uploadId, run, 'metadata', { status: 'failed', error: message, finished_at: now() });
          await endRun(ctx, uploadId, run, 'rejected', { code: 'type_not_allowed', message });
          return { rejected: true };
        }
        let meta: MediaMetadata;
        try {
          // Audio/video over the limits is refused here, from ffprobe's answer: nothing is decoded,
          // and no thumbnail or transcode job is ever queued for it.
          meta = await extractMetadata(file, detected, { timeoutMs: p.stepTimeoutMs, limitInputPixels: p.maxImagePixels, limits, ffmpeg: ffmpegPaths(p), signal: watch.signal });
        } catch (err) {
          if (!(err instanceof MediaRefusedError)) throw err;
          log.info({ uploadId, run, code: err.code, work: err.work }, 'media refused before processing');
          await records.setTask(uploadId, run, 'metadata', { status: 'failed', error: err.reason, finished_at: now() }, err.metadata ? { 'out:metadata': JSON.stringify(err.metadata) } : {});
          await endRun(ctx, uploadId, run, 'rejected', { code: err.code, message: err.reason });
          return { rejected: err.code };
        }
        const mismatch = typeMismatch(declared, detected);
        if (mismatch) log.info({ uploadId, run, ...mismatch }, 'declared type contradicts the bytes');
        meta = { ...meta, size: job.data.size, ...(mismatch ? { typeMismatch: mismatch } : {}) };
        const steps = {
          thumbnail: (detected.kind === 'image' && DECODABLE_IMAGE_TYPES.has(detected.mime)) || (detected.kind === 'video' && meta.hasVideo !== false),
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
  },
};
