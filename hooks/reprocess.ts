// Reprocess: a new run of the pipeline for an upload that finished. The record's run is bumped
// (tasks and outputs cleared; writes of the earlier run's jobs are dropped from now on, and its
// steps stop their work), and a process-upload job with id `<uploadId>.r<run>` is added (the
// first job, id = upload id, stays).
// Kept apart from the pipeline's workers so that the API server does not load sharp/ffmpeg code.
import type { Queue } from 'bullmq';
import { PROCESS_UPLOAD_JOB } from '../lib/queues.js';
import type { NewRunResult, RecordStore } from '../lib/record-store.js';

/**
 * Queues another run of the pipeline (reprocess): the new run, or why not (record.ts newRun:
 * missing, not_finished, in_progress without force, too_soon when forcing a run younger than
 * `minRunAgeMs`). The steps of the run it replaces notice within about a second and stop.
 */
export async function queueReprocess(records: RecordStore, queue: Queue, uploadId: string, opts: { force?: boolean; minRunAgeMs?: number } = {}): Promise<NewRunResult> {
  const rec = await records.get(uploadId);
  if (!rec?.base.source) return { refused: rec ? 'not_finished' : 'missing', retryAfterMs: 0 };
  const result = await records.newRun(uploadId, opts);
  if ('run' in result) await queue.add(PROCESS_UPLOAD_JOB, { ...rec.base.source, run: result.run }, { jobId: `${uploadId}.r${result.run}` });
  return result;
}
