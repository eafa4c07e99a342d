// transcode: video -> HLS ladder (480p / 720p / 1080p, never above the source) in H.264 + AAC
// with 6 s segments and a master playlist, plus one progressive MP4 fallback (720p or the source
// size if smaller, +faststart); audio -> one AAC HLS rendition (no MP4).
//
// One ffmpeg run encodes: the source is decoded once and split into the ladder's scalers (HLS muxer
// with -var_stream_map). The MP4 is not a fourth encode: it is the 720p rung (or the rung of the
// source's own size) remuxed (-c copy, +faststart) from its segments in a second, I/O-only ffmpeg
// run; the 720p rung is already H.264 high + AAC at a capped bitrate. Only a source whose short
// side is between rungs (e.g. 600 px: ladder [480], MP4 600) still encodes the MP4 as a separate
// output of the same run. Measured on a 10 s 1080p clip (2 cores, load average 12-16): the
// separate MP4 encode was ~20% of the run's CPU time. The rungs are named by
// the short side of the displayed picture ("720p" of a portrait video is 720 px wide); ffmpeg's
// autorotate applies the source rotation before scaling, so outputs carry no rotation.
import fs from 'node:fs/promises';
import path from 'node:path';
import { firstStream, probeDuration, runFfmpeg, streamRotation, type ProbeResult } from '../media/ffmpeg.js';
import { probeFailure } from './metadata.js';
import { MediaError } from '../media/errors.js';
import type { HlsRendition, TranscodeOptions, TranscodeResult } from './types.js';

export type { HlsRendition, TranscodeOptions, TranscodeResult } from './types.js';

interface Rung {
  /** Short side of the output in px. */
  short: number;
  videoKbps: number;
}

export const HLS_LADDER: readonly Rung[] = Object.freeze([
  { short: 480, videoKbps: 1400 },
  { short: 720, videoKbps: 2800 },
  { short: 1080, videoKbps: 5000 },
]);
export const HLS_SEGMENT_SECONDS = 6;
const AUDIO_KBPS = 128;
const MP4_SHORT_SIDE = 720;
export const DEFAULT_PRESET = 'veryfast';

/**
 * A time limit for transcode() proportional to the duration: base + perSecond x duration. Measured
 * on 2 cores (veryfast, 3 rungs + MP4): ~0.7 s per second of 1080p when the machine is idle, ~3.7 s
 * per second under a load average of 15; the default leaves room beyond that. The duration counts
 * at most `maxDurationSec` (MAX_MEDIA_DURATION: longer media is refused before it gets here), and
 * an unknown one as 10 minutes (or the maximum, if lower).
 */
export function transcodeTimeoutMs(durationSec: number | undefined, opts: { baseMs?: number; perSecondMs?: number; maxDurationSec?: number } = {}): number {
  const base = opts.baseMs ?? 120_000;
  const perSecond = opts.perSecondMs ?? 10_000;
  const max = opts.maxDurationSec ?? Infinity;
  const d = durationSec && Number.isFinite(durationSec) && durationSec > 0 ? durationSec : 600;
  return Math.round(base + perSecond * Math.min(d, max));
}

const even = (n: number) => Math.max(2, Math.floor(n / 2) * 2);

/** The rungs for a source whose displayed short side is `sourceShort` px. */
export function planLadder(sourceShort: number): Rung[] {
  const rungs = HLS_LADDER.filter((r) => r.short <= sourceShort);
  if (rungs.length > 0) return rungs;
  // Smaller than the lowest rung: one rendition at the source's own size, bitrate scaled by area.
  const short = even(sourceShort);
  const first = HLS_LADDER[0]!;
  return [{ short, videoKbps: Math.max(300, Math.round(first.videoKbps * (short / first.short) ** 2)) }];
}

/** Parses a master playlist: variant URI -> { bandwidth, width, height }. */
export function parseMasterPlaylist(text: string): Map<string, { bandwidth: number; width: number; height: number }> {
  const variants = new Map<string, { bandwidth: number; width: number; height: number }>();
  const lines = text.split(/\r?\n/).map((l) => l.trim());
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (!line.startsWith('#EXT-X-STREAM-INF:')) continue;
    const bandwidth = Number(/BANDWIDTH=(\d+)/.exec(line)?.[1] ?? 0);
    const res = /RESOLUTION=(\d+)x(\d+)/.exec(line);
    let j = i + 1;
    while (j < lines.length && (lines[j] === '' || lines[j]!.startsWith('#'))) j++;
    const uri = lines[j];
    if (uri) variants.set(uri, { bandwidth, width: Number(res?.[1] ?? 0), height: Number(res?.[2] ?? 0) });
  }
  return variants;
}

function hlsOutputArgs(outDir: string, streamMap: string): string[] {
  return [
    '-f', 'hls',
    '-hls_time', String(HLS_SEGMENT_SECONDS),
    '-hls_playlist_type', 'vod',
    '-hls_flags', 'independent_segments',
    '-hls_segment_type', 'mpegts',
    '-hls_segment_filename', path.join(outDir, 'hls', '%v', 'seg_%03d.ts'),
    '-master_pl_name', 'master.m3u8',
    '-var_stream_map', streamMap,
    path.join(outDir, 'hls', '%v', 'index.m3u8'),
  ];
}

/**
 * Transcodes `input` (already probed) into outDir. Rejects with MediaError when the input cannot be
 * decoded (truncated/corrupt) or has no usable stream, and with FfmpegError/MediaError('timeout')
 * past opts.timeoutMs (ffmpeg is killed). Outputs of an earlier run in outDir are replaced.
 */
export async function transcode(input: string, probe: ProbeResult, opts: TranscodeOptions): Promise<TranscodeResult> {
  const started = Date.now();
  const video = firstStream(probe, 'video');
  const audio = firstStream(probe, 'audio');
  if (!video && !audio) throw new MediaError('no_video_stream', 'nothing to transcode: no audio or video stream');
  const durationSec = probeDuration(probe);
  const preset = opts.preset ?? DEFAULT_PRESET;

  // Idempotent: a retried job starts from an empty hls/ folder (no stale segments or renditions).
  await fs.rm(path.join(opts.outDir, 'hls'), { recursive: true, force: true });
  await fs.rm(path.join(opts.outDir, 'video.mp4'), { force: true });
  await fs.mkdir(path.join(opts.outDir, 'hls'), { recursive: true });

  const audioArgs = ['-c:a', 'aac', '-b:a', `${AUDIO_KBPS}k`, '-ac', '2'];
  const args: string[] = ['-i', input];
  const names: Array<{ name: string; short: number }> = [];
  let mp4: string | undefined;
  /** Name of the rung whose segments become the MP4 (remux), when one has the MP4's size. */
  let mp4FromRung: string | undefined;

  if (video) {
    const w = video.width ?? 0;
    const h = video.height ?? 0;
    if (!w || !h) throw new MediaError('decode_failed', 'video stream has no dimensions');
    const rotation = streamRotation(video);
    const [dw, dh] = rotation === 90 || rotation === 270 ? [h, w] : [w, h];
    const portrait = dh > dw;
    const short = Math.min(dw, dh);
    const rungs = planLadder(short);
    const wantMp4 = opts.mp4 !== false;
    const mp4Short = Math.min(MP4_SHORT_SIDE, even(short));
    const mp4Rung = rungs.find((r) => r.short === mp4Short);
    if (wantMp4 && mp4Rung) mp4FromRung = `${mp4Rung.short}p`;
    const encodeMp4 = wantMp4 && !mp4Rung;
    const scale = (s: number) => (portrait ? `scale=${s}:-2` : `scale=-2:${s}`);

    const outputs = rungs.length + (encodeMp4 ? 1 : 0);
    const labels = rungs.map((_, i) => `[r${i}]`);
    const filter = [`[0:v:0]split=${outputs}${rungs.map((_, i) => `[s${i}]`).join('')}${encodeMp4 ? '[sm]' : ''}`];
    rungs.forEach((r, i) => filter.push(`[s${i}]${scale(r.short)},format=yuv420p${labels[i]}`));
    if (encodeMp4) filter.push(`[sm]${scale(mp4Short)},format=yuv420p[mp4v]`);
    args.push('-filter_complex', filter.join(';'));

    const streamMap: string[] = [];
    rungs.forEach((r, i) => {
      args.push('-map', labels[i]!);
      if (audio) args.push('-map', '0:a:0');
      args.push(`-b:v:${i}`, `${r.videoKbps}k`, `-maxrate:v:${i}`, `${Math.round(r.videoKbps * 1.1)}k`, `-bufsize:v:${i}`, `${r.videoKbps * 2}k`);
      const name = `${r.short}p`;
      names.push({ name, short: r.short });
      streamMap.push(audio ? `v:${i},a:${i},name:${name}` : `v:${i},name:${name}`);
    });
    args.push(
      '-c:v', 'libx264', '-preset', preset, '-profile:v', 'high',
      // A key frame at every segment boundary, nowhere forced otherwise: segments of exactly 6 s.
      '-force_key_frames', `expr:gte(t,n_forced*${HLS_SEGMENT_SECONDS})`, '-sc_threshold', '0',
      ...(audio ? audioArgs : []),
      ...hlsOutputArgs(opts.outDir, streamMap.join(' ')),
    );
    if (wantMp4) mp4 = 'video.mp4';
    if (encodeMp4) {
      args.push('-map', '[mp4v]');
      if (audio) args.push('-map', '0:a:0', ...audioArgs);
      args.push('-c:v', 'libx264', '-preset', preset, '-profile:v', 'high', '-crf', '23', '-maxrate', '3000k', '-bufsize', '6000k', '-movflags', '+faststart', '-f', 'mp4', path.join(opts.outDir, 'video.mp4'));
    }
  } else {
    names.push({ name: 'audio', short: 0 });
    args.push('-map', '0:a:0', '-vn', '-sn', '-dn', ...audioArgs, ...hlsOutputArgs(opts.outDir, 'a:0,name:audio'));
  }

  // Progress: the encode reports 0..99; 100 only once the MP4 remux (if any) is written too.
  let lastProgress = -1;
  const progress = (p: number) => {
    const value = mp4FromRung ? Math.min(99, p) : p;
    if (value > lastProgress) {
      lastProgress = value;
      opts.onProgress?.(value);
    }
  };
  try {
    await runFfmpeg(args, { timeoutMs: opts.timeoutMs, durationSec, onProgress: opts.onProgress ? progress : undefined, signal: opts.signal, paths: opts.ffmpeg });
    if (mp4FromRung) {
      const remux = [
        '-i', path.join(opts.outDir, 'hls', mp4FromRung, 'index.m3u8'),
        '-map', '0:v:0', ...(audio ? ['-map', '0:a:0'] : []), '-c', 'copy',
        '-movflags', '+faststart', '-f', 'mp4', path.join(opts.outDir, 'video.mp4'),
      ];
      const left = Math.max(1, opts.timeoutMs - (Date.now() - started));
      await runFfmpeg(remux, { timeoutMs: left, signal: opts.signal, paths: opts.ffmpeg });
      if (opts.onProgress && lastProgress < 100) opts.onProgress(100);
    }
  } catch (err) {
    throw probeFailure(err, 'transcode');
  }

  const masterText = await fs.readFile(path.join(opts.outDir, 'hls', 'master.m3u8'), 'utf8').catch(() => {
    throw new MediaError('encode_failed', 'transcode: ffmpeg wrote no master playlist');
  });
  const variants = parseMasterPlaylist(masterText);
  const renditions: HlsRendition[] = names.map(({ name, short }) => {
    const v = variants.get(`${name}/index.m3u8`);
    return {
      height: v?.height ?? 0,
      width: v?.width ?? 0,
      bandwidth: v?.bandwidth ?? 0,
      playlist: `hls/${name}/index.m3u8`,
      ...(v || short === 0 ? {} : { height: short }),
    };
  });
  return { hls: { master: 'hls/master.m3u8', renditions }, ...(mp4 ? { mp4 } : {}), elapsedMs: Date.now() - started };
}
