// Runs the built tusk (`node dist/tusk.js <mode>`) as a separate process for black-box tests, and
// its command-line client (`node dist/tusk.js upload|status ...`, runTuskCli).
// dist/ is built by `npm test` (test/run.sh) before jest starts.
//
//   const tusk = await startTusk({ env: tuskEnvForTests(bucket) });
//   ... fetch(`${tusk.url}/files`) ...
//   await tusk.kill();            // SIGTERM, resolves with { code, signal }
//
// Every process started here is also stopped when the test file ends (an afterAll hook this
// module registers, and stopAllTusk() for explicit use) and when the jest worker exits.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './services.js';

export type TuskMode = 'server' | 'worker' | 'all';

export interface StartTuskOptions {
  /** Merged over a clean base environment (PATH, HOME, HOST=127.0.0.1, PORT=<free port>). */
  env?: Record<string, string | undefined>;
  mode?: TuskMode;
  /** How long to wait for GET /healthz to answer 200 (ms). */
  timeoutMs?: number;
  /** Extra arguments after the mode. */
  args?: string[];
  /** Script to run instead of <repo>/dist/tusk.js. */
  entry?: string;
}

export interface TuskExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface TuskProcess {
  /** http://127.0.0.1:PORT */
  url: string;
  port: number;
  pid: number;
  /** Sends `signal` (default SIGTERM) and resolves when the process has exited. */
  kill(signal?: NodeJS.Signals): Promise<TuskExit>;
  /** Resolves when the process exits by itself or otherwise. */
  exited: Promise<TuskExit>;
  /** Everything it printed so far (stdout and stderr interleaved; bounded, oldest bytes dropped). */
  output(): string;
}

const OUTPUT_LIMIT = 2 * 1024 * 1024;
const repoRoot = process.env.TEST_REPO_ROOT ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

interface Tracked {
  child: ChildProcess;
  exited: Promise<TuskExit>;
  done: boolean;
}
const running = new Set<Tracked>();

/** Variables a tusk process inherits from the test runner; nothing else leaks (no REDIS_URL etc.). */
function baseEnv(): Record<string, string> {
  const env: Record<string, string> = { NODE_ENV: 'test', LOG_LEVEL: 'info' };
  for (const name of ['PATH', 'HOME', 'TMPDIR', 'LANG', 'TZ', 'SYSTEMROOT']) {
    const value = process.env[name];
    if (value !== undefined) env[name] = value;
  }
  return env;
}

class OutputBuffer {
  private chunks: Buffer[] = [];
  private size = 0;
  private dropped = 0;
  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size > OUTPUT_LIMIT && this.chunks.length > 1) {
      const old = this.chunks.shift() as Buffer;
      this.size -= old.length;
      this.dropped += old.length;
    }
  }
  toString(): string {
    const text = Buffer.concat(this.chunks).toString('utf8');
    return this.dropped ? `[... ${this.dropped} bytes of earlier output dropped ...]\n${text}` : text;
  }
}

function healthz(port: number): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/healthz', agent: false, timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });
}

function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  // The process leads its own process group (detached): this also reaches anything it started.
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

/** Starts `node dist/tusk.js <mode>` on a free port and waits until GET /healthz answers 200. */
/**
 * Whether `pid` itself listens on 127.0.0.1:`port` (its socket inodes against /proc/net/tcp), so
 * that another process answering /healthz on a port handed out twice is not taken for this one.
 * Without /proc it cannot tell and says yes.
 */
function listensOn(pid: number, port: number): boolean {
  let inodes: Set<string>;
  try {
    inodes = new Set(
      fs
        .readdirSync(`/proc/${pid}/fd`)
        .map((fd) => {
          try {
            return fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
          } catch {
            return '';
          }
        })
        .filter((link) => link.startsWith('socket:['))
        .map((link) => link.slice('socket:['.length, -1)),
    );
  } catch {
    return !fs.existsSync('/proc/self/fd');
  }
  const hexPort = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = fs.readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // sl local_address rem_address st ... inode: LISTEN is 0A
      if (f.length > 9 && f[3] === '0A' && f[1]!.endsWith(hexPort) && inodes.has(f[9]!)) return true;
    }
  }
  return false;
}

export async function startTusk(options: StartTuskOptions = {}): Promise<TuskProcess> {
  // A port from freePort() is free when it is handed out, not when tusk binds it: another test
  // file may take it meanwhile. Then this process fails to start (EADDRINUSE) and gets another.
  for (let attempt = 1; ; attempt++) {
    const port = options.env?.PORT === undefined ? String(await freePort()) : undefined;
    try {
      return await startTuskOn(options, port);
    } catch (err) {
      if (port === undefined || attempt >= 3 || !(err instanceof Error) || !err.message.includes('EADDRINUSE')) throw err;
    }
  }
}

async function startTuskOn(options: StartTuskOptions, freshPort: string | undefined): Promise<TuskProcess> {
  const { mode = 'server', timeoutMs = 20_000, args = [] } = options;
  const entry = path.resolve(repoRoot, options.entry ?? path.join('dist', 'tusk.js'));
  if (!fs.existsSync(entry)) throw new Error(`${entry} does not exist: run \`npm run build\` first (npm test does)`);

  const env: Record<string, string> = { ...baseEnv(), HOST: '127.0.0.1' };
  for (const [name, value] of Object.entries(options.env ?? {})) {
    if (value === undefined) delete env[name];
    else env[name] = value;
  }
  if (freshPort !== undefined) env.PORT = freshPort;
  // A worker without a clamd of its own would start a private one on the system's signatures (and
  // run freshclam to get some): tests never touch those. Unless a test gives it one, its signature
  // directory is one that does not exist (no signatures: scans wait).
  if (!env.CLAMD_SOCKET && !env.CLAMD_HOST && env.CLAMD_DATABASE_DIR === undefined) env.CLAMD_DATABASE_DIR = path.join(os.tmpdir(), 'tusk-test-no-clamav-database');
  const port = Number(env.PORT);
  const url = `http://127.0.0.1:${port}`;

  const out = new OutputBuffer();
  const child = spawn(process.execPath, [entry, mode, ...args], {
    cwd: repoRoot,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  child.stdout?.on('data', (chunk: Buffer) => out.push(chunk));
  child.stderr?.on('data', (chunk: Buffer) => out.push(chunk));
  const tracked: Tracked = {
    child,
    done: false,
    exited: new Promise<TuskExit>((resolve) => {
      child.on('error', (err) => {
        out.push(Buffer.from(`\n[spawn error: ${err.message}]\n`));
        tracked.done = true;
        running.delete(tracked);
        watchExit();
        resolve({ code: null, signal: null });
      });
      child.on('exit', (code, signal) => {
        tracked.done = true;
        running.delete(tracked);
        watchExit();
        resolve({ code, signal });
      });
    }),
  };
  running.add(tracked);
  watchExit();

  const label = () => `tusk ${mode} (pid ${child.pid}, ${url})`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (tracked.done) {
      const exit = await tracked.exited;
      throw new Error(`${label()} exited before answering /healthz (code ${exit.code}, signal ${exit.signal}); output:\n${out.toString()}`);
    }
    if ((await healthz(port)) === 200 && listensOn(child.pid as number, port)) break;
    if (Date.now() >= deadline) {
      signalGroup(child, 'SIGKILL');
      await tracked.exited;
      throw new Error(`${label()} did not answer GET /healthz with 200 within ${timeoutMs} ms; output:\n${out.toString()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }

  return {
    url,
    port,
    pid: child.pid as number,
    exited: tracked.exited,
    output: () => out.toString(),
    kill: async (signal: NodeJS.Signals = 'SIGTERM') => {
      if (!tracked.done) child.kill(signal);
      return tracked.exited;
    },
  };
}

export interface TuskCliRun {
  pid: number;
  /** What it printed on stdout / stderr so far (each bounded like output()). */
  stdout(): string;
  stderr(): string;
  /** The JSON objects among stdout's lines (what --json prints). */
  events(): Array<Record<string, unknown>>;
  exited: Promise<TuskExit>;
  /** Sends `signal` (default SIGTERM) and resolves when the process has exited. */
  kill(signal?: NodeJS.Signals): Promise<TuskExit>;
}

/**
 * Runs the command-line client, `node dist/tusk.js <args>` (e.g. ['upload', file, '--json']), with
 * `env` over the same clean base environment; stopped with the others when the test file ends.
 */
export function runTuskCli(args: string[], options: { env?: Record<string, string | undefined> } = {}): TuskCliRun {
  const entry = path.resolve(repoRoot, 'dist', 'tusk.js');
  if (!fs.existsSync(entry)) throw new Error(`${entry} does not exist: run \`npm run build\` first (npm test does)`);
  const env: Record<string, string> = baseEnv();
  for (const [name, value] of Object.entries(options.env ?? {})) {
    if (value === undefined) delete env[name];
    else env[name] = value;
  }
  const stdout = new OutputBuffer();
  const stderr = new OutputBuffer();
  const child = spawn(process.execPath, [entry, ...args], { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  child.stdout?.on('data', (chunk: Buffer) => stdout.push(chunk));
  child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk));
  const tracked: Tracked = {
    child,
    done: false,
    exited: new Promise<TuskExit>((resolve) => {
      const settle = (exit: TuskExit) => {
        tracked.done = true;
        running.delete(tracked);
        watchExit();
        resolve(exit);
      };
      child.on('error', (err) => {
        stderr.push(Buffer.from(`\n[spawn error: ${err.message}]\n`));
        settle({ code: null, signal: null });
      });
      // 'close', not 'exit': everything it printed has been read by then.
      child.on('close', (code, signal) => settle({ code, signal }));
    }),
  };
  running.add(tracked);
  watchExit();
  return {
    pid: child.pid as number,
    stdout: () => stdout.toString(),
    stderr: () => stderr.toString(),
    events: () =>
      stdout
        .toString()
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as Record<string, unknown>),
    exited: tracked.exited,
    kill: async (signal: NodeJS.Signals = 'SIGTERM') => {
      if (!tracked.done) child.kill(signal);
      return tracked.exited;
    },
  };
}

/**
 * Stops every tusk process this test file started and that is still running: SIGTERM, then
 * SIGKILL to its whole process group after `graceMs`.
 */
export async function stopAllTusk(graceMs = 5_000): Promise<void> {
  const all = [...running];
  await Promise.all(
    all.map(async (t) => {
      if (!t.done) t.child.kill('SIGTERM');
      const timer = setTimeout(() => signalGroup(t.child, 'SIGKILL'), graceMs);
      await t.exited;
      clearTimeout(timer);
      signalGroup(t.child, 'SIGKILL'); // anything it left behind in its group
      running.delete(t);
    }),
  );
  watchExit();
}

// Last resort if the worker exits with processes still running (e.g. a test file crashed).
// Registered only while something runs, so test files do not pile up listeners.
function killAllNow(): void {
  for (const t of running) if (!t.done) signalGroup(t.child, 'SIGKILL');
}
function watchExit(): void {
  process.off('exit', killAllNow);
  if (running.size > 0) process.on('exit', killAllNow);
}

// Test files that import this module get the cleanup automatically.
if (typeof afterAll === 'function') afterAll(() => stopAllTusk());
