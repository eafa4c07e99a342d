// The pure rules of the processing steps, without ffmpeg, sharp or clamd: which types the allow-list
// lets through, when a declared type contradicts the detected one, which thumbnail widths and HLS renditions are planned for a source, how long a
// transcode may run, and which frame rate ffmpeg will encode at. The steps on real media:
// test/integration/steps-*.test.ts.
import { isAllowedType } from '../../lib/allowed-types.js';
import { typeMismatch, UNKNOWN_TYPE } from '../../workers/steps/detect-type.js';
import { encodeFrameRate } from '../../workers/steps/limits.js';
import { plannedWidths } from '../../workers/steps/thumbnail.js';
import { planLadder, transcodeTimeoutMs } from '../../workers/steps/transcode.js';

test('allow-list: wildcards, parameters, case', () => {
  expect(isAllowedType('image/heic', ['image/*'])).toBe(true);
  expect(isAllowedType('video/mp4', ['image/*', 'audio/*'])).toBe(false);
  expect(isAllowedType('AUDIO/OGG; codecs=opus', ['audio/ogg'])).toBe(true);
  expect(isAllowedType('application/pdf', ['*/*'])).toBe(true);
  expect(isAllowedType('application/x-msdownload', ['image/*', 'video/*', 'audio/*', 'application/pdf'])).toBe(false);
  expect(isAllowedType('garbage', ['*'])).toBe(false);
});

test('typeMismatch: a declaration that the bytes contradict; aliases, generic and uncheckable ones are not', () => {
  const zip = { mime: 'application/zip', ext: 'zip', kind: 'other' as const, magic: true };
  const jpeg = { mime: 'image/jpeg', ext: 'jpg', kind: 'image' as const, magic: true };
  const text = { mime: 'text/plain', ext: 'txt', kind: 'other' as const, magic: false };
  expect(typeMismatch('image/png', zip)).toEqual({ declared: 'image/png', detected: 'application/zip' });
  expect(typeMismatch('image/png', jpeg)).toEqual({ declared: 'image/png', detected: 'image/jpeg' });
  expect(typeMismatch('text/plain', zip)).toEqual({ declared: 'text/plain', detected: 'application/zip' });
  // A type file-type knows by its signature, on bytes without one.
  expect(typeMismatch('image/png', text)).toEqual({ declared: 'image/png', detected: 'text/plain' });
  expect(typeMismatch('application/pdf', UNKNOWN_TYPE)).toEqual({ declared: 'application/pdf', detected: 'application/octet-stream' });
  // Agreement, other names of the same type, parameters, case.
  expect(typeMismatch('application/zip', zip)).toBeUndefined();
  expect(typeMismatch('application/x-zip-compressed', zip)).toBeUndefined();
  expect(typeMismatch('IMAGE/JPG', jpeg)).toBeUndefined();
  expect(typeMismatch('audio/webm', { mime: 'video/webm', ext: 'webm', kind: 'video', magic: true })).toBeUndefined();
  expect(typeMismatch('audio/mp4', { mime: 'audio/x-m4a', ext: 'm4a', kind: 'audio', magic: true })).toBeUndefined();
  // Nothing checkable claimed.
  for (const declared of [undefined, null, '', 'application/octet-stream', 'nonsense', 'text/csv; charset=utf-8', 'application/json']) {
    expect(typeMismatch(declared, declared === 'application/octet-stream' ? zip : text)).toBeUndefined();
  }
  expect(typeMismatch('text/csv', UNKNOWN_TYPE)).toBeUndefined();
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
