// tus checksum and checksum-trailer extensions, for every store. A request that carries
// Upload-Checksum (as a header, or as an HTTP trailer announced by `Trailer: Upload-Checksum`)
// is spooled to disk while it is hashed, in constant memory; only when the digest matches is
// the spooled body handed to @tus/server. On a mismatch the answer is 460 and none of the
// request's bytes reach the upload, so its offset does not move.
import crypto, { type Hash } from 'node:crypto';
import fs from 'node:fs';
import type { IncomingMessage } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';

export const CHECKSUM_ALGORITHMS = ['sha1', 'md5', 'sha256', 'sha512', 'crc32'] as const;
export type ChecksumAlgorithm = (typeof CHECKSUM_ALGORITHMS)[number];

export interface Checksum {
  algorithm: ChecksumAlgorithm;
  /** The digest the client announced (decoded from base64). */
  expected: Buffer;
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** Parses `Upload-Checksum: <algorithm> <base64 digest>`; a string is the 400 reason. */
export function parseChecksum(value: string): Checksum | string {
  const parts = value.trim().split(/\s+/);
  if (parts.length !== 2) return 'Upload-Checksum must be "<algorithm> <base64 digest>"';
  const [name, encoded] = parts as [string, string];
  const algorithm = name.toLowerCase() as ChecksumAlgorithm;
  if (!CHECKSUM_ALGORITHMS.includes(algorithm)) return `Unsupported checksum algorithm "${name}"; supported: ${CHECKSUM_ALGORITHMS.join(', ')}`;
  if (!BASE64.test(encoded) || encoded.length % 4 !== 0) return 'Upload-Checksum digest must be base64';
  return { algorithm, expected: Buffer.from(encoded, 'base64') };
}

/** Running digest; crc32 through zlib.crc32 (Node >= 20.15), the others through node:crypto. */
class Digest {
  private hash: Hash | undefined;
  private crc = 0;
  constructor(private readonly algorithm: ChecksumAlgorithm) {
    if (algorithm !== 'crc32') this.hash = crypto.createHash(algorithm);
  }
  update(chunk: Buffer): void {
    if (this.hash) this.hash.update(chunk);
    else this.crc = zlib.crc32(chunk, this.crc);
  }
  digest(): Buffer {
    if (this.hash) return this.hash.digest();
    const out = Buffer.alloc(4);
    out.writeUInt32BE(this.crc >>> 0);
    return out;
  }
}

/** Whether a tus request announces a checksum, in a header or in a trailer. */
export function checksumSource(req: IncomingMessage): 'header' | 'trailer' | undefined {
  if (req.headers['upload-checksum'] !== undefined) return 'header';
  const trailer = req.headers.trailer;
  if (trailer && trailer.split(',').some((t) => t.trim().toLowerCase() === 'upload-checksum')) return 'trailer';
  return undefined;
}

export type SpoolResult =
  | { verdict: 'match'; path: string; size: number; release: () => void }
  | { verdict: 'mismatch' }
  | { verdict: 'invalid'; reason: string }
  /** The body is longer than `maxBytes`. */
  | { verdict: 'too_large' }
  /** Spooling it would exceed the process's spool budget: retry later. */
  | { verdict: 'busy' };

/**
 * Bytes of checksummed bodies on disk at once, per process (CHECKSUM_SPOOL_LIMIT): spooling
 * costs disk, so it is bounded like memory would be.
 */
export class SpoolBudget {
  private used = 0;
  constructor(readonly limit: number) {}

  /** Takes `bytes` of the budget; false when that would exceed it. */
  take(bytes: number): boolean {
    if (this.used + bytes > this.limit) return false;
    this.used += bytes;
    return true;
  }

  give(bytes: number): void {
    this.used = Math.max(0, this.used - bytes);
  }

  get inUse(): number {
    return this.used;
  }
}

class SpoolRefused extends Error {
  constructor(readonly verdict: 'too_large' | 'busy') {
    super(verdict);
  }
}

export interface SpoolOptions {
  /** The most body bytes accepted (what the upload can still take); more: verdict too_large. */
  maxBytes: number;
  budget: SpoolBudget;
  /** Aborts the spooling (e.g. the upload's lock is wanted by another request). */
  signal?: AbortSignal;
  spoolDir?: string;
}

/**
 * Reads the request body into a temporary file while hashing it with every supported
 * algorithm it might need; then checks it against the header or trailer checksum. The body is
 * cut off as soon as it exceeds `maxBytes` or the budget. The caller removes the file
 * (`discardSpool`), which also gives its bytes back to the budget.
 */
export async function spoolAndVerify(req: IncomingMessage, source: 'header' | 'trailer', opts: SpoolOptions): Promise<SpoolResult> {
  let announced: Checksum | undefined;
  if (source === 'header') {
    const parsed = parseChecksum(String(req.headers['upload-checksum']));
    if (typeof parsed === 'string') return { verdict: 'invalid', reason: parsed };
    announced = parsed;
  }
  const { budget } = opts;
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (Number.isSafeInteger(declared) && declared > opts.maxBytes) return { verdict: 'too_large' };
  if (Number.isSafeInteger(declared) && declared > budget.limit) return { verdict: 'too_large' };
  // With a trailer the algorithm is known only at the end: hash with all of them (cheap
  // next to the network, and only for requests that ask for it).
  const digests = new Map<ChecksumAlgorithm, Digest>(
    (announced ? [announced.algorithm] : [...CHECKSUM_ALGORITHMS]).map((a) => [a, new Digest(a)]),
  );
  const file = path.join(opts.spoolDir ?? os.tmpdir(), `tusk-checksum-${crypto.randomBytes(8).toString('hex')}`);
  let size = 0;
  let taken = 0;
  const release = () => {
    budget.give(taken);
    taken = 0;
  };
  const hasher = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      size += chunk.length;
      if (size > opts.maxBytes) return callback(new SpoolRefused('too_large'));
      if (!budget.take(chunk.length)) return callback(new SpoolRefused(size > budget.limit ? 'too_large' : 'busy'));
      taken += chunk.length;
      for (const d of digests.values()) d.update(chunk);
      callback(null, chunk);
    },
  });
  try {
    const out = fs.createWriteStream(file);
    await (opts.signal ? pipeline(req, hasher, out, { signal: opts.signal }) : pipeline(req, hasher, out));
  } catch (err) {
    await removeFile(file);
    release();
    if (err instanceof SpoolRefused) return { verdict: err.verdict };
    throw err;
  }
  const refuse = async <T extends SpoolResult>(result: T): Promise<T> => {
    await removeFile(file);
    release();
    return result;
  };
  if (!announced) {
    const trailer = req.trailers['upload-checksum'];
    if (trailer === undefined) return refuse({ verdict: 'invalid', reason: 'Upload-Checksum trailer announced but not sent' });
    const parsed = parseChecksum(trailer);
    if (typeof parsed === 'string') return refuse({ verdict: 'invalid', reason: parsed });
    announced = parsed;
  }
  const actual = digests.get(announced.algorithm)?.digest();
  if (!actual || !actual.equals(announced.expected)) return refuse({ verdict: 'mismatch' });
  return { verdict: 'match', path: file, size, release };
}

async function removeFile(file: string): Promise<void> {
  await fs.promises.rm(file, { force: true });
}

/** Removes a spooled body and gives its bytes back to the budget. */
export async function discardSpool(spooled: { path: string; release: () => void }): Promise<void> {
  await removeFile(spooled.path);
  spooled.release();
}
