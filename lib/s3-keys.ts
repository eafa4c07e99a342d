// Every object key tusk itself names, in the bucket or under DATA_DIR (the tus store's own keys,
// `<id>`, `<id>.info`, `<id>.part`, are @tus/s3-store's and @tus/file-store's):
//   derived/<id>/<relative>   outputs of the pipeline (thumbnails, HLS, MP4)
//   quarantine/<id>           an infected upload moved out of reach
//   direct/<id>               a direct-to-storage upload's object
//   direct/<id>.put           where its single PUT lands before completion copies it
import path from 'node:path';
import { isUploadId } from './upload-id.js';

export const DERIVED_PREFIX = 'derived';
export const QUARANTINE_PREFIX = 'quarantine';
export const DIRECT_PREFIX = 'direct';

/** Upload ids become key segments: only the form tusk issues gets that far. */
function checkedId(id: string): string {
  if (!isUploadId(id)) throw new Error(`not an upload id: "${id}"`);
  return id;
}

/** `derived/<id>/`: everything derived from one upload. */
export function derivedPrefix(uploadId: string): string {
  return `${DERIVED_PREFIX}/${checkedId(uploadId)}/`;
}

/** `derived/<id>/<relative>`, with `relative` normalised (no `..`, forward slashes). */
export function derivedKey(uploadId: string, relative: string): string {
  const clean = path.posix.normalize(relative.split(path.sep).join('/')).replace(/^\/+/, '');
  if (clean.startsWith('..') || clean === '.') throw new Error(`bad output path "${relative}"`);
  return `${derivedPrefix(uploadId)}${clean}`;
}

export function quarantineKey(uploadId: string): string {
  return `${QUARANTINE_PREFIX}/${checkedId(uploadId)}`;
}

export function directObjectKey(uploadId: string): string {
  return `${DIRECT_PREFIX}/${checkedId(uploadId)}`;
}

export function directPutKey(uploadId: string): string {
  return `${directObjectKey(uploadId)}.put`;
}

/** The upload id of an object key `direct/<upload id>` (exactly that form), else undefined. */
export function uploadIdOfDirectKey(key: string): string | undefined {
  const prefix = `${DIRECT_PREFIX}/`;
  if (!key.startsWith(prefix)) return undefined;
  const id = key.slice(prefix.length);
  return isUploadId(id) ? id : undefined;
}
