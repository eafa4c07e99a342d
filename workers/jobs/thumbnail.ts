// thumbnail: images and videos (a poster frame). Smallest first, each stored and published in the
// record as soon as it exists, so a client can show a preview while the larger ones are made.
import path from 'node:path';
import { THUMBNAIL_QUEUE, type StepJob } from '../../lib/queues.js';
import { makeThumbnails } from '../steps/thumbnail.js';
import type { MediaMetadata } from '../steps/types.js';
import type { PipelineJob } from './context.js';
import { ffmpegPaths, now, step, withTempDir } from './step.js';

export const thumbnailJob: PipelineJob<StepJob> = {
  queue: THUMBNAIL_QUEUE,
  task: 'thumbnail',
  worker: (p) => ({ concurrency: p.concurrency.thumbnail, lockDuration: 60_000 }),
  handler: (ctx) => {
    const { records, storage } = ctx;
    const p = ctx.config.pipeline;
    return step(ctx, 'thumbnail', async (job, watch) => {
      const { uploadId, run, location, detected, probe } = job.data;
      const meta = probe as MediaMetadata | undefined;
      return withTempDir(p, 'thumbnail', job.data, async (dir) => {
        const file = path.join(dir, 'source');
        await storage.download(location, file, watch.signal);
        const total = p.thumbnailWidths.length * p.thumbnailFormats.length;
        let done = 0;
        const made = await makeThumbnails(
          file,
          detected?.kind === 'video' ? 'video' : 'image',
          { widths: p.thumbnailWidths, formats: p.thumbnailFormats, outDir: path.join(dir, 'out'), limitInputPixels: p.maxImagePixels, timeoutMs: p.stepTimeoutMs, durationSec: meta?.durationSec, ffmpeg: ffmpegPaths(p), signal: watch.signal },
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
  },
};
