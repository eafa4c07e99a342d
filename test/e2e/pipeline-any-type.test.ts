// Any file type is accepted by default: a .zip, a .bin and a .csv are scanned, get their type
// (from the bytes) and size as metadata, no derivatives, and end `ready`; a declared type that
// the bytes contradict is reported, not refused. Refusing types is opt-in (ALLOWED_TYPES), by the
// bytes, whatever the name and declared type say.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { makePng, makeZip } from '../helpers/fixtures-media.js';
import { testRedisUrl, uniqueRedisPrefix } from '../helpers/services.js';
import { startTusk, type TuskProcess } from '../helpers/tusk-process.js';
import { createUpload } from '../helpers/tus.js';
import { isTerminal, waitForStatus, type StatusDoc } from '../helpers/pipeline.js';

let dir: string;
let zip: Buffer;
const started: TuskProcess[] = [];

async function start(extra: Record<string, string> = {}): Promise<TuskProcess> {
  const tusk = await startTusk({
    mode: 'all',
    env: {
      STORAGE: 'file',
      DATA_DIR: path.join(dir, `data-${started.length}`),
      REDIS_URL: testRedisUrl(),
      REDIS_PREFIX: uniqueRedisPrefix(),
      CLAMD_SOCKET: process.env.TEST_CLAMD_SOCKET!,
      STEP_BACKOFF: '500ms',
      ...extra,
    },
  });
  started.push(tusk);
  return tusk;
}

async function processed(tusk: TuskProcess, body: Buffer, filename: string, filetype?: string): Promise<StatusDoc> {
  const created = await createUpload(tusk.url, { length: body.length, body, metadata: filetype ? { filename, filetype } : { filename } });
  expect(created.status).toBe(201);
  return waitForStatus(tusk.url, created.id, isTerminal, { context: () => tusk.output().slice(-4000) });
}

beforeAll(async () => {
  if (!process.env.TEST_CLAMD_SOCKET) throw new Error('TEST_CLAMD_SOCKET not set: clamd did not start in global setup');
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tusk-any-type-'));
  zip = await fs.readFile(await makeZip(path.join(dir, 'archive.zip'), { 'readme.txt': 'hello\n', 'data/table.csv': 'a,b\n1,2\n' }));
});

afterAll(async () => {
  await Promise.all(started.map((t) => t.kill()));
  if (dir) await fs.rm(dir, { recursive: true, force: true });
});

test('by default a .zip, a .bin and a .csv are scanned, described and ready; a contradicting declared type is reported', async () => {
  const tusk = await start();
  const bin = Buffer.concat([Buffer.alloc(64, 0x01), Buffer.alloc(1), Buffer.alloc(2000, 0x9c)]); // no signature, not text

  const docs = {
    zip: await processed(tusk, zip, 'archive.zip', 'application/zip'),
    bin: await processed(tusk, bin, 'firmware.bin', 'application/octet-stream'),
    csv: await processed(tusk, Buffer.from('name,size\nalpha,1\nbeta,2\n'), 'table.csv', 'text/csv'),
    disguised: await processed(tusk, zip, 'picture.png', 'image/png'),
  };
  for (const doc of Object.values(docs)) {
    expect({ status: doc.status, reason: doc.reason }).toEqual({ status: 'ready', reason: undefined });
    expect(doc.tasks.virus_scan.status).toBe('done');
    expect(doc.tasks.metadata.status).toBe('done');
    expect(doc.tasks.thumbnail.status).toBe('skipped');
    expect(doc.tasks.transcode.status).toBe('skipped');
    expect(doc.outputs.thumbnails).toEqual([]);
  }
  expect(docs.zip.outputs.metadata).toEqual({ kind: 'other', mime: 'application/zip', size: zip.length });
  expect(docs.bin.outputs.metadata).toEqual({ kind: 'other', mime: 'application/octet-stream', size: bin.length });
  expect(docs.csv.outputs.metadata).toMatchObject({ kind: 'other', mime: 'text/plain' });
  expect(docs.csv.outputs.metadata).not.toHaveProperty('typeMismatch');
  expect(docs.disguised.outputs.metadata).toEqual({
    kind: 'other',
    mime: 'application/zip',
    size: zip.length,
    typeMismatch: { declared: 'image/png', detected: 'application/zip' },
  });
});

test('ALLOWED_TYPES (opt-in) refuses by the bytes: an executable named .jpg and a zip are rejected, an image is not', async () => {
  const tusk = await start({ ALLOWED_TYPES: 'image/*,video/*' });
  const exe = await processed(tusk, await fs.readFile('/bin/true'), 'holiday.jpg', 'image/jpeg');
  expect(exe.status).toBe('rejected');
  expect(exe.reason).toMatchObject({ code: 'type_not_allowed', message: expect.stringMatching(/application\/x-elf.*image\/jpeg.*not allowed/) });
  expect(exe.outputs.thumbnails).toEqual([]);
  const archive = await processed(tusk, zip, 'archive.zip', 'application/zip');
  expect(archive.reason?.code).toBe('type_not_allowed');
  const png = await fs.readFile(await makePng(path.join(dir, 'dot.png')));
  expect((await processed(tusk, png, 'dot.png', 'image/png')).status).toBe('ready');
});
