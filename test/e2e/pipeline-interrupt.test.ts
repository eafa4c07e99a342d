// Ctrl-C during a transcode: `tusk all` gets SIGINT (its whole process group, as a terminal sends
// it), and so does the ffmpeg of the transcode (as a terminal's foreground group or systemd's
// control-group stop would). tusk shuts down cleanly, the interrupted step is left to run again
// (never a `failed` task or upload), and after a restart the upload ends `ready`. Every record
// change is watched in Redis (its pub/sub events), so a `failed` that was ever written is seen
// even while no tusk runs.
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { RedisKeys } from '../../lib/redis-keys.js';
import { makeVideo } from '../helpers/fixtures-media.js';
import { createTestBucket, testRedisUrl, tuskEnvForTests } from '../helpers/services.js';
import { startTusk, type TuskProcess } from '../helpers/tusk-process.js';
import { createUpload } from '../helpers/tus.js';
import { waitForStatus } from '../helpers/pipeline.js';

const exec = promisify(execFile);

let dir: string;
let env: Record<string, string>;
let tusk: TuskProcess | undefined;
const subscriber = new Redis(testRedisUrl(), { lazyConnect: true });
const reader = new Redis(testRedisUrl(), { lazyConnect: true });

beforeAll(async () => {
  if (!process.env.TEST_CLAMD_SOCKET) throw new Error('TEST_CLAMD_SOCKET not set: clamd did not start in global setup');
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tusk-interrupt-'));
  env = {
    ...tuskEnvForTests(await createTestBucket('interrupt')),
    CLAMD_SOCKET: process.env.TEST_CLAMD_SOCKET,
    WORK_DIR: path.join(dir, 'work'),
    STEP_BACKOFF: '500ms',
  };
  await Promise.all([subscriber.connect(), reader.connect()]);
});

afterAll(async () => {
  await tusk?.kill();
  subscriber.disconnect();
  reader.disconnect();
  if (dir) await fs.rm(dir, { recursive: true, force: true });
});

/** The upload's transcode ffmpeg processes (their input is under WORK_DIR/tusk-transcode-<id>.r<run>-...). */
async function transcodeProcesses(id: string): Promise<number[]> {
  const { stdout } = await exec('pgrep', ['-f', `${env.WORK_DIR}/tusk-transcode-${id}\\.r`]).catch(() => ({ stdout: '' }));
  return stdout.split('\n').filter(Boolean).map(Number);
}

test('Ctrl-C mid-transcode: clean shutdown, the step is not failed, and after a restart the upload is ready', async () => {
  tusk = await startTusk({ mode: 'all', env });
  const video = await makeVideo(path.join(dir, 'clip.mp4'), { width: 1280, height: 720, seconds: 10 });
  const body = await fs.readFile(video);
  const created = await createUpload(tusk.url, { length: body.length, body, metadata: { filename: 'clip.mp4', filetype: 'video/mp4' } });
  expect(created.status).toBe(201);
  const id = created.id;

  // Every state the record goes through, read after each of its change events.
  const keys = new RedisKeys(env.REDIS_PREFIX!);
  const seen: string[] = [];
  const look = async () => {
    const h = await reader.hgetall(keys.record(id));
    const tasks = Object.entries(h).filter(([f]) => f.startsWith('task:')).map(([f, v]) => `${f.slice(5)}=${(JSON.parse(v) as { status: string }).status}`);
    seen.push([`status=${h.status}`, ...tasks].join(' '));
  };
  subscriber.on('message', () => void look());
  await subscriber.subscribe(keys.recordEvents(id));

  const first = tusk;
  await waitForStatus(first.url, id, (d) => d.tasks.transcode.status === 'running' && (d.tasks.transcode.progress ?? 0) >= 1, {
    timeoutMs: 120_000,
    context: () => first.output().slice(-4000),
  });
  const ffmpegs = await transcodeProcesses(id);
  expect(ffmpegs.length).toBeGreaterThan(0);
  process.kill(-first.pid, 'SIGINT');
  for (const pid of ffmpegs) process.kill(pid, 'SIGINT');
  const exit = await first.exited;
  expect({ exit, output: exit.code === 0 ? '' : first.output().slice(-4000) }).toEqual({ exit: { code: 0, signal: null }, output: '' });
  await look();
  expect(seen.filter((s) => s.includes('failed'))).toEqual([]);
  expect(seen[seen.length - 1]).toMatch(/transcode=pending/);

  tusk = await startTusk({ mode: 'all', env });
  const second = tusk;
  const doc = await waitForStatus(second.url, id, (d) => ['ready', 'rejected', 'failed'].includes(d.status), {
    timeoutMs: 180_000,
    context: () => second.output().slice(-4000),
  });
  expect(doc.status).toBe('ready');
  expect(doc.outputs.hls).toBeDefined();
  expect(seen.filter((s) => s.includes('failed'))).toEqual([]);
});
