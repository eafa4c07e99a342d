// Errors to HTTP: every error a request raises becomes an entry of the catalogue (lib/errors.ts),
// rendered as JSON (`{ "error": { "code", "message", ...details } }`) on the API and Companion
// routes, or as a short text body on tus (server/tus/endpoint.ts); both carry the code in the
// `Tusk-Error-Code` header. Never a stack trace, whatever NODE_ENV says, and never a 500 for input
// the client got wrong.
import type { ErrorRequestHandler, Response } from 'express';
import { ERRORS as TUS_ERRORS } from '@tus/utils';
import { errorHeaders, isDependencyError, RETRY_AFTER_SECONDS, TuskError, type ErrorCode } from '../../lib/errors.js';
import type { Logger } from '../../lib/logger.js';

export { ERROR_CODE_HEADER, errorHeaders } from '../../lib/errors.js';

/** Codes of client errors raised by express, body-parser and @tus/server, by HTTP status. */
const CODE_OF_STATUS: Record<number, ErrorCode> = {
  400: 'invalid_request',
  403: 'forbidden',
  404: 'not_found',
  409: 'offset_mismatch',
  410: 'expired',
  411: 'length_required',
  413: 'too_large',
  415: 'unsupported_media_type',
  501: 'not_implemented',
  503: 'unavailable',
};

interface StatusError {
  status?: unknown;
  statusCode?: unknown;
  status_code?: unknown;
  expose?: unknown;
  message?: unknown;
  body?: unknown;
}

/**
 * Whatever was thrown, as the catalogue entry to answer with. Errors of tusk's dependencies
 * become `unavailable` (503, Retry-After), anything unexpected `internal` (500, logged with its
 * stack; the client gets neither).
 */
export function toTuskError(err: unknown, logger: Logger, context: Record<string, unknown> = {}): TuskError {
  if (err instanceof TuskError) return err;
  // A path segment the router could not percent-decode names nothing.
  if (err instanceof URIError) return new TuskError('not_found');
  const e = (err ?? {}) as StatusError;
  // @tus/server's own errors: { status_code, body }.
  if (typeof e.status_code === 'number' && typeof e.body === 'string') {
    if (err === TUS_ERRORS.ERR_LOCK_TIMEOUT || e.body === TUS_ERRORS.ERR_LOCK_TIMEOUT.body) return new TuskError('locked');
    const code = e.status_code < 500 || e.status_code === 501 ? CODE_OF_STATUS[e.status_code] : undefined;
    if (code) return new TuskError(code, e.body.trim());
  }
  // express and body-parser: a client error with a status (bad JSON, unsupported charset, bad encoding).
  const status = typeof e.status === 'number' ? e.status : typeof e.statusCode === 'number' ? e.statusCode : undefined;
  if (status !== undefined && status >= 400 && status < 500) {
    const message = e.expose !== false && typeof e.message === 'string' && e.message.length <= 200 ? e.message : undefined;
    return new TuskError(CODE_OF_STATUS[status] ?? 'invalid_request', message);
  }
  if (isDependencyError(err)) {
    logger.error({ ...context, err }, 'storage or Redis unavailable');
    return unavailable();
  }
  logger.error({ ...context, err }, 'unexpected error in a request');
  return new TuskError('internal');
}

/** 503 with Retry-After: storage, Redis or the key server is down or overloaded. */
export function unavailable(message?: string): TuskError {
  return new TuskError('unavailable', message, {}, { 'Retry-After': String(RETRY_AFTER_SECONDS) });
}

export function sendJsonError(res: Response, err: TuskError): void {
  if (res.headersSent) return;
  res.status(err.status).set(errorHeaders(err)).json({ error: { code: err.code, message: err.message, ...err.details } });
}

/** The last error handler of the express app. */
export function handleUncaught(logger: Logger): ErrorRequestHandler {
  return (err: unknown, req, res, _next) => {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    sendJsonError(res, toTuskError(err, logger, { method: req.method, url: req.url }));
  };
}
