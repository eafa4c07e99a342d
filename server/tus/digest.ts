// Integrity digests (RFC 9530) of draft uploads: `Content-Digest` (the content of one request) and
// `Repr-Digest` (the whole representation, which may arrive over several requests), sha-256 and
// sha-512. Bodies are hashed while they stream to the store, never spooled: memory stays bounded
// and the bytes reach storage at once. A digest that does not match is found only as the body
// ends, so the last bytes cannot be kept out of storage; the verdict arrives before the store
// finishes the request, which is then failed (the upload is never completed or processed with
// those bytes) and the upload is cancelled (see endpoint.ts).
//
// A Repr-Digest that covers more than the request carrying it (sent at creation of an upload whose
// bytes come later, or on an append that does not start at 0) is remembered in Redis,
// `<prefix>repr-digest:{<id>}` (lib/redis-keys.ts), and checked once the upload is complete by
// reading the stored bytes back (streamed).
import crypto, { type Hash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { Transform, type TransformCallback } from 'node:stream';
import type { Redis } from 'ioredis';
import { TuskError } from '../../lib/errors.js';
import { RedisKeys } from '../../lib/redis-keys.js';

export const DIGEST_ALGORITHMS = { 'sha-256': 'sha256', 'sha-512': 'sha512' } as const;
export type DigestAlgorithm = keyof typeof DIGEST_ALGORITHMS;

export interface ExpectedDigest {
  algorithm: DigestAlgorithm;
  value: Buffer;
}

/**
 * The supported digests of a Content-Digest / Repr-Digest field (a Structured Field Dictionary of
 * byte sequences): undefined without the field or without a supported algorithm (RFC 9530 lets a
 * recipient ignore those); a 400 for a malformed field or a digest of the wrong size.
 */
export function parseDigestField(name: string, raw: string | string[] | undefined): ExpectedDigest[] | undefined {
  if (raw === undefined) return undefined;
  const value = Array.isArray(raw) ? raw.join(', ') : raw;
  if (value.length > 4096) throw new TuskError('invalid_request', `${name} is too long`);
  const found: ExpectedDigest[] = [];
  for (const member of value.split(',')) {
    const m = /^\s*([a-z*][a-z0-9_.*-]*)\s*=\s*:([A-Za-z0-9+/]*={0,2}):\s*$/.exec(member);
    if (!m) throw new TuskError('invalid_request', `${name} must be a dictionary of algorithm=:base64:`);
    const algorithm = m[1] as DigestAlgorithm;
    if (!(algorithm in DIGEST_ALGORITHMS)) continue;
    const digest = Buffer.from(m[2]!, 'base64');
    const size = algorithm === 'sha-256' ? 32 : 64;
    if (digest.length !== size) throw new TuskError('invalid_request', `${name} ${algorithm} must be ${size} bytes`);
    found.push({ algorithm, value: digest });
  }
  return found.length > 0 ? found : undefined;
}

/** Do the bytes hashed into `hashes` match every expected digest? */
function matches(expected: ExpectedDigest[], digestOf: (a: DigestAlgorithm) => Buffer): boolean {
  return expected.every((e) => crypto.timingSafeEqual(digestOf(e.algorithm), e.value));
}

export class DigestMismatch extends Error {
  constructor(readonly field: string) {
    super(`${field} does not match the bytes received`);
  }
}

/**
 * A pass-through that hashes a request body for the digests it must match. When the body ends it
 * compares them and fails the stream on a mismatch, before the store has finished the request.
 */
export class DigestTap extends Transform {
  private readonly hashes = new Map<DigestAlgorithm, Hash>();
  /** The field that did not match, once the body has ended. */
  mismatch: string | undefined;

  constructor(private readonly checks: Array<{ field: string; expected: ExpectedDigest[] }>) {
    super();
    for (const { expected } of checks) for (const e of expected) if (!this.hashes.has(e.algorithm)) this.hashes.set(e.algorithm, crypto.createHash(DIGEST_ALGORITHMS[e.algorithm]));
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    for (const h of this.hashes.values()) h.update(chunk);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    const digests = new Map([...this.hashes].map(([a, h]) => [a, h.digest()]));
    const failed = this.checks.find((c) => !matches(c.expected, (a) => digests.get(a)!));
    if (failed) {
      this.mismatch = failed.field;
      callback(new DigestMismatch(failed.field));
      return;
    }
    callback();
  }
}

/** Does a stream (the stored upload) match the digests? Reads it through once. */
export async function streamMatches(stream: Readable, expected: ExpectedDigest[]): Promise<boolean> {
  const hashes = new Map(expected.map((e) => [e.algorithm, crypto.createHash(DIGEST_ALGORITHMS[e.algorithm])]));
  for await (const chunk of stream) for (const h of hashes.values()) h.update(chunk as Buffer);
  const digests = new Map([...hashes].map(([a, h]) => [a, h.digest()]));
  return matches(expected, (a) => digests.get(a)!);
}

/** Repr-Digests waiting for their upload to complete. */
export class ReprDigestRegistry {
  private readonly keys: RedisKeys;
  constructor(
    private readonly redis: Redis,
    prefix: string,
    /** They expire with unfinished uploads (plus a day). */
    private readonly ttlMs: number,
  ) {
    this.keys = new RedisKeys(prefix);
  }

  async remember(id: string, expected: ExpectedDigest[]): Promise<void> {
    const value = JSON.stringify(expected.map((e) => ({ algorithm: e.algorithm, value: e.value.toString('base64') })));
    await this.redis.set(this.keys.reprDigest(id), value, 'PX', this.ttlMs);
  }

  async expected(id: string): Promise<ExpectedDigest[] | undefined> {
    const raw = await this.redis.get(this.keys.reprDigest(id));
    if (!raw) return undefined;
    return (JSON.parse(raw) as Array<{ algorithm: DigestAlgorithm; value: string }>).map((e) => ({ algorithm: e.algorithm, value: Buffer.from(e.value, 'base64') }));
  }

  async forget(id: string): Promise<void> {
    await this.redis.del(this.keys.reprDigest(id));
  }
}
