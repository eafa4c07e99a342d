// Peak RSS of a real tusk server process (S3 store) while it receives uploads: memory must not
// grow with file size. Each scenario runs against a fresh `node dist/tusk.js server` so its
// VmHWM (the kernel's peak resident set) belongs to that scenario alone.
//
//   npm run build && bash bench/with-services.sh node dist/bench/memory.js
//   BENCH_SCENARIOS=10MiB,1GiB-single npm run bench:memory   (with BENCH_* env of your own S3/Redis)
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tus from 'tus-js-client';

const MiB = 1024 * 1024;
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const workDir = path.join(repoRoot, '.tmp', 'bench-memory');

const env = {
  endpoint: required('BENCH_S3_ENDPOINT'),
  accessKeyId: required('BENCH_S3_ACCESS_KEY_ID'),
  secretAccessKey: required('BENCH_S3_SECRET_ACCESS_KEY'),
  bucket: required('BENCH_S3_BUCKET'),
  region: process.env.BENCH_S3_REGION ?? 'us-east-1',
  redisUrl: required('BENCH_REDIS_URL'),
};

interface Scenario {
  name: string;
  fileMiB: number;
  concurrent: number;
  /** tus-js-client chunkSize; Infinity = the whole file in one PATCH. */
  chunkMiB: number;
}

const scenarios: Scenario[] = [
  { name: '10MiB', fileMiB: 10, concurrent: 1, chunkMiB: Infinity },
  { name: '1GiB-single', fileMiB: 1024, concurrent: 1, chunkMiB: Infinity },
  { name: '1GiB-8MiB-chunks', fileMiB: 1024, concurrent: 1, chunkMiB: 8 },
  { name: '50x20MiB', fileMiB: 20, concurrent: 50, chunkMiB: Infinity },
];

function required(name: string): string {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is not set; run through bench/with-services.sh or set the BENCH_* variables`);
    process.exit(2);
  }
  return value;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const address = srv.address();
      srv.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

async function randomFile(mib: number): Promise<string> {
  const file = path.join(workDir, `random-${mib}MiB.bin`);
  if (fs.existsSync(file) && fs.statSync(file).size === mib * MiB) return file;
  const out = fs.createWriteStream(file);
  for (let i = 0; i < mib; i++) {
    if (!out.write(crypto.randomBytes(MiB))) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
  return file;
}

/** Resident set of a process from /proc (kB): current (VmRSS) and peak (VmHWM). */
function rssOf(pid: number): { rssMiB: number; peakMiB: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN);
  return { rssMiB: kb('VmRSS') / 1024, peakMiB: kb('VmHWM') / 1024 };
}

async function startTusk(port: number, prefix: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [path.join(repoRoot, 'dist', 'tusk.js'), 'server'], {
    cwd: repoRoot,
    env: {
      PATH: process.env.PATH,
      HOST: '127.0.0.1',
      PORT: String(port),
      STORAGE: 's3',
      S3_ENDPOINT: env.endpoint,
      S3_BUCKET: env.bucket,
      S3_REGION: env.region,
      S3_ACCESS_KEY_ID: env.accessKeyId,
      S3_SECRET_ACCESS_KEY: env.secretAccessKey,
      REDIS_URL: env.redisUrl,
      REDIS_PREFIX: prefix,
      LOG_LEVEL: 'warn',
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/readyz`)).ok) return child;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error('tusk did not become ready within 20 s');
    await new Promise((r) => setTimeout(r, 100));
  }
}

function upload(file: string, endpoint: string, chunkMiB: number): Promise<void> {
  const size = fs.statSync(file).size;
  return new Promise((resolve, reject) => {
    const u = new tus.Upload(fs.createReadStream(file), {
      endpoint,
      uploadSize: size,
      chunkSize: chunkMiB === Infinity ? Infinity : chunkMiB * MiB,
      retryDelays: [],
      metadata: { filename: path.basename(file) },
      onError: reject,
      onSuccess: () => resolve(),
    });
    u.start();
  });
}

async function run(s: Scenario): Promise<Record<string, string | number>> {
  const file = await randomFile(s.fileMiB);
  const port = await freePort();
  const tusk = await startTusk(port, `bench-mem-${crypto.randomBytes(4).toString('hex')}:`);
  const idle = rssOf(tusk.pid!);
  let sampledPeak = 0;
  const sampler = setInterval(() => (sampledPeak = Math.max(sampledPeak, rssOf(tusk.pid!).rssMiB)), 100);
  const started = Date.now();
  try {
    await Promise.all(Array.from({ length: s.concurrent }, () => upload(file, `http://127.0.0.1:${port}/files/`, s.chunkMiB)));
  } finally {
    clearInterval(sampler);
  }
  const seconds = (Date.now() - started) / 1000;
  const after = rssOf(tusk.pid!);
  tusk.kill('SIGTERM');
  await new Promise((r) => tusk.once('exit', r));
  const totalMiB = s.fileMiB * s.concurrent;
  return {
    scenario: s.name,
    'uploaded MiB': totalMiB,
    'idle RSS MiB': idle.rssMiB.toFixed(0),
    'peak RSS MiB (VmHWM)': after.peakMiB.toFixed(0),
    'MiB/s': (totalMiB / seconds).toFixed(0),
  };
}

async function main(): Promise<void> {
  fs.mkdirSync(workDir, { recursive: true });
  const wanted = process.env.BENCH_SCENARIOS?.split(',').map((s) => s.trim());
  const rows: Array<Record<string, string | number>> = [];
  for (const scenario of scenarios.filter((s) => !wanted || wanted.includes(s.name))) {
    const row = await run(scenario);
    console.log(JSON.stringify(row));
    rows.push(row);
  }
  const headers = Object.keys(rows[0] ?? {});
  console.log(`\n| ${headers.join(' | ')} |\n|${headers.map(() => '---').join('|')}|`);
  for (const row of rows) console.log(`| ${headers.map((h) => row[h]).join(' | ')} |`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
