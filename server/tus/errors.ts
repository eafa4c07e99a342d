// Maps errors raised while handling a tus request to tus responses. tus errors (objects with
// status_code and body) pass through; a lock that cannot be had becomes 423 (tus clients retry
// it); a failing dependency (S3, disk, Redis) becomes 503 (sent with Retry-After); anything else
// is a 500 with a short body. A stack trace never reaches the client.
import type { Logger } from '../../lib/logger.js';
import { ERRORS } from '@tus/utils';

export interface TusErrorResponse {
  status_code: number;
  body: string;
}

const DEPENDENCY_ERROR_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN',
  'ENOSPC', 'EIO', 'EROFS', 'EDQUOT', 'EMFILE',
]);

function isTusError(err: unknown): err is TusErrorResponse {
  return typeof err === 'object' && err !== null && 'status_code' in err && typeof (err as TusErrorResponse).status_code === 'number';
}

/** True for errors of storage or Redis being down or overloaded, as opposed to bugs. */
export function isDependencyError(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { code?: unknown; name?: unknown; $metadata?: unknown; message?: unknown; cause?: unknown };
  if (typeof e.code === 'string' && DEPENDENCY_ERROR_CODES.has(e.code)) return true;
  if (e.$metadata !== undefined) return true; // any AWS SDK service error: S3 refused or failed
  if (typeof e.name === 'string' && /^(TimeoutError|NetworkingError|MaxRetriesPerRequestError|ReplyError|AbortError)$/.test(e.name)) return true;
  if (typeof e.message === 'string' && /Connection is closed|Stream isn't writeable|connect ECONNREFUSED|socket hang up/.test(e.message)) return true;
  return e.cause !== undefined && isDependencyError(e.cause);
}

export function mapTusError(err: unknown, logger: Logger, requestInfo: Record<string, unknown>): TusErrorResponse {
  if (isTusError(err)) {
    if (err === ERRORS.ERR_LOCK_TIMEOUT || err.body === ERRORS.ERR_LOCK_TIMEOUT.body) {
      return { status_code: 423, body: 'Upload is locked by another request; retry later\n' };
    }
    if (err.status_code >= 500) logger.error({ ...requestInfo, status: err.status_code, body: err.body }, 'tus request failed');
    return err;
  }
  if (isDependencyError(err)) {
    logger.error({ ...requestInfo, err }, 'storage or Redis unavailable during tus request');
    return { status_code: 503, body: 'Storage temporarily unavailable; retry later\n' };
  }
  logger.error({ ...requestInfo, err }, 'unexpected error in tus request');
  return { status_code: 500, body: 'Internal server error\n' };
}
