// The upload page at `/` (WEB_UI, default on): the bundle `npm run build` writes to dist/web
// (sources in web/), its settings at /ui/config.json, under a strict Content-Security-Policy:
// scripts, styles and fonts from tusk only, nothing inline; images, media and requests also to the
// storage origin, where presigned thumbnails, segments, MP4s and direct-upload PUTs go.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import express, { type ErrorRequestHandler, type RequestHandler, type Router } from 'express';
import type { Config } from '../../config/index.js';
import { TuskError } from '../../lib/errors.js';
import { sendJsonError } from './errors.js';

/** Where the built page is: dist/web beside dist/server (this file is dist/server/http/web-ui.js). */
export function webRoot(): string | undefined {
  const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'web');
  // Run from the sources (tests of the modules), web/ holds the unbuilt page: not servable.
  return fs.existsSync(path.join(dir, 'assets')) && fs.existsSync(path.join(dir, 'index.html')) ? dir : undefined;
}

/** The origins presigned storage URLs point at (S3_PUBLIC_ENDPOINT, else S3_ENDPOINT, else AWS). */
export function storageOrigins(config: Config): string[] {
  const s3 = config.s3;
  if (config.storage !== 's3' || !s3) return [];
  const endpoint = config.pipeline.s3PublicEndpoint ?? s3.endpoint;
  if (!endpoint) {
    // AWS: virtual-hosted buckets (the SDK's default), regional and global names.
    return [`https://${s3.bucket}.s3.${s3.region}.amazonaws.com`, `https://s3.${s3.region}.amazonaws.com`, `https://${s3.bucket}.s3.amazonaws.com`];
  }
  const url = new URL(endpoint);
  const origins = [url.origin];
  if (!s3.forcePathStyle) origins.push(`${url.protocol}//${s3.bucket}.${url.host}`);
  return origins;
}

export function contentSecurityPolicy(config: Config): string {
  const storage = storageOrigins(config).join(' ');
  const withStorage = (base: string) => (storage ? `${base} ${storage}` : base);
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "font-src 'self'",
    // Uppy's previews of local files are blob: and data: URLs; hls.js plays through a blob: MediaSource.
    withStorage("img-src 'self' blob: data:"),
    withStorage("media-src 'self' blob:"),
    withStorage("connect-src 'self'"),
    "worker-src 'self' blob:",
    "manifest-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "object-src 'none'",
  ].join('; ');
}

export function createWebUiRouter(config: Config, root = webRoot()): Router | undefined {
  if (!config.webUi.enabled) return undefined;
  const router = express.Router({ caseSensitive: true, strict: true });
  const csp = contentSecurityPolicy(config);
  const secure: RequestHandler = (_req, res, next) => {
    res.set({
      'Content-Security-Policy': csp,
      'X-Content-Type-Options': 'nosniff',
      'Referrer-Policy': 'no-referrer',
      'X-Frame-Options': 'DENY',
      'Cross-Origin-Opener-Policy': 'same-origin',
    });
    next();
  };
  router.get('/ui/config.json', secure, (_req, res) => {
    // single_put_max: larger files go to storage as multipart uploads (pausable, resumable), as tusk's own API does.
    res.set('Cache-Control', 'no-store').json({
      auth: config.access.auth !== undefined,
      token_cookie: config.webUi.tokenCookie ?? null,
      direct: config.storage === 's3',
      single_put_max: config.direct.singlePutMax,
    });
  });
  if (!root) {
    router.get('/', secure, (_req, res) => {
      res.status(503).type('text/plain').send('The upload page is not built: run `npm run build` (or set WEB_UI=false).\n');
    });
    return router;
  }
  router.get(['/', '/index.html'], secure, (_req, res) => {
    res.set('Cache-Control', 'no-cache').sendFile(path.join(root, 'index.html'));
  });
  // Bundles carry their content hash in their names: cached for good.
  router.use('/assets', secure, express.static(path.join(root, 'assets'), { immutable: true, maxAge: '365d', index: false, dotfiles: 'deny', fallthrough: false }));
  // serve-static's errors: a range past the end of a file that exists is 416 (as tus downloads
  // answer it); everything else (missing, dot files, malformed paths) is simply not a file here.
  const notThere: ErrorRequestHandler = (err: { status?: number }, _req, res, _next) =>
    sendJsonError(res, err.status === 416 ? new TuskError('range_not_satisfiable') : new TuskError('not_found', 'No such file'));
  router.use('/assets', notThere);
  return router;
}
