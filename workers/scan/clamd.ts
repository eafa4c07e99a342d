// The clamd client: streams an object to clamd with the INSTREAM command and returns its verdict
// (the virus-scan job, workers/jobs/virus-scan.ts, decides what the verdict means for the upload).
//
// The clamd protocol is spoken directly over the socket instead of through npm `clamscan`'s
// scanStream: that one forwards every chunk with socket.write() and ignores the return value
// (no backpressure), so a fast source (S3, local disk) is buffered in memory in full while clamd
// scans at its own pace - RSS grows with the file size (measured in the notes: a 120 MB stream
// pushed RSS to ~150 MB). Here each chunk waits for the socket to drain, so memory stays at a few
// socket buffers whatever the size. The protocol:
//   -> "zINSTREAM\0", then chunks "<uint32 big-endian length><bytes>", then a zero-length chunk
//   <- "stream: OK\0" | "stream: <Signature> FOUND\0" | "<message> ERROR\0"
//
// Fail-closed rules: anything but a well-formed OK/FOUND answer is ScannerUnavailableError (never
// "clean"), including a 0-byte object (nothing was scanned); its subclass ScannerUnreachableError
// when no connection could be made at all (no scanner, as opposed to a scanner failing on this
// file). Objects larger than maxStreamBytes are refused before a byte is sent (ScanTooLargeError);
// the pipeline rejects them as unscannable.
import net from 'node:net';
import type { Readable } from 'node:stream';

export interface ScanOptions {
  /** clamd unix socket (LocalSocket); preferred over host/port when both are given. */
  socket?: string;
  /** clamd TCP address (TCPAddr / TCPSocket); host defaults to 127.0.0.1 when only port is set. */
  host?: string;
  port?: number;
  /** Whole scan (connect + stream + verdict); past it the scan fails with ScannerUnavailableError. */
  timeoutMs: number;
  /**
   * Largest object we send to clamd (keep it <= clamd's StreamMaxLength). Larger objects are not
   * streamed at all: scanStream throws ScanTooLargeError up front, and the pipeline rejects them as
   * unscannable (documented, configurable limit).
   */
  maxStreamBytes: number;
}

export type ScanResult = { verdict: 'clean' } | { verdict: 'infected'; signature: string };

/** clamd timed out or answered nothing usable (or could not be reached: ScannerUnreachableError). Never means "clean". */
export class ScannerUnavailableError extends Error {
  override readonly name: string = 'ScannerUnavailableError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/**
 * No connection to clamd at all (nothing listens, no such socket, connect timed out): there is no
 * scanner right now, which says nothing about the file. The virus-scan job waits for one.
 */
export class ScannerUnreachableError extends ScannerUnavailableError {
  override readonly name = 'ScannerUnreachableError';
}

/** The object is larger than the configured stream limit: rejected as unscannable (not retried). */
export class ScanTooLargeError extends Error {
  override readonly name = 'ScanTooLargeError';
  constructor(
    readonly size: number,
    readonly limit: number,
    detail = '',
  ) {
    super(`file of ${size} bytes exceeds the virus-scan stream limit of ${limit} bytes${detail ? ` (${detail})` : ''}`);
  }
}

/** Largest INSTREAM chunk we send (clamd accepts bigger, but small frames keep memory flat). */
const MAX_FRAME = 64 * 1024;
/** clamd replies are one short line; anything longer is not clamd. */
const MAX_REPLY = 4096;

type ConnectOptions = Pick<ScanOptions, 'socket' | 'host' | 'port'>;

function connectTarget(opts: ConnectOptions): net.NetConnectOpts {
  if (opts.socket) return { path: opts.socket };
  if (opts.port) return { host: opts.host ?? '127.0.0.1', port: opts.port };
  throw new ScannerUnavailableError('virus scan: no clamd socket or port configured');
}

function describe(opts: ConnectOptions): string {
  return opts.socket ? `clamd at ${opts.socket}` : `clamd at ${opts.host ?? '127.0.0.1'}:${opts.port}`;
}

/** Parses one clamd INSTREAM reply. */
export function parseClamdReply(reply: string): ScanResult | { error: string } {
  const text = reply.replace(/\0+$/, '').trim();
  if (text === 'stream: OK') return { verdict: 'clean' };
  const found = /^stream: (.+) FOUND$/.exec(text);
  if (found?.[1]) return { verdict: 'infected', signature: found[1] };
  return { error: text || '(empty reply)' };
}

/**
 * Scans `stream` (exactly `size` bytes expected) with clamd. Resolves with the verdict; rejects with
 * ScanTooLargeError (size > maxStreamBytes, decided before streaming), ScannerUnavailableError
 * (clamd unreachable, timeout, error or no usable answer, empty stream) or the source stream's own
 * error. The source stream is consumed and destroyed in every case.
 */
export function scanStream(stream: Readable, size: number, opts: ScanOptions): Promise<ScanResult> {
  if (size > opts.maxStreamBytes) {
    stream.destroy();
    return Promise.reject(new ScanTooLargeError(size, opts.maxStreamBytes));
  }
  if (size <= 0) {
    stream.destroy();
    return Promise.reject(new ScannerUnavailableError('virus scan: empty object, nothing to scan (not treated as clean)'));
  }
  let target: net.NetConnectOpts;
  try {
    target = connectTarget(opts);
  } catch (err) {
    stream.destroy();
    return Promise.reject(err as Error);
  }

  return new Promise<ScanResult>((resolve, reject) => {
    const where = describe(opts);
    const socket = net.createConnection(target);
    let settled = false;
    let connected = false;
    let sent = 0;
    let inputDone = false;
    let reply = '';

    const finish = (err: Error | undefined, result?: ScanResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onStreamError);
      stream.destroy();
      socket.destroy();
      if (err) reject(err);
      else resolve(result!);
    };

    const timer = setTimeout(
      () =>
        finish(
          connected
            ? new ScannerUnavailableError(`virus scan: no verdict from ${where} within ${opts.timeoutMs} ms (${sent} of ${size} bytes sent)`)
            : new ScannerUnreachableError(`virus scan: could not connect to ${where} within ${opts.timeoutMs} ms`),
        ),
      opts.timeoutMs,
    );

    const conclude = () => {
      const parsed = parseClamdReply(reply);
      if ('verdict' in parsed) {
        if (!inputDone) {
          // clamd answered before we finished: only a FOUND is trustworthy then.
          if (parsed.verdict === 'infected') return finish(undefined, parsed);
          return finish(new ScannerUnavailableError(`virus scan: ${where} answered before the whole object was sent`));
        }
        return finish(undefined, parsed);
      }
      if (/size limit exceeded/i.test(parsed.error)) {
        return finish(new ScanTooLargeError(size, opts.maxStreamBytes, `clamd refused it after ${sent} bytes: "${parsed.error}"; lower maxStreamBytes to clamd's StreamMaxLength`));
      }
      finish(new ScannerUnavailableError(`virus scan: unusable answer from ${where}: "${parsed.error}"`));
    };

    socket.setEncoding('utf8');
    socket.on('data', (text: string) => {
      reply += text;
      if (reply.length > MAX_REPLY) return finish(new ScannerUnavailableError(`virus scan: oversized answer from ${where}`));
      if (reply.includes('\0')) conclude();
    });
    socket.on('end', () => conclude()); // closed after a reply without terminator, or without any
    socket.on('error', (err) => {
      if (reply) return conclude(); // e.g. EPIPE after clamd answered "size limit exceeded" and closed
      if (!connected) return finish(new ScannerUnreachableError(`${where} unreachable: ${err.message}`, { cause: err }));
      finish(new ScannerUnavailableError(`virus scan: ${where} failed: ${err.message}`, { cause: err }));
    });
    socket.on('close', () => {
      if (!settled) conclude();
    });

    const writeFrame = (chunk: Buffer): boolean => {
      const header = Buffer.allocUnsafe(4);
      header.writeUInt32BE(chunk.length, 0);
      socket.write(header);
      return socket.write(chunk);
    };

    const onData = (data: Buffer | string) => {
      const chunk = typeof data === 'string' ? Buffer.from(data) : data;
      sent += chunk.length;
      if (sent > opts.maxStreamBytes) {
        return finish(new ScanTooLargeError(sent, opts.maxStreamBytes, `stream longer than the declared ${size} bytes`));
      }
      let ok = true;
      for (let offset = 0; offset < chunk.length; offset += MAX_FRAME) ok = writeFrame(chunk.subarray(offset, offset + MAX_FRAME)) && ok;
      if (!ok) {
        // Backpressure: stop reading the source until the socket has flushed.
        stream.pause();
        socket.once('drain', () => {
          if (!settled) stream.resume();
        });
      }
    };
    const onEnd = () => {
      inputDone = true;
      if (sent === 0) return finish(new ScannerUnavailableError('virus scan: empty stream, nothing scanned (not treated as clean)'));
      socket.write(Buffer.alloc(4)); // zero-length chunk: end of stream, clamd answers now
    };
    const onStreamError = (err: Error) => finish(err);

    socket.once('connect', () => {
      connected = true;
      socket.write('zINSTREAM\0');
      stream.on('data', onData);
      stream.once('end', onEnd);
      stream.resume();
    });
    stream.once('error', onStreamError);
  });
}

/** PING over the same connection settings: resolves when clamd answers PONG (health checks, start-up). */
export function pingClamd(opts: ConnectOptions & { timeoutMs: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    const where = describe(opts);
    let target: net.NetConnectOpts;
    try {
      target = connectTarget(opts);
    } catch (err) {
      return reject(err as Error);
    }
    const socket = net.createConnection(target);
    let reply = '';
    const done = (err?: Error) => {
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve();
    };
    const timer = setTimeout(() => done(new ScannerUnavailableError(`${where}: no PONG within ${opts.timeoutMs} ms`)), opts.timeoutMs);
    socket.setEncoding('utf8');
    socket.once('connect', () => socket.write('zPING\0'));
    socket.on('data', (text: string) => {
      reply += text;
      if (reply.includes('\0')) done(reply.startsWith('PONG') ? undefined : new ScannerUnavailableError(`${where}: unexpected PING answer "${reply.replace(/\0/g, '')}"`));
    });
    socket.on('error', (err) => done(new ScannerUnreachableError(`${where} unreachable: ${err.message}`, { cause: err })));
    socket.on('end', () => done(new ScannerUnavailableError(`${where} closed the connection without PONG`)));
  });
}
