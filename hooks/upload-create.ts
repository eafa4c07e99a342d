// Validation when an upload is created, before anything is stored. (Size limits are enforced
// by @tus/server through `maxSize`; owner and quota reservation: hooks/ownership.ts, hooks/quota.ts,
// called from server/tus/endpoint.ts.)
import type { Upload } from '@tus/utils';
import { TuskError } from '../lib/errors.js';

/** Upload-Metadata is kept with every upload and echoed on every HEAD: bound it. */
export const MAX_METADATA_BYTES = 4096;


export function validateNewUpload(upload: Upload): void {
  const metadata = upload.metadata ?? {};
  const size = Object.entries(metadata).reduce((sum, [k, v]) => sum + k.length + (v?.length ?? 0) + 2, 0);
  if (size > MAX_METADATA_BYTES) {
    throw new TuskError('invalid_request', `Upload-Metadata too large (max ${MAX_METADATA_BYTES} bytes decoded)`);
  }
}
