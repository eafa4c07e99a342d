// Object access for the processing pipeline, for both stores:
//   - the finished upload as a stream, or downloaded to a temporary file (ffmpeg/sharp want paths);
//   - derived outputs under one deterministic prefix per upload, so that a retried or repeated
//     step overwrites the same keys:  S3 `derived/<uploadId>/...`, file store DATA_DIR/derived/<uploadId>/...
//   - quarantine of an infected upload: moved to `quarantine/<uploadId>` (S3) or
//     DATA_DIR/quarantine/<uploadId> (file store), or deleted, per QUARANTINE_MODE;
//   - URLs for the status API: presigned GET URLs (S3, expiry SIGNED_GET_URL_TTL), or URLs served
//     by tusk itself under /api/files/derived/... for the file store.
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
import { isNotFoundError } from './errors.js';
import type { Presigner } from './s3.js';
import { DerivedUrlSigner } from './signed-urls.js';
import { DERIVED_PREFIX, derivedKey, derivedPrefix, quarantineKey } from './s3-keys.js';
import type { StorageLocation } from './queues.js';


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
  urlFor(key: string, baseUrl: string): Promise<string>;
  /**
   * A URL of a derived key that storage serves itself, valid until `expiresAtMs` (S3: presigned; the
   * file store: tusk's signed URL, whose expiry is its own): what a served playlist names.
   */
  mediaUrlFor(key: string, baseUrl: string, token: string, expiresAtMs: number): Promise<string>;
  /** A derived object's bytes (a playlist: small); undefined when it does not exist. */
  readDerived(key: string): Promise<Buffer | undefined>;
  /** File store only: absolute path of a derived key (for serving it). */
  localPath?(key: string): string;
  close(): void;
}

/** The object storage of the configured store; S3 uses the process's client and presigner. */
/**
 * `signer`: URLs of HLS playlists (both stores) and of the file store's derived files are tusk's
 * signed URLs (lib/signed-urls.ts), which a player or <img> loads without a token; without one,
 * the file store's URLs need the token (`/api/files/derived/...`) and playlists are presigned.
 */
export function createObjectStorage(config: Config, s3?: { client: S3Client; presigner: Presigner }, signer?: DerivedUrlSigner): ObjectStorage {
  if (config.storage === 's3' && config.s3) {
    if (!s3) throw new Error('STORAGE=s3 needs the S3 client');
    return new S3ObjectStorage(s3.client, config.s3.bucket, s3.presigner, Math.round(config.pipeline.signedGetUrlTtlMs / 1000), signer);
  }
  return new FileObjectStorage(config, signer);
}

const isPlaylist = (key: string) => key.toLowerCase().endsWith('.m3u8');

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
  constructor(
    private readonly client: S3Client,
    private readonly bucket: string,
    private readonly presigner: Presigner,
    private readonly urlTtlSeconds: number,
    private readonly signer?: DerivedUrlSigner,
  ) {}

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
      if (isNotFoundError(err)) return undefined;
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
    const Prefix = derivedPrefix(uploadId);
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
    const target = quarantineKey(uploadId);
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

  urlFor(key: string, baseUrl: string): Promise<string> {
    // A presigned playlist would name its variants and segments unsigned: tusk serves playlists.
    if (this.signer && isPlaylist(key)) return this.signer.url(baseUrl, key);
    return this.presigner.getObject(this.bucket, key, this.urlTtlSeconds);
  }

  mediaUrlFor(key: string, _baseUrl: string, _token: string, expiresAtMs: number): Promise<string> {
    return this.presigner.getObject(this.bucket, key, Math.min(7 * 86_400, Math.max(1, Math.ceil((expiresAtMs - Date.now()) / 1000))));
  }

  async readDerived(key: string): Promise<Buffer | undefined> {
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      return Buffer.from(await (out.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray());
    } catch (err) {
      if (isNotFoundError(err)) return undefined;
      throw err;
    }
  }

  close(): void {
    // The client is the process's; its owner closes it.
  }
}

class FileObjectStorage implements ObjectStorage {
  readonly kind = 'file' as const;
  private readonly root: string;
  constructor(
    config: Config,
    private readonly signer?: DerivedUrlSigner,
  ) {
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
    await fs.rm(path.join(this.root, derivedPrefix(uploadId)), { recursive: true, force: true });
  }

  async quarantine(uploadId: string, location: StorageLocation, mode: 'move' | 'delete'): Promise<string | undefined> {
    const source = this.pathOf(location);
    const key = quarantineKey(uploadId);
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

  async urlFor(key: string, baseUrl: string): Promise<string> {
    if (this.signer) return this.signer.url(baseUrl, key);
    return `${baseUrl}/api/files/${key.split('/').map(encodeURIComponent).join('/')}`;
  }

  async mediaUrlFor(key: string, baseUrl: string, token: string): Promise<string> {
    return DerivedUrlSigner.urlWith(baseUrl, key, token);
  }

  async readDerived(key: string): Promise<Buffer | undefined> {
    try {
      return await fs.readFile(this.localPath(key));
    } catch (err) {
      if (isNotFoundError(err)) return undefined;
      throw err;
    }
  }

  close(): void {}
}
