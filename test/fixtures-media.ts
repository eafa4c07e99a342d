// Test media, generated at test time (ffmpeg lavfi, sharp, zlib) into a temp dir: no media files
// are committed. Everything here is small and fast to make (ultrafast presets, short clips).
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import sharp from 'sharp';

const exec = promisify(execFile);

export async function tempDir(prefix = 'tusk-media-'): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}

export async function ffmpeg(args: string[]): Promise<void> {
  await exec('ffmpeg', ['-hide_banner', '-nostdin', '-loglevel', 'error', '-y', ...args], { maxBuffer: 16 * 1024 * 1024 });
}

export interface VideoSpec {
  width: number;
  height: number;
  seconds: number;
  fps?: number;
  audio?: boolean;
  /**
   * Value of the rotate tag set on a stream-copy remux, which ffmpeg 5.1 turns into a display
   * matrix. Note: ffmpeg 5.1 then shows rotate=90 turned 90 degrees COUNTER-clockwise (ffprobe
   * side data rotation: 90), i.e. 270 clockwise in MediaMetadata.rotation terms.
   */
  rotate?: number;
}

/** H.264 (+ AAC) MP4 from testsrc2 (+ a sine tone). */
export async function makeVideo(file: string, spec: VideoSpec): Promise<string> {
  const args = ['-f', 'lavfi', '-i', `testsrc2=size=${spec.width}x${spec.height}:rate=${spec.fps ?? 30}`];
  if (spec.audio !== false) args.push('-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000');
  args.push('-t', String(spec.seconds), '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p');
  if (spec.audio !== false) args.push('-c:a', 'aac', '-b:a', '96k');
  if (!spec.rotate) {
    await ffmpeg([...args, file]);
    return file;
  }
  // An encode drops the tag (autorotate); a stream copy keeps it.
  const plain = `${file}.plain.mp4`;
  await ffmpeg([...args, plain]);
  await ffmpeg(['-i', plain, '-c', 'copy', '-metadata:s:v:0', `rotate=${spec.rotate}`, file]);
  await fs.rm(plain, { force: true });
  return file;
}

/** AAC in an M4A container from a sine tone. */
export async function makeAudio(file: string, seconds: number): Promise<string> {
  await ffmpeg(['-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100', '-t', String(seconds), '-c:a', 'aac', '-b:a', '96k', file]);
  return file;
}

/** The first `fraction` of a file's bytes, as a new file. */
export async function truncateCopy(src: string, dest: string, fraction: number): Promise<string> {
  const data = await fs.readFile(src);
  await fs.writeFile(dest, data.subarray(0, Math.floor(data.length * fraction)));
  return dest;
}

/**
 * A JPEG with EXIF orientation 6 (stored sideways: display = rotate 90 clockwise) and a GPS IFD.
 * The stored picture is `width` x `height` with a red band on its top rows so that the orientation
 * can be checked on the output.
 */
export async function makeRotatedJpegWithGps(file: string, width: number, height: number): Promise<string> {
  const band = await sharp({ create: { width, height: Math.max(8, Math.floor(height / 10)), channels: 3, background: '#ff0000' } }).png().toBuffer();
  await sharp({ create: { width, height, channels: 3, background: '#2060c0' } })
    .composite([{ input: band, top: 0, left: 0 }])
    .jpeg({ quality: 85 })
    .withExif({
      IFD0: { Make: 'TuskTestCam', Model: 'T1' },
      // sharp 0.35 writes the GPS IFD from these keys.
      IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '48/1 51/1 2982/100', GPSLongitudeRef: 'E', GPSLongitude: '2/1 17/1 4010/100' },
    })
    .withMetadata({ orientation: 6 })
    .toFile(file);
  return file;
}

/**
 * A PNG decompression bomb: `side` x `side` 1-bit grayscale, all black. Built by hand (IHDR + one
 * deflated IDAT of zeros), so it is a few hundred KB on disk for side=30000 (900 MP).
 */
export async function makePngBomb(file: string, side = 30_000): Promise<string> {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc32 = (buf: Buffer) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff]! ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(side, 0);
  ihdr.writeUInt32BE(side, 4);
  ihdr[8] = 1; // bit depth
  ihdr[9] = 0; // grayscale
  const rowBytes = 1 + Math.ceil(side / 8); // filter byte + packed pixels
  const deflate = zlib.createDeflate({ level: 9 });
  const parts: Buffer[] = [];
  deflate.on('data', (b: Buffer) => parts.push(b));
  const done = new Promise<void>((resolve, reject) => {
    deflate.on('end', resolve);
    deflate.on('error', reject);
  });
  const rows = Buffer.alloc(rowBytes * 1000);
  for (let y = 0; y < side; y += 1000) {
    const n = Math.min(1000, side - y);
    if (!deflate.write(rows.subarray(0, rowBytes * n))) await new Promise((r) => deflate.once('drain', r));
  }
  deflate.end();
  await done;
  const png = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', Buffer.concat(parts)), chunk('IEND', Buffer.alloc(0))]);
  await fs.writeFile(file, png);
  return file;
}

export async function makePng(file: string, width = 64, height = 48): Promise<string> {
  await sharp({ create: { width, height, channels: 4, background: { r: 0, g: 128, b: 0, alpha: 0.5 } } }).png().toFile(file);
  return file;
}

export async function makeJpeg(file: string, width = 64, height = 48): Promise<string> {
  await sharp({ create: { width, height, channels: 3, background: '#808080' } }).jpeg().toFile(file);
  return file;
}

/** ffprobe's JSON for a file (streams + format), for assertions. */
export async function probeJson(file: string): Promise<{ streams: Array<Record<string, unknown>>; format: Record<string, unknown> }> {
  const { stdout } = await exec('ffprobe', ['-v', 'error', '-print_format', 'json', '-show_format', '-show_streams', file], { maxBuffer: 16 * 1024 * 1024 });
  return JSON.parse(stdout) as { streams: Array<Record<string, unknown>>; format: Record<string, unknown> };
}

/** The EICAR test string (built from parts so this source file itself is not flagged by scanners). */
export const EICAR = Buffer.from(['X5O!P%@AP[4\\PZX54(P^)7CC)7}$', 'EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'].join(''), 'latin1');
