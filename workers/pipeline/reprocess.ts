// Reprocess: a new run of the pipeline for an upload that finished. The record's run is bumped
// (tasks and outputs cleared; writes of the earlier run's jobs are dropped from now on), and a
// process-upload job with id `<uploadId>.r<run>` is added (the first job, id = upload id, stays).
// Kept apart from the pipeline's workers so that the API server does not load sharp/ffmpeg code.
import type { Queue } from 'bullmq';
import { PROCESS_UPLOAD_JOB } from '../queues.js';
import type { RecordStore } from './record.js';

/** Queues another run of the pipeline (reprocess). Returns the new run, or undefined when impossible. */
export async function queueReprocess(records: RecordStore, queue: Queue, uploadId: string): Promise<number | undefined> {
  const rec = await records.get(uploadId);
  if (!rec?.base.source) return undefined;
  const run = await records.newRun(uploadId);
  if (!run) return undefined;
  await queue.add(PROCESS_UPLOAD_JOB, { ...rec.base.source, run }, { jobId: `${uploadId}.r${run}` });
  return run;
}
