// sharp (libvips) set-up shared by the image steps, and translation of its errors into MediaError.
// sharp does its work on libvips threads, off the JavaScript thread: the worker's event loop stays
// free while an image is decoded/encoded (see test/integration/steps-thumbnail.test.ts for the measurement).
import os from 'node:os';
import sharp from 'sharp';
import { MediaError } from './errors.js';

/** 100 megapixels: larger inputs are refused as decompression bombs. */
export const DEFAULT_LIMIT_INPUT_PIXELS = 100_000_000;

/**
 * Image types this sharp decodes (prebuilt libvips: JPEG, PNG, WebP, GIF, TIFF, AVIF; no HEIC,
 * BMP, ICO, PSD or camera RAW; SVG and PDF blocked below). Other images are stored and described
 * but get no thumbnail.
 */
export const DECODABLE_IMAGE_TYPES: ReadonlySet<string> = new Set(['image/jpeg', 'image/png', 'image/apng', 'image/webp', 'image/gif', 'image/tiff', 'image/avif']);

let configured = false;

/**
 * Once per process: refuse SVG and PDF input (scriptable / external references / expensive), use
 * all cores for libvips (sharp picks 1 thread on a 2-core machine otherwise) and keep no cache of
 * decoded images or open files between jobs.
 */
export function configureSharp(): typeof sharp {
  if (!configured) {
    configured = true;
    sharp.block({ operation: ['VipsForeignLoadSvg', 'VipsForeignLoadPdf'] });
    sharp.concurrency(Math.max(1, Math.min(os.availableParallelism(), 4)));
    sharp.cache(false);
  }
  return sharp;
}

/** Maps a sharp/libvips error to MediaError with a short reason; other errors are returned as-is. */
export function toMediaError(err: unknown, what = 'image'): MediaError {
  if (err instanceof MediaError) return err;
  const message = err instanceof Error ? err.message : String(err);
  const first = message.split('\n')[0]!.trim();
  if (/exceeds pixel limit/i.test(message)) {
    return new MediaError('pixel_limit', `${what} has too many pixels (decompression bomb guard): ${first}`, { cause: err });
  }
  if (/premature end|truncated|unexpected end|not enough data|read error|Corrupt|EOF/i.test(message)) {
    return new MediaError('truncated', `${what} is truncated or corrupt: ${first}`, { cause: err });
  }
  if (/is blocked|operation.*blocked|VipsForeignLoad(Svg|Pdf)/i.test(message)) {
    return new MediaError('blocked_format', `${what} format is not accepted (SVG/PDF input is blocked): ${first}`, { cause: err });
  }
  if (/unsupported image format|not a known file format|bad seek|no loader/i.test(message)) {
    return new MediaError('unsupported_format', `${what} format is not supported: ${first}`, { cause: err });
  }
  if (/timeout/i.test(message)) {
    return new MediaError('timeout', `${what} processing timed out: ${first}`, { cause: err });
  }
  return new MediaError('decode_failed', `${what} could not be processed: ${first}`, { cause: err });
}
