// Direct-to-storage uploads: tusk signs S3 URLs, the client sends the bytes straight to storage,
// tusk only handles metadata. The service behind the JSON API and the Companion-compatible routes
// (server/direct/) and the cleanup of abandoned sessions (workers/): every step of an upload's life
// goes through the lifecycle (hooks/lifecycle.ts) like a tus upload's.
//   initiate   checks (size, type, rate limit) and the reservation before anything exists in S3
//   complete   tusk lists what storage has, checks numbers, sizes and the total in O(parts listed),
//              completes, HEADs the object, and finishes the upload (the process-upload job)
//   abort      storage freed, the upload terminated
//   cleanup    sessions past UPLOAD_EXPIRY expired, Companion single PUTs completed once their object
//              arrived, late PUT keys deleted, orphaned multipart uploads under direct/ aborted
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { isAllowedType } from '../../lib/allowed-types.js';
import { isNotFoundError, TuskError } from '../../lib/errors.js';
import { DEDUP_TTL_SECONDS } from '../../lib/record-store.js';
import { listAllParts, MAX_PARTS, PartBeyondLimitError, type ListedPart } from '../../lib/s3.js';
import { DIRECT_PREFIX, directObjectKey, directPutKey, uploadIdOfDirectKey } from '../../lib/s3-keys.js';
import { isUploadId, newUploadId } from '../../lib/upload-id.js';
import type { Logger } from '../../lib/logger.js';
import type { Principal } from '../auth.js';
import type { Core } from '../core.js';
import { chunkSizeFor, MAX_PART, MAX_URLS_PER_RESPONSE, missingParts, partSizeOf, uppyChunkSize } from './parts.js';
import { DirectSessionStore, type DirectSession } from './sessions.js';

export interface InitiateInput {
  filename: string;
  filesize: number;
  content_type: string;
  sha256?: string;
}

export interface CompletionInput {
  title?: string;
  description?: string;
  visibility?: string;
  parts?: Array<{ part_number: number; etag: string }>;
}

export interface DirectCleanupResult {
  /** Companion single PUTs completed because their object arrived. */
  completed: number;
  expired: number;
  orphans: number;
  bytesFreed: number;
}

export class DirectUploads {
  readonly sessions: DirectSessionStore;
  private readonly s3: S3Client;
  private readonly bucket: string;
  private readonly log: Logger;

  constructor(private readonly core: Core) {
    if (!core.s3) throw new Error('direct uploads need STORAGE=s3');
    this.s3 = core.s3.client;
    this.bucket = core.s3.bucket;
    this.sessions = new DirectSessionStore(core.redis, core.keys);
    this.log = core.logger.child({ component: 'direct-uploads' });
  }

  /** How long presigned upload URLs work (SIGNED_URL_TTL), in seconds. */
  get urlTtlSeconds(): number {
    return Math.max(1, Math.round(this.core.config.direct.signedUrlTtlMs / 1000));
  }

  /** When URLs signed now stop working. */
  urlsExpireAt(now = Date.now()): string {
    return new Date(now + this.urlTtlSeconds * 1000).toISOString();
  }

  /** Checks and reservations first; only then the S3 multipart upload (or nothing, for a PUT). */
  async initiate(principal: Principal, ip: string, input: InitiateInput, via: 'api' | 'companion', method?: 'put' | 'multipart'): Promise<DirectSession> {
    const { config, access, lifecycle } = this.core;
    const multipart = method ? method === 'multipart' : input.filesize > config.direct.singlePutMax;
    if (!multipart && input.filesize > MAX_PART) throw new TuskError('invalid_request', 'A single PUT is limited to 5 GiB by S3; use a multipart upload');
    if (input.filesize > config.maxUploadSize) {
      throw new TuskError('too_large', `filesize ${input.filesize} exceeds the maximum upload size of ${config.maxUploadSize} bytes`, { max_size: config.maxUploadSize });
    }
    // The client's part size for Companion (Uppy picks it, see uppyChunkSize), tusk's own for the API.
    const chunk = !multipart ? input.filesize : via === 'companion' ? uppyChunkSize(input.filesize) : chunkSizeFor(input.filesize, config.direct.chunkSize);
    const partCount = multipart ? Math.max(1, Math.ceil(input.filesize / chunk)) : 1;
    if (partCount > MAX_PARTS || chunk > MAX_PART) {
      throw new TuskError('invalid_request', `filesize ${input.filesize} needs more than ${MAX_PARTS} parts of at most 5 GiB (the S3 multipart limit)`);
    }
    if (!isAllowedType(input.content_type, config.pipeline.allowedTypes)) {
      throw new TuskError('unsupported_type', `content_type "${input.content_type}" is not accepted`, { allowed_types: config.pipeline.allowedTypes });
    }
    await access.rateLimiter.consumeCreation(principal.userId, ip);
    if (input.sha256 && via === 'api') {
      const hit = await this.dedupHit(principal, input);
      if (hit) return hit;
    }
    const id = newUploadId();
    const now = Date.now();
    const key = directObjectKey(id);
    const session: DirectSession = {
      upload_id: id,
      owner: principal.userId,
      filename: input.filename,
      size: input.filesize,
      content_type: input.content_type,
      method: multipart ? 'multipart' : 'put',
      bucket: this.bucket,
      key,
      ...(multipart ? {} : { upload_key: directPutKey(id) }),
      chunk_size: chunk,
      part_count: partCount,
      ...(input.sha256 ? { sha256: input.sha256.toLowerCase() } : {}),
      created_at: new Date(now).toISOString(),
      expires_at: new Date(now + config.uploadExpiryMs).toISOString(),
      status: 'uploading',
      via,
    };
    await lifecycle.create(principal, id, {
      bytes: input.filesize,
      record: { upload_id: id, filename: input.filename, size: input.filesize, content_type: input.content_type, created_at: session.created_at },
    });
    try {
      if (multipart) {
        const created = await this.s3.send(
          new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key, ContentType: input.content_type, Metadata: { 'tusk-upload-id': id, 'tusk-owner': principal.userId } }),
        );
        if (!created.UploadId) throw new Error('CreateMultipartUpload returned no UploadId');
        session.s3_upload_id = created.UploadId;
      }
      await this.sessions.save(session);
    } catch (err) {
      await lifecycle.terminate(id, 'aborted').catch(() => {});
      throw err;
    }
    this.log.info({ uploadId: id, owner: principal.userId, size: input.filesize, method: session.method, via }, 'direct upload initiated');
    this.core.metrics.directSessions.inc({ via, event: 'initiated' });
    return session;
  }

  /**
   * A ready upload of the same user with the same content (sha256 computed by the pipeline) and
   * size: a new upload sharing its object and outputs, already complete. Nothing is stored, so
   * nothing is reserved against the quota.
   */
  private async dedupHit(principal: Principal, input: InitiateInput): Promise<DirectSession | undefined> {
    const { redis, keys, records, lifecycle } = this.core;
    const sha256 = input.sha256!.toLowerCase();
    const indexKey = keys.dedup(principal.userId, sha256, input.filesize);
    const existingId = await redis.get(indexKey);
    if (!existingId) return undefined;
    const existing = await records.get(existingId);
    if (!existing || existing.status !== 'ready' || existing.base.size !== input.filesize || existing.base.source?.owner !== principal.userId || existing.sha256 !== sha256) {
      await redis.del(indexKey); // stale: deleted, reprocessed into another state, ...
      return undefined;
    }
    const id = newUploadId();
    const created = new Date().toISOString();
    await lifecycle.duplicate(principal, id, existingId, { ...existing.base, upload_id: id, filename: input.filename, created_at: created });
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
      sha256,
      created_at: created,
      expires_at: created,
      status: 'completed',
      completed_at: created,
      via: 'api',
      dedup_of: existingId,
    };
    await this.sessions.save(session);
    await redis.expire(indexKey, DEDUP_TTL_SECONDS);
    this.log.info({ uploadId: id, dedupOf: existingId, owner: principal.userId }, 'direct upload deduplicated');
    this.core.metrics.directSessions.inc({ via: 'api', event: 'deduplicated' });
    return session;
  }

  /** The session of upload `id` if `principal` owns it; 404 otherwise (never reveal another user's upload). */
  async owned(principal: Principal, id: string): Promise<DirectSession> {
    const s = isUploadId(id) && (await this.core.access.ownership.canAccess(principal, id)) ? await this.sessions.get(id) : undefined;
    if (!s || s.upload_id !== id) throw new TuskError('not_found');
    return s;
  }

  /**
   * Refuses work on a session that is no longer open: completed 409, aborted or expired 410 (past
   * its expiry it is expired already, whether or not the cleanup has freed it yet).
   */
  ensureOpen(s: DirectSession, now = Date.now()): void {
    if (s.status === 'completed') throw new TuskError('already_completed');
    if (s.status === 'expired' || (s.status === 'uploading' && now > Date.parse(s.expires_at))) {
      throw new TuskError('expired', 'The upload expired before it was completed');
    }
    if (s.status !== 'uploading') throw new TuskError('aborted', `The upload was ${s.status}`);
  }

  /**
   * Presigned URLs for `numbers` (1-based part numbers, 1..part_count; the single PUT is part 1),
   * each signed for its part's size.
   */
  async urlsFor(s: DirectSession, numbers: number[]): Promise<Array<{ part_number: number; url: string }>> {
    const presigner = this.core.s3!.presigner;
    if (s.method === 'put') return [{ part_number: 1, url: await presigner.putObject(this.bucket, s.upload_key ?? s.key, s.size, this.urlTtlSeconds) }];
    this.validatePartNumbers(s, numbers);
    return Promise.all(numbers.map(async (n) => ({ part_number: n, url: await presigner.uploadPart(this.bucket, s.key, s.s3_upload_id!, n, partSizeOf(s, n), this.urlTtlSeconds) })));
  }

  validatePartNumbers(s: DirectSession, numbers: number[]): void {
    const max = s.part_count;
    const bad = numbers.filter((n) => !Number.isInteger(n) || n < 1 || n > max);
    if (bad.length) throw new TuskError('invalid_request', `part numbers must be from 1 to ${max}`, { invalid_part_numbers: bad.slice(0, 20) });
    if (numbers.length > MAX_URLS_PER_RESPONSE) throw new TuskError('invalid_request', `at most ${MAX_URLS_PER_RESPONSE} part numbers at once`);
  }

  async parts(s: DirectSession): Promise<ListedPart[]> {
    this.ensureOpen(s);
    if (s.method === 'put') {
      const head = await this.head(s.upload_key ?? s.key);
      return head ? [{ PartNumber: 1, Size: head.size, ETag: head.etag }] : [];
    }
    try {
      return await listAllParts(this.s3, this.bucket, s.key, s.s3_upload_id!);
    } catch (err) {
      if (isNotFoundError(err)) throw new TuskError('aborted', 'The multipart upload no longer exists in storage');
      throw err;
    }
  }

  private async head(key: string): Promise<{ size: number; etag: string } | undefined> {
    try {
      const h = await this.s3.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { size: h.ContentLength ?? -1, etag: h.ETag ?? '' };
    } catch (err) {
      if (isNotFoundError(err)) return undefined;
      throw err;
    }
  }

  /**
   * Verifies what storage has against what was declared, completes, HEADs, finishes the upload.
   * Idempotent: a completed session just returns.
   */
  async complete(s: DirectSession, meta: CompletionInput): Promise<DirectSession> {
    if (s.status === 'completed') return s;
    this.ensureOpen(s);
    const unlock = await this.sessions.lock(s.upload_id);
    if (!unlock) throw new TuskError('in_progress', 'The upload is being completed or aborted by another request; retry shortly');
    try {
      const fresh = (await this.sessions.get(s.upload_id)) ?? s;
      if (fresh.status === 'completed') return fresh;
      this.ensureOpen(fresh);
      s = fresh;
      if (s.method === 'multipart') await this.completeMultipart(s, meta.parts);
      else if (s.upload_key) await this.promotePut(s);
      const head = await this.head(s.key);
      if (!head) throw new TuskError('incomplete_upload', 'The object is not in storage yet: PUT the file to the upload URL first', { missing_parts: [1] });
      if (head.size !== s.size) {
        // A PUT with a different body size (or a multipart upload that went wrong): not kept.
        await this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: s.key })).catch(() => {});
        throw new TuskError('size_mismatch', `storage has ${head.size} bytes, the upload declared ${s.size}`, { expected_size: s.size, actual_size: head.size });
      }
      const done: DirectSession = {
        ...s,
        status: 'completed',
        completed_at: new Date().toISOString(),
        ...(meta.title !== undefined ? { title: meta.title } : {}),
        ...(meta.description !== undefined ? { description: meta.description } : {}),
        ...(meta.visibility !== undefined ? { visibility: meta.visibility } : {}),
      };
      const metadata: Record<string, string | null> = { filename: s.filename, filetype: s.content_type };
      for (const f of ['title', 'description', 'visibility'] as const) if (done[f] !== undefined) metadata[f] = done[f]!;
      // The client's descriptive fields, in the status record too (`meta:direct`), next to how it was uploaded.
      const described = { title: done.title, description: done.description, visibility: done.visibility, method: s.method, owner: s.owner };
      await this.core.lifecycle.finish(s.upload_id, {
        location: { type: 's3', bucket: this.bucket, key: s.key },
        size: s.size,
        metadata,
        recordFields: { 'meta:direct': JSON.stringify(described) },
      });
      await this.sessions.save(done);
      this.log.info({ uploadId: s.upload_id, size: s.size, method: s.method }, 'direct upload completed; processing queued');
      this.core.metrics.directSessions.inc({ via: s.via, event: 'completed' });
      return done;
    } finally {
      await unlock();
    }
  }

  /** The PUT's object (checked) becomes the upload's object; the PUT key is deleted. */
  private async promotePut(s: DirectSession): Promise<void> {
    const incoming = await this.head(s.upload_key!);
    if (!incoming) {
      if ((await this.head(s.key))?.size === s.size) return; // copied already (a crash before the session was saved)
      throw new TuskError('incomplete_upload', 'The object is not in storage yet: PUT the file to the upload URL first', { missing_parts: [1] });
    }
    if (incoming.size !== s.size) {
      await this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: s.upload_key })).catch(() => {});
      throw new TuskError('size_mismatch', `storage has ${incoming.size} bytes, the upload declared ${s.size}`, { expected_size: s.size, actual_size: incoming.size });
    }
    await this.s3.send(new CopyObjectCommand({ Bucket: this.bucket, Key: s.key, CopySource: `${this.bucket}/${s.upload_key}`, ContentType: s.content_type, MetadataDirective: 'REPLACE' }));
    await this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: s.upload_key }));
    // A PUT with a URL signed before completion may still land on upload_key: deleted once they expired.
    await this.sessions.markStalePut(s.upload_id, Date.now() + this.core.config.direct.signedUrlTtlMs + 60_000);
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
        throw new TuskError('unexpected_parts', `storage has part ${err.partNumber}, beyond this upload's ${count} part(s)`, { part_count: count, extra_parts: [err.partNumber] });
      }
      // Completed already (a crash between CompleteMultipartUpload and saving the session)?
      if (isNotFoundError(err) && (await this.head(s.key))?.size === s.size) return;
      throw err;
    }
    const wrong: Array<{ part_number: number; size: number; expected: number }> = [];
    for (const p of parts) {
      const expected = partSizeOf(s, p.PartNumber);
      if (p.Size !== expected) wrong.push({ part_number: p.PartNumber, size: p.Size, expected });
    }
    if (wrong.length) {
      throw new TuskError('part_size_mismatch', `part(s) ${wrong.slice(0, 20).map((w) => `${w.part_number} (${w.size} bytes, expected ${w.expected})`).join(', ')} have the wrong size`, {
        wrong_parts: wrong.slice(0, 100),
      });
    }
    const distinct = new Set(parts.map((p) => p.PartNumber)).size;
    if (distinct < count) {
      const missing = missingParts(parts, count, 1000);
      throw new TuskError('incomplete_upload', `${count - distinct} part(s) missing: ${missing.slice(0, 50).join(', ')}${count - distinct > 50 ? ', ...' : ''}`, {
        missing_parts: missing,
      });
    }
    const total = parts.reduce((sum, p) => sum + p.Size, 0);
    if (total !== s.size) throw new TuskError('size_mismatch', `parts add up to ${total} bytes, the upload declared ${s.size}`, { expected_size: s.size, actual_size: total });
    const byNumber = new Map(parts.map((p) => [p.PartNumber, p]));
    for (const c of claimed ?? []) {
      const p = byNumber.get(c.part_number);
      if (p && c.etag && p.ETag && c.etag.replace(/"/g, '') !== p.ETag.replace(/"/g, '')) {
        throw new TuskError('etag_mismatch', `part ${c.part_number}: storage has ETag ${p.ETag}, the client sent ${c.etag}`, { part_number: c.part_number });
      }
    }
    await this.s3
      .send(
        new CompleteMultipartUploadCommand({
          Bucket: this.bucket,
          Key: s.key,
          UploadId: s.s3_upload_id,
          MultipartUpload: { Parts: parts.map((p) => ({ PartNumber: p.PartNumber, ETag: p.ETag })) },
        }),
      )
      .catch((err: unknown) => {
        // e.g. EntityTooSmall or InvalidPart: storage's own checks, answered as the client's error.
        const e = err as { $metadata?: { httpStatusCode?: number }; name?: string; message?: string };
        if (e.$metadata?.httpStatusCode === 400) throw new TuskError('storage_refused', `storage refused to complete the upload: ${e.name ?? ''}${e.message ? ` (${e.message})` : ''}`);
        throw err;
      });
  }

  /** Frees what storage has and terminates the upload (deleted by its owner, or expired). */
  async abort(s: DirectSession, reason: 'aborted' | 'expired' = 'aborted'): Promise<{ bytesFreed: number }> {
    if (s.status === 'completed') throw new TuskError('already_completed', 'The upload is complete; it is no longer an upload session');
    if (s.status !== 'uploading') return { bytesFreed: 0 };
    const unlock = await this.sessions.lock(s.upload_id);
    if (!unlock) throw new TuskError('in_progress', 'The upload is being completed or aborted by another request; retry shortly');
    try {
      // Decided on the session as it is under the lock: a completion that finished between the
      // caller's read and this lock must not have its object deleted.
      const fresh = await this.sessions.get(s.upload_id);
      if (!fresh || fresh.status !== 'uploading') {
        if (fresh?.status === 'completed') throw new TuskError('already_completed', 'The upload is complete; it is no longer an upload session');
        return { bytesFreed: 0 };
      }
      const bytesFreed = fresh.s3_upload_id ? await this.partBytes(fresh.key, fresh.s3_upload_id) : 0;
      await this.freeStorage(fresh);
      // Aborted by its owner, the upload is terminated (deleted by its owner) as a tus DELETE is.
      await this.core.lifecycle.terminate(fresh.upload_id, reason === 'expired' ? 'expired' : 'terminated');
      await this.sessions.save({ ...fresh, status: reason });
      this.log.info({ uploadId: fresh.upload_id, status: reason }, 'direct upload aborted');
      this.core.metrics.directSessions.inc({ via: fresh.via, event: reason });
      return { bytesFreed };
    } finally {
      await unlock();
    }
  }

  /** Aborts the multipart upload and deletes the objects, each tolerating "already gone". */
  private async freeStorage(s: DirectSession): Promise<void> {
    if (s.s3_upload_id) {
      await this.s3.send(new AbortMultipartUploadCommand({ Bucket: s.bucket, Key: s.key, UploadId: s.s3_upload_id })).catch((err) => {
        if (!isNotFoundError(err)) throw err;
      });
    }
    for (const key of [s.key, s.upload_key]) {
      if (!key) continue;
      await this.s3.send(new DeleteObjectCommand({ Bucket: s.bucket, Key: key })).catch((err) => {
        if (!isNotFoundError(err)) throw err;
      });
    }
  }

  private async partBytes(key: string, uploadId: string): Promise<number> {
    try {
      return (await listAllParts(this.s3, this.bucket, key, uploadId)).reduce((sum, p) => sum + p.Size, 0);
    } catch (err) {
      this.log.debug({ err, key }, 'could not list the parts of an abandoned upload');
      return 0;
    }
  }

  /** The maintenance pass over direct uploads (workers/): see the header. Logs what it did. */
  async cleanup(now = Date.now()): Promise<DirectCleanupResult> {
    const result: DirectCleanupResult = { expired: 0, orphans: 0, bytesFreed: 0, completed: await this.completeArrivedPuts() };
    // Expired sessions (in batches; the index only holds open ones).
    for (;;) {
      const ids = await this.sessions.expired(now, 200);
      if (!ids.length) break;
      for (const id of ids) {
        const s = await this.sessions.get(id);
        if (!s || s.status !== 'uploading') {
          await this.sessions.forgetExpiring(id);
          if (!s) await this.core.lifecycle.terminate(id, 'expired').catch(() => 0);
          continue;
        }
        try {
          result.bytesFreed += (await this.abort(s, 'expired')).bytesFreed;
          result.expired++;
        } catch (err) {
          if (!(err instanceof TuskError) || err.code !== 'in_progress') throw err;
          await this.sessions.expireLater(id, now + 60_000); // being completed/aborted now: look again later
        }
      }
      if (ids.length < 200) break;
    }
    // PUT keys of completed single PUTs once every URL signed for them expired (a late PUT's bytes).
    for (const id of await this.sessions.stalePuts(now)) {
      await this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: directPutKey(id) })).catch(() => {});
      await this.sessions.forgetStalePut(id);
    }
    const orphans = await this.abortOrphans(now);
    result.orphans = orphans.count;
    result.bytesFreed += orphans.bytes;
    if (result.expired || result.orphans || result.completed) this.log.info({ ...result }, 'direct uploads: abandoned sessions cleaned up');
    return result;
  }

  /** Companion single PUTs (no completion call in Uppy) whose object arrived with the declared size. */
  private async completeArrivedPuts(): Promise<number> {
    let completed = 0;
    for (const id of await this.sessions.pendingPuts()) {
      const s = await this.sessions.get(id);
      if (!s || s.status !== 'uploading') {
        await this.sessions.forgetPendingPut(id);
        continue;
      }
      if ((await this.head(s.upload_key ?? s.key).catch(() => undefined))?.size !== s.size) continue; // not there yet (or the expiry pass deals with it)
      try {
        await this.complete(s, {});
        completed++;
      } catch (err) {
        this.log.warn({ err, uploadId: id }, 'could not complete an arrived single PUT');
      }
    }
    return completed;
  }

  /**
   * Multipart uploads under direct/ older than UPLOAD_EXPIRY that no open session owns (a crash
   * between creating and recording one, a lost Redis): aborted, so orphaned parts never pile up.
   */
  private async abortOrphans(now: number): Promise<{ count: number; bytes: number }> {
    let count = 0;
    let bytes = 0;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      const page = await this.s3.send(
        new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: `${DIRECT_PREFIX}/`, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker, MaxUploads: 1000 }),
      );
      for (const u of page.Uploads ?? []) {
        if (!u.Key || !u.UploadId) continue;
        if (now - (u.Initiated?.getTime() ?? now) < this.core.config.uploadExpiryMs) continue;
        const id = uploadIdOfDirectKey(u.Key);
        const s = id ? await this.sessions.get(id) : undefined;
        if (s && s.status === 'uploading' && s.s3_upload_id === u.UploadId) continue; // its session expires it
        bytes += await this.partBytes(u.Key, u.UploadId);
        // Only the multipart upload, never the object under the key (it may be a completed upload).
        try {
          await this.s3.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: u.Key, UploadId: u.UploadId }));
          count++;
        } catch (err) {
          this.log.warn({ err, key: u.Key }, 'could not abort an orphaned direct multipart upload');
        }
      }
      if (!page.IsTruncated) break;
      keyMarker = page.NextKeyMarker;
      uploadIdMarker = page.NextUploadIdMarker;
      if (!keyMarker && !uploadIdMarker) break;
    }
    return { count, bytes };
  }
}
