// The one place where tusk builds its AWS SDK v3 S3 client configuration. Everything that talks
// to S3 (the tus store, bucket bootstrap, readiness probe, workers) goes through here, so the
// compatibility settings below apply everywhere.
import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import type { S3Config } from '../config/index.js';

const S3_CONNECT_TIMEOUT_MS = 5_000;
/** Longer than tusk's own IDLE_TIMEOUT default (60 s), so a stalled client is noticed first. */
const S3_IDLE_TIMEOUT_MS = 120_000;

/** The part of S3Config needed to connect (bucket, part sizes etc. are not client settings). */
export type S3ConnectionConfig = Pick<S3Config, 'endpoint' | 'region' | 'accessKeyId' | 'secretAccessKey' | 'forcePathStyle'>;

/**
 * Plain client configuration. @tus/s3-store takes a config, not a client:
 * `new S3Store({ s3ClientConfig: { ...s3ClientConfig(s3), bucket: s3.bucket }, ... })`.
 */
export function s3ClientConfig(s3: S3ConnectionConfig): S3ClientConfig {
  const config: S3ClientConfig = {
    region: s3.region,
    forcePathStyle: s3.forcePathStyle,
    // Since 3.729 the SDK adds CRC32 checksums to every upload and validates response checksums by
    // default. Many S3-compatible servers (Ceph RGW 16 answers 411 on UploadPart with a streamed
    // body; older MinIO) do not support that, and presigned URLs made with the default carry an
    // x-amz-checksum-crc32 that the browser's bytes will not match. Only send/validate checksums
    // where the S3 API itself requires them.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
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

export function createS3Client(s3: S3ConnectionConfig): S3Client {
  return new S3Client(s3ClientConfig(s3));
}
