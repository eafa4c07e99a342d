// S3 for all of tusk: the client configuration (one client per process, made by the composition
// root and shared by the tus store, object storage, direct uploads, bootstrap and readiness), the
// presigner (the SDK's, never a hand-made signature: credentials come from the same provider chain
// as every request, static keys, env, profiles, IMDS, IRSA), and the one ListParts pager.
import { GetObjectCommand, ListPartsCommand, PutObjectCommand, S3, UploadPartCommand, type S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { S3Config } from '../config/index.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';

const S3_CONNECT_TIMEOUT_MS = 5_000;
/** Longer than tusk's own IDLE_TIMEOUT default (60 s), so a stalled client is noticed first. */
const S3_IDLE_TIMEOUT_MS = 120_000;

/** The part of S3Config needed to connect (bucket, part sizes etc. are not client settings). */
export type S3ConnectionConfig = Pick<S3Config, 'endpoint' | 'region' | 'accessKeyId' | 'secretAccessKey' | 'forcePathStyle'>;

/**
 * Plain client configuration. @tus/s3-store takes a config, not a client:
 * `new S3Store({ s3ClientConfig: { ...s3ClientConfig(s3), bucket: s3.bucket }, ... })`.
 */
export function s3ClientConfig(s3: S3ConnectionConfig, logger?: Logger): S3ClientConfig {
  const config: S3ClientConfig = {
    ...sdkClientSettings(logger),
    region: s3.region,
    forcePathStyle: s3.forcePathStyle,
    // Without timeouts a stalled S3 would hang a PATCH (and its upload lock) forever. The socket
    // timeout is an idle timeout: a part streaming at the client's pace keeps it alive.
    requestHandler: { connectionTimeout: S3_CONNECT_TIMEOUT_MS, requestTimeout: S3_IDLE_TIMEOUT_MS },
  };
  if (s3.endpoint) config.endpoint = s3.endpoint;
  // Without explicit keys the SDK's default credential chain applies (env, profile, IMDS, IRSA...).
  if (s3.accessKeyId && s3.secretAccessKey) {
    config.credentials = { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey };
  }
  return config;
}

/**
 * Settings of every tusk S3 client beyond the connection: checksums only where S3 requires them,
 * streamed bodies sent at once, and the SDK's own log lines routed into tusk's log.
 */
export function sdkClientSettings(logger?: Logger): Pick<S3ClientConfig, 'requestChecksumCalculation' | 'responseChecksumValidation' | 'expectContinueHeader' | 'logger'> {
  return {
    // Since 3.729 the SDK adds CRC32 checksums to every upload and validates response checksums by
    // default. Many S3-compatible servers (Ceph RGW 16 answers 411 on UploadPart with a streamed
    // body; older MinIO) do not support that, and presigned URLs made with the default carry an
    // x-amz-checksum-crc32 that the browser's bytes will not match. Only send/validate checksums
    // where the S3 API itself requires them.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    // Send bodies at once instead of waiting a round trip for "100 Continue": a PATCH's bytes are
    // arriving now, and a part that S3 refuses is retried from its spool file.
    expectContinueHeader: false,
    // The SDK warns on every failed streamed request (it cannot retry those); the tus store aborts
    // in-flight part uploads on purpose when a body ends early, and retries from spool.
    logger: {
      trace: () => {},
      debug: () => {},
      info: () => {},
      warn: (...args: unknown[]) => logger?.debug({ sdk: args.map(loggable) }, 'aws sdk warning'),
      error: (...args: unknown[]) => logger?.warn({ sdk: args.map(loggable) }, 'aws sdk error'),
    },
  };
}

function loggable(arg: unknown): unknown {
  if (typeof arg === 'string' || typeof arg === 'number' || typeof arg === 'boolean') return arg;
  if (arg instanceof Error) return { name: arg.name, message: arg.message };
  if (typeof arg === 'object' && arg !== null) {
    const { name, message, commandName, clientName } = arg as Record<string, unknown>;
    return Object.fromEntries(Object.entries({ name, message, commandName, clientName }).filter(([, v]) => typeof v === 'string'));
  }
  return typeof arg;
}

/**
 * The process's S3 client (the aggregated `S3` class: @tus/s3-store calls its methods). With
 * `metrics`, every command it sends is timed by operation (tusk_s3_request_duration_seconds).
 */
export function createS3Client(s3: S3ConnectionConfig, logger?: Logger, metrics?: Metrics): S3 {
  const client = new S3(s3ClientConfig(s3, logger));
  if (metrics) {
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const started = process.hrtime.bigint();
        const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
        try {
          const output = await next(args);
          metrics.observeS3(context.commandName ?? 'unknown', seconds());
          return output;
        } catch (err) {
          metrics.observeS3(context.commandName ?? 'unknown', seconds(), err);
          throw err;
        }
      },
      // The whole command as tusk waits for it: retries and (for uploads) the body's streaming included.
      { step: 'initialize', name: 'tuskMetrics' },
    );
  }
  return client;
}

/**
 * Presigned URLs, signed by the SDK with the client's own credential provider. When clients reach
 * storage at another address (S3_PUBLIC_ENDPOINT) a second client signs for that address; it never
 * sends a request.
 */
export class Presigner {
  private readonly signer: S3Client;
  private readonly ownSigner: boolean;

  constructor(
    client: S3Client,
    s3: S3ConnectionConfig,
    publicEndpoint: string | undefined,
  ) {
    this.ownSigner = !!publicEndpoint && publicEndpoint !== s3.endpoint;
    this.signer = this.ownSigner ? new S3({ ...s3ClientConfig({ ...s3, endpoint: publicEndpoint }), credentials: client.config.credentials }) : client;
  }

  /** GET of an object (status API, webhooks: thumbnails, renditions). */
  getObject(bucket: string, key: string, expiresInSeconds: number): Promise<string> {
    return getSignedUrl(this.signer, new GetObjectCommand({ Bucket: bucket, Key: key }), { expiresIn: expiresInSeconds });
  }

  /**
   * One PUT of the whole object. Content-Length is a signed header: storage refuses a body of any
   * other size (the quota was reserved for exactly that many bytes).
   */
  putObject(bucket: string, key: string, size: number, expiresInSeconds: number): Promise<string> {
    return getSignedUrl(this.signer, new PutObjectCommand({ Bucket: bucket, Key: key, ContentLength: size }), {
      expiresIn: expiresInSeconds,
      signableHeaders: new Set(['content-length']),
    });
  }

  /**
   * One part of a multipart upload, with its size signed like the single PUT's: storage refuses a
   * body of any other size (or without a Content-Length), so the parts a session can hold add up
   * to at most its declared size, whoever picks the part numbers.
   */
  uploadPart(bucket: string, key: string, uploadId: string, partNumber: number, size: number, expiresInSeconds: number): Promise<string> {
    return getSignedUrl(this.signer, new UploadPartCommand({ Bucket: bucket, Key: key, UploadId: uploadId, PartNumber: partNumber, ContentLength: size }), {
      expiresIn: expiresInSeconds,
      signableHeaders: new Set(['content-length']),
    });
  }

  close(): void {
    if (this.ownSigner) this.signer.destroy();
  }
}

/** S3's limit on the parts of one multipart upload. */
export const MAX_PARTS = 10_000;

export interface ListedPart {
  PartNumber: number;
  Size: number;
  ETag: string;
}

/** Storage listed a part numbered beyond what the upload can have (or more parts than that). */
export class PartBeyondLimitError extends Error {
  constructor(
    readonly partNumber: number,
    readonly limit: number,
  ) {
    super(`part ${partNumber} listed; at most ${limit} part(s) expected`);
    this.name = 'PartBeyondLimitError';
  }
}

/**
 * Every part S3 has for the multipart upload (ListParts is paginated: all pages), sorted. Stops
 * with PartBeyondLimitError as soon as a part numbered above `maxPartNumber` (or more parts than
 * that) is listed, so listing costs at most maxPartNumber parts, never more than was expected.
 */
export async function listAllParts(s3: S3Client, bucket: string, key: string, uploadId: string, maxPartNumber = MAX_PARTS): Promise<ListedPart[]> {
  const parts: ListedPart[] = [];
  let marker: string | undefined;
  for (;;) {
    const page = await s3.send(new ListPartsCommand({ Bucket: bucket, Key: key, UploadId: uploadId, PartNumberMarker: marker, MaxParts: 1000 }));
    for (const p of page.Parts ?? []) {
      const n = p.PartNumber ?? 0;
      if (!Number.isInteger(n) || n < 1 || n > maxPartNumber || parts.length >= maxPartNumber) throw new PartBeyondLimitError(n, maxPartNumber);
      parts.push({ PartNumber: n, Size: p.Size ?? 0, ETag: p.ETag ?? '' });
    }
    // Each further page must add parts and move the marker on: at most maxPartNumber / 1000 + 1 pages.
    if (!page.IsTruncated || !page.Parts?.length || !page.NextPartNumberMarker || page.NextPartNumberMarker === marker) break;
    marker = page.NextPartNumberMarker;
  }
  return parts.sort((a, b) => a.PartNumber - b.PartNumber);
}
