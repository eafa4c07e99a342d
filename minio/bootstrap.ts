// Bucket bootstrap: run by the server at start-up when S3_BUCKET_BOOTSTRAP is on (docker compose,
// dev). Idempotent: creates the bucket if missing, sets its CORS rules and the lifecycle rules
// that keep abandoned uploads from leaking storage. See minio/README.md.
import {
  CreateBucketCommand,
  GetBucketLifecycleConfigurationCommand,
  HeadBucketCommand,
  PutBucketCorsCommand,
  PutBucketLifecycleConfigurationCommand,
  type BucketLocationConstraint,
  type CORSRule,
  type LifecycleRule,
  type S3Client,
} from '@aws-sdk/client-s3';
import type { Logger } from '../lib/logger.js';

export const LIFECYCLE_RULE_IDS = {
  /** Whole bucket: AbortIncompleteMultipartUpload after N days. */
  abortIncompleteMultipart: 'tusk-abort-incomplete-multipart-uploads',
  /** Objects tagged Tus-Completed=false (`<id>.info`, `<id>.part` of unfinished uploads): expire after N days. */
  expireIncompleteUploads: 'tusk-expire-incomplete-uploads',
} as const;
export type LifecycleRuleId = (typeof LIFECYCLE_RULE_IDS)[keyof typeof LIFECYCLE_RULE_IDS];

const OWN_RULE_PREFIX = 'tusk-';

// Methods browsers may use against the bucket itself (downloads, presigned direct uploads).
// PATCH is deliberately absent: the S3 CORS schema only knows GET, PUT, POST, DELETE and HEAD,
// and AWS and Ceph RGW reject the whole configuration (400 MalformedXML) if it contains PATCH.
// tus PATCH requests go to tusk, whose own CORS handling allows them, never to the bucket.
export const CORS_ALLOWED_METHODS = ['GET', 'HEAD', 'PUT', 'POST', 'DELETE'];
export const CORS_EXPOSE_HEADERS = [
  'ETag', // browser multipart uploads need each part's ETag
  'Location',
  'Upload-Offset',
  'Upload-Length',
  'Upload-Metadata',
  'Upload-Defer-Length',
  'Upload-Expires',
  'Tus-Resumable',
  'Tus-Version',
  'Tus-Extension',
  'Tus-Max-Size',
];
const CORS_MAX_AGE_SECONDS = 3600;

export interface BootstrapOptions {
  bucket: string;
  /** Config.corsOrigins: '*' or a list of origins. An empty list leaves the bucket's CORS untouched. */
  corsOrigins: string[] | '*';
  /** Config.s3.abortIncompleteAfterDays (S3_ABORT_INCOMPLETE_AFTER_DAYS). */
  abortIncompleteAfterDays: number;
  logger: Logger;
}

export type CorsResult =
  | { applied: true; allowedOrigins: string[]; allowedMethods: string[]; exposeHeaders: string[] }
  | { applied: false; reason: string };

export interface BootstrapSummary {
  bucket: string;
  /** True if this run created the bucket; false if it already existed. */
  created: boolean;
  cors: CorsResult;
  lifecycle: {
    /** IDs of tusk's rules that the server accepted and stored. */
    applied: LifecycleRuleId[];
    /** tusk's rules the server rejected (or accepted but did not store), with the reason. */
    notApplied: { rule: LifecycleRuleId; reason: string }[];
  };
}

interface S3ErrorLike {
  name?: string;
  Code?: string;
  /** Node.js network errors: ECONNREFUSED, ENOTFOUND... */
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

function errCode(err: unknown): string {
  const e = (err ?? {}) as S3ErrorLike;
  return e.Code ?? (typeof e.code === 'string' ? e.code : undefined) ?? e.name ?? 'Error';
}

const NETWORK_ERRORS = /\b(ECONNREFUSED|ECONNRESET|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|EPIPE)\b/;

/** A Node.js network error code, also when the SDK has wrapped the error and kept only its text. */
function networkError(err: unknown): boolean {
  const e = (err ?? {}) as S3ErrorLike;
  return NETWORK_ERRORS.test(typeof e.code === 'string' ? e.code : '') || NETWORK_ERRORS.test(e.message ?? '');
}

function errStatus(err: unknown): number | undefined {
  return ((err ?? {}) as S3ErrorLike).$metadata?.httpStatusCode;
}

function describe(err: unknown): string {
  const e = (err ?? {}) as S3ErrorLike;
  const status = errStatus(err);
  // The SDK wraps non-Error throwables (e.g. errors from another realm) as "AWS SDK error wrapper for ...".
  const text = e.message?.replace(/^AWS SDK error wrapper for (\w*Error: )?/, '');
  const msg = text && text !== 'UnknownError' && text !== errCode(err) ? `: ${text}` : '';
  const code = errCode(err);
  if (code === 'Error') return `${text || 'unknown error'}${status ? ` (HTTP ${status})` : ''}`;
  return `${code}${status ? ` (HTTP ${status})` : ''}${msg}`;
}

/**
 * Makes `bucket` ready for tusk. Safe to run on every start-up and from several processes at once.
 * Throws if the bucket cannot be created/reached or its CORS rules cannot be set (except on servers
 * without per-bucket CORS, such as community MinIO, which apply their own global CORS setting).
 * Lifecycle rules the server rejects are reported and logged as warnings, never thrown.
 * Returns what was applied, for the caller to log.
 */
export async function bootstrapBucket(client: S3Client, opts: BootstrapOptions): Promise<BootstrapSummary> {
  const { bucket, logger } = opts;
  const created = await ensureBucket(client, bucket);
  const cors = await applyCors(client, bucket, opts.corsOrigins, logger);
  const lifecycle = await applyLifecycle(client, bucket, opts.abortIncompleteAfterDays, logger);
  // The caller logs the summary; problems were logged as warnings on the way.
  return { bucket, created, cors, lifecycle };
}

async function ensureBucket(client: S3Client, bucket: string): Promise<boolean> {
  try {
    await client.send(new HeadBucketCommand({ Bucket: bucket }));
    return false;
  } catch (err) {
    if (errStatus(err) !== 404) throw new Error(`S3 bucket "${bucket}": cannot check whether it exists: ${describe(err)}`, { cause: err });
  }
  const region = await client.config.region();
  try {
    await client.send(
      new CreateBucketCommand({
        Bucket: bucket,
        // us-east-1 is the default location and must not be named; every other region must be.
        ...(region && region !== 'us-east-1' ? { CreateBucketConfiguration: { LocationConstraint: region as BucketLocationConstraint } } : {}),
      }),
    );
    return true;
  } catch (err) {
    // Another tusk process created it between our HEAD and CREATE.
    if (errCode(err) === 'BucketAlreadyOwnedByYou') return false;
    throw new Error(`S3 bucket "${bucket}": cannot create it: ${describe(err)}`, { cause: err });
  }
}

async function applyCors(client: S3Client, bucket: string, corsOrigins: string[] | '*', logger: Logger): Promise<CorsResult> {
  const allowedOrigins = corsOrigins === '*' ? ['*'] : corsOrigins;
  if (allowedOrigins.length === 0) {
    const reason = 'CORS_ORIGINS lists no origin; bucket CORS left as it is';
    logger.info({ bucket }, reason);
    return { applied: false, reason };
  }
  const rule: CORSRule = {
    ID: 'tusk',
    AllowedOrigins: allowedOrigins,
    AllowedMethods: CORS_ALLOWED_METHODS,
    AllowedHeaders: ['*'],
    ExposeHeaders: CORS_EXPOSE_HEADERS,
    MaxAgeSeconds: CORS_MAX_AGE_SECONDS,
  };
  try {
    await client.send(new PutBucketCorsCommand({ Bucket: bucket, CORSConfiguration: { CORSRules: [rule] } }));
    return { applied: true, allowedOrigins, allowedMethods: CORS_ALLOWED_METHODS, exposeHeaders: CORS_EXPOSE_HEADERS };
  } catch (err) {
    if (errCode(err) === 'NotImplemented') {
      // Community MinIO has no per-bucket CORS: it answers every origin allowed by its global
      // MINIO_API_CORS_ALLOW_ORIGIN setting (default "*"). Nothing to configure on the bucket.
      const reason = `the S3 server does not support per-bucket CORS (${describe(err)}); its global CORS setting applies (MinIO: MINIO_API_CORS_ALLOW_ORIGIN)`;
      logger.warn({ bucket }, `S3 bucket CORS not applied: ${reason}`);
      return { applied: false, reason };
    }
    throw new Error(`S3 bucket "${bucket}": cannot set CORS rules: ${describe(err)}`, { cause: err });
  }
}

function desiredRules(days: number): LifecycleRule[] {
  return [
    {
      ID: LIFECYCLE_RULE_IDS.abortIncompleteMultipart,
      Status: 'Enabled',
      Filter: { Prefix: '' },
      AbortIncompleteMultipartUpload: { DaysAfterInitiation: days },
    },
    {
      ID: LIFECYCLE_RULE_IDS.expireIncompleteUploads,
      Status: 'Enabled',
      Filter: { Tag: { Key: 'Tus-Completed', Value: 'false' } },
      Expiration: { Days: days },
    },
  ];
}

/** True if the server's stored copy of one of our rules still does what we asked. */
function storedAsAsked(stored: LifecycleRule | undefined, days: number): boolean {
  if (!stored || stored.Status !== 'Enabled') return false;
  if (stored.ID === LIFECYCLE_RULE_IDS.abortIncompleteMultipart) return stored.AbortIncompleteMultipartUpload?.DaysAfterInitiation === days;
  const tags = stored.Filter?.Tag ? [stored.Filter.Tag] : (stored.Filter?.And?.Tags ?? []);
  return stored.Expiration?.Days === days && tags.some((t) => t.Key === 'Tus-Completed' && t.Value === 'false');
}

const NOT_APPLIED_EFFECT: Record<LifecycleRuleId, string> = {
  [LIFECYCLE_RULE_IDS.abortIncompleteMultipart]: 'abandoned multipart uploads will not be aborted by S3 and keep their parts stored',
  [LIFECYCLE_RULE_IDS.expireIncompleteUploads]: 'objects of abandoned uploads (tagged Tus-Completed=false) will not be expired by S3',
};

async function applyLifecycle(client: S3Client, bucket: string, days: number, logger: Logger): Promise<BootstrapSummary['lifecycle']> {
  const ours = desiredRules(days);
  const notApplied: { rule: LifecycleRuleId; reason: string }[] = [];

  // Keep rules someone else put on the bucket; replace only tusk's own.
  let others: LifecycleRule[] = [];
  try {
    const current = await client.send(new GetBucketLifecycleConfigurationCommand({ Bucket: bucket }));
    others = (current.Rules ?? []).filter((r) => !r.ID?.startsWith(OWN_RULE_PREFIX));
  } catch (err) {
    if (errCode(err) !== 'NoSuchLifecycleConfiguration') {
      logger.warn({ bucket, err: describe(err) }, 'cannot read the bucket lifecycle configuration; other rules on it may be replaced');
    }
  }
  const put = (rules: LifecycleRule[]) =>
    client.send(new PutBucketLifecycleConfigurationCommand({ Bucket: bucket, LifecycleConfiguration: { Rules: [...others, ...rules] } }));

  let accepted: LifecycleRule[] = [];
  try {
    await put(ours);
    accepted = ours;
  } catch (allErr) {
    // Some servers reject some rules (tag filters, AbortIncompleteMultipartUpload): add them one
    // at a time, keeping those accepted. Each PUT replaces the whole configuration, so the last
    // successful one is what stays on the bucket.
    logger.debug({ bucket, err: describe(allErr) }, 'lifecycle configuration rejected; trying rule by rule');
    for (const rule of ours) {
      try {
        await put([...accepted, rule]);
        accepted = [...accepted, rule];
      } catch (err) {
        notApplied.push({ rule: rule.ID as LifecycleRuleId, reason: `rejected by the S3 server: ${describe(err)}` });
      }
    }
  }

  // Some servers (recent MinIO) accept AbortIncompleteMultipartUpload and silently drop it.
  if (accepted.length > 0) {
    try {
      const stored = (await client.send(new GetBucketLifecycleConfigurationCommand({ Bucket: bucket }))).Rules ?? [];
      accepted = accepted.filter((rule) => {
        if (storedAsAsked(stored.find((s) => s.ID === rule.ID), days)) return true;
        notApplied.push({ rule: rule.ID as LifecycleRuleId, reason: 'accepted by the S3 server but not stored as sent (read back differs)' });
        return false;
      });
    } catch (err) {
      logger.warn({ bucket, err: describe(err) }, 'cannot read back the bucket lifecycle configuration to verify it');
    }
  }

  const order = ours.map((r) => r.ID);
  notApplied.sort((a, b) => order.indexOf(a.rule) - order.indexOf(b.rule));
  for (const { rule, reason } of notApplied) {
    logger.warn({ bucket, rule, reason }, `S3 lifecycle rule "${rule}" not applied: ${NOT_APPLIED_EFFECT[rule]}; tusk's own cleanup remains the only safeguard`);
  }
  return { applied: accepted.map((r) => r.ID as LifecycleRuleId), notApplied };
}

export class BucketNotReadableError extends Error {
  constructor(
    readonly bucket: string,
    readonly reason: 'not-found' | 'access-denied' | 'timeout' | 'unreachable' | 'error',
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`S3 bucket "${bucket}" is not readable: ${detail}`, options);
    this.name = 'BucketNotReadableError';
  }
}

/**
 * Readiness check: an authenticated HeadBucket (an anonymous request to the endpoint answers even
 * when the storage behind it is stuck). Resolves true when the bucket is readable with tusk's
 * credentials; otherwise throws BucketNotReadableError saying why (missing bucket, access denied,
 * timeout, unreachable endpoint).
 */
export async function checkBucketReadable(client: S3Client, bucket: string, options: { timeoutMs?: number } = {}): Promise<true> {
  const timeoutMs = options.timeoutMs ?? 5000;
  try {
    await client.send(new HeadBucketCommand({ Bucket: bucket }), { abortSignal: AbortSignal.timeout(timeoutMs) });
    return true;
  } catch (err) {
    const status = errStatus(err);
    if (status === 404) throw new BucketNotReadableError(bucket, 'not-found', 'the bucket does not exist (HTTP 404)', { cause: err });
    if (status === 403 || status === 401) {
      throw new BucketNotReadableError(bucket, 'access-denied', `access denied (HTTP ${status}): wrong credentials or no permission on the bucket`, { cause: err });
    }
    const name = errCode(err);
    if (name === 'AbortError' || name === 'TimeoutError') {
      throw new BucketNotReadableError(bucket, 'timeout', `no answer from S3 within ${timeoutMs} ms`, { cause: err });
    }
    if (networkError(err)) throw new BucketNotReadableError(bucket, 'unreachable', `cannot reach S3: ${describe(err)}`, { cause: err });
    throw new BucketNotReadableError(bucket, 'error', describe(err), { cause: err });
  }
}
