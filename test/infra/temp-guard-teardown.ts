// Jest globalTeardown of every run (jest.config.js; runs after the services' teardown): fails the
// run, naming what and who probably made it, if anything was left in the run's temporary directory
// (temp-guard-setup.ts), then deletes that directory whatever it holds. Also warns about new
// tusk-* entries in the machine's own temporary directory, which only code ignoring TMPDIR (or
// another test run on this machine) would have made.
//
// Loaded outside jest's module system like global-setup.ts: import node built-ins only.
import fs from 'node:fs';
import path from 'node:path';

import type { TempGuardState } from './temp-guard-setup.js';

const shared = globalThis as { __tuskTempGuard?: TempGuardState };

/** Who makes files named like this (tusk's own temporary files, or else a test). */
function origin(name: string): string {
  if (/^tusk-checksum-[0-9a-f]{16}$/.test(name)) return "tusk's checksum spool (server/tus/checksum.ts)";
  if (/^tusk-s3-\d+-[0-9a-f]{16}$/.test(name)) return "tusk's S3 part spool (lib/stores/s3-part-writer.ts)";
  if (/^tusk-[a-z_-]+-.+\.r\d+-/.test(name)) return "a pipeline job's work directory (workers/pipeline/index.ts)";
  return 'a test (mkdtemp without rm?)';
}

function describeEntry(dir: string, name: string): string {
  const full = path.join(dir, name);
  let what = '';
  try {
    const stat = fs.statSync(full);
    what = stat.isDirectory() ? ` (directory, ${fs.readdirSync(full).length} entries)` : ` (${stat.size} bytes)`;
  } catch {
    // gone meanwhile
  }
  return `  ${name}${what}: ${origin(name)}`;
}

export default function tempGuardTeardown(): void {
  const guard = shared.__tuskTempGuard;
  if (!guard) return;
  delete shared.__tuskTempGuard;
  if (guard.originalEnv === undefined) delete process.env.TMPDIR;
  else process.env.TMPDIR = guard.originalEnv;
  delete process.env.TEST_ORIGINAL_TMPDIR;

  let left: string[] = [];
  try {
    left = fs.readdirSync(guard.runDir).sort();
  } catch {
    // removed by someone else: nothing to report
  }
  const report = left.map((name) => describeEntry(guard.runDir, name));
  fs.rmSync(guard.runDir, { recursive: true, force: true });

  const before = new Set(guard.before);
  const appeared = fs
    .readdirSync(guard.original)
    .filter((name) => name.startsWith('tusk-') && !before.has(name) && name !== path.basename(guard.runDir));
  if (appeared.length > 0) {
    console.error(
      `\ntemp guard: WARNING ${appeared.length} new tusk-* entries in ${guard.original} during this run. Tests and tusk use TMPDIR ` +
        `(${guard.runDir}); these come from code that does not, or from another test run on this machine:\n` +
        appeared.map((name) => describeEntry(guard.original, name)).join('\n'),
    );
  }
  if (left.length > 0) {
    throw new Error(`the tests left ${left.length} entries in the run's temporary directory ${guard.runDir} (now deleted):\n${report.join('\n')}`);
  }
}
