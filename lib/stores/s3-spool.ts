// A spool file for one piece (S3 part or .part tail) of a PATCH body, written as the bytes arrive,
// plus a reader that streams the piece into its S3 request without holding up the receiver:
//   - while the upload keeps up, bytes go from memory (a small window, MEMORY_WINDOW) to S3;
//   - when it falls behind, the receiver keeps writing to the file and the reader catches up
//     from the file (page cache), then switches back to memory once it has caught up.
// So one PATCH's parts upload concurrently (receiving part i+1 while part i is still being sent),
// memory stays bounded per piece, and the spool always holds every byte received (to retry an
// upload, or to store exactly what arrived when the body ends early).
import fs from 'node:fs';
import { Readable } from 'node:stream';

const WRITE_HWM = 1024 * 1024;
/** Bytes a live reader may hold in memory ahead of its consumer before falling back to the file. */
const MEMORY_WINDOW = 2 * 1024 * 1024;
const FILE_READ_SIZE = 1024 * 1024;
const SYNC_AHEAD = 2 * 1024 * 1024;

export class SpoolPiece {
  /** Bytes accepted by write(). */
  fed = 0;
  /** Bytes written to the file (write callbacks done). */
  flushed = 0;
  error: Error | undefined;
  readonly closed: Promise<void>;
  private readonly ws: fs.WriteStream;
  private readonly listeners = new Set<() => void>();
  private live: SpoolReader | undefined;
  private readonly sync: boolean;
  private syncing = false;
  private synced = 0;

  /** Resolves when the file exists (opened), or the stream failed or closed before. */
  readonly opened: Promise<void>;

  /** `sync`: the file is fsynced before it is closed (end() resolves after both). */
  constructor(
    readonly path: string,
    { sync = false }: { sync?: boolean } = {},
  ) {
    this.sync = sync;
    this.ws = fs.createWriteStream(path, { highWaterMark: WRITE_HWM, flush: sync });
    this.closed = new Promise<void>((resolve) => this.ws.once('close', resolve));
    this.opened = new Promise<void>((resolve) => {
      this.ws.once('open', () => resolve());
      this.ws.once('close', resolve);
    });
    this.ws.on('error', (err) => {
      this.error ??= err;
      this.notify();
    });
  }

  /** Appends bytes. Returns false when the caller should await drain() before writing more. */
  write(buf: Buffer): boolean {
    const len = buf.length;
    const ok = this.ws.write(buf, (err) => {
      if (!err) {
        this.flushed += len;
        this.syncAhead();
        this.notify();
      }
    });
    this.live?.offer(buf, this.fed);
    this.fed += len;
    this.notify();
    return ok;
  }

  /**
   * With `sync`: written bytes are fdatasynced every SYNC_AHEAD while more arrive, so that the
   * fsync at the end has little left to write (it bounds how soon the body is answered; measured
   * 204 -> 227 MiB/s with 8 MiB chunks, bench/README.md). Never after end(); one that races the
   * close can only sync another file or fail (EBADF, ignored): fdatasync writes nothing of its own.
   */
  private syncAhead(): void {
    const fd = (this.ws as unknown as { fd: number | null }).fd;
    if (!this.sync || this.syncing || this.ws.writableEnded || typeof fd !== 'number' || this.flushed - this.synced < SYNC_AHEAD) return;
    this.syncing = true;
    const upTo = this.flushed;
    fs.fdatasync(fd, () => {
      this.syncing = false;
      this.synced = upTo;
    });
  }

  drain(): Promise<void> {
    if (!this.ws.writableNeedDrain || this.ws.destroyed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        this.ws.off('drain', done);
        this.ws.off('close', done);
        resolve();
      };
      this.ws.on('drain', done);
      this.ws.on('close', done);
    });
  }

  /** No more bytes: flush and close the file. Rejects if writing it failed. */
  async end(): Promise<void> {
    if (!this.ws.writableEnded && !this.ws.destroyed) this.ws.end();
    await this.closed;
    if (this.error) throw this.error;
  }

  /** Stops writing (after a failure) and closes the file. */
  async destroy(): Promise<void> {
    if (!this.ws.destroyed) this.ws.destroy();
    await this.closed;
  }

  /**
   * A reader of bytes [0, length) that is fed from memory as they arrive (falling back to the
   * file when it lags). At most one per piece; it must exist before the first write().
   */
  liveReader(length: number): SpoolReader {
    const r = new SpoolReader(this, length, true);
    this.live = r;
    return r;
  }

  /** A reader of bytes [0, length) of the (complete, closed) file. */
  fileReader(length: number): Readable {
    return fs.createReadStream(this.path, { start: 0, end: length - 1, highWaterMark: FILE_READ_SIZE });
  }

  /** Called on every write, flush and error; listeners are one-shot. */
  onProgress(fn: () => void): void {
    this.listeners.add(fn);
  }

  private notify(): void {
    if (this.listeners.size === 0) return;
    const fns = [...this.listeners];
    this.listeners.clear();
    for (const fn of fns) fn();
  }
}

export class SpoolReader extends Readable {
  /** Next byte offset to hand to the consumer. */
  private pos = 0;
  /** Contiguous bytes [pos, pos + memBytes) kept in memory, when not overflowed. */
  private mem: Buffer[] = [];
  private memBytes = 0;
  /** The memory window overflowed: bytes from pos on come from the file until caught up. */
  private overflowed = false;
  private fd: number | undefined;
  /** A file open/read is in flight. */
  private busy = false;
  private wanted = false;
  private pendingDestroy: (() => void) | undefined;

  constructor(
    private readonly piece: SpoolPiece,
    private readonly length: number,
    live: boolean,
  ) {
    super({ highWaterMark: 256 * 1024 });
    if (!live) this.overflowed = true;
  }

  /** A new chunk at offset `at` (from SpoolPiece.write). */
  offer(buf: Buffer, at: number): void {
    if (this.overflowed || this.destroyed) return;
    if (at !== this.pos + this.memBytes) {
      this.overflowed = true; // cannot happen with in-order writes; be safe
      return;
    }
    if (this.memBytes + buf.length > MEMORY_WINDOW) {
      this.overflowed = true;
      this.dropMemory();
      return;
    }
    this.mem.push(buf);
    this.memBytes += buf.length;
  }

  private dropMemory(): void {
    // Keep it simple: once overflowed, everything from pos on is read from the file.
    this.mem = [];
    this.memBytes = 0;
  }

  override _read(): void {
    this.wanted = true;
    this.pump();
  }

  private pump(): void {
    while (this.wanted && !this.busy && !this.destroyed) {
      if (this.pos >= this.length) {
        this.wanted = false;
        this.push(null);
        return;
      }
      if (this.piece.error) {
        this.destroy(this.piece.error);
        return;
      }
      if (this.memBytes > 0) {
        let chunk = this.mem.shift()!;
        this.memBytes -= chunk.length;
        if (this.pos + chunk.length > this.length) chunk = chunk.subarray(0, this.length - this.pos);
        this.pos += chunk.length;
        this.wanted = this.push(chunk);
        continue;
      }
      if (this.overflowed && this.pos < this.piece.flushed) {
        this.readFile();
        return;
      }
      if (this.overflowed && this.pos === this.piece.fed && this.piece.flushed === this.piece.fed) {
        this.overflowed = false; // caught up: take new bytes from memory again
      }
      // Wait for more bytes (a write or a flush).
      this.piece.onProgress(() => this.pump());
      return;
    }
  }

  private readFile(): void {
    this.busy = true;
    const withFd = (cb: (fd: number) => void) => {
      if (this.fd !== undefined) return cb(this.fd);
      fs.open(this.piece.path, 'r', (err, fd) => {
        if (err) return this.afterIo(err);
        this.fd = fd;
        if (this.destroyed) return this.afterIo(null);
        cb(fd);
      });
    };
    withFd((fd) => {
      const n = Math.min(FILE_READ_SIZE, this.piece.flushed - this.pos, this.length - this.pos);
      const buf = Buffer.allocUnsafe(n);
      fs.read(fd, buf, 0, n, this.pos, (err, bytesRead) => {
        if (err || this.destroyed) return this.afterIo(err);
        if (bytesRead === 0) return this.afterIo(new Error(`spool ${this.piece.path}: unexpected end of file at ${this.pos}`));
        this.busy = false;
        this.pos += bytesRead;
        this.wanted = this.push(bytesRead === n ? buf : buf.subarray(0, bytesRead));
        this.pump();
      });
    });
  }

  /** End of a file operation that will not push: report the error, finish a deferred destroy. */
  private afterIo(err: Error | null): void {
    this.busy = false;
    if (this.pendingDestroy) {
      const cb = this.pendingDestroy;
      this.pendingDestroy = undefined;
      this.closeFd(cb);
      return;
    }
    if (err) this.destroy(err);
  }

  private closeFd(cb: () => void): void {
    if (this.fd === undefined) return cb();
    const fd = this.fd;
    this.fd = undefined;
    fs.close(fd, () => cb());
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.mem = [];
    this.memBytes = 0;
    // Never close the fd under a pending open/read (the number could be reused meanwhile).
    if (this.busy) this.pendingDestroy = () => cb(err);
    else this.closeFd(() => cb(err));
  }
}
