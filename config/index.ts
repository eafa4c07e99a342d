// The one typed configuration of tusk, read from the environment and validated at start-up.
// Every variable is documented in README.md ("Configuration"); keep the two in step.
import { isIP } from 'node:net';
import path from 'node:path';
import proxyAddr from 'proxy-addr';
import { z } from 'zod';
import { parseByteSize, parseDuration } from './units.js';

export { parseByteSize, parseDuration };

const MiB = 1024 * 1024;

const bool = (name: string) =>
  z.string().transform((v, ctx) => {
    const s = v.trim().toLowerCase();
    if (['1', 'true', 'yes', 'on'].includes(s)) return true;
    if (['0', 'false', 'no', 'off', ''].includes(s)) return false;
    ctx.addIssue({ code: 'custom', message: `${name} must be true or false (got "${v}")` });
    return z.NEVER;
  });

const bytes = (name: string) =>
  z.string().transform((v, ctx) => {
    const n = parseByteSize(v);
    if (n === undefined || n < 0) {
      ctx.addIssue({ code: 'custom', message: `${name} must be a size in bytes such as 1073741824 or 1GiB (got "${v}")` });
      return z.NEVER;
    }
    return n;
  });

const duration = (name: string) =>
  z.string().transform((v, ctx) => {
    const n = parseDuration(v);
    if (n === undefined) {
      ctx.addIssue({ code: 'custom', message: `${name} must be a duration such as 3600, 90s, 15m, 24h or 7d (got "${v}")` });
      return z.NEVER;
    }
    return n;
  });

const url = (name: string, protocols: string[]) =>
  z.string().transform((v, ctx) => {
    try {
      const parsed = new URL(v);
      if (!protocols.includes(parsed.protocol)) throw new Error('protocol');
      return v.replace(/\/+$/, '');
    } catch {
      ctx.addIssue({ code: 'custom', message: `${name} must be a URL starting with ${protocols.join(' or ')}// (got "${v}")` });
      return z.NEVER;
    }
  });

const decimal = (name: string, min: number, max: number) =>
  z.string().transform((v, ctx) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < min || n > max) {
      ctx.addIssue({ code: 'custom', message: `${name} must be a number from ${min} to ${max} (got "${v}")` });
      return z.NEVER;
    }
    return n;
  });

const integer = (name: string, min: number, max: number) =>
  z.string().transform((v, ctx) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) {
      ctx.addIssue({ code: 'custom', message: `${name} must be a whole number from ${min} to ${max} (got "${v}")` });
      return z.NEVER;
    }
    return n;
  });

const env = z.object({
  PORT: integer('PORT', 0, 65535).default(1080),
  HOST: z.string().min(1).optional(),
  PUBLIC_URL: url('PUBLIC_URL', ['http:', 'https:']).optional(),
  TRUST_PROXY: z.string().optional(),
  STORAGE: z.enum(['s3', 'file'], { message: 'STORAGE must be "s3" or "file"' }).optional(),
  DATA_DIR: z.string().min(1).default('./data'),
  S3_ENDPOINT: url('S3_ENDPOINT', ['http:', 'https:']).optional(),
  S3_REGION: z.string().min(1).default('us-east-1'),
  S3_BUCKET: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'S3_BUCKET must be a valid bucket name (3-63 lowercase letters, digits, dots, hyphens)').optional(),
  S3_ACCESS_KEY_ID: z.string().min(1).optional(),
  S3_SECRET_ACCESS_KEY: z.string().min(1).optional(),
  S3_FORCE_PATH_STYLE: bool('S3_FORCE_PATH_STYLE').default(true),
  S3_PART_SIZE: bytes('S3_PART_SIZE').default(8 * MiB),
  S3_MAX_CONCURRENT_PART_UPLOADS: integer('S3_MAX_CONCURRENT_PART_UPLOADS', 1, 1000).default(16),
  S3_BUCKET_BOOTSTRAP: bool('S3_BUCKET_BOOTSTRAP').default(false),
  S3_ABORT_INCOMPLETE_AFTER_DAYS: integer('S3_ABORT_INCOMPLETE_AFTER_DAYS', 1, 3650).default(7),
  // When a PATCH is acknowledged (lib/stores/s3-write-buffer.ts; README "Performance").
  UPLOAD_ACK: z.enum(['storage', 'disk'], { message: 'UPLOAD_ACK must be "storage" or "disk"' }).default('storage'),
  UPLOAD_BUFFER_DIR: z.string().min(1).optional(),
  UPLOAD_BUFFER_MAX: bytes('UPLOAD_BUFFER_MAX').default(2 * 1024 * MiB),
  UPLOAD_BUFFER_IDLE_FLUSH: duration('UPLOAD_BUFFER_IDLE_FLUSH').default(10_000),
  UPLOAD_BUFFER_ABANDON_AFTER: duration('UPLOAD_BUFFER_ABANDON_AFTER').default(3_600_000),
  UPLOAD_BUFFER_FORWARD: bool('UPLOAD_BUFFER_FORWARD').default(true),
  UPLOAD_BUFFER_PEER_PORT: integer('UPLOAD_BUFFER_PEER_PORT', 0, 65535).default(0),
  UPLOAD_BUFFER_PEER_URL: url('UPLOAD_BUFFER_PEER_URL', ['http:']).optional(),
  CORS_ORIGINS: z.string().default('*'),
  REDIS_URL: url('REDIS_URL', ['redis:', 'rediss:', 'unix:']).optional(),
  REDIS_PREFIX: z.string().default('tusk:'),
  MAX_UPLOAD_SIZE: bytes('MAX_UPLOAD_SIZE').default(50 * 1024 * MiB),
  CHECKSUM_SPOOL_LIMIT: bytes('CHECKSUM_SPOOL_LIMIT').default(2 * 1024 * MiB),
  UPLOAD_EXPIRY: duration('UPLOAD_EXPIRY').default(24 * 3_600_000),
  IDLE_TIMEOUT: duration('IDLE_TIMEOUT').default(60_000),
  LOCK_ACQUIRE_TIMEOUT: duration('LOCK_ACQUIRE_TIMEOUT').default(30_000),
  LOCK_TTL: duration('LOCK_TTL').default(30_000),
  SHUTDOWN_TIMEOUT: duration('SHUTDOWN_TIMEOUT').default(25_000),
  CLEANUP_INTERVAL: duration('CLEANUP_INTERVAL').default(15 * 60_000),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  // Prometheus metrics (lib/metrics.ts; README "Metrics").
  METRICS: bool('METRICS').default(true),
  METRICS_PORT: integer('METRICS_PORT', 0, 65535).optional(),
  METRICS_TOKEN: z.string().regex(/^[\x21-\x7e]{16,256}$/, 'METRICS_TOKEN must be 16 to 256 printable characters without spaces').optional(),
  // The upload page (web/, served by server/http/web-ui.ts) and tusk's signed derived-file URLs (lib/signed-urls.ts).
  WEB_UI: bool('WEB_UI').default(true),
  WEB_UI_TOKEN_COOKIE: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'WEB_UI_TOKEN_COOKIE must be a cookie name (letters, digits, _ and -)').optional(),
  URL_SIGNING_SECRET: z.string().min(32, 'URL_SIGNING_SECRET must be at least 32 characters').optional(),
  // Authentication, quotas and rate limits (hooks/auth.ts, hooks/quota.ts, hooks/rate-limit.ts).
  AUTH_JWT_SECRET: z.string().optional(),
  AUTH_JWT_PUBLIC_KEY: z.string().optional(),
  AUTH_JWKS_URL: url('AUTH_JWKS_URL', ['http:', 'https:']).optional(),
  AUTH_JWT_ISSUER: z.string().min(1).optional(),
  AUTH_JWT_AUDIENCE: z.string().min(1).optional(),
  AUTH_JWT_ALGORITHMS: z.string().optional(),
  AUTH_CLOCK_TOLERANCE: duration('AUTH_CLOCK_TOLERANCE').default(5_000),
  AUTH_REQUIRE_EXP: bool('AUTH_REQUIRE_EXP').optional(),
  AUTH_MAX_TOKEN_LIFETIME: duration('AUTH_MAX_TOKEN_LIFETIME').optional(),
  QUOTA_BYTES: bytes('QUOTA_BYTES').default(0),
  MAX_CONCURRENT_UPLOADS: integer('MAX_CONCURRENT_UPLOADS', 0, 1_000_000).default(0),
  RATE_LIMIT_CREATIONS_PER_MINUTE_USER: integer('RATE_LIMIT_CREATIONS_PER_MINUTE_USER', 0, 1_000_000).default(60),
  RATE_LIMIT_CREATIONS_PER_MINUTE_IP: integer('RATE_LIMIT_CREATIONS_PER_MINUTE_IP', 0, 1_000_000).default(600),
  // Processing pipeline (workers/pipeline.ts, workers/jobs/).
  SCAN_REQUIRED: bool('SCAN_REQUIRED').default(true),
  CLAMD_SOCKET: z.string().min(1).optional(),
  CLAMD_HOST: z.string().min(1).optional(),
  CLAMD_PORT: integer('CLAMD_PORT', 1, 65535).default(3310),
  CLAMD_TIMEOUT: duration('CLAMD_TIMEOUT').default(120_000),
  CLAMD_DATABASE_DIR: z.string().min(1).optional(),
  SCAN_MAX_BYTES: bytes('SCAN_MAX_BYTES').default(100 * MiB),
  QUARANTINE_MODE: z.enum(['move', 'delete'], { message: 'QUARANTINE_MODE must be "move" or "delete"' }).default('move'),
  // A generic upload server takes any file; refusing types is opt-in.
  ALLOWED_TYPES: z.string().default('*/*'),
  THUMBNAIL_WIDTHS: z.string().default('160,640,1280'),
  THUMBNAIL_FORMATS: z.string().default('webp,jpeg'),
  MAX_IMAGE_PIXELS: integer('MAX_IMAGE_PIXELS', 1, 2_000_000_000).default(100_000_000),
  MAX_MEDIA_DURATION: duration('MAX_MEDIA_DURATION').default(4 * 3_600_000),
  MAX_VIDEO_PIXEL_FRAMES: integer('MAX_VIDEO_PIXEL_FRAMES', 1, Number.MAX_SAFE_INTEGER).default(1e12),
  MIN_VIDEO_BITS_PER_PIXEL: decimal('MIN_VIDEO_BITS_PER_PIXEL', 0, 1).default(0.00025),
  REPROCESS_FORCE_AFTER: duration('REPROCESS_FORCE_AFTER').default(60_000),
  SIGNED_GET_URL_TTL: duration('SIGNED_GET_URL_TTL').default(3_600_000),
  S3_PUBLIC_ENDPOINT: url('S3_PUBLIC_ENDPOINT', ['http:', 'https:']).optional(),
  WEBHOOK_URL: url('WEBHOOK_URL', ['http:', 'https:']).optional(),
  WEBHOOK_SECRET: z.string().min(1).optional(),
  FFMPEG_PATH: z.string().min(1).default('ffmpeg'),
  FFPROBE_PATH: z.string().min(1).default('ffprobe'),
  TRANSCODE_TIMEOUT_FACTOR: z.string().regex(/^\d+(\.\d+)?$/, 'TRANSCODE_TIMEOUT_FACTOR must be a number such as 10').default('10'),
  TRANSCODE_PRESET: z.enum(['ultrafast', 'superfast', 'veryfast', 'faster', 'fast', 'medium', 'slow', 'slower', 'veryslow']).default('veryfast'),
  TRANSCODE_MIN_TIMEOUT: duration('TRANSCODE_MIN_TIMEOUT').default(120_000),
  STEP_TIMEOUT: duration('STEP_TIMEOUT').default(120_000),
  CONCURRENCY_SCAN: integer('CONCURRENCY_SCAN', 1, 64).default(2),
  CONCURRENCY_METADATA: integer('CONCURRENCY_METADATA', 1, 64).default(2),
  CONCURRENCY_THUMBNAIL: integer('CONCURRENCY_THUMBNAIL', 1, 64).default(2),
  CONCURRENCY_TRANSCODE: integer('CONCURRENCY_TRANSCODE', 1, 64).default(1),
  STEP_ATTEMPTS: integer('STEP_ATTEMPTS', 1, 100).default(3),
  STEP_BACKOFF: duration('STEP_BACKOFF').default(2_000),
  TRANSCODE_LOCK_DURATION: duration('TRANSCODE_LOCK_DURATION').default(120_000),
  WORK_DIR: z.string().min(1).optional(),
  WORKER_HEALTH_PORT: integer('WORKER_HEALTH_PORT', 0, 65535).optional(),
  WORKER_QUEUES: z.string().optional(),
  // Direct-to-storage uploads (server/api/direct-uploads.ts).
  SINGLE_PUT_MAX: bytes('SINGLE_PUT_MAX').default(100 * MiB),
  DIRECT_CHUNK_SIZE: bytes('DIRECT_CHUNK_SIZE').default(10 * MiB),
  SIGNED_URL_TTL: duration('SIGNED_URL_TTL').default(3_600_000),
});

/** Queues a worker process can consume (WORKER_QUEUES); see lib/queues.ts. */
export const PIPELINE_QUEUES = ['process-upload', 'virus-scan', 'extract-metadata', 'thumbnail', 'transcode', 'finalize', 'webhook'] as const;

export type StorageKind = 's3' | 'file';

export interface S3Config {
  endpoint?: string;
  region: string;
  bucket: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  forcePathStyle: boolean;
  partSize: number;
  maxConcurrentPartUploads: number;
  bootstrap: boolean;
  abortIncompleteAfterDays: number;
  /**
   * UPLOAD_ACK: a PATCH is answered once its bytes are in S3 ('storage', the default), or once
   * fsynced in this instance's write buffer and pushed to S3 in whole parts afterwards ('disk').
   */
  ack: 'storage' | 'disk';
  /** The write buffer (UPLOAD_ACK=disk). */
  buffer: {
    /** UPLOAD_BUFFER_DIR (default DATA_DIR/upload-buffer). */
    directory: string;
    /** UPLOAD_BUFFER_MAX: bytes on disk per process; bodies beyond it are acknowledged from S3. */
    maxBytes: number;
    /** UPLOAD_BUFFER_IDLE_FLUSH: an upload's bytes go to S3 after this long without a PATCH. */
    idleFlushMs: number;
    /**
     * UPLOAD_BUFFER_FORWARD (default on): where this instance takes PATCH bodies that other
     * instances received for uploads it holds: HOST, UPLOAD_BUFFER_PEER_PORT (0: any free port),
     * advertised as UPLOAD_BUFFER_PEER_URL (default from HOST). Undefined: they hand over instead.
     */
    peer?: { host: string; port: number; url?: string };
  };
  /** UPLOAD_BUFFER_ABANDON_AFTER: bytes held by an instance not running this long are given up (any UPLOAD_ACK). */
  abandonBufferedAfterMs: number;
}

export interface Config {
  port: number;
  /** Address to listen on; 127.0.0.1 unless HOST is set (there is no authentication yet). */
  host: string;
  /** Base URL for Location headers when tusk runs behind a proxy, without trailing slash. */
  publicUrl?: string;
  /** express's `trust proxy` (from TRUST_PROXY): which peers are proxies whose X-Forwarded-* express believes. */
  proxyTrust: ProxyTrust;
  storage: StorageKind;
  dataDir: string;
  s3?: S3Config;
  corsOrigins: string[] | '*';
  /** Undefined: tusk starts a private Redis under DATA_DIR (all-in-one mode). */
  redisUrl?: string;
  redisPrefix: string;
  maxUploadSize: number;
  /** Bytes of checksummed request bodies spooled to disk at once (per process); also the largest such body. */
  checksumSpoolLimit: number;
  uploadExpiryMs: number;
  idleTimeoutMs: number;
  lockAcquireTimeoutMs: number;
  lockTtlMs: number;
  shutdownTimeoutMs: number;
  cleanupIntervalMs: number;
  logLevel: z.infer<typeof env>['LOG_LEVEL'];
  pipeline: PipelineConfig;
  /** Authentication, quotas, rate limits. */
  access: AccessConfig;
  /** Direct-to-storage uploads. */
  direct: DirectConfig;
  metrics: MetricsConfig;
  /** WEB_UI: the upload page at `/` (default true); WEB_UI_TOKEN_COOKIE: a cookie it takes the token from. */
  webUi: { enabled: boolean; tokenCookie?: string };
  /** URL_SIGNING_SECRET: key of the signed derived-file URLs; unset: one kept in Redis. */
  urlSigningSecret?: string;
}

export interface MetricsConfig {
  /** METRICS: collect metrics and answer /metrics (default true). */
  enabled: boolean;
  /** METRICS_PORT: the process's own metrics listener (on HOST); /metrics is then not on the API port. */
  port?: number;
  /** METRICS_TOKEN: `Authorization: Bearer <token>` required on /metrics wherever it is answered. */
  token?: string;
  /**
   * The API port answers /metrics: without METRICS_PORT, with the token, or without one only while
   * that port is private (HOST is loopback and no TRUST_PROXY names a proxy that could relay it).
   */
  onApiPort: boolean;
}

/** A listen address that only this machine reaches. */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/**
 * Is the peer at `hop` a proxy we trust? Hop 0 is the socket's peer, hop 1 the right-most
 * X-Forwarded-For entry, and so on leftwards; the first untrusted hop is the client (req.ip).
 */
export type ProxyTrust = (address: string, hop: number) => boolean;

/** Most proxies TRUST_PROXY may count; a real chain is one or two. */
export const MAX_TRUSTED_PROXY_HOPS = 10;

export interface DirectConfig {
  /** Files up to this size get one presigned PUT; larger ones a multipart upload. */
  singlePutMax: number;
  /** Part size of direct multipart uploads (grown so that no file needs more than 10,000 parts). */
  chunkSize: number;
  /** How long presigned upload URLs work. */
  signedUrlTtlMs: number;
}

/** JWT algorithms tusk accepts; `none` never. */
export const JWT_HMAC_ALGORITHMS = ['HS256', 'HS384', 'HS512'] as const;
export const JWT_PUBLIC_KEY_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;

export interface AuthConfig {
  /** Where the verification key comes from: exactly one of them is set. */
  mode: 'secret' | 'public-key' | 'jwks';
  /** AUTH_JWT_SECRET (HMAC). */
  secret?: string;
  /** AUTH_JWT_PUBLIC_KEY (SPKI PEM). */
  publicKeyPem?: string;
  /** AUTH_JWKS_URL. */
  jwksUrl?: string;
  issuer?: string;
  audience?: string;
  /** Pinned algorithms; undefined: derived from the key (HS256 for a secret, the key's type for a PEM, RS256/ES256 for a JWKS). */
  algorithms?: string[];
  clockToleranceMs: number;
  /** Tokens must carry `exp` (AUTH_REQUIRE_EXP, default true): a token without one would work forever. */
  requireExp: boolean;
  /** Longest validity a token may claim, `exp` - `iat` (AUTH_MAX_TOKEN_LIFETIME); 0 = no maximum. */
  maxTokenLifetimeMs: number;
}

export interface AccessConfig {
  /** Undefined: authentication is off (every request is the principal `anonymous`; warned at start-up). */
  auth: AuthConfig | undefined;
  /** HOST was set explicitly (with auth off, tusk warns that it listens beyond loopback unauthenticated). */
  hostExplicit: boolean;
  /** Per-user byte quota of stored and reserved uploads; 0 = unlimited. */
  quotaBytes: number;
  /** Per-user unfinished uploads at once; 0 = unlimited. */
  maxConcurrentUploads: number;
  /** Upload creations per minute; 0 = no limit. The per-user limit only applies with auth on. */
  rateLimit: { creationsPerMinuteUser: number; creationsPerMinuteIp: number };
}

export interface PipelineConfig {
  /** Off only on purpose: without a clamd the scan task is then `skipped` (warning at start-up). */
  scanRequired: boolean;
  /**
   * clamd address: unix socket, or host + port. None set: a worker process starts a private clamd
   * under DATA_DIR when clamd is installed (lib/scanner.ts), unless scanning is off.
   */
  clamd: { socket?: string; host?: string; port: number } | undefined;
  /** Time limit of one scan (connect, stream, verdict). */
  scanTimeoutMs: number;
  /** Signature database of the private clamd; undefined: the system's (/var/lib/clamav, kept by freshclam). */
  clamdDatabaseDir?: string;
  /** Larger objects are not streamed to clamd: the scan fails (never "clean"). Keep <= clamd's StreamMaxLength. */
  scanMaxBytes: number;
  quarantineMode: 'move' | 'delete';
  /** MIME types (from the bytes) accepted; `type/*` wildcards, or every type (the default, "*\/*"). */
  allowedTypes: string[];
  thumbnailWidths: number[];
  thumbnailFormats: Array<'webp' | 'jpeg'>;
  maxImagePixels: number;
  /** Longer audio/video is rejected (`too_long`) before anything is decoded. */
  maxMediaDurationMs: number;
  /** Videos asking more width x height x frames of the transcoder are rejected (`too_much_work`). */
  maxVideoPixelFrames: number;
  /** Media-bomb floor: videos whose file holds fewer bits per pixel per frame are rejected (`media_bomb`); 0 = off. */
  minVideoBitsPerPixel: number;
  /** A reprocess with ?force=1 replaces a run still going only once it is this old (sooner: 429). */
  reprocessForceAfterMs: number;
  signedGetUrlTtlMs: number;
  /** Endpoint that clients reach S3 at, for presigned URLs (default S3_ENDPOINT). */
  s3PublicEndpoint?: string;
  webhook: { url: string; secret?: string } | undefined;
  ffmpegPath: string;
  ffprobePath: string;
  /** Transcode time limit: minimum + factor x media duration in seconds (at most MAX_MEDIA_DURATION; unknown: 10 min). */
  transcodeTimeoutFactor: number;
  transcodeMinTimeoutMs: number;
  /** libx264 preset of the HLS ladder and MP4. */
  transcodePreset: string;
  /** Time limit of the other steps (scan, metadata, thumbnails). */
  stepTimeoutMs: number;
  concurrency: { scan: number; metadata: number; thumbnail: number; transcode: number };
  attempts: number;
  backoffMs: number;
  transcodeLockDurationMs: number;
  /** Temporary files of the steps (downloads, outputs before upload); default: OS temp dir. */
  workDir?: string;
  /** The worker process answers GET /healthz on this port (HOST address) when set. */
  workerHealthPort?: number;
  /** The pipeline queues this worker process consumes (default: all), to scale steps separately. */
  workerQueues: Array<(typeof PIPELINE_QUEUES)[number]>;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Reads and validates the configuration; throws ConfigError naming each bad variable. */
export function loadConfig(source: NodeJS.ProcessEnv = process.env): Config {
  // Empty strings count as unset, as in most .env tooling.
  const raw = Object.fromEntries(Object.entries(source).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = env.safeParse(raw);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ${i.message}` : i.message)));
  }
  const e = parsed.data;
  // 127.0.0.1 unless HOST says otherwise (the API and, in disk mode, the write buffer's peer port).
  const host = e.HOST ?? '127.0.0.1';
  const problems: string[] = [];
  const storage: StorageKind = e.STORAGE ?? (e.S3_ENDPOINT || e.S3_BUCKET ? 's3' : 'file');
  let s3: S3Config | undefined;
  if (storage === 's3') {
    if (!e.S3_BUCKET) problems.push('S3_BUCKET: required when STORAGE=s3');
    if (!!e.S3_ACCESS_KEY_ID !== !!e.S3_SECRET_ACCESS_KEY) {
      problems.push('S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY: set both or neither (neither uses the AWS default credential chain)');
    }
    const minPart = 5 * MiB;
    const maxPart = 5 * 1024 * MiB;
    if (e.S3_PART_SIZE < minPart || e.S3_PART_SIZE > maxPart) problems.push(`S3_PART_SIZE: must be between 5MiB and 5GiB (got ${e.S3_PART_SIZE} bytes)`);
    s3 = {
      endpoint: e.S3_ENDPOINT,
      region: e.S3_REGION,
      bucket: e.S3_BUCKET ?? '',
      accessKeyId: e.S3_ACCESS_KEY_ID,
      secretAccessKey: e.S3_SECRET_ACCESS_KEY,
      forcePathStyle: e.S3_FORCE_PATH_STYLE,
      partSize: e.S3_PART_SIZE,
      maxConcurrentPartUploads: e.S3_MAX_CONCURRENT_PART_UPLOADS,
      bootstrap: e.S3_BUCKET_BOOTSTRAP,
      abortIncompleteAfterDays: e.S3_ABORT_INCOMPLETE_AFTER_DAYS,
      ack: e.UPLOAD_ACK,
      buffer: {
        directory: path.resolve(e.UPLOAD_BUFFER_DIR ?? path.join(e.DATA_DIR, 'upload-buffer')),
        maxBytes: e.UPLOAD_BUFFER_MAX,
        idleFlushMs: e.UPLOAD_BUFFER_IDLE_FLUSH,
        peer: e.UPLOAD_BUFFER_FORWARD ? { host, port: e.UPLOAD_BUFFER_PEER_PORT, url: e.UPLOAD_BUFFER_PEER_URL } : undefined,
      },
      abandonBufferedAfterMs: e.UPLOAD_BUFFER_ABANDON_AFTER,
    };
    if (e.UPLOAD_ACK === 'disk' && e.UPLOAD_BUFFER_MAX < 2 * e.S3_PART_SIZE) problems.push(`UPLOAD_BUFFER_MAX: must be at least twice S3_PART_SIZE (${2 * e.S3_PART_SIZE} bytes)`);
    if (e.UPLOAD_BUFFER_ABANDON_AFTER < 60_000) problems.push('UPLOAD_BUFFER_ABANDON_AFTER: must be at least 1m (an instance restarting must find its uploads)');
  } else if (e.UPLOAD_ACK === 'disk') {
    problems.push('UPLOAD_ACK: "disk" applies to S3 storage (STORAGE=file writes to disk already)');
  }
  if (e.MAX_UPLOAD_SIZE <= 0) problems.push('MAX_UPLOAD_SIZE: must be greater than 0');
  if (e.CHECKSUM_SPOOL_LIMIT < MiB) problems.push('CHECKSUM_SPOOL_LIMIT: must be at least 1MiB');
  if (e.IDLE_TIMEOUT < 1000) problems.push('IDLE_TIMEOUT: must be at least 1s');
  if (e.LOCK_TTL < 1000) problems.push('LOCK_TTL: must be at least 1s');
  const auth = authConfig(e, problems);
  const proxy = proxyConfig(e.TRUST_PROXY, problems);
  const thumbnailWidths = e.THUMBNAIL_WIDTHS.split(',').map((w) => Number(w.trim()));
  if (!thumbnailWidths.length || thumbnailWidths.some((w) => !Number.isInteger(w) || w < 16 || w > 8192)) {
    problems.push(`THUMBNAIL_WIDTHS: must be a comma-separated list of widths from 16 to 8192 (got "${e.THUMBNAIL_WIDTHS}")`);
  }
  const thumbnailFormats = e.THUMBNAIL_FORMATS.split(',').map((f) => f.trim().toLowerCase().replace(/^jpg$/, 'jpeg'));
  if (!thumbnailFormats.length || thumbnailFormats.some((f) => f !== 'webp' && f !== 'jpeg')) {
    problems.push(`THUMBNAIL_FORMATS: must be webp, jpeg or both, comma-separated (got "${e.THUMBNAIL_FORMATS}")`);
  }
  const allowedTypes = e.ALLOWED_TYPES.split(',').map((t) => t.trim().toLowerCase()).filter(Boolean);
  if (!allowedTypes.length || allowedTypes.some((t) => t !== '*' && t !== '*/*' && !/^[a-z0-9.+-]+\/([a-z0-9.+-]+|\*)$/.test(t))) {
    problems.push(`ALLOWED_TYPES: must be */* (every type) or a comma-separated list of MIME types such as image/jpeg,video/* (got "${e.ALLOWED_TYPES}")`);
  }
  const workerQueues = e.WORKER_QUEUES ? e.WORKER_QUEUES.split(',').map((q) => q.trim()).filter(Boolean) : [...PIPELINE_QUEUES];
  const unknownQueues = workerQueues.filter((q) => !(PIPELINE_QUEUES as readonly string[]).includes(q));
  if (unknownQueues.length) problems.push(`WORKER_QUEUES: unknown queue(s) ${unknownQueues.join(', ')}; choose from ${PIPELINE_QUEUES.join(', ')}`);
  if (e.WEBHOOK_URL && !e.WEBHOOK_SECRET) problems.push('WEBHOOK_SECRET: required when WEBHOOK_URL is set (webhooks are always signed)');
  if (e.CLAMD_SOCKET && e.CLAMD_HOST) problems.push('CLAMD_SOCKET and CLAMD_HOST: set one of them, not both');
  if (e.CLAMD_DATABASE_DIR && (e.CLAMD_SOCKET || e.CLAMD_HOST)) {
    problems.push('CLAMD_DATABASE_DIR: only for the private clamd; a clamd at CLAMD_SOCKET / CLAMD_HOST reads its own DatabaseDirectory');
  }
  if (e.SIGNED_GET_URL_TTL < 1000 || e.SIGNED_GET_URL_TTL > 7 * 86_400_000) problems.push('SIGNED_GET_URL_TTL: must be between 1s and 7d (the S3 limit)');
  if (e.MAX_MEDIA_DURATION < 1000) problems.push('MAX_MEDIA_DURATION: must be at least 1s');
  if (e.SINGLE_PUT_MAX < 1 || e.SINGLE_PUT_MAX > 5 * 1024 * MiB) problems.push('SINGLE_PUT_MAX: must be between 1 byte and 5GiB (the S3 limit of one PUT)');
  if (e.DIRECT_CHUNK_SIZE < 5 * MiB || e.DIRECT_CHUNK_SIZE > 5 * 1024 * MiB) problems.push('DIRECT_CHUNK_SIZE: must be between 5MiB and 5GiB');
  if (e.SIGNED_URL_TTL < 1000 || e.SIGNED_URL_TTL > 7 * 86_400_000) problems.push('SIGNED_URL_TTL: must be between 1s and 7d (the S3 limit)');
  if (problems.length) throw new ConfigError(problems);
  const corsOrigins = e.CORS_ORIGINS.trim() === '*' ? '*' : e.CORS_ORIGINS.split(',').map((s) => s.trim()).filter(Boolean);
  const config: Omit<Config, 'pipeline' | 'access' | 'direct' | 'metrics' | 'webUi' | 'urlSigningSecret'> = {
    port: e.PORT,
    host,
    publicUrl: e.PUBLIC_URL,
    ...proxy,
    storage,
    dataDir: path.resolve(e.DATA_DIR),
    s3,
    corsOrigins,
    redisUrl: e.REDIS_URL,
    redisPrefix: e.REDIS_PREFIX,
    maxUploadSize: e.MAX_UPLOAD_SIZE,
    checksumSpoolLimit: e.CHECKSUM_SPOOL_LIMIT,
    uploadExpiryMs: e.UPLOAD_EXPIRY,
    idleTimeoutMs: e.IDLE_TIMEOUT,
    lockAcquireTimeoutMs: e.LOCK_ACQUIRE_TIMEOUT,
    lockTtlMs: e.LOCK_TTL,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT,
    cleanupIntervalMs: e.CLEANUP_INTERVAL,
    logLevel: e.LOG_LEVEL,
  };
  const access: AccessConfig = {
    auth,
    hostExplicit: e.HOST !== undefined,
    quotaBytes: e.QUOTA_BYTES,
    maxConcurrentUploads: e.MAX_CONCURRENT_UPLOADS,
    rateLimit: { creationsPerMinuteUser: e.RATE_LIMIT_CREATIONS_PER_MINUTE_USER, creationsPerMinuteIp: e.RATE_LIMIT_CREATIONS_PER_MINUTE_IP },
  };
  const pipeline: PipelineConfig = {
    scanRequired: e.SCAN_REQUIRED,
    clamd: e.CLAMD_SOCKET || e.CLAMD_HOST ? { socket: e.CLAMD_SOCKET, host: e.CLAMD_HOST, port: e.CLAMD_PORT } : undefined,
    scanTimeoutMs: e.CLAMD_TIMEOUT,
    clamdDatabaseDir: e.CLAMD_DATABASE_DIR ? path.resolve(e.CLAMD_DATABASE_DIR) : undefined,
    scanMaxBytes: e.SCAN_MAX_BYTES,
    quarantineMode: e.QUARANTINE_MODE,
    allowedTypes,
    thumbnailWidths: [...new Set(thumbnailWidths)].sort((a, b) => a - b),
    thumbnailFormats: [...new Set(thumbnailFormats)] as Array<'webp' | 'jpeg'>,
    maxImagePixels: e.MAX_IMAGE_PIXELS,
    maxMediaDurationMs: e.MAX_MEDIA_DURATION,
    maxVideoPixelFrames: e.MAX_VIDEO_PIXEL_FRAMES,
    minVideoBitsPerPixel: e.MIN_VIDEO_BITS_PER_PIXEL,
    reprocessForceAfterMs: e.REPROCESS_FORCE_AFTER,
    signedGetUrlTtlMs: e.SIGNED_GET_URL_TTL,
    s3PublicEndpoint: e.S3_PUBLIC_ENDPOINT,
    webhook: e.WEBHOOK_URL ? { url: e.WEBHOOK_URL, secret: e.WEBHOOK_SECRET } : undefined,
    ffmpegPath: e.FFMPEG_PATH,
    ffprobePath: e.FFPROBE_PATH,
    transcodeTimeoutFactor: Number(e.TRANSCODE_TIMEOUT_FACTOR),
    transcodeMinTimeoutMs: e.TRANSCODE_MIN_TIMEOUT,
    transcodePreset: e.TRANSCODE_PRESET,
    stepTimeoutMs: e.STEP_TIMEOUT,
    concurrency: { scan: e.CONCURRENCY_SCAN, metadata: e.CONCURRENCY_METADATA, thumbnail: e.CONCURRENCY_THUMBNAIL, transcode: e.CONCURRENCY_TRANSCODE },
    attempts: e.STEP_ATTEMPTS,
    backoffMs: e.STEP_BACKOFF,
    transcodeLockDurationMs: e.TRANSCODE_LOCK_DURATION,
    workDir: e.WORK_DIR ? path.resolve(e.WORK_DIR) : undefined,
    workerHealthPort: e.WORKER_HEALTH_PORT,
    workerQueues: workerQueues as PipelineConfig['workerQueues'],
  };
  const direct: DirectConfig = { singlePutMax: e.SINGLE_PUT_MAX, chunkSize: e.DIRECT_CHUNK_SIZE, signedUrlTtlMs: e.SIGNED_URL_TTL };
  const behindProxy = proxy.proxyTrust !== PROXY_TRUST_OFF;
  const metrics: MetricsConfig = {
    enabled: e.METRICS,
    port: e.METRICS_PORT,
    token: e.METRICS_TOKEN,
    onApiPort: e.METRICS && e.METRICS_PORT === undefined && (e.METRICS_TOKEN !== undefined || (isLoopbackHost(config.host) && !behindProxy)),
  };
  return { ...config, access, direct, pipeline, metrics, webUi: { enabled: e.WEB_UI, tokenCookie: e.WEB_UI_TOKEN_COOKIE }, urlSigningSecret: e.URL_SIGNING_SECRET };
}

/** AUTH_*: one key source, a sane secret or PEM, algorithms that fit it (never `none`). */
function authConfig(e: z.infer<typeof env>, problems: string[]): AuthConfig | undefined {
  const sources = [
    ['AUTH_JWT_SECRET', e.AUTH_JWT_SECRET],
    ['AUTH_JWT_PUBLIC_KEY', e.AUTH_JWT_PUBLIC_KEY],
    ['AUTH_JWKS_URL', e.AUTH_JWKS_URL],
  ].filter(([, v]) => v !== undefined);
  if (sources.length === 0) {
    for (const name of ['AUTH_JWT_ISSUER', 'AUTH_JWT_AUDIENCE', 'AUTH_JWT_ALGORITHMS', 'AUTH_REQUIRE_EXP', 'AUTH_MAX_TOKEN_LIFETIME'] as const) {
      if (e[name] !== undefined) problems.push(`${name}: has no effect without AUTH_JWT_SECRET, AUTH_JWT_PUBLIC_KEY or AUTH_JWKS_URL`);
    }
    return undefined;
  }
  if (sources.length > 1) {
    problems.push(`${sources.map(([n]) => n).join(' and ')}: set only one of AUTH_JWT_SECRET, AUTH_JWT_PUBLIC_KEY, AUTH_JWKS_URL`);
    return undefined;
  }
  const mode: AuthConfig['mode'] = e.AUTH_JWT_SECRET !== undefined ? 'secret' : e.AUTH_JWT_PUBLIC_KEY !== undefined ? 'public-key' : 'jwks';
  if (mode === 'secret' && Buffer.byteLength(e.AUTH_JWT_SECRET ?? '') < 32) {
    problems.push('AUTH_JWT_SECRET: must be at least 32 bytes long (HS256 wants a 256-bit key)');
  }
  // PEM in one env line: accept literal "\n".
  const publicKeyPem = e.AUTH_JWT_PUBLIC_KEY?.replace(/\\n/g, '\n');
  if (mode === 'public-key' && !/^-----BEGIN PUBLIC KEY-----[\s\S]+-----END PUBLIC KEY-----\s*$/.test(publicKeyPem?.trim() ?? '')) {
    problems.push('AUTH_JWT_PUBLIC_KEY: must be a PEM public key ("-----BEGIN PUBLIC KEY-----" ... "-----END PUBLIC KEY-----")');
  }
  let algorithms: string[] | undefined;
  if (e.AUTH_JWT_ALGORITHMS !== undefined) {
    algorithms = e.AUTH_JWT_ALGORITHMS.split(',').map((a) => a.trim()).filter(Boolean);
    const allowed: readonly string[] = mode === 'secret' ? JWT_HMAC_ALGORITHMS : JWT_PUBLIC_KEY_ALGORITHMS;
    const bad = algorithms.filter((a) => !allowed.includes(a));
    if (!algorithms.length || bad.length) {
      problems.push(`AUTH_JWT_ALGORITHMS: with ${mode === 'secret' ? 'AUTH_JWT_SECRET' : mode === 'jwks' ? 'AUTH_JWKS_URL' : 'AUTH_JWT_PUBLIC_KEY'} choose from ${allowed.join(', ')} (got "${e.AUTH_JWT_ALGORITHMS}")`);
    }
  }
  const maxTokenLifetimeMs = e.AUTH_MAX_TOKEN_LIFETIME ?? 24 * 3_600_000;
  if (maxTokenLifetimeMs > 0 && maxTokenLifetimeMs < 1000) problems.push('AUTH_MAX_TOKEN_LIFETIME: must be 0 (no maximum) or at least 1s');
  return {
    mode,
    secret: e.AUTH_JWT_SECRET,
    publicKeyPem,
    jwksUrl: e.AUTH_JWKS_URL,
    issuer: e.AUTH_JWT_ISSUER,
    audience: e.AUTH_JWT_AUDIENCE,
    algorithms,
    clockToleranceMs: e.AUTH_CLOCK_TOLERANCE,
    requireExp: e.AUTH_REQUIRE_EXP ?? true,
    maxTokenLifetimeMs,
  };
}

/** Address ranges proxy-addr knows by name. */
const PROXY_RANGE_NAMES = ['loopback', 'linklocal', 'uniquelocal'];

/**
 * TRUST_PROXY: off (default), a hop count, or the proxies' addresses / CIDRs / range names
 * (proxy-addr, as express itself compiles them). Never "trust every peer": then X-Forwarded-For
 * is whatever the client writes, and the per-IP rate limit keys on a value it chooses.
 */
/** TRUST_PROXY off: no peer is a proxy. */
const PROXY_TRUST_OFF: ProxyTrust = () => false;

function proxyConfig(raw: string | undefined, problems: string[]): Pick<Config, 'proxyTrust'> {
  const off = { proxyTrust: PROXY_TRUST_OFF };
  const value = (raw ?? '').trim();
  if (['', '0', 'false', 'no', 'off'].includes(value.toLowerCase())) return off;
  const instead = `set the number of proxies in front of tusk (TRUST_PROXY=1) or their addresses (TRUST_PROXY=10.0.0.5, a CIDR such as 10.0.0.0/8, or ${PROXY_RANGE_NAMES.join(', ')})`;
  if (['true', 'yes', 'on'].includes(value.toLowerCase())) {
    problems.push(`TRUST_PROXY: "${raw}" (believe X-Forwarded-For from every client) is no longer accepted, since clients could then pick their own address; ${instead}`);
    return off;
  }
  if (/^\d+$/.test(value)) {
    const hops = Number(value);
    if (hops > MAX_TRUSTED_PROXY_HOPS) problems.push(`TRUST_PROXY: a hop count must be from 0 to ${MAX_TRUSTED_PROXY_HOPS} (got "${raw}")`);
    if (hops === 0) return off;
    return { proxyTrust: (_address, hop) => hop < hops };
  }
  const entries = value.split(',').map((v) => v.trim()).filter(Boolean);
  const bad = entries.filter((entry) => {
    // proxy-addr alone would also take shorthand forms such as "10.1" or octal "010.0.0.1".
    if (!PROXY_RANGE_NAMES.includes(entry) && !isIP(entry.split('/')[0] ?? '')) return true;
    try {
      proxyAddr.compile(entry);
      return false;
    } catch {
      return true;
    }
  });
  if (bad.length) {
    problems.push(`TRUST_PROXY: ${bad.map((b) => `"${b}"`).join(', ')} is not an IP address, a CIDR or one of ${PROXY_RANGE_NAMES.join(', ')}; ${instead}`);
    return off;
  }
  return { proxyTrust: proxyAddr.compile(entries) };
}
