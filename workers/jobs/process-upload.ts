// process-upload: the entry of the pipeline, one job per run of an upload (lib/queues.ts,
// processUploadJobId). It makes sure the run is current and unfinished, sends upload.finished and
// adds the run's first flow (virus scan, then metadata; workers/jobs/flow.ts).
import { PROCESS_UPLOAD_QUEUE, type ProcessUploadJob, type ReprocessFields, type StepJob } from '../../lib/queues.js';
import { baseFromMetadata, TERMINAL } from '../../lib/record-store.js';
import type { PipelineJob } from './context.js';
import { flowA } from './flow.js';

export const processUploadJob: PipelineJob<ProcessUploadJob & ReprocessFields> = {
  queue: PROCESS_UPLOAD_QUEUE,
  worker: () => ({ concurrency: 4 }),
  handler:
    ({ config, records, flows, webhooks, log }) =>
    async (job) => {
      const d = job.data;
      const run = d.run ?? 1;
      // Normally the hook created the record; a job queued before the pipeline existed has none.
      const current = await records.create({ ...baseFromMetadata(d.uploadId, d.size, d.metadata ?? {}), source: d }, 'uploaded');
      const rec = await records.get(d.uploadId);
      if (current !== run || !rec) return { skipped: `run ${run} is not the current run ${current}` };
      // A completed process-upload job is never removed, so the hook's re-add on HEAD is a no-op;
      // and should one be re-run all the same, a finished run is not started again.
      if (TERMINAL.includes(rec.status)) return { skipped: `run ${run} already ${rec.status}` };
      const data: StepJob = { uploadId: d.uploadId, run, location: d.location, size: d.size };
      await webhooks.send('upload.finished', d.uploadId, run, { status: rec.status, size: d.size, filename: rec.base.filename });
      await flows.add(flowA(config.pipeline, data));
      log.info({ uploadId: d.uploadId, run }, 'pipeline started');
      return { run };
    },
};
