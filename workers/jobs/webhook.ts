// Outgoing webhooks: POST WEBHOOK_URL with a JSON body { event, upload_id, status, run, ... } and
// `X-Tusk-Signature: sha256=<hex HMAC-SHA256 of the raw body with WEBHOOK_SECRET>`. Delivered from
// the BullMQ `webhook` queue (attempts with exponential backoff). The job id is
// `<event>.<uploadId>.r<run>` (webhookJobId), so each event is queued once per pipeline run whoever
// asks twice (a retried step, a worker killed after publishing); the body is fixed when the event
// is queued, so every retry sends (and signs) the same bytes.
import { createHmac } from 'node:crypto';
import { Queue, type ConnectionOptions } from 'bullmq';
import type { PipelineConfig } from '../../config/index.js';
import { WEBHOOK_JOB_OPTIONS, WEBHOOK_QUEUE, webhookJobId, type WebhookJob } from '../../lib/queues.js';
import type { PipelineJob, WebhookEvents } from './context.js';

/** A receiver that does not answer within this is retried like one that failed. */
const DELIVERY_TIMEOUT_MS = 10_000;

export function signBody(body: string, secret: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** Queues the events of a run; without WEBHOOK_URL it queues nothing. */
export class Webhooks implements WebhookEvents {
  private readonly queue: Queue<WebhookJob> | undefined;
  constructor(config: PipelineConfig, connection: ConnectionOptions, prefix: string) {
    if (config.webhook) this.queue = new Queue<WebhookJob>(WEBHOOK_QUEUE, { connection, prefix });
  }

  /** Queues `event` for this run (no-op without WEBHOOK_URL, or when already queued for the run). */
  async send(event: WebhookJob['event'], uploadId: string, run: number, payload: Record<string, unknown>): Promise<void> {
    if (!this.queue) return;
    const body = JSON.stringify({ event, upload_id: uploadId, run, occurred_at: new Date().toISOString(), ...payload });
    await this.queue.add(event, { event, uploadId, run, body }, { ...WEBHOOK_JOB_OPTIONS, jobId: webhookJobId(event, uploadId, run) });
  }

  async close(): Promise<void> {
    await this.queue?.close();
  }
}

/** Delivers one event: any answer but 2xx, or none within 10 s, fails the attempt. */
export const webhookJob: PipelineJob<WebhookJob> = {
  queue: WEBHOOK_QUEUE,
  worker: () => ({ concurrency: 4 }),
  handler: ({ config, log, metrics }) => {
    const hook = config.pipeline.webhook;
    if (!hook) return undefined;
    return async (job) => {
      const { event, uploadId, run, body } = job.data;
      try {
        const res = await fetch(hook.url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'user-agent': 'tusk-webhooks',
            'x-tusk-event': event,
            'x-tusk-delivery': job.id ?? '',
            'x-tusk-signature': signBody(body, hook.secret ?? ''),
          },
          body,
          signal: AbortSignal.timeout(DELIVERY_TIMEOUT_MS),
        });
        await res.body?.cancel().catch(() => {});
        if (!res.ok) throw new Error(`webhook receiver answered ${res.status}`);
        log.info({ event, uploadId, run, status: res.status }, 'webhook delivered');
        metrics.webhookDeliveries.inc({ event, outcome: 'delivered' });
      } catch (err) {
        log.warn({ err: (err as Error).message, event, uploadId, attempt: job.attemptsMade + 1 }, 'webhook delivery failed');
        metrics.webhookDeliveries.inc({ event, outcome: 'failed' });
        throw err;
      }
    };
  },
};
