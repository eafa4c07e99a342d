// metadata + validation, part 1: the real type of a file from its bytes (magic numbers, npm
// file-type), never from the client's filename or Upload-Metadata filetype.
import { fileTypeFromFile } from 'file-type';
import type { DetectedType, MediaKind } from './types.js';

export type { DetectedType, MediaKind } from './types.js';

/** Default ALLOWED_TYPES. Entries are exact MIME types or wildcards like "image/*". */
export const DEFAULT_ALLOWED_TYPES: readonly string[] = Object.freeze([
  // images
  'image/jpeg',
  'image/png',
  'image/webp',
  'image/gif',
  'image/heic',
  'image/heif',
  'image/avif',
  'image/tiff',
  // video
  'video/mp4',
  'video/quicktime',
  'video/webm',
  'video/matroska', // file-type's name for .mkv
  'video/x-matroska', // the common alias
  // audio
  'audio/mpeg',
  'audio/mp4',
  'audio/x-m4a', // file-type's name for an M4A-branded MP4
  'audio/aac',
  'audio/wav',
  'audio/ogg',
  'audio/flac',
  // documents
  'application/pdf',
]);

/** Parses a comma/space separated ALLOWED_TYPES value ("image/*, video/mp4"). */
export function parseAllowList(value: string | undefined): string[] {
  if (!value?.trim()) return [...DEFAULT_ALLOWED_TYPES];
  return value
    .split(/[\s,]+/)
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);
}

function kindOf(mime: string): MediaKind {
  if (mime.startsWith('image/')) return 'image';
  if (mime.startsWith('video/')) return 'video';
  if (mime.startsWith('audio/')) return 'audio';
  return 'other';
}

/** Detects the type from the first bytes of the file; undefined when no known signature matches. */
export async function detectType(path: string): Promise<DetectedType | undefined> {
  const found = await fileTypeFromFile(path);
  if (!found) return undefined;
  const mime = found.mime.toLowerCase();
  return { mime, ext: found.ext, kind: kindOf(mime) };
}

