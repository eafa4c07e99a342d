// The contract between the upload side (hooks/) and the processing side (workers/):
// queue names and job payloads. Both import it from here and nowhere else.

/** Queue that receives one job per finished upload. */
export const PROCESS_UPLOAD_QUEUE = 'process-upload';
/** Job name inside PROCESS_UPLOAD_QUEUE. */
export const PROCESS_UPLOAD_JOB = 'process-upload';

export type StorageLocation =
  | { type: 's3'; bucket: string; key: string }
  | { type: 'file'; path: string };

export interface ProcessUploadJob {
  uploadId: string;
  location: StorageLocation;
  size: number;
  /** tus Upload-Metadata, decoded. */
  metadata: Record<string, string | null>;
  /** Who created the upload; null until authentication lands (no auth configured). */
  owner: string | null;
  finishedAt: string;
}

/** Periodic housekeeping (a BullMQ job scheduler; one worker takes each run). */
export const MAINTENANCE_QUEUE = 'maintenance';
/** Deletes expired unfinished uploads from the store (multipart uploads, .info/.part objects). */
export const CLEANUP_EXPIRED_JOB = 'cleanup-expired-uploads';
