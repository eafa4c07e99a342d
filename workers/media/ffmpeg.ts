// The one module that drives ffmpeg / ffprobe. Debian's binaries (apt: ffmpeg 5.1) are run directly
// with node:child_process instead of through fluent-ffmpeg, which its maintainers archived in May
// 2025 (node-fluent-ffmpeg#1324): we use a handful of fixed command lines, so a wrapper adds
// nothing but an unmaintained dependency. What this module adds over a bare spawn():
//   - typed ffprobe JSON;
//   - progress from `-progress pipe:1` (out_time_us against the known duration), 0..100, increasing;
//   - a hard time limit and AbortSignal: SIGTERM, then SIGKILL after a grace period, sent to the
//     child's whole process group (it is spawned detached, as a group leader), so nothing it
//     started outlives it; groups still running when the worker process exits are killed too;
//   - ffmpeg's own CPU-time limit (-timelimit), so an ffmpeg whose worker was killed (kill -9,
//     which leaves no chance to clean up) still stops by itself;
//   - the tail of stderr in every error (ffmpeg says why it failed there).
// The work happens in the child process, so the worker's event loop (BullMQ lock renewal) stays free.
import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';

/** Which ffmpeg/ffprobe binaries to run. */
export interface FfmpegPaths {
  /** Default: process.env.FFMPEG_PATH, then "ffmpeg" from PATH. */
  ffmpegPath?: string;
  /** Default: process.env.FFPROBE_PATH, then "ffprobe" from PATH. */
  ffprobePath?: string;
}

const STDERR_TAIL = 4000;
/** Signals that stop a process from outside; a crash (SIGSEGV, SIGABRT...) is not among them. */
const STOP_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGKILL', 'SIGHUP', 'SIGQUIT'];
const KILL_GRACE_MS = 2000;

export function ffmpegBinaries(paths?: FfmpegPaths): { ffmpeg: string; ffprobe: string } {
  return {
    ffmpeg: paths?.ffmpegPath ?? process.env.FFMPEG_PATH ?? 'ffmpeg',
    ffprobe: paths?.ffprobePath ?? process.env.FFPROBE_PATH ?? 'ffprobe',
  };
}

export class FfmpegError extends Error {
  override readonly name = 'FfmpegError';
  constructor(
    message: string,
    readonly details: {
      program: string;
      exitCode: number | null;
      signal: NodeJS.Signals | null;
      /** The last few KB of stderr. */
      stderrTail: string;
      timedOut: boolean;
      aborted: boolean;
      /**
       * Stopped from outside (not by us): killed by a stop signal, or ffmpeg's own exit on
       * SIGINT/SIGTERM (code 255 without a word on stderr). Says nothing about the file: a Ctrl-C,
       * a service manager stopping everything, the OOM killer.
       */
      interrupted?: boolean;
      /** The binary could not be started (ENOENT...). */
      spawnFailed?: boolean;
    },
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

// ---- ffprobe -----------------------------------------------------------------------------------

export interface ProbeStream {
  index: number;
  codec_type?: 'video' | 'audio' | 'subtitle' | 'data' | 'attachment' | string;
  codec_name?: string;
  profile?: string;
  width?: number;
  height?: number;
  pix_fmt?: string;
  r_frame_rate?: string;
  avg_frame_rate?: string;
  duration?: string;
  bit_rate?: string;
  sample_rate?: string;
  channels?: number;
  nb_frames?: string;
  tags?: Record<string, string>;
  side_data_list?: Array<{ side_data_type?: string; rotation?: number; [key: string]: unknown }>;
  disposition?: Record<string, number>;
}

export interface ProbeFormat {
  filename?: string;
  nb_streams?: number;
  format_name?: string;
  format_long_name?: string;
  duration?: string;
  size?: string;
  bit_rate?: string;
  tags?: Record<string, string>;
}

export interface ProbeResult {
  streams: ProbeStream[];
  format: ProbeFormat;
}

interface RunResult {
  stdout: string;
  stderrTail: string;
  elapsedMs: number;
}

interface RunOptions {
  timeoutMs: number;
  signal?: AbortSignal;
  onStdoutLine?: (line: string) => void;
  /** Keep the whole stdout (ffprobe JSON); otherwise only lines are delivered. */
  collectStdout?: boolean;
}

/** Process groups (leader pids) of the children still running, killed if this process exits first. */
const liveGroups = new Set<number>();
let exitHookInstalled = false;

function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    child.kill(signal); // the group is gone (or never formed): the child itself, if still there
  }
}

function killLiveGroups(): void {
  for (const pid of liveGroups) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  liveGroups.clear();
}

function runProcess(program: string, args: string[], opts: RunOptions): Promise<RunResult> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    if (opts.signal?.aborted) {
      reject(new FfmpegError(`${program}: aborted before start`, { program, exitCode: null, signal: null, stderrTail: '', timedOut: false, aborted: true }));
      return;
    }
    // detached: the child leads its own process group, which kill() signals as a whole.
    const child = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    if (child.pid !== undefined) {
      liveGroups.add(child.pid);
      if (!exitHookInstalled) {
        exitHookInstalled = true;
        process.on('exit', killLiveGroups);
      }
    }
    let stdout = '';
    let lineBuf = '';
    let stderrTail = '';
    let timedOut = false;
    let aborted = false;
    let killTimer: NodeJS.Timeout | undefined;

    const kill = () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      signalGroup(child, 'SIGTERM');
      killTimer ??= setTimeout(() => signalGroup(child, 'SIGKILL'), KILL_GRACE_MS);
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, opts.timeoutMs);
    const onAbort = () => {
      aborted = true;
      kill();
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });

    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (text: string) => {
      if (opts.collectStdout) stdout += text;
      if (opts.onStdoutLine) {
        lineBuf += text;
        let nl: number;
        while ((nl = lineBuf.indexOf('\n')) >= 0) {
          opts.onStdoutLine(lineBuf.slice(0, nl).trim());
          lineBuf = lineBuf.slice(nl + 1);
        }
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (text: string) => {
      stderrTail = (stderrTail + text).slice(-STDERR_TAIL);
    });

    let spawnError: Error | undefined;
    child.on('error', (err) => {
      spawnError = err;
    });
    child.on('close', (code, sig) => {
      clearTimeout(timer);
      if (killTimer) clearTimeout(killTimer);
      if (child.pid !== undefined) liveGroups.delete(child.pid);
      // Whatever the child left in its group (it exited, or was killed without its children).
      if (timedOut || aborted) signalGroup(child, 'SIGKILL');
      opts.signal?.removeEventListener('abort', onAbort);
      const tail = stderrTail.trim();
      const interrupted = !timedOut && !aborted && ((sig !== null && STOP_SIGNALS.includes(sig)) || (code === 255 && !tail));
      const details = { program, exitCode: code, signal: sig, stderrTail: tail, timedOut, aborted, interrupted };
      if (spawnError) {
        reject(new FfmpegError(`${program} could not be started: ${spawnError.message}`, { ...details, spawnFailed: true }, { cause: spawnError }));
      } else if (timedOut) {
        reject(new FfmpegError(`${program} exceeded its time limit of ${opts.timeoutMs} ms and was killed`, details));
      } else if (aborted) {
        reject(new FfmpegError(`${program} was aborted`, details));
      } else if (interrupted) {
        reject(new FfmpegError(`${program} was interrupted from outside (${sig ? `signal ${sig}` : `exit ${code}, no error output`})`, details));
      } else if (code !== 0) {
        const last = tail.split('\n').filter(Boolean).slice(-3).join(' | ');
        reject(new FfmpegError(`${program} failed (${sig ? `signal ${sig}` : `exit ${code}`}): ${last || 'no error output'}`, details));
      } else {
        resolve({ stdout, stderrTail: tail, elapsedMs: Date.now() - started });
      }
    });
  });
}

/** ffprobe -show_format -show_streams as typed JSON. Rejects with FfmpegError (stderr tail included). */
export async function ffprobe(path: string, timeoutMs: number, paths?: FfmpegPaths, signal?: AbortSignal): Promise<ProbeResult> {
  const { ffprobe: program } = ffmpegBinaries(paths);
  const { stdout } = await runProcess(program, ['-v', 'error', '-print_format', 'json', '-show_format', '-show_streams', '--', path], {
    timeoutMs,
    signal,
    collectStdout: true,
  });
  let parsed: Partial<ProbeResult>;
  try {
    parsed = JSON.parse(stdout) as Partial<ProbeResult>;
  } catch (err) {
    throw new FfmpegError(`${program}: unparsable JSON output`, { program, exitCode: 0, signal: null, stderrTail: stdout.slice(-STDERR_TAIL), timedOut: false, aborted: false }, { cause: err });
  }
  return { streams: parsed.streams ?? [], format: parsed.format ?? {} };
}

// ---- ffmpeg ------------------------------------------------------------------------------------

export interface RunFfmpegOptions {
  timeoutMs: number;
  /** Input duration (s): enables percentage progress. */
  durationSec?: number;
  /** 0..100, increasing, at most once per whole percent; 100 is reported on success. */
  onProgress?: (percent: number) => void;
  signal?: AbortSignal;
  paths?: FfmpegPaths;
}

/**
 * Runs `ffmpeg <global flags> ...args`. The global flags (-hide_banner -nostdin -y -loglevel error
 * -progress pipe:1 -nostats -timelimit) are added here; `args` holds inputs, filters and outputs.
 * -timelimit is CPU time: the wall-clock limit times the cores, which a supervised run never
 * reaches first, and which ends an orphaned one (its worker killed) after about as long.
 */
export async function runFfmpeg(args: string[], opts: RunFfmpegOptions): Promise<{ elapsedMs: number; stderrTail: string }> {
  const { ffmpeg: program } = ffmpegBinaries(opts.paths);
  const durationUs = opts.durationSec && opts.durationSec > 0 ? opts.durationSec * 1e6 : undefined;
  let last = -1;
  const report = (pct: number) => {
    const value = Math.min(100, Math.max(0, Math.floor(pct)));
    if (value > last) {
      last = value;
      opts.onProgress?.(value);
    }
  };
  const onStdoutLine = (line: string) => {
    // out_time_us and (misnamed, also microseconds) out_time_ms; "progress=end" at the end.
    const m = /^out_time_(?:us|ms)=(\d+)$/.exec(line);
    if (m && durationUs) report(Math.min(99, (Number(m[1]) / durationUs) * 100));
  };
  const cpuSeconds = Math.ceil((opts.timeoutMs / 1000) * os.availableParallelism());
  const global = ['-hide_banner', '-nostdin', '-y', '-loglevel', 'error', '-progress', 'pipe:1', '-nostats', '-timelimit', String(cpuSeconds)];
  const result = await runProcess(program, [...global, ...args], {
    timeoutMs: opts.timeoutMs,
    signal: opts.signal,
    onStdoutLine: opts.onProgress ? onStdoutLine : undefined,
  });
  report(100);
  return { elapsedMs: result.elapsedMs, stderrTail: result.stderrTail };
}

// ---- helpers on probe results -------------------------------------------------------------------

export function firstStream(probe: ProbeResult, type: 'video' | 'audio'): ProbeStream | undefined {
  // Cover art in audio files is a video stream with disposition attached_pic: not a video.
  return probe.streams.find((s) => s.codec_type === type && !(type === 'video' && s.disposition?.attached_pic === 1));
}

/** Clockwise display rotation (0/90/180/270) from the display matrix side data or the rotate tag. */
export function streamRotation(stream: ProbeStream | undefined): number {
  if (!stream) return 0;
  const matrix = stream.side_data_list?.find((d) => typeof d.rotation === 'number');
  // The display matrix's rotation is counter-clockwise (-90 = turn 90 degrees clockwise to display).
  const raw = matrix?.rotation !== undefined ? -matrix.rotation : Number(stream.tags?.rotate ?? 0);
  if (!Number.isFinite(raw)) return 0;
  const normalized = ((Math.round(raw / 90) * 90) % 360 + 360) % 360;
  return normalized;
}

export function parseRate(rate: string | undefined): number | undefined {
  if (!rate) return undefined;
  const [num, den] = rate.split('/').map(Number);
  if (num === undefined || !Number.isFinite(num)) return undefined;
  const value = den ? num / den : num;
  return Number.isFinite(value) && value > 0 ? Math.round(value * 1000) / 1000 : undefined;
}

export function probeDuration(probe: ProbeResult): number | undefined {
  const candidates = [probe.format.duration, firstStream(probe, 'video')?.duration, firstStream(probe, 'audio')?.duration];
  for (const c of candidates) {
    const n = Number(c);
    if (c !== undefined && Number.isFinite(n) && n > 0) return n;
  }
  return undefined;
}
