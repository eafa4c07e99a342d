// The tus endpoint (/files/): @tus/server with our store, the Redis locker and the hooks,
// behind the protocol gate, with error mapping and a count of requests in flight (for
// graceful shutdown).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Server, type ServerOptions } from '@tus/server';
import type { DataStore, Locker } from '@tus/utils';
import { NodeRequest, sendNodeResponse } from 'srvx/node';
import type { Config } from '../../config/index.js';
import type { Logger } from '../../lib/logger.js';
import { validateNewUpload } from '../../hooks/upload-create.js';
import type { UploadFinishedHook } from '../../hooks/upload-finished.js';
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
  logger: Logger;
}): TusEndpoint {
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
    exposedHeaders: ['Retry-After'],
    // How long a PATCH that is asked to give up its lock may take to save what it received.
    lockDrainTimeout: 3000,
    ...(publicUrl ? { generateUrl: (_req, { path, id }) => `${publicUrl}${path}/${id}` } : {}),
    onUploadCreate: async (_req, upload) => {
      validateNewUpload(upload);
      return {};
    },
    onUploadFinish: async (_req, upload) => {
      await finished.enqueue(upload);
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
      if (req.method === 'GET' && id) {
        await download(req, res, id, { ...corsHeaders(req, config), 'Access-Control-Expose-Headers': 'Content-Range, Content-Disposition, ETag, Accept-Ranges' });
        return;
      }
      const gateError = checkTusRequest(req);
      if (gateError) {
        sendGateError(req, res, gateError, config);
        return;
      }
      // The S3 store reads the request's Content-Length to cut the body into parts up front.
      const response = await runWithUploadRequest(req, () => tus.handleWeb(new NodeRequest({ req, res })));
      if (response.status === 503) response.headers.set('Retry-After', String(RETRY_AFTER_SECONDS));
      if (req.method === 'HEAD' && response.status === 200 && id) {
        await ensureFinishQueued(response, id);
        await addUploadExpires(response, id);
      }
      await sendNodeResponse(res, response);
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
      await finished.enqueue(await datastore.getUpload(id));
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

/** Access-Control-Allow-Origin for responses tusk writes itself (as @tus/server does for its own). */
function corsHeaders(req: IncomingMessage, config: Config): Record<string, string> {
  const origin = req.headers.origin;
  const allowOrigin =
    config.corsOrigins === '*' ? '*' : origin && config.corsOrigins.includes(origin) ? origin : config.corsOrigins[0];
  return allowOrigin ? { 'Access-Control-Allow-Origin': allowOrigin } : {};
}

function sendGateError(req: IncomingMessage, res: ServerResponse, error: GateError, config: Config): void {
  res.writeHead(error.status, {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': Buffer.byteLength(error.body),
    'Tus-Resumable': '1.0.0',
    ...corsHeaders(req, config),
    'Access-Control-Expose-Headers': 'Tus-Version, Tus-Resumable, Upload-Offset, Location',
    ...error.headers,
  });
  // Do not read a body we refused: close the connection instead of draining a large PATCH.
  if ((req.headers['content-length'] ?? '0') !== '0' || req.headers['transfer-encoding']) res.shouldKeepAlive = false;
  res.end(req.method === 'HEAD' ? undefined : error.body);
}
