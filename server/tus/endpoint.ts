// The tus endpoint (/files/): @tus/server with tusk's store, the Redis locker and the upload
// lifecycle (hooks/lifecycle.ts), behind the one URL parser (server/http/request-target.ts) and the
// protocol gate; errors from the catalogue (lib/errors.ts) as short text; a count of requests in
// flight (for graceful shutdown).
import fs from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable, pipeline as pipeStreams } from 'node:stream';
import { finished as streamFinished } from 'node:stream/promises';
import { Server, type ServerOptions } from '@tus/server';
import { ERRORS, EVENTS, type DataStore, type Locker, type Upload } from '@tus/utils';
import type { Request as ExpressRequest } from 'express';
import { NodeRequest, sendNodeResponse } from 'srvx/node';
import type { Config } from '../../config/index.js';
import { clientIp, type AccessControl } from '../../hooks/access.js';
import { ANONYMOUS, type Principal } from '../../hooks/auth.js';
import type { UploadLifecycle } from '../../hooks/lifecycle.js';
import { validateNewUpload } from '../../hooks/upload-create.js';
import { RETRY_AFTER_SECONDS, TuskError } from '../../lib/errors.js';
import type { Logger } from '../../lib/logger.js';
import type { ObjectStorage } from '../../lib/object-storage.js';
import type { StorageLocation } from '../../lib/queues.js';
import { baseFromMetadata } from '../../lib/record-store.js';
import { canConcatenate } from '../../lib/stores/concatenating-store.js';
import { runWithUploadRequest } from '../../lib/stores/s3-request-context.js';
import { newUploadId } from '../../lib/upload-id.js';
import { allowedOrigin } from '../http/cors.js';
import { ERROR_CODE_HEADER, errorHeaders, toTuskError } from '../http/errors.js';
import { publicBaseUrl } from '../http/public-url.js';
import { REQUEST_ID_HEADER } from '../http/request-id.js';
import { TUS_PATH, tusTarget, uploadIdOfUrl } from '../http/request-target.js';
import { CHECKSUM_ALGORITHMS, checksumSource, discardSpool, spoolAndVerify, type SpoolBudget } from './checksum.js';
import { createFinalUpload, parseConcatHeader, type ConcatRegistry } from './concatenation.js';
import { DigestTap, parseDigestField, streamMatches, type ReprDigestRegistry } from './digest.js';
import { createDownloadHandler, type ContentGate, type DownloadStorage } from './download.js';
import {
  completenessHeader,
  draftMetadata,
  draftRulesOf,
  DRAFT_REQUEST_HEADERS,
  DRAFT_RESPONSE_HEADERS,
  INTEROP_HEADER,
  PARTIAL_UPLOAD,
  problem,
  problemBody,
  requestCompletes,
  sendInterim104,
  setRequestHeader,
  sfInteger,
  uploadLimit,
  type DraftRules,
} from './draft.js';
import { applyMethodOverride, checkTusRequest, wireMethod } from './protocol-gate.js';
import { RequestScopedLocker, runInTusRequest, tusRequest, type DraftRequestState } from './request-context.js';

export { TUS_PATH };

export interface TusEndpoint {
  tus: Server;
  handle(req: ExpressRequest, res: ServerResponse): Promise<void>;
  /** Requests whose handling has not finished yet (including saving what they received). */
  inFlight(): number;
}

const COLLECTION_METHODS = ['OPTIONS', 'POST'];
const UPLOAD_METHODS = ['OPTIONS', 'HEAD', 'GET', 'PATCH', 'DELETE'];

/**
 * How often a draft request whose body is streaming looks at the upload's stored offset, to tell
 * its client in a 104 how far the bytes are safe (only offsets the store has persisted: the draft
 * makes Upload-Offset a promise that nothing before it needs sending again).
 */
const DRAFT_PROGRESS_INTERVAL_MS = 1000;

/** What a draft request was translated into, for the translation of its answer. */
interface DraftPlan {
  /** The client says this request ends the upload. */
  completes?: boolean;
  /** It ends the upload but its length is known only once the body has arrived (no Content-Length). */
  completeAfterBody?: boolean;
  /** A GET handled as offset retrieval (the latest draft: like HEAD). */
  get?: boolean;
  /** Answered without the tus handler (an empty append completing an already complete upload). */
  done?: boolean;
}

/** Where a tus upload's bytes are, for the processing job. */
export function storageLocation(upload: Upload): StorageLocation {
  const storage = upload.storage;
  if (storage?.type === 's3' && storage.bucket) return { type: 's3', bucket: storage.bucket, key: storage.path };
  if (storage?.type === 'file') return { type: 'file', path: storage.path };
  throw new Error(`upload ${upload.id} has no known storage location`);
}

export function createTusEndpoint(deps: {
  config: Config;
  datastore: DataStore;
  locker: Locker;
  lifecycle: UploadLifecycle;
  downloadStorage: DownloadStorage;
  concat: ConcatRegistry;
  /** Repr-Digests of draft uploads, checked when they complete. */
  reprDigests: ReprDigestRegistry;
  /** Reads a completed upload back (a Repr-Digest that spans several requests). */
  storage: Pick<ObjectStorage, 'openRead'>;
  access: AccessControl;
  /** May an upload's bytes be served yet (scan verdict)? */
  contentGate: ContentGate;
  /** Bound on checksummed request bodies spooled to disk at once. */
  spoolBudget: SpoolBudget;
  logger: Logger;
}): TusEndpoint {
  const { config, datastore, locker, lifecycle, concat, reprDigests, access, spoolBudget, logger } = deps;
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
    exposedHeaders: ['Retry-After', 'Tus-Checksum-Algorithm', 'Upload-Expires', ERROR_CODE_HEADER, REQUEST_ID_HEADER, ...DRAFT_RESPONSE_HEADERS],
    allowedHeaders: DRAFT_REQUEST_HEADERS,
    // How long a PATCH that is asked to give up its lock may take to save what it received.
    lockDrainTimeout: 3000,
    onUploadCreate: async (_req, upload) => {
      validateNewUpload(upload);
      const request = tusRequest();
      await lifecycle.create(request.principal, upload.id, {
        bytes: upload.size ?? request.deferredCreationBytes ?? 0,
        record: baseFromMetadata(upload.id, upload.size ?? null, upload.metadata ?? {}),
      });
      if (request.creatingPartial) await concat.markPartial(upload.id);
      if (request.draft?.reprDigest) await reprDigests.remember(upload.id, request.draft.reprDigest);
      return {};
    },
    onUploadFinish: async (_req, upload) => {
      await finishUpload(upload);
      return {};
    },
    onResponseError: (req, err) => {
      const error = toTuskError(err, logger, { method: req.method, url: req.url });
      // The catalogue code and headers are added to @tus/server's answer once it is built.
      tusRequest().error = error;
      return { status_code: error.status, body: `${error.message}\n` };
    },
  };
  const tus = new Server(options);
  // A draft creation announces its upload's URL in a 104 as soon as the upload exists, before its
  // body is read (emitted synchronously inside the request's context).
  tus.on(EVENTS.POST_CREATE, (_req, upload, url) => tusRequest().draft?.created?.(upload.id, url));
  let inFlight = 0;

  async function handle(req: ExpressRequest, res: ServerResponse): Promise<void> {
    inFlight++;
    // A request of the IETF draft is answered in its terms (problem details) from the first refusal on.
    const speaksDraft = req.headers[INTEROP_HEADER.toLowerCase()] !== undefined;
    let draft: DraftRules | undefined;
    try {
      applyMethodOverride(req);
      const target = tusTarget(req.url);
      if (!target) throw new TuskError('not_found', 'Not found');
      const allowed = target.route === 'collection' ? COLLECTION_METHODS : UPLOAD_METHODS;
      if (!allowed.includes(req.method ?? '')) throw new TuskError('method_not_allowed', undefined, {}, { Allow: allowed.join(', ') });
      draft = draftRulesOf(req);
      const id = target.route === 'upload' ? target.id : undefined;
      // Every request but the CORS preflight is authenticated before anything touches storage,
      // and another user's upload is answered exactly like an unknown one.
      let principal: Principal = ANONYMOUS;
      if (req.method !== 'OPTIONS') {
        principal = await access.authenticator.authenticate(req);
        if (id && !(await access.ownership.canAccess(principal, id))) throw new TuskError('not_found', req.method === 'GET' ? 'Upload not found' : ERRORS.FILE_NOT_FOUND.body.trim());
      }
      const draftState = draft ? { rules: draft } : undefined;
      await runInTusRequest({ principal, id, baseUrl: publicBaseUrl(req, config), draft: draftState }, () => handleAuthorized(req, res, id));
    } catch (err) {
      const error = toTuskError(err, logger, { method: req.method, url: req.url });
      if (speaksDraft) sendDraftError(req, res, error, draft, config);
      else sendTusError(req, res, error, config);
    } finally {
      inFlight--;
    }
  }

  /** The upload's bytes are complete: processing, unless it is a partial of a concatenation. */
  async function finishUpload(upload: Upload): Promise<void> {
    // A Repr-Digest sent for the whole representation: the stored bytes must match before anything
    // processes them.
    const expected = await reprDigests.expected(upload.id);
    if (expected) {
      if (!(await streamMatches(await deps.storage.openRead(storageLocation(upload)), expected))) {
        await discardUpload(upload.id);
        throw new TuskError('digest_mismatch', 'Repr-Digest does not match the uploaded representation; the upload was cancelled');
      }
      await reprDigests.forget(upload.id);
    }
    if (tusRequest().creatingPartial || (await concat.headerOf(upload.id)) === 'partial') {
      await lifecycle.finishPartial(upload.id, upload.size ?? upload.offset);
      return;
    }
    await lifecycle.finish(upload.id, { location: storageLocation(upload), size: upload.size ?? upload.offset, metadata: upload.metadata ?? {} });
  }

  async function handleAuthorized(req: IncomingMessage, res: ServerResponse, id: string | undefined): Promise<void> {
    const draft = tusRequest().draft;
    let plan: DraftPlan | undefined;
    if (draft) {
      plan = await translateDraftRequest(req, res, id, draft);
      if (plan.done) {
        await sendResponse(res, await draftAnswer(req, id, new Response(null, { status: 204 }), draft, plan));
        return;
      }
    }
    if (req.method === 'GET' && id) {
      await download(req, res, id, { 'Tus-Resumable': '1.0.0', ...corsHeaders(req, config), 'Access-Control-Expose-Headers': 'Content-Range, Content-Disposition, ETag, Accept-Ranges' });
      return;
    }
    const gateError = checkTusRequest(req);
    if (gateError) throw gateError;
    if (req.method === 'POST') {
      await access.rateLimiter.consumeCreation(tusRequest().principal.userId, clientIp(req));
      const concatHeader = req.headers['upload-concat'];
      if (typeof concatHeader === 'string') {
        await createConcatenated(req, res, concatHeader);
        return;
      }
      await checkCreation(req);
    }
    let response: Response;
    if (req.method === 'PATCH' && id && checksumSource(req)) {
      // Its body is spooled before @tus/server sees it: under the upload's lock, and only after
      // everything else about it was checked.
      const lock = await takeLock(req, id);
      const request = tusRequest();
      request.heldLock = id;
      try {
        const upload = await checkPatch(req, id);
        response = await forwardToTus(req, res, upload, lock.signal);
      } finally {
        request.heldLock = undefined;
        await lock.release();
      }
    } else {
      if (req.method === 'PATCH' && id) await checkPatch(req, id);
      // A draft body (never checksummed the tus way) reports its progress in 104s while it streams.
      const stopProgress = draft && (req.method === 'POST' || req.method === 'PATCH') ? reportProgress(req, res, id, draft) : undefined;
      try {
        response = await forwardToTus(req, res);
      } finally {
        stopProgress?.();
      }
    }
    const error = tusRequest().error;
    if (error) for (const [name, value] of Object.entries(errorHeaders(error))) response.headers.set(name, value);
    noteReceived(req, response);
    if (id && req.method === 'DELETE' && response.status === 204) {
      await concat.forget(id);
      await reprDigests.forget(id);
      await lifecycle.terminate(id, 'terminated');
    }
    if (req.method === 'OPTIONS') advertiseExtensions(response, canConcatenate(datastore));
    if (req.method === 'HEAD' && response.status === 200 && id) {
      const concatValue = await concat.headerOf(id);
      if (concatValue) response.headers.set('Upload-Concat', concatValue);
      if (concatValue !== 'partial') await ensureFinishQueued(response, id);
      await addUploadExpires(response, id);
    }
    if (draft && plan) response = await draftAnswer(req, id, response, draft, plan);
    await sendResponse(res, response);
  }

  /**
   * Rewrites a draft request into the tus request it means (the same handler then serves both):
   * its completeness and length into Upload-Length / Upload-Defer-Length, its Content-Disposition
   * and Content-Type into Upload-Metadata, its body type into tus's. Refuses what the version does
   * not allow, and lengths that contradict each other or the upload (inconsistent-upload-length).
   */
  async function translateDraftRequest(req: IncomingMessage, res: ServerResponse, id: string | undefined, draft: DraftRequestState): Promise<DraftPlan> {
    const { rules } = draft;
    const method = req.method ?? '';
    if (rules.version === 3 && ['HEAD', 'GET', 'DELETE'].includes(method) && (req.headers['upload-offset'] !== undefined || req.headers['upload-incomplete'] !== undefined)) {
      throw new TuskError('invalid_request', `A ${method} must not carry Upload-Offset or Upload-Incomplete`);
    }
    // Never a tus feature through the draft's door: concatenation, tus checksums, overrides.
    for (const name of ['upload-concat', 'upload-checksum', 'trailer', 'upload-defer-length']) setRequestHeader(req, name, undefined);
    setRequestHeader(req, 'tus-resumable', '1.0.0');
    if (method === 'OPTIONS' || method === 'DELETE' || method === 'HEAD') return {};
    if (method === 'GET') {
      // The latest draft: a GET of the upload resource is an offset retrieval like HEAD.
      req.method = 'HEAD';
      return { get: true };
    }
    const bodyLength = contentLengthOf(req);
    const chunked = bodyLength === undefined && req.headers['transfer-encoding'] !== undefined;
    const headerName = rules.completeHeader === 'upload-incomplete' ? 'Upload-Incomplete' : 'Upload-Complete';
    const declared = sfInteger(req.headers['upload-length']);
    if (method === 'POST') {
      if (rules.version === 3 && req.headers['upload-offset'] !== undefined) throw new TuskError('invalid_request', 'A creation must not carry Upload-Offset');
      const completes = requestCompletes(req, rules, true);
      if (completes === undefined) throw new TuskError('invalid_request', `${headerName} (?0 or ?1) is required to create a resumable upload`);
      let length = declared;
      if (completes && bodyLength !== undefined) {
        if (length !== undefined && length !== bodyLength) throw problem('inconsistent-upload-length', `Upload-Length ${length} contradicts the complete body of ${bodyLength} bytes`);
        length = bodyLength;
      }
      if (length !== undefined && bodyLength !== undefined && bodyLength > length) throw problem('inconsistent-upload-length', `A body of ${bodyLength} bytes does not fit Upload-Length ${length}`);
      const metadata = draftMetadata(req, typeof req.headers['content-type'] === 'string' ? req.headers['content-type'] : undefined);
      setRequestHeader(req, 'upload-metadata', metadata);
      setRequestHeader(req, 'upload-length', length === undefined ? undefined : String(length));
      setRequestHeader(req, 'upload-defer-length', length === undefined ? '1' : undefined);
      setRequestHeader(req, 'upload-offset', undefined);
      setRequestHeader(req, 'content-type', (bodyLength ?? 0) > 0 || chunked ? 'application/offset+octet-stream' : undefined);
      await prepareDigests(req, undefined, draft, completes, !chunked && (bodyLength ?? 0) === 0);
      draft.created = (uploadId, url) => {
        draft.createdId = uploadId;
        draft.createdUrl = url;
        const headers: Record<string, string> = { Location: url };
        if (rules.lengthAndLimits) headers['Upload-Limit'] = uploadLimit(rules, config.maxUploadSize, expirySeconds(Date.now()));
        sendInterim104(req, res, rules, headers);
      };
      return { completes, completeAfterBody: completes && length === undefined };
    }
    // PATCH: an append.
    const contentType = typeof req.headers['content-type'] === 'string' ? req.headers['content-type'].split(';')[0]!.trim().toLowerCase() : undefined;
    if (rules.partialUploadType && contentType !== PARTIAL_UPLOAD) throw new TuskError('unsupported_media_type', `Content-Type must be ${PARTIAL_UPLOAD}`);
    const offset = sfInteger(req.headers['upload-offset']);
    if (offset === undefined) throw new TuskError('invalid_request', 'Upload-Offset must be a non-negative integer');
    const completes = requestCompletes(req, rules, false);
    if (completes === undefined) throw new TuskError('invalid_request', `${headerName} must be ?0 or ?1`);
    const upload = await datastore.getUpload(id!);
    if (offset !== upload.offset) throw offsetMismatch(upload.offset, offset);
    const size = upload.size;
    const empty = bodyLength === 0 || (bodyLength === undefined && !chunked);
    if (size !== undefined && upload.offset === size) {
      // Already complete: an empty append that completes it again is answered as done (its first
      // answer may have been lost); any byte more contradicts the length.
      if (empty && completes) return { completes, done: true };
      throw problem(empty ? 'completed-upload' : 'inconsistent-upload-length', empty ? 'The upload is already complete' : 'The upload is complete; no more bytes can be appended');
    }
    let length = declared;
    if (completes && bodyLength !== undefined) {
      if (length !== undefined && length !== offset + bodyLength) throw problem('inconsistent-upload-length', `Upload-Length ${length} contradicts the final body ending at ${offset + bodyLength}`);
      length = offset + bodyLength;
    }
    if (length !== undefined && size !== undefined && length !== size) throw problem('inconsistent-upload-length', `The upload's length is ${size}, not ${length}`);
    if (size !== undefined && bodyLength !== undefined && offset + bodyLength > size) throw problem('inconsistent-upload-length', `A body ending at ${offset + bodyLength} goes beyond the upload's length ${size}`);
    await prepareDigests(req, id, draft, completes && offset === 0, empty);
    setRequestHeader(req, 'upload-offset', String(offset));
    setRequestHeader(req, 'upload-length', size === undefined && length !== undefined ? String(length) : undefined);
    setRequestHeader(req, 'content-type', 'application/offset+octet-stream');
    return { completes, completeAfterBody: completes && length === undefined && size === undefined };
  }

  /**
   * The tus answer to a translated draft request, in the draft version's terms: its status codes,
   * Upload-Complete / Upload-Incomplete, Upload-Length and Upload-Limit where the version has
   * them, problem details for refusals. An append that ends an upload of unknown length declares
   * the length the body brought.
   */
  async function draftAnswer(req: IncomingMessage, id: string | undefined, response: Response, draft: DraftRequestState, plan: DraftPlan): Promise<Response> {
    const { rules } = draft;
    const uploadId = draft.createdId ?? id;
    if (draft.tap?.mismatch) {
      await response.body?.cancel().catch(() => {});
      if (uploadId) await discardUpload(uploadId);
      return draftErrorResponse(req, new TuskError('digest_mismatch', `${draft.tap.mismatch} does not match the content received; the upload was cancelled (its bytes cannot be taken back)`), rules, config);
    }
    if (response.status >= 400) {
      await response.body?.cancel().catch(() => {});
      const error = tusRequest().error ?? new TuskError('internal');
      const expected = error.code === 'offset_mismatch' && uploadId ? await datastore.getUpload(uploadId).then((u) => u.offset).catch(() => undefined) : undefined;
      const withOffset = expected === undefined ? error : offsetMismatch(expected, sfInteger(req.headers['upload-offset']) ?? -1);
      return draftErrorResponse(req, withOffset, rules, config);
    }
    const headers = new Headers();
    response.headers.forEach((value, name) => {
      if (!TUS_ONLY_HEADERS.has(name)) headers.set(name, value);
    });
    headers.set(INTEROP_HEADER, String(rules.version));
    if (req.method === 'OPTIONS') {
      headers.set('Accept-Patch', PARTIAL_UPLOAD);
      if (rules.lengthAndLimits) headers.set('Upload-Limit', uploadLimit(rules, config.maxUploadSize, expirySeconds(Date.now())));
      return new Response(null, { status: response.status, headers });
    }
    if (req.method === 'DELETE' || !uploadId) return new Response(null, { status: response.status, headers });
    let upload = await datastore.getUpload(uploadId);
    if (plan.completeAfterBody && req.complete && upload.size === undefined) upload = await declareLengthReceived(req, uploadId);
    const complete = upload.size !== undefined && upload.offset === upload.size;
    if (plan.completes && req.complete && !complete) {
      return draftErrorResponse(req, problem('inconsistent-upload-length', `The body ended at ${upload.offset}, before the upload's length ${upload.size ?? '?'}`, {}, { 'Upload-Offset': String(upload.offset) }), rules, config);
    }
    headers.set('Upload-Offset', String(upload.offset));
    headers.set(...completenessHeader(rules, complete));
    if (rules.lengthAndLimits && upload.size !== undefined) headers.set('Upload-Length', String(upload.size));
    if (rules.lengthAndLimits && req.method !== 'PATCH') {
      const created = upload.creation_date ? new Date(upload.creation_date).getTime() : Date.now();
      headers.set('Upload-Limit', uploadLimit(rules, config.maxUploadSize, complete ? undefined : expirySeconds(created)));
    }
    if (req.method === 'HEAD') headers.set('Cache-Control', 'no-store');
    if (plan.get) headers.set('Content-Length', '0');
    const status = req.method === 'POST' ? 201 : req.method === 'PATCH' ? rules.appendStatus : plan.get ? 200 : rules.headStatus;
    return new Response(null, { status, headers });
  }

  /**
   * Cancels an upload whose bytes cannot be trusted (a digest did not match): its stored bytes and
   * everything tusk keeps about it go, as for a DELETE.
   */
  async function discardUpload(id: string): Promise<void> {
    await datastore.remove(id).catch((err: unknown) => logger.warn({ err, uploadId: id }, 'could not remove an upload whose digest did not match'));
    await concat.forget(id);
    await reprDigests.forget(id);
    await lifecycle.terminate(id, 'aborted');
  }

  /**
   * The digests a draft request's body must match (RFC 9530): Content-Digest always; Repr-Digest
   * directly when this body is the whole representation, else remembered for the upload's
   * completion. Prepares the tap that hashes the body; an empty body is checked at once.
   */
  async function prepareDigests(req: IncomingMessage, id: string | undefined, draft: DraftRequestState, whole: boolean, empty: boolean): Promise<void> {
    const content = parseDigestField('Content-Digest', req.headers['content-digest']);
    const repr = parseDigestField('Repr-Digest', req.headers['repr-digest']);
    const checks: Array<{ field: string; expected: NonNullable<typeof content> }> = [];
    if (content) checks.push({ field: 'Content-Digest', expected: content });
    if (repr && whole) checks.push({ field: 'Repr-Digest', expected: repr });
    else if (repr && id) await reprDigests.remember(id, repr);
    else if (repr) draft.reprDigest = repr;
    if (checks.length === 0) return;
    const tap = new DigestTap(checks);
    if (empty) {
      const failed = await new Promise<string | undefined>((resolve) => {
        tap.on('error', () => resolve(tap.mismatch));
        tap.on('finish', () => resolve(undefined));
        tap.end();
        tap.resume();
      });
      if (failed) throw new TuskError('digest_mismatch', `${failed} does not match the empty content`);
      return;
    }
    draft.tap = tap;
  }

  /** Seconds an upload created at `created` has left (UPLOAD_EXPIRY), undefined when uploads never expire. */
  function expirySeconds(created: number): number | undefined {
    const expiry = datastore.getExpiration();
    return expiry > 0 ? (created + expiry - Date.now()) / 1000 : undefined;
  }

  /**
   * An upload of unknown length whose final body (no Content-Length) has arrived: its length is
   * its offset now. Under the upload's lock, as a tus PATCH declaring it would be.
   */
  async function declareLengthReceived(req: IncomingMessage, id: string): Promise<Upload> {
    const lock = await takeLock(req, id);
    try {
      const upload = await datastore.getUpload(id);
      if (upload.size !== undefined) return upload;
      await lifecycle.grow(id, upload.offset);
      await datastore.declareUploadLength(id, upload.offset);
      const declared = await datastore.getUpload(id);
      await finishUpload(declared);
      return declared;
    } finally {
      await lock.release();
    }
  }

  /**
   * While a draft request's body streams, 104s with the offset the store has persisted (each time
   * it moved), from interop 5 on. A creation's carry its Location too; an append's must not.
   */
  function reportProgress(req: IncomingMessage, res: ServerResponse, id: string | undefined, draft: DraftRequestState): () => void {
    if (!draft.rules.progress) return () => {};
    let last = req.method === 'PATCH' ? (sfInteger(req.headers['upload-offset']) ?? 0) : 0;
    let stopped = false;
    let busy = false;
    const timer = setInterval(() => {
      const uploadId = draft.createdId ?? id;
      // Once the body is in, the final answer follows (and the store may be completing the upload).
      if (!uploadId || stopped || busy || req.complete || res.headersSent) return;
      busy = true;
      datastore
        .getUpload(uploadId)
        .then((upload) => {
          if (stopped || req.complete || upload.offset <= last) return;
          last = upload.offset;
          sendInterim104(req, res, draft.rules, { 'Upload-Offset': String(upload.offset), ...(draft.createdUrl ? { Location: draft.createdUrl } : {}) });
        })
        .catch(() => {})
        .finally(() => {
          busy = false;
        });
    }, DRAFT_PROGRESS_INTERVAL_MS);
    timer.unref();
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }

  /**
   * Tells the lifecycle what a PATCH, or a POST with a body, stored: how far the upload's offset
   * moved (an interrupted body too: the store keeps what arrived and answers its new offset).
   */
  function noteReceived(req: IncomingMessage, response: Response): void {
    if ((req.method !== 'PATCH' && req.method !== 'POST') || (response.status !== 204 && response.status !== 201)) return;
    const offset = response.headers.get('upload-offset');
    if (offset === null) return;
    const from = req.method === 'PATCH' ? Number(req.headers['upload-offset']) : 0;
    const id = req.method === 'PATCH' ? tusRequest().id : uploadIdOfUrl(response.headers.get('location') ?? '');
    if (id && Number(offset) > from) lifecycle.received(id, Number(offset) - from);
  }

  /**
   * A creation (POST) that carries a body: the body must fit the declared length, and a
   * deferred-length upload reserves the body's bytes (the quota needs a Content-Length then).
   */
  async function checkCreation(req: IncomingMessage): Promise<void> {
    const bodyLength = contentLengthOf(req);
    const hasBody = req.headers['content-type'] === 'application/offset+octet-stream';
    const declared = req.headers['upload-length'];
    if (typeof declared === 'string') {
      const size = Number(declared);
      if (size > config.maxUploadSize) throw new TuskError('too_large', ERRORS.ERR_MAX_SIZE_EXCEEDED.body.trim());
      if (hasBody && bodyLength !== undefined && bodyLength > size) throw new TuskError('too_large', ERRORS.ERR_SIZE_EXCEEDED.body.trim());
      // A checksummed body is read (spooled) before the upload exists: refuse it first if the
      // reservation it would need is over the quota.
      if (hasBody && checksumSource(req)) {
        const fits = await access.quota.check(tusRequest().principal.userId, size);
        if (!fits.ok) throw new TuskError(fits.code, fits.message);
      }
      return;
    }
    if (!hasBody) return;
    if (bodyLength === undefined) {
      if (access.quota.limits.quotaBytes === 0) return;
      throw new TuskError('length_required', 'A body for an upload of deferred length needs Content-Length while quotas are on');
    }
    if (bodyLength > config.maxUploadSize) throw new TuskError('too_large', ERRORS.ERR_MAX_SIZE_EXCEEDED.body.trim());
    tusRequest().deferredCreationBytes = bodyLength;
  }

  /**
   * Checks a PATCH before any byte of its body is read: the upload exists and is not expired,
   * it is not a final upload, the offset matches, the body fits the length, and the quota
   * reservation covers every byte it may add. Returns the upload.
   */
  async function checkPatch(req: IncomingMessage, id: string): Promise<Upload> {
    // Both lookups at once: one round trip to Redis less before every PATCH body is read.
    const [upload, concatValue] = await Promise.all([datastore.getUpload(id), concat.headerOf(id)]);
    const expiry = datastore.getExpiration();
    const created = upload.creation_date ? new Date(upload.creation_date).getTime() : Date.now();
    const finished = upload.size !== undefined && upload.offset === upload.size;
    if (!finished && expiry > 0 && Date.now() > created + expiry) throw new TuskError('expired', ERRORS.FILE_NO_LONGER_EXISTS.body.trim());
    if (concatValue?.startsWith('final;')) throw new TuskError('forbidden', 'A final upload (Upload-Concat: final) cannot be patched');
    const offset = Number(req.headers['upload-offset']);
    if (offset !== upload.offset) throw offsetMismatch(upload.offset, offset);
    const bodyLength = contentLengthOf(req);
    const declaredHeader = req.headers['upload-length'];
    const declared = typeof declaredHeader === 'string' ? Number(declaredHeader) : undefined;
    if (declared !== undefined) {
      if (upload.size !== undefined || declared < offset) throw new TuskError('invalid_request', 'Upload-Length cannot change, nor be less than the offset');
      if (declared > config.maxUploadSize) throw new TuskError('too_large', ERRORS.ERR_MAX_SIZE_EXCEEDED.body.trim());
    }
    const size = upload.size ?? declared;
    if (size !== undefined && bodyLength !== undefined && offset + bodyLength > size) throw new TuskError('too_large', ERRORS.ERR_SIZE_EXCEEDED.body.trim());
    if (size === undefined && bodyLength !== undefined && offset + bodyLength > config.maxUploadSize) throw new TuskError('too_large', ERRORS.ERR_MAX_SIZE_EXCEEDED.body.trim());
    // The reservation grows before any byte is stored: to the declared length, or for a length
    // still deferred, to what this body can add (which needs its Content-Length under a quota).
    if (declared !== undefined) await lifecycle.grow(id, declared);
    else if (size === undefined && access.quota.limits.quotaBytes > 0) {
      if (bodyLength === undefined) throw new TuskError('length_required', 'A PATCH to an upload of deferred length needs Content-Length while quotas are on');
      await lifecycle.grow(id, offset + bodyLength, { growOnly: true });
    }
    return upload;
  }

  /** POST with Upload-Concat (see concatenation.ts). */
  async function createConcatenated(req: IncomingMessage, res: ServerResponse, value: string): Promise<void> {
    const parsed = parseConcatHeader(value);
    if (parsed.kind === 'invalid') throw new TuskError('invalid_request', parsed.reason);
    if (!canConcatenate(datastore)) throw new TuskError('not_implemented', 'Concatenation is not supported by this store');
    if (parsed.kind === 'partial') {
      await checkCreation(req);
      // @tus/server would refuse the header (501): it creates a plain upload we remember as partial.
      setRequestHeader(req, 'upload-concat', undefined);
      tusRequest().creatingPartial = true;
      const response = await forwardToTus(req, res);
      noteReceived(req, response);
      await sendResponse(res, response);
      return;
    }
    const principal = tusRequest().principal;
    let created: string | undefined;
    let final: Upload;
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
          await lifecycle.create(principal, upload.id, {
            bytes: upload.size ?? 0,
            record: baseFromMetadata(upload.id, upload.size ?? null, upload.metadata ?? {}),
            complete: true,
            replaces: partials.map((p) => p.id),
          });
          created = upload.id;
        },
      });
    } catch (err) {
      if (created) await lifecycle.terminate(created, 'aborted').catch(() => {});
      throw err;
    }
    for (const url of parsed.urls) {
      const partialId = uploadIdOfUrl(url);
      if (partialId) await lifecycle.terminate(partialId, 'concatenated');
    }
    await lifecycle.finish(final.id, { location: storageLocation(final), size: final.size ?? 0, metadata: final.metadata ?? {} });
    const headers = { Location: uploadUrl(tusRequest().baseUrl, final.id), 'Upload-Concat': `final;${parsed.urls.join(' ')}` };
    sendTusReply(req, res, 201, '', headers, config);
  }

  /**
   * Hands the request to @tus/server. A request with a checksum is first spooled and verified
   * (checksum.ts), never more bytes than the upload can still take; then the verified bytes are
   * replayed from the spool.
   */
  async function forwardToTus(req: IncomingMessage, res: ServerResponse, upload?: Upload, signal?: AbortSignal): Promise<Response> {
    const source = req.method === 'PATCH' || req.method === 'POST' ? checksumSource(req) : undefined;
    const tap = tusRequest().draft?.tap;
    if (!source && tap) {
      // A draft body with digests: hashed on its way to the store (digest.ts).
      const headers = new Headers();
      for (const [name, value] of Object.entries(req.headers)) {
        if (value === undefined || ['transfer-encoding', 'connection', 'host'].includes(name)) continue;
        headers.set(name, Array.isArray(value) ? value.join(', ') : value);
      }
      const body = pipeStreams(req, tap, () => {});
      const tapped = new Request(`http://localhost${TUS_PATH}/${tusRequest().id ?? ''}`, {
        method: req.method,
        headers,
        body: Readable.toWeb(body) as ReadableStream<Uint8Array>,
        duplex: 'half',
      } as RequestInit);
      return runWithUploadRequest(tapped, () => tus.handleWeb(tapped));
    }
    if (!source) {
      // The S3 store reads the request's Content-Length to cut the body into parts up front.
      return runWithUploadRequest(req, () => tus.handleWeb(new NodeRequest({ req, res })));
    }
    const maxBytes = maxBodyBytes(req, upload);
    const spooled = await spoolAndVerify(req, source, { maxBytes, budget: spoolBudget, signal });
    switch (spooled.verdict) {
      case 'invalid':
        throw new TuskError('invalid_request', spooled.reason);
      case 'mismatch':
        throw new TuskError('checksum_mismatch');
      case 'too_large':
        throw new TuskError('too_large', `Request body larger than the upload can take (at most ${Math.min(maxBytes, spoolBudget.limit)} bytes with a checksum)`);
      case 'busy':
        throw new TuskError('unavailable', 'Too many checksummed uploads are being verified; retry shortly', {}, { 'Retry-After': String(RETRY_AFTER_SECONDS) });
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
   * gets its job on that HEAD. Finishing is idempotent (upload id = job id).
   */
  async function ensureFinishQueued(response: Response, id: string): Promise<void> {
    const offset = response.headers.get('upload-offset');
    const length = response.headers.get('upload-length');
    if (offset === null || offset !== length) return;
    try {
      const upload = await datastore.getUpload(id);
      if (upload.size === undefined || upload.offset !== upload.size) return;
      await finishUpload(upload);
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

/** Offset mismatch (409), with both offsets: the draft answers them as problem details and Upload-Offset. */
function offsetMismatch(expected: number, provided: number): TuskError {
  return problem('mismatching-upload-offset', ERRORS.INVALID_OFFSET.body.trim(), { expectedOffset: expected, providedOffset: provided }, {});
}

/** Headers of tus answers that mean nothing to a draft client. */
const TUS_ONLY_HEADERS = new Set(['tus-resumable', 'tus-version', 'tus-extension', 'tus-max-size', 'tus-checksum-algorithm', 'upload-defer-length', 'upload-expires', 'upload-metadata', 'upload-concat', 'upload-length', 'upload-offset', 'content-type', 'content-length']);

/** A draft error answer: problem details (RFC 9457), the catalogue code, Upload-Offset on a mismatch. */
function draftErrorResponse(req: IncomingMessage, err: TuskError, rules: DraftRules | undefined, config: Config): Response {
  const body = JSON.stringify(problemBody(err, rules));
  const headers: Record<string, string> = {
    'Content-Type': 'application/problem+json',
    ...corsHeaders(req, config),
    'Access-Control-Expose-Headers': `${EXPOSED}, ${DRAFT_RESPONSE_HEADERS.join(', ')}`,
    ...errorHeaders(err),
  };
  const expected = (err.details as { expectedOffset?: unknown }).expectedOffset;
  if (typeof expected === 'number') headers['Upload-Offset'] = String(expected);
  if (rules) headers[INTEROP_HEADER] = String(rules.version);
  return new Response(wireMethod(req) === 'HEAD' ? null : body, { status: err.status, headers });
}

/** A draft refusal written directly (before or instead of the tus handler). */
function sendDraftError(req: IncomingMessage, res: ServerResponse, err: TuskError, rules: DraftRules | undefined, config: Config): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const headers: Record<string, string> = {};
  draftErrorResponse(req, err, rules, config).headers.forEach((value, name) => {
    headers[name] = value;
  });
  const body = wireMethod(req) === 'HEAD' ? '' : JSON.stringify(problemBody(err, rules));
  headers['content-length'] = String(Buffer.byteLength(body));
  res.writeHead(err.status, headers);
  if ((req.headers['content-length'] ?? '0') !== '0' || req.headers['transfer-encoding']) res.shouldKeepAlive = false;
  res.end(body || undefined);
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
  const allowOrigin = allowedOrigin(req, config);
  return allowOrigin ? { 'Access-Control-Allow-Origin': allowOrigin } : {};
}

/** Reason phrases Node does not know (tus checksum extension). */
const REASON_PHRASES: Record<number, string> = { 460: 'Checksum Mismatch' };

/** What a browser's tus client may read of tusk's own answers. */
const EXPOSED = `Tus-Version, Tus-Resumable, Upload-Offset, Location, Retry-After, WWW-Authenticate, ${ERROR_CODE_HEADER}, ${REQUEST_ID_HEADER}`;

/** An error answer of the tus face: the catalogue entry as a short text body, with tus and CORS headers. */
function sendTusError(req: IncomingMessage, res: ServerResponse, err: TuskError, config: Config): void {
  sendTusReply(req, res, err.status, `${err.message}\n`, errorHeaders(err), config);
}

/** A short text answer written by tusk itself (errors, the final-upload 201), with tus and CORS headers. */
function sendTusReply(req: IncomingMessage, res: ServerResponse, status: number, body: string, extra: Record<string, string>, config: Config): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const headers = {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'Tus-Resumable': '1.0.0',
    ...corsHeaders(req, config),
    'Access-Control-Expose-Headers': EXPOSED,
    ...extra,
  };
  const reason = REASON_PHRASES[status];
  if (reason) res.writeHead(status, reason, headers);
  else res.writeHead(status, headers);
  // Do not read a body we refused: close the connection instead of draining a large PATCH.
  if ((req.headers['content-length'] ?? '0') !== '0' || req.headers['transfer-encoding']) res.shouldKeepAlive = false;
  res.end(wireMethod(req) === 'HEAD' ? undefined : body);
}
