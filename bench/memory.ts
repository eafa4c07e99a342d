// Peak RSS of a real tusk server process (S3 store, with BENCH_TUSK_ENV) while it receives
// uploads: memory must not grow with file size. Each scenario runs against a fresh
// `node dist/tusk.js server` so its VmHWM (the kernel's peak resident set) belongs to that
// scenario alone; for every chunking measured at 10 MiB and at 1 GiB the difference is reported.
//
//   npm run bench:memory
//   BENCH_TUSK_ENV='{"UPLOAD_ACK":"disk"}' npm run bench:memory
//   BENCH_SCENARIOS=10MiB-single,1GiB-single npm run bench:memory
import fs from 'node:fs';
import path from 'node:path';
import { S3 } from '@aws-sdk/client-s3';
import * as tus from 'tus-js-client';
import { benchEnv, benchTuskEnvLabel, betweenRuns, freePort, markdownTable, MiB, randomFile, loadAverage, rssOf, startTuskServer, stopProcess, untilInS3 } from './lib.js';

interface Scenario {
  name: string;
  fileMiB: number;
  concurrent: number;
  /** tus-js-client chunkSize; Infinity = the whole file in one PATCH. */
  chunkMiB: number;
}

/** The difference between a 1 GiB and a 10 MiB upload's peak RSS must stay below this. */
const GOAL_MIB = 64;

const scenarios: Scenario[] = [
  { name: '10MiB-single', fileMiB: 10, concurrent: 1, chunkMiB: Infinity },
  { name: '1GiB-single', fileMiB: 1024, concurrent: 1, chunkMiB: Infinity },
  { name: '10MiB-8MiB-chunks', fileMiB: 10, concurrent: 1, chunkMiB: 8 },
  { name: '1GiB-8MiB-chunks', fileMiB: 1024, concurrent: 1, chunkMiB: 8 },
  { name: '10MiB-1MiB-chunks', fileMiB: 10, concurrent: 1, chunkMiB: 1 },
  { name: '1GiB-1MiB-chunks', fileMiB: 1024, concurrent: 1, chunkMiB: 1 },
  { name: '50x20MiB', fileMiB: 20, concurrent: 50, chunkMiB: Infinity },
];
const DEFAULT_SCENARIOS = ['10MiB-single', '1GiB-single', '10MiB-8MiB-chunks', '1GiB-8MiB-chunks', '10MiB-1MiB-chunks', '1GiB-1MiB-chunks'];

function upload(file: string, endpoint: string, chunkMiB: number): Promise<string> {
  const size = fs.statSync(file).size;
  return new Promise((resolve, reject) => {
    const u = new tus.Upload(fs.createReadStream(file), {
      endpoint,
      uploadSize: size,
      chunkSize: chunkMiB === Infinity ? Infinity : chunkMiB * MiB,
      retryDelays: [],
      storeFingerprintForResuming: false,
      metadata: { filename: path.basename(file) },
      onError: reject,
      onSuccess: () => resolve(decodeURIComponent(u.url!.split('/').pop()!)),
    });
    u.start();
  });
}

interface Result {
  scenario: Scenario;
  idleMiB: number;
  peakMiB: number;
  mibs: number;
}

async function run(s: Scenario, s3: S3): Promise<Result> {
  const file = await randomFile(s.fileMiB);
  const port = await freePort();
  const tusk = await startTuskServer(port);
  const idle = rssOf(tusk.pid!);
  const started = Date.now();
  let ids: string[];
  let result: Result;
  try {
    ids = await Promise.all(Array.from({ length: s.concurrent }, () => upload(file, `http://127.0.0.1:${port}/files/`, s.chunkMiB)));
    // Until the bytes are in S3 (a server may acknowledge them from a local buffer first).
    for (const id of ids) await untilInS3(s3, id, s.fileMiB * MiB);
    const seconds = (Date.now() - started) / 1000;
    result = { scenario: s, idleMiB: idle.rssMiB, peakMiB: rssOf(tusk.pid!).peakMiB, mibs: (s.fileMiB * s.concurrent) / seconds };
  } finally {
    await stopProcess(tusk);
  }
  for (const id of ids) {
    await s3.deleteObjects({ Bucket: benchEnv.bucket, Delete: { Objects: [{ Key: id }, { Key: `${id}.info` }, { Key: `${id}.part` }] } });
  }
  betweenRuns();
  return result;
}

async function main(): Promise<void> {
  const loadAtStart = loadAverage();
  const wanted = process.env.BENCH_SCENARIOS?.split(',').map((s) => s.trim()) ?? DEFAULT_SCENARIOS;
  const unknown = wanted.filter((w) => !scenarios.some((s) => s.name === w));
  if (unknown.length) throw new Error(`unknown scenario ${unknown.join(', ')} (${scenarios.map((s) => s.name).join(', ')})`);
  const s3 = new S3({
    endpoint: benchEnv.endpoint,
    region: benchEnv.region,
    forcePathStyle: true,
    credentials: { accessKeyId: benchEnv.accessKeyId, secretAccessKey: benchEnv.secretAccessKey },
  });
  const results: Result[] = [];
  for (const scenario of scenarios.filter((s) => wanted.includes(s.name))) {
    const r = await run(scenario, s3);
    console.error(`${scenario.name}: peak ${r.peakMiB.toFixed(0)} MiB, ${r.mibs.toFixed(0)} MiB/s`);
    results.push(r);
  }
  const label = benchTuskEnvLabel();
  console.log(`\ntusk server peak RSS; BENCH_TUSK_ENV: ${label || '(none)'}; load average ${loadAtStart} at start, ${loadAverage()} at end\n`);
  console.log(
    markdownTable(
      results.map((r) => ({
        scenario: r.scenario.name,
        'uploaded MiB': r.scenario.fileMiB * r.scenario.concurrent,
        'idle RSS MiB': r.idleMiB.toFixed(0),
        'peak RSS MiB (VmHWM)': r.peakMiB.toFixed(0),
        'MiB/s': r.mibs.toFixed(0),
      })),
    ),
  );
  // Same chunking, 10 MiB against 1 GiB: what a bigger file costs in memory.
  const rows: Array<Record<string, string>> = [];
  for (const big of results.filter((r) => r.scenario.name.startsWith('1GiB-'))) {
    const small = results.find((r) => r.scenario.name === big.scenario.name.replace(/^1GiB-/, '10MiB-'));
    if (!small) continue;
    const diff = big.peakMiB - small.peakMiB;
    rows.push({
      chunking: big.scenario.name.replace(/^1GiB-/, ''),
      '10 MiB peak': small.peakMiB.toFixed(0),
      '1 GiB peak': big.peakMiB.toFixed(0),
      'difference MiB': diff.toFixed(0),
      [`goal < ${GOAL_MIB} MiB`]: diff < GOAL_MIB ? 'met' : 'NOT met',
    });
  }
  if (rows.length) console.log(`\n${markdownTable(rows)}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
