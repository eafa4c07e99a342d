// The status API (JSON):
//   GET  /api/uploads                 the caller's uploads, newest first, paginated (listing.ts)
//   GET  /api/uploads/:id             the upload's status document (404 {error:{code,message}})
//   GET  /api/uploads/:id/events      Server-Sent Events: the current document first, then the
//                                     document again on every status/progress change (Redis
//                                     pub/sub, so changes made by any worker reach every API
//                                     instance); a comment line every 15 s as a heartbeat
//   POST /api/uploads/:id/reprocess   202: runs the pipeline again (a new run; outputs overwritten);
//                                     ?force=1 replaces a run still going, once it is
//                                     REPROCESS_FORCE_AFTER old (sooner: 429 rate_limited)
//   GET  /api/files/derived/<id>/...  file store only: the derived outputs (S3 uses presigned URLs)
// The event streams share the process's subscriber connection; close() ends them (graceful
// shutdown: their clients reconnect elsewhere).
import express, { type Request, type Response, type Router } from 'express';
import type { Core } from '../../hooks/core.js';
import { principalOf, requireAuth } from '../http/auth.js';
import { publicDocument, servingRefusal, TERMINAL } from '../../lib/record-store.js';
import { processingGap } from '../../lib/worker-registry.js';
import { DERIVED_PREFIX, derivedKey } from '../../lib/s3-keys.js';
import { RETRY_AFTER_SECONDS, TuskError } from '../../lib/errors.js';
import { sendJsonError, unavailable } from '../http/errors.js';
import { publicBaseUrl } from '../http/public-url.js';
import { derivedTarget, uploadIdOfSegment } from '../http/request-target.js';
import { encodeCursor, LISTING_SCAN_BUDGET, parseListingQuery } from './listing.js';

const HEARTBEAT_MS = 15_000;
/**
 * Event streams one user may hold open on one tusk process: each holds a socket with no idle
 * timeout and a Redis subscription, so they are bounded like any other resource a request can take.
 */
export const MAX_EVENT_STREAMS_PER_USER = 32;

function notFound(res: Response, id?: string): void {
  sendJsonError(res, new TuskError('not_found', id ? `No upload with id "${id}"` : 'No such upload'));
}

function storeUnavailable(res: Response, message = 'Status store unavailable'): void {
  sendJsonError(res, unavailable(message));
}

/** The upload id the ownership check passed (server/http/request-target.ts); handlers act on it alone. */
function uploadIdOf(res: Response): string {
  const id = res.locals.uploadId as string | undefined;
  if (!id) throw new Error('route is not behind the ownership check');
  return id;
}

export function createApiRouter(core: Core): { router: Router; close(): void } {
  const { config, records, storage, subscriber, lifecycle } = core;
  const log = core.logger.child({ component: 'api' });

  const baseUrl = (req: Request) => publicBaseUrl(req, config);
  const documentOf = async (id: string, req: Request) => {
    const rec = await records.get(id);
    if (!rec) return undefined;
    const doc = await publicDocument(rec, (key) => storage.urlFor(key, baseUrl(req)));
    // A finished upload nothing will process (no worker runs): say so, and what to do.
    const waiting = !TERMINAL.includes(rec.status) && rec.status !== 'uploading' ? await processingGap(core.workers, config).catch(() => undefined) : undefined;
    return waiting ? { ...doc, waiting_for: waiting } : doc;
  };

  // The process's subscriber connection for all streams: channel -> listeners.
  const listeners = new Map<string, Set<() => void>>();
  subscriber.on('message', (channel: string) => {
    for (const fn of listeners.get(channel) ?? []) fn();
  });
  const streams = new Set<Response>();
  const streamsPerUser = new Map<string, number>();
  const endStreams = () => {
    for (const res of streams) res.end();
  };

  const router = express.Router({ caseSensitive: true, strict: true });
  const { authenticator, ownership } = core.access;

  // The listing names no upload: it reads the caller's own index, so it needs no ownership check
  // (and `/api/uploads/` with its slash falls through to the per-upload routes: 404).
  router.get('/api/uploads', requireAuth(authenticator), async (req, res) => {
    let query;
    try {
      query = parseListingQuery(req);
    } catch (err) {
      return sendJsonError(res, err as TuskError);
    }
    const user = principalOf(res).userId;
    try {
      const uploads: unknown[] = [];
      let cursor = query.after;
      let scanned = 0;
      let exhausted = false;
      while (uploads.length < query.limit && scanned < LISTING_SCAN_BUDGET) {
        const batch = await ownership.uploadsOf(user, Math.min(100, Math.max(query.limit - uploads.length, 10)), cursor);
        if (batch.length === 0) {
          exhausted = true;
          break;
        }
        const records_ = await Promise.all(batch.map((e) => records.get(e.id)));
        const gone: string[] = [];
        for (const [i, entry] of batch.entries()) {
          if (uploads.length >= query.limit) break;
          cursor = entry;
          scanned++;
          const rec = records_[i];
          if (!rec) gone.push(entry.id); // its record expired (an upload never finished): nothing to show
          else if (!query.statuses || query.statuses.has(rec.status)) uploads.push(await documentOf(entry.id, req));
        }
        await ownership.unlist(user, gone);
      }
      // A full page says whether there is more, so that the last page has no cursor.
      if (!exhausted && cursor && uploads.length >= query.limit) exhausted = (await ownership.uploadsOf(user, 1, cursor)).length === 0;
      res.set('Cache-Control', 'no-store').json({ uploads: uploads.filter(Boolean), next_cursor: !exhausted && cursor ? encodeCursor(cursor) : null });
    } catch (err) {
      log.warn({ err }, 'listing failed');
      storeUnavailable(res);
    }
  });

  // Every route needs a Bearer token (SSE and derived files may carry it as ?access_token=,
  // EventSource and <img> cannot send headers) and names one upload; another user's upload is 404
  // like an unknown one. The id is parsed once, here, and the handlers act on exactly that id.
  router.use(['/api/uploads', '/api/files'], (req, res, next) => {
    const files = req.baseUrl === '/api/files';
    const allowQueryToken = files || req.path.endsWith('/events');
    requireAuth(authenticator, { allowQueryToken })(req, res, () => {
      const path = req.path;
      const derived = files && path.startsWith(`/${DERIVED_PREFIX}/`) ? derivedTarget(path.slice(DERIVED_PREFIX.length + 2)) : undefined;
      const id = files ? derived?.id : uploadIdOfSegment(path.split('/')[1] ?? '');
      if (!id) return notFound(res);
      ownership.canAccess(principalOf(res), id).then(
        (ok) => {
          if (!ok) return notFound(res, id);
          res.locals.uploadId = id;
          if (derived) res.locals.derivedKey = derivedKey(derived.id, derived.rest);
          next();
        },
        () => storeUnavailable(res),
      );
    });
  });

  router.get('/api/uploads/:id', async (req, res) => {
    const id = uploadIdOf(res);
    try {
      const doc = await documentOf(id, req);
      if (!doc) return notFound(res, id);
      res.set('Cache-Control', 'no-store').json(doc);
    } catch (err) {
      log.warn({ err, uploadId: id }, 'status lookup failed');
      storeUnavailable(res);
    }
  });

  router.get('/api/uploads/:id/events', async (req, res) => {
    const id = uploadIdOf(res);
    let first;
    try {
      first = await documentOf(id, req);
    } catch {
      storeUnavailable(res);
      return;
    }
    if (!first) return notFound(res, id);
    const user = principalOf(res).userId;
    const open = streamsPerUser.get(user) ?? 0;
    if (open >= MAX_EVENT_STREAMS_PER_USER) {
      sendJsonError(res, new TuskError('too_many_streams', `At most ${MAX_EVENT_STREAMS_PER_USER} event streams at once per user; close one first`, {}, { 'Retry-After': String(RETRY_AFTER_SECONDS) }));
      return;
    }
    streamsPerUser.set(user, open + 1);
    res.once('close', () => {
      const left = (streamsPerUser.get(user) ?? 1) - 1;
      if (left > 0) streamsPerUser.set(user, left);
      else streamsPerUser.delete(user);
    });
    res.status(200).set({ 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
    res.flushHeaders();
    req.socket.setTimeout(0); // the server's idle timeout is for uploads; heartbeats keep proxies happy
    streams.add(res);
    let seq = 0;
    let lastSent = '';
    const send = (doc: unknown) => {
      const json = JSON.stringify(doc);
      if (json === lastSent) return;
      lastSent = json;
      res.write(`id: ${++seq}\nevent: status\ndata: ${json}\n\n`);
    };
    // Coalesced: while one read is running, further notifications just ask for one more read.
    let reading = false;
    let again = false;
    const refresh = async () => {
      if (reading) {
        again = true;
        return;
      }
      reading = true;
      try {
        do {
          again = false;
          const doc = await documentOf(id, req);
          if (doc) send(doc);
        } while (again);
      } catch (err) {
        log.debug({ err, uploadId: id }, 'SSE refresh failed');
      } finally {
        reading = false;
      }
    };
    const channel = records.channel(id);
    let set = listeners.get(channel);
    if (!set) {
      set = new Set();
      listeners.set(channel, set);
      await subscriber.subscribe(channel);
    }
    const listener = () => void refresh();
    set.add(listener);
    send(first);
    void refresh(); // a change between the first read and the subscription
    const heartbeat = setInterval(() => res.write(`: heartbeat ${new Date().toISOString()}\n\n`), HEARTBEAT_MS);
    res.on('close', () => {
      clearInterval(heartbeat);
      streams.delete(res);
      set.delete(listener);
      if (set.size === 0) {
        listeners.delete(channel);
        void subscriber.unsubscribe(channel).catch(() => {});
      }
    });
  });

  router.post('/api/uploads/:id/reprocess', async (req, res) => {
    const id = uploadIdOf(res);
    try {
      const rec = await records.get(id);
      if (!rec) return notFound(res, id);
      if (rec.reason?.code === 'infected') {
        sendJsonError(res, new TuskError('quarantined', 'The upload was rejected as infected and is quarantined; it is not processed again'));
        return;
      }
      const force = req.query.force === '1';
      const forceAfterMs = config.pipeline.reprocessForceAfterMs;
      const result = await lifecycle.reprocess(id, { force, minRunAgeMs: forceAfterMs });
      if ('refused' in result) {
        if (result.refused === 'missing') return notFound(res, id);
        if (result.refused === 'not_finished') {
          sendJsonError(res, new TuskError('not_finished', 'The upload has not finished; nothing to process yet'));
        } else if (result.refused === 'in_progress') {
          sendJsonError(res, new TuskError('in_progress', `The pipeline is still running (status ${rec.status}); add ?force=1 to start over`));
        } else {
          // Forcing again and again would only pile up work: a run must have had some time first.
          const seconds = Math.max(1, Math.ceil(result.retryAfterMs / 1000));
          sendJsonError(res, new TuskError('rate_limited', `The current run started less than ${Math.round(forceAfterMs / 1000)} s ago; ?force=1 can start it over in ${seconds} s`, { retry_after: seconds }, { 'Retry-After': String(seconds) }));
        }
        return;
      }
      log.info({ uploadId: id, run: result.run, force }, 'reprocess queued');
      res.status(202).json(await documentOf(id, req));
    } catch (err) {
      log.warn({ err, uploadId: id }, 'reprocess failed');
      storeUnavailable(res, 'Could not queue the reprocess');
    }
  });

  if (storage.kind === 'file' && storage.localPath) {
    const localPath = storage.localPath.bind(storage);
    router.get(`/api/files/${DERIVED_PREFIX}/*rest`, async (_req, res) => {
      const key = res.locals.derivedKey as string;
      let record;
      try {
        record = await records.get(uploadIdOf(res));
      } catch {
        storeUnavailable(res);
        return;
      }
      // Not before a clean scan verdict (when scanning is required), never once rejected.
      const refusal = servingRefusal(record, config.pipeline.scanRequired);
      if (refusal) {
        sendJsonError(res, refusal);
        return;
      }
      let file: string;
      try {
        file = localPath(key);
      } catch {
        return notFound(res);
      }
      res.set('X-Content-Type-Options', 'nosniff');
      res.sendFile(file, { dotfiles: 'deny', maxAge: 0 }, (err) => {
        if (err && !res.headersSent) notFound(res);
      });
    });
  }

  return { router, close: endStreams };
}
