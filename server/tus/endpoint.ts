// The tus endpoint (/files/): @tus/server with our store, the Redis locker and the hooks,
// behind the protocol gate, with error mapping and a count of requests in flight (for
// graceful shutdown).
import fs from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { finished as streamFinished } from 'node:stream/promises';
import { Server, type ServerOptions } from '@tus/server';
import { ERRORS, type DataStore, type Locker, type Upload } from '@tus/utils';
import type { Request as ExpressRequest } from 'express';
import { NodeRequest, sendNodeResponse } from 'srvx/node';
import type { Config } from '../../config/index.js';
import type { Logger } from '../../lib/logger.js';
import { newUploadId } from '../../lib/upload-id.js';
import { ANONYMOUS, AuthError, type Principal } from '../../hooks/auth.js';
import { RateLimitedError } from '../../hooks/rate-limit.js';
import { HookRejection, validateNewUpload } from '../../hooks/upload-create.js';
import { clientIp, type AccessControl } from '../../hooks/access.js';
import type { UploadFinishedHook } from '../../hooks/upload-finished.js';
import { publicBaseUrl } from '../http/public-url.js';
import { TUS_PATH, tusTarget, uploadIdOfUrl } from '../http/request-target.js';
import { CHECKSUM_ALGORITHMS, checksumSource, discardSpool, spoolAndVerify, type SpoolBudget } from './checksum.js';
import { canConcatenate } from '../../lib/stores/concatenating-store.js';
import { ConcatError, createFinalUpload, parseConcatHeader, type ConcatRegistry } from './concatenation.js';
import { createDownloadHandler, type DownloadStorage, type ContentGate } from './download.js';
import { mapTusError } from './errors.js';
import { applyMethodOverride, checkTusRequest, wireMethod, type GateError } from './protocol-gate.js';
import { RequestScopedLocker, runInTusRequest, tusRequest } from './request-context.js';
import { runWithUploadRequest } from '../../lib/stores/s3-request-context.js';

export { TUS_PATH };
/** Seconds a client should wait before retrying after a 503 (storage or Redis down). */
export const RETRY_AFTER_SECONDS = 5;

export interface TusEndpoint {
  tus: Server;
  handle(req: ExpressRequest, res: ServerResponse): Promise<void>;
  /** Requests whose handling has not finished yet (including saving what they received). */
  inFlight(): number;
}

const COLLECTION_METHODS = ['OPTIONS', 'POST'];
const UPLOAD_METHODS = ['OPTIONS', 'HEAD', 'GET', 'PATCH', 'DELETE'];

export function createTusEndpoint(deps: {
  config: Config;
  datastore: DataStore;
  locker: Locker;
  finished: UploadFinishedHook;
  downloadStorage: DownloadStorage;
  concat: ConcatRegistry;
  /** Authentication, ownership, quota, rate limits; see hooks/access.ts. */
  access: AccessControl;
  /** May an upload's bytes be served yet (scan verdict)? */
  contentGate: ContentGate;
  /** Bound on checksummed request bodies spooled to disk at once. */
  spoolBudget: SpoolBudget;
  logger: Logger;
}): TusEndpoint {
  const { concat, access, spoolBudget } = deps;
  const { config, datastore, locker, finished, logger } = deps;
  const download = createDownloadHandler({ datastore, storage: deps.downloadStorage, gate: deps.contentGate, logger });
  const options: ServerOptions & { datastore: DataStore } = {
    path: TUS_PATH,
    datastore,
    locker: new RequestScopedLocker(locker),
    maxSize: config.maxUploadSize,
    namingFunction: () => newUploadId(),
    // The id and the URLs come from the endpoint's own parse of the request (request-target.ts),
    // never from @tus/server's: authorization was decided on exactly this id.
    getFileIdFromRequest: () => tusRequest().id,
    generateUrl: (_req, { id }) => uploadUrl(tusRequest().baseUrl, id),
    allowedOrigins: config.corsOrigins === '*' ? undefined : config.corsOrigins,
    exposedHeaders: ['Retry-After', 'Tus-Checksum-Algorithm', 'Upload-Expires'],
    // How long a PATCH that is asked to give up its lock may take to save what it received.
    lockDrainTimeout: 3000,
    onUploadCreate: async (_req, upload) => {
      validateNewUpload(upload);
      const request = tusRequest();
      await reserveFor(request.principal, upload, { bytes: upload.size ?? request.deferredCreationBytes ?? 0 });
      if (request.creatingPartial) await concat.markPartial(upload.id);
      await finished.created(upload); // status record `uploading` (lib/record-store.ts)
      return {};
    },
    onUploadFinish: async (_req, upload) => {
      await access.quota.complete(upload.id);
      // A partial upload is only material for a final one: nothing to process on its own.
      if (!tusRequest().creatingPartial && (await concat.headerOf(upload.id)) !== 'partial') await finished.enqueue(upload, await ownerForJob(upload.id));
      return {};
    },
    onResponseError: (req, err) => mapTusError(err, logger, { method: req.method, url: req.url }),
  };
  const tus = new Server(options);
  let inFlight = 0;

  async function handle(req: ExpressRequest, res: ServerResponse): Promise<void> {
    inFlight++;
    try {
      applyMethodOverride(req);
      const target = tusTarget(req.url);
      if (!target) {
        sendTusText(req, res, { status: 404, body: 'Not found\n' }, config);
        return;
      }
      const allowed = target.route === 'collection' ? COLLECTION_METHODS : UPLOAD_METHODS;
      if (!allowed.includes(req.method ?? '')) {
        sendTusText(req, res, { status: 405, body: 'Method not allowed\n', headers: { Allow: allowed.join(', ') } }, config);
        return;
      }
      const id = target.route === 'upload' ? target.id : undefined;
      // Every request but the CORS preflight is authenticated before anything touches storage,
      // and another user's upload is answered exactly like an unknown one.
      let principal: Principal = ANONYMOUS;
      if (req.method !== 'OPTIONS') {
        const authenticated = await authenticateOrRefuse(req, res);
        if (!authenticated) return;
        principal = authenticated;
        if (id && !(await access.ownership.canAccess(principal, id))) {
          const body = req.method === 'GET' ? 'Upload not found\n' : ERRORS.FILE_NOT_FOUND.body;
          sendTusText(req, res, { status: 404, body }, config);
          return;
        }
      }
      await runInTusRequest({ principal, id, baseUrl: publicBaseUrl(req, config) }, () => handleAuthorized(req, res, id));
    } catch (err) {
      // handleWeb maps its own errors; this is the last line of defence.
      const mapped = mapTusError(err, logger, { method: req.method, url: req.url });
      if (!res.headersSent) {
        res.writeHead(mapped.status_code, { 'Content-Type': 'text/plain; charset=utf-8', 'Tus-Resumable': '1.0.0' });
        res.end(mapped.body);
      } else {
        res.destroy();
      }
    } finally {
      inFlight--;
    }
  }

  /** The principal, or undefined after answering 401 (503 when the JWKS cannot be fetched). */
  async function authenticateOrRefuse(req: IncomingMessage, res: ServerResponse): Promise<Principal | undefined> {
    try {
      return await access.authenticator.authenticate(req);
    } catch (err) {
      if (!(err instanceof AuthError)) throw err;
      const headers: Record<string, string> =
        err.status === 401 ? { 'WWW-Authenticate': 'Bearer' } : { 'Retry-After': String(RETRY_AFTER_SECONDS) };
      sendTusText(req, res, { status: err.status, body: `${err.message}\n`, headers: { ...headers, ...exposeAuthHeaders } }, config);
      return undefined;
    }
  }

  /** Owner and quota reservation of a new upload, before anything is stored; refusals as tus errors. */
  async function reserveFor(principal: Principal, upload: Upload, opts: { bytes: number; complete?: boolean; replaces?: string[] }): Promise<void> {
    await access.ownership.setOwner(upload.id, principal.userId);
    const reserved = await access.quota.reserve(principal.userId, upload.id, opts.bytes, {
      expiresAt: opts.complete ? 0 : access.expiresAt(),
      complete: opts.complete,
      replaces: opts.replaces,
    });
    if (!reserved.ok) {
      await access.ownership.forget(upload.id);
      // Over quota: 413 (the choice for tus); too many unfinished uploads: 403.
      throw new HookRejection(reserved.code === 'quota_exceeded' ? 413 : 403, `${reserved.message}\n`);
    }
  }

  /** The job's `owner`: the user id with authentication on, null while it is off (anonymous). */
  async function ownerForJob(id: string): Promise<string | null> {
    if (!access.authenticator.enabled) return null;
    return (await access.ownership.ownerOf(id)) ?? tusRequest().principal.userId;
  }

  async function handleAuthorized(req: IncomingMessage, res: ServerResponse, id: string | undefined): Promise<void> {
    if (req.method === 'GET' && id) {
      await download(req, res, id, { 'Tus-Resumable': '1.0.0', ...corsHeaders(req, config), 'Access-Control-Expose-Headers': 'Content-Range, Content-Disposition, ETag, Accept-Ranges' });
      return;
    }
    const gateError = checkTusRequest(req);
    if (gateError) {
      sendTusText(req, res, gateError, config);
      return;
    }
    if (req.method === 'POST') {
      if (!(await creationAllowed(req, res))) return;
      const concatHeader = req.headers['upload-concat'];
      if (typeof concatHeader === 'string') {
        await createConcatenated(req, res, concatHeader);
        return;
      }
      if (!(await creationFits(req, res))) return;
    }
    let response: Response | undefined;
    if (req.method === 'PATCH' && id && checksumSource(req)) {
      // Its body is spooled before @tus/server sees it: under the upload's lock, and only after
      // everything else about it was checked.
      const lock = await takeLock(req, id);
      const request = tusRequest();
      request.heldLock = id;
      try {
        const upload = await patchFits(req, res, id);
        if (!upload) return;
        response = await forwardToTus(req, res, upload, lock.signal);
      } finally {
        request.heldLock = undefined;
        await lock.release();
      }
    } else {
      if (req.method === 'PATCH' && id && !(await patchFits(req, res, id))) return;
      response = await forwardToTus(req, res);
    }
    if (!response) return;
    if (id && req.method === 'DELETE' && response.status === 204) {
      await concat.forget(id);
      await access.quota.release(id);
      await access.ownership.forget(id);
    }
    if (req.method === 'OPTIONS') advertiseExtensions(response, canConcatenate(datastore));
    if (response.status === 503) response.headers.set('Retry-After', String(RETRY_AFTER_SECONDS));
    if (req.method === 'HEAD' && response.status === 200 && id) {
      const concatValue = await concat.headerOf(id);
      if (concatValue) response.headers.set('Upload-Concat', concatValue);
      if (concatValue !== 'partial') await ensureFinishQueued(response, id);
      await addUploadExpires(response, id);
    }
    await sendResponse(res, response);
  }

  /** Creation rate limit (per user and IP): false after answering 429 with Retry-After. */
  async function creationAllowed(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    try {
      await access.rateLimiter.consumeCreation(tusRequest().principal.userId, clientIp(req));
      return true;
    } catch (err) {
      if (!(err instanceof RateLimitedError)) throw err;
      const headers = { 'Retry-After': String(err.retryAfterSeconds), 'Access-Control-Expose-Headers': 'Retry-After, Tus-Resumable' };
      sendTusText(req, res, { status: 429, body: `${err.message}\n`, headers }, config);
      return false;
    }
  }

  /**
   * A creation (POST) that carries a body: the body must fit the declared length, and a
   * deferred-length upload reserves the body's bytes (the quota needs a Content-Length then).
   * False after answering.
   */
  async function creationFits(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const bodyLength = contentLengthOf(req);
    const hasBody = req.headers['content-type'] === 'application/offset+octet-stream';
    const declared = req.headers['upload-length'];
    if (typeof declared === 'string') {
      const size = Number(declared);
      if (size > config.maxUploadSize) return refuse(req, res, ERRORS.ERR_MAX_SIZE_EXCEEDED);
      if (hasBody && bodyLength !== undefined && bodyLength > size) return refuse(req, res, ERRORS.ERR_SIZE_EXCEEDED);
      // A checksummed body is read (spooled) before the upload exists: refuse it first if the
      // reservation it would need is over the quota.
      if (hasBody && checksumSource(req)) {
        const fits = await access.quota.check(tusRequest().principal.userId, size);
        if (!fits.ok) {
          sendTusText(req, res, { status: 413, body: `${fits.message}\n` }, config);
          return false;
        }
      }
      return true;
    }
    if (!hasBody) return true;
    if (bodyLength === undefined) {
      if (access.quota.limits.quotaBytes === 0) return true;
      sendTusText(req, res, { status: 411, body: 'A body for an upload of deferred length needs Content-Length while quotas are on\n' }, config);
      return false;
    }
    if (bodyLength > config.maxUploadSize) return refuse(req, res, ERRORS.ERR_MAX_SIZE_EXCEEDED);
    tusRequest().deferredCreationBytes = bodyLength;
    return true;
  }

  /**
   * Checks a PATCH before any byte of its body is read: the upload exists and is not expired,
   * it is not a final upload, the offset matches, the body fits the length, and the quota
   * reservation covers every byte it may add. Returns the upload, or undefined after answering.
   */
  async function patchFits(req: IncomingMessage, res: ServerResponse, id: string): Promise<Upload | undefined> {
    let upload: Upload;
    try {
      upload = await datastore.getUpload(id);
    } catch (err) {
      refuse(req, res, mapTusError(err, logger, { method: req.method, url: req.url }));
      return undefined;
    }
    const expiry = datastore.getExpiration();
    const created = upload.creation_date ? new Date(upload.creation_date).getTime() : Date.now();
    const finished = upload.size !== undefined && upload.offset === upload.size;
    if (!finished && expiry > 0 && Date.now() > created + expiry) return void refuse(req, res, ERRORS.FILE_NO_LONGER_EXISTS);
    if ((await concat.headerOf(id))?.startsWith('final;')) {
      sendTusText(req, res, { status: 403, body: 'A final upload (Upload-Concat: final) cannot be patched\n' }, config);
      return undefined;
    }
    const offset = Number(req.headers['upload-offset']);
    if (offset !== upload.offset) return void refuse(req, res, ERRORS.INVALID_OFFSET);
    const bodyLength = contentLengthOf(req);
    const declaredHeader = req.headers['upload-length'];
    const declared = typeof declaredHeader === 'string' ? Number(declaredHeader) : undefined;
    if (declared !== undefined) {
      if (upload.size !== undefined || declared < offset) return void refuse(req, res, ERRORS.INVALID_LENGTH);
      if (declared > config.maxUploadSize) return void refuse(req, res, ERRORS.ERR_MAX_SIZE_EXCEEDED);
    }
    const size = upload.size ?? declared;
    if (size !== undefined && bodyLength !== undefined && offset + bodyLength > size) return void refuse(req, res, ERRORS.ERR_SIZE_EXCEEDED);
    if (size === undefined && bodyLength !== undefined && offset + bodyLength > config.maxUploadSize) return void refuse(req, res, ERRORS.ERR_MAX_SIZE_EXCEEDED);
    // The reservation grows before any byte is stored: to the declared length, or for a length
    // still deferred, to what this body can add (which needs its Content-Length under a quota).
    let reserve: number | undefined = declared;
    if (size === undefined && access.quota.limits.quotaBytes > 0) {
      if (bodyLength === undefined) {
        sendTusText(req, res, { status: 411, body: 'A PATCH to an upload of deferred length needs Content-Length while quotas are on\n' }, config);
        return undefined;
      }
      reserve = offset + bodyLength;
    }
    if (reserve !== undefined) {
      const adjusted = await access.quota.adjust(id, reserve, { growOnly: declared === undefined });
      if (!adjusted.ok) {
        sendTusText(req, res, { status: 413, body: `${adjusted.message}\n` }, config);
        return undefined;
      }
    }
    return upload;
  }

  function refuse(req: IncomingMessage, res: ServerResponse, error: { status_code: number; body: string }): false {
    const headers = error.status_code === 503 ? { 'Retry-After': String(RETRY_AFTER_SECONDS) } : undefined;
    sendTusText(req, res, { status: error.status_code, body: error.body.endsWith('\n') ? error.body : `${error.body}\n`, headers }, config);
    return false;
  }

  /** POST with Upload-Concat (see concatenation.ts). */
  async function createConcatenated(req: IncomingMessage, res: ServerResponse, value: string): Promise<void> {
    const parsed = parseConcatHeader(value);
    if (parsed.kind === 'invalid' || !canConcatenate(datastore)) {
      const body = parsed.kind === 'invalid' ? `${parsed.reason}\n` : 'Concatenation is not supported by this store\n';
      sendTusText(req, res, { status: parsed.kind === 'invalid' ? 400 : 501, body }, config);
      return;
    }
    if (parsed.kind === 'partial') {
      if (!(await creationFits(req, res))) return;
      // @tus/server would refuse the header (501): it creates a plain upload we remember as partial.
      removeHeader(req, 'upload-concat');
      tusRequest().creatingPartial = true;
      const response = await forwardToTus(req, res);
      if (response) await sendResponse(res, response);
      return;
    }
    let final;
    let reservedFinal: string | undefined;
    const principal = tusRequest().principal;
    try {
      final = await createFinalUpload({
        store: datastore,
        registry: concat,
        maxSize: config.maxUploadSize,
        urls: parsed.urls,
        metadataHeader: typeof req.headers['upload-metadata'] === 'string' ? req.headers['upload-metadata'] : undefined,
        canUse: (partialId) => access.ownership.canAccess(principal, partialId),
        // The final upload takes over its partials' bytes (they are deleted once it is built).
        beforeStore: async (upload, partials) => {
          try {
            await reserveFor(principal, upload, { bytes: upload.size ?? 0, complete: true, replaces: partials.map((p) => p.id) });
          } catch (err) {
            if (err instanceof HookRejection) throw new ConcatError(err.status_code, err.body);
            throw err;
          }
          reservedFinal = upload.id;
        },
      });
    } catch (err) {
      if (reservedFinal) {
        await access.quota.release(reservedFinal).catch(() => {});
        await access.ownership.forget(reservedFinal).catch(() => {});
      }
      if (!(err instanceof ConcatError)) throw err;
      sendTusText(req, res, { status: err.status_code, body: err.body }, config);
      return;
    }
    for (const url of parsed.urls) {
      const partialId = uploadIdOfUrl(url);
      if (partialId) await access.ownership.forget(partialId);
    }
    await finished.created(final);
    await finished.enqueue(final, await ownerForJob(final.id));
    const location = uploadUrl(tusRequest().baseUrl, final.id);
    const headers = { Location: location, 'Upload-Concat': `final;${parsed.urls.join(' ')}`, ...corsHeaders(req, config) };
    sendTusText(req, res, { status: 201, body: '', headers }, config);
  }

  /**
   * Hands the request to @tus/server. A request with a checksum is first spooled and verified
   * (checksum.ts), never more bytes than the upload can still take; then the verified bytes are
   * replayed from the spool. Returns undefined when the answer was already sent.
   */
  async function forwardToTus(req: IncomingMessage, res: ServerResponse, upload?: Upload, signal?: AbortSignal): Promise<Response | undefined> {
    const source = req.method === 'PATCH' || req.method === 'POST' ? checksumSource(req) : undefined;
    if (!source) {
      // The S3 store reads the request's Content-Length to cut the body into parts up front.
      return runWithUploadRequest(req, () => tus.handleWeb(new NodeRequest({ req, res })));
    }
    const maxBytes = maxBodyBytes(req, upload);
    const spooled = await spoolAndVerify(req, source, { maxBytes, budget: spoolBudget, signal });
    if (spooled.verdict !== 'match') {
      const refusals: Record<typeof spooled.verdict, GateError> = {
        invalid: { status: 400, body: `${spooled.verdict === 'invalid' ? spooled.reason : ''}\n` },
        mismatch: { status: 460, body: 'Checksum Mismatch\n' },
        too_large: { status: 413, body: `Request body larger than the upload can take (at most ${Math.min(maxBytes, spoolBudget.limit)} bytes with a checksum)\n` },
        busy: { status: 503, body: 'Too many checksummed uploads are being verified; retry shortly\n', headers: { 'Retry-After': String(RETRY_AFTER_SECONDS) } },
      };
      sendTusText(req, res, refusals[spooled.verdict], config);
      return undefined;
    }
    try {
      const headers = new Headers();
      for (const [name, value] of Object.entries(req.headers)) {
        if (value === undefined || ['upload-checksum', 'trailer', 'transfer-encoding', 'content-length', 'connection', 'host'].includes(name)) continue;
        headers.set(name, Array.isArray(value) ? value.join(', ') : value);
      }
      headers.set('content-length', String(spooled.size));
      // The URL is not read: the id and the public URL come from the request context.
      const verified = new Request(`http://localhost${TUS_PATH}/${tusRequest().id ?? ''}`, {
        method: req.method,
        headers,
        body: spooled.size > 0 ? (Readable.toWeb(fs.createReadStream(spooled.path)) as ReadableStream<Uint8Array>) : null,
        duplex: 'half',
      } as RequestInit);
      return await runWithUploadRequest(verified, () => tus.handleWeb(verified));
    } finally {
      await discardSpool(spooled);
    }
  }

  /** The most body bytes a request may carry: what the upload can still take, else MAX_UPLOAD_SIZE. */
  function maxBodyBytes(req: IncomingMessage, upload: Upload | undefined): number {
    const offset = upload?.offset ?? 0;
    const declared = req.headers['upload-length'];
    const size = upload?.size ?? (typeof declared === 'string' ? Number(declared) : undefined);
    const limit = size ?? config.maxUploadSize;
    const quotaLimited = size === undefined && access.quota.limits.quotaBytes > 0 ? contentLengthOf(req) : undefined;
    return Math.max(0, Math.min(limit - offset, quotaLimited ?? Infinity));
  }

  /**
   * Takes the upload's lock for this request (the Redis locker, so across instances). Another
   * request asking for it aborts the spooling (nothing of it was stored yet).
   */
  async function takeLock(req: IncomingMessage, id: string) {
    const released = new AbortController();
    const gone = new AbortController();
    const onClose = () => gone.abort(ERRORS.ABORTED);
    req.once('close', onClose);
    const lock = locker.newLock(id);
    try {
      // The locker bounds the wait (LOCK_ACQUIRE_TIMEOUT, then 423); a client that leaves stops it.
      await lock.lock(gone.signal, () => released.abort(new Error('lock release requested')));
    } finally {
      req.off('close', onClose);
    }
    return { signal: released.signal, release: () => lock.unlock() };
  }

  /**
   * A finished upload whose job could not be queued when it finished (Redis briefly down:
   * the client saw a 503, then a HEAD showing the upload complete, and will not PATCH again)
   * gets its job on that HEAD. Adding is idempotent (upload id = job id).
   */
  async function ensureFinishQueued(response: Response, id: string): Promise<void> {
    const offset = response.headers.get('upload-offset');
    const length = response.headers.get('upload-length');
    if (offset === null || offset !== length) return;
    try {
      const upload = await datastore.getUpload(id);
      if (upload.size === undefined || upload.offset !== upload.size) return;
      await access.quota.complete(id);
      await finished.enqueue(upload, await ownerForJob(id));
    } catch (err) {
      logger.warn({ err, uploadId: id }, 'could not re-check the processing job of a finished upload');
    }
  }

  /** tus: the Server SHOULD include Upload-Expires on HEAD of an unfinished upload (@tus/server omits it). */
  async function addUploadExpires(response: Response, id: string): Promise<void> {
    const expiry = datastore.getExpiration();
    if (expiry <= 0 || response.headers.get('upload-offset') === response.headers.get('upload-length')) return;
    try {
      const upload = await datastore.getUpload(id);
      if (upload.creation_date) {
        response.headers.set('Upload-Expires', new Date(new Date(upload.creation_date).getTime() + expiry).toUTCString());
      }
    } catch {
      // Removed in between: the HEAD answer stands as it is.
    }
  }

  return { tus, handle, inFlight: () => inFlight };
}

/** The URL of an upload under the tus endpoint. */
export function uploadUrl(baseUrl: string, id: string): string {
  return `${baseUrl}${TUS_PATH}/${id}`;
}

/**
 * Writes a web Response to the node response. Settles when it is written or when the client is
 * gone (srvx's own promise never settles on a destroyed socket, which would keep the request
 * "in flight" until shutdown gives up on it).
 */
async function sendResponse(res: ServerResponse, response: Response): Promise<void> {
  if (res.destroyed) {
    await response.body?.cancel().catch(() => {});
    return;
  }
  await Promise.race([sendNodeResponse(res, response), streamFinished(res).catch(() => {})]);
}

function contentLengthOf(req: IncomingMessage): number | undefined {
  const raw = req.headers['content-length'];
  return typeof raw === 'string' && /^\d+$/.test(raw) ? Number(raw) : undefined;
}

/** tus clients in browsers read these on a 401/503 from tusk itself. */
const exposeAuthHeaders = { 'Access-Control-Expose-Headers': 'WWW-Authenticate, Retry-After, Tus-Resumable' };

/** Removes a request header before the request is handed on (srvx reads rawHeaders too). */
function removeHeader(req: IncomingMessage, lowerName: string): void {
  delete req.headers[lowerName];
  for (let i = req.rawHeaders.length - 2; i >= 0; i -= 2) {
    if (req.rawHeaders[i]?.toLowerCase() === lowerName) req.rawHeaders.splice(i, 2);
  }
}

/** OPTIONS: checksum and concatenation live in this layer, not in the stores @tus/server asks. */
function advertiseExtensions(response: Response, concatenation: boolean): void {
  const extensions = response.headers.get('tus-extension');
  const ours = ['checksum', 'checksum-trailer', ...(concatenation ? ['concatenation'] : [])];
  if (extensions !== null) response.headers.set('Tus-Extension', [extensions, ...ours].join(','));
  response.headers.set('Tus-Checksum-Algorithm', CHECKSUM_ALGORITHMS.join(','));
}

/** Access-Control-Allow-Origin for responses tusk writes itself (as @tus/server does for its own). */
function corsHeaders(req: IncomingMessage, config: Config): Record<string, string> {
  const origin = req.headers.origin;
  const allowOrigin =
    config.corsOrigins === '*' ? '*' : origin && config.corsOrigins.includes(origin) ? origin : config.corsOrigins[0];
  return allowOrigin ? { 'Access-Control-Allow-Origin': allowOrigin } : {};
}

/** Reason phrases Node does not know (tus checksum extension). */
const REASON_PHRASES: Record<number, string> = { 460: 'Checksum Mismatch' };

/** A short text answer written by tusk itself (gate errors, 460, the final-upload 201), with tus and CORS headers. */
function sendTusText(req: IncomingMessage, res: ServerResponse, error: GateError, config: Config): void {
  const headers = {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': Buffer.byteLength(error.body),
    'Tus-Resumable': '1.0.0',
    ...corsHeaders(req, config),
    'Access-Control-Expose-Headers': 'Tus-Version, Tus-Resumable, Upload-Offset, Location',
    ...error.headers,
  };
  const reason = REASON_PHRASES[error.status];
  if (reason) res.writeHead(error.status, reason, headers);
  else res.writeHead(error.status, headers);
  // Do not read a body we refused: close the connection instead of draining a large PATCH.
  if ((req.headers['content-length'] ?? '0') !== '0' || req.headers['transfer-encoding']) res.shouldKeepAlive = false;
  res.end(wireMethod(req) === 'HEAD' ? undefined : error.body);
}
