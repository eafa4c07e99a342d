// One tus write (PATCH body, or the body of a creation-with-upload POST) into S3, streamed.
//
// Known body length (Content-Length): the bytes (old `.part` tail first, then the body) are cut
// up front into pieces: floor(total / partSize) parts, the last one absorbing the remainder, or
// one incomplete tail (`<id>.part`) when the total is below the minimum part size and this is not
// the end of the upload. Each piece is written to a spool file as the bytes arrive and its
// UploadPart (PutObject for a tail) starts with its first byte, streaming from memory while it
// keeps up and from the spool file when it lags (s3-spool.ts), so receiving never waits for S3
// and several parts of one body upload at once (bounded per write and by the store's semaphore).
// The spool keeps every byte of a piece until S3 confirmed it:
//   - if its upload fails, it is retried from the spool;
//   - if the body ends early (client gone, idle timeout, lock released by another instance), the
//     in-flight upload of the cut piece is aborted and the spooled bytes are stored instead, as a
//     part (>= min part size) or as the new `.part` tail, so exactly what arrived is kept.
// Unknown length (chunked transfer): each part is spooled to disk and uploaded as soon as it is
// full (while the next one is received); the rest at the end becomes a part or the tail.
//
// Redis is updated only after S3 confirmed (parts in order, as soon as they are contiguous), so
// the returned offset is exactly what S3 durably holds. Spool files are always removed.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { SpoolPiece, type SpoolReader } from './s3-spool.js';
import { stateOffset, type CommittedPart, type UploadState } from './s3-upload-state.js';

export interface PartWriterHost {
  readonly spoolDirectory: string;
  readonly log: Logger | undefined;
  /** UploadPart with a known length; resolves to the ETag. */
  uploadPartBody(state: UploadState, partNumber: number, body: Readable, length: number, signal?: AbortSignal): Promise<string>;
  /** PutObject `<id>.part`, recording that it precedes part `nextPart`. */
  putTailBody(state: UploadState, body: Readable, length: number, nextPart: number, signal?: AbortSignal): Promise<void>;
  /** GetObject `<id>.part`; rejects unless its length is `expected`. */
  getTailStream(state: UploadState, expected: number): Promise<Readable>;
  deleteTail(state: UploadState): Promise<void>;
  acquirePermit(): Promise<{ release(): Promise<void> }>;
  commit(state: UploadState, parts: CommittedPart[], newTail: number): Promise<void>;
}

export interface WritePlanOptions {
  /** Size of the parts a body is cut into. */
  partSize: number;
  /** A piece smaller than this that does not end the upload becomes the `.part` tail. */
  tailThreshold: number;
  /** Attempts to upload a piece from its spool file after its streamed upload failed. */
  spoolRetries: number;
  /** Pieces of one write being received or uploaded at once (each holds up to a part on disk). */
  piecesInFlight: number;
}

type PieceKind = 'part' | 'tail';

interface Piece {
  index: number;
  /** Part number; for a tail, the number of the part it will precede. */
  number: number;
  kind: PieceKind;
  /** Bytes this piece takes: planned length (known length) or the part size (spool mode). */
  capacity: number;
  fed: number;
  bodyBytes: number;
  spool: SpoolPiece;
  /** Known length: the body of the streamed upload. */
  reader?: SpoolReader;
  abort: AbortController;
  /** ETag, or undefined if the streamed upload failed or was aborted. Never rejects. */
  streamResult?: Promise<string | undefined>;
  streamError?: unknown;
  release: () => Promise<void>;
  /** Final result of a sealed piece. */
  outcome?: Promise<string>;
  etag?: string;
}

const noop = () => {};

/** Planned pieces for `total` bytes. */
export function planPieces(total: number, isFinal: boolean, o: Pick<WritePlanOptions, 'partSize' | 'tailThreshold'>): { kind: PieceKind; len: number }[] {
  if (total === 0) return [];
  if (!isFinal && total < o.tailThreshold) return [{ kind: 'tail', len: total }];
  const n = Math.max(1, Math.floor(total / o.partSize));
  const pieces: { kind: PieceKind; len: number }[] = [];
  for (let i = 0; i < n - 1; i++) pieces.push({ kind: 'part', len: o.partSize });
  pieces.push({ kind: 'part', len: total - (n - 1) * o.partSize });
  return pieces;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class PartWriter {
  private readonly pieces: Piece[] = [];
  private committedPieces = 0;
  private commitChain: Promise<void> = Promise.resolve();
  private firstError: unknown;
  private readonly startOffset: number;
  private readonly tailIn: number;
  /** Part number of the first piece (the state's nparts grows while this write commits). */
  private readonly firstPartNumber: number;
  private readonly plan: { kind: PieceKind; len: number }[] | undefined;
  private newTailWritten = false;
  private tailConsumed = false;
  private commitBroken = false;
  /** Spool removal + permit release of every piece; awaited before run() returns. */
  private readonly cleanups: Promise<void>[] = [];
  private inFlight = 0;
  private readonly slotWaiters: (() => void)[] = [];

  constructor(
    private readonly host: PartWriterHost,
    private readonly state: UploadState,
    private readonly src: Readable,
    /** Body length if known (Content-Length), else undefined: spool mode. */
    private readonly expected: number | undefined,
    private readonly opts: WritePlanOptions,
  ) {
    this.startOffset = stateOffset(state);
    this.tailIn = state.tail;
    this.firstPartNumber = state.nparts + 1;
    if (expected !== undefined) {
      this.plan = planPieces(this.tailIn + expected, this.isFinalAt(expected), opts);
    }
  }

  private isFinalAt(bodyBytes: number): boolean {
    const size = this.state.upload.size;
    return size !== undefined && this.startOffset + bodyBytes === size;
  }

  private fail(err: unknown): void {
    if (this.firstError === undefined) this.firstError = err;
  }

  /**
   * Consumes the body. Resolves to the new offset once everything it got is durably in S3 and
   * recorded in Redis. Rejects (after saving what it could) if S3/Redis/disk failed or the body
   * stream errored.
   */
  async run(): Promise<{ offset: number; bodyError?: unknown; bodyMs: number; parts: number }> {
    const t0 = performance.now();
    let received = 0;
    let current: Piece | undefined;
    let bodyError: unknown;
    // Iterated by hand: leaving a `for await` destroys the body, and @tus/server then reports an
    // aborted request (400) instead of the storage error that made us stop (503, retried).
    const body = (this.src as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    try {
      for (;;) {
        const next = await body.next();
        if (next.done) break;
        let buf = next.value;
        try {
          while (buf.length > 0) {
            if (!current) current = await this.startPiece();
            const take = Math.min(current.capacity - current.fed, buf.length);
            await this.feed(current, take === buf.length ? buf : buf.subarray(0, take), true);
            buf = buf.subarray(take);
            received += take;
            if (current.fed === current.capacity) {
              this.seal(current);
              current = undefined;
            }
          }
        } catch (err) {
          this.fail(err);
        }
        if (this.firstError !== undefined) break; // stop reading; what is sealed is still saved
      }
    } catch (err) {
      bodyError = err; // the body stream errored: keep what arrived, then report it
    }
    const bodyMs = Math.round(performance.now() - t0);

    if (current) {
      if (this.firstError !== undefined) await this.discard(current);
      else await this.saveCut(current, received);
    }
    await Promise.allSettled(this.pieces.map((p) => p.outcome));
    await this.flushCommits();
    await this.commitChain;
    await Promise.all(this.cleanups);

    if (this.tailConsumed && !this.newTailWritten) {
      await this.host.deleteTail(this.state).catch((err: unknown) => {
        this.host.log?.warn({ err, uploadId: this.state.upload.id }, 'could not delete the consumed .part object (ignored on rebuild)');
      });
    }
    if (this.firstError !== undefined) throw this.firstError;
    return { offset: stateOffset(this.state), bodyError, bodyMs, parts: this.committedPieces };
  }

  private async startPiece(): Promise<Piece> {
    const index = this.pieces.length;
    let kind: PieceKind = 'part';
    let capacity = this.opts.partSize;
    if (this.plan) {
      const planned = this.plan[index];
      if (!planned) throw new Error(`upload ${this.state.upload.id}: request body longer than its Content-Length`);
      kind = planned.kind;
      capacity = planned.len;
    }
    const release = await this.acquireSlot();
    const spool = new SpoolPiece(path.join(this.host.spoolDirectory, `tusk-s3-${process.pid}-${crypto.randomBytes(8).toString('hex')}`));
    const piece: Piece = {
      index,
      number: this.firstPartNumber + index,
      kind,
      capacity,
      fed: 0,
      bodyBytes: 0,
      spool,
      abort: new AbortController(),
      release,
    };
    this.pieces.push(piece);

    if (this.plan) {
      const reader = spool.liveReader(capacity);
      reader.on('error', noop);
      piece.reader = reader;
      const upload =
        kind === 'part'
          ? this.host.uploadPartBody(this.state, piece.number, reader, capacity, piece.abort.signal)
          : this.host.putTailBody(this.state, reader, capacity, piece.number, piece.abort.signal).then(() => 'tail');
      piece.streamResult = upload.then(
        (etag) => etag,
        (err: unknown) => {
          piece.streamError = err;
          reader.destroy();
          return undefined;
        },
      );
    }

    if (index === 0 && this.tailIn > 0) {
      try {
        const tail = await this.host.getTailStream(this.state, this.tailIn);
        try {
          for await (const c of tail as AsyncIterable<Buffer>) await this.feed(piece, c, false);
        } finally {
          tail.destroy();
        }
        if (piece.fed !== this.tailIn) throw new Error(`upload ${this.state.upload.id}: .part has ${piece.fed} bytes, expected ${this.tailIn}`);
      } catch (err) {
        await this.discard(piece);
        throw err;
      }
    }
    return piece;
  }

  /** A slot of this write (piecesInFlight) and a permit of the store's semaphore. */
  private async acquireSlot(): Promise<() => Promise<void>> {
    while (this.inFlight >= this.opts.piecesInFlight) {
      await new Promise<void>((resolve) => this.slotWaiters.push(resolve));
    }
    this.inFlight++;
    const permit = await this.host.acquirePermit();
    let released = false;
    return async () => {
      if (released) return;
      released = true;
      this.inFlight--;
      this.slotWaiters.shift()?.();
      await permit.release().catch(noop);
    };
  }

  private async feed(piece: Piece, buf: Buffer, fromBody: boolean): Promise<void> {
    if (piece.spool.error) throw piece.spool.error;
    const ok = piece.spool.write(buf);
    piece.fed += buf.length;
    if (fromBody) piece.bodyBytes += buf.length;
    if (!ok) await piece.spool.drain();
    if (piece.spool.error) throw piece.spool.error;
  }

  private async cleanup(piece: Piece): Promise<void> {
    piece.reader?.destroy();
    await piece.spool.destroy();
    await fs.promises.rm(piece.spool.path, { force: true }).catch(noop);
    await piece.release();
  }

  /** Uploads `piece` (fully received, `fed` bytes) from its spool file as part `piece.number`. */
  private async uploadFromSpool(piece: Piece): Promise<string> {
    let lastErr: unknown;
    for (let attempt = 0; attempt < this.opts.spoolRetries; attempt++) {
      if (attempt > 0) await sleep(250 * 2 ** (attempt - 1));
      try {
        return await this.host.uploadPartBody(this.state, piece.number, piece.spool.fileReader(piece.fed), piece.fed);
      } catch (err) {
        lastErr = err;
        this.host.log?.warn({ err, uploadId: this.state.upload.id, part: piece.number, attempt: attempt + 1 }, 'part upload from spool failed');
      }
    }
    throw lastErr;
  }

  /** A part piece received completely: finish its upload in the background. */
  private seal(piece: Piece): void {
    const flushed = piece.spool.end(); // the file is complete once flushed (the reader may lag)
    flushed.catch(noop);
    if (piece.kind === 'tail') {
      // Only planned when the whole write is one tail piece: nothing before it in this write.
      piece.outcome = (async () => {
        await flushed;
        const ok = piece.streamResult ? await piece.streamResult : undefined;
        if (ok === undefined) await this.putTailFromSpool(piece);
        await this.enqueueCommit(async () => {
          await this.host.commit(this.state, [], piece.fed);
          this.newTailWritten = true;
        });
        return 'tail';
      })();
    } else {
      piece.outcome = (async () => {
        await flushed;
        let etag = piece.streamResult ? await piece.streamResult : undefined;
        if (etag === undefined) {
          if (piece.streamError) {
            this.host.log?.warn({ err: piece.streamError, uploadId: this.state.upload.id, part: piece.number }, 'streamed part upload failed; retrying from spool');
          }
          etag = await this.uploadFromSpool(piece);
        }
        piece.etag = etag;
        return etag;
      })();
    }
    piece.outcome.then(
      () => {
        if (piece.kind === 'part') void this.flushCommits();
      },
      (err: unknown) => this.fail(err),
    );
    this.cleanups.push(piece.outcome.then(noop, noop).then(() => this.cleanup(piece)));
  }

  private async putTailFromSpool(piece: Piece): Promise<void> {
    let lastErr: unknown;
    for (let attempt = 0; attempt < this.opts.spoolRetries; attempt++) {
      if (attempt > 0) await sleep(250 * 2 ** (attempt - 1));
      try {
        await this.host.putTailBody(this.state, piece.spool.fileReader(piece.fed), piece.fed, piece.number);
        return;
      } catch (err) {
        lastErr = err;
        this.host.log?.warn({ err, uploadId: this.state.upload.id, attempt: attempt + 1 }, '.part upload from spool failed');
      }
    }
    throw lastErr;
  }

  /** The body ended (or errored) inside `piece`: store exactly the bytes that arrived. */
  private async saveCut(piece: Piece, received: number): Promise<void> {
    piece.abort.abort();
    piece.reader?.destroy();
    if (piece.streamResult) await piece.streamResult;
    try {
      await piece.spool.end();
    } catch (err) {
      this.fail(err);
      await this.cleanup(piece);
      return;
    }
    if (piece.bodyBytes === 0) {
      // Only the old tail was fed: it is still in `.part`, unchanged.
      await this.cleanup(piece);
      return;
    }
    const isFinal = this.isFinalAt(received);
    if (isFinal || piece.fed >= this.opts.tailThreshold) {
      piece.kind = 'part';
      piece.streamResult = undefined;
      this.seal(piece);
      return;
    }
    // New tail: written only after every part before it in this write is committed, because it
    // replaces the old `.part` (which the first part may contain).
    piece.kind = 'tail';
    piece.outcome = (async () => {
      await Promise.allSettled(this.pieces.filter((p) => p !== piece).map((p) => p.outcome));
      await this.flushCommits();
      await this.commitChain;
      if (this.firstError !== undefined || this.committedPieces !== piece.index) {
        throw this.firstError ?? new Error('earlier part not committed');
      }
      await this.putTailFromSpool(piece);
      await this.enqueueCommit(async () => {
        await this.host.commit(this.state, [], piece.fed);
        this.newTailWritten = true;
      });
      return 'tail';
    })();
    piece.outcome.catch((err: unknown) => this.fail(err));
    this.cleanups.push(piece.outcome.then(noop, noop).then(() => this.cleanup(piece)));
  }

  /** After a failure: drop the piece being received. */
  private async discard(piece: Piece): Promise<void> {
    piece.abort.abort();
    piece.reader?.destroy();
    if (piece.streamResult) await piece.streamResult;
    await this.cleanup(piece);
  }

  private enqueueCommit(fn: () => Promise<void>): Promise<void> {
    const next = this.commitChain.then(fn);
    this.commitChain = next.catch((err: unknown) => {
      this.commitBroken = true;
      this.fail(err);
    });
    return next;
  }

  /** Records the contiguous run of uploaded parts (in order) in Redis. */
  private flushCommits(): Promise<void> {
    return this.enqueueCommit(async () => {
      if (this.commitBroken) return; // after a failed Redis update our view of the state is unsure
      const batch: Piece[] = [];
      for (let i = this.committedPieces; i < this.pieces.length; i++) {
        const p = this.pieces[i]!;
        if (p.kind !== 'part' || p.etag === undefined) break;
        batch.push(p);
      }
      if (batch.length === 0) return;
      await this.host.commit(
        this.state,
        batch.map((p) => ({ number: p.number, size: p.fed, etag: p.etag! })),
        0,
      );
      if (this.committedPieces === 0 && this.tailIn > 0) this.tailConsumed = true;
      this.committedPieces += batch.length;
    });
  }
}
