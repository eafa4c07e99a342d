// How the command-line client writes sizes, rates, durations and a status document for people.
import { TASKS, type TaskName, type TaskState } from '../lib/upload-status.js';
import type { StatusDocument } from './status-api.js';

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function formatBytes(n: number): string {
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${UNITS[unit]}`;
}

export function formatRate(bytesPerSecond: number | undefined): string {
  return bytesPerSecond === undefined ? '-- /s' : `${formatBytes(Math.round(bytesPerSecond))}/s`;
}

export function formatDuration(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds)) return '--';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/**
 * Transfer rate over the last few seconds (not since the start: a resumed upload or a network
 * that got slower would otherwise show a rate, and an ETA, that no longer hold).
 */
export class RateMeter {
  private samples: Array<{ at: number; bytes: number }> = [];
  constructor(private readonly windowMs = 5000) {}

  add(bytes: number, at = Date.now()): void {
    const last = this.samples[this.samples.length - 1];
    if (last && bytes < last.bytes) this.samples = []; // the server had less than was sent: start over
    this.samples.push({ at, bytes });
    while (this.samples.length > 2 && at - (this.samples[1] as { at: number }).at >= this.windowMs) this.samples.shift();
  }

  /** Bytes per second, or undefined while there is less than half a second to judge by. */
  rate(): number | undefined {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (!first || !last || last.at - first.at < 500) return undefined;
    return ((last.bytes - first.bytes) * 1000) / (last.at - first.at);
  }

  /** Seconds until `total`, at the current rate. */
  eta(total: number): number | undefined {
    const rate = this.rate();
    const last = this.samples[this.samples.length - 1];
    if (!rate || !last) return undefined;
    return (total - last.bytes) / rate;
  }
}

const TASK_LABELS: Record<TaskName, string> = { virus_scan: 'virus scan', metadata: 'metadata', thumbnail: 'thumbnail', transcode: 'transcode' };

function taskWords(task: TaskState): string {
  if (task.status === 'running' && task.progress !== undefined) return `running ${Math.round(task.progress)}%`;
  return task.status;
}

/** One line: "processing: virus scan done, metadata done, thumbnail running 33%, transcode pending". */
export function summaryLine(doc: StatusDocument): string {
  const tasks = TASKS.map((name) => `${TASK_LABELS[name]} ${taskWords(doc.tasks[name])}`).join(', ');
  const reason = doc.reason ? ` (${doc.reason.code})` : '';
  return `${doc.status}${reason}: ${tasks}`;
}

/** The status document for people: status, tasks with progress, reason, outputs. */
export function describeDocument(doc: StatusDocument): string {
  const lines: string[] = [];
  const about = [doc.filename, doc.size !== null ? formatBytes(doc.size) : undefined, doc.content_type].filter(Boolean).join(', ');
  lines.push(`Upload   ${doc.upload_id}${about ? `  (${about})` : ''}`);
  lines.push(`Status   ${doc.status}${doc.run > 1 ? ` (run ${doc.run})` : ''}`);
  if (doc.reason) {
    lines.push(`Reason   ${doc.reason.code}: ${doc.reason.message}${doc.reason.signature ? ` [${doc.reason.signature}]` : ''}`);
  }
  lines.push(`Created  ${doc.created_at}`, `Updated  ${doc.updated_at}`, 'Tasks');
  for (const name of TASKS) {
    const task = doc.tasks[name];
    const error = task.error ? `  - ${task.error}` : '';
    lines.push(`  ${TASK_LABELS[name].padEnd(11)} ${taskWords(task)}${error}`);
  }
  const outputs = doc.outputs as {
    thumbnails?: Array<{ width: number; format: string; url: string }>;
    hls?: { master_url: string };
    mp4_url?: string;
    metadata?: Record<string, unknown>;
  };
  const out: string[] = [];
  for (const t of outputs.thumbnails ?? []) out.push(`  thumbnail ${`${t.width}px ${t.format}`.padEnd(12)} ${t.url}`);
  if (outputs.hls) out.push(`  HLS       ${''.padEnd(12)} ${outputs.hls.master_url}`);
  if (outputs.mp4_url) out.push(`  MP4       ${''.padEnd(12)} ${outputs.mp4_url}`);
  if (outputs.metadata) {
    const facts = Object.entries(outputs.metadata)
      .filter(([, v]) => v !== null && typeof v !== 'object')
      .map(([k, v]) => `${k}=${String(v)}`);
    if (facts.length) out.push(`  metadata  ${facts.join(' ')}`);
  }
  if (out.length) lines.push('Outputs', ...out);
  return lines.join('\n');
}
