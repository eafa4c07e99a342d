// Many uploads at once with mobile-size chunks: PATCH latency, peak RSS and CPU of the server,
// for a real tusk server (with BENCH_TUSK_ENV) and for a bare @tus/server + plain @tus/s3-store,
// one after the other in the same run against the same S3. See bench/README.md.
//
//   npm run bench:concurrent
//   BENCH_TUSK_ENV='{"UPLOAD_ACK":"disk"}' BENCH_CONCURRENT_SERVERS=tusk npm run bench:concurrent
//
// All uploads start together (tus-js-client, Node, one process) and each sends its chunks one at
// a time; a PATCH's latency is from the request being handed to the HTTP stack to its response.
// Bounded: BENCH_CONCURRENT_TIMEOUT_S per server, after which unfinished uploads are aborted and
// counted as such.
import crypto from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { S3 } from '@aws-sdk/client-s3';
import { Upload as TusUpload, type HttpRequest } from 'tus-js-client';
import { startBareServer } from './bare-server.js';
import {
  benchEnv,
  benchTuskEnvLabel,
  betweenRuns,
  cpuSecondsOf,
  freePort,
  markdownTable,
  MiB,
  rssOf,
  startTuskServer,
  stopProcess,
  storageCpuSeconds,
  storagePids,
  loadAverage,
  sumValues,
  untilInS3,
} from './lib.js';

const cfg = {
  uploads: Number(process.env.BENCH_CONCURRENT_UPLOADS ?? 200),
  sizeMiB: Number(process.env.BENCH_CONCURRENT_MIB ?? 4),
  chunkMiB: Number(process.env.BENCH_CONCURRENT_CHUNK_MIB ?? 1),
  timeoutSeconds: Number(process.env.BENCH_CONCURRENT_TIMEOUT_S ?? 120),
  servers: (process.env.BENCH_CONCURRENT_SERVERS ?? 'tusk,plain').split(',').map((s) => s.trim()).filter(Boolean),
};

interface Outcome {
  server: string;
  done: number;
  failed: number;
  aborted: number;
  seconds: number;
  /** From the last success until every finished upload was complete in S3. */
  inS3Seconds: number;
  patchMs: number[];
  postMs: number[];
  peakRssMiB: number;
  serverCpu: number;
  storageCpu: number;
  clientCpu: number;
  firstError?: string;
  ids: string[];
}

/** Nearest-rank percentile. */
function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

async function runAgainst(s3: S3, server: string, endpoint: string, pid: number, data: Buffer): Promise<Outcome> {
  const patchMs: number[] = [];
  const postMs: number[] = [];
  const started = new WeakMap<HttpRequest, number>();
  const outcome: Outcome = { server, done: 0, failed: 0, aborted: 0, seconds: 0, inS3Seconds: 0, patchMs, postMs, peakRssMiB: 0, serverCpu: 0, storageCpu: 0, clientCpu: 0, ids: [] };
  const uploads: TusUpload[] = [];
  const daemons = storagePids();
  const cpu0 = cpuSecondsOf(pid) ?? 0;
  const storage0 = sumValues(storageCpuSeconds(daemons));
  const client0 = process.cpuUsage();
  const t0 = performance.now();
  const finished = Array.from(
    { length: cfg.uploads },
    (_, i) =>
      new Promise<void>((resolve) => {
        const upload = new TusUpload(data, {
          endpoint,
          chunkSize: cfg.chunkMiB * MiB,
          retryDelays: [],
          storeFingerprintForResuming: false,
          metadata: { filename: `concurrent-${i}.bin`, filetype: 'application/octet-stream' },
          onBeforeRequest: (req) => {
            started.set(req, performance.now());
          },
          onAfterResponse: (req) => {
            const t = started.get(req);
            if (t === undefined) return;
            const ms = performance.now() - t;
            if (req.getMethod() === 'PATCH') patchMs.push(ms);
            else if (req.getMethod() === 'POST') postMs.push(ms);
          },
          onError: (err) => {
            outcome.failed++;
            outcome.firstError ??= String(err).slice(0, 300);
            resolve();
          },
          onSuccess: () => {
            outcome.done++;
            outcome.ids.push(decodeURIComponent(upload.url!.split('/').pop()!));
            resolve();
          },
        });
        uploads.push(upload);
        upload.start();
      }),
  );
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), cfg.timeoutSeconds * 1000)));
  try {
    if ((await Promise.race([Promise.all(finished), timedOut])) === 'timeout') {
      outcome.aborted = cfg.uploads - outcome.done - outcome.failed;
      await Promise.all(uploads.map((u) => u.abort(false).catch(() => {})));
    }
  } finally {
    clearTimeout(timer);
  }
  outcome.seconds = (performance.now() - t0) / 1000;
  // A server may acknowledge bytes before they are in S3: the CPU and memory figures include
  // getting every finished upload there.
  for (let i = 0; i < outcome.ids.length; i += 20) await Promise.all(outcome.ids.slice(i, i + 20).map((id) => untilInS3(s3, id, data.length)));
  outcome.inS3Seconds = (performance.now() - t0) / 1000 - outcome.seconds;
  outcome.serverCpu = (cpuSecondsOf(pid) ?? cpu0) - cpu0;
  outcome.storageCpu = sumValues(storageCpuSeconds(daemons)) - storage0;
  const client = process.cpuUsage(client0);
  outcome.clientCpu = (client.user + client.system) / 1e6;
  try {
    outcome.peakRssMiB = rssOf(pid).peakMiB; // VmHWM: the process is fresh, so its peak is this run's
  } catch {
    outcome.peakRssMiB = NaN; // the server is gone (its uploads count as failed)
  }
  return outcome;
}

/** A few finished uploads have the right bytes in S3 (all were checked for their size); remove them all. */
async function checkAndRemove(s3: S3, ids: string[], sha: string): Promise<void> {
  for (const id of ids.slice(0, 3)) {
    const res = await s3.getObject({ Bucket: benchEnv.bucket, Key: id });
    const got = crypto.createHash('sha256').update(await res.Body!.transformToByteArray()).digest('hex');
    if (got !== sha) throw new Error(`upload ${id}: the object differs from what was sent`);
  }
  for (let i = 0; i < ids.length; i += 300) {
    const objects = ids.slice(i, i + 300).flatMap((id) => [{ Key: id }, { Key: `${id}.info` }, { Key: `${id}.part` }]);
    await s3.deleteObjects({ Bucket: benchEnv.bucket, Delete: { Objects: objects } }).catch(() => {});
  }
}

async function main(): Promise<void> {
  const loadAtStart = loadAverage();
  const data = crypto.randomBytes(cfg.sizeMiB * MiB);
  const sha = crypto.createHash('sha256').update(data).digest('hex');
  const s3 = new S3({
    endpoint: benchEnv.endpoint,
    region: benchEnv.region,
    forcePathStyle: true,
    credentials: { accessKeyId: benchEnv.accessKeyId, secretAccessKey: benchEnv.secretAccessKey },
  });
  console.error(`# ${cfg.uploads} uploads of ${cfg.sizeMiB} MiB at once, ${cfg.chunkMiB} MiB chunks, servers ${cfg.servers.join(', ')}`);
  const outcomes: Outcome[] = [];
  for (const server of cfg.servers) {
    const port = await freePort();
    let pid: number;
    let stop: () => Promise<void>;
    if (server === 'tusk') {
      const proc = await startTuskServer(port);
      pid = proc.pid!;
      stop = () => stopProcess(proc);
    } else if (server === 'plain' || server === 'store') {
      const bare = await startBareServer(server, port);
      pid = bare.pid;
      stop = async () => {
        bare.proc.kill('SIGTERM');
        await bare.stats;
      };
    } else {
      throw new Error(`unknown server ${server} (tusk, plain, store)`);
    }
    try {
      const o = await runAgainst(s3, server, `http://127.0.0.1:${port}/files/`, pid, data);
      outcomes.push(o);
      console.error(`${server}: ${o.done} done, ${o.failed} failed, ${o.aborted} aborted in ${o.seconds.toFixed(1)} s`);
      if (o.firstError) console.error(`${server}: first error: ${o.firstError}`);
    } finally {
      await stop();
    }
    await checkAndRemove(s3, outcomes.at(-1)!.ids, sha);
    betweenRuns();
  }
  const label = benchTuskEnvLabel();
  console.log(
    `\n${cfg.uploads} concurrent uploads of ${cfg.sizeMiB} MiB, ${cfg.chunkMiB} MiB chunks (tus-js-client); BENCH_TUSK_ENV: ${label || '(none)'}; load average ${loadAtStart} at start, ${loadAverage()} at end\n`,
  );
  console.log(
    markdownTable(
      outcomes.map((o) => {
        const patch = [...o.patchMs].sort((a, b) => a - b);
        const post = [...o.postMs].sort((a, b) => a - b);
        const gib = (o.done * cfg.sizeMiB) / 1024;
        return {
          server: o.server === 'tusk' ? `tusk server${label ? ` (${label})` : ''}` : o.server === 'plain' ? '@tus/server + @tus/s3-store' : '@tus/server + TuskS3Store',
          'done / failed / aborted': `${o.done} / ${o.failed} / ${o.aborted}`,
          's': o.seconds.toFixed(1),
          '+ s to S3': o.inS3Seconds.toFixed(1),
          'MiB/s': ((o.done * cfg.sizeMiB) / o.seconds).toFixed(1),
          PATCHes: patch.length,
          'PATCH p50 ms': percentile(patch, 50).toFixed(0),
          'p90 ms': percentile(patch, 90).toFixed(0),
          'p99 ms': percentile(patch, 99).toFixed(0),
          'max ms': percentile(patch, 100).toFixed(0),
          'POST p50 ms': percentile(post, 50).toFixed(0),
          'peak RSS MiB': o.peakRssMiB.toFixed(0),
          'server CPU s': o.serverCpu.toFixed(1),
          'server CPU s/GiB': gib ? (o.serverCpu / gib).toFixed(1) : '-',
          'storage CPU s': o.storageCpu.toFixed(1),
          'client CPU s': o.clientCpu.toFixed(1),
        };
      }),
    ),
  );
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
