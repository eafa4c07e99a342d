// Checks a tus request against the protocol before @tus/server sees it, where @tus/server
// deviates from the tus 1.0 spec: it answers 400 (not 412) to an unsupported Tus-Resumable,
// 403 (not 415 / 400) to a wrong Content-Type or a missing Upload-Offset on PATCH, and
// ignores X-HTTP-Method-Override. Returns the refusal to send, or null to let the request through.
import type { IncomingMessage } from 'node:http';
import { TuskError } from '../../lib/errors.js';
import { parseConcatHeader } from './concatenation.js';

export const TUS_VERSION = '1.0.0';

const nonNegativeInteger = /^(0|[1-9]\d*)$/;

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}

/**
 * Applies X-HTTP-Method-Override (for clients and proxies that can only send GET/POST):
 * the request is then handled as the method it names.
 */
export function applyMethodOverride(req: IncomingMessage): void {
  const override = header(req, 'x-http-method-override')?.trim().toUpperCase();
  if (override && req.method === 'POST' && ['PATCH', 'DELETE', 'HEAD', 'GET', 'OPTIONS', 'POST'].includes(override)) {
    wireMethods.set(req, req.method);
    req.method = override;
  }
}

const wireMethods = new WeakMap<IncomingMessage, string>();

/**
 * The method the request was sent with (before X-HTTP-Method-Override): a response to a POST
 * handled as HEAD still carries its body, since Node and the client frame it as a POST's.
 */
export function wireMethod(req: IncomingMessage): string | undefined {
  return wireMethods.get(req) ?? req.method;
}

export function checkTusRequest(req: IncomingMessage): TuskError | null {
  const method = req.method ?? 'GET';
  if (method === 'OPTIONS' || method === 'GET') return null;

  const resumable = header(req, 'tus-resumable');
  if (resumable === undefined) {
    return new TuskError('unsupported_version', 'Tus-Resumable header required', {}, { 'Tus-Version': TUS_VERSION });
  }
  if (resumable.trim() !== TUS_VERSION) {
    return new TuskError('unsupported_version', `Unsupported Tus-Resumable version; this server supports ${TUS_VERSION}`, {}, { 'Tus-Version': TUS_VERSION });
  }

  if (method === 'PATCH') {
    const contentType = header(req, 'content-type');
    if (contentType?.trim() !== 'application/offset+octet-stream') {
      return new TuskError('unsupported_media_type', 'Content-Type must be application/offset+octet-stream');
    }
    const offset = header(req, 'upload-offset');
    if (offset === undefined) return new TuskError('invalid_request', 'Upload-Offset header required');
    if (!nonNegativeInteger.test(offset.trim()) || !Number.isSafeInteger(Number(offset))) {
      return new TuskError('invalid_request', 'Upload-Offset must be a non-negative integer');
    }
  }

  const length = header(req, 'upload-length');
  if (length !== undefined && (!nonNegativeInteger.test(length.trim()) || !Number.isSafeInteger(Number(length)))) {
    return new TuskError('invalid_request', 'Upload-Length must be a non-negative integer');
  }
  const deferLength = header(req, 'upload-defer-length');
  if (deferLength !== undefined && deferLength.trim() !== '1') {
    return new TuskError('invalid_request', 'Upload-Defer-Length must be 1');
  }
  const concat = method === 'POST' ? header(req, 'upload-concat') : undefined;
  const concatKind = concat === undefined ? undefined : parseConcatHeader(concat);
  if (concatKind?.kind === 'invalid') return new TuskError('invalid_request', `${concatKind.reason}`);
  const isFinalConcat = concatKind?.kind === 'final';
  if (isFinalConcat && (length !== undefined || deferLength !== undefined)) {
    return new TuskError('invalid_request', 'A final upload (Upload-Concat: final) must not carry Upload-Length or Upload-Defer-Length');
  }
  if (method === 'POST' && !isFinalConcat && (length === undefined) === (deferLength === undefined)) {
    return new TuskError('invalid_request', 'Exactly one of Upload-Length or Upload-Defer-Length is required');
  }
  return null;
}
