// metadata + validation steps: type detection from the bytes, allow-list, ffprobe/sharp metadata,
// the limits on audio/video work. Media generated at test time (test/helpers/fixtures-media.ts). The
// allow-list and frame-rate rules alone: test/unit/media-plans.test.ts.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { isAllowedType } from '../../lib/allowed-types.js';
import { detectType, UNKNOWN_TYPE } from '../../workers/steps/detect-type.js';
import { mediaWork } from '../../workers/steps/limits.js';
import { extractMetadata } from '../../workers/steps/metadata.js';
import { MediaRefusedError, type MediaLimits } from '../../workers/steps/types.js';
import { MediaError } from '../../workers/media/errors.js';
import { ffprobe, FfmpegError, runFfmpeg } from '../../workers/media/ffmpeg.js';
import {
  makeAudio,
  makeAudioWithCover,
  makeJpeg,
  makeLoopedStillVideo,
  makePng,
  makePngBomb,
  makeRotatedJpegWithGps,
  makeScreenRecording,
  makeSlideshow,
  makeVideo,
  tempDir,
  truncateCopy,
} from '../helpers/fixtures-media.js';

const exec = promisify(execFile);

let dir: string;
let video1080: string;
const MEDIA_ONLY = ['image/*', 'video/*', 'audio/*', 'application/pdf'];

beforeAll(async () => {
  dir = await tempDir('tusk-steps-meta-');
  video1080 = await makeVideo(path.join(dir, 'v1080.mp4'), { width: 1920, height: 1080, seconds: 2 });
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe('detectType / isAllowedType', () => {
  test('a .jpg that is really an ELF executable is not an image and not allowed', async () => {
    const fake = path.join(dir, 'holiday.jpg');
    await fs.copyFile('/bin/true', fake);
    const detected = await detectType(fake);
    expect(detected.kind).not.toBe('image');
    expect(detected.mime).toBe('application/x-elf');
    expect(isAllowedType(detected.mime, MEDIA_ONLY)).toBe(false);
    expect(isAllowedType(detected.mime, ['image/*'])).toBe(false);
    expect(isAllowedType(detected.mime, ['*/*'])).toBe(true);
  });

  test('without a signature: text is text/plain, anything else application/octet-stream (no magic either way)', async () => {
    const txt = path.join(dir, 'a.png');
    await fs.writeFile(txt, 'hello, I am not a PNG\nnaïve,ünïcödé\n');
    expect(await detectType(txt)).toEqual({ mime: 'text/plain', ext: 'txt', kind: 'other', magic: false });
    const bin = path.join(dir, 'random.bin');
    await fs.writeFile(bin, Buffer.concat([Buffer.alloc(64, 0x01), Buffer.alloc(1), Buffer.alloc(4000, 0x9c)])); // no signature, not UTF-8
    expect(await detectType(bin)).toEqual(UNKNOWN_TYPE);
    expect(isAllowedType(UNKNOWN_TYPE.mime, MEDIA_ONLY)).toBe(false);
  });

  test('PNG, JPEG, MP4, M4A are detected from their bytes whatever the name', async () => {
    const png = await makePng(path.join(dir, 'png.bin'));
    const jpg = await makeJpeg(path.join(dir, 'jpeg.txt'));
    const m4a = await makeAudio(path.join(dir, 'tone.m4a'), 1);
    expect(await detectType(png)).toEqual({ mime: 'image/png', ext: 'png', kind: 'image', magic: true });
    expect(await detectType(jpg)).toEqual({ mime: 'image/jpeg', ext: 'jpg', kind: 'image', magic: true });
    expect(await detectType(video1080)).toEqual({ mime: 'video/mp4', ext: 'mp4', kind: 'video', magic: true });
    const audio = await detectType(m4a);
    expect(audio.kind).toBe('audio');
    for (const d of [png, jpg, video1080, m4a]) expect(isAllowedType((await detectType(d)).mime, MEDIA_ONLY)).toBe(true);
  });

});

describe('extractMetadata', () => {
  test('2 s 1080p H.264/AAC video via ffprobe', async () => {
    const started = Date.now();
    const meta = await extractMetadata(video1080, { mime: 'video/mp4', ext: 'mp4', kind: 'video' });
    const ms = Date.now() - started;
    expect(meta).toMatchObject({ kind: 'video', width: 1920, height: 1080, displayWidth: 1920, displayHeight: 1080, videoCodec: 'h264', audioCodec: 'aac', rotation: 0, fps: 30, hasAudio: true, hasVideo: true });
    expect(meta.durationSec).toBeCloseTo(2, 0);
    expect(meta.container).toMatch(/mp4/);
    expect(meta.bitrate).toBeGreaterThan(0);
    expect(ms).toBeLessThan(2000);
  });

  test('rotation from the display matrix (ffprobe rotation 90 = counter-clockwise -> 270 clockwise, display size swapped)', async () => {
    const rotated = await makeVideo(path.join(dir, 'rot.mp4'), { width: 320, height: 240, seconds: 1, audio: false, rotate: 90 });
    const meta = await extractMetadata(rotated, { mime: 'video/mp4', ext: 'mp4', kind: 'video' });
    expect(meta).toMatchObject({ width: 320, height: 240, rotation: 270, displayWidth: 240, displayHeight: 320, hasAudio: false });
    expect(meta.audioCodec).toBeUndefined();
  });

  test('audio-only M4A', async () => {
    const m4a = await makeAudio(path.join(dir, 'tone3.m4a'), 3);
    const meta = await extractMetadata(m4a, { mime: 'audio/x-m4a', ext: 'm4a', kind: 'audio' });
    expect(meta).toMatchObject({ kind: 'audio', audioCodec: 'aac', hasVideo: false, hasAudio: true });
    expect(meta.durationSec).toBeCloseTo(3, 0);
    expect(meta.width).toBeUndefined();
  });

  test('JPEG with EXIF orientation 6 and GPS: dimensions, orientation, hasGps only (no coordinates)', async () => {
    const jpg = await makeRotatedJpegWithGps(path.join(dir, 'gps.jpg'), 600, 400);
    const meta = await extractMetadata(jpg, { mime: 'image/jpeg', ext: 'jpg', kind: 'image' });
    expect(meta).toMatchObject({ kind: 'image', format: 'jpeg', width: 600, height: 400, displayWidth: 400, displayHeight: 600, orientation: 6, hasGps: true });
    expect(Object.keys(meta).filter((k) => /gps|lat|lon/i.test(k))).toEqual(['hasGps']);
    expect(JSON.stringify(meta)).not.toMatch(/GPS|Latitude|Longitude/);
    const plain = await extractMetadata(await makeJpeg(path.join(dir, 'plain.jpg')), { mime: 'image/jpeg', ext: 'jpg', kind: 'image' });
    expect(plain.hasGps).toBe(false);
  });

  test('PNG bomb -> MediaError pixel_limit at once', async () => {
    const bomb = await makePngBomb(path.join(dir, 'bomb.png'));
    const started = Date.now();
    const err = await extractMetadata(bomb, { mime: 'image/png', ext: 'png', kind: 'image' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MediaError);
    expect((err as MediaError).code).toBe('pixel_limit');
    expect(Date.now() - started).toBeLessThan(1000);
  });

  test('truncated MP4 (first 30%) -> MediaError truncated with a reason, quickly', async () => {
    const truncated = await truncateCopy(video1080, path.join(dir, 'trunc.mp4'), 0.3);
    const started = Date.now();
    const err = await extractMetadata(truncated, { mime: 'video/mp4', ext: 'mp4', kind: 'video' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MediaError);
    expect((err as MediaError).code).toBe('truncated');
    expect((err as MediaError).reason).toMatch(/moov atom not found|Invalid data/);
    expect(Date.now() - started).toBeLessThan(3000);
  });
});

describe('limits on audio/video work (from ffprobe, before anything is decoded)', () => {
  // The defaults of MAX_MEDIA_DURATION, MAX_VIDEO_PIXEL_FRAMES and MIN_VIDEO_BITS_PER_PIXEL.
  const limits: MediaLimits = { maxDurationSec: 4 * 3600, maxPixelFrames: 1e12, minBitsPerPixel: 0.00025 };
  const video = { mime: 'video/mp4', ext: 'mp4', kind: 'video' } as const;

  test('the 4 MB looped one-hour 1080p video is refused as media_bomb; a screen recording, a slideshow and audio with cover art are not', async () => {
    const bomb = await makeLoopedStillVideo(path.join(dir, 'looped.mp4'), { width: 1920, height: 1080, fps: 30, seconds: 3600 });
    const err = await extractMetadata(bomb, video, { limits }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MediaRefusedError);
    const refused = err as MediaRefusedError;
    expect(refused.code).toBe('media_bomb');
    expect(refused.reason).toMatch(/108000 frames of 1920x1080 video \(1 h 0 min at 30 fps\) but holds only 4\.\d MB: 0\.000\d+ bits per pixel per frame/);
    expect(refused.work).toMatchObject({ width: 1920, height: 1080, frameRate: 30, frames: 108000 });
    expect(refused.work.bitsPerPixel).toBeLessThan(limits.minBitsPerPixel);
    expect(refused.metadata).toMatchObject({ kind: 'video', width: 1920, height: 1080 });
    expect(refused.metadata?.durationSec).toBeCloseTo(3600, 0);
    // The floor applies to videos claiming more than 10 minutes of 1080p30: judge these short
    // samples all the same (their bits per pixel do not depend on their length).
    const judged = { ...limits, bombCheckFromPixelFrames: 0 };
    const samples = {
      'screen recording': await makeScreenRecording(path.join(dir, 'screen.mp4'), 12),
      'slideshow (5 s text slides)': await makeSlideshow(path.join(dir, 'slides.mp4'), 3, 5),
      'testsrc2 fixture': video1080,
    };
    for (const [name, file] of Object.entries(samples)) {
      const meta = await extractMetadata(file, video, { limits: judged });
      expect(meta.width).toBe(1920);
      const work = mediaWork(await ffprobe(file, 10_000), (await fs.stat(file)).size);
      console.log(`${name}: ${work.bitsPerPixel?.toPrecision(2)} bits per pixel per frame (floor ${limits.minBitsPerPixel})`);
      expect(work.bitsPerPixel).toBeGreaterThan(2 * limits.minBitsPerPixel);
    }
    // A cover picture is not video to transcode: no pixel-frames, never a bomb.
    const cover = await makeAudioWithCover(path.join(dir, 'cover.m4a'), 10);
    const coverMeta = await extractMetadata(cover, { mime: 'audio/x-m4a', ext: 'm4a', kind: 'audio' }, { limits: judged });
    expect(coverMeta).toMatchObject({ kind: 'audio', hasVideo: false, hasAudio: true });
    expect(mediaWork(await ffprobe(cover, 10_000), 1).pixelFrames).toBeUndefined();
  });

  test('over MAX_MEDIA_DURATION: too_long; over MAX_VIDEO_PIXEL_FRAMES: too_much_work; within both: metadata', async () => {
    // video1080: 2 s of 1920x1080 at 30 fps = 60 frames = 1.24e8 pixel-frames
    const tooLong = await extractMetadata(video1080, video, { limits: { ...limits, maxDurationSec: 1.5 } }).catch((e: unknown) => e);
    expect(tooLong).toBeInstanceOf(MediaRefusedError);
    expect((tooLong as MediaRefusedError).code).toBe('too_long');
    expect((tooLong as MediaRefusedError).reason).toBe('the media lasts 2 s, longer than the 1.5 s this server processes');
    const tooMuch = await extractMetadata(video1080, video, { limits: { ...limits, maxPixelFrames: 1e8 } }).catch((e: unknown) => e);
    expect(tooMuch).toBeInstanceOf(MediaRefusedError);
    expect((tooMuch as MediaRefusedError).code).toBe('too_much_work');
    expect((tooMuch as MediaRefusedError).reason).toBe('60 frames of 1920x1080 video (2 s at 30 fps) is 1.24e8 pixel-frames to transcode, more than the 1.00e8 this server processes');
    expect(await extractMetadata(video1080, video, { limits: { ...limits, maxPixelFrames: 2e8 } })).toMatchObject({ width: 1920 });
    const m4a = await makeAudio(path.join(dir, 'tone-limit.m4a'), 3);
    const audioTooLong = await extractMetadata(m4a, { mime: 'audio/x-m4a', ext: 'm4a', kind: 'audio' }, { limits: { ...limits, maxDurationSec: 2 } }).catch((e: unknown) => e);
    expect((audioTooLong as MediaRefusedError).code).toBe('too_long');
  });
});

describe('workers/media/ffmpeg', () => {
  test('ffprobe of a missing binary fails as FfmpegError(spawnFailed), not MediaError', async () => {
    const err = await ffprobe(video1080, 5000, { ffprobePath: '/nonexistent/ffprobe' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FfmpegError);
    expect((err as FfmpegError).details.spawnFailed).toBe(true);
    const meta = await extractMetadata(video1080, { mime: 'video/mp4', ext: 'mp4', kind: 'video' }, { ffmpeg: { ffprobePath: '/nonexistent/ffprobe' } }).catch((e: unknown) => e);
    expect(meta).toBeInstanceOf(FfmpegError);
  });

  test('runFfmpeg: time limit kills the process; abort kills it; stderr tail in errors', async () => {
    const endless = ['-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=30', '-f', 'null', '-'];
    let started = Date.now();
    const timedOut = await runFfmpeg(endless, { timeoutMs: 500 }).catch((e: unknown) => e);
    expect(timedOut).toBeInstanceOf(FfmpegError);
    expect((timedOut as FfmpegError).details.timedOut).toBe(true);
    expect(Date.now() - started).toBeLessThan(4000);

    const controller = new AbortController();
    started = Date.now();
    setTimeout(() => controller.abort(), 300);
    const aborted = await runFfmpeg(endless, { timeoutMs: 60_000, signal: controller.signal }).catch((e: unknown) => e);
    expect((aborted as FfmpegError).details.aborted).toBe(true);
    expect(Date.now() - started).toBeLessThan(4000);

    const bad = await runFfmpeg(['-i', path.join(dir, 'nope.mp4'), '-f', 'null', '-'], { timeoutMs: 10_000 }).catch((e: unknown) => e);
    expect((bad as FfmpegError).details.stderrTail).toMatch(/No such file/);
    expect(String(bad)).toMatch(/No such file/);
  });

  test('abort and time limit end the whole process group: nothing ffmpeg (or a wrapper) started survives', async () => {
    // A wrapper that runs ffmpeg as its own child, as a shell script or a nice/ionice prefix would:
    // signalling only the direct child would leave that ffmpeg running.
    const wrapper = path.join(dir, 'ffmpeg-wrapper.sh');
    await fs.writeFile(wrapper, '#!/bin/sh\nffmpeg "$@" &\nwait\n', { mode: 0o755 });
    const running = async (marker: string) => (await exec('pgrep', ['-f', marker]).catch(() => ({ stdout: '' }))).stdout.split('\n').filter(Boolean).map(Number);
    const gone = async (marker: string) => {
      for (let i = 0; i < 50 && (await running(marker)).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
      return (await running(marker)).length === 0;
    };
    const endless = (marker: string) => ['-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=30', '-metadata', `comment=${marker}`, '-f', 'null', '-'];
    const markers = [`tusk-group-${randomBytes(6).toString('hex')}`, `tusk-group-${randomBytes(6).toString('hex')}`];
    try {
      const controller = new AbortController();
      const aborting = runFfmpeg(endless(markers[0]!), { timeoutMs: 60_000, signal: controller.signal, paths: { ffmpegPath: wrapper } }).catch((e: unknown) => e);
      for (let i = 0; i < 50 && (await running(markers[0]!)).length < 2; i++) await new Promise((r) => setTimeout(r, 100));
      expect((await running(markers[0]!)).length).toBe(2); // the wrapper and its ffmpeg
      controller.abort();
      // A survivor that keeps the pipes open would also keep runFfmpeg from ever settling.
      const settled = <T>(p: Promise<T>) => Promise.race([p, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 10_000))]);
      const aborted = await settled(aborting);
      expect(aborted).toBeInstanceOf(FfmpegError);
      expect((aborted as FfmpegError).details.aborted).toBe(true);
      expect(await gone(markers[0]!)).toBe(true);

      const timedOut = await settled(runFfmpeg(endless(markers[1]!), { timeoutMs: 1000, paths: { ffmpegPath: wrapper } }).catch((e: unknown) => e));
      expect(timedOut).toBeInstanceOf(FfmpegError);
      expect((timedOut as FfmpegError).details.timedOut).toBe(true);
      expect(await gone(markers[1]!)).toBe(true);
    } finally {
      for (const marker of markers) for (const pid of await running(marker)) process.kill(pid, 'SIGKILL');
    }
  });
});
