// Direct-to-storage uploads (server/api/direct-uploads.ts) on a real tusk server process:
//   1. initiate and complete latency (p50/p99) and requests/s: BENCH_DIRECT_PAIRS (500) small
//      single-PUT uploads, BENCH_DIRECT_CONCURRENCY (8) requests at a time, each phase timed on
//      its own (the PUTs to storage in between are not timed);
//   2. bytes through tusk for a BENCH_DIRECT_MIB (1024) MiB direct multipart upload, counted by a
//      TCP proxy in front of tusk (expected: a few KiB of JSON, none of the file);
//   3. throughput of that upload (10 MiB parts, BENCH_DIRECT_PARTS_IN_FLIGHT (4) at a time, Node
//      fetch to the presigned URLs) next to the AWS SDK's own multipart upload of the same file
//      with the same part size and concurrency.
//
//   npm run build && bash bench/with-services.sh node dist/bench/direct.js
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import net from 'node:net';
import { CompleteMultipartUploadCommand, CreateMultipartUploadCommand, S3Client, UploadPartCommand } from '@aws-sdk/client-s3';
import { benchEnv, freePort, markdownTable, MiB, randomFile, startTuskServer, stopProcess } from './lib.js';

const pairs = Number(process.env.BENCH_DIRECT_PAIRS ?? 500);
const concurrency = Number(process.env.BENCH_DIRECT_CONCURRENCY ?? 8);
const bigMiB = Number(process.env.BENCH_DIRECT_MIB ?? 1024);
const inFlight = Number(process.env.BENCH_DIRECT_PARTS_IN_FLIGHT ?? 4);
const secret = crypto.randomBytes(24).toString('hex');

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}
/** An HS256 JWT (sub = user), enough for tusk's AUTH_JWT_SECRET. */
function token(user: string): string {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify({ sub: user, iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 7200 }));
  const sig = crypto.createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

/** TCP proxy in front of tusk counting bytes both ways. */
async function countingProxy(target: number): Promise<{ port: number; bytes: () => number; close: () => void }> {
  let bytes = 0;
  const server = net.createServer((client) => {
    const upstream = net.connect(target, '127.0.0.1');
    client.on('data', (d: Buffer) => (bytes += d.length));
    upstream.on('data', (d: Buffer) => (bytes += d.length));
    client.pipe(upstream).pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { port: (server.address() as net.AddressInfo).port, bytes: () => bytes, close: () => server.close() };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- JSON answers of several shapes
async function call(base: string, auth: string, method: string, path: string, body?: unknown): Promise<any> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${auth}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const json = res.status === 204 ? undefined : await res.json();
  if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** Runs `fn(i)` for i in 0..n-1, `limit` at a time; returns each call's duration (ms) and the wall time. */
async function timed(n: number, limit: number, fn: (i: number) => Promise<void>): Promise<{ ms: number[]; wallMs: number }> {
  const ms: number[] = new Array(n);
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < n) {
        const i = next++;
        const t = performance.now();
        await fn(i);
        ms[i] = performance.now() - t;
      }
    }),
  );
  return { ms, wallMs: performance.now() - started };
}

async function pool<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: limit }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

async function readPart(handle: fs.FileHandle, index: number, partSize: number, total: number): Promise<Buffer> {
  const length = Math.min(partSize, total - index * partSize);
  const buf = Buffer.allocUnsafe(length);
  await handle.read(buf, 0, length, index * partSize);
  return buf;
}

async function main(): Promise<void> {
  const port = await freePort();
  const tusk = await startTuskServer(port, {
    AUTH_JWT_SECRET: secret,
    QUOTA_BYTES: '0',
    MAX_CONCURRENT_UPLOADS: '0',
    RATE_LIMIT_CREATIONS_PER_MINUTE_USER: '0',
    RATE_LIMIT_CREATIONS_PER_MINUTE_IP: '0',
    ALLOWED_TYPES: 'application/octet-stream',
    MAX_UPLOAD_SIZE: '10GiB',
  });
  const proxy = await countingProxy(port);
  const base = `http://127.0.0.1:${proxy.port}`;
  const rows: Array<Record<string, string | number>> = [];
  try {
    // 1. initiate / complete latency.
    const auth = token('bench-user');
    const small = crypto.randomBytes(1024);
    const ids: string[] = new Array(pairs);
    const urls: string[] = new Array(pairs);
    await call(base, auth, 'POST', '/api/uploads/initiate', { filename: 'warm.bin', filesize: 1024, content_type: 'application/octet-stream' });
    const init = await timed(pairs, concurrency, async (i) => {
      const r = await call(base, auth, 'POST', '/api/uploads/initiate', { filename: `f${i}.bin`, filesize: small.length, content_type: 'application/octet-stream' });
      ids[i] = r.upload_id;
      urls[i] = r.upload_urls[0];
    });
    await pool([...urls.keys()], concurrency, async (i) => {
      const res = await fetch(urls[i]!, { method: 'PUT', body: small as Uint8Array<ArrayBuffer> });
      if (!res.ok) throw new Error(`PUT ${res.status}`);
      await res.arrayBuffer();
    });
    const complete = await timed(pairs, concurrency, async (i) => {
      await call(base, auth, 'POST', `/api/uploads/${ids[i]}/complete`, {});
    });
    for (const [name, t] of [['initiate', init], ['complete', complete]] as const) {
      rows.push({
        measure: `${name} (${pairs} requests, ${concurrency} concurrent)`,
        p50: `${percentile(t.ms, 50).toFixed(1)} ms`,
        p99: `${percentile(t.ms, 99).toFixed(1)} ms`,
        'requests/s': (pairs / (t.wallMs / 1000)).toFixed(0),
      });
    }
    console.log(JSON.stringify(rows));

    // 2. + 3. a big direct upload through the counting proxy, then the SDK's own.
    const file = await randomFile(bigMiB);
    const size = bigMiB * MiB;
    const handle = await fs.open(file, 'r');
    try {
      const before = proxy.bytes();
      const started = performance.now();
      const r = await call(base, auth, 'POST', '/api/uploads/initiate', { filename: 'big.bin', filesize: size, content_type: 'application/octet-stream' });
      const partSize = r.chunk_size as number;
      let partUrls: string[] = r.upload_urls;
      if (r.part_count > partUrls.length) {
        const more = await call(base, auth, 'POST', `/api/uploads/${r.upload_id}/parts`, {
          part_numbers: Array.from({ length: r.part_count - partUrls.length }, (_, i) => partUrls.length + i + 1),
        });
        partUrls = partUrls.concat(more.upload_urls.map((u: { url: string }) => u.url));
      }
      await pool([...partUrls.keys()], inFlight, async (i) => {
        const body = await readPart(handle, i, partSize, size);
        const res = await fetch(partUrls[i]!, { method: 'PUT', body: body as Uint8Array<ArrayBuffer> });
        if (!res.ok) throw new Error(`part ${i + 1}: ${res.status}`);
        await res.arrayBuffer();
      });
      await call(base, auth, 'POST', `/api/uploads/${r.upload_id}/complete`, {});
      const directS = (performance.now() - started) / 1000;
      const through = proxy.bytes() - before;

      const s3 = new S3Client({
        endpoint: benchEnv.endpoint,
        region: benchEnv.region,
        forcePathStyle: true,
        credentials: { accessKeyId: benchEnv.accessKeyId, secretAccessKey: benchEnv.secretAccessKey },
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
      });
      const key = `bench-sdk/${crypto.randomUUID()}`;
      const sdkStarted = performance.now();
      const created = await s3.send(new CreateMultipartUploadCommand({ Bucket: benchEnv.bucket, Key: key }));
      const parts: Array<{ PartNumber: number; ETag: string }> = [];
      await pool([...partUrls.keys()], inFlight, async (i) => {
        const body = await readPart(handle, i, partSize, size);
        const out = await s3.send(new UploadPartCommand({ Bucket: benchEnv.bucket, Key: key, UploadId: created.UploadId, PartNumber: i + 1, Body: body }));
        parts.push({ PartNumber: i + 1, ETag: out.ETag ?? '' });
      });
      parts.sort((a, b) => a.PartNumber - b.PartNumber);
      await s3.send(new CompleteMultipartUploadCommand({ Bucket: benchEnv.bucket, Key: key, UploadId: created.UploadId, MultipartUpload: { Parts: parts } }));
      const sdkS = (performance.now() - sdkStarted) / 1000;
      s3.destroy();
      rows.push({ measure: `${bigMiB} MiB direct upload: bytes through tusk (API JSON only)`, p50: '-', p99: '-', 'requests/s': `${through} bytes` });
      rows.push({ measure: `${bigMiB} MiB direct (presigned URLs, fetch, ${partSize / MiB} MiB parts, ${inFlight} in flight)`, p50: '-', p99: '-', 'requests/s': `${(bigMiB / directS).toFixed(0)} MiB/s` });
      rows.push({ measure: `${bigMiB} MiB AWS SDK multipart (same parts and concurrency)`, p50: '-', p99: '-', 'requests/s': `${(bigMiB / sdkS).toFixed(0)} MiB/s` });
    } finally {
      await handle.close();
    }
  } finally {
    proxy.close();
    await stopProcess(tusk);
  }
  console.log(`\n${markdownTable(rows)}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
