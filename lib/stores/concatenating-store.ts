// The one thing tusk's tus stores add for concatenation: building a final upload from finished
// partial uploads server-side (S3: UploadPartCopy; file store: appending files).
import type { DataStore, Upload } from '@tus/utils';

export interface ConcatenatingStore {
  concatenate(final: Upload, partials: Upload[]): Promise<Upload>;
}

export function canConcatenate(store: DataStore): store is DataStore & ConcatenatingStore {
  return typeof (store as Partial<ConcatenatingStore>).concatenate === 'function';
}
