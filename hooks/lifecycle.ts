// The life of an upload, whichever way it arrives (tus, the direct-to-storage API, the
// Companion-compatible routes) and whoever ends it (the client, the cleanup jobs). Each protocol
// face is a thin adapter over these steps, in this order:
//
//   create     before anything is stored: quota reservation (bytes and, unless complete, an
//              unfinished-upload slot), the owner, the status record `uploading`
//   grow       a body of a deferred-length upload, or its declared length: the reservation grows
//              before the bytes are stored
//   received   bytes were stored (for observers)
//   finish     the bytes are complete: the reservation becomes stored bytes, the record
//              `uploaded`, one `process-upload` job (job id = upload id: a repeated finish adds
//              nothing)
//   terminate  deleted by its owner, aborted, or expired unfinished: reservation and slot freed,
//              owner forgotten, status record, derived outputs and dedup entry removed
//   reprocess  a new run of the pipeline for a finished upload
//
// Observers (metrics, hooks to the app's backend) listen to the events of the same names, each
// emitted once per upload: `created` when it exists, `finished` when its bytes are complete (a
// partial of a concatenation too, flagged; an upload complete from the start - a final
// concatenation, a dedup hit - at its creation; never again for a repeated finish), `terminated`
// when it is removed, `received` for each body stored.
import { EventEmitter } from 'node:events';
import type { Queue } from 'bullmq';
import type { Logger } from '../lib/logger.js';
import { TuskError } from '../lib/errors.js';
import type { Metrics } from '../lib/metrics.js';
import type { ObjectStorage } from '../lib/object-storage.js';
import { PROCESS_UPLOAD_JOB, processUploadJobId, type ProcessUploadJob, type ReprocessFields, type StorageLocation } from '../lib/queues.js';
import { baseFromMetadata, type NewRunResult, type RecordBase, type RecordStore } from '../lib/record-store.js';
import type { RedisKeys } from '../lib/redis-keys.js';
import type { Redis } from 'ioredis';
import type { AccessControl } from './access.js';
import type { Principal } from './auth.js';

export interface CreateOptions {
  /** Bytes to reserve now: the declared length (a deferred length: what the first body brings). */
  bytes: number;
  /** The status record's base (filename, size, type, created_at). */
  record: RecordBase;
  /** Already complete (a final concatenation, a dedup hit): no unfinished-upload slot. */
  complete?: boolean;
  /** Uploads of the same user whose reservations this one takes over (concatenation partials). */
  replaces?: string[];
}

export interface FinishInfo {
  location: StorageLocation;
  size: number;
  metadata: Record<string, string | null>;
  /** More fields for the status record (e.g. what a direct upload's client described). */
  recordFields?: Record<string, string>;
}

export interface LifecycleEvents {
  created: [{ id: string; owner: string; bytes: number }];
  received: [{ id: string; bytes: number }];
  /** `partial`: a partial upload of a concatenation (nothing to process on its own). */
  finished: [{ id: string; owner: string | null; size: number; partial: boolean }];
  terminated: [{ id: string; reason: TerminationReason; bytesFreed: number }];
}

/** How long the owner of an expired upload is remembered (a week: its client may come back late). */
const EXPIRED_OWNER_TTL_SECONDS = 7 * 86_400;

/** Deleted by its owner (tus DELETE, a direct or Companion abort); aborted (a failed creation); expired unfinished; a partial whose bytes a final upload took over. */
export type TerminationReason = 'terminated' | 'aborted' | 'expired' | 'concatenated';

export class UploadLifecycle extends EventEmitter<LifecycleEvents> {
  constructor(
    private readonly deps: {
      access: AccessControl;
      records: RecordStore;
      /** Producer of the process-upload queue. */
      processQueue: Queue<ProcessUploadJob & ReprocessFields>;
      storage: ObjectStorage;
      redis: Redis;
      keys: RedisKeys;
      logger: Logger;
    },
  ) {
    super();
  }

  /**
   * A new upload, before any of its bytes is stored. Throws TuskError quota_exceeded or
   * too_many_uploads, leaving nothing behind.
   */
  async create(owner: Principal, id: string, opts: CreateOptions): Promise<void> {
    const { access, records } = this.deps;
    const reserved = await access.quota.reserve(owner.userId, id, opts.bytes, {
      expiresAt: opts.complete ? 0 : access.expiresAt(),
      complete: opts.complete,
      replaces: opts.replaces,
    });
    if (!reserved.ok) throw new TuskError(reserved.code, reserved.message);
    try {
      await access.ownership.setOwner(id, owner.userId, Date.parse(opts.record.created_at) || Date.now());
      await records.create(opts.record, opts.complete ? 'uploaded' : 'uploading');
    } catch (err) {
      await access.quota.release(id).catch(() => {});
      await access.ownership.forget(id).catch(() => {});
      throw err;
    }
    this.emit('created', { id, owner: owner.userId, bytes: opts.bytes });
    if (opts.complete) this.emit('finished', { id, owner: owner.userId, size: opts.bytes, partial: false });
  }

  /**
   * A new upload that shares another's stored bytes and outputs (a dedup hit): already complete,
   * nothing new stored, so nothing reserved; its record is a copy of the source's.
   */
  async duplicate(owner: Principal, id: string, sourceId: string, base: RecordBase): Promise<void> {
    const { access, records } = this.deps;
    await access.ownership.setOwner(id, owner.userId, Date.parse(base.created_at) || Date.now());
    if (!(await records.copyAs(sourceId, id, base))) {
      await access.ownership.forget(id);
      throw new TuskError('not_found', 'The upload to share is gone');
    }
    this.emit('created', { id, owner: owner.userId, bytes: 0 });
    this.emit('finished', { id, owner: owner.userId, size: base.size ?? 0, partial: false });
  }

  /**
   * The reservation becomes `bytes` (a deferred length declared), or grows to it (`growOnly`: what
   * the next body of a still-deferred upload can add), before those bytes are stored.
   */
  async grow(id: string, bytes: number, opts: { growOnly?: boolean } = {}): Promise<void> {
    const adjusted = await this.deps.access.quota.adjust(id, bytes, opts);
    if (!adjusted.ok) throw new TuskError(adjusted.code, adjusted.message);
  }

  received(id: string, bytes: number): void {
    if (bytes > 0) this.emit('received', { id, bytes });
  }

  /**
   * The upload's bytes are complete: it keeps its bytes but no longer counts as unfinished, its
   * record says `uploaded`, and the processing job is queued. Idempotent.
   */
  async finish(id: string, info: FinishInfo): Promise<void> {
    const { access, records, processQueue, logger } = this.deps;
    const first = await access.quota.complete(id);
    const owner = access.authenticator.enabled ? ((await access.ownership.ownerOf(id)) ?? null) : null;
    const job: ProcessUploadJob = { uploadId: id, location: info.location, size: info.size, metadata: info.metadata, owner, finishedAt: new Date().toISOString() };
    // Record first (`uploaded`, or left as it is when it already exists), then the job.
    await records.create({ ...baseFromMetadata(id, info.size, info.metadata), source: job }, 'uploaded');
    if (info.recordFields) await records.update(id, undefined, info.recordFields);
    await processQueue.add(PROCESS_UPLOAD_JOB, job, { jobId: processUploadJobId(id) });
    logger.info({ uploadId: id, size: info.size }, 'upload finished; processing job queued');
    if (first) this.emit('finished', { id, owner, size: info.size, partial: false });
  }

  /**
   * A partial upload of a concatenation finished: it keeps its bytes (until the final upload takes
   * them over) and frees its slot, but is nothing to process on its own.
   */
  async finishPartial(id: string, size: number): Promise<void> {
    if (await this.deps.access.quota.complete(id)) this.emit('finished', { id, owner: null, size, partial: true });
  }

  /**
   * The upload is gone (deleted by its owner, aborted, expired unfinished): everything tusk keeps
   * about it goes too. Storage of the upload's own bytes is the caller's (the protocol's store).
   * Idempotent; returns the bytes of quota freed.
   */
  async terminate(id: string, reason: TerminationReason): Promise<number> {
    const { access, records, storage, redis, keys, logger } = this.deps;
    const record = await records.get(id).catch(() => undefined);
    const bytesFreed = await access.quota.release(id);
    // Its client learns that it expired (410) rather than that it never was (404), for a while.
    if (reason === 'expired') await access.ownership.forgetAfter(id, EXPIRED_OWNER_TTL_SECONDS);
    else await access.ownership.forget(id);
    const sha256 = record?.sha256;
    const owner = record?.base.source?.owner;
    if (sha256 && owner && record?.base.size) {
      // The dedup index must not lead a later upload to bytes that are gone.
      const dedupKey = keys.dedup(owner, sha256, record.base.size);
      if ((await redis.get(dedupKey)) === id) await redis.del(dedupKey);
    }
    await records.remove(id);
    await storage.deleteDerived(id).catch((err: unknown) => logger.warn({ err, uploadId: id }, 'could not delete the derived outputs of a removed upload'));
    logger.info({ uploadId: id, reason, bytesFreed }, `upload ${reason}`);
    this.emit('terminated', { id, reason, bytesFreed });
    return bytesFreed;
  }

  /**
   * The cleanup's part for uploads that expired unfinished: each reservation whose expiry passed is
   * terminated, unless the upload turns out finished after all (its finish was lost, e.g. Redis
   * blinked then): that one keeps its bytes. An upload past its expiry can no longer be continued
   * (tus answers 410, the store deletes it), so anything but 'finished' goes.
   */
  async expireUnfinished(uploadState: (id: string) => Promise<'finished' | 'unfinished' | 'missing'>, now = Date.now()): Promise<{ expired: string[]; bytes: number }> {
    const expired: string[] = [];
    let bytes = 0;
    for (const id of await this.deps.access.quota.expiredReservations(now)) {
      if ((await uploadState(id)) === 'finished') {
        await this.deps.access.quota.complete(id);
        continue;
      }
      bytes += await this.terminate(id, 'expired');
      expired.push(id);
    }
    return { expired, bytes };
  }

  /**
   * Queues another run of the pipeline: the new run, or why not (missing, not_finished,
   * in_progress without force, too_soon when forcing a run younger than `minRunAgeMs`). The steps
   * of the run it replaces notice within about a second and stop.
   */
  async reprocess(id: string, opts: { force?: boolean; minRunAgeMs?: number } = {}): Promise<NewRunResult> {
    const { records, processQueue } = this.deps;
    const rec = await records.get(id);
    if (!rec?.base.source) return { refused: rec ? 'not_finished' : 'missing', retryAfterMs: 0 };
    const result = await records.newRun(id, opts);
    if ('run' in result) await processQueue.add(PROCESS_UPLOAD_JOB, { ...rec.base.source, run: result.run }, { jobId: processUploadJobId(id, result.run) });
    return result;
  }
}

/**
 * The upload counters (lib/metrics.ts) from the lifecycle's events: tus, direct and Companion
 * uploads count alike. tusd counts a termination only when the client deletes an upload.
 */
export function countUploads(lifecycle: UploadLifecycle, metrics: Metrics): void {
  lifecycle.on('created', () => metrics.uploadsCreated.inc());
  lifecycle.on('received', ({ bytes }) => metrics.bytesReceived.inc(bytes));
  lifecycle.on('finished', () => metrics.uploadsFinished.inc());
  lifecycle.on('terminated', ({ reason }) => {
    if (reason === 'terminated') metrics.uploadsTerminated.inc();
    metrics.uploadsRemoved.inc({ reason });
  });
}
