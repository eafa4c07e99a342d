// Upload throughput into S3: direct AWS SDK multipart vs tus-js-client through @tus/server with
// plain @tus/s3-store vs with TuskS3Store. See bench/README.md for figures and how to run.
//
//   npm run bench:throughput                       # all cases against a local RGW + Redis
//   BENCH_CASES=tusk-8,tusk-64 npm run bench:throughput
//   BENCH_TUS_ENDPOINT=http://127.0.0.1:1080/files BENCH_CASES=sdk,external-8,external-64 ...
//
// Each tus case runs its server as a child process (`throughput.js serve <plain|tusk> <port>`:
// a minimal `new Server({ path: '/files', datastore })`, `server.listen(port, '127.0.0.1')`),
// so the client and the server do not share an event loop and the server's peak RSS (VmHWM)
// can be read. On exit the child reports per-S3-command timings.
import { execSync, spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { S3, type S3ClientConfig } from '@aws-sdk/client-s3';
import { Upload as TusUpload } from 'tus-js-client';

const MiB = 1024 * 1024;

const cfg = {
  endpoint: process.env.BENCH_S3_ENDPOINT ?? process.env.TEST_S3_ENDPOINT ?? 'http://127.0.0.1:7480',
  accessKeyId: process.env.BENCH_S3_ACCESS_KEY_ID ?? process.env.TEST_S3_ACCESS_KEY_ID ?? 'testkey',
  secretAccessKey: process.env.BENCH_S3_SECRET_ACCESS_KEY ?? process.env.TEST_S3_SECRET_ACCESS_KEY ?? 'testsecret',
  region: process.env.BENCH_S3_REGION ?? process.env.TEST_S3_REGION ?? 'us-east-1',
  bucket: process.env.BENCH_S3_BUCKET ?? process.env.TEST_S3_BUCKET ?? 'uploads',
  redisUrl: process.env.BENCH_REDIS_URL ?? process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
  sizeMiB: Number(process.env.BENCH_SIZE_MIB ?? 200),
  runs: Number(process.env.BENCH_RUNS ?? 3),
  cases: (process.env.BENCH_CASES ?? 'sdk,sdk-stream,plain-8,tusk-8,tusk-64').split(',').map((s) => s.trim()).filter(Boolean),
  partMiB: Number(process.env.BENCH_PART_MIB ?? 8),
  sdkConcurrency: Number(process.env.BENCH_SDK_CONCURRENCY ?? 4),
  tusEndpoint: process.env.BENCH_TUS_ENDPOINT,
  port: Number(process.env.BENCH_PORT ?? 27110),
  verify: process.env.BENCH_VERIFY !== '0',
  /** Shell command run after every upload, e.g. RGW garbage collection (memstore keeps deleted data). */
  betweenRuns: process.env.BENCH_BETWEEN_RUNS,
};

function s3Config(): S3ClientConfig {
  return {
    endpoint: cfg.endpoint,
    region: cfg.region,
    forcePathStyle: true,
    credentials: { accessKeyId: cfg.accessKeyId, secretAccessKey: cfg.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  };
}

// ------------------------------------------------------------------ child: tus server

type CallStats = Record<string, { n: number; ms: number }>;

async function serve(kind: string, port: number): Promise<void> {
  const { Server } = await import('@tus/server');
  const { S3Store } = await import('@tus/s3-store');
  const s3ClientConfig = { ...s3Config(), bucket: cfg.bucket };
  const partSize = cfg.partMiB * MiB;
  let datastore: InstanceType<typeof S3Store>;
  let redis: { quit(): Promise<unknown> } | undefined;
  if (kind === 'plain') {
    datastore = new S3Store({ s3ClientConfig, partSize });
  } else {
    const { TuskS3Store } = await import('../lib/stores/s3-store.js');
    const { Redis } = await import('ioredis');
    const { pino } = await import('pino');
    const r = new Redis(cfg.redisUrl);
    redis = r;
    datastore = new TuskS3Store({
      s3ClientConfig,
      partSize,
      redis: r,
      redisPrefix: 'bench:',
      ...(process.env.BENCH_PARTS_IN_FLIGHT ? { partsInFlightPerWrite: Number(process.env.BENCH_PARTS_IN_FLIGHT) } : {}),
      logger: pino({ level: process.env.BENCH_LOG_LEVEL ?? 'warn' }, pino.destination(2)),
    });
  }
  const calls: CallStats = {};
  const add = (name: string, ms: number) => {
    const c = (calls[name] ??= { n: 0, ms: 0 });
    c.n++;
    c.ms += ms;
  };
  const client = (datastore as unknown as { client: S3 }).client;
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const t0 = performance.now();
      try {
        return await next(args);
      } finally {
        add(`S3 ${String(context.commandName).replace(/Command$/, '')}`, performance.now() - t0);
      }
    },
    { step: 'initialize', name: 'benchTimer' },
  );
  const store = datastore as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
  for (const m of ['getUpload', 'write']) {
    const orig = store[m]!.bind(datastore);
    store[m] = async (...a: unknown[]) => {
      const t0 = performance.now();
      try {
        return await orig(...a);
      } finally {
        add(`store.${m}`, performance.now() - t0);
      }
    };
  }
  const server = new Server({ path: '/files', datastore });
  const http = server.listen(port, '127.0.0.1');
  http.once('listening', () => process.stdout.write('LISTENING\n'));
  process.once('SIGTERM', () => {
    process.stdout.write(`STATS ${JSON.stringify(calls)}\n`);
    http.close();
    void redis?.quit();
    setTimeout(() => process.exit(0), 50);
  });
}

// ------------------------------------------------------------------ orchestrator

interface ChildServer {
  proc: ChildProcess;
  endpoint: string;
  stats: Promise<CallStats>;
}

async function startServer(kind: string, port: number): Promise<ChildServer> {
  const proc = spawn(process.execPath, [fileURLToPath(import.meta.url), 'serve', kind, String(port)], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: process.env,
  });
  let out = '';
  let resolveStats: (s: CallStats) => void = () => {};
  const stats = new Promise<CallStats>((r) => (resolveStats = r));
  const ready = new Promise<void>((resolve, reject) => {
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('LISTENING\n')) resolve();
      const m = /STATS (.*)\n/.exec(out);
      if (m) resolveStats(JSON.parse(m[1]!) as CallStats);
    });
    proc.once('exit', (code) => {
      reject(new Error(`server exited (${code})`));
      resolveStats({});
    });
  });
  await ready;
  return { proc, endpoint: `http://127.0.0.1:${port}/files`, stats };
}

function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, USER_HZ = 100
  } catch {
    return undefined;
  }
}

function peakRssMiB(pid: number): number | undefined {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

async function sdkUpload(s3: S3, data: Buffer, key: string, stream: boolean): Promise<number> {
  const partSize = cfg.partMiB * MiB;
  const t0 = performance.now();
  const { UploadId } = await s3.createMultipartUpload({ Bucket: cfg.bucket, Key: key });
  const count = Math.ceil(data.length / partSize);
  const etags: string[] = new Array<string>(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      const part = data.subarray(i * partSize, Math.min(data.length, (i + 1) * partSize));
      // A Buffer body is signed with its SHA-256 over plain HTTP (CPU); a stream body is sent
      // UNSIGNED-PAYLOAD, like the tus stores do.
      const res = await s3.uploadPart({
        Bucket: cfg.bucket,
        Key: key,
        UploadId,
        PartNumber: i + 1,
        Body: stream ? Readable.from([part]) : part,
        ContentLength: part.length,
      });
      etags[i] = res.ETag!;
    }
  };
  await Promise.all(Array.from({ length: cfg.sdkConcurrency }, worker));
  await s3.completeMultipartUpload({
    Bucket: cfg.bucket,
    Key: key,
    UploadId,
    MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
  });
  return (performance.now() - t0) / 1000;
}

function tusUpload(endpoint: string, data: Buffer, chunkSize: number): Promise<{ seconds: number; id: string }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const upload = new TusUpload(data, {
      endpoint,
      chunkSize,
      retryDelays: [],
      storeFingerprintForResuming: false,
      metadata: { filename: 'bench.bin', filetype: 'application/octet-stream' },
      onError: reject,
      onSuccess: () => {
        const id = decodeURIComponent(upload.url!.split('/').pop()!);
        resolve({ seconds: (performance.now() - t0) / 1000, id });
      },
    });
    upload.start();
  });
}

async function sha256Of(s3: S3, key: string): Promise<string> {
  const res = await s3.getObject({ Bucket: cfg.bucket, Key: key });
  const hash = crypto.createHash('sha256');
  for await (const chunk of res.Body as Readable) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function cleanup(s3: S3, key: string): Promise<void> {
  await s3
    .deleteObjects({ Bucket: cfg.bucket, Delete: { Objects: [{ Key: key }, { Key: `${key}.info` }, { Key: `${key}.part` }] } })
    .catch(() => {});
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

interface CaseResult {
  name: string;
  what: string;
  mibs: number[];
  /** Server CPU seconds (user + system) per run. */
  cpu?: number[];
  peakRss?: number;
  stats?: CallStats;
  patches?: number;
}

async function main(): Promise<void> {
  const size = cfg.sizeMiB * MiB;
  const data = crypto.randomBytes(size);
  const sha = crypto.createHash('sha256').update(data).digest('hex');
  const s3 = new S3(s3Config());
  await s3.headBucket({ Bucket: cfg.bucket }).catch((err: unknown) => {
    throw new Error(`bucket ${cfg.bucket} at ${cfg.endpoint} not reachable (set BENCH_S3_*): ${String(err)}`);
  });
  console.error(`# ${cfg.sizeMiB} MiB random file, ${cfg.runs} runs per case, S3 ${cfg.endpoint} bucket ${cfg.bucket}`);
  let port = cfg.port;

  // Set up every case first (tus servers as child processes), then interleave the runs
  // (run 1 of every case, run 2 of every case, ...) so that load drifting on a shared machine
  // does not favour one case.
  interface Runner {
    r: CaseResult;
    run: () => Promise<void>;
    server?: ChildServer;
  }
  const runners: Runner[] = [];
  for (const name of cfg.cases) {
    const r: CaseResult = { name, what: '', mibs: [], cpu: [] };
    const sdk = /^sdk(-stream)?$/.exec(name);
    if (sdk) {
      const stream = sdk[1] !== undefined;
      r.what = `AWS SDK multipart, ${cfg.partMiB} MiB parts, ${cfg.sdkConcurrency} concurrent, ${stream ? 'stream' : 'Buffer'} bodies`;
      runners.push({
        r,
        run: async () => {
          const key = `bench-sdk-${crypto.randomUUID()}`;
          const sec = await sdkUpload(s3, data, key, stream);
          if (cfg.verify && (await sha256Of(s3, key)) !== sha) throw new Error(`${name}: object differs`);
          await cleanup(s3, key);
          r.mibs.push(cfg.sizeMiB / sec);
        },
      });
      continue;
    }
    const m = /^(plain|tusk|external)-(\d+)$/.exec(name);
    if (!m) throw new Error(`unknown case ${name} (sdk, sdk-stream, plain-<MiB>, tusk-<MiB>, external-<MiB>)`);
    const kind = m[1]!;
    const chunk = Number(m[2]) * MiB;
    r.what = `tus-js-client chunkSize ${m[2]} MiB, ${
      kind === 'plain' ? 'plain @tus/s3-store' : kind === 'tusk' ? 'TuskS3Store' : `external ${cfg.tusEndpoint}`
    }`;
    r.patches = 0;
    let server: ChildServer | undefined;
    let endpoint = cfg.tusEndpoint ?? '';
    if (kind !== 'external') {
      server = await startServer(kind, port++);
      endpoint = server.endpoint;
    } else if (!endpoint) {
      throw new Error('external-* cases need BENCH_TUS_ENDPOINT');
    }
    const pid = server?.proc.pid;
    runners.push({
      r,
      server,
      run: async () => {
        const cpu0 = pid ? cpuSeconds(pid) : undefined;
        const { seconds, id } = await tusUpload(endpoint, data, chunk);
        const cpu1 = pid ? cpuSeconds(pid) : undefined;
        if (cpu0 !== undefined && cpu1 !== undefined) r.cpu!.push(cpu1 - cpu0);
        if (cfg.verify && (await sha256Of(s3, id)) !== sha) throw new Error(`${name}: object differs`);
        if (kind !== 'external') await cleanup(s3, id);
        r.mibs.push(cfg.sizeMiB / seconds);
        r.patches! += Math.ceil(size / chunk);
      },
    });
  }
  try {
    for (let i = 0; i < cfg.runs; i++) {
      for (const { r, run } of runners) {
        await run();
        console.error(`${r.name} run ${i + 1}: ${r.mibs.at(-1)!.toFixed(1)} MiB/s`);
        if (cfg.betweenRuns) execSync(cfg.betweenRuns, { stdio: 'ignore', timeout: 60_000 });
      }
    }
  } finally {
    for (const { r, server } of runners) {
      if (!server) continue;
      r.peakRss = peakRssMiB(server.proc.pid!);
      server.proc.kill('SIGTERM');
      r.stats = await server.stats;
    }
  }
  const results = runners.map((x) => x.r);

  const baseOf = (name: string) => {
    const r = results.find((x) => x.name === name);
    return r ? median(r.mibs) : undefined;
  };
  const bases = (['sdk', 'sdk-stream'] as const).filter((n) => baseOf(n) !== undefined);
  console.log(
    `\n| case | what | runs (MiB/s) | median MiB/s | ${bases.map((b) => `ratio to ${b}`).join(' | ')} | server peak RSS | server CPU s/GiB |`,
  );
  console.log(`|---|---|---|---|${bases.map(() => '---|').join('')}---|---|`);
  for (const r of results) {
    const med = median(r.mibs);
    console.log(
      `| ${r.name} | ${r.what} | ${r.mibs.map((x) => x.toFixed(0)).join(', ')} | ${med.toFixed(1)} | ${bases
        .map((b) => (med / baseOf(b)!).toFixed(2))
        .join(' | ')} | ${r.peakRss ? `${r.peakRss.toFixed(0)} MiB` : '-'} | ${
        r.cpu?.length ? ((median(r.cpu) / cfg.sizeMiB) * 1024).toFixed(1) : '-'
      } |`,
    );
  }
  for (const r of results) {
    if (!r.stats || !r.patches) continue;
    console.log(`\n${r.name}: server-side calls per PATCH (${r.patches} PATCHes in ${cfg.runs} runs)`);
    console.log(`| call | per PATCH | mean ms |`);
    console.log(`|---|---|---|`);
    for (const [k, v] of Object.entries(r.stats).sort()) {
      console.log(`| ${k} | ${(v.n / r.patches).toFixed(2)} | ${(v.ms / v.n).toFixed(1)} |`);
    }
  }
}

if (process.argv[2] === 'serve') {
  serve(process.argv[3] ?? 'tusk', Number(process.argv[4])).catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
} else {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
