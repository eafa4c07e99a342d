// transcode step with real ffmpeg: HLS ladder + MP4 fallback, audio-only HLS, bad input.
// Clips are short and the tests pass preset 'ultrafast' (production default: veryfast). The ladder
// and the time limit alone: test/unit/media-plans.test.ts.
import fs from 'node:fs/promises';
import path from 'node:path';
import { ffprobe } from '../../workers/media/ffmpeg.js';
import { parseMasterPlaylist, transcode } from '../../workers/steps/transcode.js';
import { MediaError } from '../../workers/media/errors.js';
import { makeAudio, makeVideo, probeJson, tempDir, truncateCopy } from '../helpers/fixtures-media.js';

let dir: string;
beforeAll(async () => {
  dir = await tempDir('tusk-steps-tc-');
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

/** Parses a media playlist; returns its segment URIs (throws unless it is a complete VOD playlist). */
async function mediaPlaylist(file: string): Promise<string[]> {
  const text = await fs.readFile(file, 'utf8');
  const lines = text.split('\n').map((l) => l.trim());
  expect(lines[0]).toBe('#EXTM3U');
  expect(lines).toContain('#EXT-X-ENDLIST');
  const target = Number(lines.find((l) => l.startsWith('#EXT-X-TARGETDURATION:'))?.split(':')[1]);
  expect(target).toBeLessThanOrEqual(7);
  const segments = lines.filter((l) => l && !l.startsWith('#'));
  expect(segments.length).toBeGreaterThan(0);
  return segments;
}

test('4 s 1080p video -> 3 renditions + master + MP4, progress increasing to 100', async () => {
  const src = await makeVideo(path.join(dir, 'src1080.mp4'), { width: 1920, height: 1080, seconds: 4 });
  const probe = await ffprobe(src, 10_000);
  const outDir = path.join(dir, 'out1080');
  const progress: number[] = [];
  const result = await transcode(src, probe, { outDir, timeoutMs: 120_000, preset: 'ultrafast', onProgress: (p) => progress.push(p) });
  console.log(`transcode 4 s 1080p (3 renditions + MP4, ultrafast): ${result.elapsedMs} ms; progress calls: ${progress.join(',')}`);

  expect(result.hls.master).toBe('hls/master.m3u8');
  expect(result.mp4).toBe('video.mp4');
  expect(result.hls.renditions.map((r) => [r.width, r.height, r.playlist])).toEqual([
    [854, 480, 'hls/480p/index.m3u8'],
    [1280, 720, 'hls/720p/index.m3u8'],
    [1920, 1080, 'hls/1080p/index.m3u8'],
  ]);
  for (const r of result.hls.renditions) expect(r.bandwidth).toBeGreaterThan(100_000);

  const master = await fs.readFile(path.join(outDir, result.hls.master), 'utf8');
  expect(master.startsWith('#EXTM3U')).toBe(true);
  expect(parseMasterPlaylist(master).size).toBe(3);
  expect(master).toMatch(/CODECS="avc1\.[0-9a-f]+,mp4a\.40\.2"/);

  for (const r of result.hls.renditions) {
    const playlist = path.join(outDir, r.playlist);
    const segments = await mediaPlaylist(playlist);
    const first = await probeJson(path.join(path.dirname(playlist), segments[0]!));
    const v = first.streams.find((s) => s.codec_type === 'video');
    const a = first.streams.find((s) => s.codec_type === 'audio');
    expect(v).toMatchObject({ codec_name: 'h264', height: r.height });
    expect(a).toMatchObject({ codec_name: 'aac' });
  }

  const mp4 = await probeJson(path.join(outDir, result.mp4!));
  expect(mp4.streams.find((s) => s.codec_type === 'video')).toMatchObject({ codec_name: 'h264', height: 720, width: 1280 });
  expect(mp4.streams.find((s) => s.codec_type === 'audio')).toMatchObject({ codec_name: 'aac' });
  expect(Number(mp4.format.duration)).toBeCloseTo(4, 0);
  expect(Number(mp4.streams.find((s) => s.codec_type === 'video')?.start_time ?? 0)).toBeLessThan(0.2); // remuxed from the 720p rung: no mpegts offset
  // +faststart: the moov box comes before mdat
  const head = (await fs.readFile(path.join(outDir, result.mp4!))).subarray(0, 4096).toString('latin1');
  expect(head.indexOf('moov')).toBeGreaterThan(0);
  expect(head.indexOf('moov')).toBeLessThan(head.indexOf('mdat') === -1 ? Infinity : head.indexOf('mdat'));

  expect(progress.length).toBeGreaterThan(1);
  expect([...progress].sort((x, y) => x - y)).toEqual(progress);
  expect(new Set(progress).size).toBe(progress.length);
  expect(progress.at(-1)).toBe(100);

  // A second run (retry) replaces the outputs: same layout, no leftovers.
  await fs.writeFile(path.join(outDir, 'hls', 'stale.ts'), 'x');
  await transcode(src, probe, { outDir, timeoutMs: 120_000, preset: 'ultrafast' });
  expect((await fs.readdir(path.join(outDir, 'hls'))).sort()).toEqual(['1080p', '480p', '720p', 'master.m3u8']);
});

test('480p source without audio -> only the 480p rendition (no upscaling), video-only HLS', async () => {
  const src = await makeVideo(path.join(dir, 'src480.mp4'), { width: 854, height: 480, seconds: 2, audio: false });
  const outDir = path.join(dir, 'out480');
  const result = await transcode(src, await ffprobe(src, 10_000), { outDir, timeoutMs: 60_000, preset: 'ultrafast' });
  expect(result.hls.renditions.map((r) => r.height)).toEqual([480]);
  const segments = await mediaPlaylist(path.join(outDir, result.hls.renditions[0]!.playlist));
  const seg = await probeJson(path.join(outDir, 'hls', '480p', segments[0]!));
  expect(seg.streams.map((s) => s.codec_type)).toEqual(['video']);
  const mp4 = await probeJson(path.join(outDir, result.mp4!));
  expect(mp4.streams.find((s) => s.codec_type === 'video')).toMatchObject({ height: 480 });
});

test('a source between rungs (600p) -> ladder [480] and an MP4 encoded at the source size (not a remux)', async () => {
  const src = await makeVideo(path.join(dir, 'src600.mp4'), { width: 1000, height: 600, seconds: 1 });
  const outDir = path.join(dir, 'out600');
  const result = await transcode(src, await ffprobe(src, 10_000), { outDir, timeoutMs: 60_000, preset: 'ultrafast' });
  expect(result.hls.renditions.map((r) => r.height)).toEqual([480]);
  const mp4 = await probeJson(path.join(outDir, result.mp4!));
  expect(mp4.streams.find((s) => s.codec_type === 'video')).toMatchObject({ codec_name: 'h264', height: 600, width: 1000 });
  expect(mp4.streams.find((s) => s.codec_type === 'audio')).toMatchObject({ codec_name: 'aac' });
});

test('a source smaller than 480p gets one rendition at its own size', async () => {
  const src = await makeVideo(path.join(dir, 'src240.mp4'), { width: 320, height: 240, seconds: 1 });
  const result = await transcode(src, await ffprobe(src, 10_000), { outDir: path.join(dir, 'out240'), timeoutMs: 60_000, preset: 'ultrafast' });
  expect(result.hls.renditions.map((r) => [r.width, r.height, r.playlist])).toEqual([[320, 240, 'hls/240p/index.m3u8']]);
});

test('audio only (3 s sine, m4a) -> one AAC HLS rendition, no MP4', async () => {
  const src = await makeAudio(path.join(dir, 'tone.m4a'), 3);
  const outDir = path.join(dir, 'outaudio');
  const progress: number[] = [];
  const result = await transcode(src, await ffprobe(src, 10_000), { outDir, timeoutMs: 60_000, onProgress: (p) => progress.push(p) });
  expect(result.mp4).toBeUndefined();
  expect(result.hls.renditions).toEqual([{ height: 0, width: 0, bandwidth: expect.any(Number), playlist: 'hls/audio/index.m3u8' }]);
  const segments = await mediaPlaylist(path.join(outDir, 'hls/audio/index.m3u8'));
  const seg = await probeJson(path.join(outDir, 'hls', 'audio', segments[0]!));
  expect(seg.streams.map((s) => [s.codec_type, s.codec_name])).toEqual([['audio', 'aac']]);
  expect(await fs.readFile(path.join(outDir, 'hls/master.m3u8'), 'utf8')).toMatch(/mp4a\.40\.2/);
  expect(progress.at(-1)).toBe(100);
});

test('truncated MP4 (first 30%) -> MediaError with a reason from transcode, no hang', async () => {
  const src = await makeVideo(path.join(dir, 'full.mp4'), { width: 640, height: 360, seconds: 3 });
  const probe = await ffprobe(src, 10_000); // probe of the intact file: transcode itself must notice
  const truncated = await truncateCopy(src, path.join(dir, 'trunc.mp4'), 0.3);
  const started = Date.now();
  const err = await transcode(truncated, probe, { outDir: path.join(dir, 'outtrunc'), timeoutMs: 30_000, preset: 'ultrafast' }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(MediaError);
  expect((err as MediaError).code).toBe('truncated');
  expect((err as MediaError).reason).toMatch(/moov atom not found|Invalid data/);
  expect(Date.now() - started).toBeLessThan(5000);
});

test('time limit: a transcode that runs too long is killed and reported as timeout', async () => {
  const src = await makeVideo(path.join(dir, 'long.mp4'), { width: 1920, height: 1080, seconds: 6 });
  const started = Date.now();
  const err = await transcode(src, await ffprobe(src, 10_000), { outDir: path.join(dir, 'outlong'), timeoutMs: 300, preset: 'veryfast' }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(MediaError);
  expect((err as MediaError).code).toBe('timeout');
  expect(Date.now() - started).toBeLessThan(4000);
});
