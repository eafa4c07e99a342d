// How a direct upload is cut into parts, and the checks on what storage holds. Every part URL is
// signed for exactly one size (lib/s3.ts Presigner), so what a session can store is bounded by its
// declared size; completion's checks cost O(parts listed), never O(declared size / part size).
import { MAX_PARTS, type ListedPart } from '../../lib/s3.js';
import type { DirectSession } from './sessions.js';

const MiB = 1024 * 1024;
/** S3's smallest part (all but the last). */
export const MIN_PART = 5 * MiB;
/** S3's largest part, and its largest single PUT. */
export const MAX_PART = 5 * 1024 * MiB;
/** Part URLs handed out in one answer; the rest on request. */
export const MAX_URLS_PER_RESPONSE = 1_000;

/** 10 MiB (or the configured chunk), grown in whole MiB so that no file needs more than 10,000 parts. */
export function chunkSizeFor(size: number, base: number): number {
  let chunk = Math.max(base, MIN_PART);
  const needed = Math.ceil(size / MAX_PARTS);
  if (needed > chunk) chunk = Math.ceil(needed / MiB) * MiB;
  return Math.min(chunk, MAX_PART);
}

/**
 * The part size of a Companion-compatible (/s3) session: exactly what @uppy/aws-s3 (4.x and 5.x)
 * picks unless the app passes its own getChunkSize, ceil(size / 10,000) but at least 5 MiB. Uppy
 * asks for a part URL without saying how big the part is, and each URL is signed for one size, so
 * tusk must know it in advance; the parts then add up to the declared (reserved) size.
 */
export function uppyChunkSize(size: number): number {
  return Math.max(Math.ceil(size / MAX_PARTS), MIN_PART);
}

/** The size of part `n` (1-based): chunk_size, the last part the remainder. */
export function partSizeOf(s: Pick<DirectSession, 'size' | 'chunk_size' | 'part_count'>, n: number): number {
  return n < s.part_count ? s.chunk_size : s.size - s.chunk_size * (s.part_count - 1);
}

/**
 * The part numbers 1..count that `listed` (sorted, distinct, each within 1..count) lacks, at most
 * `limit` of them: O(listed + limit), whatever `count` is.
 */
export function missingParts(listed: ListedPart[], count: number, limit: number): number[] {
  const missing: number[] = [];
  let next = 1;
  for (const n of [...listed.map((p) => p.PartNumber), count + 1]) {
    for (let m = next; m < n && missing.length < limit; m++) missing.push(m);
    if (missing.length >= limit) break;
    next = Math.max(next, n + 1);
  }
  return missing;
}
