// The types of the media steps (workers/steps/*: type detection, metadata, limits, thumbnails,
// transcode), shared with the jobs that run them (workers/jobs/*). Each step is a plain async
// function that does its heavy work in a child process (ffmpeg/ffprobe) or in libvips threads
// (sharp), and fails with a typed error so that its job can decide: reject (MediaRefusedError:
// more work than this server gives one upload) or fail with a reason (MediaError,
// workers/media/errors.ts: the file itself is bad; retrying will not help). Anything else is
// retried.
import type { FfmpegPaths } from '../media/ffmpeg.js';

// ---------------------------------------------------------------------------------------------
// metadata + validation (workers/steps/detect-type.ts, workers/steps/metadata.ts)

export type MediaKind = 'image' | 'video' | 'audio' | 'other';

export interface DetectedType {
  /** From the file's bytes (magic numbers), never from the client's name or type. */
  mime: string;
  ext: string;
  kind: MediaKind;
  /** Whether a signature (magic number) said so; false for text/plain and application/octet-stream. */
  magic?: boolean;
}

/** The client declared one type and the bytes are another (reported, not refused). */
export interface TypeMismatch {
  declared: string;
  detected: string;
}

export interface MediaMetadata {
  kind: MediaKind;
  /** From the bytes (workers/steps/detect-type.ts). */
  mime: string;
  /** Bytes. */
  size?: number;
  /** Set when the type the client declared contradicts `mime`. */
  typeMismatch?: TypeMismatch;
  /** Coded (stored) size in pixels; for video the first video stream. */
  width?: number;
  height?: number;
  /** Size as displayed: width/height swapped for a 90/270 rotation or EXIF orientation 5-8. */
  displayWidth?: number;
  displayHeight?: number;
  // video / audio (ffprobe)
  durationSec?: number;
  /** ffprobe format_name, e.g. "mov,mp4,m4a,3gp,3g2,mj2". */
  container?: string;
  videoCodec?: string;
  audioCodec?: string;
  /** Overall bit rate in bit/s. */
  bitrate?: number;
  fps?: number;
  /** Clockwise display rotation in degrees (0, 90, 180, 270), from the display matrix or the rotate tag. */
  rotation?: number;
  hasVideo?: boolean;
  hasAudio?: boolean;
  audioSampleRate?: number;
  audioChannels?: number;
  // images (sharp)
  /** sharp's format name: jpeg, png, webp, gif, heif, tiff, ... */
  format?: string;
  /** EXIF orientation 1-8 when present. */
  orientation?: number;
  /** Whether the file carries GPS data (EXIF GPS IFD or XMP GPS). The coordinates are never stored. */
  hasGps?: boolean;
  hasAlpha?: boolean;
  pages?: number;
}

/**
 * Bounds on the work an audio/video upload may ask of the transcoder, checked on ffprobe's answer
 * (the file's claims) before anything is decoded (workers/steps/limits.ts).
 */
export interface MediaLimits {
  /** Longest audio/video accepted, in seconds (MAX_MEDIA_DURATION). */
  maxDurationSec: number;
  /** Most video work accepted: width x height x frames to encode (MAX_VIDEO_PIXEL_FRAMES). */
  maxPixelFrames: number;
  /**
   * Media-bomb floor (MIN_VIDEO_BITS_PER_PIXEL): a video whose file holds fewer bits per pixel per
   * frame than this is refused. 0 turns the check off.
   */
  minBitsPerPixel: number;
  /** The floor applies only to videos claiming more work than this (default: 10 minutes of 1080p30). */
  bombCheckFromPixelFrames?: number;
}

/** What a video asks of the transcoder, from its claims (ffprobe) and its size. */
export interface MediaWork {
  bytes: number;
  durationSec?: number;
  width?: number;
  height?: number;
  /** The frame rate ffmpeg will encode at (its own guess from the stream's rates). */
  frameRate?: number;
  /** Frames to encode: duration x frame rate, or the stored frame count when larger. */
  frames?: number;
  pixelFrames?: number;
  /** 8 x bytes / pixelFrames: how many bits of the file stand for each pixel of each frame. */
  bitsPerPixel?: number;
}

export type MediaRefusalCode =
  | 'too_long' // longer than MAX_MEDIA_DURATION
  | 'too_much_work' // more pixel-frames than MAX_VIDEO_PIXEL_FRAMES
  | 'media_bomb'; // claimed work out of all proportion to the file's size

/**
 * The file is readable but asks for more work than this server gives one upload: the upload is
 * `rejected` (not `failed`: retrying cannot help, and nothing is wrong with the tool).
 */
export class MediaRefusedError extends Error {
  override readonly name = 'MediaRefusedError';
  constructor(
    readonly code: MediaRefusalCode,
    readonly reason: string,
    readonly work: MediaWork,
    /** The metadata read before the refusal (for the status record). */
    readonly metadata?: MediaMetadata,
  ) {
    super(reason);
  }
}

// ---------------------------------------------------------------------------------------------
// thumbnail (workers/steps/thumbnail.ts)

export type ThumbnailFormat = 'jpeg' | 'webp';

export interface ThumbnailOptions {
  /** Target widths in px; default [160, 640, 1280]. Produced smallest first, never upscaled. */
  widths?: number[];
  /** Default ['webp', 'jpeg'] (for each width, in this order). */
  formats?: ThumbnailFormat[];
  /** Directory for the outputs (created); files are thumb-<width>.<ext>, overwritten on retry. */
  outDir: string;
  /** Decompression-bomb guard, in pixels (width x height); default 100 MP. */
  limitInputPixels?: number;
  /** Per image pipeline / per ffmpeg run; default 60 s. */
  timeoutMs?: number;
  /** Video only: duration from the metadata step (saves one ffprobe). */
  durationSec?: number;
  /** Video only: ffmpeg/ffprobe binaries (default FFMPEG_PATH / FFPROBE_PATH env, then PATH). */
  ffmpeg?: FfmpegPaths;
  /** Cancels the work in progress (ffmpeg is killed; sharp output is discarded). */
  signal?: AbortSignal;
}

export interface Thumbnail {
  width: number;
  height: number;
  format: ThumbnailFormat;
  /** Absolute path of the written file. */
  path: string;
  bytes: number;
}

// ---------------------------------------------------------------------------------------------
// transcode (workers/steps/transcode.ts)

export interface TranscodeOptions {
  /** Directory for the outputs (created; its hls/ folder and video.mp4 are replaced on each run). */
  outDir: string;
  /** Hard limit for the whole ffmpeg run (the orchestrator scales it with the duration). */
  timeoutMs: number;
  /** 0..100, increasing; last call is 100 on success. */
  onProgress?: (percent: number) => void;
  signal?: AbortSignal;
  /** libx264 preset; production default 'veryfast' (tests may pass 'ultrafast'). */
  preset?: string;
  /** Produce the progressive MP4 fallback for video (default true). */
  mp4?: boolean;
  ffmpeg?: FfmpegPaths;
}

export interface HlsRendition {
  /** Output height in px (0 for the audio-only rendition). */
  height: number;
  /** Output width in px (0 for audio). */
  width: number;
  /** Peak bandwidth in bit/s as written in the master playlist. */
  bandwidth: number;
  /** Media playlist path relative to outDir, e.g. "hls/720p/index.m3u8". */
  playlist: string;
}

export interface TranscodeResult {
  hls: {
    /** Relative to outDir: "hls/master.m3u8". */
    master: string;
    renditions: HlsRendition[];
  };
  /** Relative to outDir: "video.mp4" (video only). */
  mp4?: string;
  elapsedMs: number;
}
