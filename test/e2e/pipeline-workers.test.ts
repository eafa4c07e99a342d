// The pipeline with separate `server` and `worker` processes (real Redis, S3, clamd, ffmpeg,
// sharp), the transcode queue in its own worker process (WORKER_QUEUES): bad media fails with a
// reason and the worker stays healthy; a transcode worker killed with kill -9 in the middle of a
// transcode is replaced and the job finishes exactly once; a forced reprocess stops the ffmpeg of
// the run it replaces, in the transcode worker process, and cannot be repeated at will.
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { createTestBucket, freePort, tuskEnvForTests } from '../helpers/services.js';
import { startTusk, type TuskProcess } from '../helpers/tusk-process.js';
import { createUpload, sleep } from '../helpers/tus.js';
import { isTerminal, waitForStatus, type StatusDoc as Doc } from '../helpers/pipeline.js';

const exec = promisify(execFile);



let env: Record<string, string>;
let server: TuskProcess;
let worker: TuskProcess;
let transcoder: TuskProcess;
let dir: string;
let workDir: string;
let receiver: http.Server;
const deliveries: Array<{ event: string; upload_id: string; run: number }> = [];

async function ffmpeg(args: string[]): Promise<void> {
  await exec('ffmpeg', ['-hide_banner', '-nostdin', '-loglevel', 'error', '-y', ...args], { maxBuffer: 16 << 20 });
}

const ALL_BUT_TRANSCODE = 'process-upload,virus-scan,extract-metadata,thumbnail,finalize,webhook';

async function startWorker(queues: string): Promise<TuskProcess> {
  const port = String(await freePort());
  return startTusk({ mode: 'worker', env: { ...env, PORT: port, WORKER_HEALTH_PORT: port, WORKER_QUEUES: queues } });
}

const waitFor = (id: string, done: (d: Doc) => boolean, timeoutMs?: number) =>
  waitForStatus(server.url, id, done, {
    timeoutMs,
    context: () => `--- worker output ---\n${worker.output().slice(-4000)}\n--- transcode worker output ---\n${transcoder.output().slice(-4000)}`,
  });
const terminal = isTerminal;

async function upload(file: string, filename: string, filetype: string): Promise<string> {
  const body = await fs.readFile(file);
  const created = await createUpload(server.url, { length: body.length, body, metadata: { filename, filetype } });
  expect(created.status).toBe(201);
  return created.id;
}

/** A valid PNG of side x side 1-bit pixels (900 MP) in ~110 KB: a decompression bomb. */
async function pngBomb(file: string, side = 30_000): Promise<void> {
  const table = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc32 = (buf: Buffer) => {
    let c = 0xffffffff;
    for (const b of buf) c = table[(c ^ b) & 0xff]! ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const head = Buffer.alloc(4);
    head.writeUInt32BE(data.length);
    const tail = Buffer.alloc(4);
    tail.writeUInt32BE(crc32(body));
    return Buffer.concat([head, body, tail]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(side, 0);
  ihdr.writeUInt32BE(side, 4);
  ihdr[8] = 1;
  const idat = zlib.deflateSync(Buffer.alloc((1 + Math.ceil(side / 8)) * side), { level: 9 });
  await fs.writeFile(file, Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', idat), chunk('IEND', Buffer.alloc(0))]));
}

/**
 * Pids of the transcode ffmpeg processes of this file's workers; of one upload (and run) when
 * given: their input is in WORK_DIR/tusk-transcode-<id>.r<run>-XXXXXX.
 */
async function transcodeProcesses(id?: string, run?: number): Promise<number[]> {
  const pattern = `${workDir}/tusk-transcode-${id === undefined ? '' : `${id}\\.r${run === undefined ? '[0-9]+' : run}-`}`;
  const { stdout } = await exec('pgrep', ['-f', pattern]).catch(() => ({ stdout: '' }));
  return stdout.split('\n').filter(Boolean).map(Number);
}

async function eventually(condition: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await condition()) return true;
    await sleep(200);
  }
  return condition();
}

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tusk-workers-'));
  workDir = path.join(dir, 'work');
  receiver = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      deliveries.push({ event: body.event, upload_id: body.upload_id, run: body.run });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const bucket = await createTestBucket('pipeline-workers');
  env = {
    ...tuskEnvForTests(bucket),
    CLAMD_SOCKET: process.env.TEST_CLAMD_SOCKET ?? '',
    WEBHOOK_URL: `http://127.0.0.1:${(receiver.address() as { port: number }).port}/hook`,
    WEBHOOK_SECRET: 'secret',
    STEP_BACKOFF: '500ms',
    // A killed worker's transcode lock expires after 4 s; stalled jobs are looked for as often.
    TRANSCODE_LOCK_DURATION: '4s',
    // Temporary files (and so the ffmpeg command lines) of this file's workers only.
    WORK_DIR: workDir,
    // Two transcodes at once per worker: a superseded run's ffmpeg could keep running next to the new one.
    CONCURRENCY_TRANSCODE: '2',
    REPROCESS_FORCE_AFTER: '3s',
  };
  server = await startTusk({ mode: 'server', env });
  worker = await startWorker(ALL_BUT_TRANSCODE);
  transcoder = await startWorker('transcode');
});

afterAll(async () => {
  await worker?.kill();
  await transcoder?.kill();
  await server?.kill();
  await new Promise((resolve) => receiver?.close(resolve));
  if (dir) await fs.rm(dir, { recursive: true, force: true });
});

test('a PNG bomb and a truncated MP4 fail with a reason; the worker stays healthy and processes the next upload', async () => {
  const bomb = path.join(dir, 'bomb.png');
  await pngBomb(bomb);
  const clip = path.join(dir, 'clip.mp4');
  await ffmpeg(['-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=25', '-t', '3', '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', clip]);
  const truncated = path.join(dir, 'truncated.mp4');
  const full = await fs.readFile(clip);
  await fs.writeFile(truncated, full.subarray(0, Math.floor(full.length / 2)));

  const [bombId, truncId] = [await upload(bomb, 'bomb.png', 'image/png'), await upload(truncated, 'cut.mp4', 'video/mp4')];
  const [bombDoc, truncDoc] = await Promise.all([waitFor(bombId, terminal), waitFor(truncId, terminal)]);
  expect(bombDoc.status).toBe('failed');
  expect(bombDoc.reason?.code).toBe('pixel_limit');
  expect(bombDoc.tasks.metadata.error).toEqual(expect.any(String));
  expect(truncDoc.status).toBe('failed');
  expect(truncDoc.reason?.code).toBe('truncated');
  expect(truncDoc.reason?.message).toMatch(/truncated|corrupt/i);

  const ok = await upload(clip, 'ok.mp4', 'video/mp4');
  // SSE on the server process sees what the worker processes publish (Redis pub/sub).
  const statuses: string[] = [];
  const sse = await fetch(`${server.url}/api/uploads/${ok}/events`);
  const reader = (async () => {
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const chunk of sse.body as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      let cut;
      while ((cut = buffer.indexOf('\n\n')) >= 0) {
        const data = buffer.slice(0, cut).split('\n').find((l) => l.startsWith('data: '));
        buffer = buffer.slice(cut + 2);
        if (data) statuses.push((JSON.parse(data.slice(6)) as Doc).status);
      }
      if (statuses.includes('ready')) return;
    }
  })().catch(() => {});
  const okDoc = await waitFor(ok, terminal);
  expect(okDoc.status).toBe('ready');
  await Promise.race([reader, sleep(5000)]);
  await sse.body?.cancel().catch(() => {});
  expect(statuses).toContain('processing');
  expect(statuses[statuses.length - 1]).toBe('ready');
  expect(worker.output()).not.toMatch(/FATAL|heap out of memory/i);
  expect(transcoder.output()).not.toMatch(/FATAL|heap out of memory/i);
  expect(worker.output()).not.toMatch(/"queues":\[[^\]]*"transcode"/);
  const health = await fetch(`${worker.url}/healthz`);
  expect(health.status).toBe(200);
  await sleep(500);
  expect(deliveries.filter((d) => d.upload_id === bombId && d.event === 'upload.failed')).toHaveLength(1);
}, 180_000);

test('transcode worker kill -9 mid-transcode: another one takes the job over and it finishes once', async () => {
  const clip = path.join(dir, 'long.mp4');
  await ffmpeg([
    '-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440',
    '-t', '12', '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', clip,
  ]);
  const id = await upload(clip, 'long.mp4', 'video/mp4');
  await waitFor(id, (d) => d.tasks.transcode.status === 'running' && (d.tasks.transcode.progress ?? 0) > 0, 60_000);
  const killed = await transcoder.kill('SIGKILL');
  expect(killed.signal).toBe('SIGKILL');
  // Its ffmpeg outlives it (its own process group; it would stop itself after its -timelimit of
  // CPU time): end it here so that the test leaves nothing running.
  for (const pid of await transcodeProcesses(id)) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
  transcoder = await startWorker('transcode');
  const final = await waitFor(id, terminal, 120_000);
  expect(final.status).toBe('ready');
  expect(final.outputs.hls?.master_url).toMatch(/master\.m3u8/);
  await sleep(1500); // any duplicate webhook would arrive by now
  expect(deliveries.filter((d) => d.upload_id === id && d.event === 'upload.ready')).toHaveLength(1);
  expect(deliveries.filter((d) => d.upload_id === id && d.event === 'upload.finished')).toHaveLength(1);
}, 240_000);

test('reprocess?force=1 during a transcode stops the replaced run\'s ffmpeg in the transcode worker; forcing again at once is refused; the latest run wins', async () => {
  const clip = path.join(dir, 'forty.mp4');
  await ffmpeg([
    '-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440',
    '-t', '40', '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', clip,
  ]);
  const id = await upload(clip, 'forty.mp4', 'video/mp4');
  const force = () => fetch(`${server.url}/api/uploads/${id}/reprocess?force=1`, { method: 'POST' });
  /** Forces a new run, waiting as long as the 429 answers say (the run must be REPROCESS_FORCE_AFTER old). */
  const forceWhenAllowed = async () => {
    for (let attempt = 0; attempt < 10; attempt++) {
      const res = await force();
      if (res.status !== 429) return res;
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('rate_limited');
      await sleep(Number(res.headers.get('retry-after')) * 1000);
    }
    throw new Error('force was refused 10 times');
  };
  const transcoding = (run: number) => (d: Doc) => d.run === run && d.tasks.transcode.status === 'running' && (d.tasks.transcode.progress ?? 0) > 0;

  await waitFor(id, transcoding(1), 90_000);
  expect((await transcodeProcesses()).length).toBe(1);
  const second = await forceWhenAllowed();
  const forcedAt = Date.now();
  expect(second.status).toBe(202);
  expect(((await second.json()) as Doc).run).toBe(2);
  // At once again: refused with a code and Retry-After; no third run starts.
  const tooSoon = await force();
  expect(tooSoon.status).toBe(429);
  expect(Number(tooSoon.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
  expect(((await tooSoon.json()) as { error: { code: string; message: string } }).error).toEqual({
    code: 'rate_limited',
    message: expect.stringMatching(/force=1/),
    retry_after: Number(tooSoon.headers.get('retry-after')),
  });
  // Run 1's ffmpeg is stopped by the worker running it, within seconds.
  expect(await eventually(async () => (await transcodeProcesses(id, 1)).length === 0, 15_000)).toBe(true);
  process.stderr.write(`\n[measure] forced reprocess -> the replaced run's ffmpeg gone: ${Date.now() - forcedAt} ms\n`);

  await waitFor(id, transcoding(2), 90_000);
  const third = await forceWhenAllowed();
  expect(third.status).toBe(202);
  expect(((await third.json()) as Doc).run).toBe(3);
  expect(await eventually(async () => (await transcodeProcesses(id, 2)).length === 0, 15_000)).toBe(true);

  // Until run 3 ends: never more than one transcode ffmpeg for the upload, none of an earlier run.
  let most = 0;
  const final = await waitFor(
    id,
    (d) => {
      void transcodeProcesses(id).then((pids) => (most = Math.max(most, pids.length)));
      return d.run === 3 && terminal(d);
    },
    180_000,
  );
  expect(most).toBeLessThanOrEqual(1);
  expect(await transcodeProcesses(id)).toEqual([]);
  expect(final.status).toBe('ready');
  expect(final.tasks.transcode).toMatchObject({ status: 'done', progress: 100 });
  expect(final.tasks.transcode.error).toBeUndefined();
  expect(final.outputs.hls?.master_url).toMatch(/master\.m3u8/);
  expect(final.outputs.mp4_url).toMatch(/\.mp4/);
  await sleep(1500); // a late webhook of an earlier run would arrive by now
  expect(deliveries.filter((d) => d.upload_id === id && d.event === 'upload.ready').map((d) => d.run)).toEqual([3]);
}, 300_000);
