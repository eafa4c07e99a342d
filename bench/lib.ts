// Shared pieces of the benchmarks that drive a real tusk server process against the S3 and Redis
// named by BENCH_* variables (bench/with-services.sh provides them).
import { execSync, spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { S3 } from '@aws-sdk/client-s3';

export const MiB = 1024 * 1024;
// The AWS SDK's notice that it will need a newer Node: noise in every bench's output.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
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
  /** The Ceph cluster's ceph.conf (with-services.sh): finds its daemons, runs its garbage collector. */
  cephConf: process.env.BENCH_CEPH_CONF,
};

/**
 * BENCH_TUSK_ENV: a JSON object of extra environment variables for every tusk server a bench
 * starts, e.g. '{"UPLOAD_ACK":"disk"}', so one bench measures each mode of the server.
 */
export function benchTuskEnv(): Record<string, string> {
  const raw = process.env.BENCH_TUSK_ENV;
  return raw ? envObject(parseJson(raw, 'BENCH_TUSK_ENV'), 'BENCH_TUSK_ENV') : {};
}

/**
 * BENCH_TUSK_MODES: more tusk servers in the same run, a JSON object of label -> environment,
 * e.g. '{"disk":{"UPLOAD_ACK":"disk"}}'; each mode's environment goes over BENCH_TUSK_ENV. The
 * throughput bench runs `tusk.<label>-<MiB>` cases against the mode's own server.
 */
export function benchTuskModes(): Record<string, Record<string, string>> {
  const raw = process.env.BENCH_TUSK_MODES;
  if (!raw) return {};
  const parsed = parseJson(raw, 'BENCH_TUSK_MODES');
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('BENCH_TUSK_MODES must be a JSON object');
  const modes: Record<string, Record<string, string>> = {};
  for (const [label, env] of Object.entries(parsed)) {
    if (!/^[A-Za-z0-9_]+$/.test(label)) throw new Error(`BENCH_TUSK_MODES: label "${label}" must be letters, digits or _`);
    modes[label] = envObject(env, `BENCH_TUSK_MODES.${label}`);
  }
  return modes;
}

function parseJson(raw: string, name: string): unknown {
  try {
    return JSON.parse(raw);
  } catch (err) {
    throw new Error(`${name} is not JSON: ${String(err)}`);
  }
}

function envObject(parsed: unknown, name: string): Record<string, string> {
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error(`${name} must be a JSON object`);
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(parsed)) {
    if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean') {
      throw new Error(`${name}.${key} must be a string, number or boolean`);
    }
    env[key] = String(value);
  }
  return env;
}

/** An environment as a short label for result headings ('' when empty); BENCH_TUSK_ENV by default. */
export function benchTuskEnvLabel(env = benchTuskEnv()): string {
  return Object.keys(env).length ? Object.entries(env).map(([k, v]) => `${k}=${v}`).join(' ') : '';
}

/** The machine's 1-minute load average: benches print it at start and end, as figures depend on it. */
export function loadAverage(): string {
  return os.loadavg()[0]!.toFixed(1);
}

/** user + system CPU seconds of one process (all its threads) from /proc/<pid>/stat; undefined once gone. */
export function cpuSecondsOf(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime in USER_HZ (100 on Linux)
  } catch {
    return undefined;
  }
}

const STORAGE_DAEMONS = new Set(['radosgw', 'ceph-osd', 'ceph-mon']);

/**
 * The storage's processes: radosgw, ceph-osd and ceph-mon started with BENCH_CEPH_CONF (or, when
 * it is unset, every such process on the machine).
 */
export function storagePids(): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let argv: string[];
    try {
      argv = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (!STORAGE_DAEMONS.has(path.basename(argv[0] ?? ''))) continue;
    if (benchEnv.cephConf && !argv.includes(benchEnv.cephConf)) continue;
    pids.push(Number(entry));
  }
  return pids;
}

/** CPU seconds of the storage's processes, per process name (radosgw, ceph-osd, ceph-mon). */
export function storageCpuSeconds(pids = storagePids()): Record<string, number> {
  const byName: Record<string, number> = {};
  for (const pid of pids) {
    const cpu = cpuSecondsOf(pid);
    if (cpu === undefined) continue;
    let name = 'storage';
    try {
      name = path.basename(fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0] ?? name);
    } catch {
      // gone between the two reads
    }
    byName[name] = (byName[name] ?? 0) + cpu;
  }
  return byName;
}

export function sumValues(values: Record<string, number>): number {
  return Object.values(values).reduce((a, b) => a + b, 0);
}

/**
 * Between uploads: BENCH_BETWEEN_RUNS (a shell command), else RGW's garbage collector when the
 * cluster is known. A memstore RGW keeps deleted data in RAM until its collector runs (2 h by
 * default) and refuses writes at 8 GiB; running it here also keeps its CPU out of the next upload.
 */
export function betweenRuns(): void {
  const command = process.env.BENCH_BETWEEN_RUNS ?? (benchEnv.cephConf ? `radosgw-admin -c '${benchEnv.cephConf}' gc process --include-all` : '');
  if (command) execSync(command, { stdio: 'ignore', timeout: 60_000 });
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const address = srv.address();
      srv.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * A balancer without affinity on 127.0.0.1: each request goes to the next of `ports` in turn
 * (nginx's default round robin), headers (Host included) passed as they are, bodies streamed.
 */
export async function startRoundRobin(ports: number[]): Promise<{ endpointBase: string; close: () => Promise<void> }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  let next = 0;
  const server = http.createServer((req, res) => {
    const port = ports[next++ % ports.length]!;
    const upstream = http.request({ host: '127.0.0.1', port, method: req.method, path: req.url, headers: req.headers, agent }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    upstream.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    endpointBase: `http://127.0.0.1:${port}`,
    close: async () => {
      agent.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
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
  const exited = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`tusk server exited (${code}) before it was ready`))));
  exited.catch(() => {});
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) await exited;
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
 * Spawns `node dist/tusk.js <mode>` on the bench S3 and Redis (no readiness wait), with
 * BENCH_TUSK_ENV over the bench's defaults and `extraEnv` over both. Pass the same REDIS_PREFIX to
 * a server and a worker that must share queues and records. Creation rate limits are off (a bench
 * creates hundreds of uploads a minute from one address); DATA_DIR is .tmp/bench/data-<prefix>.
 * `BENCH_TUSK_DIST` in that environment (not passed on) runs another build's tusk.js instead, so
 * that two builds are measured in one run (a copy of dist/ inside the repository, for its
 * node_modules).
 */
export function spawnTusk(mode: 'server' | 'worker', extraEnv: Record<string, string> = {}): ChildProcess {
  const prefix = extraEnv.REDIS_PREFIX ?? benchTuskEnv().REDIS_PREFIX ?? `bench-${crypto.randomBytes(4).toString('hex')}:`;
  const { BENCH_TUSK_DIST: dist, ...env } = { ...benchTuskEnv(), ...extraEnv };
  return spawn(process.execPath, [path.resolve(repoRoot, dist ?? 'dist', 'tusk.js'), mode], {
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
      REDIS_PREFIX: prefix,
      LOG_LEVEL: 'warn',
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      // One per Redis prefix: a server never finds another run's local files (a server and a
      // worker that share a prefix share it).
      DATA_DIR: path.join(repoRoot, '.tmp', 'bench', `data-${prefix.replace(/[^A-Za-z0-9-]/g, '')}`),
      RATE_LIMIT_CREATIONS_PER_MINUTE_USER: '0',
      RATE_LIMIT_CREATIONS_PER_MINUTE_IP: '0',
      ...env,
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

/**
 * Waits until `key` is in the bucket with `size` bytes (HeadObject every 20 ms) and returns how
 * long that took in ms: 0 when the first HeadObject found it complete. A server may answer the last PATCH before the
 * object is complete in S3 (bytes acknowledged from a local buffer); the benches count the time
 * and CPU until the object is there. Throws after `timeoutMs`.
 */
export async function untilInS3(s3: S3, key: string, size: number, timeoutMs = 60_000): Promise<number> {
  const t0 = Date.now();
  for (let attempt = 0; ; attempt++) {
    const length = await s3.headObject({ Bucket: benchEnv.bucket, Key: key }).then(
      (head) => head.ContentLength,
      () => undefined,
    );
    if (length === size) return attempt === 0 ? 0 : Date.now() - t0;
    if (Date.now() - t0 > timeoutMs) throw new Error(`${key}: ${length ?? 'no object'} in S3 after ${timeoutMs} ms, expected ${size} bytes`);
    await new Promise((r) => setTimeout(r, 20));
  }
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
