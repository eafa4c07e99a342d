// finalize: the last job of a run, once its thumbnail and transcode children are done. The upload
// becomes `ready` (written once per run), upload.ready carries the status document, and the
// upload enters the dedup index of its owner.
import type { Config } from '../../config/index.js';
import { FINALIZE_QUEUE, type StepJob } from '../../lib/queues.js';
import { DEDUP_TTL_SECONDS, publicDocument } from '../../lib/record-store.js';
import type { PipelineJob } from './context.js';
import { stillWanted } from './step.js';

/** Where the worker's URLs point (PUBLIC_URL, else the server's address): links to outputs in upload.ready. */
function publicBaseUrl(config: Config): string {
  return config.publicUrl ?? `http://${config.host === '0.0.0.0' ? '127.0.0.1' : config.host}:${config.port}`;
}

export const finalizeJob: PipelineJob<StepJob> = {
  queue: FINALIZE_QUEUE,
  worker: () => ({ concurrency: 4 }),
  handler: (ctx) => {
    const { config, redis, keys, records, storage, webhooks, log } = ctx;
    const baseUrl = publicBaseUrl(config);
    const urlFor = (key: string) => storage.urlFor(key, baseUrl);
    return async (job) => {
      const { uploadId, run } = job.data;
      if (!(await stillWanted(ctx, uploadId, run))) return { skipped: true };
      const { statusChanged } = await records.update(uploadId, run, { status: 'ready' });
      if (statusChanged) {
        const rec = await records.get(uploadId);
        if (rec) await webhooks.send('upload.ready', uploadId, run, await publicDocument(rec, urlFor));
        const owner = rec?.base.source?.owner;
        if (rec?.sha256 && owner && rec.base.size) await redis.set(keys.dedup(owner, rec.sha256, rec.base.size), uploadId, 'EX', DEDUP_TTL_SECONDS);
        log.info({ uploadId, run }, 'upload ready');
      }
      return { ready: true };
    };
  },
};
