// Resumable Uploads for HTTP (draft-ietf-httpbis-resumable-upload), interop versions 3 to 8, as a
// face of the tus endpoint: a draft request (it carries Upload-Draft-Interop-Version) is rewritten
// into the tus request it means and handled by the same code as a tus request (authorization on
// the id of request-target.ts, the upload lifecycle, locks, quota, limits); its answer is then
// rewritten into the draft version's form. This module holds what differs between the versions,
// the header translation both ways, the problem details and the 104 interim responses.
//
//   interop  draft    completeness        PATCH body type              Upload-Length/Limit  append answer
//   3        -01      Upload-Incomplete   any                          -                    201
//   4        -02      Upload-Complete     any                          -                    201
//   5        -03      Upload-Complete     any                          -                    201
//   6        -04/-05  Upload-Complete     application/partial-upload   yes (limit expires)  201
//   7        -06..-08 Upload-Complete     application/partial-upload   yes (limit max-age)  204
//   8        -09..-11 Upload-Complete     application/partial-upload   yes (limit max-age)  204
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Metadata } from '@tus/utils';
import { TuskError } from '../../lib/errors.js';

export const INTEROP_VERSIONS = [3, 4, 5, 6, 7, 8] as const;
export type InteropVersion = (typeof INTEROP_VERSIONS)[number];

export const INTEROP_HEADER = 'Upload-Draft-Interop-Version';
export const PARTIAL_UPLOAD = 'application/partial-upload';

/** Request headers of the draft a browser client must be allowed to send (CORS). */
export const DRAFT_REQUEST_HEADERS = [INTEROP_HEADER, 'Upload-Complete', 'Upload-Incomplete', 'Content-Disposition', 'Content-Digest', 'Repr-Digest'];
/** Response headers of the draft a browser client must be allowed to read (CORS). */
export const DRAFT_RESPONSE_HEADERS = [INTEROP_HEADER, 'Upload-Complete', 'Upload-Incomplete', 'Upload-Limit', 'Upload-Length', 'Upload-Offset', 'Location'];

/** What the interop versions disagree on. */
export interface DraftRules {
  version: InteropVersion;
  /** Interop 3 says "incomplete" (Upload-Incomplete: ?1), later ones "complete" (Upload-Complete: ?1). */
  completeHeader: 'upload-incomplete' | 'upload-complete';
  /** PATCH bodies must be application/partial-upload (interop 6 on). */
  partialUploadType: boolean;
  /** Progress 104s with Upload-Offset while a body streams (interop 5 on). */
  progress: boolean;
  /** Upload-Length in answers and Upload-Limit (interop 6 on). */
  lengthAndLimits: boolean;
  /** The Upload-Limit key of the remaining lifetime: `expires` in interop 6, `max-age` later. */
  ageKey: 'expires' | 'max-age';
  /** Offset retrieval answers 204 (interop 3, 4) or 200. */
  headStatus: 200 | 204;
  /** A successful append answers 201 (interop 3 to 6) or 204. */
  appendStatus: 201 | 204;
  /** The problem types the version defines. */
  problemTypes: ReadonlySet<ProblemType>;
}

export type ProblemType = 'mismatching-upload-offset' | 'completed-upload' | 'inconsistent-upload-length';

export function rulesOf(version: InteropVersion): DraftRules {
  const problems: ProblemType[] = version >= 7 ? ['mismatching-upload-offset', 'completed-upload', 'inconsistent-upload-length'] : version === 6 ? ['mismatching-upload-offset', 'completed-upload'] : [];
  return {
    version,
    completeHeader: version === 3 ? 'upload-incomplete' : 'upload-complete',
    partialUploadType: version >= 6,
    progress: version >= 5,
    lengthAndLimits: version >= 6,
    ageKey: version === 6 ? 'expires' : 'max-age',
    headStatus: version <= 4 ? 204 : 200,
    appendStatus: version <= 6 ? 201 : 204,
    problemTypes: new Set(problems),
  };
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? (value.length === 1 ? value[0] : undefined) : value;
}

/**
 * The interop version a request speaks: undefined without the header (a tus request), the rules
 * of a supported version, else a refusal naming the supported ones.
 */
export function draftRulesOf(req: IncomingMessage): DraftRules | undefined {
  const raw = req.headers[INTEROP_HEADER.toLowerCase()];
  if (raw === undefined) return undefined;
  const value = sfInteger(raw);
  const version = INTEROP_VERSIONS.find((v) => v === value);
  if (version === undefined) {
    throw new TuskError('unsupported_version', `Unsupported ${INTEROP_HEADER}; this server supports ${INTEROP_VERSIONS.join(', ')}`, { supported: [...INTEROP_VERSIONS] });
  }
  return rulesOf(version);
}

/** A Structured Field Boolean (`?0`, `?1`); anything else is undefined (the draft: ignore the field). */
export function sfBoolean(raw: string | string[] | undefined): boolean | undefined {
  const value = single(raw)?.trim();
  return value === '?1' ? true : value === '?0' ? false : undefined;
}

/** A non-negative Structured Field Integer (at most 15 digits); anything else is undefined. */
export function sfInteger(raw: string | string[] | undefined): number | undefined {
  const value = single(raw)?.trim();
  return value !== undefined && /^\d{1,15}$/.test(value) ? Number(value) : undefined;
}

/**
 * Does the request complete the upload? Interop 3: `Upload-Incomplete: ?1` means more follows, ?0
 * or (on an append) no header means this is the end. Later: `Upload-Complete`. Undefined when the
 * request has no valid value where the version requires one.
 */
export function requestCompletes(req: IncomingMessage, rules: DraftRules, creation: boolean): boolean | undefined {
  if (rules.completeHeader === 'upload-incomplete') {
    const incomplete = sfBoolean(req.headers['upload-incomplete']);
    if (incomplete === undefined) return creation || req.headers['upload-incomplete'] !== undefined ? undefined : true;
    return !incomplete;
  }
  return sfBoolean(req.headers['upload-complete']);
}

/** The header pair of a completeness state in the version's vocabulary. */
export function completenessHeader(rules: DraftRules, complete: boolean): [string, string] {
  return rules.completeHeader === 'upload-incomplete' ? ['Upload-Incomplete', complete ? '?0' : '?1'] : ['Upload-Complete', complete ? '?1' : '?0'];
}

/** A problem answer (RFC 9457) for an inconsistent length, a mismatching offset, a completed upload. */
export function problem(type: ProblemType, message: string, details: Record<string, unknown> = {}, headers: Record<string, string> = {}): TuskError {
  const code = type === 'mismatching-upload-offset' ? 'offset_mismatch' : 'invalid_request';
  return new TuskError(code, message, { problemType: type, ...details }, headers);
}

/**
 * The body of a draft error answer: application/problem+json with the IANA problem type where the
 * version defines one (about:blank otherwise), tusk's catalogue code and the details.
 */
export function problemBody(err: TuskError, rules: DraftRules | undefined): Record<string, unknown> {
  const { problemType, expectedOffset, providedOffset, ...rest } = err.details as { problemType?: ProblemType; expectedOffset?: number; providedOffset?: number };
  const typed = problemType !== undefined && rules?.problemTypes.has(problemType);
  const body: Record<string, unknown> = {
    type: typed ? `https://iana.org/assignments/http-problem-types#${problemType}` : 'about:blank',
    title: err.message,
    status: err.status,
    code: err.code,
    ...rest,
  };
  if (expectedOffset !== undefined) body['expected-offset'] = expectedOffset;
  if (providedOffset !== undefined) body['provided-offset'] = providedOffset;
  return body;
}

/** Upload-Limit: the size limit and, for an upload that expires, its remaining lifetime. */
export function uploadLimit(rules: DraftRules, maxSize: number, remainingSeconds: number | undefined): string {
  const parts = [`max-size=${maxSize}`];
  if (remainingSeconds !== undefined) parts.push(`${rules.ageKey}=${Math.max(0, Math.floor(remainingSeconds))}`);
  return parts.join(', ');
}

/**
 * The filename of a Content-Disposition field (`filename*` in RFC 8187 form preferred over
 * `filename`), or undefined. Only a plain name is kept: no control characters, no path.
 */
export function filenameOf(raw: string | string[] | undefined): string | undefined {
  const value = single(raw);
  if (value === undefined || value.length > 2048) return undefined;
  let extended: string | undefined;
  let plain: string | undefined;
  const param = /;\s*([A-Za-z0-9!#$&+.^_`|~-]+\*?)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)/g;
  for (let m = param.exec(value); m; m = param.exec(value)) {
    const name = m[1]!.toLowerCase();
    const raw = m[2]!;
    if (name === 'filename*') {
      const ext = /^utf-8'[^']*'(.*)$/i.exec(raw);
      if (ext) {
        try {
          extended = decodeURIComponent(ext[1]!);
        } catch {
          // A malformed extended value: the plain filename (if any) stands.
        }
      }
    } else if (name === 'filename') {
      plain = raw.startsWith('"') ? raw.slice(1, -1).replace(/\\(.)/g, '$1') : raw;
    }
  }
  const name = (extended ?? plain)?.split(/[/\\]/).pop()?.trim();
  // eslint-disable-next-line no-control-regex
  if (!name || /[\u0000-\u001f\u007f]/.test(name) || name === '.' || name === '..') return undefined;
  return name.slice(0, 255);
}

/** Replaces a request header before the request is handed on (srvx reads rawHeaders too). */
export function setRequestHeader(req: IncomingMessage, lowerName: string, value: string | undefined): void {
  delete req.headers[lowerName];
  for (let i = req.rawHeaders.length - 2; i >= 0; i -= 2) {
    if (req.rawHeaders[i]?.toLowerCase() === lowerName) req.rawHeaders.splice(i, 2);
  }
  if (value === undefined) return;
  req.headers[lowerName] = value;
  req.rawHeaders.push(lowerName, value);
}

/**
 * Upload-Metadata for a draft creation: what the client sent as tus metadata (tus-js-client does),
 * the representation's filename (Content-Disposition) and media type (Content-Type).
 */
export function draftMetadata(req: IncomingMessage, representationType: string | undefined): string | undefined {
  const sent = single(req.headers['upload-metadata']);
  let metadata: Record<string, string | null> = {};
  if (sent !== undefined) {
    try {
      metadata = Metadata.parse(sent);
    } catch {
      return sent; // refused as malformed by the tus handler, as for a tus client
    }
  }
  const filename = filenameOf(req.headers['content-disposition']);
  if (filename !== undefined) metadata.filename = filename;
  const type = representationType?.split(';')[0]?.trim().toLowerCase();
  if (type && /^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+$/.test(type) && type !== PARTIAL_UPLOAD && metadata.filetype === undefined) metadata.filetype = type;
  return Object.keys(metadata).length > 0 ? Metadata.stringify(metadata) : undefined;
}

/**
 * Writes a `104 (Upload Resumption Supported)` interim response before the final one. Node has
 * no public API for an arbitrary 1xx (writeEarlyHints is 103 only); its own 100/102/103 go through
 * ServerResponse._writeRaw, which queues the bytes ahead of the final response's head, so this
 * does the same. Only to HTTP/1.1 clients (HTTP/1.0 has no interim responses) and only while the
 * final head is not written yet. Returns whether it was written.
 */
export function sendInterim104(req: IncomingMessage, res: ServerResponse, rules: DraftRules, headers: Record<string, string>): boolean {
  if (res.headersSent || res.destroyed || req.httpVersionMajor !== 1 || req.httpVersionMinor < 1) return false;
  const raw = res as ServerResponse & { _writeRaw?: (data: string, encoding: BufferEncoding) => boolean };
  if (typeof raw._writeRaw !== 'function') return false;
  let head = 'HTTP/1.1 104 Upload Resumption Supported\r\n';
  for (const [name, value] of Object.entries({ [INTEROP_HEADER]: String(rules.version), ...headers })) {
    // Header values come from tusk (URLs, numbers), never from the request: still, no CR/LF.
    if (/[\r\n]/.test(value)) return false;
    head += `${name}: ${value}\r\n`;
  }
  raw._writeRaw(`${head}\r\n`, 'latin1');
  return true;
}
