// HLS, thumbnails and the MP4 play from the URLs the status API gives, as they are, with
// authentication on and a private bucket: ffprobe and ffmpeg read the master playlist URL (every
// variant playlist and segment it leads to) without any token - on S3 (Ceph RGW) and on the file
// store. Hostile input: tampered, expired or another upload's signatures, traversal, a deleted
// upload; the bucket's own objects stay unreadable without a signature.
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { SignJWT } from 'jose';
import { DerivedUrlSigner } from '../../lib/signed-urls.js';
import { makeVideo } from '../helpers/fixtures-media.js';
import { createTestBucket, testRedisUrl, testS3Settings, tuskEnvForTests, uniqueRedisPrefix } from '../helpers/services.js';
import { startTusk, type TuskProcess } from '../helpers/tusk-process.js';
import { TUS, OCTET, bodyOf, rawRequest, sleep } from '../helpers/tus.js';
import type { StatusDoc } from '../helpers/pipeline.js';

const exec = promisify(execFile);
const JWT_SECRET = 'test-secret-of-at-least-32-bytes-0123456789';
const URL_SECRET = 'url-signing-secret-for-tests-0123456789abcdef';

let dir: string;
let video: Buffer;

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tusk-hls-'));
  video = await fs.readFile(await makeVideo(path.join(dir, 'clip.mp4'), { width: 320, height: 240, seconds: 2, fps: 15 }));
});
afterAll(async () => {
  if (dir) await fs.rm(dir, { recursive: true, force: true });
});

const token = (sub: string) => new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setIssuedAt().setExpirationTime('10m').sign(new TextEncoder().encode(JWT_SECRET));

describe.each(['s3', 'file'] as const)('signed HLS on the %s store', (store) => {
  let tusk: TuskProcess;
  let jwt: string;
  let id: string;
  let otherId: string;
  let doc: StatusDoc;

  async function status(uploadId: string): Promise<StatusDoc> {
    const res = await fetch(`${tusk.url}/api/uploads/${uploadId}`, { headers: { Authorization: `Bearer ${jwt}` } });
    return (await res.json()) as StatusDoc;
  }

  async function upload(body: Buffer, filename: string): Promise<string> {
    const res = await fetch(`${tusk.url}/files/`, {
      method: 'POST',
      headers: { ...TUS, Authorization: `Bearer ${jwt}`, 'Upload-Length': String(body.length), 'Content-Type': OCTET, 'Upload-Metadata': `filename ${Buffer.from(filename).toString('base64')}` },
      body: bodyOf(body),
    });
    expect(res.status).toBe(201);
    return (res.headers.get('location') ?? '').split('/').pop() as string;
  }

  async function ready(uploadId: string): Promise<StatusDoc> {
    const deadline = Date.now() + 120_000;
    let last: StatusDoc | undefined;
    while (Date.now() < deadline) {
      last = await status(uploadId);
      if (['ready', 'rejected', 'failed'].includes(last.status)) return last;
      await sleep(300);
    }
    throw new Error(`not ready: ${JSON.stringify(last)}\n${tusk.output().slice(-4000)}`);
  }

  beforeAll(async () => {
    const env =
      store === 's3'
        ? { ...tuskEnvForTests(await createTestBucket('hls')) }
        : { STORAGE: 'file', DATA_DIR: path.join(dir, `data-${store}`), REDIS_URL: testRedisUrl(), REDIS_PREFIX: uniqueRedisPrefix() };
    tusk = await startTusk({
      mode: 'all',
      env: { ...env, AUTH_JWT_SECRET: JWT_SECRET, URL_SIGNING_SECRET: URL_SECRET, SCAN_REQUIRED: 'false', THUMBNAIL_WIDTHS: '160', THUMBNAIL_FORMATS: 'jpeg', TRANSCODE_PRESET: 'ultrafast' },
    });
    jwt = await token('viewer');
    [id, otherId] = await Promise.all([upload(video, 'clip.mp4'), upload(video, 'clip2.mp4')]);
    doc = await ready(id);
    expect(doc.status).toBe('ready');
    await ready(otherId);
  }, 300_000);
  afterAll(async () => {
    await tusk?.kill();
  });

  test('ffprobe and ffmpeg play the master URL as given, without a token; every URL in the playlists is signed', async () => {
    const master = doc.outputs.hls?.master_url as string;
    expect(master.startsWith(`${tusk.url}/api/derived/${id}/`)).toBe(true);
    const masterRes = await fetch(master);
    expect(masterRes.status).toBe(200);
    expect(masterRes.headers.get('content-type')).toMatch(/mpegurl/);
    const text = await masterRes.text();
    const variants = text.split('\n').filter((l) => l && !l.startsWith('#'));
    expect(variants.length).toBeGreaterThan(0);
    for (const variant of variants) {
      expect(variant.startsWith(`${tusk.url}/api/derived/${id}/`)).toBe(true);
      const playlist = await (await fetch(variant)).text();
      const segments = playlist.split('\n').filter((l) => l && !l.startsWith('#'));
      expect(segments.length).toBeGreaterThan(0);
      for (const segment of segments) {
        if (store === 's3') expect(segment).toMatch(new RegExp(`^${testS3Settings().endpoint}/.*X-Amz-Signature=`));
        else expect(segment.startsWith(`${tusk.url}/api/derived/${id}/`)).toBe(true);
      }
      if (store === 's3') {
        // The bucket is private: the same object without the signature is refused.
        const unsigned = (segments[0] as string).split('?')[0] as string;
        expect((await fetch(unsigned)).status).toBe(403);
      }
    }
    const probe = await exec('ffprobe', ['-v', 'error', '-show_entries', 'format=duration:stream=codec_type,codec_name', '-of', 'json', master]);
    const probed = JSON.parse(probe.stdout) as { format: { duration: string }; streams: Array<{ codec_type: string; codec_name: string }> };
    expect(Number(probed.format.duration)).toBeGreaterThan(1.5);
    expect(probed.streams.some((s) => s.codec_type === 'video' && s.codec_name === 'h264')).toBe(true);
    // Every segment of the (first) rendition, decoded end to end.
    const decoded = await exec('ffmpeg', ['-v', 'error', '-nostdin', '-i', master, '-map', '0:v:0', '-f', 'null', '-'], { maxBuffer: 16 << 20 });
    expect(decoded.stderr).toBe('');
  });

  test('thumbnails and the MP4 load as given, without a token', async () => {
    const thumb = doc.outputs.thumbnails[0]?.url as string;
    const res = await fetch(thumb);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/image\/jpeg/);
    const mp4 = await exec('ffprobe', ['-v', 'error', '-show_entries', 'format=duration', '-of', 'json', doc.outputs.mp4_url as string]);
    expect(Number((JSON.parse(mp4.stdout) as { format: { duration: string } }).format.duration)).toBeGreaterThan(1.5);
  });

  test('hostile: tampered, expired, another upload\'s or a missing signature, traversal, a deleted upload', async () => {
    const master = doc.outputs.hls?.master_url as string;
    const tok = master.split('/')[6] as string;
    const [exp, sig] = tok.split('.') as [string, string];
    const flipped = `${exp}.${(sig[0] === 'A' ? 'B' : 'A') + sig.slice(1)}`;
    const signer = new DerivedUrlSigner(async () => Buffer.from(URL_SECRET), 60_000);
    const expired = await signer.token(id, Date.now() - 3_600_000);
    const future = `${Number(exp) + 60}.${sig}`;
    const otherTok = (await status(otherId)).outputs.hls?.master_url.split('/')[6] as string;
    const forged = (t: string, rest = 'hls/master.m3u8', upload = id) => `${tusk.url}/api/derived/${upload}/${t}/${rest}`;
    for (const [url, code] of [
      [forged(flipped), 403],
      [forged(expired), 403],
      [forged(future), 403],
      [forged(otherTok), 403],
      [forged(tok, 'hls/master.m3u8', otherId), 403],
      [forged('x'), 403],
      [forged(`${exp}.${'A'.repeat(43)}`), 403],
      [forged(tok, '../x/hls/master.m3u8'), 404],
      [forged(tok, '%2e%2e/hls/master.m3u8'), 404],
      [forged(tok, 'hls%2fmaster.m3u8'), 404],
      [forged(tok, 'hls/nothing.m3u8'), 404],
      [`${tusk.url}/api/derived/${id}/${tok}`, 404],
      [`${tusk.url}/api/derived/${id.toUpperCase()}/${tok}/hls/master.m3u8`, 404],
    ] as const) {
      // Sent as written: fetch would remove dot segments and their encodings.
      const res = await rawRequest(tusk.url, { method: 'GET', path: url.slice(tusk.url.length) });
      expect([url, res.status]).toEqual([url, code]);
      expect(res.headers['tusk-error-code']).toBe(code === 403 ? 'forbidden' : 'not_found');
    }
    const expiredRes = await fetch(forged(expired));
    expect(((await expiredRes.json()) as { error: { message: string } }).error.message).toMatch(/expired/);
    // Still served with the right signature; once the upload is deleted, not any more.
    expect((await fetch(master)).status).toBe(200);
    const del = await fetch(`${tusk.url}/files/${id}`, { method: 'DELETE', headers: { ...TUS, Authorization: `Bearer ${jwt}` } });
    expect(del.status).toBe(204);
    expect((await fetch(master)).status).toBe(404);
  });
});
