// Fail closed: with scanning required and clamd unreachable, an upload is never treated as clean.
// The scan is retried with backoff, then the upload is `failed` (scanner_unavailable) and nothing
// is derived from it.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { freePort, testRedisUrl, uniqueRedisPrefix } from '../helpers/services.js';
import { startTusk, type TuskProcess } from '../helpers/tusk-process.js';
import { createUpload, sleep } from '../helpers/tus.js';
import { type StatusDoc as Doc } from '../helpers/pipeline.js';


let tusk: TuskProcess;
let dir: string;

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tusk-scanner-'));
  tusk = await startTusk({
    mode: 'all',
    env: {
      STORAGE: 'file',
      DATA_DIR: path.join(dir, 'data'),
      REDIS_URL: testRedisUrl(),
      REDIS_PREFIX: uniqueRedisPrefix(),
      // Nothing listens there.
      CLAMD_HOST: '127.0.0.1',
      CLAMD_PORT: String(await freePort()),
      STEP_ATTEMPTS: '3',
      STEP_BACKOFF: '200ms',
    },
  });
});

afterAll(async () => {
  await tusk?.kill();
  if (dir) await fs.rm(dir, { recursive: true, force: true });
});

test('clamd unreachable: retried, then failed visibly; no thumbnail', async () => {
  const png = Buffer.from('89504e470d0a1a0a0000000d4948445200000001000000010806000000' + '1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082', 'hex');
  const created = await createUpload(tusk.url, { length: png.length, body: png, metadata: { filename: 'a.png', filetype: 'image/png' } });
  expect(created.status).toBe(201);
  const seen = new Set<string>();
  let d: Doc | undefined;
  for (const deadline = Date.now() + 30_000; Date.now() < deadline; await sleep(50)) {
    d = (await (await fetch(`${tusk.url}/api/uploads/${created.id}`)).json()) as Doc;
    seen.add(d.tasks.virus_scan.status);
    if (['ready', 'rejected', 'failed'].includes(d.status)) break;
  }
  expect(d?.status).toBe('failed');
  expect(d!.reason?.code).toBe('scanner_unavailable');
  expect(d!.tasks.virus_scan.status).toBe('failed');
  expect(d!.tasks.metadata.status).toBe('pending');
  expect(d!.outputs.thumbnails).toEqual([]);
  expect(seen.has('retrying')).toBe(true);
  await expect(fs.readdir(path.join(dir, 'data', 'derived', created.id))).rejects.toThrow();
});
