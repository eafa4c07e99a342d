// The processing pipeline end to end: a real `node dist/tusk.js server` and a separate
// `node dist/tusk.js worker` on S3 + Redis (and a clamd of our own, test/infra/clamd.sh, unless
// BENCH_SCAN=off: then SCAN_REQUIRED=false and the table says so). For a 30 s 1080p30 H.264+AAC
// video and a 48 MP JPEG (both generated with ffmpeg lavfi under .tmp/bench), uploaded with tus:
//   - time from the upload finished (tus-js-client onSuccess) to the first thumbnail in the status
//     document, and to `ready` (GET /api/uploads/:id polled every 100 ms);
//   - the worker's peak RSS during each step: every 100 ms VmRSS of the worker process and the sum
//     over its descendants (ffmpeg), each sample attributed to every step the status document
//     shows as `running` at that moment (thumbnail and transcode overlap: they run in parallel);
// then the transcode by hand on the same video: the step's own function (transcode(), i.e. the
// exact ffmpeg command line the worker runs), the "default" ladder of the toolchain notes (one
// ffmpeg, 3 rungs, veryfast, AAC, 6 s segments, master playlist; no bitrate caps, no forced key
// frames) and a single 720p MP4 (veryfast, CRF 23), wall times side by side.
//
//   npm run build && bash bench/with-services.sh node dist/bench/pipeline.js
//   BENCH_RUNS (3), BENCH_SCAN=off, BENCH_HAND=0 (skip the by-hand part), BENCH_MEDIA=video,image
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import * as tus from 'tus-js-client';
import { ffprobe } from '../workers/media/ffmpeg.js';
import { transcode } from '../workers/steps/transcode.js';
import { freePort, markdownTable, median, repoRoot, spawnTusk, startTuskServer, stopProcess } from './lib.js';

const execFileP = promisify(execFile);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const SCAN = process.env.BENCH_SCAN !== 'off';
const HAND = process.env.BENCH_HAND !== '0';
const MEDIA = (process.env.BENCH_MEDIA ?? 'video,image').split(',').map((s) => s.trim());
const STEPS = ['virus_scan', 'metadata', 'thumbnail', 'transcode'] as const;
type Step = (typeof STEPS)[number];

const benchDir = path.join(repoRoot, '.tmp', 'bench');

async function ffmpeg(args: string[]): Promise<number> {
  const started = Date.now();
  await execFileP('ffmpeg', ['-hide_banner', '-nostdin', '-y', '-loglevel', 'error', ...args], { maxBuffer: 16 * 1024 * 1024 });
  return (Date.now() - started) / 1000;
}

async function media(): Promise<{ video: string; image: string }> {
  fs.mkdirSync(benchDir, { recursive: true });
  const video = path.join(benchDir, 'pipeline-30s-1080p30.mp4');
  const image = path.join(benchDir, 'pipeline-48mp.jpg');
  if (!fs.existsSync(video)) {
    await ffmpeg(['-f', 'lavfi', '-i', 'testsrc2=size=1920x1080:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440', '-t', '30',
      '-c:v', 'libx264', '-preset', 'veryfast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', `${video}.tmp.mp4`]);
    fs.renameSync(`${video}.tmp.mp4`, video);
  }
  if (!fs.existsSync(image)) {
    await ffmpeg(['-f', 'lavfi', '-i', 'testsrc2=size=8000x6000:rate=1', '-frames:v', '1', '-q:v', '3', `${image}.tmp.jpg`]);
    fs.renameSync(`${image}.tmp.jpg`, image);
  }
  return { video, image };
}

/**
 * A copy of `file` whose bytes differ from every other run's (clamd caches verdicts by hash and a
 * second scan of the same bytes is instant): a JPEG gets a COM segment after SOI, an MP4 a
 * `comment` tag (ffmpeg -c copy). Same pixels, same streams.
 */
async function uniqueCopy(file: string, dir: string): Promise<string> {
  const tag = `tusk-bench ${crypto.randomUUID()}`;
  const out = path.join(dir, `${crypto.randomBytes(4).toString('hex')}-${path.basename(file)}`);
  if (file.endsWith('.jpg')) {
    const src = fs.readFileSync(file);
    const com = Buffer.alloc(4);
    com.writeUInt16BE(0xfffe, 0);
    com.writeUInt16BE(tag.length + 2, 2);
    fs.writeFileSync(out, Buffer.concat([src.subarray(0, 2), com, Buffer.from(tag, 'latin1'), src.subarray(2)]));
  } else {
    await ffmpeg(['-i', file, '-map', '0', '-c', 'copy', '-metadata', `comment=${tag}`, '-movflags', '+faststart', out]);
  }
  return out;
}

// ---- RSS sampling -------------------------------------------------------------------------------

function readKb(pid: number, field: string): number {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0);
  } catch {
    return 0; // exited between listing and reading
  }
}

function descendants(pid: number): number[] {
  const out: number[] = [];
  const stack = [pid];
  while (stack.length) {
    const p = stack.pop()!;
    let tasks: string[] = [];
    try {
      tasks = fs.readdirSync(`/proc/${p}/task`);
    } catch {
      continue;
    }
    for (const t of tasks) {
      let kids = '';
      try {
        kids = fs.readFileSync(`/proc/${p}/task/${t}/children`, 'utf8');
      } catch {
        continue;
      }
      for (const k of kids.split(' ').filter(Boolean).map(Number)) {
        out.push(k);
        stack.push(k);
      }
    }
  }
  return out;
}

/** MiB: the worker's own VmRSS and the sum over its descendants. */
function sampleWorker(pid: number): { self: number; children: number } {
  const children = descendants(pid).reduce((sum, p) => sum + readKb(p, 'VmRSS'), 0);
  return { self: readKb(pid, 'VmRSS') / 1024, children: children / 1024 };
}

// ---- one upload through the pipeline ------------------------------------------------------------

interface TaskDoc {
  status: string;
  started_at?: string;
  finished_at?: string;
}
interface StatusDoc {
  status: string;
  reason?: unknown;
  tasks: Record<Step, TaskDoc>;
  outputs: { thumbnails?: unknown[] };
}

interface RunResult {
  uploadSec: number;
  firstThumbSec: number;
  readySec: number;
  /** Per step: peak worker VmRSS, peak children sum, peak of both at one sample (MiB). */
  peaks: Record<Step, { self: number; children: number; total: number; samples: number }>;
  /** started_at -> finished_at of each task in the record (s). */
  taskSec: Record<Step, number>;
}

function upload(file: string, endpoint: string, filetype: string): Promise<string> {
  const size = fs.statSync(file).size;
  return new Promise((resolve, reject) => {
    const u = new tus.Upload(fs.createReadStream(file), {
      endpoint,
      uploadSize: size,
      chunkSize: 64 * 1024 * 1024,
      retryDelays: [],
      metadata: { filename: path.basename(file), filetype },
      onError: reject,
      onSuccess: () => resolve(u.url!.split('/').pop()!),
    });
    u.start();
  });
}

async function throughPipeline(base: string, workerPid: number, file: string, filetype: string): Promise<RunResult> {
  const t0 = Date.now();
  const id = await upload(file, `${base}/files/`, filetype);
  const finished = Date.now();
  const peaks = Object.fromEntries(STEPS.map((s) => [s, { self: 0, children: 0, total: 0, samples: 0 }])) as RunResult['peaks'];
  const seen: Partial<Record<Step, { from: number; to?: number }>> = {};
  let firstThumb: number | undefined;
  let doc: StatusDoc | undefined;
  const deadline = finished + 15 * 60_000;
  for (;;) {
    const tick = Date.now();
    const rss = sampleWorker(workerPid);
    const res = await fetch(`${base}/api/uploads/${id}`);
    if (!res.ok) throw new Error(`GET /api/uploads/${id}: ${res.status} ${await res.text()}`);
    doc = (await res.json()) as StatusDoc;
    const now = Date.now();
    for (const step of STEPS) {
      const st = doc.tasks[step]?.status;
      if (st === 'running') seen[step] ??= { from: now };
      else if (seen[step] && seen[step].to === undefined && st !== 'pending') seen[step].to = now;
      if (st !== 'running') continue;
      const p = peaks[step];
      p.self = Math.max(p.self, rss.self);
      p.children = Math.max(p.children, rss.children);
      p.total = Math.max(p.total, rss.self + rss.children);
      p.samples++;
    }
    if (firstThumb === undefined && (doc.outputs.thumbnails?.length ?? 0) > 0) firstThumb = now;
    if (doc.status === 'ready') break;
    if (['rejected', 'failed'].includes(doc.status)) throw new Error(`upload ${id} ${doc.status}: ${JSON.stringify(doc.reason ?? doc.tasks)}`);
    if (now > deadline) throw new Error(`upload ${id} not ready after 15 min: ${JSON.stringify(doc)}`);
    await new Promise((r) => setTimeout(r, Math.max(0, 100 - (Date.now() - tick))));
  }
  const ready = Date.now();
  const taskSec = Object.fromEntries(
    STEPS.map((s) => {
      const t = doc!.tasks[s];
      if (t?.started_at && t.finished_at) return [s, (Date.parse(t.finished_at) - Date.parse(t.started_at)) / 1000];
      // No times in the record for this task: as seen by the 100 ms polling.
      const w = seen[s];
      return [s, w ? ((w.to ?? ready) - w.from) / 1000 : NaN];
    }),
  ) as Record<Step, number>;
  return { uploadSec: (finished - t0) / 1000, firstThumbSec: ((firstThumb ?? ready) - finished) / 1000, readySec: (ready - finished) / 1000, peaks, taskSec };
}

// ---- the transcode by hand ----------------------------------------------------------------------

async function byHand(video: string): Promise<Record<string, number[]>> {
  const times: Record<string, number[]> = { step: [], defaultLadder: [], mp4: [] };
  const probe = await ffprobe(video, 30_000);
  for (let i = 0; i < RUNS; i++) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tusk-bench-hand-'));
    try {
      // The step's own function: the exact ffmpeg command line of the transcode step.
      const r = await transcode(video, probe, { outDir: path.join(dir, 'step'), timeoutMs: 30 * 60_000 });
      times.step!.push(r.elapsedMs / 1000);
      const out = path.join(dir, 'default');
      fs.mkdirSync(path.join(out, 'hls'), { recursive: true });
      times.defaultLadder!.push(await ffmpeg([
        '-i', video,
        '-filter_complex', '[0:v:0]split=3[a][b][c];[a]scale=-2:480[v0];[b]scale=-2:720[v1];[c]scale=-2:1080[v2]',
        '-map', '[v0]', '-map', '0:a:0', '-map', '[v1]', '-map', '0:a:0', '-map', '[v2]', '-map', '0:a:0',
        '-c:v', 'libx264', '-preset', 'veryfast', '-c:a', 'aac',
        '-f', 'hls', '-hls_time', '6', '-hls_playlist_type', 'vod', '-hls_segment_filename', path.join(out, 'hls', '%v', 'seg_%03d.ts'),
        '-master_pl_name', 'master.m3u8', '-var_stream_map', 'v:0,a:0 v:1,a:1 v:2,a:2', path.join(out, 'hls', '%v', 'index.m3u8'),
      ]));
      times.mp4!.push(await ffmpeg(['-i', video, '-vf', 'scale=-2:720', '-c:v', 'libx264', '-preset', 'veryfast', '-crf', '23', '-c:a', 'aac', '-movflags', '+faststart', path.join(dir, 'video.mp4')]));
      console.log(JSON.stringify({ byHand: i + 1, step: times.step!.at(-1), defaultLadder: times.defaultLadder!.at(-1), mp4: times.mp4!.at(-1), load: os.loadavg()[0]!.toFixed(1) }));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  return times;
}

// ---- main ---------------------------------------------------------------------------------------

async function startClamd(): Promise<{ env: Record<string, string>; stop: () => Promise<void> }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tusk-bench-clamd-'));
  const port = await freePort();
  const script = path.join(repoRoot, 'test', 'infra', 'clamd.sh');
  await execFileP('bash', [script, 'start'], { env: { ...process.env, DIR: dir, PORT: String(port), STREAM_MAX: '200M' } });
  return {
    env: { CLAMD_HOST: '127.0.0.1', CLAMD_PORT: String(port), SCAN_MAX_BYTES: '200MiB' },
    stop: async () => {
      await execFileP('bash', [script, 'stop'], { env: { ...process.env, DIR: dir } }).catch(() => undefined);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

const fmt = (values: number[], digits = 1) => (values.length ? median(values).toFixed(digits) : '-');

async function main(): Promise<void> {
  const { video, image } = await media();
  const clamd = SCAN ? await startClamd() : undefined;
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tusk-bench-work-'));
  const env: Record<string, string> = {
    REDIS_PREFIX: `bench-pipeline-${crypto.randomBytes(4).toString('hex')}:`,
    SCAN_REQUIRED: SCAN ? 'true' : 'false',
    WORK_DIR: workDir,
    ...(clamd?.env ?? {}),
  };
  const port = await freePort();
  const server = await startTuskServer(port, env);
  const worker = spawnTusk('worker', env);
  const base = `http://127.0.0.1:${port}`;
  const rows: Array<Record<string, string | number>> = [];
  const loads: number[] = [];
  try {
    await new Promise((r) => setTimeout(r, 2000)); // the worker connects its queues
    const cases = [
      { name: '30 s 1080p30 H.264+AAC video', key: 'video', file: video, type: 'video/mp4' },
      { name: '48 MP JPEG (8000x6000)', key: 'image', file: image, type: 'image/jpeg' },
    ].filter((c) => MEDIA.includes(c.key));
    const results = new Map<string, RunResult[]>(cases.map((c) => [c.name, []]));
    for (let i = 0; i < RUNS; i++) {
      for (const c of cases) {
        loads.push(os.loadavg()[0]!);
        const file = await uniqueCopy(c.file, workDir);
        const r = await throughPipeline(base, worker.pid!, file, c.type);
        fs.rmSync(file, { force: true });
        console.log(JSON.stringify({ run: i + 1, case: c.key, ...r, load: os.loadavg()[0]!.toFixed(1) }));
        results.get(c.name)!.push(r);
      }
    }
    for (const c of cases) {
      const rs = results.get(c.name)!;
      const peak = (s: Step, k: 'self' | 'children' | 'total') => fmt(rs.filter((r) => r.peaks[s].samples > 0).map((r) => r.peaks[s][k]), 0);
      rows.push({
        file: `${c.name}, ${(fs.statSync(c.file).size / 1024 / 1024).toFixed(1)} MiB`,
        'upload s': fmt(rs.map((r) => r.uploadSec)),
        'finished -> 1st thumbnail s': fmt(rs.map((r) => r.firstThumbSec)),
        'finished -> ready s': fmt(rs.map((r) => r.readySec)),
        'task s (scan/meta/thumb/transcode)': STEPS.map((s) => fmt(rs.map((r) => r.taskSec[s]).filter(Number.isFinite))).join(' / '),
        ...Object.fromEntries(STEPS.map((s) => [`peak RSS ${s} MiB (worker + children = total)`, `${peak(s, 'self')} + ${peak(s, 'children')} = ${peak(s, 'total')}`])),
      });
    }
  } finally {
    await stopProcess(worker);
    await stopProcess(server);
    await clamd?.stop();
    fs.rmSync(workDir, { recursive: true, force: true });
  }
  console.log(`\nscan: ${SCAN ? 'clamd (test/infra/clamd.sh, test signatures)' : 'SCAN_REQUIRED=false (virus_scan skipped)'}; runs: ${RUNS} (median); load average 1 min at each start: ${loads.map((l) => l.toFixed(1)).join(', ')}; ${os.cpus().length} cores`);
  console.log(`\n${markdownTable(rows)}`);

  if (HAND && MEDIA.includes('video')) {
    const before = os.loadavg()[0]!;
    const t = await byHand(video);
    const sum = t.defaultLadder!.map((v, i) => v + t.mp4![i]!);
    console.log(`\nby hand, same 30 s 1080p video, ${RUNS} run(s), median; load average 1 min ${before.toFixed(1)} -> ${os.loadavg()[0]!.toFixed(1)}`);
    console.log(`\n${markdownTable([
      { run: 'pipeline transcode task (started_at -> finished_at, above)', 'wall s': rows[0]?.['task s (scan/meta/thumb/transcode)']?.toString().split(' / ')[3] ?? '-' },
      { run: "transcode() by hand: the step's exact ffmpeg runs (ladder with bitrate caps and key frames every 6 s, then the MP4 remuxed from the 720p rung)", 'wall s': fmt(t.step!) },
      { run: 'default ladder by hand (3 rungs, veryfast, no caps, no forced key frames)', 'wall s': fmt(t.defaultLadder!) },
      { run: '720p MP4 by hand (veryfast, CRF 23)', 'wall s': fmt(t.mp4!) },
      { run: 'default ladder + MP4 by hand (sum)', 'wall s': fmt(sum) },
    ])}`);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
