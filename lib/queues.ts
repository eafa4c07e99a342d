// The contract between the upload side (hooks/) and the processing side (workers/): queue names,
// job payloads, and the job ids and options a producer must use. Producers and consumers import it
// from here and nowhere else.
import type { JobsOptions } from 'bullmq';

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

/**
 * Job id of the process-upload job of `run`: the upload id for run 1 (the finished upload's job),
 * `<uploadId>.r<run>` for a reprocess. One id per run, so adding it again (a HEAD after the
 * upload finished, a retried hook) is a no-op. Add it without removeOnComplete: a completed job
 * must keep its id taken.
 */
export function processUploadJobId(uploadId: string, run = 1): string {
  return run === 1 ? uploadId : `${uploadId}.r${run}`;
}

/** Periodic housekeeping (a BullMQ job scheduler; one worker takes each run). */
export const MAINTENANCE_QUEUE = 'maintenance';
/** Deletes expired unfinished uploads from the store (multipart uploads, .info/.part objects). */
export const CLEANUP_EXPIRED_JOB = 'cleanup-expired-uploads';

// --- Processing pipeline (workers/jobs) ------------------------------------------------------
// `process-upload` is the entry: its consumer starts a BullMQ flow over the step queues below
// (structure, attempts and backoff in workers/jobs/flow.ts). Each step queue has its own
// concurrency, so each can be scaled by its own depth. A reprocess adds another process-upload
// job (processUploadJobId) with `run` set; the first job is run 1.
export const VIRUS_SCAN_QUEUE = 'virus-scan';
export const METADATA_QUEUE = 'extract-metadata';
export const THUMBNAIL_QUEUE = 'thumbnail';
export const TRANSCODE_QUEUE = 'transcode';
export const FINALIZE_QUEUE = 'finalize';
/** Outgoing webhooks, one job per event and pipeline run. */
export const WEBHOOK_QUEUE = 'webhook';

/** Names the step jobs of a run in their ids (`scan`, not the queue's `virus-scan`: ids already stored keep working). */
export type StepName = 'scan' | 'metadata' | 'thumbnail' | 'transcode' | 'finalize';

/**
 * Job id of a step of one run: deterministic per upload, step and run, so adding a run's flow again
 * adds nothing new, and a reprocess (run + 1) gets new ids.
 */
export function stepJobId(step: StepName, uploadId: string, run: number): string {
  return `${step}.${uploadId}.r${run}`;
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

/**
 * Job id of a webhook event: one per event, upload and run, so the event is queued once per run
 * whoever asks twice. Receivers see it as X-Tusk-Delivery (README, "Webhooks").
 */
export function webhookJobId(event: WebhookJob['event'], uploadId: string, run: number): string {
  return `${event}.${uploadId}.r${run}`;
}

/** Options of every webhook job: 10 attempts, delays doubling from 1 s (about 8.5 minutes in all). */
export const WEBHOOK_JOB_OPTIONS: JobsOptions = {
  attempts: 10,
  backoff: { type: 'exponential', delay: 1000 },
  removeOnComplete: { age: 7 * 86_400 },
  removeOnFail: { age: 30 * 86_400 },
};
