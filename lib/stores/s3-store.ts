// tusk's S3 datastore: @tus/s3-store's object layout and tags, with the hot paths replaced.
//
// Objects (unchanged from S3Store, so lifecycle rules and deleteExpired() keep working):
//   <id>        the multipart upload while in progress, the final object once completed
//   <id>.info   JSON of the Upload; metadata `upload-id` = multipart UploadId; tag Tus-Completed
//   <id>.part   incomplete tail (< min part size, not the end of the upload); tag Tus-Completed=false;
//               metadata `tusk-next-part` = the part number it precedes (lets a rebuild from S3
//               tell a live tail from one already copied into a part)
//
// What changed, and why (measured on Ceph RGW, tus-js-client 8 MiB chunks, see bench/README.md):
// plain S3Store spends per PATCH ListParts x2 (~25-50 ms each on RGW), GetObject of a missing
// .part (~45 ms), HeadObject .part, then spools the whole body to disk before UploadPart starts.
// Here a PATCH/HEAD reads the upload state from Redis (s3-upload-state.ts) and write() streams the
// body into UploadParts as it arrives, through per-part spool files that let several parts of one
// body upload at once (s3-part-writer.ts, s3-spool.ts).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { S3Store, type Options as S3StoreOptions, type MetadataValue } from '@tus/s3-store';
import { ERRORS, StreamLimiter, TUS_RESUMABLE, Upload } from '@tus/utils';
import type { Redis } from 'ioredis';
import type { S3 } from '@aws-sdk/client-s3';
import type { Logger } from 'pino';
import { isNotFoundError, TuskError } from '../errors.js';
import type { Metrics } from '../metrics.js';
import { listAllParts, sdkClientSettings } from '../s3.js';
import { isUploadId } from '../upload-id.js';
import type { ConcatenatingStore } from './concatenating-store.js';
import { finishedUploadsNeverExpire } from './finished-uploads-never-expire.js';
import { PartWriter } from './s3-part-writer.js';
import { concatenateObjects } from './s3-concat.js';
import { currentUploadRequest } from './s3-request-context.js';
import {
  S3UploadStateStore,
  stateOffset,
  type CommittedPart,
  type StoredUploadInfo,
  type UploadState,
} from './s3-upload-state.js';
import { HeldBytes, WriteBuffer, type HandOverOptions, type WriteBufferHost, type WriteBufferOptions } from './s3-write-buffer.js';

export interface TuskS3StoreOptions extends S3StoreOptions {
  /** The process's S3 client (lib/s3.ts); without it the store makes one from s3ClientConfig. */
  client?: S3;
  redis: Redis;
  /** Prefix of every Redis key, e.g. 'tusk:'. */
  redisPrefix?: string;
  logger?: Logger;
  /** TTL of an upload's Redis state (refreshed on every update). Default: expiry + 1 day, or 7 days. */
  stateTtlMs?: number;
  /** Directory for per-part spool files. Default: os.tmpdir(). */
  spoolDirectory?: string;
  /** Attempts to upload a part from its spool file when its streamed upload failed. Default 3. */
  spoolRetries?: number;
  /**
   * Parts of one PATCH body received/uploaded at once (each may hold up to a part in its spool
   * file while its upload catches up). Default 4. The store-wide limit is maxConcurrentPartUploads.
   */
  partsInFlightPerWrite?: number;
  /**
   * Another instance acknowledged bytes of an upload on its disk (UPLOAD_ACK=disk): how long to
   * wait for it to push them, and after how long without its heartbeat they are given up.
   */
  handOver?: Partial<HandOverOptions>;
  /** Where the write buffer's forwards, hand-overs and disk use are counted. */
  metrics?: Metrics;
}

const NEXT_PART_META = 'tusk-next-part';
const DAY_MS = 86_400_000;

/**
 * The SDK pipes a stream body into the request without watching it: a body that errors would
 * be an unhandled 'error' event and leave the request waiting forever. Abort the request instead.
 */
function abortOnBodyError(body: Readable, signal: AbortSignal | undefined): AbortSignal {
  const ac = new AbortController();
  body.once('error', (err) => ac.abort(err));
  if (signal) {
    if (signal.aborted) ac.abort(signal.reason);
    else signal.addEventListener('abort', () => ac.abort(signal.reason), { once: true });
  }
  return ac.signal;
}

/**
 * What of an SDK log argument may reach our logs: never a command's input (its Body holds
 * upload bytes), only strings and errors' names and messages.
 */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // exists, not ours
  }
}

function infoOf(upload: Upload): StoredUploadInfo {
  const info: StoredUploadInfo = { id: upload.id };
  if (upload.size !== undefined) info.size = upload.size;
  if (upload.metadata !== undefined) info.metadata = upload.metadata;
  if (upload.creation_date !== undefined) info.creation_date = upload.creation_date;
  if (upload.storage !== undefined) info.storage = upload.storage;
  return info;
}

export class TuskS3Store extends S3Store implements WriteBufferHost, ConcatenatingStore {
  readonly spoolDirectory: string;
  readonly log: Logger | undefined;
  private readonly states: S3UploadStateStore;
  readonly spoolRetries: number;
  private readonly partsInFlightPerWrite: number;
  private readonly redisPrefix: string;
  private readonly held: HeldBytes;
  /** Set by startWriteBuffer(): PATCH bytes are acknowledged once fsynced on local disk. */
  private buffer: WriteBuffer | undefined;
  private readonly metrics: Metrics | undefined;

  constructor(options: TuskS3StoreOptions) {
    const { client, redis, redisPrefix = 'tusk:', logger, stateTtlMs, spoolDirectory, spoolRetries, partsInFlightPerWrite, handOver, metrics, ...s3Options } = options;
    super({ ...s3Options, s3ClientConfig: { ...sdkClientSettings(logger), ...options.s3ClientConfig } });
    if (client) {
      // One S3 client per process: the one super() made has sent nothing yet.
      this.client.destroy();
      this.client = client;
    }
    this.log = logger;
    this.spoolDirectory = spoolDirectory ?? os.tmpdir();
    if (spoolDirectory) fs.mkdirSync(spoolDirectory, { recursive: true });
    void this.sweepSpool();
    this.spoolRetries = spoolRetries ?? 3;
    this.partsInFlightPerWrite = Math.max(1, partsInFlightPerWrite ?? 4);
    const expiry = this.expirationPeriodInMilliseconds;
    this.states = new S3UploadStateStore(redis, redisPrefix, stateTtlMs ?? (expiry > 0 ? expiry + DAY_MS : 7 * DAY_MS));
    this.redisPrefix = redisPrefix;
    this.held = new HeldBytes(redis, this.states, redisPrefix, this.log, {
      abandonAfterMs: handOver?.abandonAfterMs ?? 3_600_000,
      handOverTimeoutMs: handOver?.handOverTimeoutMs ?? 20_000,
    }, metrics);
    this.metrics = metrics;
  }

  /**
   * From now on PATCH bytes are acknowledged once fsynced under `options.directory` and pushed to
   * S3 in the background (s3-write-buffer.ts); bytes a previous process left there are pushed.
   * `subscriber` is put in subscriber mode (flush requests from other instances).
   */
  async startWriteBuffer(options: WriteBufferOptions, subscriber: Redis): Promise<void> {
    if (this.buffer) return;
    const buffer = await WriteBuffer.open(this, this.states, this.held, subscriber, this.redisPrefix, options);
    this.buffer = buffer;
    this.metrics?.setUploadBufferStats(() => buffer.stats());
    this.log?.info({ directory: options.directory, instance: this.buffer.instanceId }, 'PATCH bytes are acknowledged once on local disk (UPLOAD_ACK=disk)');
  }

  /** Where this process takes PATCH bodies other instances forward (UPLOAD_ACK=disk, UPLOAD_BUFFER_FORWARD). */
  get peerUrl(): string | undefined {
    return this.buffer?.peerUrl;
  }

  /** Shutdown: pushes what the write buffer holds until `deadline` (the rest waits on disk). */
  async stopWriteBuffer(deadline: number): Promise<void> {
    await this.buffer?.shutdown(deadline);
  }

  /** Part size, the size below which a write's end becomes the `.part` tail, parts in flight. */
  partPlan(state: UploadState): { partSize: number; tailThreshold: number; partsInFlight: number } {
    const size = state.upload.size;
    const partSize = Math.max(
      size !== undefined ? this.calcOptimalPartSize(size) : Math.max(this.preferredPartSize, this.minPartSize),
      state.tail, // a .part left by a store configured with larger parts must fit the first part
    );
    // Huge uploads need parts above the preferred size to stay within maxMultipartParts: then
    // smaller PATCH bodies accumulate in .part until a part of that size is reached.
    const tailThreshold = size !== undefined && partSize > this.preferredPartSize ? partSize : this.minPartSize;
    return { partSize, tailThreshold, partsInFlight: this.partsInFlightPerWrite };
  }

  /** The state with every acknowledged byte in S3: held bytes pushed first (here or by their holder). */
  private async pushHeld(state: UploadState): Promise<UploadState> {
    if (state.local === 0) return state;
    if (this.buffer && state.holder === this.buffer.instanceId) return this.buffer.drain(state);
    return this.held.takeOver(state);
  }

  /**
   * Spool files are removed after every write, but a process killed mid-PATCH leaves its own
   * (`tusk-s3-<pid>-<random>`): remove those whose process is gone. Runs once, in the background.
   */
  private async sweepSpool(): Promise<void> {
    try {
      let removed = 0;
      for (const name of await fs.promises.readdir(this.spoolDirectory)) {
        const m = /^tusk-s3-(\d+)-[0-9a-f]{16}$/.exec(name);
        if (!m || Number(m[1]) === process.pid || processAlive(Number(m[1]))) continue;
        await fs.promises.rm(path.join(this.spoolDirectory, name), { force: true });
        removed++;
      }
      if (removed > 0) this.log?.info({ removed, directory: this.spoolDirectory }, 'removed spool files of dead processes');
    } catch (err) {
      this.log?.warn({ err, directory: this.spoolDirectory }, 'could not sweep the spool directory');
    }
  }

  // ---------------------------------------------------------------- state

  /** The upload's state from Redis, rebuilt from S3 when Redis has none. */
  private async loadState(id: string): Promise<UploadState> {
    return (await this.states.load(id)) ?? (await this.rebuildState(id));
  }

  /**
   * Rebuilds the Redis state from S3: `.info`, ListParts (only consecutive parts from 1 count),
   * HeadObject `.part` (counted if it follows the last consecutive part).
   */
  private async rebuildState(id: string): Promise<UploadState> {
    let uploadId: string;
    let upload: StoredUploadInfo;
    try {
      const res = await this.client.getObject({ Bucket: this.bucket, Key: this.infoKey(id) });
      const file = JSON.parse((await res.Body?.transformToString()) ?? '{}') as Record<string, unknown>;
      uploadId = res.Metadata?.['upload-id'] ?? '';
      upload = { id };
      const size = Number(file.size);
      if (file.size !== undefined && file.size !== null && Number.isFinite(size)) upload.size = size;
      if (file.metadata) upload.metadata = file.metadata as StoredUploadInfo['metadata'];
      if (typeof file.creation_date === 'string') upload.creation_date = file.creation_date;
      if (file.storage) upload.storage = file.storage as StoredUploadInfo['storage'];
    } catch (err) {
      if (isNotFoundError(err)) throw ERRORS.FILE_NOT_FOUND;
      throw err;
    }

    let state: UploadState;
    let parts: CommittedPart[] = [];
    try {
      const listed = await listAllParts(this.client, this.bucket, id, uploadId);
      for (const p of listed) {
        if (p.PartNumber !== parts.length + 1) break;
        parts.push({ number: p.PartNumber, size: p.Size ?? 0, etag: p.ETag ?? '' });
      }
      state = { upload, uploadId, nparts: parts.length, bytes: parts.reduce((a, p) => a + p.size, 0), tail: 0, local: 0, holder: '', done: false };
      const tail = await this.headTail(id);
      if (tail) {
        const next = tail.nextPart;
        if (next === undefined || next === parts.length + 1) state.tail = tail.size;
        else this.log?.info({ uploadId: id, next, parts: parts.length }, 'ignoring stale .part object on rebuild');
      }
    } catch (err) {
      if (!isNotFoundError(err)) throw err;
      // The multipart upload is gone but .info exists: it was completed.
      parts = [];
      if (upload.size === undefined) {
        const head = await this.client.headObject({ Bucket: this.bucket, Key: id });
        upload.size = head.ContentLength ?? 0;
      }
      state = { upload, uploadId, nparts: 0, bytes: upload.size, tail: 0, local: 0, holder: '', done: true };
    }
    this.log?.info({ uploadId: id, offset: stateOffset(state), parts: state.nparts, tail: state.tail, done: state.done }, 'rebuilt upload state from S3');
    if (!(await this.states.init(state, parts))) {
      return (await this.states.load(id)) ?? state; // another process rebuilt it first
    }
    return state;
  }


  private async headTail(id: string): Promise<{ size: number; nextPart: number | undefined } | undefined> {
    try {
      const head = await this.client.headObject({ Bucket: this.bucket, Key: this.partKey(id, true) });
      const raw = head.Metadata?.[NEXT_PART_META];
      return { size: head.ContentLength ?? 0, nextPart: raw === undefined ? undefined : Number(raw) };
    } catch (err) {
      if (isNotFoundError(err)) return undefined;
      throw err;
    }
  }

  private toUpload(state: UploadState): Upload {
    const upload = new Upload({ ...state.upload, offset: stateOffset(state) });
    return finishedUploadsNeverExpire(upload);
  }

  /** Used by inherited code paths (none of the hot ones): served from the Redis state. */
  protected override async getMetadata(id: string): Promise<MetadataValue> {
    const state = await this.loadState(id);
    return {
      file: new Upload({ ...state.upload, offset: stateOffset(state) }),
      'upload-id': state.uploadId,
      'tus-version': TUS_RESUMABLE,
    };
  }

  // ---------------------------------------------------------------- PartWriterHost

  async uploadPartBody(state: UploadState, partNumber: number, body: Readable, length: number, signal?: AbortSignal): Promise<string> {
    const res = await this.client.uploadPart(
      { Bucket: this.bucket, Key: state.upload.id, UploadId: state.uploadId, PartNumber: partNumber, Body: body, ContentLength: length },
      { abortSignal: abortOnBodyError(body, signal) },
    );
    if (!res.ETag) throw new Error(`upload ${state.upload.id}: UploadPart ${partNumber} returned no ETag`);
    return res.ETag;
  }

  async putTailBody(state: UploadState, body: Readable, length: number, nextPart: number, signal?: AbortSignal): Promise<void> {
    await this.client.putObject(
      {
        Bucket: this.bucket,
        Key: this.partKey(state.upload.id, true),
        Body: body,
        ContentLength: length,
        Tagging: this.useCompleteTag('false'),
        Metadata: { [NEXT_PART_META]: String(nextPart) },
      },
      { abortSignal: abortOnBodyError(body, signal) },
    );
  }

  async getTailStream(state: UploadState, expected: number): Promise<Readable> {
    // Only the first `expected` bytes: a process that died after replacing `.part` with a longer
    // one for the same next part (its bytes start the same way) but before recording it in Redis
    // leaves an object longer than the state says.
    const res = await this.client.getObject({ Bucket: this.bucket, Key: this.partKey(state.upload.id, true), Range: `bytes=0-${expected - 1}` });
    const body = res.Body as Readable | undefined;
    const next = res.Metadata?.[NEXT_PART_META];
    if (!body || res.ContentLength !== expected || (next !== undefined && Number(next) !== state.nparts + 1)) {
      body?.destroy();
      throw new Error(`upload ${state.upload.id}: .part has ${res.ContentLength} bytes before part ${next}, state says ${expected} before ${state.nparts + 1}`);
    }
    return body;
  }

  async deleteTail(state: UploadState): Promise<void> {
    await this.client.deleteObject({ Bucket: this.bucket, Key: this.partKey(state.upload.id, true) });
  }

  acquirePermit(): Promise<{ release(): Promise<void> }> {
    return this.partUploadSemaphore.acquire();
  }

  async commit(state: UploadState, parts: CommittedPart[], newTail: number): Promise<void> {
    const r = await this.states.commit(state, parts, newTail);
    if (r === 'gone') this.log?.warn({ uploadId: state.upload.id }, 'Redis state vanished during a write; it will be rebuilt from S3');
  }

  // ---------------------------------------------------------------- DataStore

  override async create(upload: Upload): Promise<Upload> {
    const request: { Bucket: string; Key: string; Metadata: Record<string, string>; ContentType?: string; CacheControl?: string } = {
      Bucket: this.bucket,
      Key: upload.id,
      Metadata: { 'tus-version': TUS_RESUMABLE },
    };
    if (upload.metadata?.contentType) request.ContentType = upload.metadata.contentType;
    if (upload.metadata?.cacheControl) request.CacheControl = upload.metadata.cacheControl;
    upload.creation_date = new Date().toISOString();
    const res = await this.client.createMultipartUpload(request);
    if (!res.UploadId) throw new Error(`upload ${upload.id}: CreateMultipartUpload returned no UploadId`);
    upload.storage = { type: 's3', path: res.Key ?? upload.id, bucket: this.bucket };
    await this.saveMetadata(upload, res.UploadId);
    const state: UploadState = { upload: infoOf(upload), uploadId: res.UploadId, nparts: 0, bytes: 0, tail: 0, local: 0, holder: '', done: false };
    await this.states.delete(upload.id); // a leftover state of an earlier upload with this id
    await this.states.init(state);
    if (upload.size === 0) await this.finish(state);
    this.log?.debug({ uploadId: upload.id, size: upload.size }, 'upload created');
    return upload;
  }

  override async getUpload(id: string): Promise<Upload> {
    let state = await this.held.visible(await this.loadState(id));
    const size = state.upload.size;
    const request = currentUploadRequest();
    if (request) request.loaded = undefined;
    if (!state.done && size !== undefined && stateOffset(state) === size) {
      // Every byte is acknowledged but completing failed earlier (or the process died in between).
      state = await this.pushHeld(state);
      if (stateOffset(state) === size) await this.finish(state);
    } else if (request) {
      request.loaded = state;
    }
    return this.toUpload(state);
  }

  /**
   * The state getUpload() loaded for this request's write, if it is this upload's: @tus/server
   * loads the upload after taking its lock, right before writing, so that load is as fresh as
   * another would be (under the lock only this process's own pusher changes the state, which
   * append() allows for) and saves a Redis round trip per PATCH. Taken once.
   */
  private takeLoaded(id: string): UploadState | undefined {
    const request = currentUploadRequest();
    const state = request?.loaded;
    if (request) request.loaded = undefined;
    return state?.upload.id === id ? state : undefined;
  }

  override async write(src: Readable, id: string, offset: number): Promise<number> {
    const started = performance.now();
    let state = this.takeLoaded(id) ?? (await this.loadState(id));
    if (state.done) {
      src.resume();
      return stateOffset(state);
    }
    if (offset !== stateOffset(state)) throw ERRORS.INVALID_OFFSET;
    const expected = this.expectedLength(src, state, offset);
    const size = state.upload.size;
    if (state.local > 0 && state.holder !== this.buffer?.instanceId) {
      // Bytes another instance acknowledged come first: the body goes on after them on that
      // instance's disk, else that instance pushes them to S3 and the body is written here.
      if (expected !== undefined && expected > 0) {
        const forwarded = await this.held.forward(state, src, expected);
        if (forwarded) return this.afterBuffered(id, size, offset, expected, forwarded, started, 'write forwarded to the holder');
      }
      state = await this.held.takeOver(state);
      if (offset !== stateOffset(state)) throw ERRORS.INVALID_OFFSET;
    }
    // Small bodies are where the buffer pays (no .part rewrite per PATCH). A body of one whole
    // part streams its part to S3 as it arrives and is acknowledged once on disk, so the next
    // one arrives while that upload ends (WriteBuffer.takesPart). Larger bodies, with nothing
    // held, go straight to S3 with several parts in flight: through the buffer they would cost a
    // disk write and read-back more CPU per GiB, which measured slower (bench/README.md, UPLOAD_ACK).
    const buffer = this.buffer;
    if (buffer && expected !== undefined && expected > 0 && (state.local > 0 || expected < this.partPlan(state).partSize || buffer.takesPart(state, expected)) && buffer.reserve(expected)) {
      return this.afterBuffered(id, size, offset, expected, await buffer.append(state, src, expected), started, 'write buffered');
    }
    // Written straight to S3: this process's own held bytes of the upload go first.
    state = await this.pushHeld(state);
    const { partSize, tailThreshold } = this.partPlan(state);
    const writer = new PartWriter(this, state, src, expected, {
      partSize,
      tailThreshold,
      spoolRetries: this.spoolRetries,
      piecesInFlight: this.partsInFlightPerWrite,
    });
    const { offset: newOffset, bodyError, bodyMs, parts } = await writer.run();
    if (bodyError === undefined && size !== undefined && newOffset === size) await this.finish(state);
    this.log?.debug(
      {
        uploadId: id,
        from: offset,
        to: newOffset,
        expected,
        parts,
        bodyMs, // until the last body byte arrived
        ms: Math.round(performance.now() - started), // until S3 (and Redis) confirmed everything
        bodyError: bodyError !== undefined,
      },
      'write done',
    );
    if (bodyError !== undefined) throw bodyError;
    return newOffset;
  }

  /** A body appended to a write buffer (here or the holder's): completes the upload if it was the last. */
  private async afterBuffered(id: string, size: number | undefined, offset: number, expected: number, result: { received: number; bodyError?: unknown }, started: number, what: string): Promise<number> {
    const { received, bodyError } = result;
    const newOffset = offset + received;
    if (bodyError === undefined && size !== undefined && newOffset === size) {
      const fresh = await this.states.load(id);
      if (!fresh) throw ERRORS.FILE_NOT_FOUND;
      await this.finish(await this.pushHeld(fresh));
    }
    this.log?.debug({ uploadId: id, from: offset, to: newOffset, expected, ms: Math.round(performance.now() - started), bodyError: bodyError !== undefined }, what);
    if (bodyError !== undefined) throw bodyError;
    return newOffset;
  }

  /** The body length if known: the request's Content-Length, else what @tus/server allows. */
  private expectedLength(src: Readable, state: UploadState, offset: number): number | undefined {
    const request = currentUploadRequest();
    if (request) return request.contentLength;
    // @tus/server hands write() a StreamLimiter sized to Content-Length (or, without one, to
    // the rest of the upload: then a shorter body is handled like an early end).
    if (src instanceof StreamLimiter && state.upload.size !== undefined) {
      const max = (src as unknown as { maxSize: number }).maxSize; // private in the typings
      if (Number.isSafeInteger(max) && max <= state.upload.size - offset) return max;
    }
    return undefined;
  }

  /** Completes the multipart upload from the part list in Redis (first turning a tail into the last part). */
  private async finish(state: UploadState): Promise<void> {
    const id = state.upload.id;
    if (state.local > 0) throw new Error(`upload ${id}: completing while ${state.local} bytes are not in S3`);
    if (state.tail > 0) {
      const body = await this.getTailStream(state, state.tail);
      const etag = await this.uploadPartBody(state, state.nparts + 1, body, state.tail).finally(() => body.destroy());
      await this.commit(state, [{ number: state.nparts + 1, size: state.tail, etag }], 0);
    }
    let parts = await this.states.parts(id);
    if (parts.length !== state.nparts) {
      throw new Error(`upload ${id}: Redis has ${parts.length} parts, state says ${state.nparts}`);
    }
    if (parts.length === 0) {
      // S3 needs at least one part; the last part may be empty.
      const res = await this.client.uploadPart({ Bucket: this.bucket, Key: id, UploadId: state.uploadId, PartNumber: 1, Body: Buffer.alloc(0) });
      await this.commit(state, [{ number: 1, size: 0, etag: res.ETag ?? '' }], 0);
      parts = await this.states.parts(id);
    }
    try {
      await this.client.completeMultipartUpload({
        Bucket: this.bucket,
        Key: id,
        UploadId: state.uploadId,
        MultipartUpload: { Parts: parts.map((p) => ({ PartNumber: p.number, ETag: p.etag })) },
      });
    } catch (err) {
      if (!isNotFoundError(err)) throw err;
      // Completed before (its answer was lost) if the object exists.
      await this.client.headObject({ Bucket: this.bucket, Key: id });
    }
    if (this.shouldUseExpirationTags()) {
      // Before marking done: a failure here leaves the state "all bytes, not done" and the
      // next getUpload() completes again (NoSuchUpload + object exists) and retags.
      await this.client.putObject({
        Bucket: this.bucket,
        Key: this.infoKey(id),
        Body: JSON.stringify(new Upload({ ...state.upload, offset: 0 })),
        Tagging: this.useCompleteTag('true'),
        Metadata: { 'upload-id': state.uploadId, 'tus-version': TUS_RESUMABLE },
      });
    }
    await this.states.markDone(state);
    await this.deleteTail(state).catch((err: unknown) => {
      this.log?.warn({ err, uploadId: id }, 'could not delete .part after completion');
    });
    this.log?.info({ uploadId: id, size: state.upload.size, parts: parts.length }, 'upload completed');
  }

  override async declareUploadLength(id: string, length: number): Promise<void> {
    this.takeLoaded(id); // stale once the length is set
    const state = await this.loadState(id);
    state.upload.size = length;
    await this.saveMetadata(new Upload({ ...state.upload, offset: 0 }), state.uploadId);
    await this.states.setInfo(state);
  }

  override async remove(id: string): Promise<void> {
    let state = await this.loadState(id); // FILE_NOT_FOUND without state and .info
    // An instance still pushing acknowledged bytes would write after the deletion: it finishes
    // first. One that is not running pushes nothing (its next start drops what it holds).
    state = await this.pushHeld(state).catch((err: unknown) => {
      if (err instanceof TuskError) return state;
      throw err;
    });
    if (!state.done && state.uploadId) {
      try {
        await this.client.abortMultipartUpload({ Bucket: this.bucket, Key: id, UploadId: state.uploadId });
      } catch (err) {
        if (!isNotFoundError(err)) throw err;
      }
    }
    await this.client.deleteObjects({
      Bucket: this.bucket,
      Delete: { Objects: [{ Key: id }, { Key: this.infoKey(id) }, { Key: this.partKey(id, true) }] },
    });
    await this.states.delete(id);
    this.log?.debug({ uploadId: id }, 'upload removed');
  }

  /**
   * Deletes the unfinished uploads past their expiry, like S3Store's, but through remove(): their
   * Redis state goes too (otherwise getUpload would still answer for them until its TTL), and only
   * tus uploads are touched (multipart uploads under direct/ belong to the direct-upload cleanup).
   * Returns the number of uploads deleted.
   */
  override async deleteExpired(): Promise<number> {
    if (this.getExpiration() === 0) return 0;
    let deleted = 0;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      const page = await this.client.listMultipartUploads({ Bucket: this.bucket, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker });
      for (const u of page.Uploads ?? []) {
        if (!u.Key || !isUploadId(u.Key) || !u.Initiated) continue;
        if (Date.now() <= this.getExpirationDate(u.Initiated.toISOString()).getTime()) continue;
        try {
          await this.remove(u.Key);
          deleted++;
        } catch (err) {
          if (err !== ERRORS.FILE_NOT_FOUND) this.log?.warn({ err, uploadId: u.Key }, 'could not delete an expired upload');
        }
      }
      if (!page.IsTruncated) break;
      keyMarker = page.NextKeyMarker;
      uploadIdMarker = page.NextUploadIdMarker;
      if (!keyMarker && !uploadIdMarker) break;
    }
    return deleted;
  }

  /**
   * tus concatenation: builds the final object from finished partial uploads server-side
   * (s3-concat.ts: UploadPartCopy where S3 allows it), then records it as a completed upload.
   */
  async concatenate(final: Upload, partials: Upload[]): Promise<Upload> {
    const sources = partials.map((p) => ({ key: p.storage?.path ?? p.id, size: p.size ?? 0 }));
    const uploadId = await concatenateObjects(this.client, this.bucket, final.id, sources, {
      minPartSize: this.minPartSize,
      contentType: final.metadata?.contentType ?? undefined,
      metadata: { 'tus-version': TUS_RESUMABLE },
    });
    final.creation_date = new Date().toISOString();
    final.storage = { type: 's3', path: final.id, bucket: this.bucket };
    await this.client.putObject({
      Bucket: this.bucket,
      Key: this.infoKey(final.id),
      Body: JSON.stringify(new Upload({ ...final, offset: 0 })),
      Tagging: this.useCompleteTag('true'),
      Metadata: { 'upload-id': uploadId, 'tus-version': TUS_RESUMABLE },
    });
    const size = final.size ?? 0;
    await this.states.delete(final.id);
    await this.states.init({ upload: infoOf(final), uploadId, nparts: 0, bytes: size, tail: 0, local: 0, holder: '', done: true });
    final.offset = size;
    return final;
  }
}
