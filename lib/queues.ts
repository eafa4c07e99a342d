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

// --- Processing pipeline (workers/pipeline) ------------------------------------------------
// `process-upload` is the entry: its consumer starts a BullMQ flow over the step queues below
// (structure in workers/pipeline/flow.ts). Each step queue has its own concurrency, attempts
// and backoff, so each can be scaled by its own depth. A reprocess adds another process-upload
// job with id `<uploadId>.r<run>` and `run` set; the first job (id = upload id) is run 1.
export const VIRUS_SCAN_QUEUE = 'virus-scan';
export const METADATA_QUEUE = 'extract-metadata';
export const THUMBNAIL_QUEUE = 'thumbnail';
export const TRANSCODE_QUEUE = 'transcode';
export const FINALIZE_QUEUE = 'finalize';
/** Outgoing webhooks, one job per event and pipeline run. */
export const WEBHOOK_QUEUE = 'webhook';

/** Job id of the process-upload job of a reprocess (run 1's job id is the upload id itself). */
export function reprocessJobId(uploadId: string, run: number): string {
  return `${uploadId}.r${run}`;
}

/** What the process-upload consumer reads beyond ProcessUploadJob. */
export interface ReprocessFields {
  /** Pipeline run (generation) this job is for; absent on the first job (run 1). */
  run?: number;
}

export type DetectedKind = 'image' | 'video' | 'audio' | 'other';

/** Payload of every step job. */
export interface StepJob {
  uploadId: string;
  run: number;
  location: StorageLocation;
  size: number;
  /** Set by extract-metadata for the steps after it. */
  detected?: { mime: string; ext: string; kind: DetectedKind };
  /** MediaMetadata from extract-metadata (duration etc.), for the steps after it. */
  probe?: unknown;
}

export interface WebhookJob {
  event: 'upload.finished' | 'upload.ready' | 'upload.rejected' | 'upload.failed';
  uploadId: string;
  run: number;
  /** The exact bytes that are signed and sent. */
  body: string;
}
