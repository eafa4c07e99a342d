// What the toolchain (sharp, ffmpeg) concludes about an input file that it cannot use. The steps
// throw it too; the pipeline fails the upload with its code and reason and does not retry: the
// file itself is bad, so another attempt would not help.

export type MediaErrorCode =
  | 'pixel_limit' // decompression bomb: more pixels than limitInputPixels
  | 'truncated' // premature end of file / missing index (moov atom)
  | 'unsupported_format'
  | 'blocked_format' // SVG / PDF input refused on purpose
  | 'no_video_stream'
  | 'no_audio_stream'
  | 'timeout'
  | 'decode_failed'
  | 'encode_failed';

/** The input itself is unusable. `reason` is a short human-readable sentence for the status API. */
export class MediaError extends Error {
  override readonly name = 'MediaError';
  constructor(
    readonly code: MediaErrorCode,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(reason, options);
  }
}
