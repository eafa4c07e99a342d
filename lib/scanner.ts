// Virus scanning as the workers see it: which clamd a scan talks to, or why there is none right
// now and what to do about it. One of:
//   off       SCAN_REQUIRED=false and no clamd configured: scan tasks are `skipped`;
//   a clamd   CLAMD_SOCKET / CLAMD_HOST, or the private one (lib/embedded-clamd.ts) that a worker
//             process starts when neither is set and clamd is installed;
//   waiting   no scanner yet (no signatures, clamd loading or not installed): uploads wait in
//             `scanning` with the reason, and are scanned by themselves once there is one.
// A missing scanner never fails an upload and never counts as "clean".
import type { Config } from '../config/index.js';
import { findProgram, startPrivateClamd, type PrivateClamd } from './embedded-clamd.js';
import type { Logger } from './logger.js';

export type ClamdTarget = { socket: string; host?: undefined; port?: undefined } | { socket?: undefined; host: string; port: number };

export type ScannerState = { kind: 'off' } | { kind: 'clamd'; target: ClamdTarget } | { kind: 'waiting'; message: string };

export interface Scanner {
  state(): ScannerState;
  /** The reason an upload waits with when the clamd of state() could not be reached (`detail`: the connection error). */
  unreachable(detail: string): string;
  /** Called when a scanner becomes available (waiting scans can go now). */
  onAvailable(listener: () => void): void;
  /** Which state scanning is in, in one line (start-up). */
  summary(): string;
  stop(): Promise<void>;
}

const OR_OFF = 'or set SCAN_REQUIRED=false';

function fixed(state: ScannerState, summary: string, unreachable: (detail: string) => string = (d) => d): Scanner {
  return { state: () => state, unreachable, onAvailable: () => {}, summary: () => summary, stop: async () => {} };
}

function privateScanner(clamd: PrivateClamd, custom: boolean, logger: Logger): Scanner {
  const target: ClamdTarget = { socket: clamd.socket };
  const noSignatures = (freshclam: 'running' | 'failed' | 'not-run') =>
    custom
      ? `waiting for signatures: no virus signatures in ${clamd.databaseDir} (CLAMD_DATABASE_DIR): put a database there (freshclam --datadir=${clamd.databaseDir}), ${OR_OFF}`
      : freshclam === 'running'
        ? `waiting for signatures: freshclam is downloading them into ${clamd.databaseDir}; ${OR_OFF}`
        : `waiting for signatures: run freshclam, ${OR_OFF} (no virus signatures in ${clamd.databaseDir})`;
  const describe = (): ScannerState => {
    const s = clamd.state();
    switch (s.state) {
      case 'ready':
        return { kind: 'clamd', target };
      case 'loading':
        return { kind: 'waiting', message: `the private clamd is loading the virus signatures of ${clamd.databaseDir}` };
      case 'exited':
        return { kind: 'waiting', message: s.message };
      case 'no-signatures':
        return { kind: 'waiting', message: noSignatures(s.freshclam) };
    }
  };
  const summary = () => {
    const s = clamd.state();
    if (s.state === 'ready') return `clamd (private, ${s.signatures ?? 'unknown number of'} signatures)`;
    const state = describe();
    return state.kind === 'waiting' ? state.message : 'clamd (private)';
  };
  // The start-up line said it was waiting or loading: say it again once it scans.
  clamd.onReady(() => logger.info({ scanning: 'clamd' }, `virus scanning: ${summary()}`));
  return {
    state: describe,
    unreachable: (detail) => {
      void clamd.tick(); // it may have just died: notice (and restart it) now
      return `the private clamd is not answering (${detail}); it is being started again`;
    },
    onAvailable: (listener) => clamd.onReady(listener),
    summary,
    stop: () => clamd.stop(),
  };
}

/**
 * The scanner of a worker process: a configured clamd, else (scanning required, clamd installed)
 * a private one under DATA_DIR, else off or waiting. Never throws for a missing scanner.
 */
export async function startScanner(config: Config, logger: Logger): Promise<Scanner> {
  const p = config.pipeline;
  if (p.clamd) {
    const target: ClamdTarget = p.clamd.socket ? { socket: p.clamd.socket } : { host: p.clamd.host ?? '127.0.0.1', port: p.clamd.port };
    const where = target.socket ?? `${target.host}:${target.port}`;
    return fixed({ kind: 'clamd', target }, `clamd at ${where}`, (detail) => `waiting for clamd at ${where} (${detail}); ${OR_OFF}`);
  }
  if (!p.scanRequired) return fixed({ kind: 'off' }, 'off (SCAN_REQUIRED=false)');
  if (!findProgram('clamd')) {
    const message = `waiting for a scanner: clamd is not installed (apt-get install clamav-daemon clamav-freshclam; npm start does), or set CLAMD_SOCKET / CLAMD_HOST, ${OR_OFF}`;
    return fixed({ kind: 'waiting', message }, message);
  }
  const clamd = await startPrivateClamd({ dataDir: config.dataDir, databaseDir: p.clamdDatabaseDir, maxBytes: p.scanMaxBytes, logger });
  return privateScanner(clamd, p.clamdDatabaseDir !== undefined, logger);
}
