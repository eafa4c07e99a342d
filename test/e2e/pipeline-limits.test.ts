// The configured bounds on audio/video work, end to end (real Redis, S3, clamd, ffprobe, ffmpeg):
// one tusk in `all` mode with a small MAX_MEDIA_DURATION and MAX_VIDEO_PIXEL_FRAMES. Media over
// them is rejected with its reason at the metadata step, before anything is decoded; media
// within them is processed as usual.
import fs from 'node:fs/promises';
import path from 'node:path';
import { makeAudio, makeVideo, tempDir } from '../helpers/fixtures-media.js';
import { createTestBucket, tuskEnvForTests } from '../helpers/services.js';
import { startTusk, type TuskProcess } from '../helpers/tusk-process.js';
import { createUpload } from '../helpers/tus.js';
import { isTerminal, waitForStatus } from '../helpers/pipeline.js';

let tusk: TuskProcess;
let dir: string;

beforeAll(async () => {
  if (!process.env.TEST_CLAMD_SOCKET) throw new Error('TEST_CLAMD_SOCKET not set: clamd did not start in global setup');
  dir = await tempDir('tusk-pipeline-limits-');
  tusk = await startTusk({
    mode: 'all',
    env: {
      ...tuskEnvForTests(await createTestBucket('pipeline-limits')),
      CLAMD_SOCKET: process.env.TEST_CLAMD_SOCKET,
      MAX_MEDIA_DURATION: '20s',
      // 640x360 at 30 fps: 4 s is 2.8e7 pixel-frames, 10 s is 6.9e7
      MAX_VIDEO_PIXEL_FRAMES: '50000000',
      TRANSCODE_PRESET: 'ultrafast',
    },
  });
});

afterAll(async () => {
  await tusk?.kill();
  if (dir) await fs.rm(dir, { recursive: true, force: true });
});

async function uploadAndWait(file: string, filetype: string) {
  const body = await fs.readFile(file);
  const created = await createUpload(tusk.url, { length: body.length, body, metadata: { filename: path.basename(file), filetype } });
  expect(created.status).toBe(201);
  return waitForStatus(tusk.url, created.id, isTerminal, { context: () => tusk.output().slice(-6000) });
}

test('audio longer than MAX_MEDIA_DURATION is rejected as too_long before it is transcoded', async () => {
  const doc = await uploadAndWait(await makeAudio(path.join(dir, 'long.m4a'), 30), 'audio/mp4');
  expect(doc.status).toBe('rejected');
  expect(doc.reason).toEqual({ code: 'too_long', message: 'the media lasts 30 s, longer than the 20 s this server processes' });
  expect(doc.tasks.metadata.status).toBe('failed');
  expect(doc.tasks.transcode.status).toBe('pending');
  expect(doc.outputs.metadata).toMatchObject({ kind: 'audio' });
});

test('video over MAX_VIDEO_PIXEL_FRAMES is rejected as too_much_work; one within the limits ends ready', async () => {
  const big = await uploadAndWait(await makeVideo(path.join(dir, 'ten.mp4'), { width: 640, height: 360, seconds: 10 }), 'video/mp4');
  expect(big.status).toBe('rejected');
  expect(big.reason?.code).toBe('too_much_work');
  expect(big.reason?.message).toBe('300 frames of 640x360 video (10 s at 30 fps) is 6.91e7 pixel-frames to transcode, more than the 5.00e7 this server processes');
  expect(big.tasks.thumbnail.status).toBe('pending');
  expect(big.tasks.transcode.status).toBe('pending');

  const small = await uploadAndWait(await makeVideo(path.join(dir, 'four.mp4'), { width: 640, height: 360, seconds: 4 }), 'video/mp4');
  expect(small.status).toBe('ready');
  expect(small.outputs.hls?.master_url).toMatch(/master\.m3u8/);
  expect(small.outputs.thumbnails.length).toBeGreaterThan(0);
});
