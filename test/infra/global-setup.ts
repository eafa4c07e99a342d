// Jest globalSetup of the integration and e2e projects (jest.config.js; a unit-only run starts no
// services): one private Redis and one Ceph RADOS Gateway (S3) for the whole test run,
// on free ports, under <repo>/.tmp/test-services/slot-N/. Test files find them through
// process.env (set here, inherited by the jest workers forked afterwards):
//   TEST_REDIS_URL, TEST_S3_ENDPOINT, TEST_S3_ACCESS_KEY_ID, TEST_S3_SECRET_ACCESS_KEY,
//   TEST_S3_BUCKET, TEST_S3_REGION, TEST_RGW_DIR, TEST_RGW_SCRIPT, TEST_SERVICES_DIR,
//   TEST_REPO_ROOT
// and a clamd (test/infra/clamd.sh, our own EICAR signature database) for the processing steps:
//   TEST_CLAMD_SOCKET, TEST_CLAMD_PORT, TEST_CLAMD_DIR, TEST_CLAMD_SCRIPT (not set, with a warning,
//   when clamd cannot start: only the tests that need it fail then)
// A slot belongs to one jest process at a time (file `owner`), so two test runs in the same
// checkout do not stop each other's services. Daemons left in a free slot by an earlier run that
// died are stopped (and their data deleted) first, unless TEST_REUSE_SERVICES=1 and they still
// work: then they are reused (and global-teardown leaves them running for the next run).
//
// Jest loads this file outside its module system (require() through ts-jest, then Node's own ESM
// loader), where `./other.js` is not mapped to other.ts: import node built-ins only.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export interface TestServicesState {
  ownerPid: number;
  redisPort: number;
  rgwPort: number;
  monPort: number;
  accessKeyId: string;
  secretAccessKey: string;
  bucket: string;
  region: string;
  startedAt: string;
}

const ACCESS_KEY_ID = 'tusk-test-key';
const SECRET_ACCESS_KEY = 'tusk-test-secret';
const BUCKET = 'tusk-test';
const REGION = 'us-east-1';
const MAX_SLOTS = 8;
const PORT_IN_USE = 3; // exit code of redis.sh / rgw.sh when a port is taken

interface ScriptResult {
  code: number | null;
  output: string;
}

function runScript(script: string, args: string[], env: Record<string, string>, timeoutMs = 180_000): Promise<ScriptResult> {
  return new Promise((resolve, reject) => {
    // Daemons may outlive the run (TEST_REUSE_SERVICES=1): never give them the run's own TMPDIR.
    const tmp = process.env.TEST_ORIGINAL_TMPDIR;
    const child = spawn('bash', [script, ...args], { env: { ...process.env, ...(tmp ? { TMPDIR: tmp } : {}), ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const collect = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-20_000);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/** Distinct free TCP ports on 127.0.0.1 (all held open together, so they differ). */
async function freePorts(count: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = net.createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => resolve());
      });
    }
    return servers.map((s) => (s.address() as net.AddressInfo).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  }
}

function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    // A zombie is gone; and a recycled PID that is not node is not our jest.
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) return false;
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('node');
  } catch {
    return true;
  }
}

/** Takes the slot in `dir` for this process unless a live jest process owns it. */
function tryClaim(dir: string): boolean {
  const ownerFile = path.join(dir, 'owner');
  fs.mkdirSync(dir, { recursive: true });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(ownerFile, `${process.pid}\n`, { flag: 'wx' });
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      let owner = NaN;
      try {
        owner = Number(fs.readFileSync(ownerFile, 'utf8').trim());
      } catch {
        // released meanwhile
      }
      if (owner === process.pid) return true;
      if (pidAlive(owner)) return false; // in use by another test run
      fs.rmSync(ownerFile, { force: true }); // stale: its run died
    }
  }
  return false;
}

function release(dir: string): void {
  const ownerFile = path.join(dir, 'owner');
  try {
    if (Number(fs.readFileSync(ownerFile, 'utf8').trim()) === process.pid) fs.rmSync(ownerFile, { force: true });
  } catch {
    // not ours or already gone
  }
}

const slotDirs = (servicesRoot: string) => Array.from({ length: MAX_SLOTS }, (_, i) => path.join(servicesRoot, `slot-${i}`));

/**
 * Claims the first slot no live jest process owns (with `preferReusable`: first one that has
 * services from an earlier run, if any); returns its directory.
 */
function claimSlot(servicesRoot: string, preferReusable: boolean): string {
  const all = slotDirs(servicesRoot);
  const order = preferReusable ? [...all.filter((d) => fs.existsSync(path.join(d, 'state.json'))), ...all] : all;
  for (const dir of order) if (tryClaim(dir)) return dir;
  throw new Error(`test services: all ${MAX_SLOTS} slots in ${servicesRoot} are owned by running jest processes`);
}

/** Stops daemons that dead test runs left in other slots (each slot is claimed while we do so). */
async function sweepStaleSlots(servicesRoot: string, mine: string, redisScript: string, rgwScript: string): Promise<void> {
  await Promise.all(
    slotDirs(servicesRoot)
      .filter((dir) => dir !== mine && fs.existsSync(dir))
      .map(async (dir) => {
        const leftovers = ['state.json', 'rgw/ceph.conf', 'redis/redis.pid', 'clamd/clamd.pid'].some((f) => fs.existsSync(path.join(dir, f)));
        if (!leftovers || !tryClaim(dir)) return;
        try {
          const results = await Promise.all([
            runScript(rgwScript, ['kill'], { DIR: path.join(dir, 'rgw') }),
            runScript(redisScript, ['stop'], { DIR: path.join(dir, 'redis') }),
            runScript(path.join(path.dirname(redisScript), 'clamd.sh'), ['stop'], { DIR: path.join(dir, 'clamd') }),
          ]);
          fs.rmSync(path.join(dir, 'state.json'), { force: true });
          // Their data goes too (as global-teardown.ts would have done), once nothing runs on it.
          if (results.every((r) => r.code === 0)) for (const name of ['rgw', 'redis', 'clamd']) fs.rmSync(path.join(dir, name), { recursive: true, force: true });
        } finally {
          release(dir);
        }
      }),
  );
}

function readState(file: string): TestServicesState | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as TestServicesState;
  } catch {
    return undefined;
  }
}

function publish(root: string, slotDir: string, rgwScript: string, state: TestServicesState): void {
  Object.assign(process.env, {
    TEST_REPO_ROOT: root,
    TEST_SERVICES_DIR: slotDir,
    TEST_REDIS_URL: `redis://127.0.0.1:${state.redisPort}`,
    TEST_S3_ENDPOINT: `http://127.0.0.1:${state.rgwPort}`,
    TEST_S3_ACCESS_KEY_ID: state.accessKeyId,
    TEST_S3_SECRET_ACCESS_KEY: state.secretAccessKey,
    TEST_S3_BUCKET: state.bucket,
    TEST_S3_REGION: state.region,
    TEST_RGW_DIR: path.join(slotDir, 'rgw'),
    TEST_RGW_SCRIPT: rgwScript,
  });
}

/** Starts (or, when reusing services, keeps) the slot's clamd and exports TEST_CLAMD_*. Never throws. */
async function ensureClamd(root: string, slotDir: string, reuse: boolean): Promise<void> {
  const script = path.join(root, 'test', 'infra', 'clamd.sh');
  const dir = path.join(slotDir, 'clamd');
  const exportClamd = (port: number) =>
    Object.assign(process.env, { TEST_CLAMD_SOCKET: path.join(dir, 'clamd.sock'), TEST_CLAMD_PORT: String(port), TEST_CLAMD_DIR: dir, TEST_CLAMD_SCRIPT: script });
  try {
    if (reuse && (await runScript(script, ['status'], { DIR: dir }, 15_000)).code === 0) {
      exportClamd(Number(fs.readFileSync(path.join(dir, 'port'), 'utf8').trim()));
      return;
    }
    let last: ScriptResult | undefined;
    for (let attempt = 1; attempt <= 3; attempt++) {
      const [port] = (await freePorts(1)) as [number];
      last = await runScript(script, ['start'], { DIR: dir, PORT: String(port) }, 60_000);
      if (last.code === 0) {
        exportClamd(port);
        return;
      }
      if (last.code !== PORT_IN_USE) break;
    }
    process.stderr.write(`\ntest services: WARNING clamd did not start (exit ${last?.code}); virus-scan tests will fail:\n${last?.output ?? ''}\n`);
  } catch (err) {
    process.stderr.write(`\ntest services: WARNING clamd did not start: ${String(err)}\n`);
  }
}

export default async function globalSetup(_globalConfig?: unknown, projectConfig?: { rootDir?: string }): Promise<void> {
  const started = Date.now();
  const root = path.resolve(projectConfig?.rootDir ?? process.cwd());
  const redisScript = path.join(root, 'test', 'infra', 'redis.sh');
  const rgwScript = path.join(root, 'test', 'infra', 'rgw.sh');
  const servicesRoot = path.join(root, '.tmp', 'test-services');
  const reuse = process.env.TEST_REUSE_SERVICES === '1';
  const slotDir = claimSlot(servicesRoot, reuse);
  const redisDir = path.join(slotDir, 'redis');
  const rgwDir = path.join(slotDir, 'rgw');
  const stateFile = path.join(slotDir, 'state.json');

  try {
    const previous = readState(stateFile);
    if (reuse && previous) {
      const [redisOk, rgwOk] = await Promise.all([
        runScript(redisScript, ['status'], { DIR: redisDir }, 15_000),
        runScript(rgwScript, ['status'], { DIR: rgwDir }, 15_000),
      ]);
      if (redisOk.code === 0 && rgwOk.code === 0) {
        const state = { ...previous, ownerPid: process.pid };
        fs.writeFileSync(stateFile, JSON.stringify(state, null, 2));
        publish(root, slotDir, rgwScript, state);
        await ensureClamd(root, slotDir, true);
        process.stderr.write(`\ntest services: reusing Redis ${process.env.TEST_REDIS_URL} and S3 ${process.env.TEST_S3_ENDPOINT} (${slotDir})\n`);
        return;
      }
    }

    // Whatever an earlier run left in this slot goes first (each script is a no-op if nothing runs);
    // daemons of dead runs in other slots go too (in the background; not when reusing services).
    const sweeping = reuse ? Promise.resolve() : sweepStaleSlots(servicesRoot, slotDir, redisScript, rgwScript).catch(() => undefined);
    fs.rmSync(stateFile, { force: true });
    await Promise.all([runScript(rgwScript, ['kill'], { DIR: rgwDir }), runScript(redisScript, ['stop'], { DIR: redisDir })]);

    for (let attempt = 1; ; attempt++) {
      const [redisPort, rgwPort, monPort] = (await freePorts(3)) as [number, number, number];
      const [redis, rgw] = await Promise.all([
        runScript(redisScript, ['start'], { DIR: redisDir, PORT: String(redisPort) }),
        runScript(rgwScript, ['start'], {
          DIR: rgwDir,
          RGW_PORT: String(rgwPort),
          MON_PORT: String(monPort),
          STORE: 'memstore',
          AK: ACCESS_KEY_ID,
          SK: SECRET_ACCESS_KEY,
          BUCKET,
        }),
      ]);
      if (redis.code === 0 && rgw.code === 0) {
        const state: TestServicesState = {
          ownerPid: process.pid,
          redisPort,
          rgwPort,
          monPort,
          accessKeyId: ACCESS_KEY_ID,
          secretAccessKey: SECRET_ACCESS_KEY,
          bucket: BUCKET,
          region: REGION,
          startedAt: new Date().toISOString(),
        };
        fs.writeFileSync(stateFile, JSON.stringify(state, null, 2));
        publish(root, slotDir, rgwScript, state);
        await ensureClamd(root, slotDir, false);
        await sweeping;
        break;
      }
      await Promise.all([runScript(rgwScript, ['kill'], { DIR: rgwDir }), runScript(redisScript, ['stop'], { DIR: redisDir })]);
      // A port taken between choosing and binding it: choose again.
      const raced = (redis.code === PORT_IN_USE || redis.code === 0) && (rgw.code === PORT_IN_USE || rgw.code === 0);
      if (raced && attempt < 3) continue;
      const failed = [redis.code !== 0 ? `redis.sh start (exit ${redis.code}):\n${redis.output}` : '', rgw.code !== 0 ? `rgw.sh start (exit ${rgw.code}):\n${rgw.output}` : '']
        .filter(Boolean)
        .join('\n');
      throw new Error(`test services failed to start (logs under ${slotDir}):\n${failed}`);
    }
  } catch (err) {
    release(slotDir);
    throw err;
  }
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  process.stderr.write(`\ntest services: Redis ${process.env.TEST_REDIS_URL}, S3 ${process.env.TEST_S3_ENDPOINT} bucket ${BUCKET}, clamd ${process.env.TEST_CLAMD_PORT ?? '(none)'} (started in ${seconds} s, ${slotDir})\n`);
}
