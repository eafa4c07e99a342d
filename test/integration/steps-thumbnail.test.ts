// thumbnail step with real sharp and ffmpeg; media generated at test time. The planned widths
// alone: test/unit/media-plans.test.ts.
import fs from 'node:fs/promises';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import sharp from 'sharp';
import { makeThumbnails } from '../../workers/steps/thumbnail.js';
import type { Thumbnail } from '../../workers/steps/types.js';
import { MediaError } from '../../workers/media/errors.js';
import { makeJpeg, makePng, makePngBomb, makeRotatedJpegWithGps, makeVideo, tempDir, truncateCopy } from '../helpers/fixtures-media.js';

let dir: string;
beforeAll(async () => {
  dir = await tempDir('tusk-steps-thumb-');
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

async function rgbAt(file: string, x: number, y: number): Promise<[number, number, number]> {
  const { data, info } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const i = (Math.min(y, info.height - 1) * info.width + Math.min(x, info.width - 1)) * info.channels;
  return [data[i]!, data[i + 1]!, data[i + 2]!];
}

const isRed = ([r, g, b]: [number, number, number]) => r > 180 && g < 80 && b < 80;
const isBlue = ([r, , b]: [number, number, number]) => b > 150 && r < 100;

describe('image thumbnails', () => {
  test('24 MP JPEG with EXIF orientation 6 + GPS -> upright, no EXIF/GPS, smallest first', async () => {
    const src = await makeRotatedJpegWithGps(path.join(dir, 'big.jpg'), 6000, 4000);
    const outDir = path.join(dir, 'big-thumbs');
    const seen: Array<Thumbnail & { at: number }> = [];
    const lag = monitorEventLoopDelay({ resolution: 10 });
    lag.enable();
    const started = Date.now();
    const thumbs = await makeThumbnails(src, 'image', { outDir, widths: [1280, 160, 640], formats: ['webp', 'jpeg'] }, async (t) => {
      seen.push({ ...t, at: Date.now() - started });
    });
    lag.disable();
    const total = Date.now() - started;
    console.log(
      `thumbnails of a 24 MP JPEG: first (${seen[0]?.width} ${seen[0]?.format}) after ${seen[0]?.at} ms, all ${thumbs.length} in ${total} ms; ` +
        `event loop delay max ${(lag.max / 1e6).toFixed(1)} ms, p99 ${(lag.percentile(99) / 1e6).toFixed(1)} ms`,
    );

    expect(seen.map((t) => `${t.width}.${t.format}`)).toEqual(['160.webp', '160.jpeg', '640.webp', '640.jpeg', '1280.webp', '1280.jpeg']);
    expect(thumbs.map((t) => t.path)).toEqual(seen.map((t) => t.path));
    for (const t of thumbs) {
      const m = await sharp(t.path).metadata();
      // stored 6000x4000 sideways -> displayed 4000x6000: portrait thumbnails
      expect([m.width, m.height]).toEqual([t.width, t.width * 1.5]);
      expect(m.format).toBe(t.format);
      expect(m.orientation).toBeUndefined();
      expect(m.exif).toBeUndefined();
      expect(m.xmp).toBeUndefined();
      expect((await fs.stat(t.path)).size).toBe(t.bytes);
      const raw = await fs.readFile(t.path);
      expect(raw.includes('Exif')).toBe(false);
      expect(raw.includes('TuskTestCam')).toBe(false);
      // the red band on top of the stored picture is on the right once turned upright (90 deg clockwise)
      expect(isRed(await rgbAt(t.path, t.width - 2, t.height / 2))).toBe(true);
      expect(isBlue(await rgbAt(t.path, 2, t.height / 2))).toBe(true);
    }
    // libvips works on its own threads: the JavaScript thread stays responsive.
    expect(lag.max / 1e6).toBeLessThan(500);
    // A retry overwrites the same files (idempotent), no temp files are left behind.
    expect((await fs.readdir(outDir)).sort()).toEqual(['thumb-1280.jpg', 'thumb-1280.webp', 'thumb-160.jpg', 'thumb-160.webp', 'thumb-640.jpg', 'thumb-640.webp']);
  });

  test('a small image is never upscaled: one thumbnail at its own width', async () => {
    const src = await makePng(path.join(dir, 'small.png'), 300, 200);
    const thumbs = await makeThumbnails(src, 'image', { outDir: path.join(dir, 'small'), formats: ['jpeg'] });
    expect(thumbs.map((t) => [t.width, t.height])).toEqual([
      [160, 107],
      [300, 200],
    ]);
  });

  test('PNG bomb (30000x30000) -> MediaError pixel_limit within a second', async () => {
    const bomb = await makePngBomb(path.join(dir, 'bomb.png'));
    expect((await fs.stat(bomb)).size).toBeLessThan(1024 * 1024);
    const started = Date.now();
    const err = await makeThumbnails(bomb, 'image', { outDir: path.join(dir, 'bomb') }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MediaError);
    expect((err as MediaError).code).toBe('pixel_limit');
    expect(Date.now() - started).toBeLessThan(1000);
  });

  test('truncated JPEG -> MediaError truncated; SVG -> blocked; garbage -> unsupported', async () => {
    const full = await makeJpeg(path.join(dir, 'full.jpg'), 2000, 1500);
    const truncated = await truncateCopy(full, path.join(dir, 'half.jpg'), 0.5);
    const e1 = await makeThumbnails(truncated, 'image', { outDir: path.join(dir, 't1') }).catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(MediaError);
    expect((e1 as MediaError).code).toBe('truncated');

    const svg = path.join(dir, 'x.svg');
    await fs.writeFile(svg, '<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"><rect width="100" height="100"/></svg>');
    const e2 = await makeThumbnails(svg, 'image', { outDir: path.join(dir, 't2') }).catch((e: unknown) => e);
    expect(e2).toBeInstanceOf(MediaError);
    expect((e2 as MediaError).code).toMatch(/blocked_format|unsupported_format/);

    const junk = path.join(dir, 'junk.jpg');
    await fs.writeFile(junk, Buffer.alloc(5000, 7));
    const e3 = await makeThumbnails(junk, 'image', { outDir: path.join(dir, 't3') }).catch((e: unknown) => e);
    expect((e3 as MediaError).code).toBe('unsupported_format');
  });
});

describe('video thumbnails (poster frame)', () => {
  test('1080p video -> poster -> 160/640/1280, smallest first', async () => {
    const src = await makeVideo(path.join(dir, 'v.mp4'), { width: 1920, height: 1080, seconds: 2 });
    const order: number[] = [];
    const started = Date.now();
    const thumbs = await makeThumbnails(src, 'video', { outDir: path.join(dir, 'vt'), formats: ['jpeg'] }, async (t) => {
      order.push(t.width);
    });
    console.log(`video thumbnails (poster + 3 JPEGs): ${Date.now() - started} ms`);
    expect(order).toEqual([160, 640, 1280]);
    expect(thumbs.map((t) => [t.width, t.height])).toEqual([
      [160, 90],
      [640, 360],
      [1280, 720],
    ]);
    expect(await fs.readdir(path.join(dir, 'vt'))).not.toContain('.poster.png');
  });

  test('rotated video -> portrait poster (rotation applied)', async () => {
    const src = await makeVideo(path.join(dir, 'rot.mp4'), { width: 640, height: 360, seconds: 1, audio: false, rotate: 90 });
    const thumbs = await makeThumbnails(src, 'video', { outDir: path.join(dir, 'rt'), formats: ['webp'] });
    expect(thumbs.map((t) => [t.width, t.height])).toEqual([
      [160, 284],
      [360, 640],
    ]);
  });

  test('truncated MP4 -> MediaError with a reason, no hang', async () => {
    const src = await makeVideo(path.join(dir, 'v2.mp4'), { width: 640, height: 360, seconds: 2 });
    const truncated = await truncateCopy(src, path.join(dir, 'v2-trunc.mp4'), 0.3);
    const started = Date.now();
    const err = await makeThumbnails(truncated, 'video', { outDir: path.join(dir, 'tt'), timeoutMs: 10_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MediaError);
    expect((err as MediaError).reason).toMatch(/truncated|moov/);
    expect(Date.now() - started).toBeLessThan(5000);
  });
});
