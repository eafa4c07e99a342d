// The tus endpoint (/files/): @tus/server with our store, the Redis locker and the hooks,
// behind the protocol gate, with error mapping and a count of requests in flight (for
// graceful shutdown).
import fs from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { Server, type ServerOptions } from '@tus/server';
import { ERRORS, type DataStore, type Locker, type Upload } from '@tus/utils';
import { NodeRequest, sendNodeResponse } from 'srvx/node';
import type { Config } from '../../config/index.js';
import type { Logger } from '../../lib/logger.js';
import { AuthError, type Principal } from '../../hooks/auth.js';
import { RateLimitedError } from '../../hooks/rate-limit.js';
import { HookRejection, validateNewUpload } from '../../hooks/upload-create.js';
import { clientIp, currentPrincipal, runAsPrincipal, type AccessControl } from './access.js';
import type { UploadFinishedHook } from '../../hooks/upload-finished.js';
import { CHECKSUM_ALGORITHMS, checksumSource, discardSpool, spoolAndVerify } from './checksum.js';
import {
  canConcatenate,
  ConcatError,
  createFinalUpload,
  isCreatingPartial,
  parseConcatHeader,
  partialIdOf,
  runCreatingPartial,
  type ConcatRegistry,
} from './concatenation.js';
import { createDownloadHandler, type DownloadStorage } from './download.js';
import { mapTusError } from './errors.js';
import { applyMethodOverride, checkTusRequest, type GateError } from './protocol-gate.js';
import { runWithUploadRequest } from './s3-request-context.js';

export const TUS_PATH = '/files';
/** Seconds a client should wait before retrying after a 503 (storage or Redis down). */
export const RETRY_AFTER_SECONDS = 5;

export interface TusEndpoint {
  tus: Server;
  handle(req: IncomingMessage, res: ServerResponse): Promise<void>;
  /** Requests whose handling has not finished yet (including saving what they received). */
  inFlight(): number;
}

export function createTusEndpoint(deps: {
  config: Config;
  datastore: DataStore;
  locker: Locker;
  finished: UploadFinishedHook;
  downloadStorage: DownloadStorage;
  concat: ConcatRegistry;
  /** Authentication, ownership, quota, rate limits (issue 5); see server/tus/access.ts. */
  access: AccessControl;
  logger: Logger;
}): TusEndpoint {
  const { concat, access } = deps;
  const { config, datastore, locker, finished, logger } = deps;
  const download = createDownloadHandler({ datastore, storage: deps.downloadStorage, logger });
  const publicUrl = config.publicUrl;
  const options: ServerOptions & { datastore: DataStore } = {
    path: TUS_PATH,
    datastore,
    locker,
    maxSize: config.maxUploadSize,
    respectForwardedHeaders: config.trustProxy,
    allowedOrigins: config.corsOrigins === '*' ? undefined : config.corsOrigins,
    exposedHeaders: ['Retry-After', 'Tus-Checksum-Algorithm', 'Upload-Expires'],
    // How long a PATCH that is asked to give up its lock may take to save what it received.
    lockDrainTimeout: 3000,
    ...(publicUrl ? { generateUrl: (_req, { path, id }) => `${publicUrl}${path}/${id}` } : {}),
    onUploadCreate: async (_req, upload) => {
      validateNewUpload(upload);
      await reserveFor(currentPrincipal(), upload, {});
      if (isCreatingPartial()) await concat.markPartial(upload.id);
      await finished.created(upload); // status record `uploading` (workers/pipeline/record.ts)
      return {};
    },
    onUploadFinish: async (_req, upload) => {
      await access.quota.complete(upload.id);
      // A partial upload is only material for a final one: nothing to process on its own.
      if (!isCreatingPartial() && (await concat.headerOf(upload.id)) !== 'partial') await finished.enqueue(upload, await ownerForJob(upload.id));
      return {};
    },
    onResponseError: (req, err) => mapTusError(err, logger, { method: req.method, url: req.url }),
  };
  const tus = new Server(options);
  let inFlight = 0;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    inFlight++;
    try {
      applyMethodOverride(req);
      const id = uploadIdOf(req);
      // Issue 5: every request but the CORS preflight is authenticated before anything touches
      // storage, and another user's upload is answered exactly like an unknown one.
      let principal: Principal | undefined;
      if (req.method !== 'OPTIONS') {
        principal = await authenticateOrRefuse(req, res);
        if (!principal) return;
        if (id && !(await access.ownership.canAccess(principal, id))) {
          const body = req.method === 'GET' ? 'Upload not found\n' : ERRORS.FILE_NOT_FOUND.body;
          sendTusText(req, res, { status: 404, body }, config);
          return;
        }
      }
      await runAsPrincipal(principal ?? currentPrincipal(), () => handleAuthorized(req, res, id));
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
  async function reserveFor(principal: Principal, upload: Upload, opts: { complete?: boolean; replaces?: string[] }): Promise<void> {
    await access.ownership.setOwner(upload.id, principal.userId);
    const reserved = await access.quota.reserve(principal.userId, upload.id, upload.size ?? 0, {
      expiresAt: opts.complete ? 0 : access.expiresAt(),
      ...opts,
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
    return (await access.ownership.ownerOf(id)) ?? currentPrincipal().userId;
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
    if (req.method === 'POST' && !id && !(await creationAllowed(req, res))) return;
    if (req.method === 'PATCH' && id && !(await declaredLengthFits(req, res, id))) return;
    const concatHeader = req.method === 'POST' ? req.headers['upload-concat'] : undefined;
    if (typeof concatHeader === 'string') {
      await createConcatenated(req, res, concatHeader);
      return;
    }
    if (req.method === 'PATCH' && id && (await concat.headerOf(id))?.startsWith('final;')) {
      sendTusText(req, res, { status: 403, body: 'A final upload (Upload-Concat: final) cannot be patched\n' }, config);
      return;
    }
    const response = await forwardToTus(req, res);
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
    await sendNodeResponse(res, response);
  }

  /** Creation rate limit (per user and IP): false after answering 429 with Retry-After. */
  async function creationAllowed(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    try {
      await access.rateLimiter.consumeCreation(currentPrincipal().userId, clientIp(req));
      return true;
    } catch (err) {
      if (!(err instanceof RateLimitedError)) throw err;
      const headers = { 'Retry-After': String(err.retryAfterSeconds), 'Access-Control-Expose-Headers': 'Retry-After, Tus-Resumable' };
      sendTusText(req, res, { status: 429, body: `${err.message}\n`, headers }, config);
      return false;
    }
  }

  /**
   * A PATCH declaring a deferred Upload-Length: the reservation grows to it before any byte is
   * stored (413 when that is over the quota).
   */
  async function declaredLengthFits(req: IncomingMessage, res: ServerResponse, id: string): Promise<boolean> {
    const header = req.headers['upload-length'];
    if (typeof header !== 'string' || !/^\d+$/.test(header)) return true;
    let upload: Upload;
    try {
      upload = await datastore.getUpload(id);
    } catch {
      return true; // @tus/server answers the unknown upload
    }
    if (!upload.sizeIsDeferred && upload.size !== undefined) return true;
    const adjusted = await access.quota.adjust(id, Number(header));
    if (adjusted.ok) return true;
    sendTusText(req, res, { status: 413, body: `${adjusted.message}\n` }, config);
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
      // @tus/server would refuse the header (501): it creates a plain upload we remember as partial.
      removeHeader(req, 'upload-concat');
      const response = await runCreatingPartial(() => forwardToTus(req, res));
      if (response) await sendNodeResponse(res, response);
      return;
    }
    let final;
    let reservedFinal: string | undefined;
    const principal = currentPrincipal();
    try {
      final = await createFinalUpload({
        store: datastore,
        registry: concat,
        tusPath: TUS_PATH,
        maxSize: config.maxUploadSize,
        urls: parsed.urls,
        metadataHeader: typeof req.headers['upload-metadata'] === 'string' ? req.headers['upload-metadata'] : undefined,
        canUse: (partialId) => access.ownership.canAccess(principal, partialId),
        // The final upload takes over its partials' bytes (they are deleted once it is built).
        beforeStore: async (upload, partials) => {
          try {
            await reserveFor(principal, upload, { complete: true, replaces: partials.map((p) => p.id) });
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
      const partialId = partialIdOf(url, TUS_PATH);
      if (partialId) await access.ownership.forget(partialId);
    }
    await finished.created(final);
    await finished.enqueue(final, await ownerForJob(final.id));
    const location = tus.handlers.POST.generateUrl(new NodeRequest({ req, res }), final.id);
    const headers = { Location: location, 'Upload-Concat': `final;${parsed.urls.join(' ')}`, ...corsHeaders(req, config) };
    sendTusText(req, res, { status: 201, body: '', headers }, config);
  }

  /**
   * Hands the request to @tus/server. A request with a checksum is first spooled and verified
   * (checksum.ts); then the verified bytes are replayed from the spool. Returns undefined when
   * the answer was already sent (checksum mismatch or malformed checksum).
   */
  async function forwardToTus(req: IncomingMessage, res: ServerResponse): Promise<Response | undefined> {
    const source = req.method === 'PATCH' || req.method === 'POST' ? checksumSource(req) : undefined;
    if (!source) {
      // The S3 store reads the request's Content-Length to cut the body into parts up front.
      return runWithUploadRequest(req, () => tus.handleWeb(new NodeRequest({ req, res })));
    }
    const spooled = await spoolAndVerify(req, source);
    if (spooled.verdict === 'invalid') {
      sendTusText(req, res, { status: 400, body: `${spooled.reason}\n` }, config);
      return undefined;
    }
    if (spooled.verdict === 'mismatch') {
      sendTusText(req, res, { status: 460, body: 'Checksum Mismatch\n' }, config);
      return undefined;
    }
    try {
      const headers = new Headers();
      for (const [name, value] of Object.entries(req.headers)) {
        if (value === undefined || ['upload-checksum', 'trailer', 'transfer-encoding', 'content-length', 'connection'].includes(name)) continue;
        headers.set(name, Array.isArray(value) ? value.join(', ') : value);
      }
      headers.set('content-length', String(spooled.size));
      const verified = new Request(`http://${req.headers.host ?? 'localhost'}${req.url ?? '/'}`, {
        method: req.method,
        headers,
        body: spooled.size > 0 ? (Readable.toWeb(fs.createReadStream(spooled.path)) as ReadableStream<Uint8Array>) : null,
        duplex: 'half',
      } as RequestInit);
      return await runWithUploadRequest(verified, () => tus.handleWeb(verified));
    } finally {
      await discardSpool(spooled.path);
    }
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
      await access.quota.complete(id);
      await finished.enqueue(await datastore.getUpload(id), await ownerForJob(id));
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

/** tus clients in browsers read these on a 401/503 from tusk itself. */
const exposeAuthHeaders = { 'Access-Control-Expose-Headers': 'WWW-Authenticate, Retry-After, Tus-Resumable' };

/** Removes a request header before the request is handed on (srvx reads rawHeaders too). */
function removeHeader(req: IncomingMessage, lowerName: string): void {
  delete req.headers[lowerName];
  for (let i = req.rawHeaders.length - 2; i >= 0; i -= 2) {
    if (req.rawHeaders[i]?.toLowerCase() === lowerName) req.rawHeaders.splice(i, 2);
  }
}

/** The upload id of /files/<id>, or undefined for /files/ itself. */
function uploadIdOf(req: IncomingMessage): string | undefined {
  const path = (req.url ?? '').split('?')[0] ?? '';
  if (!path.startsWith(`${TUS_PATH}/`)) return undefined;
  const rest = path.slice(TUS_PATH.length + 1).replace(/\/$/, '');
  if (!rest || rest.includes('/')) return undefined;
  try {
    return decodeURIComponent(rest);
  } catch {
    return undefined;
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
  res.end(req.method === 'HEAD' ? undefined : error.body);
}
