// Finish -> queue: every upload that completes (PATCH or creation-with-upload, any store) is
// handed to the processing workers as one `process-upload` job. The upload id is the BullMQ
// job id, so a repeated finish (a retried request, a HEAD re-check) never adds a second job.
import type { Queue } from 'bullmq';
import type { Upload } from '@tus/utils';
import type { Logger } from '../lib/logger.js';
import { PROCESS_UPLOAD_JOB, type ProcessUploadJob, type StorageLocation } from '../workers/queues.js';

export function storageLocation(upload: Upload): StorageLocation {
  const storage = upload.storage;
  if (storage?.type === 's3' && storage.bucket) return { type: 's3', bucket: storage.bucket, key: storage.path };
  if (storage?.type === 'file') return { type: 'file', path: storage.path };
  throw new Error(`upload ${upload.id} has no known storage location`);
}

export class UploadFinishedHook {
  constructor(
    private readonly queue: Queue<ProcessUploadJob>,
    private readonly logger: Logger,
  ) {}

  /** Adds the processing job for a finished upload; idempotent. */
  async enqueue(upload: Upload, owner: string | null = null): Promise<void> {
    const job: ProcessUploadJob = {
      uploadId: upload.id,
      location: storageLocation(upload),
      size: upload.size ?? upload.offset,
      metadata: upload.metadata ?? {},
      owner,
      finishedAt: new Date().toISOString(),
    };
    await this.queue.add(PROCESS_UPLOAD_JOB, job, { jobId: upload.id });
    this.logger.info({ uploadId: upload.id, size: job.size }, 'upload finished; processing job queued');
  }
}
