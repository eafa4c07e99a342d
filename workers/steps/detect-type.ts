// metadata + validation, part 1: the real type of a file from its bytes (magic numbers, npm
// file-type), never from the client's filename or Upload-Metadata filetype; and whether what the
// client declared contradicts it.
import fs from 'node:fs/promises';
import { fileTypeFromFile, supportedMimeTypes } from 'file-type';
import type { DetectedType, MediaKind, TypeMismatch } from './types.js';

export type { DetectedType, MediaKind, TypeMismatch } from './types.js';

/** Bytes that no signature matches and that are not text. */
export const UNKNOWN_TYPE: DetectedType = Object.freeze({ mime: 'application/octet-stream', ext: 'bin', kind: 'other', magic: false });

function kindOf(mime: string): MediaKind {
  if (mime.startsWith('image/')) return 'image';
  if (mime.startsWith('video/')) return 'video';
  if (mime.startsWith('audio/')) return 'audio';
  return 'other';
}

/** Whether the first 8 KiB are text: valid UTF-8 (a cut last character allowed) without NUL bytes. */
async function looksLikeText(path: string): Promise<boolean> {
  const handle = await fs.open(path, 'r');
  try {
    const buf = Buffer.alloc(8192);
    const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
    const head = buf.subarray(0, bytesRead);
    if (bytesRead === 0 || head.includes(0)) return false;
    try {
      new TextDecoder('utf-8', { fatal: true }).decode(head, { stream: bytesRead === buf.length });
      return true;
    } catch {
      return false;
    }
  } finally {
    await handle.close();
  }
}

/**
 * The type from the file's bytes: a known signature (magic: true), else text/plain for text,
 * else UNKNOWN_TYPE (application/octet-stream).
 */
export async function detectType(path: string): Promise<DetectedType> {
  const found = await fileTypeFromFile(path);
  if (found) {
    const mime = found.mime.toLowerCase();
    return { mime, ext: found.ext, kind: kindOf(mime), magic: true };
  }
  return (await looksLikeText(path)) ? { mime: 'text/plain', ext: 'txt', kind: 'other', magic: false } : UNKNOWN_TYPE;
}

/** Other names of the same type (what browsers and OSes send -> what file-type says). */
const ALIASES: Record<string, string> = {
  'image/jpg': 'image/jpeg',
  'image/pjpeg': 'image/jpeg',
  'image/x-png': 'image/png',
  'image/heif': 'image/heic',
  'image/x-ms-bmp': 'image/bmp',
  'image/vnd.microsoft.icon': 'image/x-icon',
  'audio/mp3': 'audio/mpeg',
  'audio/x-mp3': 'audio/mpeg',
  'audio/mpeg3': 'audio/mpeg',
  'audio/x-wav': 'audio/wav',
  'audio/wave': 'audio/wav',
  'audio/vnd.wave': 'audio/wav',
  'audio/x-flac': 'audio/flac',
  'audio/x-aiff': 'audio/aiff',
  'audio/x-m4a': 'audio/mp4',
  'audio/opus': 'audio/ogg',
  'video/x-m4v': 'video/mp4',
  'video/x-matroska': 'video/matroska',
  'video/avi': 'video/vnd.avi',
  'video/msvideo': 'video/vnd.avi',
  'video/x-msvideo': 'video/vnd.avi',
  'application/x-zip-compressed': 'application/zip',
  'application/x-zip': 'application/zip',
  'multipart/x-zip': 'application/zip',
  'application/x-gzip': 'application/gzip',
  'application/x-pdf': 'application/pdf',
  'application/vnd.rar': 'application/x-rar-compressed',
};
/** Declared types that claim nothing but "some bytes". */
const NO_CLAIM = new Set(['application/octet-stream', 'binary/octet-stream', 'application/unknown', 'application/binary']);

const baseType = (mime: string) => mime.split(';')[0]!.trim().toLowerCase();

/** One name per type; audio and video share their containers (an audio-only WebM is video/webm to file-type). */
function normalize(mime: string): string {
  const base = baseType(mime);
  return (ALIASES[base] ?? base).replace(/^(audio|video)\//, 'media/');
}

const SUPPORTED = new Set([...supportedMimeTypes].map(normalize));

/**
 * Whether the type the client declared contradicts the bytes: a signature says something else, or
 * the declared type is one that file-type knows by its signature and the bytes have none.
 * Undefined when they agree, or when the declaration claims nothing checkable: none, a malformed
 * one, octet-stream, or a type without a signature (text/csv, text/plain, JSON...) for bytes
 * without one.
 */
export function typeMismatch(declared: string | null | undefined, detected: DetectedType): TypeMismatch | undefined {
  const base = baseType(declared ?? '');
  if (!/^[a-z0-9.+-]+\/[a-z0-9.+-]+$/.test(base) || NO_CLAIM.has(base)) return undefined;
  const claim = normalize(base);
  const contradicts = detected.magic ? claim !== normalize(detected.mime) : SUPPORTED.has(claim);
  return contradicts ? { declared: base, detected: detected.mime } : undefined;
}
