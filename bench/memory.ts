// Peak RSS of a real tusk server process (S3 store) while it receives uploads: memory must not
// grow with file size. Each scenario runs against a fresh `node dist/tusk.js server` so its
// VmHWM (the kernel's peak resident set) belongs to that scenario alone.
//
//   npm run build && bash bench/with-services.sh node dist/bench/memory.js
//   BENCH_SCENARIOS=10MiB,1GiB-single npm run bench:memory   (with BENCH_* env of your own S3/Redis)
import fs from 'node:fs';
import path from 'node:path';
import * as tus from 'tus-js-client';
import { freePort, markdownTable, MiB, randomFile, rssOf, startTuskServer, stopProcess } from './lib.js';

interface Scenario {
  name: string;
  fileMiB: number;
  concurrent: number;
  /** tus-js-client chunkSize; Infinity = the whole file in one PATCH. */
  chunkMiB: number;
}

const scenarios: Scenario[] = [
  { name: '10MiB', fileMiB: 10, concurrent: 1, chunkMiB: Infinity },
  { name: '1GiB-single', fileMiB: 1024, concurrent: 1, chunkMiB: Infinity },
  { name: '1GiB-8MiB-chunks', fileMiB: 1024, concurrent: 1, chunkMiB: 8 },
  { name: '50x20MiB', fileMiB: 20, concurrent: 50, chunkMiB: Infinity },
];

function upload(file: string, endpoint: string, chunkMiB: number): Promise<void> {
  const size = fs.statSync(file).size;
  return new Promise((resolve, reject) => {
    const u = new tus.Upload(fs.createReadStream(file), {
      endpoint,
      uploadSize: size,
      chunkSize: chunkMiB === Infinity ? Infinity : chunkMiB * MiB,
      retryDelays: [],
      metadata: { filename: path.basename(file) },
      onError: reject,
      onSuccess: () => resolve(),
    });
    u.start();
  });
}

async function run(s: Scenario): Promise<Record<string, string | number>> {
  const file = await randomFile(s.fileMiB);
  const port = await freePort();
  const tusk = await startTuskServer(port);
  const idle = rssOf(tusk.pid!);
  let sampledPeak = 0;
  const sampler = setInterval(() => (sampledPeak = Math.max(sampledPeak, rssOf(tusk.pid!).rssMiB)), 100);
  const started = Date.now();
  try {
    await Promise.all(Array.from({ length: s.concurrent }, () => upload(file, `http://127.0.0.1:${port}/files/`, s.chunkMiB)));
  } finally {
    clearInterval(sampler);
  }
  const seconds = (Date.now() - started) / 1000;
  const after = rssOf(tusk.pid!);
  await stopProcess(tusk);
  const totalMiB = s.fileMiB * s.concurrent;
  return {
    scenario: s.name,
    'uploaded MiB': totalMiB,
    'idle RSS MiB': idle.rssMiB.toFixed(0),
    'peak RSS MiB (VmHWM)': after.peakMiB.toFixed(0),
    'MiB/s': (totalMiB / seconds).toFixed(0),
  };
}

async function main(): Promise<void> {
  const wanted = process.env.BENCH_SCENARIOS?.split(',').map((s) => s.trim());
  const rows: Array<Record<string, string | number>> = [];
  for (const scenario of scenarios.filter((s) => !wanted || wanted.includes(s.name))) {
    const row = await run(scenario);
    console.log(JSON.stringify(row));
    rows.push(row);
  }
  console.log(`\n${markdownTable(rows)}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
