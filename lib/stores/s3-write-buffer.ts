// Acknowledging writes on local disk (UPLOAD_ACK=disk) for the S3 store.
//
// What a 204 promises here: every acknowledged byte is fsynced in this process's buffer directory
// and recorded in Redis as the upload's `local` bytes, held by this instance (s3-upload-state.ts).
// The bytes reach S3 in the background in whole parts of the store's part size, several at once,
// so the client sends its next chunk while earlier ones upload, and a 1 MiB chunk costs S3 one
// write instead of the `.part` read-rewrite it costs when every 204 waits for S3 (s3-part-writer).
// A body of one whole part (streamPart) has its UploadPart streamed while it arrives, teed to its
// segment file, and is acknowledged once that file is fsynced: S3's confirmation of the part is
// waited for by the pusher, not by the client (nothing read back unless that upload fails).
//
// Buffer directory: <directory>/<instance>/<upload id>/<start offset>, one segment file per PATCH
// body (or per resumed part of one), named by the upload offset of its first byte. Only the bytes
// the Redis state acknowledges count: a segment may hold more after a crash, never less.
// <directory>/<instance>/owner holds the pid of the process using it. A process takes a directory
// whose owner is gone (its uploads are then pushed to S3: crash recovery) or makes a new one, so
// several processes can share one DATA_DIR.
//
// Other instances: a PATCH for an upload whose bytes another instance holds is streamed to the
// holder, which appends it here (s3-buffer-peers.ts), so that a balancer without affinity costs a
// hop, not a flush. When that is not possible (the holder refuses or cannot be reached, or
// forwarding is off) the instance asks the holder to push the bytes ("flush <id>" on the
// upload-buffer channel) and waits until the state shows local = 0; its own write then starts
// where S3 ends. The holder also pushes everything after idleFlushMs without an
// append, at the end of the upload, and on shutdown. If the holder's heartbeat stops (killed,
// its machine gone), the upload answers 503 (Retry-After) until it is back; after abandonAfterMs
// its claim is dropped and the offset returns to what S3 holds (the client re-sends from there).
//
// Bounds: one upload keeps at most `highWater` bytes not yet in S3 (its PATCH body is read no
// faster than S3 takes the parts), and the process at most maxBytes on disk (further bodies wait,
// then go the storage-acknowledged way).
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { ERRORS } from '@tus/utils';
import { RETRY_AFTER_SECONDS, TuskError } from '../errors.js';
import { RedisKeys } from '../redis-keys.js';
import { isUploadId } from '../upload-id.js';
import type { HandOverOutcome, Metrics } from '../metrics.js';
import { SpoolPiece } from './s3-spool.js';
import { PeerClient, PeerServer, type ForwardTarget, type Forwarded, type PeerAddress, type PeerListenOptions } from './s3-buffer-peers.js';
import type { PartWriterHost } from './s3-part-writer.js';
import { stateOffset, storedOffset, StateConflictError, type CommittedPart, type S3UploadStateStore, type UploadState } from './s3-upload-state.js';

export interface WriteBufferOptions {
  /** Parent of the instance directories. */
  directory: string;
  /** Bytes of segments this process keeps on disk at most. */
  maxBytes: number;
  /** Push an upload's bytes (down to a `.part` tail) after this long without an append. */
  idleFlushMs: number;
  /** Take PATCH bodies other instances received for uploads held here (s3-buffer-peers.ts); else they hand over. */
  peer?: PeerListenOptions;
}

export interface HandOverOptions {
  /** A holder without heartbeat this long loses its claim on its uploads' local bytes. */
  abandonAfterMs: number;
  /** How long a request waits for another instance to push an upload's bytes. */
  handOverTimeoutMs: number;
}

export interface WriteBufferHost extends PartWriterHost {
  readonly spoolRetries: number;
  /** Part size, the size below which the end of a non-final flush becomes a tail, parts in flight. */
  partPlan(state: UploadState): { partSize: number; tailThreshold: number; partsInFlight: number };
}

interface Segment {
  start: number;
  /** Bytes of the file recorded as acknowledged: the only ones ever read. */
  acked: number;
  /** Bytes written to the file (disk usage). */
  written: number;
  file: string;
  /** Still being appended to. */
  open: boolean;
}

interface InFlightPart {
  number: number;
  start: number;
  len: number;
  etag?: string;
  failed?: unknown;
  done: Promise<void>;
}

const HEARTBEAT_MS = 5_000;
/** Bytes of a PATCH body gathered before they are written to the segment file. */
const WRITE_BATCH_BYTES = 256 * 1024;
/** How often the holder looks for flush requests whose message it may have missed. */
const POLL_REQUESTS_MS = 1_000;
/** How often instances gone for good are removed from the heartbeat hash. */
const PRUNE_EVERY_BEATS = 12;
/** After a failed push (storage down), the next attempt. */
const RETRY_PUSH_MS = 30_000;
/** A holder whose heartbeat is older than this is not running. */
const ALIVE_WITHIN_MS = 3 * HEARTBEAT_MS;
const noop = () => {};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Why an upload cannot be written or completed right now: its latest bytes are elsewhere. */
function heldElsewhere(message: string): TuskError {
  return new TuskError('unavailable', message, {}, { 'Retry-After': String(RETRY_AFTER_SECONDS) });
}

function sameState(a: UploadState, b: UploadState): boolean {
  return a.nparts === b.nparts && a.bytes === b.bytes && a.tail === b.tail && a.local === b.local && a.holder === b.holder && a.done === b.done;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The chunks of a PATCH body. A body that fails (client gone, idle timeout, lock released) just
 * ends, its error in `ended.error`: what arrived before it is kept.
 */
async function* bodyChunks(src: Readable, ended: { error?: unknown }): AsyncGenerator<Buffer> {
  const it = (src as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  for (;;) {
    let next: IteratorResult<Buffer>;
    try {
      next = await it.next();
    } catch (err) {
      ended.error = err;
      return;
    }
    if (next.done) return;
    yield next.value;
  }
}

async function fsyncDirectory(dir: string): Promise<void> {
  const fh = await fs.promises.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** One upload whose bytes this process holds (or is pushing). */
class Entry {
  readonly segments: Segment[] = [];
  /** Appends under way (a PATCH writing a segment); the final push waits for them. */
  appending = 0;
  closing = false;
  discarded = false;
  /** The pusher ended (everything pushed, discarded, or failed with `stopError`). */
  stopped = false;
  /** Gone from the map, its directory cleaned up (retire()). */
  retired = false;
  stopError: unknown;
  /** Resolves when the entry is gone: everything pushed (or discarded, or pushing failed). */
  closed: Promise<void>;
  resolveClosed!: () => void;
  /**
   * The pusher's parts under way (in order) and where its next part starts: every acknowledged
   * byte before `nextStart` is in a part uploading or uploaded. A streamed part (streamPart) is
   * added here by the append, so that the pusher neither uploads its bytes again nor misses it.
   */
  readonly inFlight: InFlightPart[] = [];
  nextStart = 0;
  nextNumber = 1;
  /** Serializes this process's updates of the upload's Redis state. */
  private chain: Promise<unknown> = Promise.resolve();
  private wakers: (() => void)[] = [];
  idleTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly id: string,
    readonly dir: string,
    /** Shared by the appends and the pusher; every change goes through update(). */
    readonly state: UploadState,
  ) {
    this.closed = new Promise((r) => (this.resolveClosed = r));
  }

  update<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn);
    this.chain = next.catch(noop);
    return next;
  }

  /** Counts wake() calls, so that a change while the waiter was busy is not missed. */
  version = 0;

  /** Resolves at the next append, pushed part, close or discard after `seen` (a version). */
  changedSince(seen: number): Promise<void> {
    if (this.version !== seen) return Promise.resolve();
    return new Promise((r) => this.wakers.push(r));
  }

  wake(): void {
    this.version++;
    const w = this.wakers;
    this.wakers = [];
    for (const f of w) f();
  }

  /** Acknowledged bytes not in S3 yet. */
  get unpushed(): number {
    return this.state.local;
  }
}

/**
 * Bytes of an upload that one instance acknowledged and holds on its disk, seen from any process
 * sharing the Redis (with or without a write buffer of its own): who holds them, asking the holder
 * to push them, dropping the claim of a holder gone for good, telling it an upload was deleted.
 */
export class HeldBytes {
  /** The write buffer's instance id in this process, if it has one. */
  selfId = '';
  private readonly keys: RedisKeys;
  private readonly peers: PeerClient;

  constructor(
    private readonly redis: Redis,
    private readonly states: S3UploadStateStore,
    prefix: string,
    private readonly log: Logger | undefined,
    private readonly opts: HandOverOptions,
    private readonly metrics?: Metrics,
  ) {
    this.keys = new RedisKeys(prefix);
    this.peers = new PeerClient(log);
  }

  /** The heartbeat: the holder's last sign of life. */
  async beat(instanceId: string): Promise<void> {
    await this.redis.hset(this.keys.uploadBuffers, instanceId, Date.now());
  }

  /** Where the holder `instanceId` takes forwarded bodies (kept until pruned or withdrawn). */
  async advertise(instanceId: string, address: PeerAddress): Promise<void> {
    await this.redis.hset(this.keys.uploadBufferPeers, instanceId, JSON.stringify(address));
  }

  async withdraw(instanceId: string): Promise<void> {
    await this.redis.hdel(this.keys.uploadBufferPeers, instanceId);
  }

  /** Forgets instances gone longer than the abandon period (their claims are void anyway). */
  async prune(): Promise<void> {
    const all = await this.redis.hgetall(this.keys.uploadBuffers);
    const old = Object.entries(all)
      .filter(([, seen]) => !(Date.now() - Number(seen) <= this.opts.abandonAfterMs))
      .map(([instance]) => instance);
    if (old.length > 0) await this.redis.multi().hdel(this.keys.uploadBuffers, ...old).hdel(this.keys.uploadBufferPeers, ...old).exec();
  }

  /**
   * Streams a PATCH body for an upload whose bytes another instance holds to that instance, which
   * appends it to its write buffer (the caller holds the upload's lock). Resolves to what the
   * holder recorded, or to undefined when the body could not be forwarded and `src` is untouched
   * (no running holder with an address, it refused: hand over instead).
   */
  async forward(state: UploadState, src: Readable, length: number): Promise<Forwarded | undefined> {
    if (state.local === 0 || state.holder === this.selfId || (await this.status(state.holder)) !== 'alive') return undefined;
    const raw = await this.redis.hget(this.keys.uploadBufferPeers, state.holder);
    if (!raw) return undefined; // a holder that takes no forwarded bodies (UPLOAD_BUFFER_FORWARD=false)
    let peer: PeerAddress;
    try {
      peer = JSON.parse(raw) as PeerAddress;
    } catch {
      return undefined;
    }
    if (typeof peer.url !== 'string' || typeof peer.token !== 'string') return undefined;
    let result: Forwarded | 'refused' | 'unreachable';
    try {
      result = await this.peers.forward(peer, state.upload.id, stateOffset(state), length, src);
    } catch (err) {
      this.metrics?.uploadBufferForwards.inc({ outcome: 'failed' });
      throw err;
    }
    this.metrics?.uploadBufferForwards.inc({ outcome: typeof result === 'string' ? result : 'forwarded' });
    return typeof result === 'string' ? undefined : result;
  }

  close(): void {
    this.peers.close();
  }

  /**
   * Asks `holder` to push the upload's bytes: a message for speed, and a request it polls, so
   * that a message it missed (reconnecting, still subscribing) costs a second, not the timeout.
   */
  private async ask(holder: string, id: string): Promise<void> {
    const requests = this.keys.uploadBufferFlushes(holder);
    await this.redis.multi().sadd(requests, id).pexpire(requests, this.opts.handOverTimeoutMs * 2).publish(this.keys.uploadBufferChannel, `flush ${id}`).exec();
  }

  /** Upload ids this instance was asked to push (and forgets the requests). */
  async requests(instanceId: string): Promise<string[]> {
    return (await this.redis.spop(this.keys.uploadBufferFlushes(instanceId), 1000)) ?? [];
  }

  /** 'alive', 'down' (may come back: wait), or 'abandoned' (its claim may be dropped). */
  private async status(holder: string): Promise<'alive' | 'down' | 'abandoned'> {
    const seen = Number(await this.redis.hget(this.keys.uploadBuffers, holder));
    const age = Number.isFinite(seen) && seen > 0 ? Date.now() - seen : Infinity;
    if (age <= ALIVE_WITHIN_MS) return 'alive';
    return age > this.opts.abandonAfterMs ? 'abandoned' : 'down';
  }

  private async drop(state: UploadState): Promise<void> {
    this.log?.warn({ uploadId: state.upload.id, holder: state.holder, bytes: state.local }, 'the instance holding bytes of this upload is gone; its bytes are given up and the client re-sends them');
    try {
      await this.states.commit(state, [], state.tail, { bytes: 0, holder: '' });
    } catch (err) {
      if (!(err instanceof StateConflictError)) throw err;
    }
  }

  /** The state to show (HEAD): without the bytes of a holder gone longer than abandonAfterMs. */
  async visible(state: UploadState): Promise<UploadState> {
    if (state.local === 0 || state.holder === this.selfId || (await this.status(state.holder)) !== 'abandoned') return state;
    await this.drop(state);
    return (await this.states.load(state.upload.id)) ?? state;
  }

  /**
   * Before a process writes or completes an upload whose bytes another instance holds: asks the
   * holder to push them and waits until it did. Resolves to the state to go on from. Throws 503
   * while the holder is not running (its bytes come back with it) or does not finish in time.
   */
  async takeOver(state: UploadState): Promise<UploadState> {
    const id = state.upload.id;
    const deadline = Date.now() + this.opts.handOverTimeoutMs;
    let current: UploadState | undefined = state;
    let asked = -Infinity;
    let outcome: HandOverOutcome | undefined;
    // A push of the bytes below a part takes tens of milliseconds: look often (one HGETALL each).
    let backoff = 5;
    while (current && current.local > 0 && current.holder !== this.selfId) {
      const status = await this.status(current.holder);
      if (status === 'abandoned') {
        await this.drop(current);
        outcome = 'abandoned';
      } else if (status === 'down') {
        this.metrics?.uploadBufferHandOvers.inc({ outcome: 'holder_down' });
        throw heldElsewhere('The latest bytes of this upload are on a tusk instance that is not running; retry when it is back');
      } else {
        outcome ??= 'pushed';
        if (Date.now() > deadline) {
          this.metrics?.uploadBufferHandOvers.inc({ outcome: 'timeout' });
          throw heldElsewhere('The latest bytes of this upload are still being moved to storage by another tusk instance; retry shortly');
        }
        if (Date.now() - asked >= 500) {
          asked = Date.now();
          await this.ask(current.holder, id);
        }
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 40);
      }
      current = await this.states.load(id);
    }
    if (outcome) this.metrics?.uploadBufferHandOvers.inc({ outcome });
    if (!current) throw new StateConflictError(id);
    return current;
  }
}

export class WriteBuffer {
  readonly instanceId: string;
  private readonly keys: RedisKeys;
  private readonly entries = new Map<string, Entry>();
  private readonly instanceDir: string;
  private diskBytes = 0;
  private heartbeat: NodeJS.Timeout | undefined;
  private poller: NodeJS.Timeout | undefined;
  private beats = 0;
  private closedForGood = false;
  private peerServer: PeerServer | undefined;
  private readonly log: Logger | undefined;

  private constructor(
    private readonly host: WriteBufferHost,
    private readonly states: S3UploadStateStore,
    private readonly held: HeldBytes,
    private readonly subscriber: Redis,
    prefix: string,
    private readonly opts: WriteBufferOptions,
    instanceDir: string,
  ) {
    this.keys = new RedisKeys(prefix);
    this.instanceDir = instanceDir;
    this.instanceId = path.basename(instanceDir);
    this.log = host.log?.child({ component: 'write-buffer', instance: this.instanceId });
  }

  /**
   * Takes an instance directory (one whose process is gone, else a new one), starts the
   * heartbeat, listens for flush requests and pushes what a previous process left to S3.
   */
  static async open(host: WriteBufferHost, states: S3UploadStateStore, held: HeldBytes, subscriber: Redis, prefix: string, opts: WriteBufferOptions): Promise<WriteBuffer> {
    await fs.promises.mkdir(opts.directory, { recursive: true });
    const dir = (await WriteBuffer.adoptDirectory(opts.directory)) ?? (await WriteBuffer.newDirectory(opts.directory));
    const buffer = new WriteBuffer(host, states, held, subscriber, prefix, opts, dir);
    if (opts.peer) {
      // First: a port that cannot be had stops the start before anything else is under way.
      try {
        buffer.peerServer = await PeerServer.listen(buffer.forwardTarget, opts.peer, buffer.log);
      } catch (err) {
        await fs.promises.rm(path.join(dir, 'owner'), { force: true });
        throw err;
      }
    }
    held.selfId = buffer.instanceId;
    await buffer.beat();
    buffer.heartbeat = setInterval(() => void buffer.beat(), HEARTBEAT_MS);
    buffer.heartbeat.unref();
    buffer.poller = setInterval(() => void buffer.pollRequests(), POLL_REQUESTS_MS);
    buffer.poller.unref();
    subscriber.on('message', buffer.onMessage);
    await subscriber.subscribe(buffer.keys.uploadBufferChannel);
    await buffer.recover();
    if (buffer.peerServer) {
      await held.advertise(buffer.instanceId, buffer.peerServer.address);
      buffer.log?.info({ url: buffer.peerServer.address.url }, 'taking PATCH bodies other instances receive for uploads held here');
    }
    return buffer;
  }

  get peerUrl(): string | undefined {
    return this.peerServer?.address.url;
  }

  /** For the metrics: disk in use (segments, reservations) and uploads under way here. */
  stats(): { diskBytes: number; uploads: number } {
    return { diskBytes: this.diskBytes, uploads: this.entries.size };
  }

  /** The peer server's view of this buffer. */
  private readonly forwardTarget: ForwardTarget = {
    acceptForwarded: async (id, offset, length) => {
      if (this.closedForGood) return 'shutting_down';
      const state = await this.states.load(id);
      if (!state || state.done) return 'not_held';
      // Pushed meanwhile (idle, a hand-over): the caller writes it itself.
      if (state.holder !== this.instanceId || state.local === 0) return 'not_held';
      if (stateOffset(state) !== offset) return 'offset_moved';
      if (!this.reserve(length)) return 'buffer_full';
      return state;
    },
    append: (state, src, reserved) => this.append(state, src, reserved),
  };

  private static async claim(dir: string): Promise<boolean> {
    const owner = path.join(dir, 'owner');
    try {
      await fs.promises.writeFile(owner, String(process.pid), { flag: 'wx' });
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const pid = Number(await fs.promises.readFile(owner, 'utf8').catch(() => ''));
    if (Number.isInteger(pid) && pid > 0 && (pid === process.pid || processAlive(pid))) return false;
    // Whoever renames the dead owner's file away first may take the directory.
    const gone = `${owner}.gone-${crypto.randomBytes(4).toString('hex')}`;
    try {
      await fs.promises.rename(owner, gone);
    } catch {
      return false;
    }
    await fs.promises.rm(gone, { force: true });
    try {
      await fs.promises.writeFile(owner, String(process.pid), { flag: 'wx' });
      return true;
    } catch {
      return false;
    }
  }

  private static async adoptDirectory(parent: string): Promise<string | undefined> {
    for (const name of (await fs.promises.readdir(parent)).sort()) {
      if (!/^[0-9a-f]{16}$/.test(name)) continue;
      const dir = path.join(parent, name);
      if (await WriteBuffer.claim(dir)) return dir;
    }
    return undefined;
  }

  private static async newDirectory(parent: string): Promise<string> {
    const dir = path.join(parent, crypto.randomBytes(8).toString('hex'));
    await fs.promises.mkdir(dir);
    if (!(await WriteBuffer.claim(dir))) throw new Error(`could not claim the new buffer directory ${dir}`);
    return dir;
  }

  private async beat(): Promise<void> {
    try {
      await this.held.beat(this.instanceId);
      if (++this.beats % PRUNE_EVERY_BEATS === 0) await this.held.prune();
    } catch (err) {
      this.log?.warn({ err }, 'write buffer heartbeat failed');
    }
  }

  private async pollRequests(): Promise<void> {
    if (this.closedForGood) return;
    try {
      for (const id of await this.held.requests(this.instanceId)) this.flushRequested(id);
    } catch (err) {
      this.log?.warn({ err }, 'could not read flush requests');
    }
  }

  private readonly onMessage = (channel: string, message: string): void => {
    if (channel !== this.keys.uploadBufferChannel) return;
    const [verb, id] = message.split(' ');
    if (verb === 'flush' && id) this.flushRequested(id);
  };

  /** Another instance waits for this upload's bytes to be in S3. */
  private flushRequested(id: string): void {
    if (this.closedForGood || !isUploadId(id)) return;
    const entry = this.entries.get(id);
    if (entry) this.close(entry);
    else void this.pushHeld(id); // held, but its pusher stopped (storage was down)
  }

  /** Pushes an upload whose bytes this process holds on disk without a running pusher. */
  private async pushHeld(id: string): Promise<void> {
    try {
      const state = await this.states.load(id);
      if (!state || state.holder !== this.instanceId || state.local === 0 || this.entries.has(id)) return;
      this.close(await this.entryFor(state));
    } catch (err) {
      this.log?.warn({ err, uploadId: id }, 'could not restart pushing buffered bytes');
    }
  }

  // ------------------------------------------------------------------ entries

  private uploadDir(id: string): string {
    return path.join(this.instanceDir, id);
  }

  /** The entry of an upload this process holds or starts holding, with its segments on disk. */
  /**
   * `forAppend`: the entry is returned with the caller counted in `appending` (taken before any
   * await), so that a flush requested meanwhile waits for the caller's bytes instead of ending the
   * pusher under it; the caller must call `endAppend`.
   */
  private async entryFor(state: UploadState, forAppend = false): Promise<Entry> {
    const id = state.upload.id;
    let waited = false;
    for (;;) {
      const existing = this.entries.get(id);
      if (!existing) break;
      if (!existing.closing && !existing.discarded && !existing.stopped) {
        if (forAppend) existing.appending++;
        return existing;
      }
      await existing.closed; // a flush under way: the next append starts a new entry
      waited = true;
    }
    if (waited) {
      // The flush changed the state (bytes moved from this disk to S3): go on from Redis's.
      const fresh = await this.states.load(id);
      if (!fresh) throw ERRORS.FILE_NOT_FOUND as unknown as Error;
      state = fresh;
    }
    const entry = new Entry(id, this.uploadDir(id), state);
    if (forAppend) entry.appending++;
    this.entries.set(id, entry);
    await fs.promises.mkdir(entry.dir, { recursive: true });
    if (state.local > 0) await this.loadSegments(entry);
    this.runPusher(entry);
    return entry;
  }

  /** Segments of the acknowledged local bytes, from the upload's directory. */
  private async loadSegments(entry: Entry): Promise<void> {
    const names = await fs.promises.readdir(entry.dir).catch(() => [] as string[]);
    const found: Segment[] = [];
    for (const name of names) {
      if (!/^\d+$/.test(name)) continue;
      const file = path.join(entry.dir, name);
      const st = await fs.promises.stat(file);
      found.push({ start: Number(name), acked: 0, written: st.size, file, open: false });
    }
    found.sort((a, b) => a.start - b.start);
    // Keep the chain that covers [stored offset, acknowledged end) without gaps.
    let at = storedOffset(entry.state);
    const end = stateOffset(entry.state);
    for (const seg of found) {
      // On the chain: starts at or before `at` (partly in S3 already) and reaches beyond it.
      if (seg.start <= at && seg.start + seg.written > at && at < end) {
        seg.acked = Math.min(seg.written, end - seg.start);
        at = seg.start + seg.acked;
        if (seg.written > seg.acked) {
          // What a crash left after the acknowledged bytes is no part of the upload.
          await fs.promises.truncate(seg.file, seg.acked);
          seg.written = seg.acked;
        }
        if (seg.acked > 0) {
          entry.segments.push(seg);
          this.diskBytes += seg.written;
          continue;
        }
      }
      // Not on the chain from the stored offset (all in S3 already, or never acknowledged).
      await fs.promises.rm(seg.file, { force: true });
    }
    if (at < end) {
      // Acknowledged bytes missing from disk (the directory was damaged): give them up, so that
      // the offset shows what can still be had and the client re-sends the rest.
      this.log?.error({ uploadId: entry.id, missingFrom: at, acknowledgedTo: end }, 'acknowledged bytes missing from the write buffer; the offset goes back');
      await entry.update(() => this.states.commit(entry.state, [], entry.state.tail, { bytes: at - storedOffset(entry.state), holder: this.instanceId }));
    }
  }

  /** Uploads left by a previous process with this directory: push them to S3. */
  private async recover(): Promise<void> {
    const names = await fs.promises.readdir(this.instanceDir);
    let recovered = 0;
    for (const id of names) {
      if (id === 'owner' || id.startsWith('owner.')) continue;
      const dir = this.uploadDir(id);
      const state = isUploadId(id) ? await this.states.load(id) : undefined;
      if (!state || state.done || state.holder !== this.instanceId || state.local === 0) {
        await fs.promises.rm(dir, { recursive: true, force: true });
        continue;
      }
      const entry = await this.entryFor(state);
      recovered++;
      this.close(entry);
    }
    if (recovered > 0) this.log?.info({ uploads: recovered }, 'pushing uploads a previous process acknowledged to S3');
  }

  // ------------------------------------------------------------------ writing

  /**
   * Reserves disk for a body of `length` bytes; false when the buffer is full (or shutting down)
   * and the body must go the storage-acknowledged way.
   */
  reserve(length: number): boolean {
    if (this.closedForGood || this.diskBytes + length > this.opts.maxBytes) return false;
    this.diskBytes += length;
    return true;
  }

  /**
   * Appends a PATCH body of at most `reserved` bytes (reserve() succeeded): written to a new
   * segment file, fsynced and recorded (local += n) every part size and at its end. Resolves to
   * the bytes it recorded, with `bodyError` when the body stream failed (what arrived is kept).
   * Rejects on disk or Redis failures (what was recorded before stays acknowledged).
   */
  async append(state: UploadState, src: Readable, reserved: number): Promise<{ received: number; bodyError?: unknown }> {
    const entry = await this.enter(state, reserved);
    const start = stateOffset(entry.state);
    // Every byte held before it is in a part under way: a body of one part can stream its own.
    const streams = this.takesPart(entry.state, reserved) && entry.nextStart === start && !entry.closing && !entry.stopped && !entry.discarded;
    return streams ? this.streamPart(entry, src, reserved) : this.appendTo(entry, src, reserved);
  }

  /**
   * A body of `length` bytes is one whole part (at least the part size, less than two) and the
   * upload has no `.part` tail: append() streams its part to S3 while it arrives (streamPart).
   */
  takesPart(state: UploadState, length: number): boolean {
    const { partSize } = this.host.partPlan(state);
    return state.tail === 0 && length >= partSize && length < 2 * partSize;
  }

  /** The upload's entry for an append at the state's offset (counted in `appending`); on failure the reservation is released. */
  private async enter(state: UploadState, reserved: number): Promise<Entry> {
    let entry: Entry | undefined;
    try {
      entry = await this.entryFor(state, true);
      if (entry.unpushed === 0 && !sameState(entry.state, state)) {
        // Another instance wrote since this process pushed its last bytes of the upload (while
        // it holds bytes, the state names it and nobody else writes): start from Redis's state.
        const stale = entry;
        entry = undefined;
        this.endAppend(stale);
        this.close(stale);
        await stale.closed;
        const fresh = await this.states.load(state.upload.id);
        if (!fresh || stateOffset(fresh) !== stateOffset(state)) throw new StateConflictError(state.upload.id);
        entry = await this.entryFor(fresh, true);
      }
      if (stateOffset(entry.state) !== stateOffset(state)) throw new StateConflictError(state.upload.id);
    } catch (err) {
      if (entry) this.endAppend(entry);
      this.releaseDisk(reserved);
      throw err;
    }
    if (entry.idleTimer) clearTimeout(entry.idleTimer);
    return entry;
  }

  /** Bytes one upload may hold that are not in S3 yet: the parts in flight and one being gathered. */
  private highWater(entry: Entry): number {
    const { partSize, partsInFlight } = this.host.partPlan(entry.state);
    return partsInFlight * partSize + partSize;
  }

  private async appendTo(entry: Entry, src: Readable, reserved: number): Promise<{ received: number; bodyError?: unknown }> {
    const { partSize } = this.host.partPlan(entry.state);
    const highWater = this.highWater(entry);
    const start = stateOffset(entry.state);
    // The body continues the last segment while that one is short of a part (one directory
    // fsync per part, not per PATCH); else it starts a new segment file named by its offset.
    const last = entry.segments.at(-1);
    const reuse = last !== undefined && !last.open && last.start + last.acked === start && last.written === last.acked && last.acked < partSize;
    const seg: Segment = reuse ? last : { start, acked: 0, written: 0, file: path.join(entry.dir, String(start)), open: true };
    seg.open = true;
    const base = seg.written; // bytes of the segment before this body
    let fh: fs.promises.FileHandle | undefined;
    let pending = 0;
    let received = 0;
    let bodyError: unknown;
    let failure: unknown;
    // Body chunks are gathered into batches written while the next batch arrives (one write in
    // flight): far fewer write calls than one per socket read, and receiving overlaps writing.
    let batch: Buffer[] = [];
    let batchBytes = 0;
    let writePos = seg.written; // where the next batch goes in the file
    let writing: Promise<void> = Promise.resolve();
    let writeError: unknown;
    const queueWrite = async () => {
      await writing;
      if (writeError !== undefined) throw writeError;
      if (batchBytes === 0) return;
      const bufs = batch;
      const n = batchBytes;
      batch = [];
      batchBytes = 0;
      const at = writePos;
      writePos += n;
      writing = fh!
        .writev(bufs, at)
        .then(({ bytesWritten }) => {
          seg.written = Math.max(seg.written, at + bytesWritten);
          if (bytesWritten !== n) throw new Error(`upload ${entry.id}: short write to the write buffer`);
          pending += n; // only bytes known to be in the file are ever recorded
        })
        .catch((err: unknown) => {
          writeError = err;
        });
    };
    /** Bytes of this body received and not recorded yet (gathered, being written, or written). */
    const unrecorded = () => writePos + batchBytes - seg.acked;
    /** Records every byte written so far (after a failed write too: those before it stay). */
    const record = async () => {
      if (writeError === undefined) await queueWrite().catch(noop);
      await writing;
      if (pending === 0) return;
      await fh!.datasync();
      const n = pending;
      pending = 0;
      const r = await entry.update(() => this.states.commit(entry.state, [], entry.state.tail, { bytes: entry.state.local + n, holder: this.instanceId }));
      if (r === 'gone') throw this.gone(entry);
      seg.acked += n;
      received += n;
      entry.wake();
    };
    const recordAll = async () => {
      await record();
      if (writeError !== undefined) throw writeError;
    };
    try {
      if (reuse) {
        fh = await fs.promises.open(seg.file, 'r+');
      } else {
        // A file left at this offset holds no acknowledged byte (they would be part of the offset).
        entry.segments.splice(0, entry.segments.length, ...entry.segments.filter((x) => x.start !== start || x.acked > 0));
        fh = await fs.promises.open(seg.file, 'w');
        await fsyncDirectory(entry.dir);
        entry.segments.push(seg);
      }
      const ended: { error?: unknown } = {};
      for await (const chunk of bodyChunks(src, ended)) {
        if (writePos + batchBytes - base + chunk.length > reserved) throw new Error(`upload ${entry.id}: body longer than the ${reserved} bytes reserved`);
        batch.push(chunk);
        batchBytes += chunk.length;
        if (batchBytes >= WRITE_BATCH_BYTES) await queueWrite();
        if (unrecorded() >= partSize) await recordAll();
        // Read the body no faster than S3 takes this upload's parts.
        while (entry.unpushed + unrecorded() > highWater) {
          await recordAll();
          if (entry.discarded) throw this.gone(entry);
          if (entry.stopped) throw entry.stopError ?? new StateConflictError(entry.id);
          if (entry.unpushed > highWater) await entry.changedSince(entry.version);
        }
      }
      bodyError = ended.error;
      await recordAll();
    } catch (err) {
      failure = err;
      await record().catch((e: unknown) => this.log?.error({ err: e, uploadId: entry.id }, 'could not record buffered bytes'));
    } finally {
      await writing;
      seg.open = false;
      if (seg.written > seg.acked) {
        // Bytes written but not recorded are no part of the upload: off the disk, so that the
        // segment can be continued and a later load never takes them for acknowledged ones.
        await fh?.truncate(seg.acked).catch(noop);
        this.releaseDisk(seg.written - seg.acked);
        seg.written = seg.acked;
      }
      await fh?.close().catch(noop);
      this.releaseDisk(reserved - (seg.written - base));
      if (seg.acked === 0) {
        const i = entry.segments.indexOf(seg);
        if (i >= 0) entry.segments.splice(i, 1);
        await fs.promises.rm(seg.file, { force: true }).catch(noop);
      }
      this.endAppend(entry);
    }
    if (failure !== undefined) throw failure;
    return { received, bodyError };
  }

  /**
   * A body of one whole part of an upload whose held bytes, if any, are all in parts being
   * uploaded (append() decides): its part is uploaded to S3 while the body arrives (from memory
   * while S3 keeps up, else from the segment file: s3-spool.ts), and the body is acknowledged as
   * soon as it is fsynced here and recorded, as appendTo() does, without waiting for S3: the
   * client sends its next chunk while this part's upload ends. The part then belongs to the
   * pusher (committed in order; uploaded again from the segment file if its streamed upload
   * failed). A body that ends short is kept as appendTo() would keep it (its streamed upload is
   * aborted; the pusher uploads those bytes later).
   */
  private async streamPart(entry: Entry, src: Readable, reserved: number): Promise<{ received: number; bodyError?: unknown }> {
    const start = stateOffset(entry.state);
    const number = entry.nextNumber;
    let received = 0;
    let bodyError: unknown;
    let spool: SpoolPiece | undefined;
    const abort = new AbortController();
    let upload: Promise<string | undefined> = Promise.resolve(undefined);
    let part: InFlightPart | undefined;
    let dirSynced: Promise<void> = Promise.resolve();
    const file = path.join(entry.dir, String(start));
    try {
      // No more than an append may hold: wait for the parts before it to reach S3.
      const highWater = this.highWater(entry);
      while (entry.unpushed + reserved > highWater && !entry.stopped && !entry.discarded) await entry.changedSince(entry.version);
      if (entry.discarded) throw this.gone(entry);
      if (entry.stopped) throw entry.stopError ?? new StateConflictError(entry.id);
      // A file left at this offset holds no acknowledged byte (they would be part of the offset).
      entry.segments.splice(0, entry.segments.length, ...entry.segments.filter((x) => x.start !== start || x.acked > 0));
      spool = new SpoolPiece(file, { sync: true });
      // The file's directory entry is made durable while the body arrives.
      const piece = spool;
      dirSynced = piece.opened.then(() => (piece.error ? undefined : fsyncDirectory(entry.dir)));
      dirSynced.catch(noop);
      const reader = spool.liveReader(reserved);
      const permit = await this.host.acquirePermit();
      upload = this.host
        .uploadPartBody(entry.state, number, reader, reserved, abort.signal)
        .then(
          (etag) => etag,
          (err: unknown) => {
            if (!abort.signal.aborted) this.log?.warn({ err, uploadId: entry.id, part: number }, 'streamed part upload failed; it is uploaded again from the write buffer');
            return undefined;
          },
        )
        .finally(() => {
          reader.destroy();
          void permit.release().catch(noop);
        });
      const ended: { error?: unknown } = {};
      for await (const chunk of bodyChunks(src, ended)) {
        if (received + chunk.length > reserved) throw new Error(`upload ${entry.id}: body longer than the ${reserved} bytes reserved`);
        received += chunk.length;
        if (!spool.write(chunk)) await spool.drain();
      }
      bodyError = ended.error;
      await spool.end();
      if (received === 0) {
        abort.abort(new Error('empty body'));
        await upload;
        await fs.promises.rm(file, { force: true }).catch(noop);
        this.releaseDisk(reserved);
        return { received: 0, bodyError };
      }
      await dirSynced;
      // Open until recorded: the pusher must not take it for pushed and delete it meanwhile.
      const seg: Segment = { start, acked: 0, written: received, file, open: true };
      entry.segments.push(seg);
      if (received === reserved && entry.nextStart === start && entry.nextNumber === number) {
        // The part is the pusher's from before its bytes count as acknowledged: it never
        // launches them again, and commits the part in order once S3 has it.
        part = { number, start, len: received, done: Promise.resolve() };
        const own = part;
        own.done = upload
          .then(async (etag) => {
            if (etag !== undefined) own.etag = etag;
            else if (entry.inFlight.includes(own)) await this.uploadPart(entry, own, 0); // again, from the segment file
          })
          .then(() => entry.wake());
        entry.inFlight.push(own);
        entry.nextStart += received;
        entry.nextNumber++;
      } else {
        abort.abort(new Error('body ended before its part')); // the pusher uploads these bytes
      }
      const n = received;
      const r = await entry.update(() => this.states.commit(entry.state, [], entry.state.tail, { bytes: entry.state.local + n, holder: this.instanceId }));
      if (r === 'gone') throw this.gone(entry);
      seg.acked = n;
      seg.open = false;
      entry.wake();
      this.releaseDisk(reserved - received);
      return { received: n, bodyError };
    } catch (err) {
      if (part && entry.inFlight.at(-1) === part && part.etag === undefined) {
        // Not recorded: the part is not the pusher's after all (nothing was launched after it).
        entry.inFlight.pop();
        entry.nextStart -= part.len;
        entry.nextNumber--;
      }
      abort.abort(err);
      await spool?.destroy();
      await upload;
      const i = entry.segments.findIndex((x) => x.file === file && x.acked === 0);
      if (i >= 0) entry.segments.splice(i, 1);
      await fs.promises.rm(file, { force: true }).catch(noop);
      this.releaseDisk(reserved);
      throw err;
    } finally {
      this.endAppend(entry);
    }
  }

  /** An append (counted by entryFor) is over: the pusher may finish, the idle timer restarts. */
  private endAppend(entry: Entry): void {
    entry.appending--;
    entry.wake();
    if (entry.appending === 0 && entry.stopped) void this.retire(entry);
    if (entry.appending === 0 && !entry.closing && !entry.discarded && !entry.stopped) {
      if (entry.idleTimer) clearTimeout(entry.idleTimer);
      entry.idleTimer = setTimeout(() => this.close(entry), this.opts.idleFlushMs);
      entry.idleTimer.unref();
    }
  }

  /** Frees disk reserved or used by segments. */
  private releaseDisk(n: number): void {
    if (n > 0) this.diskBytes = Math.max(0, this.diskBytes - n);
  }

  /** Pushes everything the process holds of the upload; resolves when the entry is gone. */
  async flush(id: string): Promise<void> {
    const entry = this.entries.get(id);
    if (!entry) return;
    this.close(entry);
    await entry.closed;
  }

  private close(entry: Entry): void {
    if (entry.closing) return;
    entry.closing = true;
    if (entry.idleTimer) clearTimeout(entry.idleTimer);
    entry.wake();
  }

  /** The upload's state is gone (deleted or expired meanwhile): its bytes here are dropped. */
  private gone(entry: Entry): Error {
    if (!entry.discarded) {
      entry.discarded = true;
      if (entry.idleTimer) clearTimeout(entry.idleTimer);
      this.log?.info({ uploadId: entry.id }, 'upload deleted while its bytes were buffered; dropping them');
      entry.wake();
    }
    return ERRORS.FILE_NOT_FOUND as unknown as Error;
  }

  /** Waits until the upload's bytes in this process are all in S3 (final PATCH, HEAD of a full upload). */
  async drain(state: UploadState): Promise<UploadState> {
    if (state.local === 0) return state;
    if (state.holder !== this.instanceId) return this.held.takeOver(state);
    if (!this.entries.has(state.upload.id)) await this.entryFor(state);
    await this.flush(state.upload.id);
    const after = await this.states.load(state.upload.id);
    if (!after || after.local > 0) throw heldElsewhere('The upload could not be moved to storage yet; retry shortly');
    return after;
  }


  /**
   * Shutdown: pushes what it can until `deadline`; the rest stays on disk for the next process
   * with this directory. Stops the heartbeat and releases the directory.
   */
  async shutdown(deadline: number): Promise<void> {
    if (this.closedForGood) return;
    this.closedForGood = true;
    for (const entry of this.entries.values()) this.close(entry);
    const all = Promise.all([...this.entries.values()].map((e) => e.closed));
    await Promise.race([all, sleep(Math.max(0, deadline - Date.now()))]);
    clearInterval(this.heartbeat);
    clearInterval(this.poller);
    this.subscriber.off('message', this.onMessage);
    if (this.peerServer) {
      // Bounded: a Redis that is down must not hold up the exit (a stale address only costs
      // other instances one refused connection before they hand over).
      await Promise.race([this.held.withdraw(this.instanceId).catch(noop), sleep(1_000)]);
      await this.peerServer.close();
    }
    this.held.close();
    const left = [...this.entries.values()].filter((e) => e.unpushed > 0);
    if (left.length > 0) {
      this.log?.warn({ uploads: left.length, bytes: left.reduce((a, e) => a + e.unpushed, 0) }, 'shutdown: acknowledged bytes stay in the write buffer; the next start pushes them');
    } else {
      await fs.promises.rm(path.join(this.instanceDir, 'owner'), { force: true });
    }
  }

  // ------------------------------------------------------------------ pushing

  private runPusher(entry: Entry): void {
    this.push(entry)
      .catch((err: unknown) => {
        entry.stopError = err;
        if (entry.discarded) return;
        if (err instanceof StateConflictError) {
          // Another instance changed the state: it took over this upload from a holder it
          // believed gone (abandoned). What is here is no longer part of the upload.
          this.log?.warn({ uploadId: entry.id, bytes: entry.unpushed }, 'another instance took this upload over; dropping the buffered bytes');
          entry.discarded = true;
          return;
        }
        this.log?.error({ err, uploadId: entry.id, bytes: entry.unpushed }, 'pushing buffered bytes failed; they stay on disk and are pushed again later');
        if (!this.closedForGood) setTimeout(() => void this.pushHeld(entry.id), RETRY_PUSH_MS).unref();
      })
      .finally(() => {
        entry.stopped = true;
        if (entry.idleTimer) clearTimeout(entry.idleTimer);
        entry.wake(); // appends waiting on backpressure see `stopped`
        if (entry.appending === 0) void this.retire(entry);
        // else the last append to end retires it (endAppend): its files are still being written
      });
  }

  /** The pusher ended and no append runs: drop what is pushed or void, then let the next entry in. */
  private async retire(entry: Entry): Promise<void> {
    if (entry.retired) return;
    entry.retired = true;
    if (entry.discarded || entry.unpushed === 0) {
      const bytes = entry.segments.reduce((a, x) => a + x.written, 0);
      entry.segments.length = 0;
      await fs.promises.rm(entry.dir, { recursive: true, force: true }).catch(noop);
      this.releaseDisk(bytes);
    }
    // Only now: the next entry of this upload uses the same directory.
    if (this.entries.get(entry.id) === entry) this.entries.delete(entry.id);
    entry.wake();
    entry.resolveClosed();
  }

  /** A stream of the upload's bytes [from, to): the `.part` tail from S3 first if `tail` > 0. */
  private bodyOf(entry: Entry, from: number, to: number, tail: number): Readable {
    const { host } = this;
    const state = entry.state;
    const segments = entry.segments.slice(); // pushed segments leave the list meanwhile
    return Readable.from(
      (async function* () {
        let at = from;
        if (tail > 0) {
          const s3 = await host.getTailStream(state, tail);
          try {
            for await (const c of s3 as AsyncIterable<Buffer>) yield c;
          } finally {
            s3.destroy();
          }
          at += tail;
        }
        for (const seg of segments) {
          if (at >= to) break;
          const segEnd = seg.start + seg.acked;
          if (segEnd <= at || seg.start > at) continue;
          const end = Math.min(segEnd, to);
          const file = fs.createReadStream(seg.file, { start: at - seg.start, end: end - seg.start - 1, highWaterMark: 1024 * 1024 });
          for await (const c of file as AsyncIterable<Buffer>) yield c;
          at = end;
        }
        if (at !== to) throw new Error(`upload ${state.upload.id}: write buffer has bytes up to ${at}, ${to} needed`);
      })(),
      { objectMode: false },
    );
  }

  private async withRetries<T>(what: string, entry: Entry, fn: () => Promise<T>): Promise<T> {
    let lastErr: unknown;
    for (let attempt = 0; attempt < Math.max(1, this.host.spoolRetries); attempt++) {
      if (attempt > 0) await sleep(250 * 2 ** (attempt - 1));
      try {
        return await fn();
      } catch (err) {
        lastErr = err;
        this.log?.warn({ err, uploadId: entry.id, attempt: attempt + 1 }, `${what} from the write buffer failed`);
      }
    }
    throw lastErr;
  }

  private async uploadPart(entry: Entry, part: InFlightPart, tail: number): Promise<void> {
    const permit = await this.host.acquirePermit();
    try {
      part.etag = await this.withRetries(`part ${part.number}`, entry, () =>
        this.host.uploadPartBody(entry.state, part.number, this.bodyOf(entry, part.start, part.start + part.len, tail), part.len),
      );
    } catch (err) {
      part.failed = err;
    } finally {
      await permit.release().catch(noop);
    }
  }

  /** Segments entirely in S3 are deleted. */
  private async dropPushed(entry: Entry): Promise<void> {
    const stored = storedOffset(entry.state);
    let freed = 0;
    while (entry.segments.length > 0) {
      const seg = entry.segments[0]!;
      if (seg.open || seg.start + seg.acked > stored) break;
      entry.segments.shift();
      freed += seg.written;
      await fs.promises.rm(seg.file, { force: true }).catch(noop);
    }
    if (freed > 0) this.releaseDisk(freed);
  }

  /**
   * The upload's pusher: uploads whole parts as soon as they are acknowledged (up to
   * partsInFlight at once), commits them in order; once closing (flush, idle, shutdown, end of
   * the upload) and no append is under way, pushes the rest as a last part or as the `.part` tail.
   */
  private async push(entry: Entry): Promise<void> {
    const { state, inFlight } = entry;
    entry.nextStart = state.bytes;
    entry.nextNumber = state.nparts + 1;
    // Bytes of the first part that come from S3's `.part` object, not from the buffer.
    const tailInS3 = state.tail;
    let tailConsumed = false;
    let firstLaunched = false;
    const launch = (len: number) => {
      const part: InFlightPart = { number: entry.nextNumber++, start: entry.nextStart, len, done: Promise.resolve() };
      const tail = firstLaunched ? 0 : tailInS3;
      firstLaunched = true;
      part.done = this.uploadPart(entry, part, tail).then(() => entry.wake());
      inFlight.push(part);
      entry.nextStart += len;
    };

    const commitDone = async () => {
      const batch: InFlightPart[] = [];
      while (inFlight.length > 0 && inFlight[0]!.etag !== undefined) batch.push(inFlight.shift()!);
      if (batch.length === 0) return;
      const parts: CommittedPart[] = batch.map((p) => ({ number: p.number, size: p.len, etag: p.etag! }));
      const r = await entry.update(() => this.states.commit(state, parts, 0));
      if (r === 'gone') throw this.gone(entry);
      if (tailInS3 > 0 && !tailConsumed) {
        tailConsumed = true;
        // Awaited: a delete still in flight could remove the `.part` a flush writes next.
        await this.host.deleteTail(state).catch((err: unknown) => {
          this.log?.warn({ err, uploadId: entry.id }, 'could not delete the consumed .part object (ignored on rebuild)');
        });
      }
      await this.dropPushed(entry);
      entry.wake();
    };

    for (;;) {
      if (entry.discarded) return;
      const seen = entry.version;
      const failed = inFlight.find((p) => p.failed !== undefined);
      if (failed) {
        await Promise.allSettled(inFlight.map((p) => p.done));
        throw failed.failed;
      }
      await commitDone();
      // From here to the launches nothing awaits: a streamed part added by an append meanwhile
      // has moved nextStart past its bytes before they count as acknowledged here.
      const { partSize, tailThreshold, partsInFlight } = this.host.partPlan(state);
      const acknowledged = stateOffset(state);
      const size = state.upload.size;
      const final = size !== undefined && acknowledged === size;
      // Whole parts as soon as they are acknowledged.
      while (inFlight.length < partsInFlight && acknowledged - entry.nextStart >= partSize) launch(partSize);
      const finishing = (entry.closing || final) && entry.appending === 0;
      if (finishing && acknowledged - entry.nextStart < partSize) {
        const rest = acknowledged - entry.nextStart;
        if (rest > 0 && (final || rest >= tailThreshold)) {
          if (inFlight.length < partsInFlight) launch(rest);
        } else if (inFlight.length === 0) {
          // (Without local bytes the rest is S3's own `.part`: nothing to rewrite.)
          if (rest > 0 && entry.unpushed > 0) await this.pushTail(entry);
          return; // everything is in S3
        }
      }
      if (entry.discarded) return;
      await entry.changedSince(seen);
    }
  }

  /** The rest (below the tail threshold, not the end): `.part` = the S3 tail + the buffered bytes. */
  private async pushTail(entry: Entry): Promise<void> {
    const { state } = entry;
    const from = state.bytes;
    const to = stateOffset(state);
    await this.withRetries('.part', entry, () => this.host.putTailBody(state, this.bodyOf(entry, from, to, state.tail), to - from, state.nparts + 1));
    const r = await entry.update(() => this.states.commit(state, [], to - from, { bytes: 0, holder: '' }));
    if (r === 'gone') throw this.gone(entry);
    await this.dropPushed(entry);
  }
}
