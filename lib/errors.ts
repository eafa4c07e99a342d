// The error catalogue: every refusal tusk gives, by code, with the HTTP status decided once here.
// Whichever face a request came through (tus, the JSON API, the Companion-compatible routes), the
// same refusal has the same code and status; only the rendering differs (server/http/errors.ts:
// a short text body for tus, `{ "error": { "code", "message", ...details } }` for JSON, and the
// code in the `Tusk-Error-Code` header of both). README.md "Errors" lists the codes.
export const ERROR_CATALOGUE = {
  // The request itself is wrong.
  invalid_request: { status: 400, message: 'Malformed request' },
  digest_mismatch: { status: 400, message: 'Content-Digest or Repr-Digest does not match the bytes received' },
  incomplete_upload: { status: 400, message: 'Parts of the upload are missing in storage' },
  part_size_mismatch: { status: 400, message: 'A part in storage has the wrong size' },
  unexpected_parts: { status: 400, message: 'Storage has parts beyond the part count' },
  size_mismatch: { status: 400, message: 'Storage does not have the declared size' },
  etag_mismatch: { status: 400, message: 'A part ETag does not match storage' },
  storage_refused: { status: 400, message: 'Storage refused to complete the upload' },
  unauthorized: { status: 401, message: 'Authentication required' },
  forbidden: { status: 403, message: 'Not allowed' },
  too_many_uploads: { status: 403, message: 'Too many unfinished uploads; finish or delete one first' },
  rejected: { status: 403, message: 'The upload was rejected' },
  not_found: { status: 404, message: 'No such upload' },
  method_not_allowed: { status: 405, message: 'Method not allowed' },
  offset_mismatch: { status: 409, message: 'Upload-Offset does not match the upload' },
  in_progress: { status: 409, message: 'Another request is working on this upload; retry shortly' },
  already_completed: { status: 409, message: 'The upload is already complete' },
  not_finished: { status: 409, message: 'The upload has not finished' },
  not_scanned: { status: 409, message: 'The upload has no clean virus-scan verdict yet' },
  quarantined: { status: 409, message: 'The upload was found infected and is quarantined' },
  expired: { status: 410, message: 'The upload expired' },
  aborted: { status: 410, message: 'The upload was aborted' },
  gone: { status: 410, message: 'The upload content is no longer available' },
  length_required: { status: 411, message: 'Content-Length required' },
  unsupported_version: { status: 412, message: 'Unsupported Tus-Resumable version' },
  too_large: { status: 413, message: 'Larger than allowed' },
  quota_exceeded: { status: 413, message: 'Quota exceeded' },
  unsupported_media_type: { status: 415, message: 'Unsupported Content-Type' },
  unsupported_type: { status: 415, message: 'This type of file is not accepted' },
  range_not_satisfiable: { status: 416, message: 'Requested range not satisfiable' },
  locked: { status: 423, message: 'The upload is locked by another request; retry later' },
  rate_limited: { status: 429, message: 'Too many requests; retry later' },
  too_many_streams: { status: 429, message: 'Too many event streams open' },
  checksum_mismatch: { status: 460, message: 'Checksum Mismatch' },
  // tusk or what it depends on.
  internal: { status: 500, message: 'Internal server error' },
  not_implemented: { status: 501, message: 'Not implemented' },
  unavailable: { status: 503, message: 'A dependency (storage, Redis, the key server) is unavailable; retry shortly' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

/** Seconds a client should wait before retrying an `unavailable` answer. */
export const RETRY_AFTER_SECONDS = 5;

/** A refusal from the catalogue, with the message for this case and optional details and headers. */
export class TuskError extends Error {
  readonly status: number;

  constructor(
    readonly code: ErrorCode,
    message: string = ERROR_CATALOGUE[code].message,
    readonly details: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'TuskError';
    this.status = ERROR_CATALOGUE[code].status;
  }
}

/** The header that names the catalogue code of an error answer, on every face and listener. */
export const ERROR_CODE_HEADER = 'Tusk-Error-Code';

/** Headers every rendering of an error carries. */
export function errorHeaders(err: TuskError): Record<string, string> {
  return { ...err.headers, [ERROR_CODE_HEADER]: err.code, 'Cache-Control': 'no-store' };
}

export const isTuskError = (err: unknown): err is TuskError => err instanceof TuskError;

const DEPENDENCY_ERROR_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN',
  'ENOSPC', 'EIO', 'EROFS', 'EDQUOT', 'EMFILE',
]);

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

/** "Not there" from S3 (any operation) or the file system: the one predicate for it. */
export function isNotFoundError(err: unknown): boolean {
  const e = err as { name?: unknown; Code?: unknown; code?: unknown; $metadata?: { httpStatusCode?: number } } | null;
  if (!e) return false;
  return ['NotFound', 'NoSuchKey', 'NoSuchUpload'].includes(String(e.name ?? e.Code ?? '')) || e.code === 'ENOENT' || e.$metadata?.httpStatusCode === 404;
}
