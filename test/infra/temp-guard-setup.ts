// Jest globalSetup of every run (all tiers; jest.config.js): the run gets its own temporary
// directory, `<os.tmpdir()>/tusk-test-run-<pid>-XXXXXX`, as TMPDIR. The jest workers forked
// afterwards, and the tusk processes the tests start (test/helpers/tusk-process.ts passes TMPDIR on),
// create their temporary files there: test dirs, tusk's checksum and S3 spool files, the workers'
// per-job directories. temp-guard-teardown.ts then fails the run if anything is left in it, so
// "a run leaves nothing behind" stays true without other runs on the machine getting in the way.
//
// Loaded outside jest's module system like global-setup.ts: import node built-ins only.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const RUN_DIR_PREFIX = 'tusk-test-run-';

/** What temp-guard-teardown.ts reads (same jest process: a global, as jest documents). */
export interface TempGuardState {
  /** os.tmpdir() before this run changed TMPDIR. */
  original: string;
  /** TMPDIR as it was (undefined: not set). */
  originalEnv: string | undefined;
  runDir: string;
  /** tusk-* names in `original` before the run. */
  before: string[];
}

const shared = globalThis as { __tuskTempGuard?: TempGuardState };

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export default function tempGuardSetup(): void {
  if (shared.__tuskTempGuard) return;
  const original = os.tmpdir();
  // The directories of runs that died before their teardown (their jest process is gone).
  for (const name of fs.readdirSync(original)) {
    const m = new RegExp(`^${RUN_DIR_PREFIX}(\\d+)-`).exec(name);
    if (m && Number(m[1]) !== process.pid && !pidAlive(Number(m[1]))) fs.rmSync(path.join(original, name), { recursive: true, force: true });
  }
  const before = fs.readdirSync(original).filter((name) => name.startsWith('tusk-'));
  const runDir = fs.mkdtempSync(path.join(original, `${RUN_DIR_PREFIX}${process.pid}-`));
  shared.__tuskTempGuard = { original, originalEnv: process.env.TMPDIR, runDir, before };
  // Services started by global-setup.ts may outlive the run (TEST_REUSE_SERVICES=1): they get this.
  process.env.TEST_ORIGINAL_TMPDIR = original;
  process.env.TMPDIR = runDir;
}
