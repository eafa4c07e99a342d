// The processing steps in one import for the orchestration (workers/pipeline): each is a plain
// async function; the heavy work runs in ffmpeg child processes or libvips threads.
export * from './types.js';
export { MediaError, type MediaErrorCode } from '../media/errors.js';
export { pingClamd, scanStream, parseClamdReply, ScannerUnavailableError, ScanTooLargeError, type ScanOptions, type ScanResult } from '../scan/clamd.js';
export { DEFAULT_ALLOWED_TYPES, detectType, isAllowedType, parseAllowList } from './detect-type.js';
export { BOMB_CHECK_FROM_PIXEL_FRAMES, checkMediaLimits, encodeFrameRate, mediaWork } from './limits.js';
export { extractMetadata, metadataFromProbe, probeFailure, type MetadataOptions } from './metadata.js';
export { DEFAULT_THUMBNAIL_FORMATS, DEFAULT_THUMBNAIL_WIDTHS, makeThumbnails, plannedWidths } from './thumbnail.js';
export { DEFAULT_PRESET, HLS_LADDER, HLS_SEGMENT_SECONDS, parseMasterPlaylist, planLadder, transcode, transcodeTimeoutMs } from './transcode.js';
export { ffprobe, FfmpegError, runFfmpeg, type ProbeResult } from '../media/ffmpeg.js';
export { DEFAULT_LIMIT_INPUT_PIXELS } from '../media/sharp.js';
