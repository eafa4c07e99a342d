// Companion-compatible S3 signing routes, so that Uppy's @uppy/aws-s3 plugin works against tusk
// unchanged (`endpoint: '<tusk>'`, `headers: { authorization: 'Bearer <JWT>' }`). Same shapes as
// Companion's s3 controller, but every route is behind tusk's auth and goes through the same
// service as /api/uploads (validation, allow-list, rate limit, quota, completion checks):
//   GET    /s3/params?filename=&type=&size=              { method: 'PUT', url, fields: {}, headers, upload_id, expires }
//   POST   /s3/multipart { filename, type, metadata }    { uploadId, key }
//   GET    /s3/multipart/:uploadId?key=                  [{ PartNumber, Size, ETag }]
//   GET    /s3/multipart/:uploadId/batch?key=&partNumbers=1,2   { presignedUrls: { [n]: url } }
//   GET    /s3/multipart/:uploadId/:partNumber?key=      { url, expires }
//   POST   /s3/multipart/:uploadId/complete?key=         { location, key, upload_id }   (location: the status URL)
//   DELETE /s3/multipart/:uploadId?key=                  {}
// Companion needs no file size; tusk does (quota, completion check): send it as `size` (body or
// query) or in Uppy's metadata (`metadata.size`, e.g. with allowedMetaFields). Each part URL is
// signed for its part's size, and Uppy does not say which part size it uses when it asks for one:
// a session's parts are Uppy's default size (uppyChunkSize in hooks/direct/parts.ts), numbered 1..its
// part count, so an app with its own getChunkSize must return exactly that. `uploadId` is the S3
// UploadId and `key` our object key `direct/<upload id>`; unless both name the same upload of the
// caller, 404. A single PUT from /s3/params has no completion call in Uppy: the client may POST
// /api/uploads/<upload_id>/complete, otherwise the cleanup job completes a PUT whose object has
// arrived with the declared size.
import type { Request, RequestHandler, Response, Router } from 'express';
import { z } from 'zod';
import type { Principal } from '../../hooks/auth.js';
import type { Core } from '../../hooks/core.js';
import { MAX_URLS_PER_RESPONSE } from '../../hooks/direct/parts.js';
import type { DirectUploads } from '../../hooks/direct/service.js';
import type { DirectSession } from '../../hooks/direct/sessions.js';
import { TuskError } from '../../lib/errors.js';
import { MAX_PARTS } from '../../lib/s3.js';
import { uploadIdOfDirectKey } from '../../lib/s3-keys.js';
import { principalOf } from '../http/auth.js';
import { handle, jsonBody, parseBody } from '../http/body.js';
import { publicBaseUrl } from '../http/public-url.js';

const size = z.coerce.number().int().positive();
const createBody = z.object({
  filename: z.string().min(1).max(1024),
  type: z.string().max(255).optional(),
  size: size.optional(),
  metadata: z.record(z.string(), z.unknown()).optional(),
});

/** A part number as Uppy writes it: decimal digits, no sign, exponent or leading zero. */
function partNumberOf(raw: string): number {
  if (!/^[1-9][0-9]{0,4}$/.test(raw)) throw new TuskError('invalid_request', `part numbers are whole numbers from 1 (got "${raw.slice(0, 20)}")`, { invalid_part_numbers: [raw.slice(0, 20)] });
  return Number(raw);
}

function declaredSize(...candidates: unknown[]): number {
  for (const c of candidates) {
    if (c === undefined || c === null || c === '') continue;
    const n = Number(c);
    if (Number.isSafeInteger(n) && n > 0) return n;
    throw new TuskError('invalid_request', `size must be a positive whole number of bytes (got "${String(c)}")`);
  }
  throw new TuskError('invalid_request', 'tusk needs the file size: send `size` (or metadata.size) with the request');
}

const contentTypeOf = (type: unknown, filename: string) => {
  const t = typeof type === 'string' && type ? type : '';
  if (!t) throw new TuskError('invalid_request', `type (the MIME type of "${filename}") is required`);
  return t;
};

const completeBody = z.object({
  parts: z.array(z.object({ PartNumber: z.number().int().positive(), ETag: z.string().max(200).optional() })).max(MAX_PARTS).optional(),
});

export function registerCompanionRoutes(router: Router, service: DirectUploads, auth: RequestHandler, core: Core): void {
  const log = core.logger.child({ component: 'companion-s3' });

  /**
   * The caller's multipart session named by both `key` (exactly `direct/<upload id>`, the query
   * decoded once) and the path's `uploadId` (its S3 UploadId, decoded once by the router); 404
   * unless both name the same session of this caller. Handlers act on the session returned.
   */
  async function sessionFor(principal: Principal, req: Request): Promise<DirectSession> {
    const key = typeof req.query.key === 'string' ? req.query.key : '';
    const uploadId = req.params.uploadId;
    const id = uploadIdOfDirectKey(key);
    const notFound = new TuskError('not_found');
    if (!id || typeof uploadId !== 'string' || !uploadId) throw notFound;
    const s = await service.owned(principal, id);
    if (s.key !== key || s.method !== 'multipart' || !s.s3_upload_id || s.s3_upload_id !== uploadId) throw notFound;
    return s;
  }

  router.get(
    '/s3/params',
    auth,
    handle(log, async (req, res) => {
      const principal = principalOf(res);
      const q = req.query as Record<string, unknown>;
      const filename = typeof q.filename === 'string' && q.filename ? q.filename : '';
      if (!filename) throw new TuskError('invalid_request', 'filename is required');
      const bytes = declaredSize(q.size, (q.metadata as Record<string, unknown> | undefined)?.size, q['metadata[size]']);
      const s = await service.initiate(principal, req.ip ?? '', { filename, filesize: bytes, content_type: contentTypeOf(q.type, filename) }, 'companion', 'put');
      const [signed] = await service.urlsFor(s, [1]);
      res.set('Cache-Control', 'no-store').json({ method: 'PUT', url: signed!.url, fields: {}, headers: {}, expires: service.urlTtlSeconds, upload_id: s.upload_id, key: s.key });
    }),
  );

  router.post(
    '/s3/multipart',
    auth,
    jsonBody,
    handle(log, async (req, res) => {
      const principal = principalOf(res);
      const body = parseBody(createBody, req.body);
      const bytes = declaredSize(body.size, body.metadata?.size, body.metadata?.filesize);
      const s = await service.initiate(
        principal,
        req.ip ?? '',
        { filename: body.filename, filesize: bytes, content_type: contentTypeOf(body.type ?? body.metadata?.type, body.filename) },
        'companion',
        'multipart',
      );
      res.set('Cache-Control', 'no-store').json({ uploadId: s.s3_upload_id, key: s.key });
    }),
  );

  router.get(
    '/s3/multipart/:uploadId',
    auth,
    handle(log, async (req, res) => {
      const s = await sessionFor(principalOf(res), req);
      const parts = await service.parts(s);
      res.set('Cache-Control', 'no-store').json(parts.map((p) => ({ PartNumber: p.PartNumber, Size: p.Size, ETag: p.ETag })));
    }),
  );

  router.get(
    '/s3/multipart/:uploadId/batch',
    auth,
    handle(log, async (req, res) => {
      const s = await sessionFor(principalOf(res), req);
      const raw = typeof req.query.partNumbers === 'string' ? req.query.partNumbers : '';
      if (!raw) throw new TuskError('invalid_request', 'partNumbers is required (e.g. partNumbers=1,2,3)');
      const list = raw.split(',');
      if (list.length > MAX_URLS_PER_RESPONSE) throw new TuskError('invalid_request', `at most ${MAX_URLS_PER_RESPONSE} part numbers at once`);
      const numbers = list.map(partNumberOf);
      service.ensureOpen(s);
      const urls = await service.urlsFor(s, [...new Set(numbers)]);
      res.set('Cache-Control', 'no-store').json({ presignedUrls: Object.fromEntries(urls.map((u) => [u.part_number, u.url])) });
    }),
  );

  router.get(
    '/s3/multipart/:uploadId/:partNumber',
    auth,
    handle(log, async (req, res) => {
      const s = await sessionFor(principalOf(res), req);
      const n = partNumberOf(String(req.params.partNumber));
      service.ensureOpen(s);
      const [signed] = await service.urlsFor(s, [n]);
      res.set('Cache-Control', 'no-store').json({ url: signed!.url, expires: service.urlTtlSeconds });
    }),
  );

  router.post(
    '/s3/multipart/:uploadId/complete',
    auth,
    jsonBody,
    handle(log, async (req, res) => {
      const s = await sessionFor(principalOf(res), req);
      const body = parseBody(completeBody, req.body);
      const done = await service.complete(s, {
        parts: body.parts?.map((p) => ({ part_number: p.PartNumber, etag: p.ETag ?? '' })),
      });
      res.set('Cache-Control', 'no-store').json({ location: `${publicBaseUrl(req, core.config)}/api/uploads/${done.upload_id}`, key: done.key, upload_id: done.upload_id });
    }),
  );

  router.delete(
    '/s3/multipart/:uploadId',
    auth,
    handle(log, async (req: Request, res: Response) => {
      const s = await sessionFor(principalOf(res), req);
      await service.abort(s);
      res.json({});
    }),
  );
}
