// The private clamd of a worker process without CLAMD_SOCKET / CLAMD_HOST (the all-in-one mode of
// `npm start`): clamd on a unix socket under DATA_DIR/clamd, reading the system's signature
// database (/var/lib/clamav, kept current by freshclam) or CLAMD_DATABASE_DIR.
//
// clamd refuses to start without signatures, and an offline machine has none: then this waits.
// It runs freshclam once (in the background, for the system database only), looks at the database
// directory every few seconds, and starts clamd as soon as signatures are there; meanwhile
// state() says what is missing and what to do, and scans wait (workers/jobs/virus-scan.ts). A
// clamd that exits is started again (backoff up to a minute). clamd and freshclam run in their own
// session (detached), so a Ctrl-C in the terminal reaches tusk only, and tusk stops them after its
// workers have stopped.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import type { Logger } from './logger.js';

/** Debian's DatabaseDirectory, where freshclam (and the clamav-freshclam service) put the signatures. */
export const SYSTEM_DATABASE_DIR = '/var/lib/clamav';

/** Files clamd loads signatures from (main/daily/bytecode .cvd/.cld and the text formats). */
const DATABASE_FILE = /\.(cvd|cld|cud|hdb|hsb|hdu|hsu|mdb|msb|mdu|msu|ndb|ndu|ldb|ldu|idb|cdb|cbc|pdb|gdb|wdb|ftm|yara?)$/i;
/** clamd's design limit: files (and streams) above ~2 GB cannot be scanned. */
const CLAMD_MAX_SIZE = 2000 * 1024 * 1024;
const TICK_MS = 2000;
const MAX_RESTART_DELAY_MS = 60_000;

export type PrivateClamdState =
  | { state: 'ready'; signatures?: number }
  | { state: 'loading' }
  | { state: 'no-signatures'; freshclam: 'running' | 'failed' | 'not-run' }
  | { state: 'exited'; message: string };

export interface PrivateClamdOptions {
  dataDir: string;
  /** undefined: the system's database, which freshclam may fill. */
  databaseDir: string | undefined;
  /** StreamMaxLength / MaxFileSize of this clamd: SCAN_MAX_BYTES (capped at clamd's 2 GB). */
  maxBytes: number;
  logger: Logger;
}

/** A program on PATH or in the sbin folders (Debian keeps clamd in /usr/sbin, off a user's PATH). */
export function findProgram(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean), '/usr/sbin', '/sbin'];
  for (const dir of dirs) {
    const file = path.join(dir, name);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      if (fs.statSync(file).isFile()) return file;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Whether `dir` holds at least one non-empty signature file. */
async function hasSignatures(dir: string): Promise<boolean> {
  const entries = await fsp.readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    if (!e.isFile() || !DATABASE_FILE.test(e.name)) continue;
    const stat = await fsp.stat(path.join(dir, e.name)).catch(() => undefined);
    if (stat && stat.size > 0) return true;
  }
  return false;
}

/** Whether something listens on the unix socket (clamd binds it only once its signatures are loaded). */
function accepts(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.createConnection({ path: socketPath });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), 1000);
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

async function readHead(file: string, bytes = 64 * 1024): Promise<string> {
  const handle = await fsp.open(file, 'r').catch(() => undefined);
  if (!handle) return '';
  try {
    const buf = Buffer.alloc(bytes);
    const { bytesRead } = await handle.read(buf, 0, bytes, 0);
    return buf.subarray(0, bytesRead).toString('utf8');
  } finally {
    await handle.close();
  }
}

async function alive(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGTERM, then SIGKILL after 5 s; resolves once the process is gone. */
async function stopPid(pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + 5000;
  while (await alive(pid)) {
    if (Date.now() > deadline) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
      return;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

const lastLine = (text: string) => text.split('\n').map((l) => l.trim()).filter(Boolean).slice(-1)[0] ?? '';

export class PrivateClamd {
  readonly dir: string;
  readonly socket: string;
  readonly databaseDir: string;
  private readonly log: Logger;
  private child: ChildProcess | undefined;
  /** A clamd of ours found running at start (left by a tusk that was killed): stopped with us. */
  private adopted: number | undefined;
  private ready = false;
  private signatures: number | undefined;
  private noSignatures = false;
  private freshclam: 'running' | 'failed' | 'not-run' | 'done' = 'not-run';
  private freshclamChild: ChildProcess | undefined;
  private exitMessage: string | undefined;
  private failures = 0;
  private restartAt = 0;
  private stopping = false;
  private ticking: Promise<void> | undefined;
  private readonly timer: NodeJS.Timeout;
  private readonly readyListeners: Array<() => void> = [];

  constructor(private readonly opts: PrivateClamdOptions) {
    this.dir = path.join(opts.dataDir, 'clamd');
    this.socket = path.join(this.dir, 'clamd.sock');
    if (Buffer.byteLength(this.socket) > 100) {
      throw new Error(`DATA_DIR is too long for a unix socket path (${this.socket}); use a shorter DATA_DIR or set CLAMD_SOCKET`);
    }
    this.databaseDir = opts.databaseDir ?? SYSTEM_DATABASE_DIR;
    this.log = opts.logger.child({ component: 'clamd' });
    this.timer = setInterval(() => void this.tick(), TICK_MS);
    this.timer.unref();
  }

  /** Looks now (rather than at the next tick): starts clamd if it can, notices one that answers or died. */
  tick(): Promise<void> {
    this.ticking ??= this.look()
      .catch((err: unknown) => this.log.warn({ err }, 'private clamd: check failed'))
      .finally(() => (this.ticking = undefined));
    return this.ticking;
  }

  state(): PrivateClamdState {
    if (this.ready) return { state: 'ready', signatures: this.signatures };
    if (this.child) return { state: 'loading' };
    if (this.exitMessage && !this.noSignatures) return { state: 'exited', message: this.exitMessage };
    return { state: 'no-signatures', freshclam: this.freshclam === 'done' ? 'not-run' : this.freshclam };
  }

  /** Called (once per change) when clamd starts answering. */
  onReady(listener: () => void): void {
    this.readyListeners.push(listener);
  }

  /**
   * Stops the clamd (and freshclam) this process started, or the one of ours it found running;
   * another process's clamd on the socket is left alone.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.timer);
    await this.ticking;
    if (this.freshclamChild?.pid !== undefined && this.freshclamChild.exitCode === null) {
      try {
        process.kill(-this.freshclamChild.pid, 'SIGTERM');
      } catch {
        // gone
      }
    }
    if (this.adopted !== undefined) await stopPid(this.adopted);
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }

  private async look(): Promise<void> {
    if (this.stopping) return;
    if (this.child) {
      if (!this.ready && (await accepts(this.socket))) await this.becameReady('started');
      return;
    }
    // A clamd already on our socket: one left running by a tusk that was killed (adopted: we stop
    // it), or another worker's under the same DATA_DIR. Used rather than fought over.
    if (await accepts(this.socket)) {
      if (!this.ready) {
        this.adopted = await this.leftOver();
        await this.becameReady('found running');
      }
      return;
    }
    this.adopted = undefined;
    if (this.ready) {
      this.ready = false;
      this.log.warn({ socket: this.socket }, 'private clamd stopped answering; starting it again');
    }
    this.noSignatures = !(await hasSignatures(this.databaseDir));
    if (this.noSignatures) {
      this.runFreshclamOnce();
      return;
    }
    if (Date.now() < this.restartAt) return;
    await this.spawnClamd();
  }

  /** The pid in our PidFile, if it is a clamd started with our config file and its parent is gone. */
  private async leftOver(): Promise<number | undefined> {
    const pid = Number((await readHead(path.join(this.dir, 'clamd.pid'), 64)).trim());
    if (!Number.isInteger(pid) || pid <= 1) return undefined;
    const [cmdline, stat] = await Promise.all([readHead(`/proc/${pid}/cmdline`, 4096), readHead(`/proc/${pid}/stat`, 1024)]);
    const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    const orphan = parent === 1 || !(await alive(parent)) || !/node/.test(await readHead(`/proc/${parent}/comm`, 64));
    return cmdline.includes(path.join(this.dir, 'clamd.conf')) && orphan ? pid : undefined;
  }

  private async becameReady(how: 'started' | 'found running'): Promise<void> {
    this.ready = true;
    this.failures = 0;
    this.exitMessage = undefined;
    const loaded = [...(await readHead(path.join(this.dir, 'clamd.log'))).matchAll(/Loaded (\d+) signatures/g)].pop();
    this.signatures = loaded ? Number(loaded[1]) : undefined;
    this.log.info({ socket: this.socket, database: this.databaseDir, signatures: this.signatures, pid: this.child?.pid }, `private clamd ${how}`);
    for (const listener of this.readyListeners) listener();
  }

  private async spawnClamd(): Promise<void> {
    const clamd = findProgram('clamd');
    if (!clamd) throw new Error('clamd is not installed');
    await fsp.mkdir(path.join(this.dir, 'tmp'), { recursive: true, mode: 0o700 });
    await fsp.chmod(this.dir, 0o700);
    const size = Math.min(this.opts.maxBytes, CLAMD_MAX_SIZE);
    const conf = path.join(this.dir, 'clamd.conf');
    await fsp.writeFile(
      conf,
      [
        `DatabaseDirectory ${this.databaseDir}`,
        `LocalSocket ${this.socket}`,
        'LocalSocketMode 600',
        'FixStaleSocket yes',
        'Foreground yes',
        `PidFile ${path.join(this.dir, 'clamd.pid')}`,
        `LogFile ${path.join(this.dir, 'clamd.log')}`,
        'LogFileMaxSize 2M',
        'LogRotate yes',
        `TemporaryDirectory ${path.join(this.dir, 'tmp')}`,
        // What tusk streams (SCAN_MAX_BYTES) is what clamd scans: a larger stream is refused by
        // clamd (the upload is rejected as too large to scan), never passed as clean unread.
        `StreamMaxLength ${size}`,
        `MaxFileSize ${size}`,
        `MaxScanSize ${Math.max(size, 400 * 1024 * 1024)}`,
        // A signature update is loaded in place: the full database takes ~1.2 GB, twice that
        // during a concurrent reload. Scans pause for the reload instead.
        'ConcurrentDatabaseReload no',
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
    await fsp.rm(path.join(this.dir, 'clamd.log'), { force: true });
    const out = fs.openSync(path.join(this.dir, 'clamd.out'), 'w');
    // detached: its own session, out of reach of the terminal's Ctrl-C; tusk stops it (stop()).
    const child = spawn(clamd, [`--config-file=${conf}`], { stdio: ['ignore', out, out], detached: true });
    fs.closeSync(out);
    child.unref();
    this.child = child;
    this.exitMessage = undefined;
    this.log.info({ pid: child.pid, database: this.databaseDir }, 'private clamd starting (loading signatures)');
    const ended = (code: number | null, signal: NodeJS.Signals | null) => {
      if (this.child !== child) return;
      this.child = undefined;
      this.ready = false;
      if (!this.stopping) void this.clamdExited(code, signal);
    };
    child.once('error', (err) => {
      this.log.error({ err }, 'private clamd could not be started');
      ended(null, null);
    });
    child.once('exit', ended);
  }

  private async clamdExited(code: number | null, signal: NodeJS.Signals | null): Promise<void> {
    const said = lastLine(await readHead(path.join(this.dir, 'clamd.out'))) || lastLine(await readHead(path.join(this.dir, 'clamd.log'), 1024 * 1024));
    this.failures++;
    const delay = Math.min(MAX_RESTART_DELAY_MS, 1000 * 2 ** this.failures);
    this.restartAt = Date.now() + delay;
    this.exitMessage = `the private clamd exited (${signal ?? `code ${code}`}${said ? `: ${said}` : ''}); it is started again in ${Math.round(delay / 1000)} s (log: ${path.join(this.dir, 'clamd.log')})`;
    this.log.warn({ code, signal, said, restartInMs: delay }, 'private clamd exited');
  }

  /** freshclam fills the system database; once per process, in the background (offline it takes ~40 s to give up). */
  private runFreshclamOnce(): void {
    if (this.freshclam !== 'not-run' || this.opts.databaseDir !== undefined) return;
    const freshclam = findProgram('freshclam');
    if (!freshclam) {
      this.freshclam = 'failed';
      return;
    }
    this.freshclam = 'running';
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const logFile = path.join(this.dir, 'freshclam.log');
    const out = fs.openSync(logFile, 'w');
    // detached like clamd: a Ctrl-C reaches tusk only, whose stop() ends it.
    const child = spawn(freshclam, ['--stdout'], { stdio: ['ignore', out, out], detached: true });
    fs.closeSync(out);
    child.unref();
    this.freshclamChild = child;
    child.once('error', () => (this.freshclam = 'failed'));
    child.once('exit', (code) => {
      this.freshclamChild = undefined;
      if (this.stopping) return;
      this.freshclam = code === 0 ? 'done' : 'failed';
      void readHead(logFile, 1024 * 1024).then((said) => {
        if (code === 0) this.log.info({ database: this.databaseDir }, 'freshclam downloaded the signatures');
        else this.log.warn({ code, said: lastLine(said.split('\n').filter((l) => /error/i.test(l)).join('\n')) || lastLine(said), log: logFile }, 'freshclam could not download signatures');
        return this.tick();
      });
    });
    this.log.info({ database: this.databaseDir }, 'no virus signatures: running freshclam');
  }
}

/**
 * Starts managing the private clamd: starts it now if the signatures are there (and waits up to
 * `waitMs` for it to answer, so that the start-up line can say how it went), else waits for them.
 */
export async function startPrivateClamd(opts: PrivateClamdOptions, waitMs = 3000): Promise<PrivateClamd> {
  const clamd = new PrivateClamd(opts);
  await clamd.tick();
  const deadline = Date.now() + waitMs;
  while (clamd.state().state === 'loading' && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    await clamd.tick();
  }
  return clamd;
}
