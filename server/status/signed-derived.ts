// GET /api/derived/<id>/<exp>.<sig>/<path>: an upload's derived outputs by a signed URL
// (lib/signed-urls.ts), for players and <img>, which cannot send an Authorization header.
//
//   playlists (.m3u8)   read from storage and rewritten: every playlist they name becomes a signed
//                       URL of this route with the same token (so the same expiry), every segment a
//                       URL storage serves until then (S3: presigned; the file store: this route)
//   anything else       the file store: the file; S3: a redirect to the presigned object
//
// A bad signature is 403 (`forbidden`), an expired one 403 too (the message says so: ask the status
// API for a new URL); an upload that is gone 404, one whose bytes may not be served (rejected, no
// clean scan yet) the same refusal as its download.
import path from 'node:path';
import express, { type Router } from 'express';
import type { Core } from '../../hooks/core.js';
import { TuskError } from '../../lib/errors.js';
import { servingRefusal } from '../../lib/record-store.js';
import { derivedKey, derivedPrefix } from '../../lib/s3-keys.js';
import { DerivedUrlSigner, SIGNED_DERIVED_PATH } from '../../lib/signed-urls.js';
import { allowedOrigin } from '../http/cors.js';
import { sendJsonError, unavailable } from '../http/errors.js';
import { publicBaseUrl } from '../http/public-url.js';
import { derivedTarget } from '../http/request-target.js';

const PLAYLIST_TYPE = 'application/vnd.apple.mpegurl';
/** Playlists tusk writes are small; a larger object is not one of them. */
const MAX_PLAYLIST_BYTES = 4 * 1024 * 1024;

const isPlaylist = (key: string) => key.toLowerCase().endsWith('.m3u8');

/**
 * The playlist at `playlistKey` with each URI (URI lines, and `URI="..."` attributes of tags such
 * as EXT-X-MAP and EXT-X-MEDIA) replaced by `resolve(key)` of the key it names. A reference that
 * leaves the upload's derived folder, or is absolute, is dropped with its line: tusk's playlists
 * never have one, and a signed URL must not lead anywhere else.
 */
export async function rewritePlaylist(text: string, playlistKey: string, resolve: (key: string) => Promise<string>): Promise<string> {
  const root = derivedPrefix(playlistKey.split('/')[1] ?? '');
  const keyOf = (uri: string): string | undefined => {
    if (/^[a-z][a-z0-9+.-]*:/i.test(uri) || uri.startsWith('/')) return undefined;
    const clean = uri.split(/[?#]/)[0] ?? '';
    let decoded: string;
    try {
      decoded = decodeURIComponent(clean);
    } catch {
      return undefined;
    }
    const key = path.posix.normalize(path.posix.join(path.posix.dirname(playlistKey), decoded));
    return key.startsWith(root) && key.length > root.length ? key : undefined;
  };
  const out: string[] = [];
  for (const line of text.split(/\r?\n/)) {
    const trimmed = line.trim();
    if (trimmed === '') {
      out.push(line);
    } else if (trimmed.startsWith('#')) {
      let dropped = false;
      const parts: string[] = [];
      let last = 0;
      for (const m of trimmed.matchAll(/URI="([^"]*)"/g)) {
        const key = keyOf(m[1] as string);
        if (!key) {
          dropped = true;
          break;
        }
        parts.push(trimmed.slice(last, m.index), `URI="${await resolve(key)}"`);
        last = (m.index ?? 0) + m[0].length;
      }
      if (!dropped) out.push(parts.join('') + trimmed.slice(last));
    } else {
      const key = keyOf(trimmed);
      if (key) out.push(await resolve(key));
      else if (out.length && /^#EXT(INF|-X-STREAM-INF)/.test(out[out.length - 1] ?? '')) out.pop(); // its tag goes with it
    }
  }
  return out.join('\n');
}

export function createSignedDerivedRouter(core: Core): Router {
  const { config, records, storage, signer } = core;
  const log = core.logger.child({ component: 'signed-derived' });
  const router = express.Router({ caseSensitive: true, strict: true });

  router.get(`${SIGNED_DERIVED_PATH}/*rest`, async (req, res) => {
    const rawPath = req.originalUrl.split('?')[0] ?? '';
    const target = derivedTarget(rawPath.slice(SIGNED_DERIVED_PATH.length + 1));
    const [token, ...restParts] = target?.rest.split('/') ?? [];
    if (!target || !token || restParts.length === 0) return sendJsonError(res, new TuskError('not_found', 'No such file'));
    const { id } = target;
    try {
      const check = await signer.check(id, token);
      if (!check.ok) {
        const message = check.why === 'expired' ? 'This link expired; the status API gives a new one' : 'This link is not valid';
        return sendJsonError(res, new TuskError('forbidden', message));
      }
      const record = await records.get(id);
      if (!record) return sendJsonError(res, new TuskError('not_found', 'No such file'));
      const refusal = servingRefusal(record, config.pipeline.scanRequired);
      if (refusal) return sendJsonError(res, refusal);
      const key = derivedKey(id, restParts.join('/'));
      const baseUrl = publicBaseUrl(req, config);
      const origin = allowedOrigin(req, config);
      if (origin) res.set({ 'Access-Control-Allow-Origin': origin, Vary: 'Origin' });
      res.set({ 'X-Content-Type-Options': 'nosniff', 'Cross-Origin-Resource-Policy': 'cross-origin' });
      if (isPlaylist(key)) {
        const bytes = await storage.readDerived(key);
        if (!bytes || bytes.length > MAX_PLAYLIST_BYTES) return sendJsonError(res, new TuskError('not_found', 'No such file'));
        const body = await rewritePlaylist(bytes.toString('utf8'), key, (ref) =>
          isPlaylist(ref) ? Promise.resolve(DerivedUrlSigner.urlWith(baseUrl, ref, token)) : storage.mediaUrlFor(ref, baseUrl, token, check.expiresAtMs),
        );
        res.status(200).set({ 'Content-Type': PLAYLIST_TYPE, 'Cache-Control': 'private, no-store' }).send(body);
        return;
      }
      if (storage.kind === 's3') {
        res.set('Cache-Control', 'private, no-store').redirect(302, await storage.mediaUrlFor(key, baseUrl, token, check.expiresAtMs));
        return;
      }
      const file = storage.localPath?.(key);
      if (!file) return sendJsonError(res, new TuskError('not_found', 'No such file'));
      res.set('Cache-Control', `private, max-age=${Math.max(0, Math.floor((check.expiresAtMs - Date.now()) / 1000))}`);
      res.sendFile(file, { dotfiles: 'deny' }, (err) => {
        if (err && !res.headersSent) sendJsonError(res, new TuskError('not_found', 'No such file'));
      });
    } catch (err) {
      log.warn({ err, uploadId: id }, 'signed derived file failed');
      sendJsonError(res, unavailable());
    }
  });
  return router;
}
