// The processing pipeline end to end against real Redis, S3 (Ceph RGW), clamd (test signatures),
// ffmpeg and sharp: one tusk in `all` mode, uploads over tus, the status API, SSE and a local
// webhook receiver (the only mock). Media is generated here with ffmpeg lavfi; none is committed.
import { execFile } from 'node:child_process';
import { createHmac } from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { stepJobId, THUMBNAIL_QUEUE, TRANSCODE_QUEUE } from '../../lib/queues.js';
import { makeLoopedStillVideo } from '../helpers/fixtures-media.js';
import { createTestBucket, s3ClientForTests, testRedisUrl, tuskEnvForTests } from '../helpers/services.js';
import { startTusk, type TuskProcess } from '../helpers/tusk-process.js';
import { createUpload, sleep } from '../helpers/tus.js';
import { fetchStatus, isTerminal, waitForStatus, type StatusDoc as Doc } from '../helpers/pipeline.js';

const exec = promisify(execFile);


const SECRET = 'test-webhook-secret';
const EICAR = Buffer.from('X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*', 'latin1');

interface Delivery {
  event: string;
  upload_id: string;
  run: number;
  status: string;
  validSignature: boolean;
  body: Record<string, unknown>;
}

let tusk: TuskProcess;
let tuskEnv: Record<string, string>;
let bucket: string;
let dir: string;
let receiver: http.Server;
const deliveries: Delivery[] = [];
const s3 = s3ClientForTests();

async function ffmpeg(args: string[]): Promise<void> {
  await exec('ffmpeg', ['-hide_banner', '-nostdin', '-loglevel', 'error', '-y', ...args], { maxBuffer: 16 << 20 });
}

const status = (id: string) => fetchStatus(tusk.url, id);
const waitFor = (id: string, done: (doc: Doc) => boolean, timeoutMs?: number) =>
  waitForStatus(tusk.url, id, done, { timeoutMs, context: () => `--- tusk output ---\n${tusk.output().slice(-6000)}` });
const terminal = isTerminal;

async function upload(body: Buffer, filename: string, filetype: string): Promise<string> {
  const created = await createUpload(tusk.url, { length: body.length, body, metadata: { filename, filetype } });
  expect(created.status).toBe(201);
  return created.id;
}

async function keys(prefix: string): Promise<string[]> {
  const out = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
  return (out.Contents ?? []).map((o) => o.Key!);
}

beforeAll(async () => {
  if (!process.env.TEST_CLAMD_SOCKET) throw new Error('TEST_CLAMD_SOCKET not set: clamd did not start in global setup');
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tusk-pipeline-'));
  receiver = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const expected = `sha256=${createHmac('sha256', SECRET).update(raw).digest('hex')}`;
      const body = JSON.parse(raw.toString('utf8')) as Record<string, unknown>;
      deliveries.push({
        event: String(body.event),
        upload_id: String(body.upload_id),
        run: Number(body.run),
        status: String(body.status),
        validSignature: req.headers['x-tusk-signature'] === expected,
        body,
      });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const port = (receiver.address() as { port: number }).port;
  bucket = await createTestBucket('pipeline');
  tuskEnv = tuskEnvForTests(bucket);
  tusk = await startTusk({
    mode: 'all',
    env: {
      ...tuskEnv,
      CLAMD_SOCKET: process.env.TEST_CLAMD_SOCKET,
      WEBHOOK_URL: `http://127.0.0.1:${port}/hook`,
      WEBHOOK_SECRET: SECRET,
      STEP_BACKOFF: '500ms',
      CONCURRENCY_TRANSCODE: '1',
    },
  });
});

afterAll(async () => {
  await tusk?.kill();
  await new Promise((resolve) => receiver?.close(resolve));
  s3.destroy();
  if (dir) await fs.rm(dir, { recursive: true, force: true });
});

test('unknown upload: 404 with a JSON error', async () => {
  const res = await status('no-such-upload');
  expect(res.status).toBe(404);
  expect(res.body).toEqual({ error: { code: 'not_found', message: expect.any(String) } });
});

test('EICAR via tus: rejected with the signature, object quarantined, no derivative, signed webhook', async () => {
  const id = await upload(EICAR, 'eicar.jpg', 'image/jpeg');
  const doc = await waitFor(id, terminal);
  expect(doc.status).toBe('rejected');
  expect(doc.reason?.code).toBe('infected');
  expect(doc.reason?.signature).toMatch(/EICAR/i);
  expect(doc.tasks.virus_scan.status).toBe('done');
  expect(doc.tasks.thumbnail.status).toBe('pending');
  expect(doc.outputs.thumbnails).toEqual([]);
  await expect(s3.send(new HeadObjectCommand({ Bucket: bucket, Key: id }))).rejects.toThrow();
  expect(await keys(`quarantine/${id}`)).toEqual([`quarantine/${id}`]);
  expect(await keys(`derived/${id}/`)).toEqual([]);
  // Out of reach through tusk too: the tus download route does not serve it.
  const download = await fetch(`${tusk.url}/files/${id}`, { headers: { 'Tus-Resumable': '1.0.0' } });
  const served = Buffer.from(await download.arrayBuffer());
  expect(served.includes(Buffer.from('EICAR-STANDARD-ANTIVIRUS-TEST-FILE'))).toBe(false);
  expect(download.status).toBe(403); // rejected: never served (and its bytes are in quarantine)
  await waitForDelivery(id, 'upload.rejected');
  const rejected = deliveries.filter((d) => d.upload_id === id && d.event === 'upload.rejected');
  expect(rejected).toHaveLength(1);
  expect(rejected[0]!.validSignature).toBe(true);
  expect(deliveries.some((d) => d.upload_id === id && d.event === 'upload.finished' && d.validSignature)).toBe(true);
});

test('an empty upload is rejected as empty (clamd gives no verdict on 0 bytes; never "clean")', async () => {
  const created = await createUpload(tusk.url, { length: 0, metadata: { filename: 'empty.jpg', filetype: 'image/jpeg' } });
  expect(created.status).toBe(201);
  const doc = await waitFor(created.id, terminal);
  expect(doc.status).toBe('rejected');
  expect(doc.reason?.code).toBe('empty');
  expect(doc.outputs.thumbnails).toEqual([]);
});

test('a JPEG: ready with thumbnails that download through their presigned URLs; reprocess runs again', async () => {
  const file = path.join(dir, 'photo.jpg');
  await ffmpeg(['-f', 'lavfi', '-i', 'testsrc2=size=1600x1200', '-frames:v', '1', file]);
  const id = await upload(await fs.readFile(file), 'photo.jpg', 'image/jpeg');
  const doc = await waitFor(id, terminal);
  expect(doc.status).toBe('ready');
  expect(doc.tasks.transcode.status).toBe('skipped');
  expect(doc.outputs.metadata).toMatchObject({ width: 1600, height: 1200 });
  const widths = [...new Set(doc.outputs.thumbnails.map((t) => t.width))];
  expect(widths).toEqual([160, 640, 1280]);
  const smallest = doc.outputs.thumbnails[0];
  const res = await fetch(smallest!.url);
  expect(res.status).toBe(200);
  expect((await res.arrayBuffer()).byteLength).toBeGreaterThan(100);
  await waitForDelivery(id, 'upload.ready');

  // A HEAD of the finished upload re-adds its process-upload job (same id): nothing runs again.
  const head = await fetch(`${tusk.url}/files/${id}`, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0' } });
  expect(head.status).toBe(200);
  await sleep(1000);
  expect((await status(id)).body).toMatchObject({ status: 'ready', run: 1 });
  expect(deliveries.filter((d) => d.upload_id === id && d.event === 'upload.finished')).toHaveLength(1);

  const again = await fetch(`${tusk.url}/api/uploads/${id}/reprocess`, { method: 'POST' });
  expect(again.status).toBe(202);
  const doc2 = await waitFor(id, (d) => d.run === 2 && terminal(d));
  expect(doc2.status).toBe('ready');
  await waitForDelivery(id, 'upload.ready', 2);
  expect(deliveries.filter((d) => d.upload_id === id && d.event === 'upload.ready').map((d) => d.run).sort()).toEqual([1, 2]);
});

test('a 4 MB looped one-hour 1080p video is rejected as a media bomb at the metadata step: no thumbnail or transcode job is ever queued', async () => {
  const file = await makeLoopedStillVideo(path.join(dir, 'looped-hour.mp4'), { width: 1920, height: 1080, fps: 30, seconds: 3600 });
  const body = await fs.readFile(file);
  expect(body.length).toBeLessThan(5_000_000);
  const id = await upload(body, 'looped-hour.mp4', 'video/mp4');
  const uploadedAt = Date.now();
  const doc = await waitFor(id, terminal);
  process.stderr.write(`\n[measure] 4 MB looped 1 h 1080p: upload finished -> rejected ${Date.now() - uploadedAt} ms\n`);
  expect(doc.status).toBe('rejected');
  expect(doc.reason?.code).toBe('media_bomb');
  expect(doc.reason?.message).toMatch(/1920x1080 video \(1 h 0 min at 30 fps\) but holds only 4\.\d MB: .* bits per pixel per frame/);
  expect(doc.tasks.metadata.status).toBe('failed');
  expect(doc.tasks.thumbnail.status).toBe('pending');
  expect(doc.tasks.transcode.status).toBe('pending');
  expect(doc.outputs.metadata).toMatchObject({ kind: 'video', width: 1920, height: 1080 });
  expect(doc.outputs.thumbnails).toEqual([]);
  expect(doc.outputs.hls).toBeUndefined();
  expect(await keys(`derived/${id}/`)).toEqual([]);
  // The metadata step never added the second flow: neither job exists in its queue.
  const redis = new Redis(testRedisUrl(), { maxRetriesPerRequest: null });
  try {
    for (const [queueName, step] of [[TRANSCODE_QUEUE, 'transcode'], [THUMBNAIL_QUEUE, 'thumbnail']] as const) {
      const queue = new Queue(queueName, { connection: redis, prefix: `${tuskEnv.REDIS_PREFIX}bull` });
      expect(await queue.getJob(stepJobId(step, id, 1))).toBeUndefined();
      await queue.close();
    }
  } finally {
    redis.disconnect();
  }
  await waitForDelivery(id, 'upload.rejected');
  const rejected = deliveries.find((d) => d.upload_id === id && d.event === 'upload.rejected');
  expect(rejected?.body).toMatchObject({ status: 'rejected', reason: { code: 'media_bomb' } });
});

test('audio: ready with an AAC HLS rendition and no thumbnail', async () => {
  const file = path.join(dir, 'tone.m4a');
  await ffmpeg(['-f', 'lavfi', '-i', 'sine=frequency=440', '-t', '4', '-c:a', 'aac', file]);
  const id = await upload(await fs.readFile(file), 'tone.m4a', 'audio/mp4');
  const doc = await waitFor(id, terminal);
  expect(doc.status).toBe('ready');
  expect(doc.tasks.thumbnail.status).toBe('skipped');
  expect(doc.outputs.thumbnails).toEqual([]);
  expect(doc.outputs.hls?.master_url).toMatch(/master\.m3u8/);
  expect(doc.outputs.metadata).toMatchObject({ kind: 'audio' });
});

test('10 s 1080p video: ready with 3 HLS renditions, an MP4 and thumbnails; SSE shows progress', async () => {
  const file = path.join(dir, 'clip.mp4');
  await ffmpeg([
    '-f', 'lavfi', '-i', 'testsrc2=size=1920x1080:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440',
    '-t', '10', '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', file,
  ]);
  const body = await fs.readFile(file);
  const created = await createUpload(tusk.url, { length: body.length, metadata: { filename: 'clip.mp4', filetype: 'video/mp4' } });
  const id = created.id;
  expect((await status(id)).body.status).toBe('uploading');

  // SSE: subscribe before the upload finishes.
  const events: Array<{ at: number; doc: Doc }> = [];
  const controller = new AbortController();
  const sse = (async () => {
    const res = await fetch(`${tusk.url}/api/uploads/${id}/events`, { signal: controller.signal });
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      let cut;
      while ((cut = buffer.indexOf('\n\n')) >= 0) {
        const frame = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = frame.split('\n').find((l) => l.startsWith('data: '));
        if (data) events.push({ at: Date.now(), doc: JSON.parse(data.slice(6)) as Doc });
      }
    }
  })().catch(() => {});

  const patch = await fetch(created.url, {
    method: 'PATCH',
    headers: { 'Tus-Resumable': '1.0.0', 'Upload-Offset': '0', 'Content-Type': 'application/offset+octet-stream' },
    body: body as Uint8Array<ArrayBuffer>,
  });
  expect(patch.status).toBe(204);
  const finishedAt = Date.now();
  const doc = await waitFor(id, terminal, 240_000);
  const readyAt = Date.now();
  controller.abort();
  await sse;
  expect(doc.status).toBe('ready');
  expect(doc.outputs.metadata).toMatchObject({ width: 1920, height: 1080 });
  expect(doc.outputs.hls?.master_url).toMatch(/master\.m3u8/);
  expect(doc.outputs.mp4_url).toMatch(/\.mp4/);
  expect(doc.outputs.thumbnails.length).toBeGreaterThanOrEqual(3);

  // The master playlist lists 3 renditions; the first segment of each plays (ffprobe).
  const master = await (await fetch(doc.outputs.hls!.master_url)).text();
  const variants = master.split('\n').filter((l) => l && !l.startsWith('#'));
  expect(master).toMatch(/^#EXTM3U/);
  expect(variants).toHaveLength(3);
  for (const variant of variants) {
    // tusk serves the playlists (signed URLs: /api/derived/<id>/<token>/<path>); the stored ones are read here.
    const playlistKey = `derived/${id}/${new URL(variant).pathname.split('/').slice(5).join('/')}`;
    const playlist = await objectText(playlistKey);
    expect(playlist).toMatch(/#EXTINF/);
    const segment = playlist.split('\n').find((l) => l && !l.startsWith('#'))!;
    const segFile = path.join(dir, `${id}-${variant.replace(/\W+/g, '_')}-seg`);
    await fs.writeFile(segFile, Buffer.from(await objectBytes(path.posix.join(path.posix.dirname(playlistKey), segment))));
    const { stdout } = await exec('ffprobe', ['-v', 'error', '-show_streams', '-of', 'json', segFile]);
    expect((JSON.parse(stdout) as { streams: Array<{ codec_type?: string; codec_name?: string }> }).streams.some((s) => s.codec_type === 'video' && s.codec_name === 'h264')).toBe(true);
  }
  const mp4 = await fetch(doc.outputs.mp4_url!);
  expect(mp4.status).toBe(200);

  // SSE: the first event is the current document; progress of the transcode was streamed.
  expect(events.length).toBeGreaterThan(3);
  expect(['uploading', 'uploaded']).toContain(events[0]!.doc.status);
  const progress = events.map((e) => e.doc.tasks.transcode.progress).filter((p) => typeof p === 'number' && p > 0 && p < 100);
  expect(progress.length).toBeGreaterThan(0);
  expect(events[events.length - 1]!.doc.status).toBe('ready');
  const firstThumb = events.find((e) => e.doc.outputs.thumbnails.length > 0);
  process.stderr.write(
    `\n[measure] 10 s 1080p: upload finished -> first thumbnail ${firstThumb ? firstThumb.at - finishedAt : 'n/a'} ms, -> ready ${readyAt - finishedAt} ms\n`,
  );
  await waitForDelivery(id, 'upload.ready');
  expect(deliveries.filter((d) => d.upload_id === id && d.event === 'upload.ready')).toHaveLength(1);
}, 300_000);

async function objectBytes(key: string): Promise<Uint8Array> {
  const res = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return res.Body!.transformToByteArray();
}
async function objectText(key: string): Promise<string> {
  return Buffer.from(await objectBytes(key)).toString('utf8');
}

async function waitForDelivery(id: string, event: string, run = 1, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!deliveries.some((d) => d.upload_id === id && d.event === event && d.run === run)) {
    if (Date.now() > deadline) throw new Error(`no ${event} webhook for ${id} run ${run}; got ${JSON.stringify(deliveries.map((d) => [d.event, d.upload_id, d.run]))}`);
    await sleep(100);
  }
}
