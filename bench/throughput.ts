// Upload throughput into S3 and what it costs in CPU: tus-js-client through a real tusk server
// (`node dist/tusk.js server`, with BENCH_TUSK_ENV) at several chunk sizes, next to the AWS SDK's
// own multipart upload straight to the same S3, in the same run. See bench/README.md.
//
//   npm run bench:throughput                                  # defaults, private RGW + Redis
//   BENCH_TUSK_ENV='{"UPLOAD_ACK":"disk"}' npm run bench:throughput
//   BENCH_CASES=tusk-8,store-8,plain-8,sdk-4 npm run bench:throughput
//   BENCH_TUSK_MODES='{"disk":{"UPLOAD_ACK":"disk"}}' \
//     BENCH_CASES=tusk-1,tusk.disk-1,tusk-8,tusk.disk-8,sdk-stream-4 npm run bench:throughput
//
// Per case and run: MiB/s (client wall time), the tus server's CPU seconds (utime + stime from
// /proc/<pid>/stat) and the storage's (radosgw + ceph-osd + ceph-mon of the bench cluster), each
// as the delta over the upload, per GiB uploaded. Runs are interleaved (run 1 of every case, then
// run 2, ...) so that load drifting on a shared machine does not favour one case; figures are
// medians, ratios are taken between medians of the same invocation.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { S3, type S3ClientConfig } from '@aws-sdk/client-s3';
import { Upload as TusUpload } from 'tus-js-client';
import { startBareServer, type BareServer, type CallStats } from './bare-server.js';
import {
  benchEnv,
  benchTuskEnv,
  benchTuskEnvLabel,
  benchTuskModes,
  betweenRuns,
  cpuSecondsOf,
  freePort,
  markdownTable,
  median,
  MiB,
  randomFile,
  rssOf,
  startRoundRobin,
  startTuskServer,
  stopProcess,
  storageCpuSeconds,
  storagePids,
  loadAverage,
  sumValues,
  untilInS3,
} from './lib.js';

const cfg = {
  sizeMiB: Number(process.env.BENCH_SIZE_MIB ?? 64),
  runs: Number(process.env.BENCH_RUNS ?? 3),
  cases: (process.env.BENCH_CASES ?? 'tusk-1,tusk-2,tusk-8,tusk-64,sdk-1,sdk-4,sdk-stream-4')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean),
  partMiB: Number(process.env.BENCH_PART_MIB ?? 8),
  tusEndpoint: process.env.BENCH_TUS_ENDPOINT,
  verify: process.env.BENCH_VERIFY !== '0',
  /** Untimed uploads per case before the measured runs (connections, JIT, the server's caches). */
  warmup: Number(process.env.BENCH_WARMUP ?? 1),
};

const CASE_HELP =
  'tusk-<chunk MiB>, tusk.<BENCH_TUSK_MODES label>-<chunk MiB>, lb<1|2>[.<label>]-<chunk MiB>, store-<chunk MiB>, plain-<chunk MiB>, external-<chunk MiB>, sdk-<in flight>, sdk-unsigned-<in flight>, sdk-stream-<in flight>';

function s3Config(): S3ClientConfig {
  return {
    endpoint: benchEnv.endpoint,
    region: benchEnv.region,
    forcePathStyle: true,
    credentials: { accessKeyId: benchEnv.accessKeyId, secretAccessKey: benchEnv.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  };
}

// ------------------------------------------------------------------ clients

/**
 * Multipart upload of an in-memory file, `inFlight` parts at a time. A Buffer body is signed with
 * its SHA-256 over plain HTTP (CPU on both ends); a stream body (`unsigned`) is sent
 * UNSIGNED-PAYLOAD, like the tus stores send theirs.
 */
async function sdkUpload(s3: S3, data: Buffer, key: string, inFlight: number, unsigned: boolean): Promise<void> {
  const partSize = cfg.partMiB * MiB;
  const { UploadId } = await s3.createMultipartUpload({ Bucket: benchEnv.bucket, Key: key });
  const count = Math.ceil(data.length / partSize);
  const etags: string[] = new Array<string>(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      const part = data.subarray(i * partSize, Math.min(data.length, (i + 1) * partSize));
      const res = await s3.uploadPart({
        Bucket: benchEnv.bucket,
        Key: key,
        UploadId,
        PartNumber: i + 1,
        Body: unsigned ? Readable.from([part]) : part,
        ContentLength: part.length,
      });
      etags[i] = res.ETag!;
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  await s3.completeMultipartUpload({
    Bucket: benchEnv.bucket,
    Key: key,
    UploadId,
    MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
  });
}

/**
 * What @aws-sdk/lib-storage's `Upload` does with a stream (it is not a dependency): read one
 * source from its start, in order, cut it into parts in memory and upload each as a Buffer body
 * with at most `inFlight` UploadParts running; reading waits while they all run. The source is
 * read straight into `inFlight` + 1 reused part buffers: allocating a fresh 8 MiB Buffer per part
 * (as lib-storage does) made V8's garbage collector the client's largest cost here, which would
 * slow the baseline for a reason that is not the storage's.
 */
async function sdkStreamUpload(s3: S3, file: string, key: string, inFlight: number): Promise<void> {
  const partSize = cfg.partMiB * MiB;
  const { UploadId } = await s3.createMultipartUpload({ Bucket: benchEnv.bucket, Key: key });
  const etags: string[] = [];
  const running = new Set<Promise<void>>();
  const free = Array.from({ length: inFlight + 1 }, () => Buffer.allocUnsafe(partSize));
  const fd = await fs.promises.open(file, 'r');
  try {
    for (let partNumber = 1; ; partNumber++) {
      const buffer = free.pop()!;
      let filled = 0;
      for (;;) {
        const { bytesRead } = await fd.read(buffer, filled, partSize - filled, null);
        if (bytesRead === 0) break;
        filled += bytesRead;
        if (filled === partSize) break;
      }
      if (filled === 0 && partNumber > 1) break;
      const n = partNumber;
      const task: Promise<void> = s3
        .uploadPart({ Bucket: benchEnv.bucket, Key: key, UploadId, PartNumber: n, Body: buffer.subarray(0, filled), ContentLength: filled })
        .then((res) => {
          etags[n - 1] = res.ETag!;
          running.delete(task);
          free.push(buffer);
        });
      running.add(task);
      if (running.size >= inFlight) await Promise.race(running);
      if (filled < partSize) break;
    }
    await Promise.all(running);
  } finally {
    await fd.close();
  }
  await s3.completeMultipartUpload({
    Bucket: benchEnv.bucket,
    Key: key,
    UploadId,
    MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
  });
}

/** tus-js-client (Node), one upload of `data` in `chunkSize` PATCHes; resolves with the upload id. */
function tusUpload(endpoint: string, data: Buffer, chunkSize: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const upload = new TusUpload(data, {
      endpoint,
      chunkSize,
      retryDelays: [],
      storeFingerprintForResuming: false,
      metadata: { filename: 'bench.bin', filetype: 'application/octet-stream' },
      onError: reject,
      onSuccess: () => resolve(decodeURIComponent(upload.url!.split('/').pop()!)),
    });
    upload.start();
  });
}

async function sha256Of(s3: S3, key: string): Promise<string> {
  const res = await s3.getObject({ Bucket: benchEnv.bucket, Key: key });
  const hash = crypto.createHash('sha256');
  for await (const chunk of res.Body as Readable) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function cleanup(s3: S3, key: string): Promise<void> {
  await s3
    .deleteObjects({ Bucket: benchEnv.bucket, Delete: { Objects: [{ Key: key }, { Key: `${key}.info` }, { Key: `${key}.part` }] } })
    .catch(() => {});
}

// ------------------------------------------------------------------ cases

interface Run {
  mibs: number;
  /** CPU seconds over the upload: the tus server's, the storage's (by process name), this process's. */
  serverCpu?: number;
  storageCpu: Record<string, number>;
  clientCpu: number;
  /** ms from the client's success until the object was complete in S3 (0: it already was). */
  lagMs: number;
}

interface Case {
  name: string;
  what: string;
  runs: Run[];
  /** PIDs of the tus server processes the case goes through (tusk or a bare server). */
  serverPids: number[];
  server?: string;
  patchesPerRun?: number;
  /** The upload itself; resolves with the object key to verify and remove. */
  upload: () => Promise<string>;
}

interface Servers {
  /**
   * Per mode ('' = BENCH_TUSK_ENV alone, else a BENCH_TUSK_MODES label): one tusk server, and for
   * `lb1`/`lb2` cases (key `lb<n>.<mode>`) one or two sharing a Redis prefix behind a round-robin balancer.
   */
  tusk: Map<string, { pids: number[]; endpoint: string; stop: () => Promise<void> }>;
  bare: Partial<Record<'plain' | 'store', BareServer>>;
}

async function buildCase(name: string, s3: S3, data: Buffer, file: string, servers: Servers): Promise<Case> {
  const sdk = /^sdk(-unsigned|-stream)?-(\d+)$/.exec(name);
  if (sdk) {
    const inFlight = Number(sdk[2]);
    const key = () => `bench-sdk-${crypto.randomUUID()}`;
    if (sdk[1] === '-stream') {
      return {
        name,
        what: `AWS SDK multipart like @aws-sdk/lib-storage: the file read in order into ${cfg.partMiB} MiB parts, ${inFlight} in flight, Buffer bodies (signed SHA-256)`,
        runs: [],
        serverPids: [],
        upload: async () => {
          const k = key();
          await sdkStreamUpload(s3, file, k, inFlight);
          return k;
        },
      };
    }
    const unsigned = sdk[1] === '-unsigned';
    return {
      name,
      what: `AWS SDK multipart from memory, ${cfg.partMiB} MiB parts, ${inFlight} in flight, ${unsigned ? 'stream bodies (UNSIGNED-PAYLOAD)' : 'Buffer bodies (signed SHA-256)'}`,
      runs: [],
      serverPids: [],
      upload: async () => {
        const k = key();
        await sdkUpload(s3, data, k, inFlight, unsigned);
        return k;
      },
    };
  }
  const m = /^(tusk|lb[12]|store|plain|external)(?:\.(\w+))?-(\d+)$/.exec(name);
  if (!m || (m[2] !== undefined && !/^(tusk|lb)/.test(m[1]!))) throw new Error(`unknown case ${name} (${CASE_HELP})`);
  const kind = m[1]!;
  const mode = m[2] ?? '';
  const chunkMiB = m[3]!;
  const chunk = Number(chunkMiB) * MiB;
  let endpoint: string;
  let serverPids: number[] = [];
  let what: string;
  let server: string | undefined;
  if (kind === 'tusk' || kind.startsWith('lb')) {
    const modes = benchTuskModes();
    if (mode && !modes[mode]) throw new Error(`case ${name}: no mode "${mode}" in BENCH_TUSK_MODES`);
    const modeEnv = mode ? modes[mode]! : {};
    const behind = kind.startsWith('lb') ? Number(kind.slice(2)) : 0; // servers behind a balancer
    const key = behind ? `${kind}.${mode}` : mode;
    let tusk = servers.tusk.get(key);
    if (!tusk) {
      if (behind) {
        // One upload's state shared by all: one Redis prefix (and so one DATA_DIR).
        const env = { REDIS_PREFIX: `bench-${crypto.randomBytes(4).toString('hex')}:`, ...modeEnv };
        const ports = await Promise.all(Array.from({ length: behind }, () => freePort()));
        const procs = await Promise.all(ports.map((port) => startTuskServer(port, env)));
        const balancer = await startRoundRobin(ports);
        tusk = {
          pids: procs.map((p) => p.pid!),
          endpoint: `${balancer.endpointBase}/files/`,
          stop: async () => {
            await balancer.close();
            await Promise.all(procs.map((p) => stopProcess(p)));
          },
        };
      } else {
        const port = await freePort();
        const proc = await startTuskServer(port, modeEnv);
        tusk = { pids: [proc.pid!], endpoint: `http://127.0.0.1:${port}/files/`, stop: () => stopProcess(proc) };
      }
      servers.tusk.set(key, tusk);
    }
    endpoint = tusk.endpoint;
    serverPids = tusk.pids;
    server = `${kind}${mode ? `.${mode}` : ''}`;
    const label = benchTuskEnvLabel({ ...benchTuskEnv(), ...modeEnv });
    const servedBy = behind === 2 ? 'two `tusk server`s behind a round-robin balancer (no affinity; server CPU of both)' : behind === 1 ? 'the same balancer in front of one `tusk server`' : '`tusk server`';
    what = `tus-js-client chunkSize ${chunkMiB} MiB, ${servedBy}${label ? ` (${label})` : ''}`;
  } else if (kind === 'plain' || kind === 'store') {
    const bare = (servers.bare[kind] ??= await startBareServer(kind, await freePort()));
    endpoint = bare.endpoint;
    serverPids = [bare.pid];
    server = kind;
    what = `tus-js-client chunkSize ${chunkMiB} MiB, bare @tus/server + ${kind === 'plain' ? 'plain @tus/s3-store' : 'TuskS3Store'}`;
  } else {
    if (!cfg.tusEndpoint) throw new Error('external-* cases need BENCH_TUS_ENDPOINT');
    endpoint = cfg.tusEndpoint;
    what = `tus-js-client chunkSize ${chunkMiB} MiB, ${endpoint}`;
  }
  return {
    name,
    what,
    runs: [],
    serverPids,
    server,
    patchesPerRun: Math.ceil(data.length / chunk),
    upload: () => tusUpload(endpoint, data, chunk),
  };
}

// ------------------------------------------------------------------ report

const perGiB = (seconds: number) => (seconds / cfg.sizeMiB) * 1024;
const fmt = (x: number | undefined, digits = 1) => (x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(digits));

function medianOf(c: Case, pick: (r: Run) => number | undefined): number | undefined {
  const xs = c.runs.map(pick).filter((x): x is number => x !== undefined);
  return xs.length ? median(xs) : undefined;
}

const metrics = {
  'MiB/s': (r: Run) => r.mibs,
  'server CPU s/GiB': (r: Run) => (r.serverCpu === undefined ? undefined : perGiB(r.serverCpu)),
  'storage CPU s/GiB': (r: Run) => perGiB(sumValues(r.storageCpu)),
} as const;

/**
 * The ratios the performance goals are stated in (README): small chunks against 8 MiB chunks on
 * the same server, and one tus stream against the SDK's multipart upload with 4 parts in flight.
 */
function ratioRows(cases: Case[]): Array<Record<string, string>> {
  const byName = new Map(cases.map((c) => [c.name, c]));
  const wanted: Array<[keyof typeof metrics, string, string, string]> = [];
  const modes = Object.keys(benchTuskModes()).map((label) => `tusk.${label}`);
  for (const kind of ['tusk', ...modes, 'store', 'plain', 'external']) {
    wanted.push(['MiB/s', `${kind}-1`, `${kind}-8`, '>= 0.6']);
    wanted.push(['MiB/s', `${kind}-2`, `${kind}-8`, '>= 0.8']);
    wanted.push(['MiB/s', `${kind}-8`, 'sdk-stream-4', '>= 0.85']);
    wanted.push(['MiB/s', `${kind}-64`, 'sdk-stream-4', '>= 0.9']);
    wanted.push(['MiB/s', `${kind}-8`, 'sdk-4', '']);
    for (const metric of ['server CPU s/GiB', 'storage CPU s/GiB'] as const) {
      wanted.push([metric, `${kind}-1`, `${kind}-8`, '<= 1.5']);
      wanted.push([metric, `${kind}-2`, `${kind}-8`, '<= 1.5']);
    }
    wanted.push(['storage CPU s/GiB', `${kind}-8`, 'sdk-stream-4', '']);
  }
  // Each mode against the default server, chunk size by chunk size.
  for (const mode of modes) {
    for (const metric of ['MiB/s', 'server CPU s/GiB', 'storage CPU s/GiB'] as const) {
      for (const chunk of [1, 2, 8, 64]) wanted.push([metric, `${mode}-${chunk}`, `tusk-${chunk}`, '']);
    }
  }
  // Two instances behind a balancer without affinity against one behind the same balancer, and
  // each mode without affinity against the default mode's, mode by mode.
  const labels = ['', ...Object.keys(benchTuskModes()).map((label) => `.${label}`)];
  for (const metric of ['MiB/s', 'server CPU s/GiB', 'storage CPU s/GiB'] as const) {
    for (const chunk of [1, 2, 8, 64]) {
      for (const mode of labels) wanted.push([metric, `lb2${mode}-${chunk}`, `lb1${mode}-${chunk}`, '']);
      for (const mode of labels.slice(1)) for (const other of labels.slice(1)) if (other !== mode) wanted.push([metric, `lb2${mode}-${chunk}`, `lb2${other}-${chunk}`, '']);
    }
  }
  const rows: Array<Record<string, string>> = [];
  for (const [metric, a, b, goal] of wanted) {
    const ca = byName.get(a);
    const cb = byName.get(b);
    if (!ca || !cb) continue;
    const pick = metrics[metric];
    const ma = medianOf(ca, pick);
    const mb = medianOf(cb, pick);
    if (ma === undefined || mb === undefined) continue;
    // Run i of every case ran back to back, so run-by-run ratios show how steady the ratio is.
    const paired = ca.runs.map((r, i) => {
      const x = pick(r);
      const y = cb.runs[i] ? pick(cb.runs[i]) : undefined;
      return x === undefined || y === undefined ? '-' : (x / y).toFixed(2);
    });
    rows.push({ ratio: `${metric}: ${a} / ${b}`, 'of medians': (ma / mb).toFixed(2), 'run by run': paired.join(', '), goal: goal || '-' });
  }
  return rows;
}

function report(cases: Case[], peaks: Record<string, number>, stats: Record<string, CallStats>, loadAtStart: string): void {
  const label = benchTuskEnvLabel();
  console.log(
    `\n${cfg.sizeMiB} MiB random file, medians of ${cfg.runs} runs; BENCH_TUSK_ENV: ${label || '(none)'}; load average ${loadAtStart} at start, ${loadAverage()} at end\n`,
  );
  console.log(
    markdownTable(
      cases.map((c) => ({
        case: c.name,
        what: c.what,
        'runs (MiB/s)': c.runs.map((r) => r.mibs.toFixed(0)).join(', '),
        'MiB/s': fmt(medianOf(c, metrics['MiB/s'])),
        'server CPU s/GiB': fmt(medianOf(c, metrics['server CPU s/GiB'])),
        'storage CPU s/GiB': fmt(medianOf(c, metrics['storage CPU s/GiB'])),
        'radosgw / osd / mon': ['radosgw', 'ceph-osd', 'ceph-mon'].map((n) => fmt(medianOf(c, (r) => perGiB(r.storageCpu[n] ?? 0)))).join(' / '),
        'client CPU s/GiB': fmt(medianOf(c, (r) => perGiB(r.clientCpu))),
        'in S3 after success ms': fmt(medianOf(c, (r) => r.lagMs), 0),
      })),
    ),
  );
  const ratios = ratioRows(cases);
  if (ratios.length) console.log(`\nRatios (same run):\n\n${markdownTable(ratios)}`);
  if (Object.keys(peaks).length) {
    console.log(`\nServer peak RSS (VmHWM, whole run): ${Object.entries(peaks).map(([k, v]) => `${k} ${v.toFixed(0)} MiB`).join(', ')}`);
  }
  for (const [server, calls] of Object.entries(stats)) {
    const patches = cases.filter((c) => c.server === server).reduce((n, c) => n + (c.patchesPerRun ?? 0) * c.runs.length, 0);
    if (!patches || !Object.keys(calls).length) continue;
    console.log(`\n${server}: server-side calls per PATCH (${patches} PATCHes over all its cases)\n`);
    console.log(
      markdownTable(
        Object.entries(calls)
          .sort()
          .map(([k, v]) => ({ call: k, 'per PATCH': (v.n / patches).toFixed(2), 'mean ms': (v.ms / v.n).toFixed(1) })),
      ),
    );
  }
}

// ------------------------------------------------------------------ main

async function main(): Promise<void> {
  const loadAtStart = loadAverage();
  const file = await randomFile(cfg.sizeMiB);
  const data = fs.readFileSync(file);
  const sha = crypto.createHash('sha256').update(data).digest('hex');
  const s3 = new S3(s3Config());
  await s3.headBucket({ Bucket: benchEnv.bucket }).catch((err: unknown) => {
    throw new Error(`bucket ${benchEnv.bucket} at ${benchEnv.endpoint} not reachable (set BENCH_S3_*): ${String(err)}`);
  });
  const daemons = storagePids();
  if (!daemons.length) console.error('# no radosgw / ceph-osd / ceph-mon process found: storage CPU will read 0');
  if (!benchEnv.cephConf) console.error('# BENCH_CEPH_CONF unset: storage CPU counts every radosgw / ceph-osd / ceph-mon on this machine');
  console.error(`# ${cfg.sizeMiB} MiB, ${cfg.runs} runs per case, S3 ${benchEnv.endpoint}, storage PIDs ${daemons.join(' ') || '-'}`);

  // What the storage's daemons burn doing nothing (their own timers), to judge the figures by.
  const idle0 = sumValues(storageCpuSeconds(daemons));
  await new Promise((r) => setTimeout(r, 2000));
  const idleStoragePerSecond = (sumValues(storageCpuSeconds(daemons)) - idle0) / 2;

  const servers: Servers = { tusk: new Map(), bare: {} };
  const cases: Case[] = [];
  const peaks: Record<string, number> = {};
  const stats: Record<string, CallStats> = {};
  try {
    for (const name of cfg.cases) cases.push(await buildCase(name, s3, data, file, servers));
    for (let i = 0; i < cfg.warmup; i++) {
      for (const c of cases) {
        const key = await c.upload();
        await untilInS3(s3, key, data.length);
        if (!c.name.startsWith('external-')) await cleanup(s3, key);
        betweenRuns();
      }
    }
    for (let i = 0; i < cfg.runs; i++) {
      for (const c of cases) {
        const serverCpuNow = () => (c.serverPids.length ? c.serverPids.reduce((sum, pid) => sum + (cpuSecondsOf(pid) ?? NaN), 0) : undefined);
        const server0 = serverCpuNow();
        const storage0 = storageCpuSeconds(daemons);
        const client0 = process.cpuUsage();
        const t0 = performance.now();
        const key = await c.upload();
        const seconds = (performance.now() - t0) / 1000;
        const client = process.cpuUsage(client0);
        // The CPU windows close once the object is complete in S3, not at the last 204.
        const lagMs = await untilInS3(s3, key, data.length);
        const storage1 = storageCpuSeconds(daemons);
        const server1 = serverCpuNow();
        const storageCpu: Record<string, number> = {};
        for (const [k, v] of Object.entries(storage1)) storageCpu[k] = v - (storage0[k] ?? 0);
        c.runs.push({
          mibs: cfg.sizeMiB / seconds,
          serverCpu: server0 !== undefined && server1 !== undefined ? server1 - server0 : undefined,
          storageCpu,
          clientCpu: (client.user + client.system) / 1e6,
          lagMs,
        });
        if (cfg.verify && (await sha256Of(s3, key)) !== sha) throw new Error(`${c.name}: the object in S3 differs from the file`);
        if (!c.name.startsWith('external-')) await cleanup(s3, key);
        betweenRuns();
        const r = c.runs.at(-1)!;
        console.error(
          `${c.name} run ${i + 1}: ${r.mibs.toFixed(1)} MiB/s, server ${fmt(r.serverCpu, 2)} s, storage ${sumValues(r.storageCpu).toFixed(2)} s CPU`,
        );
      }
    }
  } finally {
    const peakOf = (pid: number) => {
      try {
        return rssOf(pid).peakMiB;
      } catch {
        return NaN; // already gone
      }
    };
    for (const [key, tusk] of servers.tusk) {
      const name = key.startsWith('lb') ? key.replace(/\.$/, '') : `tusk${key ? `.${key}` : ''}`;
      peaks[name] = Math.max(...tusk.pids.map(peakOf));
      await tusk.stop();
    }
    for (const [kind, bare] of Object.entries(servers.bare)) {
      peaks[kind] = peakOf(bare.pid);
      bare.proc.kill('SIGTERM');
      stats[kind] = await bare.stats;
    }
  }
  report(cases, peaks, stats, loadAtStart);
  console.log(`\nStorage daemons at rest: ${idleStoragePerSecond.toFixed(3)} CPU s per second (included in the storage figures above).`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
