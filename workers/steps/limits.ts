// Bounds on the work an audio/video upload may ask of the transcoder, judged from ffprobe's answer
// (what the file claims: duration, size, frame rate, frame count) and the file's size, before any
// frame is decoded. The transcode of a video costs about width x height x frames ("pixel-frames"):
// ffmpeg decodes every frame and encodes one frame per 1/rate seconds into each rung of the
// ladder, duplicating frames where the source has none (a 6-frame slideshow of 30 s still
// becomes 900 encoded frames).
//
//   too_long       the duration is over MAX_MEDIA_DURATION (audio and video);
//   too_much_work  the pixel-frames are over MAX_VIDEO_PIXEL_FRAMES;
//   media_bomb     the file holds fewer than MIN_VIDEO_BITS_PER_PIXEL bits per pixel per frame:
//                  its claimed work is out of all proportion to its size, as a looped or padded
//                  file's is (4 MB claiming an hour of 1080p30 is 0.00015). Measured with ffmpeg
//                  5.1 here (README, "Processing pipeline"): a screen recording 0.0026-0.0077, a
//                  slideshow of text slides 0.0004-0.0012, a still picture with 32 kbit/s speech
//                  0.0015, a flat black picture 0.0002-0.00045; the default 0.00025 sits between
//                  the lowest real content and the looped hour. Only videos claiming more than
//                  10 minutes of 1080p30 work are judged: short files cost little whatever they hold.
// Audio is bounded by its duration alone: an hour of it encodes to AAC in ~12 CPU-seconds here.
import { firstStream, parseRate, probeDuration, type ProbeResult, type ProbeStream } from '../media/ffmpeg.js';
import { MediaRefusedError, type MediaLimits, type MediaMetadata, type MediaWork } from './types.js';

/** Work below which the media-bomb floor is not applied: 10 minutes of 1080p30. */
export const BOMB_CHECK_FROM_PIXEL_FRAMES = 1920 * 1080 * 30 * 600;

/**
 * The rate ffmpeg encodes a stream at when the command line sets none (libavformat's
 * av_guess_frame_rate): r_frame_rate, unless that is implausibly high (> 210) while the average
 * is ordinary (< 70), as in variable-frame-rate files with a fine time base.
 */
export function encodeFrameRate(stream: ProbeStream): number | undefined {
  const r = parseRate(stream.r_frame_rate);
  const avg = parseRate(stream.avg_frame_rate);
  if (r !== undefined && avg !== undefined && r > 210 && avg < 70) return avg;
  return r ?? avg;
}

const positive = (v: string | number | undefined): number | undefined => {
  const n = Number(v);
  return v !== undefined && v !== '' && Number.isFinite(n) && n > 0 ? n : undefined;
};

/** The work a file asks of the transcoder, from its ffprobe answer and its size in bytes. */
export function mediaWork(probe: ProbeResult, bytes: number): MediaWork {
  const work: MediaWork = { bytes, durationSec: probeDuration(probe) };
  const video = firstStream(probe, 'video');
  if (!video) return work;
  work.width = positive(video.width);
  work.height = positive(video.height);
  work.frameRate = encodeFrameRate(video);
  // The video stream's own length when it has one (a short clip in a long audio file), else the file's.
  const seconds = positive(video.duration) ?? work.durationSec;
  const byRate = seconds !== undefined && work.frameRate !== undefined ? Math.ceil(seconds * work.frameRate) : undefined;
  const stored = positive(video.nb_frames);
  if (byRate !== undefined || stored !== undefined) work.frames = Math.max(byRate ?? 0, stored ?? 0);
  if (work.width && work.height && work.frames) {
    work.pixelFrames = work.width * work.height * work.frames;
    work.bitsPerPixel = (8 * bytes) / work.pixelFrames;
  }
  return work;
}

/** Throws MediaRefusedError (too_long, too_much_work, media_bomb) when `work` is over `limits`. */
export function checkMediaLimits(work: MediaWork, limits: MediaLimits, metadata?: MediaMetadata): void {
  const refuse = (code: MediaRefusedError['code'], reason: string) => new MediaRefusedError(code, reason, work, metadata);
  if (work.durationSec !== undefined && work.durationSec > limits.maxDurationSec) {
    throw refuse('too_long', `the media lasts ${duration(work.durationSec)}, longer than the ${duration(limits.maxDurationSec)} this server processes`);
  }
  if (work.pixelFrames === undefined) return;
  const video = `${work.frames} frames of ${work.width}x${work.height} video${work.durationSec !== undefined && work.frameRate !== undefined ? ` (${duration(work.durationSec)} at ${round(work.frameRate)} fps)` : ''}`;
  if (work.pixelFrames > limits.maxPixelFrames) {
    throw refuse('too_much_work', `${video} is ${sci(work.pixelFrames)} pixel-frames to transcode, more than the ${sci(limits.maxPixelFrames)} this server processes`);
  }
  const from = limits.bombCheckFromPixelFrames ?? BOMB_CHECK_FROM_PIXEL_FRAMES;
  if (limits.minBitsPerPixel > 0 && work.pixelFrames > from && work.bitsPerPixel !== undefined && work.bitsPerPixel < limits.minBitsPerPixel) {
    throw refuse(
      'media_bomb',
      `the file claims ${video} but holds only ${megabytes(work.bytes)}: ${work.bitsPerPixel.toPrecision(2)} bits per pixel per frame, ` +
        `below the ${limits.minBitsPerPixel} that real video needs. Refused like a decompression bomb (looped or padded media)`,
    );
  }
}

function duration(seconds: number): string {
  if (seconds < 120) return `${Number(seconds.toFixed(seconds < 10 ? 1 : 0))} s`;
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  return h ? `${h} h ${m} min` : `${m} min`;
}

const round = (n: number) => String(Math.round(n * 100) / 100);
const sci = (n: number) => n.toExponential(2).replace('e+', 'e');
const megabytes = (bytes: number) => (bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${Math.max(1, Math.round(bytes / 1e3))} KB`);
