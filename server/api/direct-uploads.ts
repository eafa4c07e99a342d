// Direct-to-storage uploads: tusk signs S3 URLs, the client sends the bytes straight to storage,
// tusk only handles metadata (S3 store only; STORAGE=file answers 501).
//   POST   /api/uploads/initiate        { filename, filesize, content_type, sha256? }
//          -> 201 { upload_id, method: multipart|put, chunk_size, part_count, upload_urls, expires_at }
//   GET    /api/uploads/:id/parts       -> { parts: [{ part_number, size, etag }] } (ListParts, all pages)
//   POST   /api/uploads/:id/parts       { part_numbers } -> { upload_urls: [{ part_number, url }], expires_at }
//   POST   /api/uploads/:id/complete    { title?, description?, visibility?, parts? } -> 202 status document
//   DELETE /api/uploads/:id             -> 204 (multipart aborted / object deleted, quota released)
// Everything is checked (auth, body, size, type, rate limit, quota) before anything is created in
// S3. Every URL is signed for one size (the PUT: the file; part n of 1..part_count: chunk_size, the
// last the remainder), so storage holds at most the declared size, which the quota reserved.
// Completion never trusts the client: tusk lists the parts itself (stopping at a number beyond the
// part count), checks numbers, sizes and the total in O(parts listed), completes, HEADs the
// object, and queues the same `process-upload` job as a finished tus upload
// (hooks/upload-finished.ts; job id = upload id). The session lives in Redis
// (`${REDIS_PREFIX}direct:<id>`, plus `${REDIS_PREFIX}direct-expiring`, a sorted set of open
// sessions by expiry for workers/direct-cleanup.ts). Each route has one spelling (case-sensitive,
// no trailing slash, the id exactly lib/upload-id.ts's form); another user's upload, like any other
// spelling, is 404.
import { randomBytes } from 'node:crypto';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  HeadObjectCommand,
  ListPartsCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@tus/utils';
import express, { type NextFunction, type Request, type RequestHandler, type Response, type Router } from 'express';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import type { Config } from '../../config/index.js';
import type { Logger } from '../../lib/logger.js';
import { Presigner } from '../../lib/presign.js';
import { isUploadId, newUploadId } from '../../lib/upload-id.js';
import { createS3Client } from '../../lib/s3-client.js';
import { RedisKeys } from '../../lib/redis-keys.js';
import type { UploadFinishedHook } from '../../hooks/upload-finished.js';
import { DEDUP_TTL_SECONDS, publicDocument, RecordStore } from '../../lib/record-store.js';
import { createObjectStorage } from '../../lib/object-storage.js';
import { createAuthenticator, requireAuth, type Principal } from '../../hooks/auth.js';
import { OwnershipStore } from '../../hooks/ownership.js';
import { QuotaService } from '../../hooks/quota.js';
import { CreationRateLimiter, RateLimitedError } from '../../hooks/rate-limit.js';
import { ApiError, sendApiError, sendError } from './errors.js';
import { registerCompanionRoutes } from './companion.js';

const MiB = 1024 * 1024;
export const DIRECT_PREFIX = 'direct';
export const MAX_PARTS = 10_000;
export const MAX_URLS_PER_RESPONSE = 1_000;
const MIN_PART = 5 * MiB;
const MAX_PART = 5 * 1024 * MiB;

// --- Auth / quota / rate limit / ownership: hooks/auth.ts, quota.ts, rate-limit.ts, ownership.ts ---
export type { Principal };

function principalOf(res: Response): Principal {
  const p = res.locals.principal as Principal | undefined;
  if (!p?.userId) throw new ApiError(401, 'unauthorized', 'Authentication required');
  return p;
}

// --- Sessions -----------------------------------------------------------------------------------
export type DirectStatus = 'uploading' | 'completed' | 'aborted' | 'expired';

export interface DirectSession {
  upload_id: string;
  owner: string;
  filename: string;
  size: number;
  content_type: string;
  method: 'multipart' | 'put';
  bucket: string;
  key: string;
  /** S3 UploadId of the multipart upload. */
  s3_upload_id?: string;
  /**
   * Single PUT: where the client PUTs (`direct/<id>.put`). Complete copies it to `key`, so a
   * second PUT with a still-valid URL can never replace the object the pipeline scanned.
   */
  upload_key?: string;
  chunk_size: number;
  part_count: number;
  sha256?: string;
  created_at: string;
  /** The session (not the URLs) expires: then the cleanup aborts it. */
  expires_at: string;
  status: DirectStatus;
  /** Who asked: the API (tusk's chunk size) or the Companion-compatible routes (Uppy's default chunk size). */
  via: 'api' | 'companion';
  title?: string;
  description?: string;
  visibility?: string;
  completed_at?: string;
  /** A dedup hit: the upload whose object and outputs this one shares. */
  dedup_of?: string;
}

export class DirectSessionStore {
  constructor(
    readonly redis: Redis,
    readonly prefix: string,
  ) {}
  key(id: string): string {
    return `${this.prefix}direct:${id}`;
  }
  get expiringKey(): string {
    return `${this.prefix}direct-expiring`;
  }
  async get(id: string): Promise<DirectSession | undefined> {
    const raw = await this.redis.get(this.key(id));
    return raw ? (JSON.parse(raw) as DirectSession) : undefined;
  }
  /** Saves the session; open ones are indexed by expiry for the cleanup. Kept a week past expiry. */
  async save(s: DirectSession): Promise<void> {
    const ttl = Math.max(60, Math.ceil((Date.parse(s.expires_at) - Date.now()) / 1000) + 7 * 86_400);
    const multi = this.redis.multi().set(this.key(s.upload_id), JSON.stringify(s), 'EX', ttl);
    if (s.status === 'uploading') multi.zadd(this.expiringKey, Date.parse(s.expires_at), s.upload_id);
    else multi.zrem(this.expiringKey, s.upload_id);
    // Uppy's single PUT (/s3/params) has no completion call: the cleanup completes it once the object is there.
    if (s.status === 'uploading' && s.via === 'companion' && s.method === 'put') multi.zadd(this.pendingPutKey, Date.parse(s.created_at), s.upload_id);
    else multi.zrem(this.pendingPutKey, s.upload_id);
    await multi.exec();
  }
  /** Completed single PUTs whose PUT key is deleted once every URL signed for it has expired. */
  get staleKey(): string {
    return `${this.prefix}direct-stale-put`;
  }
  get pendingPutKey(): string {
    return `${this.prefix}direct-pending-put`;
  }
  /** Open sessions whose expiry is before `now`. */
  expired(now: number, limit = 500): Promise<string[]> {
    return this.redis.zrangebyscore(this.expiringKey, 0, now, 'LIMIT', 0, limit);
  }
  /** A short lock per session (complete / delete / cleanup never run at once on one session). */
  async lock(id: string, ttlMs = 120_000): Promise<(() => Promise<void>) | undefined> {
    const token = randomBytes(8).toString('hex');
    const key = `${this.prefix}direct-lock:${id}`;
    const ok = await this.redis.set(key, token, 'PX', ttlMs, 'NX');
    if (!ok) return undefined;
    return async () => {
      await this.redis.eval("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0", 1, key, token);
    };
  }
}

export const objectKeyOf = (uploadId: string) => `${DIRECT_PREFIX}/${uploadId}`;
/** The upload id of an object key `direct/<upload id>` (exactly that form), else undefined. */
export function uploadIdOfKey(key: string): string | undefined {
  const prefix = `${DIRECT_PREFIX}/`;
  if (!key.startsWith(prefix)) return undefined;
  const id = key.slice(prefix.length);
  return isUploadId(id) ? id : undefined;
}

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

export function typeAllowed(type: string, allowed: string[]): boolean {
  const t = type.toLowerCase().split(';')[0]!.trim();
  return allowed.some((a) => a === t || (a.endsWith('/*') && t.startsWith(a.slice(0, -1))));
}

export interface ListedPart {
  PartNumber: number;
  Size: number;
  ETag: string;
}

/** Storage listed a part numbered beyond what the upload can have (or more parts than that). */
export class PartBeyondLimitError extends Error {
  constructor(
    readonly partNumber: number,
    readonly limit: number,
  ) {
    super(`part ${partNumber} listed; at most ${limit} part(s) expected`);
    this.name = 'PartBeyondLimitError';
  }
}

/**
 * Every part S3 has for the multipart upload (ListParts is paginated: all pages), sorted. Stops
 * with PartBeyondLimitError as soon as a part numbered above `maxPartNumber` (or more parts than
 * that) is listed, so listing costs at most maxPartNumber parts, never more than was expected.
 */
export async function listAllParts(s3: S3Client, bucket: string, key: string, uploadId: string, maxPartNumber = MAX_PARTS): Promise<ListedPart[]> {
  const parts: ListedPart[] = [];
  let marker: string | undefined;
  for (;;) {
    const page = await s3.send(new ListPartsCommand({ Bucket: bucket, Key: key, UploadId: uploadId, PartNumberMarker: marker, MaxParts: 1000 }));
    for (const p of page.Parts ?? []) {
      const n = p.PartNumber ?? 0;
      if (!Number.isInteger(n) || n < 1 || n > maxPartNumber || parts.length >= maxPartNumber) throw new PartBeyondLimitError(n, maxPartNumber);
      parts.push({ PartNumber: n, Size: p.Size ?? 0, ETag: p.ETag ?? '' });
    }
    // Each further page must add parts and move the marker on: at most maxPartNumber / 1000 + 1 pages.
    if (!page.IsTruncated || !page.Parts?.length || !page.NextPartNumberMarker || page.NextPartNumberMarker === marker) break;
    marker = page.NextPartNumberMarker;
  }
  return parts.sort((a, b) => a.PartNumber - b.PartNumber);
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

const errName = (err: unknown) => (err as { name?: string; Code?: string })?.name ?? (err as { Code?: string })?.Code ?? '';
const isNotFound = (err: unknown) =>
  ['NotFound', 'NoSuchKey', 'NoSuchUpload'].includes(errName(err)) || (err as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode === 404;

// --- The service (shared by the API and the Companion-compatible routes) ---------------------
export interface DirectDeps {
  config: Config;
  redis: Redis;
  logger: Logger;
  finished: UploadFinishedHook;
  quota?: QuotaService;
  rateLimit?: CreationRateLimiter;
  ownership?: OwnershipStore;
}

export interface InitiateInput {
  filename: string;
  filesize: number;
  content_type: string;
  sha256?: string;
}

export class DirectUploads {
  readonly s3: S3Client;
  readonly presigner: Presigner;
  readonly sessions: DirectSessionStore;
  readonly records: RecordStore;
  readonly bucket: string;
  private readonly log: Logger;
  private readonly storage;

  constructor(readonly deps: DirectDeps) {
    const { config } = deps;
    if (!config.s3) throw new Error('direct uploads need STORAGE=s3');
    this.bucket = config.s3.bucket;
    this.s3 = createS3Client(config.s3);
    this.presigner = new Presigner(config.s3, config.pipeline.s3PublicEndpoint, this.bucket, config.direct.signedUrlTtlMs);
    this.sessions = new DirectSessionStore(deps.redis, config.redisPrefix);
    this.records = new RecordStore(deps.redis, config.redisPrefix);
    this.log = deps.logger.child({ component: 'direct-uploads' });
    this.storage = createObjectStorage(config);
  }

  private get settings() {
    return this.deps.config.direct;
  }

  /** Checks and reservations first; only then the S3 multipart upload (or nothing, for a PUT). */
  async initiate(principal: Principal, ip: string, input: InitiateInput, via: 'api' | 'companion', method?: 'put' | 'multipart'): Promise<DirectSession> {
    const { config } = this.deps;
    const multipart = method ? method === 'multipart' : input.filesize > this.settings.singlePutMax;
    if (!multipart && input.filesize > MAX_PART) {
      throw new ApiError(400, 'invalid_request', 'A single PUT is limited to 5 GiB by S3; use a multipart upload');
    }
    if (input.filesize > config.maxUploadSize) {
      throw new ApiError(413, 'too_large', `filesize ${input.filesize} exceeds the maximum upload size of ${config.maxUploadSize} bytes`, { max_size: config.maxUploadSize });
    }
    // The client's part size for Companion (Uppy picks it, see uppyChunkSize), tusk's own for the API.
    const chunk = !multipart ? input.filesize : via === 'companion' ? uppyChunkSize(input.filesize) : chunkSizeFor(input.filesize, this.settings.chunkSize);
    const partCount = multipart ? Math.max(1, Math.ceil(input.filesize / chunk)) : 1;
    if (partCount > MAX_PARTS || chunk > MAX_PART) {
      throw new ApiError(400, 'invalid_request', `filesize ${input.filesize} needs more than ${MAX_PARTS} parts of at most 5 GiB (the S3 multipart limit)`);
    }
    if (!typeAllowed(input.content_type, config.pipeline.allowedTypes)) {
      throw new ApiError(415, 'unsupported_type', `content_type "${input.content_type}" is not accepted`, { allowed_types: config.pipeline.allowedTypes });
    }
    if (this.deps.rateLimit) {
      try {
        await this.deps.rateLimit.consumeCreation(principal.userId, ip);
      } catch (err) {
        if (!(err instanceof RateLimitedError)) throw err;
        const retry = err.retryAfterSeconds;
        throw new ApiError(429, 'rate_limited', `Too many uploads started; retry in ${retry} s`, { retry_after: retry }, { 'Retry-After': String(Math.max(1, Math.ceil(retry))) });
      }
    }
    if (input.sha256 && via === 'api') {
      const hit = await this.dedupHit(principal, input);
      if (hit) return hit;
    }
    const id = newUploadId();
    const expiresAt = Date.now() + config.uploadExpiryMs;
    if (this.deps.quota) {
      const result = await this.deps.quota.reserve(principal.userId, id, input.filesize, { expiresAt });
      if (!result.ok) throw new ApiError(403, result.code, result.message);
    }
    try {
      const key = objectKeyOf(id);
      const now = expiresAt - config.uploadExpiryMs;
      const session: DirectSession = {
        upload_id: id,
        owner: principal.userId,
        filename: input.filename,
        size: input.filesize,
        content_type: input.content_type,
        method: multipart ? 'multipart' : 'put',
        bucket: this.bucket,
        key,
        ...(multipart ? {} : { upload_key: `${key}.put` }),
        chunk_size: chunk,
        part_count: partCount,
        ...(input.sha256 ? { sha256: input.sha256.toLowerCase() } : {}),
        created_at: new Date(now).toISOString(),
        expires_at: new Date(now + config.uploadExpiryMs).toISOString(),
        status: 'uploading',
        via,
      };
      if (multipart) {
        const created = await this.s3.send(
          new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key, ContentType: input.content_type, Metadata: { 'tusk-upload-id': id, 'tusk-owner': principal.userId } }),
        );
        if (!created.UploadId) throw new Error('CreateMultipartUpload returned no UploadId');
        session.s3_upload_id = created.UploadId;
      }
      await this.sessions.save(session);
      await this.records.create(
        { upload_id: id, filename: input.filename, size: input.filesize, content_type: input.content_type, created_at: session.created_at },
        'uploading',
      );
      await this.deps.ownership?.setOwner(id, principal.userId);
      this.log.info({ uploadId: id, owner: principal.userId, size: input.filesize, method: session.method, via }, 'direct upload initiated');
      return session;
    } catch (err) {
      await this.deps.quota?.release(id).catch(() => {});
      throw err;
    }
  }

  /**
   * A ready upload of the same user with the same content (sha256 computed by the pipeline) and
   * size: a new upload record pointing at its object and outputs, already complete. Nothing is
   * stored, so nothing is reserved against the quota.
   */
  private async dedupHit(principal: Principal, input: InitiateInput): Promise<DirectSession | undefined> {
    const { redis, config } = this.deps;
    const key = new RedisKeys(config.redisPrefix).dedup(principal.userId, input.sha256!, input.filesize);
    const existingId = await redis.get(key);
    if (!existingId) return undefined;
    const existing = await this.records.get(existingId);
    const stored = await redis.hget(this.records.key(existingId), 'sha256');
    if (!existing || existing.status !== 'ready' || existing.base.size !== input.filesize || existing.base.source?.owner !== principal.userId || stored !== input.sha256!.toLowerCase()) {
      await redis.del(key); // stale: deleted, reprocessed into another state, ...
      return undefined;
    }
    const id = newUploadId();
    const created = new Date().toISOString();
    const fields = await redis.hgetall(this.records.key(existingId));
    const base = { ...existing.base, upload_id: id, filename: input.filename, created_at: created };
    await redis.hset(this.records.key(id), { ...fields, base: JSON.stringify(base), dedup_of: existingId, updated_at: created });
    const source = existing.base.source?.location;
    const session: DirectSession = {
      upload_id: id,
      owner: principal.userId,
      filename: input.filename,
      size: input.filesize,
      content_type: input.content_type,
      method: 'put',
      bucket: source?.type === 's3' ? source.bucket : this.bucket,
      key: source?.type === 's3' ? source.key : '',
      chunk_size: input.filesize,
      part_count: 1,
      sha256: input.sha256!.toLowerCase(),
      created_at: created,
      expires_at: created,
      status: 'completed',
      completed_at: created,
      via: 'api',
      dedup_of: existingId,
    };
    await this.sessions.save(session);
    await this.deps.ownership?.setOwner(id, principal.userId);
    await redis.expire(key, DEDUP_TTL_SECONDS);
    this.log.info({ uploadId: id, dedupOf: existingId, owner: principal.userId }, 'direct upload deduplicated');
    return session;
  }

  /** The session if it belongs to `principal`; 404 otherwise (never reveal another user's upload). */
  async owned(principal: Principal, id: string): Promise<DirectSession> {
    const s = isUploadId(id) ? await this.sessions.get(id) : undefined;
    if (!s || s.upload_id !== id || s.owner !== principal.userId) throw new ApiError(404, 'not_found', 'No such upload');
    return s;
  }

  private open(s: DirectSession): void {
    if (s.status === 'completed') throw new ApiError(409, 'already_completed', 'The upload is already complete');
    if (s.status !== 'uploading') throw new ApiError(410, s.status === 'expired' ? 'expired' : 'aborted', `The upload was ${s.status}`);
  }

  /**
   * Presigned URLs for `numbers` (1-based part numbers, 1..part_count; the single PUT is part 1),
   * each signed for its part's size.
   */
  async urlsFor(s: DirectSession, numbers: number[]): Promise<Array<{ part_number: number; url: string }>> {
    if (s.method === 'put') return [{ part_number: 1, url: await this.presigner.putObject(s.upload_key ?? s.key, s.size) }];
    this.validatePartNumbers(s, numbers);
    return Promise.all(numbers.map(async (n) => ({ part_number: n, url: await this.presigner.uploadPart(s.key, s.s3_upload_id!, n, partSizeOf(s, n)) })));
  }

  validatePartNumbers(s: DirectSession, numbers: number[]): void {
    const max = s.part_count;
    const bad = numbers.filter((n) => !Number.isInteger(n) || n < 1 || n > max);
    if (bad.length) throw new ApiError(400, 'invalid_request', `part numbers must be from 1 to ${max}`, { invalid_part_numbers: bad.slice(0, 20) });
    if (numbers.length > MAX_URLS_PER_RESPONSE) throw new ApiError(400, 'invalid_request', `at most ${MAX_URLS_PER_RESPONSE} part numbers at once`);
  }

  async parts(s: DirectSession): Promise<ListedPart[]> {
    this.open(s);
    if (s.method === 'put') {
      const head = await this.head(s, s.upload_key ?? s.key);
      return head ? [{ PartNumber: 1, Size: head.size, ETag: head.etag }] : [];
    }
    try {
      return await listAllParts(this.s3, this.bucket, s.key, s.s3_upload_id!);
    } catch (err) {
      if (isNotFound(err)) throw new ApiError(410, 'aborted', 'The multipart upload no longer exists in storage');
      throw err;
    }
  }

  private async head(s: DirectSession, key = s.key): Promise<{ size: number; etag: string } | undefined> {
    try {
      const h = await this.s3.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { size: h.ContentLength ?? -1, etag: h.ETag ?? '' };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** The document of GET /api/uploads/:id. */
  async document(id: string, baseUrl: string) {
    const rec = await this.records.get(id);
    return rec ? publicDocument(rec, (key) => this.storage.urlFor(key, baseUrl)) : undefined;
  }

  /**
   * Verifies what storage has against what was declared, completes, HEADs, queues processing.
   * Idempotent: a completed session just returns.
   */
  async complete(
    principal: Principal,
    s: DirectSession,
    meta: { title?: string; description?: string; visibility?: string; parts?: Array<{ part_number: number; etag: string }> },
  ): Promise<DirectSession> {
    if (s.status === 'completed') return s;
    this.open(s);
    const unlock = await this.sessions.lock(s.upload_id);
    if (!unlock) throw new ApiError(409, 'in_progress', 'The upload is being completed or aborted by another request; retry shortly');
    try {
      const fresh = (await this.sessions.get(s.upload_id)) ?? s;
      if (fresh.status === 'completed') return fresh;
      this.open(fresh);
      s = fresh;
      if (s.method === 'multipart') await this.completeMultipart(s, meta.parts);
      else if (s.upload_key) await this.promotePut(s);
      const head = await this.head(s);
      if (!head) throw new ApiError(400, 'incomplete_upload', 'The object is not in storage yet: PUT the file to the upload URL first', { missing_parts: [1] });
      if (head.size !== s.size) {
        // A PUT with a different body size (or a multipart upload that went wrong): not kept.
        await this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: s.key })).catch(() => {});
        throw new ApiError(400, 'size_mismatch', `storage has ${head.size} bytes, the upload declared ${s.size}`, { expected_size: s.size, actual_size: head.size });
      }
      const done: DirectSession = {
        ...s,
        status: 'completed',
        completed_at: new Date().toISOString(),
        ...(meta.title !== undefined ? { title: meta.title } : {}),
        ...(meta.description !== undefined ? { description: meta.description } : {}),
        ...(meta.visibility !== undefined ? { visibility: meta.visibility } : {}),
      };
      await this.deps.quota?.complete(s.upload_id);
      // The same hook as a finished tus upload: record `uploaded`, then the process-upload job.
      const metadata: Record<string, string | null> = { filename: s.filename, filetype: s.content_type };
      for (const f of ['title', 'description', 'visibility'] as const) if (done[f] !== undefined) metadata[f] = done[f]!;
      await this.deps.finished.enqueue(
        new Upload({ id: s.upload_id, size: s.size, offset: s.size, metadata, storage: { type: 's3', bucket: this.bucket, path: s.key } }),
        s.owner,
      );
      // The client's descriptive fields, in the status record too (`meta:direct`), next to how it was uploaded.
      const described = { title: done.title, description: done.description, visibility: done.visibility, method: s.method, owner: s.owner };
      await this.records.update(s.upload_id, undefined, { 'meta:direct': JSON.stringify(described) });
      await this.sessions.save(done);
      this.log.info({ uploadId: s.upload_id, size: s.size, method: s.method }, 'direct upload completed; processing queued');
      return done;
    } finally {
      await unlock();
    }
  }

  /** The PUT's object (checked) becomes the upload's object; the PUT key is deleted. */
  private async promotePut(s: DirectSession): Promise<void> {
    const incoming = await this.head(s, s.upload_key);
    if (!incoming) {
      if ((await this.head(s))?.size === s.size) return; // copied already (a crash before the session was saved)
      throw new ApiError(400, 'incomplete_upload', 'The object is not in storage yet: PUT the file to the upload URL first', { missing_parts: [1] });
    }
    if (incoming.size !== s.size) {
      await this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: s.upload_key })).catch(() => {});
      throw new ApiError(400, 'size_mismatch', `storage has ${incoming.size} bytes, the upload declared ${s.size}`, { expected_size: s.size, actual_size: incoming.size });
    }
    await this.s3.send(new CopyObjectCommand({ Bucket: this.bucket, Key: s.key, CopySource: `${this.bucket}/${s.upload_key}`, ContentType: s.content_type, MetadataDirective: 'REPLACE' }));
    await this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: s.upload_key }));
    // A PUT with a URL signed before completion may still land on upload_key: deleted once they expired.
    await this.deps.redis.zadd(this.sessions.staleKey, Date.now() + this.settings.signedUrlTtlMs + 60_000, s.upload_id);
  }

  /**
   * Checks what storage has in O(parts listed): listing stops at the first part numbered beyond
   * the session's part count, each listed part must have the size its URL was signed for, and
   * missing numbers are found between the listed ones (never by counting up to a client's number).
   */
  private async completeMultipart(s: DirectSession, claimed?: Array<{ part_number: number; etag: string }>): Promise<void> {
    const count = s.part_count;
    let parts: ListedPart[];
    try {
      parts = await listAllParts(this.s3, this.bucket, s.key, s.s3_upload_id!, count);
    } catch (err) {
      if (err instanceof PartBeyondLimitError) {
        throw new ApiError(400, 'unexpected_parts', `storage has part ${err.partNumber}, beyond this upload's ${count} part(s)`, { part_count: count, extra_parts: [err.partNumber] });
      }
      // Completed already (a crash between CompleteMultipartUpload and saving the session)?
      if (isNotFound(err) && (await this.head(s))?.size === s.size) return;
      throw err;
    }
    const wrong: Array<{ part_number: number; size: number; expected: number }> = [];
    for (const p of parts) {
      const expected = partSizeOf(s, p.PartNumber);
      if (p.Size !== expected) wrong.push({ part_number: p.PartNumber, size: p.Size, expected });
    }
    if (wrong.length) {
      throw new ApiError(400, 'part_size_mismatch', `part(s) ${wrong.slice(0, 20).map((w) => `${w.part_number} (${w.size} bytes, expected ${w.expected})`).join(', ')} have the wrong size`, {
        wrong_parts: wrong.slice(0, 100),
      });
    }
    const distinct = new Set(parts.map((p) => p.PartNumber)).size;
    if (distinct < count) {
      const missing = missingParts(parts, count, 1000);
      throw new ApiError(400, 'incomplete_upload', `${count - distinct} part(s) missing: ${missing.slice(0, 50).join(', ')}${count - distinct > 50 ? ', ...' : ''}`, {
        missing_parts: missing,
      });
    }
    const total = parts.reduce((sum, p) => sum + p.Size, 0);
    if (total !== s.size) throw new ApiError(400, 'size_mismatch', `parts add up to ${total} bytes, the upload declared ${s.size}`, { expected_size: s.size, actual_size: total });
    const byNumber = new Map(parts.map((p) => [p.PartNumber, p]));
    for (const c of claimed ?? []) {
      const p = byNumber.get(c.part_number);
      if (p && c.etag && p.ETag && c.etag.replace(/"/g, '') !== p.ETag.replace(/"/g, '')) {
        throw new ApiError(400, 'etag_mismatch', `part ${c.part_number}: storage has ETag ${p.ETag}, the client sent ${c.etag}`, { part_number: c.part_number });
      }
    }
    await this.s3.send(
      new CompleteMultipartUploadCommand({
        Bucket: this.bucket,
        Key: s.key,
        UploadId: s.s3_upload_id,
        MultipartUpload: { Parts: parts.map((p) => ({ PartNumber: p.PartNumber, ETag: p.ETag })) },
      }),
    ).catch((err: unknown) => {
      // e.g. EntityTooSmall or InvalidPart: storage's own checks, answered as the client's error.
      if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 400) {
        throw new ApiError(400, 'storage_refused', `storage refused to complete the upload: ${errName(err)}${(err as Error).message ? ` (${(err as Error).message})` : ''}`);
      }
      throw err;
    });
  }

  /** Aborts / deletes what storage has, releases the reservation, removes the status record. */
  async abort(s: DirectSession, status: 'aborted' | 'expired' = 'aborted'): Promise<void> {
    if (s.status === 'completed') throw new ApiError(409, 'already_completed', 'The upload is complete; it is no longer an upload session');
    if (s.status !== 'uploading') return;
    const unlock = await this.sessions.lock(s.upload_id);
    if (!unlock) throw new ApiError(409, 'in_progress', 'The upload is being completed or aborted by another request; retry shortly');
    try {
      // Decided on the session as it is under the lock: a completion that finished between the
      // caller's read and this lock must not have its object deleted.
      const fresh = await this.sessions.get(s.upload_id);
      if (!fresh || fresh.owner !== s.owner) return;
      if (fresh.status === 'completed') throw new ApiError(409, 'already_completed', 'The upload is complete; it is no longer an upload session');
      if (fresh.status !== 'uploading') return;
      s = fresh;
      await abortStorage(this.s3, s);
      await this.deps.quota?.release(s.upload_id);
      await this.sessions.save({ ...s, status });
      await this.deps.redis.del(this.records.key(s.upload_id));
      this.log.info({ uploadId: s.upload_id, status }, 'direct upload aborted');
    } finally {
      await unlock();
    }
  }

  close(): void {
    this.s3.destroy();
    this.presigner.destroy();
  }
}

/** Abort the multipart upload and delete the object, each tolerating "already gone". */
export async function abortStorage(s3: S3Client, s: Pick<DirectSession, 'bucket' | 'key' | 's3_upload_id' | 'upload_key'>): Promise<void> {
  if (s.s3_upload_id) {
    await s3.send(new AbortMultipartUploadCommand({ Bucket: s.bucket, Key: s.key, UploadId: s.s3_upload_id })).catch((err) => {
      if (!isNotFound(err)) throw err;
    });
  }
  for (const key of [s.key, s.upload_key]) {
    if (!key) continue;
    await s3.send(new DeleteObjectCommand({ Bucket: s.bucket, Key: key })).catch((err) => {
      if (!isNotFound(err)) throw err;
    });
  }
}

// --- HTTP ------------------------------------------------------------------------------------
const initiateBody = z.object({
  filename: z.string().min(1).max(1024),
  filesize: z.number().int().positive(),
  content_type: z.string().min(3).max(255),
  sha256: z.string().regex(/^[a-fA-F0-9]{64}$/, 'sha256 must be 64 hex digits').optional(),
});
const partsBody = z.object({ part_numbers: z.array(z.number().int()).min(1).max(MAX_URLS_PER_RESPONSE) });
const completeBody = z
  .object({
    title: z.string().max(1000).optional(),
    description: z.string().max(10_000).optional(),
    visibility: z.enum(['private', 'unlisted', 'public']).optional(),
    parts: z.array(z.object({ part_number: z.number().int().positive(), etag: z.string().max(200) })).max(MAX_PARTS).optional(),
  })
  .strict();

export function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  const parsed = schema.safeParse(body ?? {});
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`);
    throw new ApiError(400, 'invalid_request', issues.join('; '), { issues });
  }
  return parsed.data;
}

/** Wraps an async handler: ApiError -> its JSON error; anything else -> 503 and a log line. */
export function handle(log: Logger, fn: (req: Request, res: Response) => Promise<void>): RequestHandler {
  return (req: Request, res: Response, _next: NextFunction) => {
    fn(req, res).catch((err: unknown) => {
      if (err instanceof ApiError) return sendApiError(res, err);
      log.warn({ err, path: req.path }, 'direct upload request failed');
      sendError(res, 503, 'unavailable', 'Storage or the session store is unavailable; retry');
    });
  };
}

export const jsonBody = express.json({ limit: '1mb' });
/** Malformed JSON -> 400 in our error format. */
export function jsonErrors(err: unknown, _req: Request, res: Response, next: NextFunction): void {
  // A path parameter whose percent-encoding is malformed (the router could not decode it): no such upload.
  if (err instanceof URIError) return sendError(res, 404, 'not_found', 'No such upload');
  if ((err as { type?: string })?.type === 'entity.parse.failed' || (err as { status?: number })?.status === 400) {
    return sendError(res, 400, 'invalid_request', 'Body is not valid JSON');
  }
  if ((err as { type?: string })?.type === 'entity.too.large') return sendError(res, 413, 'too_large', 'Request body too large');
  next(err);
}

/** Sets Access-Control-Allow-Origin (and what a client may read) for an allowed Origin. */
function corsFor(origins: string[] | '*'): (req: Request, res: Response) => void {
  return (req, res) => {
    const origin = req.get('origin');
    if (!origin) return;
    if (origins === '*') res.set('Access-Control-Allow-Origin', '*');
    else if (origins.includes(origin)) res.set({ 'Access-Control-Allow-Origin': origin, Vary: 'Origin' });
    else return;
    res.set('Access-Control-Expose-Headers', 'Retry-After, WWW-Authenticate');
  };
}

export interface DirectRouterOptions {
  config: Config;
  redis: Redis;
  logger: Logger;
  finished: UploadFinishedHook;
}

/** Quota, rate limiter and ownership store as configured (config.access). */
export function accessServices(config: Config, redis: Redis) {
  const access = config.access;
  return {
    quota: new QuotaService(redis, config.redisPrefix, { quotaBytes: access.quotaBytes, maxConcurrentUploads: access.maxConcurrentUploads }),
    rateLimit: new CreationRateLimiter(redis, config.redisPrefix, {
      perUserPerMinute: access.rateLimit.creationsPerMinuteUser,
      perIpPerMinute: access.rateLimit.creationsPerMinuteIp,
      perUser: !!access.auth,
    }),
    ownership: new OwnershipStore(redis, config.redisPrefix, !!access.auth),
  };
}

/**
 * The routes of the direct API plus, on the same service, the Companion-compatible /s3 routes.
 * server/main.ts: `app.use(createDirectUploadsRouter({ config, redis, logger, finished }))`.
 */
export function createDirectUploadsRouter(options: DirectRouterOptions): Router {
  // Each route has exactly one spelling: `/API/...`, `/api/uploads/<id>/parts/` and the like are
  // not these routes (Express matches case-insensitively and with a trailing slash by default).
  const router = express.Router({ caseSensitive: true, strict: true });
  const log = options.logger.child({ component: 'direct-uploads' });
  const routes = ['/api/uploads/initiate', '/api/uploads/:id/parts', '/api/uploads/:id/complete', '/s3/params', '/s3/multipart', '/s3/multipart/*rest'];
  if (options.config.storage !== 's3' || !options.config.s3) {
    router.all(routes, (_req, res) =>
      sendError(res, 501, 'not_implemented', 'Direct-to-storage uploads need STORAGE=s3; with the file store use the tus endpoint (/files/)'),
    );
    router.delete('/api/uploads/:id', (_req, res) =>
      sendError(res, 501, 'not_implemented', 'Direct-to-storage uploads need STORAGE=s3; tus uploads are deleted with DELETE /files/<id>'),
    );
    return router;
  }
  // CORS for browsers (Uppy) on another origin: CORS_ORIGINS, Authorization allowed, preflights answered.
  const cors = corsFor(options.config.corsOrigins);
  router.options([...routes, '/api/uploads/:id'], (req, res) => {
    cors(req, res);
    res.set({ 'Access-Control-Allow-Methods': 'GET, POST, DELETE, OPTIONS', 'Access-Control-Allow-Headers': 'Authorization, Content-Type', 'Access-Control-Max-Age': '600' });
    res.status(204).end();
  });
  router.use([...routes, '/api/uploads/:id'], (req, res, next) => {
    cors(req, res);
    next();
  });
  const service = new DirectUploads({ ...options, ...accessServices(options.config, options.redis) });
  const auth = requireAuth(createAuthenticator(options.config));
  const baseUrl = (req: Request) => options.config.publicUrl ?? `${req.protocol}://${req.get('host')}`;

  router.post(
    '/api/uploads/initiate',
    auth,
    jsonBody,
    handle(log, async (req, res) => {
      const principal = principalOf(res);
      const body = parseBody(initiateBody, req.body);
      const s = await service.initiate(principal, req.ip ?? '', body, 'api');
      if (s.dedup_of) {
        res.status(200).set('Cache-Control', 'no-store').json({ deduplicated: true, upload_id: s.upload_id });
        return;
      }
      const first = Array.from({ length: Math.min(s.part_count, MAX_URLS_PER_RESPONSE) }, (_, i) => i + 1);
      const urls = await service.urlsFor(s, first);
      res
        .status(201)
        .set('Cache-Control', 'no-store')
        .json({
          upload_id: s.upload_id,
          method: s.method,
          chunk_size: s.chunk_size,
          part_count: s.part_count,
          upload_urls: urls.map((u) => u.url),
          ...(s.method === 'put' ? { headers: { 'Content-Length': String(s.size) } } : {}),
          expires_at: service.presigner.expiresAt(),
          upload_expires_at: s.expires_at,
        });
    }),
  );

  router.get(
    '/api/uploads/:id/parts',
    auth,
    handle(log, async (req, res) => {
      const s = await service.owned(principalOf(res), String(req.params.id));
      const parts = await service.parts(s);
      res.set('Cache-Control', 'no-store').json({
        upload_id: s.upload_id,
        method: s.method,
        chunk_size: s.chunk_size,
        part_count: s.part_count,
        parts: parts.map((p) => ({ part_number: p.PartNumber, size: p.Size, etag: p.ETag })),
      });
    }),
  );

  router.post(
    '/api/uploads/:id/parts',
    auth,
    jsonBody,
    handle(log, async (req, res) => {
      const s = await service.owned(principalOf(res), String(req.params.id));
      const body = parseBody(partsBody, req.body);
      if (s.status !== 'uploading') throw new ApiError(409, s.status === 'completed' ? 'already_completed' : s.status, `The upload is ${s.status}`);
      const urls = await service.urlsFor(s, [...new Set(body.part_numbers)]);
      res.set('Cache-Control', 'no-store').json({ upload_id: s.upload_id, upload_urls: urls, expires_at: service.presigner.expiresAt() });
    }),
  );

  router.post(
    '/api/uploads/:id/complete',
    auth,
    jsonBody,
    handle(log, async (req, res) => {
      const principal = principalOf(res);
      const s = await service.owned(principal, String(req.params.id));
      const body = parseBody(completeBody, req.body);
      const done = await service.complete(principal, s, body);
      res.status(202).set('Cache-Control', 'no-store').json(await service.document(done.upload_id, baseUrl(req)));
    }),
  );

  router.delete(
    '/api/uploads/:id',
    auth,
    handle(log, async (req, res) => {
      const s = await service.owned(principalOf(res), String(req.params.id));
      await service.abort(s);
      res.status(204).end();
    }),
  );

  registerCompanionRoutes(router, service, auth, options.logger);
  router.use(jsonErrors);
  return router;
}
