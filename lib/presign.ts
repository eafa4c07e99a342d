// Presigned S3 URLs for direct-to-storage uploads (server/api/direct-uploads.ts, companion.ts).
// The presigning client is built like every other tusk client (lib/s3-client.ts), i.e. with
// requestChecksumCalculation/responseChecksumValidation 'WHEN_REQUIRED': with the SDK's default
// the URLs carry x-amz-checksum-crc32 (of an empty body), which real AWS then enforces against
// the client's bytes and S3-compatible stores (Ceph RGW) reject. It signs against
// S3_PUBLIC_ENDPOINT when set (the address clients reach storage at), else S3_ENDPOINT.
import { PutObjectCommand, UploadPartCommand, type S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { S3Config } from '../config/index.js';
import { createS3Client } from './s3-client.js';

export class Presigner {
  readonly client: S3Client;
  constructor(
    s3: S3Config,
    publicEndpoint: string | undefined,
    private readonly bucket: string,
    private readonly ttlMs: number,
  ) {
    this.client = createS3Client({ ...s3, endpoint: publicEndpoint ?? s3.endpoint });
  }

  get expiresInSeconds(): number {
    return Math.max(1, Math.round(this.ttlMs / 1000));
  }

  /** When URLs signed now stop working. */
  expiresAt(now = Date.now()): string {
    return new Date(now + this.expiresInSeconds * 1000).toISOString();
  }

  /**
   * One PUT of the whole object. Content-Length is a signed header: storage refuses a body of
   * any other size (the quota was reserved for exactly that many bytes).
   */
  putObject(key: string, size: number): Promise<string> {
    return getSignedUrl(this.client, new PutObjectCommand({ Bucket: this.bucket, Key: key, ContentLength: size }), {
      expiresIn: this.expiresInSeconds,
      signableHeaders: new Set(['content-length']),
    });
  }

  /**
   * One part of a multipart upload, with its size signed like the single PUT's: storage refuses a
   * body of any other size (or without a Content-Length), so the parts a session can hold add up
   * to at most its declared size, whoever picks the part numbers.
   */
  uploadPart(key: string, uploadId: string, partNumber: number, size: number): Promise<string> {
    return getSignedUrl(this.client, new UploadPartCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId, PartNumber: partNumber, ContentLength: size }), {
      expiresIn: this.expiresInSeconds,
      signableHeaders: new Set(['content-length']),
    });
  }

  destroy(): void {
    this.client.destroy();
  }
}
