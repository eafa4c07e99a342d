// tus concatenation extension (parallel uploads), for both stores. @tus/server answers 501 to
// Upload-Concat, so tusk handles it here:
//   POST  Upload-Concat: partial           created by @tus/server as usual; remembered as partial,
//                                          and its finish queues no processing job
//   POST  Upload-Concat: final;<url> ...   built here from FINISHED partials (the store concatenates
//                                          server-side), queued for processing like any upload;
//                                          the partials are then deleted (they would otherwise
//                                          never expire: finished uploads do not)
//   HEAD  on a partial or final upload      Upload-Concat reported
//   PATCH on a final upload                 403
// What is partial or final lives in Redis: `<prefix>concat:{<id>}` = "partial" | "final;<urls>" (lib/redis-keys.ts).
import { Metadata, Upload, type DataStore } from '@tus/utils';
import type { Redis } from 'ioredis';
import { RedisKeys } from '../../lib/redis-keys.js';
import { validateNewUpload } from '../../hooks/upload-create.js';
import { TuskError } from '../../lib/errors.js';
import { newUploadId } from '../../lib/upload-id.js';
import { uploadIdOfUrl } from '../http/request-target.js';
import type { ConcatenatingStore } from '../../lib/stores/concatenating-store.js';

export type ConcatHeader = { kind: 'partial' } | { kind: 'final'; urls: string[] } | { kind: 'invalid'; reason: string };

export function parseConcatHeader(value: string): ConcatHeader {
  const trimmed = value.trim();
  if (trimmed === 'partial') return { kind: 'partial' };
  if (trimmed.startsWith('final;')) {
    const urls = trimmed.slice('final;'.length).trim().split(/ +/).filter(Boolean);
    if (urls.length === 0) return { kind: 'invalid', reason: 'Upload-Concat: final needs at least one partial upload URL' };
    return { kind: 'final', urls };
  }
  return { kind: 'invalid', reason: 'Upload-Concat must be "partial" or "final;<url> <url> ..."' };
}

export class ConcatRegistry {
  private readonly keys: RedisKeys;
  constructor(
    private readonly redis: Redis,
    prefix: string,
    /** Partial records expire with unfinished uploads (plus a day); final ones live with the upload. */
    private readonly partialTtlMs: number,
  ) {
    this.keys = new RedisKeys(prefix);
  }

  private key(id: string): string {
    return this.keys.concat(id);
  }
  async markPartial(id: string): Promise<void> {
    await this.redis.set(this.key(id), 'partial', 'PX', this.partialTtlMs);
  }
  async markFinal(id: string, urls: string[]): Promise<void> {
    await this.redis.set(this.key(id), `final;${urls.join(' ')}`);
  }
  /** The Upload-Concat value to report for an upload, if any. */
  async headerOf(id: string): Promise<string | undefined> {
    return (await this.redis.get(this.key(id))) ?? undefined;
  }
  async forget(id: string): Promise<void> {
    await this.redis.del(this.key(id));
  }
}

/**
 * Creates the final upload of `Upload-Concat: final;...` from finished partial uploads.
 * Throws TuskError (invalid_request, too_large) for bad requests; storage errors propagate.
 */
export async function createFinalUpload(deps: {
  store: DataStore & ConcatenatingStore;
  registry: ConcatRegistry;
  maxSize: number;
  urls: string[];
  metadataHeader: string | undefined;
  /** May the caller use this partial upload? No: answered like an unknown one (ownership). */
  canUse?: (id: string) => Promise<boolean>;
  /** Runs before anything is stored (quota reservation, owner); throws TuskError to refuse. */
  beforeStore?: (final: Upload, partials: Upload[]) => Promise<void>;
}): Promise<Upload> {
  const { store, registry, maxSize, urls } = deps;
  let metadata: Record<string, string | null> | undefined;
  if (deps.metadataHeader !== undefined) {
    try {
      metadata = Metadata.parse(deps.metadataHeader);
    } catch {
      throw new TuskError('invalid_request', 'Upload-Metadata is invalid');
    }
  }
  const partials: Upload[] = [];
  const seen = new Set<string>();
  for (const url of urls) {
    const id = uploadIdOfUrl(url);
    if (!id) throw new TuskError('invalid_request', `Partial upload not found (not an upload URL of this server): ${url}`);
    // Each partial's bytes (and quota reservation) can become part of one final upload once.
    if (seen.has(id)) throw new TuskError('invalid_request', `Partial upload listed more than once: ${url}`);
    seen.add(id);
    if (deps.canUse && !(await deps.canUse(id))) throw new TuskError('invalid_request', `Partial upload not found: ${url}`);
    if ((await registry.headerOf(id)) !== 'partial') throw new TuskError('invalid_request', `Not a partial upload (Upload-Concat: partial): ${url}`);
    let partial: Upload;
    try {
      partial = await store.getUpload(id);
    } catch {
      throw new TuskError('invalid_request', `Partial upload not found: ${url}`);
    }
    if (partial.size === undefined || partial.offset !== partial.size) {
      throw new TuskError('invalid_request', `Partial upload not finished (${partial.offset} of ${partial.size ?? 'unknown'} bytes): ${url}`);
    }
    partials.push(partial);
  }
  const size = partials.reduce((sum, p) => sum + (p.size ?? 0), 0);
  if (maxSize > 0 && size > maxSize) throw new TuskError('too_large', `Concatenated size ${size} exceeds the maximum upload size ${maxSize}`);
  const final = new Upload({ id: newUploadId(), size, offset: 0, metadata });
  validateNewUpload(final);
  await deps.beforeStore?.(final, partials);
  const built = await store.concatenate(final, partials);
  await registry.markFinal(built.id, urls);
  for (const partial of partials) {
    await store.remove(partial.id).catch(() => {});
    await registry.forget(partial.id);
  }
  return built;
}
