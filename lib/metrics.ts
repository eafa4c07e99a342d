// Prometheus metrics of one tusk process (prom-client): one Registry per process, made by the
// composition root (tusk.ts, shared as hooks/core.ts `metrics`), holding every metric tusk has -
// name, type, labels and help are decided here and nowhere else - and Node's default process
// metrics. README "Metrics" lists them.
//
// tusd's names, types and labels where the meaning is the same, so that dashboards made for tusd
// work unchanged: tusd_requests_total{method} and tusd_errors_total{status,code} count the tus
// endpoint (/files/; `code` is tusk's catalogue code, lib/errors.ts, where tusd puts its own
// ERR_* names), tusd_bytes_received the bytes of tus request bodies stored, tusd_uploads_created /
// _finished / _terminated the upload lifecycle's events (hooks/lifecycle.ts: tus, direct and
// Companion uploads count alike), tusd_connections_open the API port's connections. tusd exposes
// its counters without the `_total` suffix, and so does tusk.
//
// Label values are bounded sets: methods, route templates, catalogue codes, queue names, S3
// operation and error names, fixed outcome words - never an upload id, a user, a URL or a message.
import http from 'node:http';
import { createHash, timingSafeEqual } from 'node:crypto';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Config } from '../config/index.js';
import { errorHeaders, TuskError } from './errors.js';
import type { Logger } from './logger.js';

/** Methods tusd counts (every one starts at 0, as in tusd); any other counts as `other`. */
const TUS_METHODS = ['GET', 'HEAD', 'POST', 'PATCH', 'DELETE', 'OPTIONS'] as const;
const HTTP_METHODS = new Set<string>([...TUS_METHODS, 'PUT']);

export type RefusalReason = 'quota_exceeded' | 'too_many_uploads' | 'rate_limit_user' | 'rate_limit_ip';
export type LockWaitOutcome = 'acquired' | 'timeout' | 'aborted' | 'error';
export type ScanVerdict = 'clean' | 'infected' | 'skipped' | 'empty' | 'too_large' | 'unavailable' | 'error';
export type DirectSessionEvent = 'initiated' | 'deduplicated' | 'completed' | 'aborted' | 'expired';
export type WebhookOutcome = 'delivered' | 'failed';
export type StepOutcome = 'completed' | 'failed' | 'delayed';
/** A PATCH body for an upload another instance holds (UPLOAD_ACK=disk), as the receiving instance saw it. */
export type ForwardOutcome = 'forwarded' | 'refused' | 'unreachable' | 'failed';
/** An instance waiting for another one to push an upload's held bytes to S3. */
export type HandOverOutcome = 'pushed' | 'holder_down' | 'timeout' | 'abandoned';

/** The write buffer of a process (UPLOAD_ACK=disk), read when /metrics is scraped. */
export interface UploadBufferStats {
  /** Bytes it uses on disk: segments not deleted yet and space reserved for bodies being received. */
  diskBytes: number;
  /** Uploads it holds bytes of (or is receiving or pushing). */
  uploads: number;
}

/** One queue's state, read from Redis when /metrics is scraped (workers/metrics.ts). */
export interface QueueStats {
  queue: string;
  /** Jobs by BullMQ state (waiting, active, delayed, prioritized, waiting-children, failed). */
  counts: Record<string, number>;
  /** Seconds since the oldest waiting job was added; 0 when none waits. */
  oldestWaitingSeconds: number;
}

const HTTP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800];
const S3_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120];
const LOCK_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const STEP_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];

export class Metrics {
  readonly registry = new Registry();

  // tusd's own names (see the header).
  readonly tusRequests = new Counter({ name: 'tusd_requests_total', help: 'Total number of requests served by tusd per method.', labelNames: ['method'] as const, registers: [this.registry] });
  readonly tusErrors = new Counter({ name: 'tusd_errors_total', help: 'Total number of errors per status.', labelNames: ['status', 'code'] as const, registers: [this.registry] });
  readonly bytesReceived = new Counter({ name: 'tusd_bytes_received', help: 'Number of bytes received for uploads.', registers: [this.registry] });
  readonly uploadsCreated = new Counter({ name: 'tusd_uploads_created', help: 'Number of created uploads.', registers: [this.registry] });
  readonly uploadsFinished = new Counter({ name: 'tusd_uploads_finished', help: 'Number of finished uploads.', registers: [this.registry] });
  readonly uploadsTerminated = new Counter({ name: 'tusd_uploads_terminated', help: 'Number of terminated uploads.', registers: [this.registry] });
  readonly connectionsOpen = new Gauge({ name: 'tusd_connections_open', help: 'Current number of open connections.', registers: [this.registry] });

  // tusk's own.
  readonly httpDuration = new Histogram({
    name: 'tusk_http_request_duration_seconds',
    help: 'Time from a request to its answer being written, by method, route template and status (499: the client left before the answer).',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: HTTP_BUCKETS,
    registers: [this.registry],
  });
  readonly httpErrors = new Counter({
    name: 'tusk_http_errors_total',
    help: 'Error answers of every face (tus, JSON API, Companion routes) by route template, status and catalogue code (Tusk-Error-Code).',
    labelNames: ['route', 'status', 'code'] as const,
    registers: [this.registry],
  });
  readonly uploadsRemoved = new Counter({
    name: 'tusk_uploads_removed_total',
    help: 'Uploads removed, by reason: terminated (deleted by the owner), aborted (a failed creation), expired (unfinished past UPLOAD_EXPIRY), concatenated (a partial taken over by its final upload).',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly refusals = new Counter({
    name: 'tusk_upload_refusals_total',
    help: 'New uploads and bodies refused by the quota (quota_exceeded, too_many_uploads) or the creation rate limits (rate_limit_user, rate_limit_ip).',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly s3Duration = new Histogram({
    name: 'tusk_s3_request_duration_seconds',
    help: 'S3 requests (whole SDK commands, retries included) by operation and outcome (ok, not_found, aborted, error).',
    labelNames: ['operation', 'outcome'] as const,
    buckets: S3_BUCKETS,
    registers: [this.registry],
  });
  readonly s3Errors = new Counter({
    name: 'tusk_s3_errors_total',
    help: 'S3 requests that failed (outcome error: neither "not found" nor aborted by tusk), by operation and error name.',
    labelNames: ['operation', 'code'] as const,
    registers: [this.registry],
  });
  readonly lockWait = new Histogram({
    name: 'tusk_lock_wait_seconds',
    help: "Time a request waited for an upload's lock, by outcome (acquired, timeout: answered 423, aborted: the client left, error).",
    labelNames: ['outcome'] as const,
    buckets: LOCK_BUCKETS,
    registers: [this.registry],
  });
  readonly lockReleaseRequests = new Counter({
    name: 'tusk_lock_release_requests_total',
    help: 'Requests to let go of an upload lock: sent by a waiting request, received by a holding one in this process.',
    labelNames: ['direction'] as const,
    registers: [this.registry],
  });
  readonly uploadBufferForwards = new Counter({
    name: 'tusk_upload_buffer_forwards_total',
    help: 'PATCH bodies for uploads whose bytes another instance holds (UPLOAD_ACK=disk), by what became of streaming them to it: forwarded, refused (then handed over), unreachable (then handed over), failed mid-body.',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly uploadBufferHandOvers = new Counter({
    name: 'tusk_upload_buffer_handovers_total',
    help: 'Waits for another instance to push an upload\'s held bytes to S3 (UPLOAD_ACK=disk), by outcome: pushed, holder_down (503), timeout (503), abandoned (its bytes given up).',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly uploadBufferDiskBytes = this.uploadBufferGauge(
    'tusk_upload_buffer_disk_bytes',
    'Bytes the write buffer (UPLOAD_ACK=disk) uses on this process\'s disk: acknowledged bytes not pushed to S3 yet and space reserved for bodies being received; at most UPLOAD_BUFFER_MAX. Absent in other modes.',
    (s) => s.diskBytes,
  );
  readonly uploadBufferUploads = this.uploadBufferGauge(
    'tusk_upload_buffer_uploads',
    'Uploads whose bytes this process\'s write buffer holds, receives or pushes (UPLOAD_ACK=disk); absent in other modes.',
    (s) => s.uploads,
  );
  readonly directSessions = new Counter({
    name: 'tusk_direct_upload_sessions_total',
    help: 'Direct-to-storage upload sessions by face (api, companion) and event (initiated, deduplicated, completed, aborted, expired).',
    labelNames: ['via', 'event'] as const,
    registers: [this.registry],
  });
  readonly stepDuration = new Histogram({
    name: 'tusk_step_duration_seconds',
    help: 'Pipeline jobs run by this worker process, by queue and outcome (completed; failed: an attempt threw; delayed: put back to run later, waiting for a scanner or interrupted by shutdown).',
    labelNames: ['queue', 'outcome'] as const,
    buckets: STEP_BUCKETS,
    registers: [this.registry],
  });
  readonly scanVerdicts = new Counter({
    name: 'tusk_scan_verdicts_total',
    help: 'Virus scans by verdict: clean, infected, skipped (scanning off), empty, too_large (over SCAN_MAX_BYTES), unavailable (no scanner answered: the upload waits), error (no usable answer; retried).',
    labelNames: ['verdict'] as const,
    registers: [this.registry],
  });
  readonly webhookDeliveries = new Counter({
    name: 'tusk_webhook_deliveries_total',
    help: 'Webhook delivery attempts by event and outcome (delivered, failed: retried while attempts are left).',
    labelNames: ['event', 'outcome'] as const,
    registers: [this.registry],
  });

  #queueStats: (() => Promise<QueueStats[]>) | undefined;
  #scannerProbe: (() => Promise<boolean | undefined>) | undefined;
  #uploadBufferStats: (() => UploadBufferStats) | undefined;

  readonly queueJobs = new Gauge({
    name: 'tusk_queue_jobs',
    help: 'Jobs in each pipeline queue by state, read from Redis at scrape time (every worker process reports the same queues: aggregate with max, not sum).',
    labelNames: ['queue', 'state'] as const,
    registers: [this.registry],
    collect: async () => {
      this.queueJobs.reset();
      for (const q of (await this.#queueStats?.()) ?? []) {
        for (const [state, count] of Object.entries(q.counts)) this.queueJobs.set({ queue: q.queue, state: state.replace(/-/g, '_') }, count);
      }
    },
  });
  readonly queueOldestWaiting = new Gauge({
    name: 'tusk_queue_oldest_waiting_job_age_seconds',
    help: 'Age of the oldest job waiting in each pipeline queue (0: none waits), read at scrape time.',
    labelNames: ['queue'] as const,
    registers: [this.registry],
    collect: async () => {
      this.queueOldestWaiting.reset();
      for (const q of (await this.#queueStats?.()) ?? []) this.queueOldestWaiting.set({ queue: q.queue }, q.oldestWaitingSeconds);
    },
  });
  readonly scannerUp = new Gauge({
    name: 'tusk_scanner_up',
    help: 'Whether the worker has a scanner that answered PING at scrape time (1) or not (0: none yet, or not answering); absent with scanning off.',
    registers: [this.registry],
    collect: async () => {
      this.scannerUp.reset();
      const up = await this.#scannerProbe?.();
      if (up !== undefined) this.scannerUp.set(up ? 1 : 0);
    },
  });

  constructor(options: { processMetrics?: boolean } = {}) {
    for (const method of TUS_METHODS) this.tusRequests.inc({ method }, 0);
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  /** Where the queue gauges come from (a worker process; they are absent elsewhere). */
  setQueueStats(source: () => Promise<QueueStats[]>): void {
    this.#queueStats = source;
  }

  /** A gauge read from the write buffer at scrape time; without one it has no sample. */
  private uploadBufferGauge(name: string, help: string, pick: (s: UploadBufferStats) => number): Gauge {
    const stats = () => this.#uploadBufferStats?.();
    return new Gauge({
      name,
      help,
      registers: [this.registry],
      collect() {
        this.reset();
        const s = stats();
        if (s) this.set(pick(s));
      },
    });
  }

  /** Where the write buffer gauges come from (a server with UPLOAD_ACK=disk). */
  setUploadBufferStats(source: () => UploadBufferStats): void {
    this.#uploadBufferStats = source;
  }

  /** Where tusk_scanner_up comes from (a worker process; undefined: scanning is off). */
  setScannerProbe(probe: () => Promise<boolean | undefined>): void {
    this.#scannerProbe = probe;
  }

  /** A method as a label value: the ones tusk answers, else `other`. */
  static method(method: string | undefined): string {
    const m = (method ?? '').toUpperCase();
    return HTTP_METHODS.has(m) ? m : 'other';
  }

  /** One finished S3 command (lib/s3.ts times every command of the process's client). */
  observeS3(commandName: string, seconds: number, err?: unknown): void {
    const operation = commandName.replace(/Command$/, '');
    const outcome = err === undefined ? 'ok' : s3Outcome(err);
    this.s3Duration.observe({ operation, outcome }, seconds);
    if (outcome === 'error') this.s3Errors.inc({ operation, code: errorName(err) });
  }

  /** The exposition text and its content type. */
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

function s3Outcome(err: unknown): 'not_found' | 'aborted' | 'error' {
  const e = err as { name?: unknown; $metadata?: { httpStatusCode?: number } } | null;
  if (e?.name === 'AbortError') return 'aborted';
  if (['NotFound', 'NoSuchKey', 'NoSuchUpload'].includes(String(e?.name)) || e?.$metadata?.httpStatusCode === 404) return 'not_found';
  return 'error';
}

/** An error's name as a label value (SDK service errors: S3's code; network errors: the errno code). */
function errorName(err: unknown): string {
  const e = err as { name?: unknown; code?: unknown } | null;
  const raw = typeof e?.code === 'string' && e.name === 'Error' ? e.code : typeof e?.name === 'string' ? e.name : 'unknown';
  return /^[A-Za-z0-9_.-]{1,64}$/.test(raw) ? raw : 'other';
}

/** Does this Authorization header carry METRICS_TOKEN (compared in constant time)? */
export function metricsAuthorized(authorization: string | undefined, token: string | undefined): boolean {
  if (token === undefined) return true;
  const match = /^Bearer +(\S+)\s*$/i.exec(authorization ?? '');
  if (!match?.[1]) return false;
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(match[1]), digest(token));
}

/** The 401 of /metrics without the token. */
export const metricsUnauthorized = () => new TuskError('unauthorized', 'GET /metrics needs Authorization: Bearer <METRICS_TOKEN>', {}, { 'WWW-Authenticate': 'Bearer realm="metrics"' });

/**
 * GET /metrics on a plain Node listener (METRICS_PORT, the worker's health port); returns false
 * for any other path, which the caller answers.
 */
export async function answerMetricsRequest(req: http.IncomingMessage, res: http.ServerResponse, metrics: Metrics, token: string | undefined): Promise<boolean> {
  if (new URL(req.url ?? '/', 'http://x').pathname !== '/metrics') return false;
  if (req.method !== 'GET' && req.method !== 'HEAD') writeJsonError(res, new TuskError('method_not_allowed', undefined, {}, { Allow: 'GET, HEAD' }));
  else if (!metricsAuthorized(req.headers.authorization, token)) writeJsonError(res, metricsUnauthorized());
  else {
    const { contentType, body } = await metrics.render();
    res.writeHead(200, { 'Content-Type': contentType, 'Cache-Control': 'no-store' }).end(body);
  }
  return true;
}

/** An error of the catalogue on a plain Node listener, rendered as the JSON API renders it. */
function writeJsonError(res: http.ServerResponse, err: TuskError): void {
  res.writeHead(err.status, { ...errorHeaders(err), 'Content-Type': 'application/json' }).end(JSON.stringify({ error: { code: err.code, message: err.message } }));
}

/** The process's own metrics listener (METRICS_PORT): /metrics and nothing else. */
export async function serveMetrics(metrics: Metrics, options: { host: string; port: number; token: string | undefined }, logger: Logger): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    answerMetricsRequest(req, res, metrics, options.token)
      .then((answered) => {
        if (!answered) writeJsonError(res, new TuskError('not_found', 'This listener answers GET /metrics only'));
      })
      .catch((err: unknown) => {
        logger.error({ err }, 'could not render the metrics');
        if (!res.headersSent) res.writeHead(500).end();
        else res.destroy();
      });
  });
  server.requestTimeout = 10_000;
  server.headersTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  logger.debug({ host: options.host, port, token: options.token !== undefined }, 'metrics listening: GET /metrics');
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/**
 * Where this process answers GET /metrics, for the start-up announcement (`apiBase`: the API
 * port's URL when this process has one; `withWorkers`: it runs workers, whose health port answers
 * it), and a warning when the API port keeps it to itself.
 */
export function metricsSummary(config: Pick<Config, 'metrics' | 'host' | 'pipeline'>, apiBase: string | undefined, withWorkers: boolean): { state: string; warning?: string } {
  const m = config.metrics;
  if (!m.enabled) return { state: 'off (METRICS=false)' };
  const guarded = m.token !== undefined ? ' (Bearer METRICS_TOKEN)' : '';
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  const where: string[] = [];
  if (m.port !== undefined) where.push(`http://${host}:${m.port}/metrics`);
  else {
    if (apiBase && m.onApiPort) where.push(`${apiBase}/metrics`);
    if (withWorkers && config.pipeline.workerHealthPort !== undefined) where.push(`http://${host}:${config.pipeline.workerHealthPort}/metrics`);
  }
  if (where.length) return { state: `${where.join(', ')}${guarded}` };
  if (apiBase) {
    return {
      state: 'not served',
      warning:
        'Metrics are not served: the API port is reachable beyond this machine (HOST is not loopback, or TRUST_PROXY names a proxy) and METRICS_TOKEN is not set. Set METRICS_PORT (a separate listener) or METRICS_TOKEN, or METRICS=false.',
    };
  }
  return { state: 'not served (set METRICS_PORT or WORKER_HEALTH_PORT)' };
}
