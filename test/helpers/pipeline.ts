// The status document of GET /api/uploads/:id as the tests read it, and polling it until a
// condition holds (one place for the pipeline suites).
import { sleep } from './tus.js';

export interface StatusDoc {
  upload_id: string;
  status: string;
  run: number;
  reason?: { code: string; message: string; signature?: string };
  tasks: Record<'virus_scan' | 'metadata' | 'thumbnail' | 'transcode', { status: string; progress?: number; error?: string }>;
  outputs: {
    thumbnails: Array<{ width: number; format: string; url: string }>;
    hls?: { master_url: string };
    mp4_url?: string;
    metadata?: Record<string, unknown>;
  };
}

export const isTerminal = (d: StatusDoc): boolean => ['ready', 'rejected', 'failed'].includes(d.status);

export async function fetchStatus(baseUrl: string, id: string): Promise<{ status: number; body: StatusDoc }> {
  const res = await fetch(`${baseUrl}/api/uploads/${id}`);
  return { status: res.status, body: (await res.json()) as StatusDoc };
}

/** Polls the status document every 200 ms until `done`; on timeout the error shows it and `context()` (process output). */
export async function waitForStatus(
  baseUrl: string,
  id: string,
  done: (d: StatusDoc) => boolean,
  options: { timeoutMs?: number; context?: () => string } = {},
): Promise<StatusDoc> {
  const deadline = Date.now() + (options.timeoutMs ?? 90_000);
  let last: StatusDoc | undefined;
  while (Date.now() < deadline) {
    last = (await fetchStatus(baseUrl, id)).body;
    if (done(last)) return last;
    await sleep(200);
  }
  throw new Error(`timed out; last document: ${JSON.stringify(last, null, 2)}\n${options.context?.() ?? ''}`);
}
