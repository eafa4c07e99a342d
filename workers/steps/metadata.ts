// metadata + validation, part 2: technical metadata for the status record. Video/audio through
// ffprobe (child process), images through sharp's header read (no pixel decode). GPS is reported
// only as a boolean: coordinates are never read into the result. With `limits`, audio/video that
// asks for more work than allowed is refused here, before anything is decoded (limits.ts).
import fs from 'node:fs/promises';
import { exifHasGps, xmpHasGps } from '../media/exif.js';
import { FfmpegError, ffprobe, firstStream, parseRate, probeDuration, streamRotation, type FfmpegPaths, type ProbeResult } from '../media/ffmpeg.js';
import { configureSharp, DECODABLE_IMAGE_TYPES, DEFAULT_LIMIT_INPUT_PIXELS, toMediaError } from '../media/sharp.js';
import { checkMediaLimits, mediaWork } from './limits.js';
import { MediaError } from '../media/errors.js';
import type { DetectedType, MediaLimits, MediaMetadata } from './types.js';

export type { MediaMetadata } from './types.js';

export interface MetadataOptions {
  /** ffprobe time limit; default 30 s. */
  timeoutMs?: number;
  /** Images above this many pixels fail with MediaError('pixel_limit'); default 100 MP. */
  limitInputPixels?: number;
  /** Audio/video over these is refused with MediaRefusedError (no limits: not checked). */
  limits?: MediaLimits;
  ffmpeg?: FfmpegPaths;
  /** Stops ffprobe (the upload's run was superseded). */
  signal?: AbortSignal;
}

/** Turns an ffprobe/ffmpeg failure on the input into MediaError (the file is bad, not the tool). */
export function probeFailure(err: unknown, what: string): Error {
  if (!(err instanceof FfmpegError)) return err as Error;
  if (err.details.spawnFailed) return err; // our installation, not the file: let the job retry/fail loudly
  if (err.details.aborted) return err; // stopped on purpose: says nothing about the file
  if (err.details.interrupted) return err; // killed from outside (Ctrl-C, a service stop): not the file either
  if (err.details.timedOut) return new MediaError('timeout', `${what} timed out: ${err.message}`, { cause: err });
  const tail = err.details.stderrTail;
  if (/moov atom not found|Invalid data found|End of file|truncat|partial file|corrupt/i.test(tail)) {
    return new MediaError('truncated', `${what}: file is truncated or corrupt (${lastLine(tail)})`, { cause: err });
  }
  return new MediaError('decode_failed', `${what} failed: ${lastLine(tail) || err.message}`, { cause: err });
}

function lastLine(text: string): string {
  return text.split('\n').filter(Boolean).slice(-1)[0]?.trim() ?? '';
}

const num = (v: string | number | undefined): number | undefined => {
  const n = Number(v);
  return v !== undefined && v !== '' && Number.isFinite(n) ? n : undefined;
};

/** Metadata of an audio/video file from an ffprobe result (exported for the transcode step's callers). */
export function metadataFromProbe(probe: ProbeResult, detected: DetectedType): MediaMetadata {
  const video = firstStream(probe, 'video');
  const audio = firstStream(probe, 'audio');
  const rotation = streamRotation(video);
  const swap = rotation === 90 || rotation === 270;
  const meta: MediaMetadata = {
    kind: video ? (detected.kind === 'audio' ? 'audio' : 'video') : audio ? 'audio' : detected.kind,
    mime: detected.mime,
    durationSec: probeDuration(probe),
    container: probe.format.format_name,
    bitrate: num(probe.format.bit_rate),
    hasVideo: Boolean(video),
    hasAudio: Boolean(audio),
  };
  // An .m4a/.mp3 with cover art has an attached_pic stream, which firstStream() skips.
  if (meta.kind === 'video' && !video) meta.kind = 'audio';
  if (video) {
    meta.videoCodec = video.codec_name;
    meta.width = video.width;
    meta.height = video.height;
    meta.displayWidth = swap ? video.height : video.width;
    meta.displayHeight = swap ? video.width : video.height;
    meta.fps = parseRate(video.avg_frame_rate) ?? parseRate(video.r_frame_rate);
    meta.rotation = rotation;
  }
  if (audio) {
    meta.audioCodec = audio.codec_name;
    meta.audioSampleRate = num(audio.sample_rate);
    meta.audioChannels = audio.channels;
  }
  return meta;
}

async function imageMetadata(path: string, detected: DetectedType, opts: MetadataOptions): Promise<MediaMetadata> {
  const sharp = configureSharp();
  const limit = opts.limitInputPixels ?? DEFAULT_LIMIT_INPUT_PIXELS;
  let m: Awaited<ReturnType<ReturnType<typeof sharp>['metadata']>>;
  try {
    m = await sharp(path, { limitInputPixels: limit }).metadata();
  } catch (err) {
    throw toMediaError(err, 'image');
  }
  if (m.width && m.height && m.width * m.height > limit) {
    throw new MediaError('pixel_limit', `image is ${m.width}x${m.height} (${Math.round((m.width * m.height) / 1e6)} MP), above the limit of ${Math.round(limit / 1e6)} MP`);
  }
  const orientation = m.orientation;
  return {
    kind: 'image',
    mime: detected.mime,
    format: m.format,
    width: m.width,
    height: m.height,
    displayWidth: m.autoOrient?.width ?? m.width,
    displayHeight: m.autoOrient?.height ?? m.height,
    orientation,
    hasGps: exifHasGps(m.exif) || xmpHasGps(m.xmp),
    hasAlpha: m.hasAlpha,
    pages: m.pages,
  };
}

/**
 * Metadata for the status record. Rejects with MediaError when the file cannot be read as what
 * `detected` says (truncated, corrupt, pixel bomb), with MediaRefusedError when audio/video is over
 * `opts.limits`; "other" kinds, and images sharp does not decode, get only mime/kind.
 */
export async function extractMetadata(path: string, detected: DetectedType, opts: MetadataOptions = {}): Promise<MediaMetadata> {
  if (detected.kind === 'image') return DECODABLE_IMAGE_TYPES.has(detected.mime) ? imageMetadata(path, detected, opts) : { kind: 'image', mime: detected.mime };
  if (detected.kind === 'video' || detected.kind === 'audio') {
    let probe: ProbeResult;
    try {
      probe = await ffprobe(path, opts.timeoutMs ?? 30_000, opts.ffmpeg, opts.signal);
    } catch (err) {
      throw probeFailure(err, 'ffprobe');
    }
    const meta = metadataFromProbe(probe, detected);
    if (!meta.hasVideo && !meta.hasAudio) throw new MediaError('decode_failed', 'no audio or video stream found');
    if (opts.limits) checkMediaLimits(mediaWork(probe, (await fs.stat(path)).size), opts.limits, meta);
    return meta;
  }
  return { kind: detected.kind, mime: detected.mime };
}
