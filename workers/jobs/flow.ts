// The structure of one pipeline run as BullMQ flows (a flow node has exactly one parent, so the
// run is two flows; the second is added by the metadata step once it knows the media kind):
//
//   process-upload  (entry; job id = upload id for run 1, `<id>.r<run>` for a reprocess)
//     └─ adds flow A:  extract-metadata  metadata.<id>.r<run>
//                        └─ virus-scan   scan.<id>.r<run>          (child: runs first, gates the rest)
//   extract-metadata (after a clean scan) adds flow B:
//                      finalize           finalize.<id>.r<run>
//                        ├─ thumbnail     thumbnail.<id>.r<run>    (image, video)
//                        └─ transcode     transcode.<id>.r<run>    (video, audio)   in parallel
//
// Job ids are deterministic per upload + step + run: adding a flow again (a retried or
// re-delivered process-upload job) adds nothing new, and a reprocess (run + 1) gets new ones.
// Children fail their parent (failParentOnFailure), so a failed scan never lets metadata run.
import type { FlowJob, JobsOptions } from 'bullmq';
import type { PipelineConfig } from '../../config/index.js';
import { FINALIZE_QUEUE, METADATA_QUEUE, stepJobId, THUMBNAIL_QUEUE, TRANSCODE_QUEUE, VIRUS_SCAN_QUEUE, type StepJob, type StepName } from '../../lib/queues.js';

/** Completed/failed step jobs are kept a week (their ids must stay taken while a run can be re-added). */
const KEEP = { removeOnComplete: { age: 7 * 86_400 }, removeOnFail: { age: 30 * 86_400 } } as const;

export function stepOptions(config: PipelineConfig, step: StepName, uploadId: string, run: number): JobsOptions {
  const attempts = step === 'scan' ? config.attempts : step === 'finalize' ? Math.max(config.attempts, 5) : Math.min(config.attempts, 2);
  return {
    ...KEEP,
    jobId: stepJobId(step, uploadId, run),
    attempts,
    backoff: { type: 'exponential', delay: config.backoffMs },
  };
}

export function flowA(config: PipelineConfig, data: StepJob): FlowJob {
  return {
    name: 'extract-metadata',
    queueName: METADATA_QUEUE,
    data,
    opts: stepOptions(config, 'metadata', data.uploadId, data.run),
    children: [
      {
        name: 'virus-scan',
        queueName: VIRUS_SCAN_QUEUE,
        data,
        opts: { ...stepOptions(config, 'scan', data.uploadId, data.run), failParentOnFailure: true },
      },
    ],
  };
}

export function flowB(config: PipelineConfig, data: StepJob, steps: { thumbnail: boolean; transcode: boolean }): FlowJob {
  const children: FlowJob[] = [];
  if (steps.thumbnail) {
    children.push({ name: 'thumbnail', queueName: THUMBNAIL_QUEUE, data, opts: { ...stepOptions(config, 'thumbnail', data.uploadId, data.run), failParentOnFailure: true } });
  }
  if (steps.transcode) {
    children.push({ name: 'transcode', queueName: TRANSCODE_QUEUE, data, opts: { ...stepOptions(config, 'transcode', data.uploadId, data.run), failParentOnFailure: true } });
  }
  return { name: 'finalize', queueName: FINALIZE_QUEUE, data, opts: stepOptions(config, 'finalize', data.uploadId, data.run), children };
}
