// The JSON API of direct-to-storage uploads (hooks/direct/service.ts does the work; S3 store only,
// with the file store these answer 501):
//   POST   /api/uploads/initiate        { filename, filesize, content_type, sha256? }
//          -> 201 { upload_id, method: multipart|put, chunk_size, part_count, upload_urls, expires_at }
//   GET    /api/uploads/:id/parts       -> { parts: [{ part_number, size, etag }] } (ListParts, all pages)
//   POST   /api/uploads/:id/parts       { part_numbers } -> { upload_urls: [{ part_number, url }], expires_at }
//   POST   /api/uploads/:id/complete    { title?, description?, visibility?, parts? } -> 202 status document
//   DELETE /api/uploads/:id             -> 204 (multipart aborted / object deleted, quota released)
// plus, on the same service, the Companion-compatible /s3 routes (companion.ts). Each route has one
// spelling (case-sensitive, no trailing slash, the id exactly lib/upload-id.ts's form); another
// user's upload, like any other spelling, is 404.
import express, { type Request, type Response, type Router } from 'express';
import { z } from 'zod';
import type { Core } from '../../hooks/core.js';
import { MAX_URLS_PER_RESPONSE } from '../../hooks/direct/parts.js';
import { DirectUploads } from '../../hooks/direct/service.js';
import { TuskError } from '../../lib/errors.js';
import { publicDocument } from '../../lib/record-store.js';
import { MAX_PARTS } from '../../lib/s3.js';
import { isUploadId } from '../../lib/upload-id.js';
import { principalOf, requireAuth } from '../http/auth.js';
import { handle, jsonBody, parseBody } from '../http/body.js';
import { allowedOrigin } from '../http/cors.js';
import { ERROR_CODE_HEADER, sendJsonError } from '../http/errors.js';
import { REQUEST_ID_HEADER } from '../http/request-id.js';
import { publicBaseUrl } from '../http/public-url.js';
import { registerCompanionRoutes } from './companion.js';

const initiateBody = z.object({
  filename: z.string().min(1).max(1024),
  filesize: z.number().int().positive(),
  content_type: z.string().min(3).max(255),
  sha256: z.string().regex(/^[a-fA-F0-9]{64}$/, 'sha256 must be 64 hex digits').optional(),
});
const partsBody = z.object({ part_numbers: z.array(z.number().int()).min(1).max(MAX_URLS_PER_RESPONSE) });
const completeBody = z
  .object({
    title: z.string().max(1000).optional(),
    description: z.string().max(10_000).optional(),
    visibility: z.enum(['private', 'unlisted', 'public']).optional(),
    parts: z.array(z.object({ part_number: z.number().int().positive(), etag: z.string().max(200) })).max(MAX_PARTS).optional(),
  })
  .strict();

/** Access-Control-Allow-Origin (and what a client may read) for a browser's request. */
function corsFor(config: Core['config']): (req: Request, res: Response) => void {
  return (req, res) => {
    if (!req.get('origin')) return;
    res.set({ 'Access-Control-Allow-Origin': allowedOrigin(req, config) ?? '', Vary: 'Origin', 'Access-Control-Expose-Headers': `Retry-After, WWW-Authenticate, ${ERROR_CODE_HEADER}, ${REQUEST_ID_HEADER}` });
  };
}

/** The upload id of the route's `:id` (decoded once by the router), exactly in lib/upload-id.ts's form; else 404. */
function idParam(req: Request): string {
  const id = req.params.id;
  if (!isUploadId(id)) throw new TuskError('not_found');
  return id;
}

export function createDirectUploadsRouter(core: Core): Router {
  // Each route has exactly one spelling: `/API/...`, `/api/uploads/<id>/parts/` and the like are
  // not these routes (Express matches case-insensitively and with a trailing slash by default).
  const router = express.Router({ caseSensitive: true, strict: true });
  const { config } = core;
  const log = core.logger.child({ component: 'direct-uploads' });
  const routes = ['/api/uploads/initiate', '/api/uploads/:id/parts', '/api/uploads/:id/complete', '/s3/params', '/s3/multipart', '/s3/multipart/*rest'];
  if (!core.s3) {
    const fileStore = (message: string) => (_req: Request, res: Response) => sendJsonError(res, new TuskError('not_implemented', message));
    router.all(routes, fileStore('Direct-to-storage uploads need STORAGE=s3; with the file store use the tus endpoint (/files/)'));
    router.delete('/api/uploads/:id', fileStore('Direct-to-storage uploads need STORAGE=s3; tus uploads are deleted with DELETE /files/<id>'));
    return router;
  }
  // CORS for browsers (Uppy) on another origin: CORS_ORIGINS, Authorization allowed, preflights answered.
  const cors = corsFor(config);
  router.options([...routes, '/api/uploads/:id'], (req, res) => {
    cors(req, res);
    res.set({ 'Access-Control-Allow-Methods': 'GET, POST, DELETE, OPTIONS', 'Access-Control-Allow-Headers': 'Authorization, Content-Type', 'Access-Control-Max-Age': '600' });
    res.status(204).end();
  });
  router.use([...routes, '/api/uploads/:id'], (req, res, next) => {
    cors(req, res);
    next();
  });
  const service = new DirectUploads(core);
  const auth = requireAuth(core.access.authenticator);
  const documentOf = async (id: string, req: Request) => {
    const rec = await core.records.get(id);
    return rec ? publicDocument(rec, (key) => core.storage.urlFor(key, publicBaseUrl(req, config))) : undefined;
  };

  router.post(
    '/api/uploads/initiate',
    auth,
    jsonBody,
    handle(log, async (req, res) => {
      const body = parseBody(initiateBody, req.body);
      const s = await service.initiate(principalOf(res), req.ip ?? '', body, 'api');
      if (s.dedup_of) {
        res.status(200).set('Cache-Control', 'no-store').json({ deduplicated: true, upload_id: s.upload_id });
        return;
      }
      const first = Array.from({ length: Math.min(s.part_count, MAX_URLS_PER_RESPONSE) }, (_, i) => i + 1);
      const urls = await service.urlsFor(s, first);
      res
        .status(201)
        .set('Cache-Control', 'no-store')
        .json({
          upload_id: s.upload_id,
          method: s.method,
          chunk_size: s.chunk_size,
          part_count: s.part_count,
          upload_urls: urls.map((u) => u.url),
          ...(s.method === 'put' ? { headers: { 'Content-Length': String(s.size) } } : {}),
          expires_at: service.urlsExpireAt(),
          upload_expires_at: s.expires_at,
        });
    }),
  );

  router.get(
    '/api/uploads/:id/parts',
    auth,
    handle(log, async (req, res) => {
      const s = await service.owned(principalOf(res), idParam(req));
      const parts = await service.parts(s);
      res.set('Cache-Control', 'no-store').json({
        upload_id: s.upload_id,
        method: s.method,
        chunk_size: s.chunk_size,
        part_count: s.part_count,
        parts: parts.map((p) => ({ part_number: p.PartNumber, size: p.Size, etag: p.ETag })),
      });
    }),
  );

  router.post(
    '/api/uploads/:id/parts',
    auth,
    jsonBody,
    handle(log, async (req, res) => {
      const s = await service.owned(principalOf(res), idParam(req));
      const body = parseBody(partsBody, req.body);
      service.ensureOpen(s);
      const urls = await service.urlsFor(s, [...new Set(body.part_numbers)]);
      res.set('Cache-Control', 'no-store').json({ upload_id: s.upload_id, upload_urls: urls, expires_at: service.urlsExpireAt() });
    }),
  );

  router.post(
    '/api/uploads/:id/complete',
    auth,
    jsonBody,
    handle(log, async (req, res) => {
      const s = await service.owned(principalOf(res), idParam(req));
      const body = parseBody(completeBody, req.body);
      const done = await service.complete(s, body);
      res.status(202).set('Cache-Control', 'no-store').json(await documentOf(done.upload_id, req));
    }),
  );

  router.delete(
    '/api/uploads/:id',
    auth,
    handle(log, async (req, res) => {
      const s = await service.owned(principalOf(res), idParam(req));
      await service.abort(s);
      res.status(204).end();
    }),
  );

  registerCompanionRoutes(router, service, auth, core);
  return router;
}
