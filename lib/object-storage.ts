// Object access for the processing pipeline, for both stores:
//   - the finished upload as a stream, or downloaded to a temporary file (ffmpeg/sharp want paths);
//   - derived outputs under one deterministic prefix per upload, so that a retried or repeated
//     step overwrites the same keys:  S3 `derived/<uploadId>/...`, file store DATA_DIR/derived/<uploadId>/...
//   - quarantine of an infected upload: moved to `quarantine/<uploadId>` (S3) or
//     DATA_DIR/quarantine/<uploadId> (file store), or deleted, per QUARANTINE_MODE;
//   - URLs for the status API: presigned GET URLs (S3, expiry SIGNED_GET_URL_TTL), or URLs served
//     by tusk itself under /api/files/derived/... for the file store.
import { createHash, createHmac } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  CopyObjectCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import type { Config } from '../config/index.js';
import { createS3Client } from './s3-client.js';
import type { StorageLocation } from './queues.js';

export const DERIVED_PREFIX = 'derived';
export const QUARANTINE_PREFIX = 'quarantine';

/** Content types of the outputs the pipeline writes, by extension. */
const CONTENT_TYPES: Record<string, string> = {
  '.m3u8': 'application/vnd.apple.mpegurl',
  '.ts': 'video/mp2t',
  '.m4s': 'video/iso.segment',
  '.mp4': 'video/mp4',
  '.m4a': 'audio/mp4',
  '.aac': 'audio/aac',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.webp': 'image/webp',
  '.png': 'image/png',
  '.json': 'application/json',
};

export function contentTypeOf(key: string): string {
  return CONTENT_TYPES[path.extname(key).toLowerCase()] ?? 'application/octet-stream';
}

/** Upload ids become path segments: allow only what tus generates (and nothing like `..`). */
export function assertSafeId(id: string): string {
  if (!/^[A-Za-z0-9_-][A-Za-z0-9_.+-]{0,200}$/.test(id) || id.includes('..')) throw new Error(`unsafe upload id "${id}"`);
  return id;
}

/** `derived/<id>/<relative>`, with `relative` normalised (no `..`, forward slashes). */
export function derivedKey(uploadId: string, relative: string): string {
  const clean = path.posix.normalize(relative.split(path.sep).join('/')).replace(/^\/+/, '');
  if (clean.startsWith('..') || clean === '.') throw new Error(`bad output path "${relative}"`);
  return `${DERIVED_PREFIX}/${assertSafeId(uploadId)}/${clean}`;
}

export interface ObjectStorage {
  readonly kind: 's3' | 'file';
  /** The stored upload as a stream. */
  openRead(location: StorageLocation): Promise<Readable>;
  /** Size in bytes of the stored upload; undefined when it no longer exists. */
  sizeOf(location: StorageLocation): Promise<number | undefined>;
  /** Copies the stored upload to `file` (S3: stops at `signal`). */
  download(location: StorageLocation, file: string, signal?: AbortSignal): Promise<void>;
  /** Writes a local file under the upload's derived prefix; returns its key. */
  putDerived(uploadId: string, relative: string, file: string): Promise<string>;
  /**
   * Writes every file under `dir` (recursively) to derived/<id>/<relativePrefix>/...; returns the
   * keys. Once `signal` is aborted no further file is written (the call rejects with its reason).
   */
  putDerivedDir(uploadId: string, relativePrefix: string, dir: string, signal?: AbortSignal): Promise<string[]>;
  /** Removes every derived object of an upload (before a reprocess, or after a rejection). */
  deleteDerived(uploadId: string): Promise<void>;
  /** Moves the upload out of reach (`move`: to the quarantine prefix; `delete`). Idempotent. */
  quarantine(uploadId: string, location: StorageLocation, mode: 'move' | 'delete'): Promise<string | undefined>;
  /** Whether a derived key exists. */
  exists(key: string): Promise<boolean>;
  /** A URL a client can GET the key from (presigned, or served through tusk). */
  urlFor(key: string, baseUrl: string): string;
  /** File store only: absolute path of a derived key (for serving it). */
  localPath?(key: string): string;
  close(): void;
}

export function createObjectStorage(config: Config): ObjectStorage {
  if (config.storage === 's3' && config.s3) return new S3ObjectStorage(config);
  return new FileObjectStorage(config);
}

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await listFiles(full)));
    else if (entry.isFile()) out.push(full);
  }
  return out;
}

class S3ObjectStorage implements ObjectStorage {
  readonly kind = 's3' as const;
  private readonly client: S3Client;
  private readonly bucket: string;
  constructor(private readonly config: Config) {
    const s3 = config.s3!;
    this.client = createS3Client(s3);
    this.bucket = s3.bucket;
  }

  private where(location: StorageLocation): { Bucket: string; Key: string } {
    if (location.type !== 's3') throw new Error('upload stored in the file store, but tusk is configured for S3');
    return { Bucket: location.bucket, Key: location.key };
  }

  async openRead(location: StorageLocation): Promise<Readable> {
    const res = await this.client.send(new GetObjectCommand(this.where(location)));
    return res.Body as Readable;
  }

  async sizeOf(location: StorageLocation): Promise<number | undefined> {
    try {
      const head = await this.client.send(new HeadObjectCommand(this.where(location)));
      return head.ContentLength;
    } catch (err) {
      if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return undefined;
      throw err;
    }
  }

  async download(location: StorageLocation, file: string, signal?: AbortSignal): Promise<void> {
    await pipeline(await this.openRead(location), createWriteStream(file), { signal });
  }

  async putDerived(uploadId: string, relative: string, file: string): Promise<string> {
    const key = derivedKey(uploadId, relative);
    const { size } = await fs.stat(file);
    await this.client.send(
      new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: createReadStream(file), ContentLength: size, ContentType: contentTypeOf(key) }),
    );
    return key;
  }

  async putDerivedDir(uploadId: string, relativePrefix: string, dir: string, signal?: AbortSignal): Promise<string[]> {
    const files = await listFiles(dir);
    const keys: string[] = [];
    // A few at a time: HLS ladders have dozens of segments.
    for (let i = 0; i < files.length; i += 8) {
      signal?.throwIfAborted();
      keys.push(
        ...(await Promise.all(files.slice(i, i + 8).map((f) => this.putDerived(uploadId, path.posix.join(relativePrefix, path.relative(dir, f).split(path.sep).join('/')), f)))),
      );
    }
    return keys;
  }

  async deleteDerived(uploadId: string): Promise<void> {
    const Prefix = `${DERIVED_PREFIX}/${assertSafeId(uploadId)}/`;
    for (;;) {
      const list = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix, MaxKeys: 1000 }));
      const keys = (list.Contents ?? []).map((o) => ({ Key: o.Key! }));
      if (!keys.length) return;
      await this.client.send(new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: keys, Quiet: true } }));
      if (!list.IsTruncated) return;
    }
  }

  async quarantine(uploadId: string, location: StorageLocation, mode: 'move' | 'delete'): Promise<string | undefined> {
    const source = this.where(location);
    const target = `${QUARANTINE_PREFIX}/${assertSafeId(uploadId)}`;
    if (mode === 'move' && (await this.sizeOf(location)) !== undefined) {
      // Server-side copy (no bytes through tusk); objects over 5 GiB would need UploadPartCopy.
      await this.client.send(
        new CopyObjectCommand({ Bucket: this.bucket, Key: target, CopySource: `${source.Bucket}/${encodeURIComponent(source.Key)}`, MetadataDirective: 'COPY' }),
      );
    }
    await this.client.send(new DeleteObjectCommand(source));
    return mode === 'move' ? target : undefined;
  }

  async exists(key: string): Promise<boolean> {
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return true;
    } catch {
      return false;
    }
  }

  urlFor(key: string): string {
    const s3 = this.config.s3!;
    return presignGetUrl({
      endpoint: this.config.pipeline.s3PublicEndpoint ?? s3.endpoint ?? `https://s3.${s3.region}.amazonaws.com`,
      region: s3.region,
      bucket: this.bucket,
      key,
      accessKeyId: s3.accessKeyId ?? process.env.AWS_ACCESS_KEY_ID ?? '',
      secretAccessKey: s3.secretAccessKey ?? process.env.AWS_SECRET_ACCESS_KEY ?? '',
      sessionToken: s3.accessKeyId ? undefined : process.env.AWS_SESSION_TOKEN,
      forcePathStyle: s3.forcePathStyle,
      expiresInSeconds: Math.round(this.config.pipeline.signedGetUrlTtlMs / 1000),
    });
  }

  close(): void {
    this.client.destroy();
  }
}

class FileObjectStorage implements ObjectStorage {
  readonly kind = 'file' as const;
  private readonly root: string;
  constructor(config: Config) {
    this.root = config.dataDir;
  }

  private pathOf(location: StorageLocation): string {
    if (location.type !== 'file') throw new Error('upload stored in S3, but tusk is configured for the file store');
    return location.path;
  }

  localPath(key: string): string {
    const full = path.resolve(this.root, key);
    if (!full.startsWith(path.join(this.root, DERIVED_PREFIX) + path.sep)) throw new Error(`bad key "${key}"`);
    return full;
  }

  async openRead(location: StorageLocation): Promise<Readable> {
    return createReadStream(this.pathOf(location));
  }

  async sizeOf(location: StorageLocation): Promise<number | undefined> {
    try {
      return (await fs.stat(this.pathOf(location))).size;
    } catch {
      return undefined;
    }
  }

  async download(location: StorageLocation, file: string): Promise<void> {
    await fs.copyFile(this.pathOf(location), file); // a local copy: quick, not worth stopping
  }

  async putDerived(uploadId: string, relative: string, file: string): Promise<string> {
    const key = derivedKey(uploadId, relative);
    const target = this.localPath(key);
    await fs.mkdir(path.dirname(target), { recursive: true });
    // Copy to a temporary name, then rename: a reader never sees half a file.
    const tmp = `${target}.${process.pid}.tmp`;
    await fs.copyFile(file, tmp);
    await fs.rename(tmp, target);
    return key;
  }

  async putDerivedDir(uploadId: string, relativePrefix: string, dir: string, signal?: AbortSignal): Promise<string[]> {
    const keys: string[] = [];
    for (const f of await listFiles(dir)) {
      signal?.throwIfAborted();
      keys.push(await this.putDerived(uploadId, path.posix.join(relativePrefix, path.relative(dir, f).split(path.sep).join('/')), f));
    }
    return keys;
  }

  async deleteDerived(uploadId: string): Promise<void> {
    await fs.rm(path.join(this.root, DERIVED_PREFIX, assertSafeId(uploadId)), { recursive: true, force: true });
  }

  async quarantine(uploadId: string, location: StorageLocation, mode: 'move' | 'delete'): Promise<string | undefined> {
    const source = this.pathOf(location);
    const key = `${QUARANTINE_PREFIX}/${assertSafeId(uploadId)}`;
    if (mode === 'move') {
      const target = path.join(this.root, key);
      await fs.mkdir(path.dirname(target), { recursive: true });
      try {
        await fs.rename(source, target);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      return key;
    }
    await fs.rm(source, { force: true });
    return undefined;
  }

  async exists(key: string): Promise<boolean> {
    try {
      await fs.access(this.localPath(key));
      return true;
    } catch {
      return false;
    }
  }

  urlFor(key: string, baseUrl: string): string {
    return `${baseUrl}/api/files/${key.split('/').map(encodeURIComponent).join('/')}`;
  }

  close(): void {}
}

// --- SigV4 query-string presigning (GET only) ---------------------------------------------
// @aws-sdk/s3-request-presigner is not a dependency; a presigned GET is a few lines of SigV4.

interface PresignInput {
  endpoint: string;
  region: string;
  bucket: string;
  key: string;
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  forcePathStyle: boolean;
  expiresInSeconds: number;
  now?: Date;
}

const rfc3986 = (s: string) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

export function presignGetUrl(input: PresignInput): string {
  const base = new URL(input.endpoint);
  const encodedKey = input.key.split('/').map(rfc3986).join('/');
  let host = base.host;
  let pathname = base.pathname.replace(/\/+$/, '');
  if (input.forcePathStyle) pathname += `/${input.bucket}/${encodedKey}`;
  else {
    host = `${input.bucket}.${host}`;
    pathname += `/${encodedKey}`;
  }
  const now = input.now ?? new Date();
  const amzDate = now.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
  const day = amzDate.slice(0, 8);
  const scope = `${day}/${input.region}/s3/aws4_request`;
  const params: Array<[string, string]> = [
    ['X-Amz-Algorithm', 'AWS4-HMAC-SHA256'],
    ['X-Amz-Credential', `${input.accessKeyId}/${scope}`],
    ['X-Amz-Date', amzDate],
    ['X-Amz-Expires', String(input.expiresInSeconds)],
    ['X-Amz-SignedHeaders', 'host'],
  ];
  if (input.sessionToken) params.push(['X-Amz-Security-Token', input.sessionToken]);
  const query = params
    .map(([k, v]) => [rfc3986(k), rfc3986(v)])
    .sort(([a], [b]) => (a! < b! ? -1 : a! > b! ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  const canonical = ['GET', pathname, query, `host:${host}\n`, 'host', 'UNSIGNED-PAYLOAD'].join('\n');
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, createHash('sha256').update(canonical).digest('hex')].join('\n');
  const hmac = (key: string | Buffer, data: string) => createHmac('sha256', key).update(data).digest();
  const signingKey = hmac(hmac(hmac(hmac(`AWS4${input.secretAccessKey}`, day), input.region), 's3'), 'aws4_request');
  const signature = createHmac('sha256', signingKey).update(toSign).digest('hex');
  return `${base.protocol}//${host}${pathname}?${query}&X-Amz-Signature=${signature}`;
}
