// A missing scanner never fails an upload and never counts as "clean": uploads wait in `scanning`
// with a reason that says what to do, and are scanned by themselves once a scanner answers.
//   - a configured clamd that is not there yet;
//   - the private clamd of `npm start` (run here as `tusk all` with nothing configured but
//     DATA_DIR and the signature directory) while there are no signatures: then the test's
//     signature database appears, and a JPEG, a short video, a .zip and the EICAR string end
//     ready, ready, ready, rejected.
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { EICAR, makeJpeg, makeVideo, makeZip } from '../helpers/fixtures-media.js';
import { freePort, requireTestEnv, testRedisUrl, uniqueRedisPrefix } from '../helpers/services.js';
import { startTusk, type TuskProcess } from '../helpers/tusk-process.js';
import { createUpload } from '../helpers/tus.js';
import { isTerminal, waitForStatus, type StatusDoc } from '../helpers/pipeline.js';

const exec = promisify(execFile);

let dir: string;
const started: TuskProcess[] = [];
let clamdDir: string | undefined;

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tusk-scanner-'));
});

afterAll(async () => {
  await Promise.all(started.map((t) => t.kill()));
  if (clamdDir) await exec('bash', [requireTestEnv('TEST_CLAMD_SCRIPT'), 'stop'], { env: { ...process.env, DIR: clamdDir } });
  if (dir) await fs.rm(dir, { recursive: true, force: true });
});

async function upload(tusk: TuskProcess, body: Buffer, filename: string, filetype: string): Promise<string> {
  const created = await createUpload(tusk.url, { length: body.length, body, metadata: { filename, filetype } });
  expect(created.status).toBe(201);
  return created.id;
}

/** Waits for `done`, noting every upload status and scan task status seen on the way. */
function watcher(tusk: TuskProcess) {
  const seen = new Set<string>();
  return {
    seen,
    until: (id: string, done: (d: StatusDoc) => boolean) =>
      waitForStatus(
        tusk.url,
        id,
        (d) => {
          seen.add(d.status);
          seen.add(`virus_scan=${d.tasks.virus_scan.status}`);
          return done(d);
        },
        { timeoutMs: 120_000, context: () => tusk.output().slice(-6000) },
      ),
  };
}

const waiting = (d: StatusDoc) => d.status === 'scanning' && d.tasks.virus_scan.status === 'waiting' && d.reason?.code === 'scanner_unavailable';

test('a configured clamd that is not there: the upload waits in scanning with the reason, then is scanned once clamd answers', async () => {
  const port = await freePort();
  const tusk = await startTusk({
    mode: 'all',
    env: { STORAGE: 'file', DATA_DIR: path.join(dir, 'external'), REDIS_URL: testRedisUrl(), REDIS_PREFIX: uniqueRedisPrefix(), CLAMD_HOST: '127.0.0.1', CLAMD_PORT: String(port), STEP_BACKOFF: '200ms' },
  });
  started.push(tusk);
  expect(tusk.output()).toContain(`virus scanning: clamd at 127.0.0.1:${port}`);
  const png = await fs.readFile(await makeJpeg(path.join(dir, 'photo.jpg')));
  const id = await upload(tusk, png, 'photo.jpg', 'image/jpeg');
  const watch = watcher(tusk);
  const waited = await watch.until(id, waiting);
  expect(waited.reason?.message).toMatch(new RegExp(`clamd at 127\\.0\\.0\\.1:${port}.*SCAN_REQUIRED=false`));
  expect(waited.tasks.metadata.status).toBe('pending');
  expect(waited.outputs.thumbnails).toEqual([]);
  // Not served before a verdict.
  expect((await fetch(`${tusk.url}/files/${id}`, { headers: { 'Tus-Resumable': '1.0.0' } })).status).toBe(409);

  clamdDir = path.join(dir, 'clamd');
  await exec('bash', [requireTestEnv('TEST_CLAMD_SCRIPT'), 'start'], { env: { ...process.env, DIR: clamdDir, PORT: String(port) } });
  const doc = await watch.until(id, isTerminal);
  expect(doc.status).toBe('ready');
  expect(doc.reason).toBeUndefined();
  expect(doc.tasks.virus_scan.status).toBe('done');
  expect(doc.outputs.thumbnails.length).toBeGreaterThan(0);
  expect([...watch.seen].filter((s) => s.includes('failed'))).toEqual([]);
});

test('npm start without signatures: uploads wait for them; once they are there, JPEG, video, zip and EICAR end ready, ready, ready, rejected', async () => {
  // What `npm start` runs, with its own private Redis and file store under DATA_DIR; only the
  // signature directory is the test's (empty for now) instead of the system's.
  const dataDir = path.join(dir, 'app');
  const signatures = path.join(dir, 'signatures');
  await fs.mkdir(signatures);
  const tusk = await startTusk({ mode: 'all', env: { DATA_DIR: dataDir, CLAMD_DATABASE_DIR: signatures, STEP_BACKOFF: '200ms' } });
  started.push(tusk);
  expect(tusk.output()).toMatch(/virus scanning: waiting for signatures: .*freshclam.*or set SCAN_REQUIRED=false/);

  const ids = {
    jpeg: await upload(tusk, await fs.readFile(await makeJpeg(path.join(dir, 'p.jpg'), 800, 600)), 'p.jpg', 'image/jpeg'),
    video: await upload(tusk, await fs.readFile(await makeVideo(path.join(dir, 'v.mp4'), { width: 320, height: 240, seconds: 2 })), 'v.mp4', 'video/mp4'),
    zip: await upload(tusk, await fs.readFile(await makeZip(path.join(dir, 'a.zip'), { 'a.txt': 'hello' })), 'a.zip', 'application/zip'),
    eicar: await upload(tusk, EICAR, 'eicar.txt', 'text/plain'),
  };
  const watch = watcher(tusk);
  for (const id of Object.values(ids)) {
    const doc = await watch.until(id, waiting);
    expect(doc.reason?.message).toMatch(/waiting for signatures/);
  }

  // The signatures arrive (as freshclam would put them): whole files, by rename.
  const source = path.join(requireTestEnv('TEST_CLAMD_DIR'), 'db');
  for (const name of await fs.readdir(source)) {
    await fs.copyFile(path.join(source, name), path.join(signatures, `${name}.part`));
    await fs.rename(path.join(signatures, `${name}.part`), path.join(signatures, name));
  }
  const outcome: Record<string, string> = {};
  for (const [name, id] of Object.entries(ids)) outcome[name] = (await watch.until(id, isTerminal)).status;
  expect(outcome).toEqual({ jpeg: 'ready', video: 'ready', zip: 'ready', eicar: 'rejected' });
  const eicar = await watch.until(ids.eicar, isTerminal);
  expect(eicar.reason).toMatchObject({ code: 'infected', signature: expect.stringMatching(/EICAR/) });
  expect([...watch.seen].filter((s) => s.includes('failed'))).toEqual([]);
  expect(tusk.output()).toMatch(/private clamd started/);

  // A clean stop takes the private clamd and Redis with it.
  expect((await tusk.kill()).code).toBe(0);
  const { stdout } = await exec('pgrep', ['-af', dataDir]).catch(() => ({ stdout: '' }));
  expect(stdout).toBe('');
});
