// Jest globalTeardown of the integration and e2e projects: stops the services global-setup.ts
// started (radosgw, the OSD and the monitor; Redis; clamd), deletes their data (the slot's
// directory under .tmp/test-services/, and .tmp/ itself when nothing else is in it) and releases the
// slot. The Ceph daemons are killed rather than stopped: a clean stop would first write every
// object the run stored (memstore) to disk, only for it to be deleted. With TEST_REUSE_SERVICES=1
// they keep running, data and all, for the next run to reuse.
// Loaded like global-setup.ts: import node built-ins only.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

function run(script: string, args: string[], env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    // The run's own TMPDIR (temp-guard-setup.ts) is about to be deleted: the daemons' tools get the real one.
    const tmp = process.env.TEST_ORIGINAL_TMPDIR;
    const child = spawn('bash', [script, ...args], { env: { ...process.env, ...(tmp ? { TMPDIR: tmp } : {}), ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const collect = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-10_000);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ code: null, output: String(err) });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/** Removes `dir` if it is empty (never anything in it). */
function removeIfEmpty(dir: string): void {
  try {
    fs.rmdirSync(dir);
  } catch {
    // not empty, or gone
  }
}

export default async function globalTeardown(_globalConfig?: unknown, projectConfig?: { rootDir?: string }): Promise<void> {
  const slotDir = process.env.TEST_SERVICES_DIR;
  if (!slotDir) return; // global-setup failed before claiming a slot, or this ran already
  delete process.env.TEST_SERVICES_DIR;
  const root = process.env.TEST_REPO_ROOT ?? path.resolve(projectConfig?.rootDir ?? process.cwd());
  const ownerFile = path.join(slotDir, 'owner');
  const reuse = process.env.TEST_REUSE_SERVICES === '1';
  let stopped = true;
  if (!reuse) {
    const infra = path.join(root, 'test', 'infra');
    const results = await Promise.all([
      run(path.join(infra, 'rgw.sh'), ['kill'], { DIR: path.join(slotDir, 'rgw') }),
      run(path.join(infra, 'redis.sh'), ['stop'], { DIR: path.join(slotDir, 'redis') }),
      run(path.join(infra, 'clamd.sh'), ['stop'], { DIR: path.join(slotDir, 'clamd') }),
    ]);
    for (const [name, result] of [['rgw.sh kill', results[0]], ['redis.sh stop', results[1]], ['clamd.sh stop', results[2]]] as const) {
      if (result.code === 0) continue;
      stopped = false;
      console.error(`test services: ${name} failed (exit ${result.code}); keeping ${slotDir} for a look:\n${result.output}`);
    }
    fs.rmSync(path.join(slotDir, 'state.json'), { force: true });
    if (stopped) {
      for (const name of ['rgw', 'redis', 'clamd']) fs.rmSync(path.join(slotDir, name), { recursive: true, force: true });
    }
  }
  try {
    if (Number(fs.readFileSync(ownerFile, 'utf8').trim()) === process.pid) fs.rmSync(ownerFile, { force: true });
  } catch {
    // already released
  }
  if (!reuse && stopped) {
    removeIfEmpty(slotDir);
    removeIfEmpty(path.dirname(slotDir)); // .tmp/test-services
    removeIfEmpty(path.dirname(path.dirname(slotDir))); // .tmp
  }
}
