// GET on an upload URL: a finished upload is served whole or by Range, with validators and safe
// headers; an unfinished one is never served. Both stores, real tusk process, real S3 / disk.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import os from 'node:os';
import path from 'node:path';
import { createTestBucket, s3ClientForTests, testRedisUrl, tuskEnvForTests, uniqueRedisPrefix } from '../helpers/services.js';
import { startTusk, type TuskProcess } from '../helpers/tusk-process.js';
import { TUS, createUpload, headUpload, patchRest, type StoreKind } from '../helpers/tus.js';

const MiB = 1024 * 1024;

let bucket = '';
let dataDir = '';

async function envFor(kind: StoreKind): Promise<Record<string, string>> {
  if (kind === 's3') {
    bucket = await createTestBucket('download');
    return { ...tuskEnvForTests(bucket), LOG_LEVEL: 'warn', SCAN_REQUIRED: 'false' };
  }
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'tusk-download-'));
  return { STORAGE: 'file', DATA_DIR: dataDir, REDIS_URL: testRedisUrl(), REDIS_PREFIX: uniqueRedisPrefix(), LOG_LEVEL: 'warn', SCAN_REQUIRED: 'false' };
}

describe.each<StoreKind>(['s3', 'file'])('GET /files/<id> (%s store)', (kind) => {
  let tusk: TuskProcess;
  let url: string;
  const data = randomBytes(30 * MiB);

  beforeAll(async () => {
    tusk = await startTusk({ env: await envFor(kind) });
    const created = await createUpload(tusk.url, {
      length: data.length,
      metadata: { filename: 'clip "final"\r\nSet-Cookie: x=1;.mp4', filetype: 'video/mp4' },
    });
    url = created.url;
    expect(created.status).toBe(201);
    expect(await patchRest(url, data, 0, 8 * MiB)).toBe(data.length);
  });
  afterAll(async () => {
    await tusk?.kill();
    if (kind === 'file') await rm(dataDir, { recursive: true, force: true });
  });

  test('the whole file, byte-identical, with validators and safe headers', async () => {
    const res = await fetch(url);
    expect(res.status).toBe(200);
    const body = Buffer.from(await res.arrayBuffer());
    expect(createHash('sha256').update(body).digest('hex')).toBe(createHash('sha256').update(data).digest('hex'));
    expect(res.headers.get('content-length')).toBe(String(data.length));
    expect(res.headers.get('content-type')).toBe('video/mp4');
    expect(res.headers.get('accept-ranges')).toBe('bytes');
    expect(res.headers.get('etag')).toMatch(/^(W\/)?".+"$/);
    expect(Date.parse(res.headers.get('last-modified') ?? '')).not.toBeNaN();
    const disposition = res.headers.get('content-disposition') ?? '';
    expect(disposition).toMatch(/^inline; filename="[^"\r\n]*"; filename\*=UTF-8''[^\s";]+$/);
    expect(disposition).not.toMatch(/[\r\n]/);
    expect(res.headers.get('set-cookie')).toBeNull();
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('tus-resumable')).toBe('1.0.0');
  });

  test('a Range in the middle answers 206 with exactly those bytes', async () => {
    const start = 12 * MiB + 123;
    const end = 17 * MiB + 456;
    const res = await fetch(url, { headers: { Range: `bytes=${start}-${end}` } });
    expect(res.status).toBe(206);
    expect(res.headers.get('content-range')).toBe(`bytes ${start}-${end}/${data.length}`);
    const body = Buffer.from(await res.arrayBuffer());
    expect(body.length).toBe(end - start + 1);
    expect(body.equals(data.subarray(start, end + 1))).toBe(true);
  });

  test('suffix range, unsatisfiable range, conditional GET', async () => {
    const tail = await fetch(url, { headers: { Range: 'bytes=-1000' } });
    expect(tail.status).toBe(206);
    expect(Buffer.from(await tail.arrayBuffer()).equals(data.subarray(data.length - 1000))).toBe(true);

    const beyond = await fetch(url, { headers: { Range: `bytes=${data.length}-` } });
    expect(beyond.status).toBe(416);
    expect(beyond.headers.get('content-range')).toBe(`bytes */${data.length}`);
    await beyond.arrayBuffer();

    const first = await fetch(url, { method: 'GET', headers: { Range: 'bytes=0-0' } });
    const etag = first.headers.get('etag') ?? '';
    await first.arrayBuffer();
    const notModified = await fetch(url, { headers: { 'If-None-Match': etag } });
    expect(notModified.status).toBe(304);
  });

  test('an unfinished upload is not served, and its HEAD carries Upload-Expires', async () => {
    const created = await createUpload(tusk.url, { length: 10 * MiB });
    await patchRest(created.url, randomBytes(6 * MiB), 0, 6 * MiB);
    const res = await fetch(created.url);
    expect(res.status).toBe(404);
    expect(await res.text()).toMatch(/not finished/i);
    const head = await headUpload(created.url, { ...TUS });
    expect(head.status).toBe(200);
    expect(Date.parse(head.headers.get('upload-expires') ?? '')).toBeGreaterThan(Date.now());
  });

  test('HTML declared by the client is an attachment, sandboxed', async () => {
    const created = await createUpload(tusk.url, { length: 25, metadata: { filename: '../../index.html', filetype: 'text/html' } });
    await patchRest(created.url, Buffer.from('<script>alert(1)</script>'), 0);
    const res = await fetch(created.url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-disposition')).toBe(`attachment; filename="index.html"; filename*=UTF-8''index.html`);
    expect(res.headers.get('content-security-policy')).toContain('sandbox');
    expect(await res.text()).toBe('<script>alert(1)</script>');
  });

  test('a finished upload whose bytes were removed from storage answers 404 or 410, not 503', async () => {
    const created = await createUpload(tusk.url, { length: 5, metadata: { filename: 'gone.txt' } });
    await patchRest(created.url, Buffer.from('hello'), 0);
    if (kind === 's3') {
      const client = s3ClientForTests();
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: created.id }));
      client.destroy();
    } else {
      await rm(path.join(dataDir, 'uploads', created.id));
    }
    const res = await fetch(created.url);
    expect([404, 410]).toContain(res.status);
    await res.arrayBuffer();
  });

  test('an unknown upload answers 404', async () => {
    const res = await fetch(`${tusk.url}/files/does-not-exist`);
    expect(res.status).toBe(404);
  });
});
