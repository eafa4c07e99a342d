// Shared pieces of the benchmarks that drive a real tusk server process against the S3 and Redis
// named by BENCH_* variables (bench/with-services.sh provides them).
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const MiB = 1024 * 1024;
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

function required(name: string): string {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is not set; run through bench/with-services.sh or set the BENCH_* variables`);
    process.exit(2);
  }
  return value;
}

export const benchEnv = {
  endpoint: required('BENCH_S3_ENDPOINT'),
  accessKeyId: required('BENCH_S3_ACCESS_KEY_ID'),
  secretAccessKey: required('BENCH_S3_SECRET_ACCESS_KEY'),
  bucket: required('BENCH_S3_BUCKET'),
  region: process.env.BENCH_S3_REGION ?? 'us-east-1',
  redisUrl: required('BENCH_REDIS_URL'),
};

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const address = srv.address();
      srv.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** A file of random bytes under .tmp/bench (reused across runs when it already has the size). */
export async function randomFile(mib: number): Promise<string> {
  const dir = path.join(repoRoot, '.tmp', 'bench');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `random-${mib}MiB.bin`);
  if (fs.existsSync(file) && fs.statSync(file).size === mib * MiB) return file;
  const out = fs.createWriteStream(file);
  for (let i = 0; i < mib; i++) {
    if (!out.write(crypto.randomBytes(MiB))) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
  return file;
}

/** Resident set of a process from /proc, in MiB: current (VmRSS) and peak (VmHWM). */
export function rssOf(pid: number): { rssMiB: number; peakMiB: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN);
  return { rssMiB: kb('VmRSS') / 1024, peakMiB: kb('VmHWM') / 1024 };
}

/** Starts `node dist/tusk.js server` on S3 and waits until /readyz answers. */
export async function startTuskServer(port: number, extraEnv: Record<string, string> = {}): Promise<ChildProcess> {
  const child = spawnTusk('server', { PORT: String(port), ...extraEnv });
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

/**
 * Spawns `node dist/tusk.js <mode>` on the bench S3 and Redis (no readiness wait). Pass the same
 * REDIS_PREFIX to a server and a worker that must share queues and records.
 */
export function spawnTusk(mode: 'server' | 'worker', extraEnv: Record<string, string> = {}): ChildProcess {
  return spawn(process.execPath, [path.join(repoRoot, 'dist', 'tusk.js'), mode], {
    cwd: repoRoot,
    env: {
      PATH: process.env.PATH,
      HOST: '127.0.0.1',
      STORAGE: 's3',
      S3_ENDPOINT: benchEnv.endpoint,
      S3_BUCKET: benchEnv.bucket,
      S3_REGION: benchEnv.region,
      S3_ACCESS_KEY_ID: benchEnv.accessKeyId,
      S3_SECRET_ACCESS_KEY: benchEnv.secretAccessKey,
      REDIS_URL: benchEnv.redisUrl,
      REDIS_PREFIX: `bench-${crypto.randomBytes(4).toString('hex')}:`,
      LOG_LEVEL: 'warn',
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      ...extraEnv,
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
}

export async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function markdownTable(rows: Array<Record<string, string | number>>): string {
  const headers = Object.keys(rows[0] ?? {});
  return [`| ${headers.join(' | ')} |`, `|${headers.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${headers.map((h) => r[h]).join(' | ')} |`)].join('\n');
}
