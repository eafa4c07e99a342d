// The vocabulary of an upload's status document (GET /api/uploads/:id): the statuses, the tasks
// and their states, the reason of a refusal. Pure (no Redis, no I/O), so that the command-line
// client reads the document in the very terms the record store (lib/record-store.ts) writes it.
export const STATUSES = ['uploading', 'uploaded', 'scanning', 'processing', 'ready', 'rejected', 'failed'] as const;
export type UploadStatus = (typeof STATUSES)[number];
/** A run that reached one of these is over: its status no longer changes until a reprocess. */
export const TERMINAL: readonly UploadStatus[] = ['ready', 'rejected', 'failed'];
export type TaskName = 'virus_scan' | 'metadata' | 'thumbnail' | 'transcode';
export const TASKS: readonly TaskName[] = ['virus_scan', 'metadata', 'thumbnail', 'transcode'];

export interface TaskState {
  /** waiting: cannot run yet (no virus scanner), comes back by itself; the record's reason says why. */
  status: 'pending' | 'running' | 'waiting' | 'done' | 'skipped' | 'failed' | 'retrying';
  progress?: number;
  error?: string;
  started_at?: string;
  finished_at?: string;
}

export interface Reason {
  code: string;
  message: string;
  signature?: string;
}
