// What tus protocol extensions cost or gain, through a real tusk server on S3, same run:
//  - parallel uploads (concatenation): tus-js-client parallelUploads: 4 vs one stream, 200 MiB
//  - checksums: 8 MiB PATCHes with and without `Upload-Checksum: sha256 ...` per chunk
// Median of BENCH_RUNS (3) runs each.
//
//   npm run build && bash bench/with-services.sh node dist/bench/protocol.js
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import * as tus from 'tus-js-client';
import { freePort, markdownTable, median, MiB, randomFile, startTuskServer, stopProcess } from './lib.js';

const sizeMiB = Number(process.env.BENCH_SIZE_MIB ?? 200);
const runs = Number(process.env.BENCH_RUNS ?? 3);

function tusJs(file: string, endpoint: string, parallelUploads: number): Promise<void> {
  const size = fs.statSync(file).size;
  return new Promise((resolve, reject) => {
    const upload = new tus.Upload(fs.createReadStream(file), {
      endpoint,
      ...(parallelUploads > 1 ? { parallelUploads } : { uploadSize: size }),
      retryDelays: [],
      storeFingerprintForResuming: false,
      onError: reject,
      onSuccess: () => resolve(),
    });
    upload.start();
  });
}

/** Sequential 8 MiB PATCHes over fetch, optionally each with a sha256 Upload-Checksum. */
async function rawPatches(file: string, endpoint: string, chunk: number, withChecksum: boolean): Promise<void> {
  const size = fs.statSync(file).size;
  const created = await fetch(endpoint, { method: 'POST', headers: { 'Tus-Resumable': '1.0.0', 'Upload-Length': String(size) } });
  const url = new URL(created.headers.get('location') ?? '', endpoint).toString();
  const fd = await fs.promises.open(file, 'r');
  try {
    const buffer = Buffer.alloc(chunk);
    for (let offset = 0; offset < size; ) {
      const { bytesRead } = await fd.read(buffer, 0, Math.min(chunk, size - offset), offset);
      const body = buffer.subarray(0, bytesRead);
      const headers: Record<string, string> = { 'Tus-Resumable': '1.0.0', 'Upload-Offset': String(offset), 'Content-Type': 'application/offset+octet-stream' };
      if (withChecksum) headers['Upload-Checksum'] = `sha256 ${createHash('sha256').update(body).digest('base64')}`;
      const res = await fetch(url, { method: 'PATCH', headers, body });
      if (res.status !== 204) throw new Error(`PATCH at ${offset}: ${res.status} ${await res.text()}`);
      offset = Number(res.headers.get('upload-offset'));
    }
  } finally {
    await fd.close();
  }
}

async function main(): Promise<void> {
  const file = await randomFile(sizeMiB);
  const port = await freePort();
  const tusk = await startTuskServer(port);
  const endpoint = `http://127.0.0.1:${port}/files/`;
  const cases: Array<[string, () => Promise<void>]> = [
    ['tus-js-client, one stream', () => tusJs(file, endpoint, 1)],
    ['tus-js-client, parallelUploads: 4', () => tusJs(file, endpoint, 4)],
    ['8 MiB PATCHes, no checksum', () => rawPatches(file, endpoint, 8 * MiB, false)],
    ['8 MiB PATCHes, sha256 Upload-Checksum', () => rawPatches(file, endpoint, 8 * MiB, true)],
  ];
  const rows: Array<Record<string, string | number>> = [];
  try {
    for (const [name, run] of cases) {
      const rates: number[] = [];
      for (let i = 0; i < runs; i++) {
        const started = performance.now();
        await run();
        rates.push(sizeMiB / ((performance.now() - started) / 1000));
      }
      const row = { case: name, 'MiB/s (median)': median(rates).toFixed(0), runs: rates.map((r) => r.toFixed(0)).join(' / ') };
      console.log(JSON.stringify(row));
      rows.push(row);
    }
  } finally {
    await stopProcess(tusk);
  }
  console.log(`\n${sizeMiB} MiB to S3 through tusk:\n${markdownTable(rows)}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
