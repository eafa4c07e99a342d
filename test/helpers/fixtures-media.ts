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

// ---- media whose claimed work is out of proportion to its bytes, and real low-bitrate media ----

/**
 * The "4 MB looped one-hour 1080p video": `segmentSeconds` of one flat colour in a single GOP,
 * stream-copied `seconds / segmentSeconds` times (-stream_loop, no second encode). Made in ~2 s;
 * 1920x1080 at 30 fps for 3600 s is ~4.2 MB (0.00015 bits per pixel per frame).
 */
export async function makeLoopedStillVideo(file: string, spec: { width: number; height: number; fps: number; seconds: number; segmentSeconds?: number }): Promise<string> {
  const segmentSeconds = spec.segmentSeconds ?? 10;
  const segment = `${file}.segment.mp4`;
  await ffmpeg([
    '-f', 'lavfi', '-i', `color=c=0x406080:s=${spec.width}x${spec.height}:r=${spec.fps}`, '-t', String(segmentSeconds),
    '-c:v', 'libx264', '-preset', 'ultrafast', '-g', String(segmentSeconds * spec.fps), '-pix_fmt', 'yuv420p', segment,
  ]);
  await ffmpeg(['-stream_loop', String(Math.ceil(spec.seconds / segmentSeconds) - 1), '-i', segment, '-c', 'copy', file]);
  await fs.rm(segment, { force: true });
  return file;
}

/** A still "desktop" as PNG: window chrome and lines of source code (drawtext, fontconfig's default font). */
async function makeDesktopStill(file: string, width: number, height: number): Promise<string> {
  const filters = [`drawbox=x=0:y=0:w=${width}:h=40:color=0x303848:t=fill`, `drawbox=x=100:y=100:w=${width - 400}:h=${height - 180}:color=white:t=fill`];
  for (let line = 0; line < Math.floor((height - 260) / 34); line++) {
    const text = `${' '.repeat((line % 4) * 2)}const value${line} = compute(input[${line}]) + offset * factor${line % 3}; // step ${line}`;
    filters.push(`drawtext=text='${text}':fontsize=22:fontcolor=0x202020:x=120:y=${140 + line * 34}`);
  }
  await ffmpeg(['-f', 'lavfi', '-i', `color=c=0xf4f4f4:s=${width}x${height},${filters.join(',')}`, '-frames:v', '1', file]);
  return file;
}

/**
 * A screen recording as a recorder makes it: 1080p30, libx264 veryfast at its default quality
 * (CRF 23, a key frame at most every 250 frames), a still desktop with a moving pointer and a line
 * being "typed" (a text bar sliding in). The low end of real video bitrates.
 */
export async function makeScreenRecording(file: string, seconds: number): Promise<string> {
  const still = await makeDesktopStill(`${file}.desktop.png`, 1920, 1080);
  await ffmpeg([
    '-loop', '1', '-framerate', '30', '-i', still,
    '-f', 'lavfi', '-i', 'color=c=black:s=12x18:r=30',
    '-f', 'lavfi', '-i', 'color=c=0x303030:s=900x16:r=30',
    '-filter_complex', "[0:v][2:v]overlay=x='-780+t*40':y=990[typed];[typed][1:v]overlay=x='mod(t*180,1700)':y='300+100*sin(t)'",
    '-t', String(seconds), '-c:v', 'libx264', '-preset', 'veryfast', '-pix_fmt', 'yuv420p', file,
  ]);
  await fs.rm(still, { force: true });
  return file;
}

/** A slideshow video of text slides (a presentation export): each slide `secondsEach` s, 1080p30, libx264 veryfast. */
export async function makeSlideshow(file: string, slides: number, secondsEach: number): Promise<string> {
  const dir = `${file}.slides`;
  await fs.mkdir(dir, { recursive: true });
  for (let i = 1; i <= slides; i++) {
    const filters = [`drawtext=text='Slide ${i} - Quarterly results':fontsize=64:fontcolor=0x203060:x=120:y=100`];
    for (let b = 1; b <= 5; b++) filters.push(`drawtext=text='- point ${b} of slide ${i} with a few more words':fontsize=40:fontcolor=0x333333:x=160:y=${220 + b * 110}`);
    await ffmpeg(['-f', 'lavfi', '-i', `color=c=white:s=1920x1080,${filters.join(',')}`, '-frames:v', '1', path.join(dir, `slide${String(i).padStart(2, '0')}.png`)]);
  }
  await ffmpeg(['-framerate', `1/${secondsEach}`, '-i', path.join(dir, 'slide%02d.png'), '-r', '30', '-c:v', 'libx264', '-preset', 'veryfast', '-pix_fmt', 'yuv420p', file]);
  await fs.rm(dir, { recursive: true, force: true });
  return file;
}

/** AAC in M4A with a 1080p cover picture (an attached_pic video stream, as music files carry it). */
export async function makeAudioWithCover(file: string, seconds: number): Promise<string> {
  const cover = `${file}.cover.png`;
  await ffmpeg(['-f', 'lavfi', '-i', 'gradients=s=1920x1080:seed=7', '-frames:v', '1', cover]);
  await ffmpeg([
    '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100', '-i', cover, '-t', String(seconds),
    '-map', '0:a', '-map', '1:v', '-c:a', 'aac', '-b:a', '128k', '-c:v', 'mjpeg', '-disposition:v:0', 'attached_pic', file,
  ]);
  await fs.rm(cover, { force: true });
  return file;
}

/** A ZIP archive (entries stored, not compressed) of `entries` (name -> content). */
export async function makeZip(file: string, entries: Record<string, string | Buffer>): Promise<string> {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const [name, content] of Object.entries(entries)) {
    const data = Buffer.from(content);
    const fileName = Buffer.from(name, 'utf8');
    const crc = zlib.crc32(data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4); // version needed
    local.writeUInt16LE(0x21, 12); // date: 1980-01-01
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(fileName.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4); // version made by
    central.writeUInt16LE(20, 6); // version needed
    central.writeUInt16LE(0x21, 14);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(data.length, 20);
    central.writeUInt32LE(data.length, 24);
    central.writeUInt16LE(fileName.length, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, fileName, data);
    centrals.push(central, fileName);
    offset += local.length + fileName.length + data.length;
  }
  const directory = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(Object.keys(entries).length, 8);
  end.writeUInt16LE(Object.keys(entries).length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  await fs.writeFile(file, Buffer.concat([...locals, directory, end]));
  return file;
}
