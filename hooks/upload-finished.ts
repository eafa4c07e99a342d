// Finish -> queue: every upload that completes (PATCH or creation-with-upload, any store) is
// handed to the processing workers as one `process-upload` job. The upload id is the BullMQ
// job id, so a repeated finish (a retried request, a HEAD re-check) never adds a second job
// (the pipeline keeps completed process-upload jobs for that reason).
// It also keeps the upload's status record (lib/record-store.ts): `uploading` when the
// upload is created, `uploaded` when it finished; the workers take it from there.
import type { Queue } from 'bullmq';
import type { Upload } from '@tus/utils';
import type { Logger } from '../lib/logger.js';
import { baseFromMetadata, RecordStore } from '../lib/record-store.js';
import { PROCESS_UPLOAD_JOB, type ProcessUploadJob, type StorageLocation } from '../lib/queues.js';

export function storageLocation(upload: Upload): StorageLocation {
  const storage = upload.storage;
  if (storage?.type === 's3' && storage.bucket) return { type: 's3', bucket: storage.bucket, key: storage.path };
  if (storage?.type === 'file') return { type: 'file', path: storage.path };
  throw new Error(`upload ${upload.id} has no known storage location`);
}

export class UploadFinishedHook {
  private records?: Promise<RecordStore>;
  constructor(
    private readonly queue: Queue<ProcessUploadJob>,
    private readonly logger: Logger,
  ) {}

  /** The record store on the queue's own connection; REDIS_PREFIX is the queue prefix without `bull`. */
  private recordStore(): Promise<RecordStore> {
    this.records ??= this.queue.client.then((client) => new RecordStore(client as never, (this.queue.opts.prefix ?? '').replace(/bull$/, '')));
    return this.records;
  }

  /** A new upload: its status record answers `uploading` until it finishes. Never fails the request. */
  async created(upload: Upload): Promise<void> {
    try {
      const records = await this.recordStore();
      await records.create(baseFromMetadata(upload.id, upload.size ?? null, upload.metadata ?? {}), 'uploading');
    } catch (err) {
      this.logger.warn({ err, uploadId: upload.id }, 'could not create the status record of a new upload');
    }
  }

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
    // Record first (`uploaded`, or left as it is when it already exists), then the job.
    const records = await this.recordStore();
    await records.create({ ...baseFromMetadata(upload.id, job.size, job.metadata), source: job }, 'uploaded');
    await this.queue.add(PROCESS_UPLOAD_JOB, job, { jobId: upload.id });
    this.logger.info({ uploadId: upload.id, size: job.size }, 'upload finished; processing job queued');
  }
}
