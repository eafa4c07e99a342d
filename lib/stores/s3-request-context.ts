// Per-request facts the S3 store needs but @tus/server does not pass to DataStore.write():
// the request's Content-Length (to cut the body into parts up front and stream each one straight
// into UploadPart). Wrap the tus handler call in runWithUploadRequest():
//
//   runWithUploadRequest(req, () => tus.handleWeb(new NodeRequest({ req, res })))
//
// Without it the store still streams when it can infer the length (non-deferred uploads: the
// StreamLimiter that @tus/server puts in front of write() is sized by Content-Length), and
// otherwise falls back to spooling each part to disk before uploading it.
import { AsyncLocalStorage } from 'node:async_hooks';
import type { UploadState } from './s3-upload-state.js';

export interface UploadRequestInfo {
  /** Body length from Content-Length; undefined for chunked transfer (length unknown). */
  contentLength: number | undefined;
  /**
   * The upload state the store's getUpload() last loaded in this request. @tus/server's PATCH
   * handler takes the upload's lock, loads the upload and then writes: write() goes on from this
   * state instead of loading it again (TuskS3Store.takeLoaded).
   */
  loaded?: UploadState;
}

const storage = new AsyncLocalStorage<UploadRequestInfo>();

type HeaderSource =
  | { headers: Record<string, string | string[] | undefined> } // node IncomingMessage
  | { headers: { get(name: string): string | null } }; // fetch Request

export function contentLengthOf(req: HeaderSource): number | undefined {
  const h = req.headers as { get?: unknown } & Record<string, unknown>;
  const raw = typeof h.get === 'function' ? (h as { get(n: string): string | null }).get('content-length') : h['content-length'];
  if (typeof raw !== 'string' || !/^\d+$/.test(raw.trim())) return undefined;
  const n = Number(raw.trim());
  return Number.isSafeInteger(n) ? n : undefined;
}

/** Runs fn (the tus handler) with the request's Content-Length visible to TuskS3Store.write(). */
export function runWithUploadRequest<T>(req: HeaderSource, fn: () => T): T {
  return storage.run({ contentLength: contentLengthOf(req) }, fn);
}

/** The current request's info, or undefined outside runWithUploadRequest(). */
export function currentUploadRequest(): UploadRequestInfo | undefined {
  return storage.getStore();
}
