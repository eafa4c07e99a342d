// Forwarding a PATCH body to the instance that holds the upload's latest bytes (UPLOAD_ACK=disk).
//
// Behind a balancer without affinity, consecutive PATCHes of one upload reach different
// instances. Handing the held bytes over (HeldBytes.takeOver: the holder pushes them to S3 as a
// `.part` and the next instance goes on from there) costs a `.part` read and rewrite and a
// round of Redis polling at every change of instance: about a third of one instance's rate with
// 1 MiB chunks. Instead the instance that received the PATCH streams the body to the holder,
// which appends it to its write buffer as if the client had sent it there. A 204 still means
// "fsynced on the holder's disk and recorded in Redis"; the receiving instance holds the upload's
// lock throughout, as for any PATCH.
//
// The holder listens on a port of its own, not the API's (nothing of this is reachable through
// the public balancer), and advertises its URL with a random token in Redis (upload-buffer-peers).
// A request is `PUT /<upload id>`, `Authorization: Bearer <token>`, `Tusk-Offset` (where the body
// starts), `Tusk-Length` (the most it carries), `Expect: 100-continue`, chunked. The holder checks
// all of it before answering 100, so a refusal (no longer the holder, the offset moved, buffer
// full, shutting down) leaves the body unread and the caller falls back to the hand-over. A body
// ending early (the client went away) is a shorter append: the holder answers what it recorded.
import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { ERRORS } from '@tus/utils';
import { RETRY_AFTER_SECONDS, TuskError } from '../errors.js';
import { isUploadId } from '../upload-id.js';
import type { UploadState } from './s3-upload-state.js';

/** What the holder recorded of a forwarded body, and how the body ended on this side. */
export interface Forwarded {
  received: number;
  bodyError?: unknown;
}

/** Where an instance takes forwarded bodies, as advertised in Redis. */
export interface PeerAddress {
  url: string;
  token: string;
}

export interface PeerListenOptions {
  /** Address to listen on (the API's HOST). */
  host: string;
  /** Port; 0 takes any free one. */
  port: number;
  /** URL other instances reach it by; default from host (a wildcard host: this machine's first external IPv4 address). */
  url?: string;
}

/** What the peer server appends to: the write buffer. */
export interface ForwardTarget {
  /** The state to append to, with `length` bytes of disk reserved; else why the body is refused. */
  acceptForwarded(id: string, offset: number, length: number): Promise<UploadState | string>;
  /** append() releases the reservation, whatever happens. */
  append(state: UploadState, src: Readable, reserved: number): Promise<{ received: number; bodyError?: unknown }>;
}

/** Before the holder answers 100 (connecting, its Redis read): beyond this the caller hands over instead. */
const ACCEPT_TIMEOUT_MS = 5_000;
/** A holder that could not be reached is not tried again for this long (each try could cost ACCEPT_TIMEOUT_MS). */
const UNREACHABLE_RETRY_MS = 30_000;
/** A forwarded body may wait this long without a byte moving (the holder's S3 backpressure included). */
const BODY_IDLE_TIMEOUT_MS = 120_000;
const MAX_NUMBER_DIGITS = 15;

const headerNumber = (v: string | string[] | undefined): number | undefined =>
  typeof v === 'string' && v.length <= MAX_NUMBER_DIGITS && /^\d+$/.test(v) ? Number(v) : undefined;

function defaultUrl(host: string, port: number): string {
  let h = host;
  if (h === '0.0.0.0' || h === '::') {
    const external = Object.values(os.networkInterfaces())
      .flat()
      .find((a) => a && a.family === 'IPv4' && !a.internal);
    h = external?.address ?? '127.0.0.1';
  }
  return `http://${h.includes(':') ? `[${h}]` : h}:${port}`;
}

function tokenMatches(header: string | undefined, token: string): boolean {
  const want = Buffer.from(`Bearer ${token}`);
  const got = Buffer.from(header ?? '');
  return got.length === want.length && crypto.timingSafeEqual(got, want);
}

/** The holder's side: takes forwarded bodies into its write buffer. */
export class PeerServer {
  readonly address: PeerAddress;

  private constructor(
    private readonly server: http.Server,
    url: string,
  ) {
    this.address = { url, token: crypto.randomBytes(24).toString('base64url') };
  }

  static async listen(target: ForwardTarget, opts: PeerListenOptions, log: Logger | undefined): Promise<PeerServer> {
    const server = http.createServer({ requestTimeout: 0, headersTimeout: 10_000, maxHeaderSize: 8 * 1024 });
    server.timeout = BODY_IDLE_TIMEOUT_MS;
    await new Promise<void>((resolve, reject) => {
      const failed = (err: Error) => reject(new Error(`UPLOAD_BUFFER_PEER_PORT: cannot listen on ${opts.host}:${opts.port} (${err.message})`));
      server.once('error', failed);
      server.listen(opts.port, opts.host, () => {
        server.off('error', failed);
        resolve();
      });
    });
    const port = (server.address() as AddressInfo).port;
    const peer = new PeerServer(server, opts.url ?? defaultUrl(opts.host, port));
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
      peer.handle(target, req, res).catch((err: unknown) => {
        log?.error({ err }, 'forwarded write failed');
        if (!res.headersSent) answer(res, 500, { code: 'internal' });
        else res.destroy();
      });
    };
    server.on('checkContinue', handler);
    server.on('request', handler);
    return peer;
  }

  private async handle(target: ForwardTarget, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const id = /^\/([^/?#]+)$/.exec(req.url ?? '')?.[1];
    if (req.method !== 'PUT') return answer(res, 405, { code: 'method_not_allowed' });
    if (!id || !isUploadId(id)) return answer(res, 404, { code: 'not_found' });
    if (!tokenMatches(req.headers.authorization, this.address.token)) return answer(res, 401, { code: 'unauthorized' });
    const offset = headerNumber(req.headers['tusk-offset']);
    const length = headerNumber(req.headers['tusk-length']);
    if (offset === undefined || length === undefined || length === 0) return answer(res, 400, { code: 'invalid_request' });
    // Without 100-continue a refusal would come after the caller sent the body it can no longer re-route.
    if (req.headers.expect?.toLowerCase() !== '100-continue') return answer(res, 400, { code: 'invalid_request' });
    const accepted = await target.acceptForwarded(id, offset, length);
    if (typeof accepted === 'string') return answer(res, 409, { code: accepted });
    res.writeContinue();
    let result: { received: number; bodyError?: unknown };
    try {
      result = await target.append(accepted, req, length);
    } catch (err) {
      // The upload deleted meanwhile (the store's tus not-found), a state conflict, else a failure.
      if ((err as { status_code?: number }).status_code === 404) return answer(res, 404, { code: 'not_found' });
      if (err instanceof TuskError) return answer(res, err.status, { code: err.code });
      throw err;
    }
    answer(res, 200, { received: result.received });
  }

  /** Stops at once: a body still arriving is cut (its sender answers 503; what was recorded stays). */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }
}

function answer(res: http.ServerResponse, status: number, body: object): void {
  // A refused request's body was never sent: the connection cannot carry another request.
  res.writeHead(status, { 'content-type': 'application/json', ...(status !== 200 ? { connection: 'close' } : {}) });
  res.end(JSON.stringify(body));
}

function lostHolder(): TuskError {
  return new TuskError('unavailable', 'The tusk instance holding the latest bytes of this upload stopped answering; ask for the offset and resume', {}, { 'Retry-After': String(RETRY_AFTER_SECONDS) });
}

/** The receiving side: streams PATCH bodies to holders. */
export class PeerClient {
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  /** Peer URL -> when to try it again. */
  private readonly unreachable = new Map<string, number>();

  constructor(private readonly log: Logger | undefined) {}

  /**
   * Sends `src` (at most `length` bytes, starting at `offset`) to the holder at `peer`. Resolves
   * to what it recorded, or to why nothing was sent (`src` untouched: hand over instead): it
   * refused, or could not be reached. Rejects (503) when the holder failed mid-body: the offset in
   * Redis says what it kept.
   */
  forward(peer: PeerAddress, id: string, offset: number, length: number, src: Readable): Promise<Forwarded | 'refused' | 'unreachable'> {
    if ((this.unreachable.get(peer.url) ?? 0) > Date.now()) return Promise.resolve('unreachable');
    this.unreachable.delete(peer.url);
    return new Promise((resolve, reject) => {
      let sending = false;
      let bodyError: unknown;
      let settled = false;
      const settle = (fn: () => void) => {
        if (settled) return;
        settled = true;
        fn();
      };
      const req = http.request(new URL(`/${id}`, peer.url), {
        method: 'PUT',
        agent: this.agent,
        headers: {
          authorization: `Bearer ${peer.token}`,
          'tusk-offset': String(offset),
          'tusk-length': String(length),
          expect: '100-continue',
          'transfer-encoding': 'chunked',
        },
      });
      req.setTimeout(ACCEPT_TIMEOUT_MS, () => req.destroy(new Error('timed out')));
      const onSrcError = (err: unknown) => {
        // The client went away: what arrived is a shorter body; the holder answers what it kept.
        bodyError = err;
        src.unpipe(req);
        req.end();
      };
      req.on('continue', () => {
        sending = true;
        req.setTimeout(BODY_IDLE_TIMEOUT_MS);
        src.on('error', onSrcError);
        src.pipe(req);
      });
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size <= 4096) chunks.push(c);
        });
        res.on('error', () => settle(() => (sending ? reject(lostHolder()) : resolve('unreachable'))));
        res.on('end', () => {
          src.off('error', onSrcError);
          if (!sending) {
            req.destroy();
            return settle(() => resolve('refused'));
          }
          src.unpipe(req);
          let received: unknown;
          try {
            received = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { received?: unknown }).received;
          } catch {
            received = undefined;
          }
          if (res.statusCode === 200 && typeof received === 'number' && Number.isSafeInteger(received) && received >= 0 && received <= length) {
            settle(() => resolve({ received, bodyError }));
          } else {
            req.destroy();
            settle(() => reject(res.statusCode === 404 ? (ERRORS.FILE_NOT_FOUND as unknown as Error) : lostHolder()));
          }
        });
      });
      req.on('error', (err) => {
        src.off('error', onSrcError);
        if (sending) src.unpipe(req);
        else if (!settled && !req.reusedSocket) {
          // No connection at all (a reused idle one may just have been closed by the peer).
          this.unreachable.set(peer.url, Date.now() + UNREACHABLE_RETRY_MS);
          this.log?.warn({ err: err.message, peer: peer.url }, 'cannot reach the instance holding an upload\'s bytes: its PATCHes are handed over instead (UPLOAD_BUFFER_PEER_URL must be reachable from every instance)');
        }
        settle(() => (sending ? reject(lostHolder()) : resolve('unreachable')));
      });
      req.flushHeaders();
    });
  }

  close(): void {
    this.agent.destroy();
  }
}
