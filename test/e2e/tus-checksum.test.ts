// tus checksum + checksum-trailer extensions against a real tusk process, both stores: a
// mismatch answers 460 and leaves the offset where it was; the right bytes then succeed.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { createTestBucket, testRedisUrl, tuskEnvForTests, uniqueRedisPrefix } from '../helpers/services.js';
import { startTusk, type TuskProcess } from '../helpers/tusk-process.js';
import { OCTET, TUS, createUpload, offsetOf, patchUpload, storedSha256, type StoreKind, type StoreTarget } from '../helpers/tus.js';

const MiB = 1024 * 1024;

function digest(algorithm: string, data: Buffer): string {
  if (algorithm === 'crc32') {
    const out = Buffer.alloc(4);
    out.writeUInt32BE(zlib.crc32(data) >>> 0);
    return out.toString('base64');
  }
  return createHash(algorithm).update(data).digest('base64');
}

/** PATCH with the checksum in an HTTP trailer of a chunked body (node:http; fetch cannot send trailers). */
function patchWithTrailer(url: string, offset: number, data: Buffer, checksum: string): Promise<{ status: number; offset: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method: 'PATCH',
      headers: { ...TUS, 'Upload-Offset': String(offset), 'Content-Type': OCTET, 'Transfer-Encoding': 'chunked', Trailer: 'Upload-Checksum' },
    });
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, offset: res.headers['upload-offset'] as string | undefined }));
    });
    req.on('error', reject);
    req.write(data.subarray(0, data.length >> 1));
    req.write(data.subarray(data.length >> 1));
    req.addTrailers({ 'Upload-Checksum': checksum });
    req.end();
  });
}

async function storeFor(kind: StoreKind): Promise<{ env: Record<string, string>; target: StoreTarget }> {
  if (kind === 's3') {
    const bucket = await createTestBucket('checksum');
    return { env: { ...tuskEnvForTests(bucket), LOG_LEVEL: 'warn' }, target: { kind, bucket } };
  }
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'tusk-checksum-test-'));
  return {
    env: { STORAGE: 'file', DATA_DIR: dataDir, REDIS_URL: testRedisUrl(), REDIS_PREFIX: uniqueRedisPrefix(), LOG_LEVEL: 'warn' },
    target: { kind, dataDir },
  };
}

describe.each<StoreKind>(['s3', 'file'])('checksum extension (%s store)', (kind) => {
  let tusk: TuskProcess;
  let target: StoreTarget;

  beforeAll(async () => {
    const store = await storeFor(kind);
    target = store.target;
    tusk = await startTusk({ env: store.env });
  });
  afterAll(async () => {
    await tusk?.kill();
    if (target?.dataDir) await rm(target.dataDir, { recursive: true, force: true });
  });

  test('OPTIONS advertises checksum, checksum-trailer and the algorithms', async () => {
    const res = await fetch(`${tusk.url}/files/`, { method: 'OPTIONS' });
    const extensions = (res.headers.get('tus-extension') ?? '').split(',');
    expect(extensions).toEqual(expect.arrayContaining(['checksum', 'checksum-trailer']));
    expect((res.headers.get('tus-checksum-algorithm') ?? '').split(',').sort()).toEqual(['crc32', 'md5', 'sha1', 'sha256', 'sha512']);
  });

  test('a mismatch answers 460 and moves nothing; the right bytes then complete byte-identical', async () => {
    const data = randomBytes(14 * MiB);
    const { url } = await createUpload(tusk.url, { length: data.length });
    const first = data.subarray(0, 6 * MiB);
    expect((await patchUpload(url, 0, first, { 'Upload-Checksum': `sha256 ${digest('sha256', first)}` })).status).toBe(204);
    expect(await offsetOf(url)).toBe(6 * MiB);

    const second = data.subarray(6 * MiB, 12 * MiB);
    const corrupted = Buffer.from(second);
    corrupted[1234] = corrupted[1234]! ^ 0xff;
    const bad = await patchUpload(url, 6 * MiB, corrupted, { 'Upload-Checksum': `sha256 ${digest('sha256', second)}` });
    expect(bad.status).toBe(460);
    expect(await offsetOf(url)).toBe(6 * MiB);

    expect((await patchUpload(url, 6 * MiB, second, { 'Upload-Checksum': `sha256 ${digest('sha256', second)}` })).status).toBe(204);
    const last = data.subarray(12 * MiB);
    expect((await patchUpload(url, 12 * MiB, last, { 'Upload-Checksum': `crc32 ${digest('crc32', last)}` })).status).toBe(204);
    expect(await offsetOf(url)).toBe(data.length);
    expect(await storedSha256(target, new URL(url).pathname.split('/').pop()!)).toBe(createHash('sha256').update(data).digest('hex'));
  });

  test.each(['sha1', 'md5', 'sha512', 'crc32'])('%s is verified', async (algorithm) => {
    const data = randomBytes(1000);
    const { url } = await createUpload(tusk.url, { length: 2000 });
    const wrong = await patchUpload(url, 0, data, { 'Upload-Checksum': `${algorithm} ${digest(algorithm, randomBytes(10))}` });
    expect(wrong.status).toBe(460);
    const right = await patchUpload(url, 0, data, { 'Upload-Checksum': `${algorithm} ${digest(algorithm, data)}` });
    expect(right.status).toBe(204);
    expect(right.headers.get('upload-offset')).toBe('1000');
  });

  test('an unsupported algorithm or a malformed header answers 400 and moves nothing', async () => {
    const data = randomBytes(100);
    const { url } = await createUpload(tusk.url, { length: 200 });
    expect((await patchUpload(url, 0, data, { 'Upload-Checksum': `sha3 ${digest('sha256', data)}` })).status).toBe(400);
    expect((await patchUpload(url, 0, data, { 'Upload-Checksum': 'sha256' })).status).toBe(400);
    expect((await patchUpload(url, 0, data, { 'Upload-Checksum': 'sha256 not*base64' })).status).toBe(400);
    expect(await offsetOf(url)).toBe(0);
  });

  test('checksum in a trailer: right one accepted, wrong one 460', async () => {
    const data = randomBytes(3 * MiB);
    const { url } = await createUpload(tusk.url, { length: data.length });
    const wrong = await patchWithTrailer(url, 0, data, `sha1 ${digest('sha1', randomBytes(8))}`);
    expect(wrong.status).toBe(460);
    expect(await offsetOf(url)).toBe(0);
    const right = await patchWithTrailer(url, 0, data, `sha1 ${digest('sha1', data)}`);
    expect(right.status).toBe(204);
    expect(right.offset).toBe(String(data.length));
  });

  test('creation-with-upload with a checksum', async () => {
    const data = randomBytes(4096);
    const bad = await createUpload(tusk.url, { length: 8192, body: data, headers: { 'Upload-Checksum': `md5 ${digest('md5', randomBytes(4))}` } });
    expect(bad.status).toBe(460);
    const good = await createUpload(tusk.url, { length: 8192, body: data, headers: { 'Upload-Checksum': `md5 ${digest('md5', data)}` } });
    expect(good.status).toBe(201);
    expect(good.headers.get('upload-offset')).toBe('4096');
  });
});
