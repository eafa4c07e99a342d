// Outgoing webhooks: POST WEBHOOK_URL with a JSON body { event, upload_id, status, run, ... } and
// `X-Tusk-Signature: sha256=<hex HMAC-SHA256 of the raw body with WEBHOOK_SECRET>`. Delivered from
// the BullMQ `webhook` queue (attempts with exponential backoff). The job id is
// `<event>.<uploadId>.r<run>` (webhookJobId), so each event is queued once per pipeline run whoever asks twice
// (a retried step, a worker killed after publishing); the body is fixed when the event is queued,
// so every retry sends (and signs) the same bytes.
import { createHmac } from 'node:crypto';
import { Queue, Worker, type ConnectionOptions } from 'bullmq';
import type { PipelineConfig } from '../../config/index.js';
import type { Logger } from '../../lib/logger.js';
import { WEBHOOK_JOB_OPTIONS, WEBHOOK_QUEUE, webhookJobId, type WebhookJob } from '../../lib/queues.js';

export function signBody(body: string, secret: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

export class Webhooks {
  readonly queue: Queue<WebhookJob> | undefined;
  constructor(
    private readonly config: PipelineConfig,
    connection: ConnectionOptions,
    prefix: string,
  ) {
    if (config.webhook) this.queue = new Queue<WebhookJob>(WEBHOOK_QUEUE, { connection, prefix });
  }

  /** Queues `event` for this run (no-op without WEBHOOK_URL, or when already queued for the run). */
  async send(event: WebhookJob['event'], uploadId: string, run: number, payload: Record<string, unknown>): Promise<void> {
    if (!this.queue) return;
    const body = JSON.stringify({ event, upload_id: uploadId, run, occurred_at: new Date().toISOString(), ...payload });
    await this.queue.add(event, { event, uploadId, run, body }, { ...WEBHOOK_JOB_OPTIONS, jobId: webhookJobId(event, uploadId, run) });
  }

  /** The delivering worker; undefined without WEBHOOK_URL. */
  startWorker(connection: ConnectionOptions, prefix: string, logger: Logger): Worker<WebhookJob> | undefined {
    const hook = this.config.webhook;
    if (!hook) return undefined;
    const worker = new Worker<WebhookJob>(
      WEBHOOK_QUEUE,
      async (job) => {
        const res = await fetch(hook.url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'user-agent': 'tusk-webhooks',
            'x-tusk-event': job.data.event,
            'x-tusk-delivery': job.id ?? '',
            'x-tusk-signature': signBody(job.data.body, hook.secret ?? ''),
          },
          body: job.data.body,
          signal: AbortSignal.timeout(10_000),
        });
        await res.body?.cancel().catch(() => {});
        if (!res.ok) throw new Error(`webhook receiver answered ${res.status}`);
        logger.info({ event: job.data.event, uploadId: job.data.uploadId, run: job.data.run, status: res.status }, 'webhook delivered');
      },
      { connection, prefix, concurrency: 4 },
    );
    worker.on('failed', (job, err) => logger.warn({ err: err.message, event: job?.data.event, uploadId: job?.data.uploadId, attempt: job?.attemptsMade }, 'webhook delivery failed'));
    worker.on('error', (err) => logger.warn({ err: err.message }, 'webhook worker error'));
    return worker;
  }

  async close(): Promise<void> {
    await this.queue?.close();
  }
}
