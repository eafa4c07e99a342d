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
  | { verdict: 'match'; path: string; size: number }
  | { verdict: 'mismatch' }
  | { verdict: 'invalid'; reason: string };

/**
 * Reads the whole request body into a temporary file while hashing it with every supported
 * algorithm it might need; then checks it against the header or trailer checksum.
 * The caller removes the file (`discardSpool`).
 */
export async function spoolAndVerify(req: IncomingMessage, source: 'header' | 'trailer', spoolDir = os.tmpdir()): Promise<SpoolResult> {
  let announced: Checksum | undefined;
  if (source === 'header') {
    const parsed = parseChecksum(String(req.headers['upload-checksum']));
    if (typeof parsed === 'string') return { verdict: 'invalid', reason: parsed };
    announced = parsed;
  }
  // With a trailer the algorithm is known only at the end: hash with all of them (cheap
  // next to the network, and only for requests that ask for it).
  const digests = new Map<ChecksumAlgorithm, Digest>(
    (announced ? [announced.algorithm] : [...CHECKSUM_ALGORITHMS]).map((a) => [a, new Digest(a)]),
  );
  const file = path.join(spoolDir, `tusk-checksum-${crypto.randomBytes(8).toString('hex')}`);
  let size = 0;
  const hasher = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      size += chunk.length;
      for (const d of digests.values()) d.update(chunk);
      callback(null, chunk);
    },
  });
  try {
    await pipeline(req, hasher, fs.createWriteStream(file));
  } catch (err) {
    await discardSpool(file);
    throw err;
  }
  if (!announced) {
    const trailer = req.trailers['upload-checksum'];
    if (trailer === undefined) {
      await discardSpool(file);
      return { verdict: 'invalid', reason: 'Upload-Checksum trailer announced but not sent' };
    }
    const parsed = parseChecksum(trailer);
    if (typeof parsed === 'string') {
      await discardSpool(file);
      return { verdict: 'invalid', reason: parsed };
    }
    announced = parsed;
  }
  const actual = digests.get(announced.algorithm)?.digest();
  if (!actual || !actual.equals(announced.expected)) {
    await discardSpool(file);
    return { verdict: 'mismatch' };
  }
  return { verdict: 'match', path: file, size };
}

export async function discardSpool(file: string): Promise<void> {
  await fs.promises.rm(file, { force: true });
}
