// The client side of tusk's status API: GET /api/uploads/<id> and its event stream
// /api/uploads/<id>/events, with the token in the Authorization header (never in the URL, where
// logs and proxies would keep it). Every response is read within a bound, every request within a
// time limit, and the event stream reconnects after a dropped connection.
import { createParser, type ParseError } from 'eventsource-parser';
import { isUploadId } from '../lib/upload-id.js';
import type { PublicDocument } from '../lib/record-store.js';
import { TERMINAL } from '../lib/upload-status.js';
import { authHeaders, CliError, EXIT, exitCodeOf } from './options.js';

export type StatusDocument = PublicDocument;

/** A status document is a few KiB; anything far larger is not one. */
const MAX_RESPONSE_BYTES = 1024 * 1024;
const REQUEST_TIMEOUT_MS = 30_000;
/** tusk sends a heartbeat comment every 15 s: this long without a byte means the connection is gone. */
const STREAM_IDLE_MS = 45_000;
/** Waits before reconnecting the event stream; back to the first after each document received. */
const RECONNECT_DELAYS_MS = [1000, 3000, 5000, 10_000, 20_000];

export const isTerminal = (doc: StatusDocument): boolean => TERMINAL.includes(doc.status);

/** Where to ask about one upload: an upload URL (`.../files/<id>`) or an id and the tus endpoint. */
export function statusTarget(idOrUrl: string, endpoint: string): { id: string; url: string } {
  let id = idOrUrl;
  let filesUrl = endpoint;
  if (/^https?:\/\//i.test(idOrUrl)) {
    const url = new URL(idOrUrl);
    id = url.pathname.split('/').pop() ?? '';
    filesUrl = new URL('.', url).href;
  }
  if (!isUploadId(id)) throw new CliError(`not a tusk upload id or upload URL: "${idOrUrl}" (an id is 32 hex digits)`, EXIT.usage);
  // The status API sits beside the tus endpoint: <base>/files/ -> <base>/api/uploads/<id>.
  return { id, url: new URL(`../api/uploads/${id}`, filesUrl).href };
}

/**
 * The chunks of a response body (a reader loop: the DOM typings of fetch's body are not
 * iterable); a consumer that stops early cancels the rest, which frees the connection.
 */
async function* chunksOf(body: ReadableStream<Uint8Array>): AsyncGenerator<Uint8Array> {
  const reader = body.getReader();
  let finished = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) {
        finished = true;
        return;
      }
      yield value;
    }
  } finally {
    if (!finished) await reader.cancel().catch(() => undefined);
  }
}

/** The body as text, at most `limit` bytes (more is an error, not a truncated read). */
async function readBounded(res: Response, limit = MAX_RESPONSE_BYTES): Promise<string> {
  if (!res.body) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of chunksOf(res.body)) {
    size += chunk.byteLength;
    if (size > limit) {
      throw new CliError(`the server's answer is larger than ${limit} bytes; is ${res.url} a tusk server?`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** The refusal in a non-2xx answer: tusk's `{error:{code,message}}` and `Tusk-Error-Code`, or the text. */
async function refusal(res: Response, what: string): Promise<CliError> {
  let code = res.headers.get('tusk-error-code') ?? undefined;
  let message = '';
  try {
    const text = await readBounded(res);
    try {
      const body = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
      if (typeof body.error?.code === 'string') code = body.error.code;
      if (typeof body.error?.message === 'string') message = body.error.message;
    } catch {
      message = text.trim().slice(0, 200);
    }
  } catch {
    // the status line and the header say enough
  }
  const detail = [code, message].filter(Boolean).join(': ');
  return new CliError(`${what}: ${res.status} ${res.statusText}${detail ? ` (${detail})` : ''}`, exitCodeOf(res.status, code), code);
}

function networkError(err: unknown, what: string): CliError {
  const cause = err instanceof Error && err.cause instanceof Error ? err.cause.message : err instanceof Error ? err.message : String(err);
  return new CliError(`${what}: ${cause}`);
}

function parseDocument(text: string, what: string): StatusDocument {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new CliError(`${what}: the answer is not JSON; is this a tusk server?`);
  }
  const d = doc as Partial<StatusDocument> | null;
  if (!d || typeof d.status !== 'string' || typeof d.upload_id !== 'string' || typeof d.tasks !== 'object' || d.tasks === null) {
    throw new CliError(`${what}: the answer is not a status document; is this a tusk server?`);
  }
  return d as StatusDocument;
}

/** GET /api/uploads/<id>. */
export async function fetchDocument(url: string, token: string | undefined, signal: AbortSignal): Promise<StatusDocument> {
  const what = `GET ${url}`;
  let res: Response;
  try {
    res = await fetch(url, { headers: { Accept: 'application/json', ...authHeaders(token) }, signal: AbortSignal.any([signal, AbortSignal.timeout(REQUEST_TIMEOUT_MS)]) });
  } catch (err) {
    if (signal.aborted) throw signal.reason;
    throw networkError(err, what);
  }
  if (!res.ok) throw await refusal(res, what);
  return parseDocument(await readBounded(res), what);
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });

/**
 * Follows GET /api/uploads/<id>/events until the document reaches a terminal status, calling
 * `onDocument` with each document; resolves with the last. A dropped or silent stream is opened
 * again (after RECONNECT_DELAYS_MS; refusals other than 429 and 5xx end it with their error).
 */
export async function followDocument(
  url: string,
  token: string | undefined,
  onDocument: (doc: StatusDocument) => void,
  signal: AbortSignal,
): Promise<StatusDocument> {
  const what = `GET ${url}/events`;
  let attempt = 0;
  for (;;) {
    let lastError: CliError | undefined;
    const done = await streamOnce(`${url}/events`, token, signal, (doc) => {
      attempt = 0;
      onDocument(doc);
    }).catch((err: unknown) => {
      if (signal.aborted) throw signal.reason;
      if (err instanceof CliError && !retryable(err)) throw err;
      lastError = err instanceof CliError ? err : networkError(err, what);
      return undefined;
    });
    if (done) return done;
    const delay = RECONNECT_DELAYS_MS[attempt++];
    if (delay === undefined) throw lastError ?? new CliError(`${what}: the event stream kept ending before processing did`);
    await sleep(delay, signal);
  }
}

/** Errors without a code are the passing kind (network, 5xx, 429): worth another connection. */
const retryable = (err: CliError) => err.code === undefined;

/** One connection of the event stream: the terminal document, or undefined if the stream ended first. */
async function streamOnce(url: string, token: string | undefined, outer: AbortSignal, onDocument: (doc: StatusDocument) => void): Promise<StatusDocument | undefined> {
  const connection = new AbortController();
  const signal = AbortSignal.any([outer, connection.signal]);
  let idle: NodeJS.Timeout | undefined;
  const touch = () => {
    clearTimeout(idle);
    idle = setTimeout(() => connection.abort(new CliError(`no data on ${url} for ${STREAM_IDLE_MS / 1000} s`)), STREAM_IDLE_MS);
  };
  touch();
  try {
    const res = await fetch(url, { headers: { Accept: 'text/event-stream', ...authHeaders(token) }, signal });
    if (!res.ok) {
      const err = await refusal(res, `GET ${url}`);
      // 5xx and 429 are worth another try; the rest (401, 404, ...) will not change by waiting.
      throw res.status >= 500 || res.status === 429 ? new CliError(err.message, err.exitCode) : err;
    }
    if (!(res.headers.get('content-type') ?? '').startsWith('text/event-stream') || !res.body) {
      throw new CliError(`GET ${url}: not an event stream; is this a tusk server?`, EXIT.failed, 'not_an_event_stream');
    }
    let terminal: StatusDocument | undefined;
    let failure: CliError | undefined;
    const parser = createParser({
      maxBufferSize: MAX_RESPONSE_BYTES,
      onEvent: (event) => {
        if (event.event !== 'status' || terminal) return;
        const doc = parseDocument(event.data, `GET ${url}`);
        onDocument(doc);
        if (isTerminal(doc)) terminal = doc;
      },
      onError: (err: ParseError) => {
        if (err.type === 'max-buffer-size-exceeded') failure = new CliError(`GET ${url}: an event larger than ${MAX_RESPONSE_BYTES} bytes`, EXIT.failed, 'event_too_large');
      },
    });
    const decoder = new TextDecoder();
    for await (const chunk of chunksOf(res.body)) {
      touch();
      parser.feed(decoder.decode(chunk, { stream: true }));
      if (failure) throw failure;
      if (terminal) break;
    }
    return terminal;
  } catch (err) {
    if (connection.signal.aborted && !outer.aborted) throw connection.signal.reason;
    throw err;
  } finally {
    clearTimeout(idle);
    connection.abort();
  }
}
