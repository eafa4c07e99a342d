// The status record of an upload: one Redis hash `${REDIS_PREFIX}record:<uploadId>` (never
// `<prefix>upload:`, which the S3 store uses), one field per part so that steps running in
// parallel (thumbnail, transcode) never overwrite each other:
//   run            pipeline run (generation); bumped by a reprocess. Writes carry the run they
//                  belong to and are dropped by Redis (Lua) when it is not the current one, so a
//                  late job of an earlier run never changes the record.
//   base           JSON { upload_id, filename, size, content_type, created_at, source }
//   status         uploading|uploaded|scanning|processing|ready|rejected|failed; once a run reached
//                  ready/rejected/failed its status no longer changes (until a reprocess)
//   updated_at     ISO time of the last change
//   task:<name>    JSON { status, progress?, error?, started_at?, finished_at? }
//   thumb:<w>.<f>  JSON { width, format, key }       (each thumbnail, published as soon as it exists)
//   out:hls        JSON { master_key, renditions }    out:mp4  key    out:metadata JSON
//   reason         JSON { code, message, signature? } for rejected/failed; while the scan waits
//                  for a scanner, why (status `scanning`); '' once it no longer applies
//   run_started_ms when the current run started (Redis clock, ms): the upload finished, or a
//                  reprocess started it; a forced reprocess needs the run to be this old
//   sha256         hex sha256 of the stored object, computed by the virus scan on its way to clamd
// Every change is published on `${REDIS_PREFIX}record-events:<uploadId>` (message: JSON
// { run, status, field }) for the SSE streams of every API instance. A step watches its run
// (watchRun) and stops its work once the run is no longer current.
import type { Redis } from 'ioredis';
import { TuskError } from './errors.js';
import { RedisKeys } from './redis-keys.js';
import type { ProcessUploadJob } from './queues.js';
import { luaScript } from './lua.js';
import { TASKS, TERMINAL, type Reason, type TaskName, type TaskState, type UploadStatus } from './upload-status.js';

export { TASKS, TERMINAL, type Reason, type TaskName, type TaskState, type UploadStatus };

/** Lifetime of the record of an upload that never finishes (longer than any sensible UPLOAD_EXPIRY). */
export const UNFINISHED_RECORD_TTL_MS = 30 * 86_400_000;

export interface RecordBase {
  upload_id: string;
  filename: string | null;
  size: number | null;
  content_type: string | null;
  created_at: string;
  /** Where the upload is stored and what the hook saw (to re-run the pipeline). */
  source?: ProcessUploadJob;
}

export interface StoredThumb {
  width: number;
  format: string;
  key: string;
}

export interface RawRecord {
  run: number;
  base: RecordBase;
  status: UploadStatus;
  updated_at: string;
  tasks: Record<TaskName, TaskState>;
  thumbnails: StoredThumb[];
  hls?: { master_key: string; renditions?: unknown };
  mp4_key?: string;
  metadata?: unknown;
  reason?: Reason;
  quarantine_key?: string;
  /** sha256 of the stored object (hex), once the virus scan read all of it. */
  sha256?: string;
}

/**
 * The dedup index: once an upload is ready, `dedup:{<user>}:<sha256>:<size>` (RedisKeys.dedup)
 * names it, so that a direct upload of the same content by the same user is answered with the
 * existing upload instead of being stored again. Per user on purpose: across users a hit would
 * tell one user what another stored. The hash is ours (the record's sha256); a client's is only
 * the lookup key. Entries live as long as finished uploads (which never expire): a year, renewed
 * by each hit.
 */
export const DEDUP_TTL_SECONDS = 365 * 86_400;

const UPDATE = luaScript('record-update');


const CREATE = luaScript('record-create');

const NEW_RUN = luaScript('record-new-run');

/** How often a step checks that its run is still the upload's current one (watchRun). */
export const RUN_WATCH_INTERVAL_MS = 1000;

/** Why a step's run no longer wants its work: the reason of a watchRun() signal. */
export class RunStopped extends Error {
  override readonly name = 'RunStopped';
  constructor(
    /** superseded: a newer run started; deleted: the record is gone (so is the upload); ended: the run already has its outcome. */
    readonly why: 'superseded' | 'deleted' | 'ended',
    message: string,
  ) {
    super(message);
  }
}

export interface RunWatch {
  /** Aborted (reason: RunStopped) once the run is no longer current and unfinished. */
  signal: AbortSignal;
  /** Looks now (not waiting for the next poll); rejects with the RunStopped reason if stopped. */
  check(): Promise<void>;
  stop(): void;
}

export type NewRunResult = { run: number } | { refused: 'missing' | 'not_finished' | 'in_progress' | 'too_soon'; retryAfterMs: number };

export class RecordStore {
  private readonly keys: RedisKeys;
  constructor(
    private readonly redis: Redis,
    prefix: string,
  ) {
    this.keys = new RedisKeys(prefix);
  }

  key(uploadId: string): string {
    return this.keys.record(uploadId);
  }

  channel(uploadId: string): string {
    return this.keys.recordEvents(uploadId);
  }

  /** Creates the record unless it exists (idempotent); returns the current run. */
  async create(base: RecordBase, status: 'uploading' | 'uploaded'): Promise<number> {
    const id = base.upload_id;
    return Number(
      await this.redis.eval(CREATE, 1, this.key(id), this.channel(id), new Date().toISOString(), JSON.stringify(base), status, String(UNFINISHED_RECORD_TTL_MS)),
    );
  }

  /**
   * Applies field changes for `run` (undefined: whatever run is current). Returns whether they were
   * applied and whether `status` was changed by this call (exactly one caller wins a transition).
   */
  async update(uploadId: string, run: number | undefined, changes: Record<string, string>): Promise<{ applied: boolean; statusChanged: boolean }> {
    const args = Object.entries(changes).flat();
    const [applied, changed] = (await this.redis.eval(
      UPDATE,
      1,
      this.key(uploadId),
      run === undefined ? '' : String(run),
      this.channel(uploadId),
      new Date().toISOString(),
      ...args,
    )) as [number, number];
    return { applied: applied === 1, statusChanged: changed === 1 };
  }

  async setTask(uploadId: string, run: number, task: TaskName, state: TaskState, extra: Record<string, string> = {}) {
    const clean = Object.fromEntries(Object.entries(state).filter(([, v]) => v !== undefined));
    return this.update(uploadId, run, { [`task:${task}`]: JSON.stringify(clean), ...extra });
  }

  /** Merges `patch` into the task's state (read-modify-write; each task is written by one job at a time). */
  async patchTask(uploadId: string, run: number, task: TaskName, patch: Partial<TaskState>, extra: Record<string, string> = {}) {
    const current = await this.redis.hget(this.key(uploadId), `task:${task}`);
    const state = { ...(current ? (JSON.parse(current) as TaskState) : { status: 'pending' as const }), ...patch };
    return this.setTask(uploadId, run, task, state, extra);
  }

  /**
   * Starts a new run (reprocess). A run still going is replaced only with `force`, and only once it
   * has been going `minRunAgeMs`; otherwise the refusal says why (and how long to wait).
   */
  async newRun(uploadId: string, opts: { force?: boolean; minRunAgeMs?: number } = {}): Promise<NewRunResult> {
    const [run, refused, waitMs] = (await this.redis.eval(
      NEW_RUN,
      1,
      this.key(uploadId),
      this.channel(uploadId),
      new Date().toISOString(),
      opts.force ? '1' : '0',
      String(opts.minRunAgeMs ?? 0),
    )) as [number, string, number];
    return run > 0 ? { run } : { refused: refused as Exclude<NewRunResult, { run: number }>['refused'], retryAfterMs: Math.max(0, waitMs) };
  }

  /**
   * Watches `run` of an upload for a step working on it: every `intervalMs` (and on check()) it
   * reads the record, and aborts `signal` once a newer run started, the record is gone or the run
   * ended, so that the step stops its ffmpeg/ffprobe/sharp work within about a second, on whatever
   * worker process runs it. Call stop() when the step is done. Redis errors never stop a run.
   */
  watchRun(uploadId: string, run: number, intervalMs = RUN_WATCH_INTERVAL_MS): RunWatch {
    const controller = new AbortController();
    const look = async () => {
      const [current, status] = await this.redis.hmget(this.key(uploadId), 'run', 'status');
      if (controller.signal.aborted) return;
      if (current === null) controller.abort(new RunStopped('deleted', `the upload ${uploadId} was deleted`));
      else if (Number(current) !== run) controller.abort(new RunStopped('superseded', `run ${run} of ${uploadId} was superseded by run ${current}`));
      else if (TERMINAL.includes(status as UploadStatus)) controller.abort(new RunStopped('ended', `run ${run} of ${uploadId} already ended (${status})`));
    };
    let polling = false;
    const timer = setInterval(() => {
      if (polling) return;
      polling = true;
      look()
        .catch(() => {})
        .finally(() => (polling = false));
    }, intervalMs);
    timer.unref();
    return {
      signal: controller.signal,
      check: async () => {
        await look();
        controller.signal.throwIfAborted();
      },
      stop: () => clearInterval(timer),
    };
  }

  /**
   * A new record `id` that is a copy of `sourceId`'s (status, tasks, outputs: a dedup hit shares
   * them), with its own base and `dedup_of` naming the source. False when the source is gone.
   */
  async copyAs(sourceId: string, id: string, base: RecordBase): Promise<boolean> {
    const fields = await this.redis.hgetall(this.key(sourceId));
    if (!fields.run) return false;
    await this.redis.hset(this.key(id), { ...fields, base: JSON.stringify(base), dedup_of: sourceId, updated_at: base.created_at });
    return true;
  }

  /** Removes the record (the upload is gone); a step still running for it stops (watchRun). */
  async remove(uploadId: string): Promise<void> {
    await this.redis.del(this.key(uploadId));
    await this.redis.publish(this.channel(uploadId), JSON.stringify({ run: 0, status: 'removed', field: 'record' }));
  }

  async get(uploadId: string): Promise<RawRecord | undefined> {
    const h = await this.redis.hgetall(this.key(uploadId));
    if (!h.run || !h.base) return undefined;
    const parse = <T>(v: string | undefined): T | undefined => (v ? (JSON.parse(v) as T) : undefined);
    const tasks = Object.fromEntries(TASKS.map((t) => [t, parse<TaskState>(h[`task:${t}`]) ?? { status: 'pending' }])) as Record<TaskName, TaskState>;
    const thumbnails = Object.entries(h)
      .filter(([f]) => f.startsWith('thumb:'))
      .map(([, v]) => JSON.parse(v) as StoredThumb)
      .sort((a, b) => a.width - b.width || a.format.localeCompare(b.format));
    return {
      run: Number(h.run),
      base: JSON.parse(h.base) as RecordBase,
      status: h.status as UploadStatus,
      updated_at: h.updated_at ?? '',
      tasks,
      thumbnails,
      hls: parse(h['out:hls']),
      mp4_key: h['out:mp4'] || undefined,
      metadata: parse(h['out:metadata']),
      reason: parse(h.reason),
      quarantine_key: h['out:quarantine'] || undefined,
      sha256: h.sha256 || undefined,
    };
  }
}

/** The public JSON document of the status API, with URLs made by `urlFor(key)`. */
export async function publicDocument(record: RawRecord, urlFor: (key: string) => Promise<string>) {
  const outputs: Record<string, unknown> = {
    thumbnails: await Promise.all(record.thumbnails.map(async (t) => ({ width: t.width, format: t.format, url: await urlFor(t.key) }))),
  };
  if (record.hls) outputs.hls = { master_url: await urlFor(record.hls.master_key) };
  if (record.mp4_key) outputs.mp4_url = await urlFor(record.mp4_key);
  if (record.metadata !== undefined) outputs.metadata = record.metadata;
  return {
    upload_id: record.base.upload_id,
    status: record.status,
    run: record.run,
    filename: record.base.filename,
    size: record.base.size,
    content_type: record.base.content_type,
    created_at: record.base.created_at,
    updated_at: record.updated_at,
    ...(record.reason ? { reason: record.reason } : {}),
    tasks: { virus_scan: record.tasks.virus_scan, metadata: record.tasks.metadata, thumbnail: record.tasks.thumbnail, transcode: record.tasks.transcode },
    outputs,
  };
}

export type PublicDocument = Awaited<ReturnType<typeof publicDocument>>;

/**
 * Why an upload's bytes and derived files may not be served, or undefined when they may: never
 * once it is rejected, and while scanning is required, not before its scan said clean (a missing
 * record, a scan still pending or one that failed is no verdict).
 */
export function servingRefusal(record: RawRecord | undefined, scanRequired: boolean): TuskError | undefined {
  if (record?.status === 'rejected') return new TuskError('rejected', `The upload was rejected: ${record.reason?.message ?? 'see its status'}`);
  if (!scanRequired || record?.tasks.virus_scan.status === 'done') return undefined;
  return new TuskError('not_scanned', 'The upload has no clean virus-scan verdict yet; its status tells when it has');
}

/** Record base from the tus metadata (filename / filetype as sent by tus-js-client and Uppy). */
export function baseFromMetadata(uploadId: string, size: number | null, metadata: Record<string, string | null | undefined>): RecordBase {
  return {
    upload_id: uploadId,
    filename: metadata.filename ?? metadata.name ?? null,
    size,
    content_type: metadata.filetype ?? metadata.type ?? metadata.contentType ?? null,
    created_at: new Date().toISOString(),
  };
}
