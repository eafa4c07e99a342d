// thumbnail: images -> widths (default 160, 640, 1280) x formats (WebP, JPEG) with sharp,
// auto-oriented (EXIF), all metadata stripped (sharp writes no EXIF/XMP/GPS unless asked to), never
// upscaled. Videos -> one poster frame with ffmpeg (rotation applied by ffmpeg's autorotate), then
// the same. The smallest thumbnail is written first and handed to onEach at once, so the
// orchestrator can publish a preview while the larger ones are still being made.
import fs from 'node:fs/promises';
import path from 'node:path';
import { ffprobe, probeDuration, runFfmpeg } from '../media/ffmpeg.js';
import { configureSharp, DEFAULT_LIMIT_INPUT_PIXELS, toMediaError } from '../media/sharp.js';
import { probeFailure } from './metadata.js';
import { MediaError } from '../media/errors.js';
import type { MediaKind, Thumbnail, ThumbnailFormat, ThumbnailOptions } from './types.js';

export type { Thumbnail, ThumbnailFormat, ThumbnailOptions } from './types.js';

export const DEFAULT_THUMBNAIL_WIDTHS: readonly number[] = Object.freeze([160, 640, 1280]);
export const DEFAULT_THUMBNAIL_FORMATS: readonly ThumbnailFormat[] = Object.freeze(['webp', 'jpeg'] as const);
const DEFAULT_TIMEOUT_MS = 60_000;

/**
 * Widths to produce for a source `sourceWidth` px wide (as displayed): ascending, unique, none
 * wider than the source; if some requested width is >= the source, the source width is produced
 * once instead (clip, never upscale).
 */
export function plannedWidths(requested: readonly number[], sourceWidth: number): number[] {
  const wanted = [...new Set(requested.filter((w) => Number.isInteger(w) && w > 0))].sort((a, b) => a - b);
  const below = wanted.filter((w) => w < sourceWidth);
  if (wanted.some((w) => w >= sourceWidth) && sourceWidth > 0) below.push(sourceWidth);
  return below;
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new MediaError('timeout', 'thumbnail generation was aborted');
}

/** Extracts one frame (at min(1 s, 10% of the duration)) as PNG, rotation applied. */
async function posterFrame(input: string, opts: ThumbnailOptions): Promise<string> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  let duration = opts.durationSec;
  if (duration === undefined) {
    try {
      duration = probeDuration(await ffprobe(input, timeoutMs, opts.ffmpeg, opts.signal));
    } catch (err) {
      throw probeFailure(err, 'ffprobe');
    }
  }
  const poster = path.join(opts.outDir, '.poster.png');
  const at = duration && duration > 0 ? Math.min(1, duration * 0.1) : 0;
  for (const seek of at > 0 ? [at, 0] : [0]) {
    await fs.rm(poster, { force: true });
    try {
      await runFfmpeg(['-ss', seek.toFixed(3), '-i', input, '-map', '0:v:0', '-frames:v', '1', '-an', '-sn', '-dn', '-c:v', 'png', '-f', 'image2', poster], {
        timeoutMs,
        signal: opts.signal,
        paths: opts.ffmpeg,
      });
    } catch (err) {
      throw probeFailure(err, 'poster frame');
    }
    const stat = await fs.stat(poster).catch(() => undefined);
    if (stat && stat.size > 0) return poster;
  }
  throw new MediaError('decode_failed', 'poster frame: ffmpeg produced no frame (no decodable video frame)');
}

async function imageThumbnails(input: string, opts: ThumbnailOptions, onEach: (t: Thumbnail) => Promise<void>): Promise<Thumbnail[]> {
  const sharp = configureSharp();
  const limit = opts.limitInputPixels ?? DEFAULT_LIMIT_INPUT_PIXELS;
  const timeoutSeconds = Math.max(1, Math.ceil((opts.timeoutMs ?? DEFAULT_TIMEOUT_MS) / 1000));
  // failOn 'error': truncated or corrupt data fails, harmless decoder warnings do not.
  const open = () => sharp(input, { limitInputPixels: limit, failOn: 'error' });

  let width: number | undefined;
  try {
    const m = await open().metadata();
    // The header is read before any pixel: a bomb is refused here in about a millisecond.
    if (m.width && m.height && m.width * m.height > limit) {
      throw new MediaError('pixel_limit', `image is ${m.width}x${m.height} (${Math.round((m.width * m.height) / 1e6)} MP), above the limit of ${Math.round(limit / 1e6)} MP (decompression bomb guard)`);
    }
    width = m.autoOrient?.width ?? m.width;
  } catch (err) {
    throw toMediaError(err, 'image');
  }
  if (!width) throw new MediaError('decode_failed', 'image has no width');

  const formats = opts.formats?.length ? opts.formats : DEFAULT_THUMBNAIL_FORMATS;
  const widths = plannedWidths(opts.widths?.length ? opts.widths : DEFAULT_THUMBNAIL_WIDTHS, width);
  const results: Thumbnail[] = [];
  for (const w of widths) {
    // rotate(): EXIF auto-orientation. Output metadata: none (no withMetadata/keepExif).
    const resized = open().rotate().resize({ width: w, withoutEnlargement: true }).timeout({ seconds: timeoutSeconds });
    for (const format of formats) {
      throwIfAborted(opts.signal);
      const dest = path.join(opts.outDir, `thumb-${w}.${format === 'jpeg' ? 'jpg' : 'webp'}`);
      const tmp = `${dest}.${process.pid}.tmp`;
      let info: { width: number; height: number; size: number };
      try {
        const pipeline = format === 'jpeg' ? resized.clone().flatten({ background: '#ffffff' }).jpeg({ quality: 82, progressive: true }) : resized.clone().webp({ quality: 80 });
        info = await pipeline.toFile(tmp);
        await fs.rename(tmp, dest);
      } catch (err) {
        await fs.rm(tmp, { force: true });
        throw toMediaError(err, 'image');
      }
      const thumb: Thumbnail = { width: info.width, height: info.height, format, path: dest, bytes: info.size };
      results.push(thumb);
      await onEach(thumb);
    }
  }
  return results;
}

/**
 * Makes thumbnails of an image or a video (other kinds: MediaError('unsupported_format')).
 * Calls `onEach` for each written file, smallest width first (per width, in `formats` order), and
 * waits for it before making the next one. Resolves with all of them. Bad input (truncated,
 * corrupt, too many pixels, SVG/PDF) fails quickly with MediaError.
 */
export async function makeThumbnails(input: string, kind: MediaKind, opts: ThumbnailOptions, onEach: (t: Thumbnail) => Promise<void> = async () => {}): Promise<Thumbnail[]> {
  await fs.mkdir(opts.outDir, { recursive: true });
  throwIfAborted(opts.signal);
  if (kind === 'image') return imageThumbnails(input, opts, onEach);
  if (kind === 'video') {
    const poster = await posterFrame(input, opts);
    try {
      return await imageThumbnails(poster, opts, onEach);
    } finally {
      await fs.rm(poster, { force: true });
    }
  }
  throw new MediaError('unsupported_format', `no thumbnails for ${kind} files`);
}
