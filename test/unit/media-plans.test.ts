// The pure rules of the processing steps, without ffmpeg, sharp or clamd: which types the allow-list
// lets through, which thumbnail widths and HLS renditions are planned for a source, how long a
// transcode may run, and which frame rate ffmpeg will encode at. The steps on real media:
// test/integration/steps-*.test.ts.
import { isAllowedType } from '../../lib/allowed-types.js';
import { DEFAULT_ALLOWED_TYPES, parseAllowList } from '../../workers/steps/detect-type.js';
import { encodeFrameRate } from '../../workers/steps/limits.js';
import { plannedWidths } from '../../workers/steps/thumbnail.js';
import { planLadder, transcodeTimeoutMs } from '../../workers/steps/transcode.js';

test('allow-list: wildcards, parameters, case; ALLOWED_TYPES parsed', () => {
  expect(isAllowedType('image/heic', ['image/*'])).toBe(true);
  expect(isAllowedType('video/mp4', ['image/*', 'audio/*'])).toBe(false);
  expect(isAllowedType('AUDIO/OGG; codecs=opus', ['audio/ogg'])).toBe(true);
  expect(isAllowedType('application/pdf', ['*/*'])).toBe(true);
  expect(isAllowedType('application/x-msdownload', DEFAULT_ALLOWED_TYPES)).toBe(false);
  expect(isAllowedType('garbage', ['*'])).toBe(false);
  expect(parseAllowList('image/*, video/mp4  application/pdf')).toEqual(['image/*', 'video/mp4', 'application/pdf']);
  expect(parseAllowList('')).toEqual([...DEFAULT_ALLOWED_TYPES]);
});

test('plannedWidths: ascending, never wider than the source, clipped once to the source width', () => {
  expect(plannedWidths([1280, 160, 640], 4000)).toEqual([160, 640, 1280]);
  expect(plannedWidths([160, 640, 1280], 800)).toEqual([160, 640, 800]);
  expect(plannedWidths([160, 640, 1280], 640)).toEqual([160, 640]);
  expect(plannedWidths([160, 640, 1280], 100)).toEqual([100]);
});

test('planLadder: never above the source; small sources get one rung at their own size', () => {
  expect(planLadder(1080).map((r) => r.short)).toEqual([480, 720, 1080]);
  expect(planLadder(2160).map((r) => r.short)).toEqual([480, 720, 1080]);
  expect(planLadder(720).map((r) => r.short)).toEqual([480, 720]);
  expect(planLadder(480).map((r) => r.short)).toEqual([480]);
  expect(planLadder(241).map((r) => r.short)).toEqual([240]);
  expect(transcodeTimeoutMs(30)).toBe(420_000);
  expect(transcodeTimeoutMs(undefined)).toBeGreaterThan(transcodeTimeoutMs(300));
});

test('transcode time limit: TRANSCODE_MIN_TIMEOUT + factor x duration, the duration counted at most up to MAX_MEDIA_DURATION', () => {
  const opts = { baseMs: 120_000, perSecondMs: 10_000, maxDurationSec: 4 * 3600 };
  expect(transcodeTimeoutMs(3600, opts)).toBe(120_000 + 10_000 * 3600);
  expect(transcodeTimeoutMs(100 * 3600, opts)).toBe(120_000 + 10_000 * 4 * 3600);
  expect(transcodeTimeoutMs(undefined, opts)).toBe(120_000 + 10_000 * 600); // unknown: 10 minutes
  expect(transcodeTimeoutMs(undefined, { ...opts, maxDurationSec: 60 })).toBe(120_000 + 10_000 * 60);
});

test('the frame rate ffmpeg encodes at: r_frame_rate, unless implausibly fine with an ordinary average', () => {
  expect(encodeFrameRate({ index: 0, r_frame_rate: '30/1', avg_frame_rate: '30/1' })).toBe(30);
  expect(encodeFrameRate({ index: 0, r_frame_rate: '90000/1', avg_frame_rate: '30000/1001' })).toBeCloseTo(29.97, 2);
  expect(encodeFrameRate({ index: 0, r_frame_rate: '120/1', avg_frame_rate: '24/1' })).toBe(120);
});
