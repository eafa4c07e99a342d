// `tusk upload <file...>`: resumable uploads with tus-js-client, to tusk or any tus 1.0 server.
//
// Resuming: each upload's URL is kept in a small JSON file (tus-js-client's FileUrlStorage) under
// the file's fingerprint (absolute path, size, mtime, endpoint), from its creation until it
// finished; run the same command again after Ctrl-C, a crash or a network that stayed away past
// the retries, and it asks the server for the offset (HEAD) and sends only the rest. A changed
// file has another fingerprint and starts over. Within one run, a failed request is retried
// (RETRY_DELAYS_MS, the count starting over whenever bytes got through) and a connection on which
// nothing moves for --idle-timeout is dropped and retried: a pulled cable gives no error, only
// silence, and TCP alone would wait many minutes.
import fs from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import type { ClientRequest } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import * as tus from 'tus-js-client';
import { parseByteSize, parseDuration } from '../config/units.js';
import { COMMON_HELP, COMMON_OPTIONS, CliError, EXIT, Interrupted, authHeaders, clientOptions, exitCodeOf, exitOfSignal, parseCommandLine, type ClientOptions } from './options.js';
import { createReporter, type FileTask, type Reporter, type Uploaded } from './reporter.js';
import { followDocument, isTerminal, statusTarget, type StatusDocument } from './status-api.js';

declare module 'tus-js-client' {
  /** Exported by tus-js-client's Node build (lib/node/index.js), missing from its type declarations. */
  export class FileUrlStorage implements UrlStorage {
    constructor(filePath: string);
    findAllUploads(): Promise<PreviousUpload[]>;
    findUploadsByFingerprint(fingerprint: string): Promise<PreviousUpload[]>;
    removeUpload(urlStorageKey: string): Promise<void>;
    addUpload(fingerprint: string, upload: PreviousUpload): Promise<string>;
  }
}

/** 64 MiB: a multiple of tusk's S3 part size (8 MiB), and what a server that drops an interrupted PATCH's bytes loses at most. */
const DEFAULT_CHUNK_SIZE = 64 * 1024 * 1024;
const RETRY_DELAYS_MS = [0, 1000, 3000, 5000, 10_000, 20_000];
const DEFAULT_IDLE_TIMEOUT_MS = 60_000;
/** Event streams followed at once with --wait (tusk allows 32 per user). */
const WAIT_CONCURRENCY = 4;

export const UPLOAD_HELP = `usage: tusk upload [options] <file>...

Uploads each file with the tus protocol (resumable: after Ctrl-C or a dropped network, run the
same command again and it goes on where it stopped), then prints its upload URL.

  -c, --chunk-size <size>    bytes per PATCH request, e.g. 8MiB (default 64MiB)
  -m, --metadata <key=value> tus metadata, repeatable (filename is the file's name unless given)
  -w, --wait                 then wait for processing and show each task's progress (tusk only)
      --idle-timeout <time>  drop and retry a connection on which nothing moved this long (60s)
      --resume-file <path>   where unfinished uploads are remembered (default: $TUSK_RESUME_FILE,
                             else $XDG_STATE_HOME/tusk/uploads.json or ~/.local/state/tusk/uploads.json)
${COMMON_HELP}

Exit codes: 0 done (with --wait: every upload ready), 1 failed, 2 bad usage, 3 processing ended
rejected or failed, 4 not found or expired, 5 not authorized, 130 interrupted.`;

const OPTIONS = {
  ...COMMON_OPTIONS,
  'chunk-size': { type: 'string', short: 'c' },
  metadata: { type: 'string', short: 'm', multiple: true },
  wait: { type: 'boolean', short: 'w' },
  'idle-timeout': { type: 'string' },
  'resume-file': { type: 'string' },
} as const;

interface UploadSettings extends ClientOptions {
  chunkSize: number;
  metadata: Record<string, string>;
  wait: boolean;
  idleTimeoutMs: number;
  resumeFile: string;
}

function defaultResumeFile(env: NodeJS.ProcessEnv): string {
  if (env.TUSK_RESUME_FILE) return env.TUSK_RESUME_FILE;
  const stateHome = env.XDG_STATE_HOME || path.join(os.homedir(), '.local', 'state');
  return path.join(stateHome, 'tusk', 'uploads.json');
}

function settingsOf(values: ReturnType<typeof parseCommandLine<typeof OPTIONS>>['values'], env: NodeJS.ProcessEnv): UploadSettings {
  const chunkSize = values['chunk-size'] === undefined ? DEFAULT_CHUNK_SIZE : parseByteSize(values['chunk-size']);
  if (!chunkSize || chunkSize < 1) throw new CliError(`--chunk-size: not a size: "${values['chunk-size']}" (e.g. 8MiB)`, EXIT.usage);
  const idleTimeoutMs = values['idle-timeout'] === undefined ? DEFAULT_IDLE_TIMEOUT_MS : parseDuration(values['idle-timeout']);
  if (!idleTimeoutMs || idleTimeoutMs < 1000) throw new CliError(`--idle-timeout: at least 1s (got "${values['idle-timeout']}")`, EXIT.usage);
  const metadata: Record<string, string> = {};
  for (const pair of values.metadata ?? []) {
    const eq = pair.indexOf('=');
    const key = eq > 0 ? pair.slice(0, eq) : '';
    // tus: keys are ASCII without spaces and commas (they separate the pairs of Upload-Metadata).
    if (!/^[\x21-\x2b\x2d-\x7e]+$/.test(key)) throw new CliError(`--metadata: expected key=value with a key of ASCII letters, no spaces or commas (got "${pair}")`, EXIT.usage);
    metadata[key] = pair.slice(eq + 1);
  }
  return { ...clientOptions(values, env), chunkSize, metadata, wait: values.wait ?? false, idleTimeoutMs, resumeFile: values['resume-file'] ?? defaultResumeFile(env) };
}

/** tus answers carry a short text at most; tus-js-client would read any body whole. */
const MAX_TUS_RESPONSE_BYTES = 1024 * 1024;

/**
 * tus-js-client's Node HTTP stack, with an idle limit on each request's socket (no byte either
 * way for `idleMs` and the request fails like any dropped connection, which tus-js-client
 * retries) and a bound on each response body.
 */
class IdleLimitedHttpStack implements tus.HttpStack {
  private readonly inner = new tus.DefaultHttpStack({});
  constructor(private readonly idleMs: number) {}
  getName(): string {
    return 'tusk-cli';
  }
  createRequest(method: string, url: string): tus.HttpRequest {
    const request = this.inner.createRequest(method, url);
    const send = request.send.bind(request);
    const idleMs = this.idleMs;
    request.send = (body: unknown) => {
      const sent = send(body);
      // send() made the node:http request synchronously; limit its socket's silence.
      const req = request.getUnderlyingObject() as ClientRequest | null;
      req?.setTimeout(idleMs, () => req.destroy(new Error(`nothing moved for ${Math.round(idleMs / 1000)} s`)));
      req?.on('response', (res) => {
        let size = 0;
        res.on('error', () => undefined); // the request's own 'error' carries it to tus-js-client
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_TUS_RESPONSE_BYTES) req.destroy(new Error(`an answer larger than ${MAX_TUS_RESPONSE_BYTES} bytes; is this a tus server?`));
        });
      });
      return sent;
    };
    return request;
  }
}

/**
 * FileUrlStorage, with its writes awaitable: tus-js-client removes a finished upload's entry
 * without waiting for it, and the process must not exit before the file says so.
 */
class SettledUrlStorage implements tus.UrlStorage {
  private readonly inner: tus.FileUrlStorage;
  private readonly pending = new Set<Promise<unknown>>();
  constructor(file: string) {
    this.inner = new tus.FileUrlStorage(file);
  }
  private track<T>(promise: Promise<T>): Promise<T> {
    this.pending.add(promise);
    const forget = () => this.pending.delete(promise);
    promise.then(forget, forget);
    return promise;
  }
  findAllUploads() {
    return this.inner.findAllUploads();
  }
  findUploadsByFingerprint(fingerprint: string) {
    return this.inner.findUploadsByFingerprint(fingerprint);
  }
  removeUpload(key: string) {
    return this.track(this.inner.removeUpload(key));
  }
  addUpload(fingerprint: string, upload: tus.PreviousUpload) {
    return this.track(this.inner.addUpload(fingerprint, upload));
  }
  async settled(): Promise<void> {
    await Promise.allSettled([...this.pending]);
  }
}

/** A failed tus request in words, with tusk's error code when the server gave one. */
function uploadError(err: Error): CliError {
  const detailed = err as Partial<tus.DetailedError>;
  const res = detailed.originalResponse;
  if (res) {
    const status = res.getStatus();
    const code = res.getHeader('Tusk-Error-Code') || undefined;
    const text = res.getBody().trim().slice(0, 200);
    const method = detailed.originalRequest?.getMethod() ?? '';
    return new CliError(`${method} answered ${status}${code ? ` ${code}` : ''}${text ? `: ${text}` : ''}`, exitCodeOf(status, code), code);
  }
  const cause = detailed.causingError?.message;
  return new CliError(cause ? `${err.message.split(',')[0]}: ${cause}` : err.message);
}

const isRetryableStatus = (status: number) => status < 400 || status >= 500 || status === 409 || status === 423;

interface Current {
  file: FileTask;
  upload: tus.Upload;
  offset?: number;
}

/** Uploads one file; resolves with its URL, rejects with a CliError or Interrupted. */
function uploadFile(file: FileTask, s: UploadSettings, storage: SettledUrlStorage, reporter: Reporter, signal: AbortSignal, current: { value?: Current }): Promise<Uploaded> {
  return new Promise<Uploaded>((resolve, reject) => {
    let headOffset: number | undefined;
    let resumedFrom: number | undefined;
    const upload = new tus.Upload(fs.createReadStream(file.path), {
      endpoint: s.endpoint,
      chunkSize: s.chunkSize,
      retryDelays: RETRY_DELAYS_MS,
      metadata: { filename: file.name, ...s.metadata },
      headers: authHeaders(s.token),
      httpStack: new IdleLimitedHttpStack(s.idleTimeoutMs),
      urlStorage: storage,
      storeFingerprintForResuming: true,
      removeFingerprintOnSuccess: true,
      onAfterResponse: (req, res) => {
        if (req.getMethod() === 'HEAD' && res.getStatus() >= 200 && res.getStatus() < 300) headOffset = Number(res.getHeader('Upload-Offset'));
      },
      onUploadUrlAvailable: () => {
        const url = upload.url ?? '';
        if (headOffset === undefined) {
          resumedFrom = 0;
          reporter.created(file, url);
        } else if (resumedFrom === undefined) {
          resumedFrom = headOffset;
          reporter.resumed(file, url, headOffset);
        }
        if (headOffset !== undefined && current.value) current.value.offset = headOffset;
        headOffset = undefined;
      },
      onShouldRetry: (err, attempt) => {
        const status = err.originalResponse?.getStatus() ?? 0;
        if (!isRetryableStatus(status)) return false;
        reporter.retrying(file, uploadError(err).message, RETRY_DELAYS_MS[attempt] ?? 0);
        return true;
      },
      onProgress: (sent) => reporter.progress(file, sent),
      onChunkComplete: (_chunk, accepted) => {
        if (current.value) current.value.offset = accepted;
      },
      onSuccess: () => {
        signal.removeEventListener('abort', onAbort);
        resolve({ url: upload.url ?? '', resumedFrom: resumedFrom ?? 0 });
      },
      onError: (err) => {
        signal.removeEventListener('abort', onAbort);
        reject(uploadError(err));
      },
    });
    current.value = { file, upload };
    const onAbort = () => {
      // Stop sending, keep the upload on the server (no termination): the next run resumes it.
      void upload.abort(false).finally(() => reject(signal.reason));
    };
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    upload
      .findPreviousUploads()
      .then((previous) => {
        // The newest entry for this fingerprint; an older one that fails its HEAD is dropped by tus-js-client.
        const latest = previous.sort((a, b) => Date.parse(a.creationTime) - Date.parse(b.creationTime)).pop();
        if (latest) upload.resumeFromPreviousUpload(latest);
      })
      .catch((err: unknown) => reporter.retrying(file, `cannot read ${s.resumeFile} (${err instanceof Error ? err.message : err}); starting afresh`, 0))
      .finally(() => {
        if (!signal.aborted) upload.start();
      });
  });
}

async function filesOf(paths: string[]): Promise<FileTask[]> {
  const files: FileTask[] = [];
  for (const p of paths) {
    let info;
    try {
      info = await stat(p);
    } catch (err) {
      throw new CliError(`${p}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`, EXIT.usage);
    }
    if (!info.isFile()) throw new CliError(`${p}: not a regular file`, EXIT.usage);
    try {
      fs.accessSync(p, fs.constants.R_OK);
    } catch {
      throw new CliError(`${p}: not readable`, EXIT.usage);
    }
    files.push({ path: path.resolve(p), name: path.basename(p), size: info.size });
  }
  return files;
}

/** Follows processing of each uploaded file, a few at a time; resolves with the worst exit code. */
async function waitForProcessing(done: Array<{ file: FileTask; url: string }>, s: UploadSettings, reporter: Reporter, signal: AbortSignal): Promise<number> {
  let exit: number = EXIT.ok;
  const queue = [...done];
  const worker = async () => {
    for (let next = queue.shift(); next; next = queue.shift()) {
      const { file, url } = next;
      let target;
      try {
        target = statusTarget(url, s.endpoint);
      } catch {
        reporter.failed(file, new CliError(`--wait needs tusk's status API: ${url} is not a tusk upload URL`));
        exit = Math.max(exit, EXIT.failed);
        continue;
      }
      try {
        const doc: StatusDocument = await followDocument(target.url, s.token, (d) => reporter.processing(file, d), signal);
        reporter.processed(file, doc);
        if (isTerminal(doc) && doc.status !== 'ready') exit = Math.max(exit, EXIT.processing);
      } catch (err) {
        if (signal.aborted) throw signal.reason;
        const e = err instanceof CliError ? err : new CliError(String(err));
        reporter.failed(file, e);
        exit = Math.max(exit, e.exitCode);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(WAIT_CONCURRENCY, done.length) }, worker));
  return exit;
}

export async function upload(args: string[], env: NodeJS.ProcessEnv, signal: AbortSignal): Promise<number> {
  const { values, positionals } = parseCommandLine(args, OPTIONS);
  if (values.help) {
    process.stdout.write(`${UPLOAD_HELP}\n`);
    return EXIT.ok;
  }
  const s = settingsOf(values, env);
  if (positionals.length === 0) throw new CliError('which file(s)? (tusk upload --help)', EXIT.usage);
  const files = await filesOf(positionals);
  await mkdir(path.dirname(s.resumeFile), { recursive: true, mode: 0o700 });
  const storage = new SettledUrlStorage(s.resumeFile);
  const reporter = createReporter(s.json, files);
  const current: { value?: Current } = {};
  const done: Array<{ file: FileTask; url: string }> = [];
  let exit: number = EXIT.ok;
  try {
    for (const file of files) {
      reporter.begin(file);
      try {
        const result = await uploadFile(file, s, storage, reporter, signal, current);
        await storage.settled();
        reporter.uploaded(file, result);
        done.push({ file, url: result.url });
      } catch (err) {
        if (err instanceof Interrupted) {
          await storage.settled();
          reporter.interrupted(file, current.value?.upload.url ?? undefined, current.value?.offset, true);
          return exitOfSignal(err.signal);
        }
        const e = err instanceof CliError ? err : new CliError(String(err));
        reporter.failed(file, e);
        exit = Math.max(exit, e.exitCode);
      }
    }
    current.value = undefined;
    if (s.wait && done.length) {
      try {
        exit = Math.max(exit, await waitForProcessing(done, s, reporter, signal));
      } catch (err) {
        if (err instanceof Interrupted) {
          reporter.interrupted(undefined, undefined, undefined, false);
          return exitOfSignal(err.signal);
        }
        throw err;
      }
    }
    return exit;
  } finally {
    reporter.close();
  }
}
