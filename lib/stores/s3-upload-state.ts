// Redis copy of what S3 durably holds for one tus upload, so a PATCH or HEAD needs no S3
// metadata round trip (plain @tus/s3-store does GetObject .info + ListParts + HeadObject .part on
// every HEAD/PATCH and ListParts + GetObject .part again in every write).
//
// Keys (hash-tagged so both live in one Redis Cluster slot):
//   <prefix>upload:{<id>}        hash  info   JSON {upload: {id,size,metadata,creation_date,storage}, uploadId}
//                                       nparts number of committed parts (always 1..nparts, consecutive)
//                                       bytes  sum of the committed parts' sizes
//                                       tail   size of the `<id>.part` object (0 = none)
//                                       local  bytes acknowledged after them that are not in S3 yet,
//                                              fsynced on one instance's disk (UPLOAD_ACK=disk,
//                                              s3-write-buffer.ts); 0 or missing = none
//                                       holder that instance's id while local > 0
//                                       done   "1" once CompleteMultipartUpload succeeded
//   <prefix>upload:{<id>}:parts  hash  <partNumber> -> "<size> <etag>"
//
// Invariant: parts and tail are written here only after S3 confirmed them, and `local` only after
// the holder fsynced those bytes; the state may lag behind S3 (crash between the S3 call and the
// Redis update), never run ahead. When the keys are missing the store rebuilds them from S3
// (`<id>.info`, ListParts, HeadObject `<id>.part`), which knows nothing of `local`.
import type { Redis } from 'ioredis';
import { TuskError } from '../errors.js';
import { RedisKeys } from '../redis-keys.js';
import { luaScript } from '../lua.js';

export interface StoredUploadInfo {
  id: string;
  size?: number;
  metadata?: Record<string, string | null>;
  creation_date?: string;
  storage?: { type: string; path: string; bucket?: string };
}

export interface UploadState {
  upload: StoredUploadInfo;
  /** S3 multipart UploadId. */
  uploadId: string;
  nparts: number;
  /** Bytes in the committed parts 1..nparts. */
  bytes: number;
  /** Size of the incomplete tail object `<id>.part`; 0 when there is none. */
  tail: number;
  /** Acknowledged bytes after bytes + tail held on the disk of instance `holder`, not in S3 yet. */
  local: number;
  /** The instance holding `local` bytes; '' when local is 0. */
  holder: string;
  done: boolean;
}

export interface CommittedPart {
  number: number;
  size: number;
  etag: string;
}

/** The tus offset of an upload in this state: every byte acknowledged. */
export function stateOffset(s: UploadState): number {
  return s.done ? (s.upload.size ?? s.bytes) : s.bytes + s.tail + s.local;
}

/** How far S3 holds the upload (committed parts and the `.part` tail). */
export function storedOffset(s: UploadState): number {
  return s.done ? (s.upload.size ?? s.bytes) : s.bytes + s.tail;
}

const INIT_SCRIPT = luaScript('upload-state-init');

const COMMIT_SCRIPT = luaScript('upload-state-commit');

const SET_FIELD_SCRIPT = luaScript('upload-state-set-field');

/** The state changed under a writer: a client retrying finds the offset with HEAD (409). */
export class StateConflictError extends TuskError {
  constructor(id: string) {
    super('in_progress', `upload ${id}: its state changed during this write; retry from the current offset`);
    this.name = 'StateConflictError';
  }
}

export class S3UploadStateStore {
  private readonly keys: RedisKeys;
  constructor(
    private readonly redis: Redis,
    prefix: string,
    /** TTL of the keys, refreshed on every update. */
    private readonly ttlMs: number,
  ) {
    this.keys = new RedisKeys(prefix);
  }

  mainKey(id: string): string {
    return this.keys.uploadState(id);
  }

  partsKey(id: string): string {
    return this.keys.uploadParts(id);
  }

  /** The state, or undefined when Redis has none (or only a torn remainder without info). */
  async load(id: string): Promise<UploadState | undefined> {
    const h = await this.redis.hgetall(this.mainKey(id));
    if (!h.info || h.nparts === undefined) return undefined;
    const info = JSON.parse(h.info) as { upload: StoredUploadInfo; uploadId: string };
    return {
      upload: info.upload,
      uploadId: info.uploadId,
      nparts: Number(h.nparts),
      bytes: Number(h.bytes ?? 0),
      tail: Number(h.tail ?? 0),
      local: Number(h.local ?? 0),
      holder: h.holder ?? '',
      done: h.done === '1',
    };
  }

  /** Writes a state if none exists. Returns false if another process was first. */
  async init(state: UploadState, parts: CommittedPart[] = []): Promise<boolean> {
    const args: (string | number)[] = [
      this.ttlMs,
      JSON.stringify({ upload: state.upload, uploadId: state.uploadId }),
      state.nparts,
      state.bytes,
      state.tail,
      state.done ? '1' : '0',
    ];
    for (const p of parts) args.push(p.number, `${p.size} ${p.etag}`);
    const r = await this.redis.eval(INIT_SCRIPT, 2, this.mainKey(state.upload.id), this.partsKey(state.upload.id), ...args);
    return r === 1;
  }

  /**
   * Records parts that S3 confirmed, the new tail size and the bytes held locally, if the state is
   * still `prev` (compare-and-set). Mutates `prev` to the new state on success. Without `local`
   * the tus offset stays where it was when S3 took over locally held bytes, or the local bytes
   * stay as they are when there are none.
   */
  async commit(prev: UploadState, parts: CommittedPart[], newTail: number, local?: { bytes: number; holder: string }): Promise<'applied' | 'gone'> {
    const id = prev.upload.id;
    let nparts = prev.nparts;
    let bytes = prev.bytes;
    for (const p of parts) {
      if (p.number !== nparts + 1) throw new Error(`upload ${id}: part ${p.number} committed out of order after ${nparts}`);
      nparts = p.number;
      bytes += p.size;
    }
    const newLocal = local?.bytes ?? (prev.local > 0 ? stateOffset(prev) - bytes - newTail : 0);
    if (newLocal < 0) throw new Error(`upload ${id}: a commit would move the offset back (local ${newLocal})`);
    const holder = newLocal > 0 ? (local?.holder ?? prev.holder) : '';
    const args: (string | number)[] = [this.ttlMs, prev.nparts, prev.bytes, prev.tail, prev.local, prev.holder, nparts, bytes, newTail, newLocal, holder];
    for (const p of parts) args.push(p.number, `${p.size} ${p.etag}`);
    const r = await this.redis.eval(COMMIT_SCRIPT, 2, this.mainKey(id), this.partsKey(id), ...args);
    if (r === -1) throw new StateConflictError(id);
    prev.nparts = nparts;
    prev.bytes = bytes;
    prev.tail = newTail;
    prev.local = newLocal;
    prev.holder = holder;
    return r === 1 ? 'applied' : 'gone';
  }

  /** The committed parts in order (for CompleteMultipartUpload). */
  async parts(id: string): Promise<CommittedPart[]> {
    const h = await this.redis.hgetall(this.partsKey(id));
    const parts: CommittedPart[] = [];
    for (const [n, v] of Object.entries(h)) {
      const sp = v.indexOf(' ');
      parts.push({ number: Number(n), size: Number(v.slice(0, sp)), etag: v.slice(sp + 1) });
    }
    parts.sort((a, b) => a.number - b.number);
    return parts;
  }

  async setInfo(state: UploadState): Promise<void> {
    const info = JSON.stringify({ upload: state.upload, uploadId: state.uploadId });
    await this.redis.eval(SET_FIELD_SCRIPT, 1, this.mainKey(state.upload.id), this.ttlMs, 'info', info);
  }

  /** After CompleteMultipartUpload: keep a small "done" record, drop the part list. */
  async markDone(state: UploadState): Promise<void> {
    const id = state.upload.id;
    const info = JSON.stringify({ upload: state.upload, uploadId: state.uploadId });
    const results = await this.redis
      .multi()
      .del(this.partsKey(id))
      .hset(this.mainKey(id), 'info', info, 'nparts', state.nparts, 'bytes', state.bytes, 'tail', 0, 'local', 0, 'holder', '', 'done', '1')
      .pexpire(this.mainKey(id), this.ttlMs)
      .exec();
    const failed = results?.find(([err]) => err);
    if (!results || failed) throw failed?.[0] ?? new Error(`upload ${id}: Redis MULTI aborted`);
    state.done = true;
    state.tail = 0;
    state.local = 0;
    state.holder = '';
  }

  async delete(id: string): Promise<void> {
    await this.redis.del(this.mainKey(id), this.partsKey(id));
  }
}
