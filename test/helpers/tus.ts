// Small tus client helpers for the black-box tests (tus-protocol, tus-resilience): raw tus
// requests over fetch, requests that send part of a body and stall (node:http), uploads with
// tus-js-client (optionally aborted at a fraction), the stored bytes of an upload in either store,
// and the jobs a tusk server put into the `process-upload` BullMQ queue.
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { DeleteObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { Queue, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import * as tus from 'tus-js-client';
import { s3ClientForTests, sha256OfFile, sha256OfObject } from './services.js';

export const TUS = { 'Tus-Resumable': '1.0.0' } as const;
export const OCTET = 'application/offset+octet-stream';
/** The queue name of the upload → processing contract (lib/queues.ts), spelled out on purpose. */
export const PROCESS_UPLOAD_QUEUE_NAME = 'process-upload';

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export function sha256(data: Buffer | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Builds an Upload-Metadata header value from decoded pairs (null = key without value). */
export function encodeMetadata(meta: Record<string, string | null>): string {
  return Object.entries(meta)
    .map(([k, v]) => (v === null ? k : `${k} ${Buffer.from(v, 'utf8').toString('base64')}`))
    .join(',');
}

/** Parses an Upload-Metadata header value into decoded pairs. */
export function decodeMetadata(header: string | null): Record<string, string | null> {
  const out: Record<string, string | null> = {};
  if (!header) return out;
  for (const pair of header.split(',')) {
    const [k, v] = pair.trim().split(' ');
    if (!k) continue;
    out[k] = v === undefined ? null : Buffer.from(v, 'base64').toString('utf8');
  }
  return out;
}

export interface TusResponse {
  status: number;
  headers: Headers;
  body: string;
}

/** A Buffer as a fetch body (typed as the Uint8Array it is). */
export function bodyOf(data: Buffer): Uint8Array<ArrayBuffer> {
  return data as Uint8Array<ArrayBuffer>;
}

async function send(url: string, init: RequestInit & { timeoutMs?: number }): Promise<TusResponse> {
  const { timeoutMs = 30_000, ...rest } = init;
  const res = await fetch(url, { ...rest, signal: AbortSignal.timeout(timeoutMs) });
  const body = await res.text();
  return { status: res.status, headers: res.headers, body };
}

export interface CreateOptions {
  length?: number;
  /** Sends Upload-Defer-Length: 1 (and no Upload-Length unless `length` is also given). */
  defer?: boolean;
  metadata?: Record<string, string | null> | string;
  /** creation-with-upload: this body is sent with Content-Type application/offset+octet-stream. */
  body?: Buffer;
  headers?: Record<string, string>;
  timeoutMs?: number;
}

export interface Created extends TusResponse {
  /** Absolute upload URL (empty if the POST failed). */
  url: string;
  /** Upload id: the last path segment of the URL. */
  id: string;
}

/** POST <base>/files/ */
export async function createUpload(base: string, options: CreateOptions = {}): Promise<Created> {
  const headers: Record<string, string> = { ...TUS };
  if (options.length !== undefined) headers['Upload-Length'] = String(options.length);
  if (options.defer) headers['Upload-Defer-Length'] = '1';
  if (options.metadata !== undefined) {
    headers['Upload-Metadata'] = typeof options.metadata === 'string' ? options.metadata : encodeMetadata(options.metadata);
  }
  if (options.body) headers['Content-Type'] = OCTET;
  Object.assign(headers, options.headers ?? {});
  const res = await send(`${base}/files/`, { method: 'POST', headers, body: options.body ? bodyOf(options.body) : undefined, timeoutMs: options.timeoutMs });
  const location = res.headers.get('location');
  const url = location ? new URL(location, base).toString() : '';
  return { ...res, url, id: url ? uploadIdOf(url) : '' };
}

export function uploadIdOf(url: string): string {
  return decodeURIComponent(new URL(url).pathname.split('/').filter(Boolean).pop() ?? '');
}

export interface HeadResult extends TusResponse {
  offset: number | undefined;
  length: number | undefined;
}

export async function headUpload(url: string, headers: Record<string, string> = { ...TUS }, timeoutMs = 30_000): Promise<HeadResult> {
  const res = await send(url, { method: 'HEAD', headers, timeoutMs });
  const num = (name: string) => {
    const v = res.headers.get(name);
    return v === null ? undefined : Number(v);
  };
  return { ...res, offset: num('upload-offset'), length: num('upload-length') };
}

/** HEAD that must answer 200; returns Upload-Offset. */
export async function offsetOf(url: string): Promise<number> {
  const head = await headUpload(url);
  if (head.status !== 200 || head.offset === undefined) {
    throw new Error(`HEAD ${url}: expected 200 with Upload-Offset, got ${head.status} ${head.body}`);
  }
  return head.offset;
}

/** PATCH with a complete body (fetch; Content-Length set). `headers` replace the defaults. */
export async function patchUpload(
  url: string,
  offset: number | string | undefined,
  body: Buffer,
  headers: Record<string, string | undefined> = {},
  timeoutMs = 60_000,
): Promise<TusResponse> {
  const all: Record<string, string | undefined> = { ...TUS, 'Content-Type': OCTET, ...headers };
  if (offset !== undefined && !('Upload-Offset' in headers)) all['Upload-Offset'] = String(offset);
  const clean = Object.fromEntries(Object.entries(all).filter(([, v]) => v !== undefined)) as Record<string, string>;
  return send(url, { method: 'PATCH', headers: clean, body: bodyOf(body), timeoutMs });
}

export async function deleteUpload(url: string): Promise<TusResponse> {
  return send(url, { method: 'DELETE', headers: { ...TUS } });
}

/** PATCHes `data[from..]` in pieces of `chunk` bytes until the upload is complete. */
export async function patchRest(url: string, data: Buffer, from: number, chunk = 4 * 1024 * 1024): Promise<number> {
  let offset = from;
  while (offset < data.length) {
    const piece = data.subarray(offset, Math.min(data.length, offset + chunk));
    const res = await patchUpload(url, offset, piece);
    if (res.status !== 204) throw new Error(`PATCH ${url} at ${offset}: expected 204, got ${res.status} ${res.body}`);
    offset = Number(res.headers.get('upload-offset'));
  }
  return offset;
}

export interface RawResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/**
 * One request over node:http with the path sent exactly as given (fetch would normalise dot
 * segments and encodings away) and any Host header. Never rejects on an HTTP status; rejects on a
 * network error or after `timeoutMs`.
 */
export function rawRequest(
  base: string,
  options: { method: string; path: string; headers?: Record<string, string>; body?: Buffer; timeoutMs?: number },
): Promise<RawResult> {
  const target = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: target.hostname,
      port: Number(target.port),
      path: options.path,
      method: options.method,
      agent: false,
      headers: { ...(options.body ? { 'Content-Length': String(options.body.length) } : {}), ...options.headers },
      timeout: options.timeoutMs ?? 15_000,
    });
    req.on('timeout', () => req.destroy(new Error(`${options.method} ${options.path}: no answer in time`)));
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('latin1') }));
      res.on('error', reject);
    });
    req.end(options.body);
  });
}

/**
 * A PATCH over node:http whose body we control: it declares `contentLength`, and the caller
 * writes bytes, stalls, ends or cuts it. `result` settles with the response, or with the error
 * if the connection is closed first (never rejects).
 */
export interface ControlledPatch {
  req: http.ClientRequest;
  /** Writes bytes and resolves once they are handed to the kernel (rejects after 20 s without). */
  write(chunk: Buffer): Promise<void>;
  /** Bytes written so far. */
  written(): number;
  end(): void;
  destroy(): void;
  /** Settles when the response has arrived (or the request failed). */
  result: Promise<RawResult | Error>;
  /** True once the socket is closed (by either side). */
  closed(): boolean;
}

/** `contentLength` null: no Content-Length, the body is sent with Transfer-Encoding: chunked. */
export function controlledPatch(url: string, offset: number, contentLength: number | null, headers: Record<string, string> = {}): ControlledPatch {
  const target = new URL(url);
  const length: Record<string, string> = contentLength === null ? {} : { 'Content-Length': String(contentLength) };
  const req = http.request({
    host: target.hostname,
    port: Number(target.port),
    path: target.pathname,
    method: 'PATCH',
    agent: false,
    headers: { ...TUS, 'Content-Type': OCTET, 'Upload-Offset': String(offset), ...length, ...headers },
  });
  let written = 0;
  let closed = false;
  req.on('close', () => (closed = true));
  const result = new Promise<RawResult | Error>((resolve) => {
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      const done = () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') });
      res.on('end', done);
      res.on('aborted', done);
      res.on('error', done);
    });
    // Re-made in the test's realm: node's own errors fail `instanceof Error` inside jest.
    req.on('error', (err: NodeJS.ErrnoException) => resolve(Object.assign(new Error(err.message), { code: err.code })));
  });
  req.flushHeaders();
  return {
    req,
    write: (chunk) =>
      new Promise<void>((resolve, reject) => {
        if (closed || req.destroyed) {
          reject(new Error('request already closed'));
          return;
        }
        // The callback waits for the kernel to take the bytes: if the server stops reading
        // (and keeps the connection open), say so instead of hanging until the test times out.
        const timer = setTimeout(
          () => reject(new Error(`PATCH ${url}: the server has not read the body for 20 s (${written} bytes written)`)),
          20_000,
        );
        req.write(chunk, (err) => {
          clearTimeout(timer);
          if (err) reject(err);
          else resolve();
        });
        written += chunk.length;
      }),
    written: () => written,
    end: () => req.end(),
    destroy: () => req.destroy(),
    result,
    closed: () => closed,
  };
}

/** Resolves with whatever `promise` gives, or with 'timeout' after `ms`. */
export async function within<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `condition` every 100 ms until it holds; throws with `what` after `timeoutMs`. */
export async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

export interface TusJsOptions {
  /** <tusk url>/files/ for a new upload. */
  endpoint?: string;
  /** Resume this upload instead of creating one. */
  uploadUrl?: string;
  data: Buffer;
  chunkSize?: number;
  metadata?: Record<string, string>;
  /** Calls abort() from onProgress once this fraction of the bytes has been sent. */
  abortAt?: number;
  retryDelays?: number[];
  timeoutMs?: number;
  /** tus 1.0 (default) or the IETF draft (interop 5: 'ietf-draft-03', interop 6: 'ietf-draft-05'). */
  protocol?: 'tus-v1' | 'ietf-draft-03' | 'ietf-draft-05';
  headers?: Record<string, string>;
}

export interface TusJsResult {
  url: string;
  aborted: boolean;
  /** bytesSent reported by onProgress when abort() was called. */
  sentAtAbort?: number;
}

/** Uploads with tus-js-client (Node build). Resolves on success or after abort(); rejects on error. */
export function tusJsUpload(options: TusJsOptions): Promise<TusJsResult> {
  const { data, abortAt, timeoutMs = 90_000 } = options;
  return new Promise<TusJsResult>((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      void upload.abort(false).catch(() => undefined);
      reject(new Error(`tus-js-client upload did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fn();
    };
    const upload: tus.Upload = new tus.Upload(data, {
      endpoint: options.endpoint,
      uploadUrl: options.uploadUrl,
      chunkSize: options.chunkSize ?? Infinity,
      metadata: options.metadata ?? {},
      uploadSize: data.length,
      retryDelays: options.retryDelays ?? [200, 500, 1000],
      storeFingerprintForResuming: false,
      ...(options.protocol ? { protocol: options.protocol } : {}),
      ...(options.headers ? { headers: options.headers } : {}),
      removeFingerprintOnSuccess: false,
      onProgress: (sent) => {
        if (abortAt !== undefined && !settled && sent >= abortAt * data.length) {
          const url = upload.url ?? '';
          finish(() => {
            void upload.abort(false).then(
              () => resolve({ url, aborted: true, sentAtAbort: sent }),
              () => resolve({ url, aborted: true, sentAtAbort: sent }),
            );
          });
        }
      },
      onSuccess: () => finish(() => resolve({ url: upload.url ?? '', aborted: false })),
      onError: (err) => finish(() => reject(err)),
    });
    upload.start();
  });
}

// ---- stored bytes -------------------------------------------------------------------------------

export type StoreKind = 's3' | 'file';

/** Where a tusk process stores: a bucket (S3) or DATA_DIR (file store). */
export interface StoreTarget {
  kind: StoreKind;
  bucket?: string;
  dataDir?: string;
}

/** sha256 of the stored upload: S3 object <id> in the bucket, or DATA_DIR/uploads/<id>. */
export async function storedSha256(target: StoreTarget, id: string): Promise<string> {
  if (target.kind === 's3') return sha256OfObject(target.bucket as string, id);
  return sha256OfFile(path.join(target.dataDir as string, 'uploads', id));
}

/** Size of the stored file (file store) — undefined if absent. */
export async function storedFileSize(dataDir: string, id: string): Promise<number | undefined> {
  try {
    return (await stat(path.join(dataDir, 'uploads', id))).size;
  } catch {
    return undefined;
  }
}

/** Keys in the bucket starting with `prefix`, plus open multipart uploads for them. */
export async function s3Leftovers(bucket: string, prefix: string): Promise<{ keys: string[]; multipart: string[] }> {
  const client = s3ClientForTests();
  try {
    const objects = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
    const uploads = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix }));
    return {
      keys: (objects.Contents ?? []).map((o) => o.Key ?? ''),
      multipart: (uploads.Uploads ?? []).map((u) => `${u.Key ?? ''}#${u.UploadId ?? ''}`),
    };
  } finally {
    client.destroy();
  }
}

/** Deletes all objects of a test bucket (best effort; for afterAll). */
export async function emptyBucket(bucket: string): Promise<void> {
  const client = s3ClientForTests();
  try {
    const objects = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
    for (const o of objects.Contents ?? []) await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: o.Key }));
  } catch {
    // best effort
  } finally {
    client.destroy();
  }
}

export async function readStoredFile(dataDir: string, id: string): Promise<Buffer> {
  return readFile(path.join(dataDir, 'uploads', id));
}

// ---- BullMQ -------------------------------------------------------------------------------------

/** All jobs, in any state, of the `process-upload` queue of a tusk using REDIS_PREFIX `prefix`. */
export async function processUploadJobs(redisUrl: string, prefix: string): Promise<Job[]> {
  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue(PROCESS_UPLOAD_QUEUE_NAME, { connection, prefix: `${prefix}bull` });
  try {
    return await queue.getJobs(['waiting', 'active', 'completed', 'failed', 'delayed', 'prioritized', 'paused', 'waiting-children']);
  } finally {
    await queue.close();
    connection.disconnect();
  }
}
