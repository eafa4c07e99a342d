// Jest globalTeardown: stops the services global-setup.ts started (radosgw, then the OSD, then
// the monitor; Redis; clamd) and releases the slot. With TEST_REUSE_SERVICES=1 they are left running
// for the next run to reuse. Loaded like global-setup.ts: import node built-ins only.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

function run(script: string, args: string[], env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn('bash', [script, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
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

export default async function globalTeardown(_globalConfig?: unknown, projectConfig?: { rootDir?: string }): Promise<void> {
  const slotDir = process.env.TEST_SERVICES_DIR;
  if (!slotDir) return; // global-setup failed before claiming a slot
  const root = process.env.TEST_REPO_ROOT ?? path.resolve(projectConfig?.rootDir ?? process.cwd());
  const ownerFile = path.join(slotDir, 'owner');
  if (process.env.TEST_REUSE_SERVICES !== '1') {
    const [rgw, redis] = await Promise.all([
      run(path.join(root, 'test', 'infra', 'rgw.sh'), ['stop'], { DIR: path.join(slotDir, 'rgw') }),
      run(path.join(root, 'test', 'infra', 'redis.sh'), ['stop'], { DIR: path.join(slotDir, 'redis') }),
    ]);
    const clamd = await run(path.join(root, 'test', 'infra', 'clamd.sh'), ['stop'], { DIR: path.join(slotDir, 'clamd') });
    if (clamd.code !== 0) console.error(`test services: clamd.sh stop failed (exit ${clamd.code}):\n${clamd.output}`);
    fs.rmSync(path.join(slotDir, 'state.json'), { force: true });
    for (const [name, result] of [['rgw.sh', rgw], ['redis.sh', redis]] as const) {
      if (result.code !== 0) console.error(`test services: ${name} stop failed (exit ${result.code}):\n${result.output}`);
    }
  }
  try {
    if (Number(fs.readFileSync(ownerFile, 'utf8').trim()) === process.pid) fs.rmSync(ownerFile, { force: true });
  } catch {
    // already released
  }
}
