// GET /files/<id>: serves a FINISHED upload, streamed (constant memory), with Range requests,
// ETag / Last-Modified / conditional requests, and a Content-Type / Content-Disposition a
// crafted filename or filetype cannot abuse. An unfinished upload is never served as if whole.
import fs from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { GetObjectCommand, HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { DataStore, Upload } from '@tus/utils';
import { isNotFoundError, TuskError } from '../../lib/errors.js';
import { errorHeaders } from '../http/errors.js';
import type { Logger } from '../../lib/logger.js';

export type DownloadStorage = { kind: 's3'; client: S3Client; bucket: string } | { kind: 'file' };

/** Why an upload's bytes may not be served (yet), or undefined when they may (see servingRefusal). */
export type ContentGate = (id: string) => Promise<TuskError | undefined>;

/** Types a browser may render inline from our origin; everything else is an attachment. */
const INLINE_SAFE = /^(image\/(png|jpeg|gif|webp|avif|heic|heif)|video\/[\w.+-]+|audio\/[\w.+-]+|application\/pdf|text\/plain)$/;
const MIME = /^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$/;

/** The declared type (tus metadata `filetype` or `contentType`) if it is a well-formed MIME type. */
export function contentTypeOf(metadata: Record<string, string | null> | undefined): string {
  const declared = (metadata?.filetype ?? metadata?.contentType ?? '').trim().toLowerCase().split(';')[0] ?? '';
  return MIME.test(declared) ? declared : 'application/octet-stream';
}

/**
 * Content-Disposition for a client-supplied filename (RFC 6266): the base name only, control
 * characters, quotes, backslashes and path separators removed; an ASCII fallback plus the
 * UTF-8 name percent-encoded in filename*.
 */
export function contentDisposition(filename: string | null | undefined, inline: boolean): string {
  const type = inline ? 'inline' : 'attachment';
  const base = (filename ?? '').split(/[/\\]/).pop() ?? '';
  // eslint-disable-next-line no-control-regex
  const clean = base.replace(/[\u0000-\u001f\u007f"]/g, '').replace(/^\.+/, '').trim().slice(0, 255);
  if (!clean) return type;
  const ascii = clean.normalize('NFKD').replace(/[^\x20-\x7e]/g, '_').replace(/[%;]/g, '_');
  const encoded = encodeURIComponent(clean).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return `${type}; filename="${ascii}"; filename*=UTF-8''${encoded}`;
}

export type ByteRange = { start: number; end: number };

/**
 * Parses a Range header against a size. Returns undefined to serve the whole body (no header,
 * not bytes, or several ranges), or 'unsatisfiable' for 416.
 */
export function parseRange(header: string | undefined, size: number): ByteRange | 'unsatisfiable' | undefined {
  if (!header) return undefined;
  const match = /^bytes=\s*(\d*)\s*-\s*(\d*)\s*$/.exec(header.trim());
  if (!match) return header.trim().startsWith('bytes=') && !header.includes(',') ? 'unsatisfiable' : undefined;
  const [, first, last] = match;
  if (first === '' && last === '') return 'unsatisfiable';
  let start: number;
  let end: number;
  if (first === '') {
    const suffix = Number(last);
    if (suffix === 0) return 'unsatisfiable';
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(first);
    end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
    if (last !== '' && Number(last) < start) return 'unsatisfiable';
  }
  if (start >= size || size === 0) return 'unsatisfiable';
  return { start, end };
}

interface ObjectInfo {
  etag: string;
  lastModified: Date;
  open(range?: ByteRange): Promise<Readable>;
}

async function objectInfo(storage: DownloadStorage, upload: Upload): Promise<ObjectInfo> {
  const location = upload.storage?.path ?? upload.id;
  if (storage.kind === 's3') {
    const head = await storage.client.send(new HeadObjectCommand({ Bucket: storage.bucket, Key: location }));
    // RGW returns an empty ETag for completed multipart uploads; fall back to size + time.
    const etag = head.ETag && head.ETag !== '""' ? head.ETag : `"${upload.size}-${head.LastModified?.getTime() ?? 0}"`;
    return {
      etag,
      lastModified: head.LastModified ?? new Date(0),
      open: async (range) => {
        const res = await storage.client.send(
          new GetObjectCommand({
            Bucket: storage.bucket,
            Key: location,
            Range: range ? `bytes=${range.start}-${range.end}` : undefined,
            IfMatch: head.ETag && head.ETag !== '""' ? head.ETag : undefined,
          }),
        );
        return res.Body as Readable;
      },
    };
  }
  const stat = await fs.promises.stat(location);
  return {
    etag: `W/"${stat.size.toString(16)}-${Math.floor(stat.mtimeMs).toString(16)}"`,
    lastModified: stat.mtime,
    open: async (range) => fs.createReadStream(location, range ? { start: range.start, end: range.end } : {}),
  };
}

function fresh(req: IncomingMessage, etag: string, lastModified: Date): boolean {
  const ifNoneMatch = req.headers['if-none-match'];
  if (ifNoneMatch) return ifNoneMatch.split(',').some((t) => t.trim() === etag || t.trim() === `W/${etag}` || t.trim() === '*');
  const since = req.headers['if-modified-since'];
  return !!since && !Number.isNaN(Date.parse(since)) && Math.floor(lastModified.getTime() / 1000) <= Math.floor(Date.parse(since) / 1000);
}

/** An error answer of the download: the catalogue entry as a short text, with its code header. */
function refuse(res: ServerResponse, err: TuskError, headers: Record<string, string>): void {
  sendText(res, err.status, `${err.message}\n`, { ...headers, ...errorHeaders(err) });
}

function sendText(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store', ...headers });
  res.end(body);
}

export function createDownloadHandler(deps: { datastore: DataStore; storage: DownloadStorage; gate: ContentGate; logger: Logger }) {
  const { datastore, storage, gate, logger } = deps;
  return async function download(req: IncomingMessage, res: ServerResponse, id: string, extraHeaders: Record<string, string> = {}): Promise<void> {
    // Not before a clean scan verdict (when scanning is required), never once rejected (its bytes
    // may be quarantined already: say why rather than "not found").
    const refusal = await gate(id);
    if (refusal?.code === 'rejected') {
      refuse(res, refusal, extraHeaders);
      return;
    }
    let upload: Upload;
    try {
      upload = await datastore.getUpload(id);
    } catch {
      refuse(res, new TuskError('not_found', 'Upload not found'), extraHeaders);
      return;
    }
    if (upload.size === undefined || upload.offset !== upload.size) {
      refuse(res, new TuskError('not_found', 'Upload not finished: nothing to download yet'), extraHeaders);
      return;
    }
    if (refusal) {
      refuse(res, refusal, extraHeaders);
      return;
    }
    let info: ObjectInfo;
    try {
      info = await objectInfo(storage, upload);
    } catch (err) {
      if (!isNotFoundError(err)) throw err;
      // Finished, but its bytes were moved away (quarantined by the virus scan) or deleted.
      refuse(res, new TuskError('gone'), extraHeaders);
      return;
    }
    const size = upload.size;
    const contentType = contentTypeOf(upload.metadata);
    const inline = INLINE_SAFE.test(contentType);
    const headers: Record<string, string> = {
      ...extraHeaders,
      'Content-Type': contentType,
      'Content-Disposition': contentDisposition(upload.metadata?.filename ?? upload.metadata?.name, inline),
      'X-Content-Type-Options': 'nosniff',
      // Even if a browser renders it, the document gets no script and no same-origin access.
      'Content-Security-Policy': "default-src 'none'; media-src 'self'; img-src 'self'; sandbox",
      'Accept-Ranges': 'bytes',
      ETag: info.etag,
      'Last-Modified': info.lastModified.toUTCString(),
      'Cache-Control': 'private, max-age=0, must-revalidate',
    };
    if (fresh(req, info.etag, info.lastModified)) {
      res.writeHead(304, headers);
      res.end();
      return;
    }
    const ifRange = req.headers['if-range'];
    const rangeAllowed = !ifRange || ifRange === info.etag || ifRange === info.lastModified.toUTCString();
    const range = rangeAllowed ? parseRange(req.headers.range, size) : undefined;
    if (range === 'unsatisfiable') {
      refuse(res, new TuskError('range_not_satisfiable'), { ...extraHeaders, 'Content-Range': `bytes */${size}`, 'Accept-Ranges': 'bytes' });
      return;
    }
    const body = await info.open(range);
    if (range) {
      res.writeHead(206, { ...headers, 'Content-Range': `bytes ${range.start}-${range.end}/${size}`, 'Content-Length': String(range.end - range.start + 1) });
    } else {
      res.writeHead(200, { ...headers, 'Content-Length': String(size) });
    }
    if (req.method === 'HEAD') {
      body.destroy();
      res.end();
      return;
    }
    try {
      await pipeline(body, res);
    } catch (err) {
      // The client went away, or storage failed mid-body: the socket is closed, so a short
      // body can never look complete (Content-Length was sent).
      logger.debug({ err, uploadId: id }, 'download ended early');
      res.destroy();
    }
  };
}
