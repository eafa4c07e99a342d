// Pure checks of the pipeline's configuration and job ids (no services).
import { loadConfig, ConfigError } from '../../config/index.js';
import { signBody } from '../../workers/jobs/webhook.js';
import { stepJobId } from '../../lib/queues.js';
import { derivedKey } from '../../lib/s3-keys.js';

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('accepted');
}

test('pipeline defaults: scanning required, no clamd, move to quarantine, 160/640/1280 webp+jpeg, 1h URLs, all queues', () => {
  const p = loadConfig({}).pipeline;
  expect(p).toMatchObject({
    scanRequired: true,
    clamd: undefined,
    scanMaxBytes: 100 * 1024 * 1024,
    quarantineMode: 'move',
    thumbnailWidths: [160, 640, 1280],
    thumbnailFormats: ['webp', 'jpeg'],
    signedGetUrlTtlMs: 3_600_000,
    webhook: undefined,
    ffmpegPath: 'ffmpeg',
    ffprobePath: 'ffprobe',
    concurrency: { scan: 2, metadata: 2, thumbnail: 2, transcode: 1 },
  });
  expect(p.allowedTypes).toEqual(['*/*']);
  expect(p.clamdDatabaseDir).toBeUndefined();
  expect(p.workerQueues).toContain('transcode');
});

test('pipeline variables are parsed and validated', () => {
  const p = loadConfig({ CLAMD_HOST: 'clamav', CLAMD_PORT: '3310', SCAN_REQUIRED: 'false', THUMBNAIL_WIDTHS: '640, 160', THUMBNAIL_FORMATS: 'jpg', WORKER_QUEUES: 'transcode' }).pipeline;
  expect(p.clamd).toMatchObject({ host: 'clamav', port: 3310 });
  expect(p.scanRequired).toBe(false);
  expect(p.thumbnailWidths).toEqual([160, 640]);
  expect(p.thumbnailFormats).toEqual(['jpeg']);
  expect(p.workerQueues).toEqual(['transcode']);
  const problems = problemsOf({
    WEBHOOK_URL: 'https://example.com/hook',
    THUMBNAIL_WIDTHS: '160,abc',
    QUARANTINE_MODE: 'keep',
  }).join('\n');
  expect(problems).toMatch(/QUARANTINE_MODE/);
  expect(problemsOf({ WEBHOOK_URL: 'https://example.com/hook' }).join('\n')).toMatch(/WEBHOOK_SECRET/);
  expect(problemsOf({ THUMBNAIL_WIDTHS: '160,abc' }).join('\n')).toMatch(/THUMBNAIL_WIDTHS/);
  expect(problemsOf({ WORKER_QUEUES: 'transcode,nope' }).join('\n')).toMatch(/WORKER_QUEUES.*nope/);
  expect(problemsOf({ CLAMD_SOCKET: '/run/clamd.sock', CLAMD_HOST: 'x' }).join('\n')).toMatch(/CLAMD_SOCKET and CLAMD_HOST/);
  expect(problemsOf({ ALLOWED_TYPES: 'image/jpeg,jpeg' }).join('\n')).toMatch(/ALLOWED_TYPES/);
  expect(problemsOf({ ALLOWED_TYPES: ' , ' }).join('\n')).toMatch(/ALLOWED_TYPES/);
  expect(loadConfig({ ALLOWED_TYPES: 'image/*, application/zip' }).pipeline.allowedTypes).toEqual(['image/*', 'application/zip']);
  expect(problemsOf({ CLAMD_DATABASE_DIR: '/srv/clamav', CLAMD_HOST: 'clamav' }).join('\n')).toMatch(/CLAMD_DATABASE_DIR/);
});

test('deterministic keys and ids; no path tricks', () => {
  expect(stepJobId('transcode', 'abc', 2)).toBe('transcode.abc.r2');
  const id = 'ab'.repeat(16);
  expect(derivedKey(id, 'hls/720p/index.m3u8')).toBe(`derived/${id}/hls/720p/index.m3u8`);
  expect(() => derivedKey(id, '../../etc/passwd')).toThrow();
  expect(() => derivedKey('../x', 'a')).toThrow();
  expect(signBody('{"a":1}', 'k')).toMatch(/^sha256=[0-9a-f]{64}$/);
});
