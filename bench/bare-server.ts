// A bare tus server for comparisons, as its own process so that the client does not share its
// event loop and its CPU time and peak RSS can be read from /proc:
//   node dist/bench/bare-server.js plain <port>   @tus/server + plain @tus/s3-store
//   node dist/bench/bare-server.js store <port>   @tus/server + TuskS3Store (lib/stores/s3-store.ts)
//     (BENCH_BARE_UPLOAD_ACK=disk: with its write buffer, under .tmp/bench/bare-buffer-<pid>; the
//     bare stack against `tusk.disk-*` shows what tusk's HTTP stack, hooks and locks cost)
// a minimal `new Server({ path: '/files', datastore })` on 127.0.0.1, S3 and Redis from BENCH_*.
// Prints LISTENING once it listens; on SIGTERM prints `STATS <json>` (per-S3-command and
// per-store-method counts and milliseconds) and exits. Start it with startBareServer() below.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type { S3 } from '@aws-sdk/client-s3';
import { benchEnv, MiB, repoRoot } from './lib.js';

export type CallStats = Record<string, { n: number; ms: number }>;
export type BareKind = 'plain' | 'store';

export interface BareServer {
  proc: ChildProcess;
  pid: number;
  endpoint: string;
  /** Resolves with the server's call statistics once it was stopped (SIGTERM). */
  stats: Promise<CallStats>;
}

const partMiB = Number(process.env.BENCH_PART_MIB ?? 8);

async function serve(kind: BareKind, port: number): Promise<void> {
  const { Server } = await import('@tus/server');
  const { S3Store } = await import('@tus/s3-store');
  const s3ClientConfig = {
    endpoint: benchEnv.endpoint,
    region: benchEnv.region,
    forcePathStyle: true,
    credentials: { accessKeyId: benchEnv.accessKeyId, secretAccessKey: benchEnv.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED' as const,
    responseChecksumValidation: 'WHEN_REQUIRED' as const,
    bucket: benchEnv.bucket,
  };
  const partSize = partMiB * MiB;
  let datastore: InstanceType<typeof S3Store>;
  let redis: { quit(): Promise<unknown> } | undefined;
  let stopBuffer: (() => Promise<void>) | undefined;
  if (kind === 'plain') {
    datastore = new S3Store({ s3ClientConfig, partSize });
  } else {
    const { TuskS3Store } = await import('../lib/stores/s3-store.js');
    const { Redis } = await import('ioredis');
    const { pino } = await import('pino');
    const r = new Redis(benchEnv.redisUrl);
    redis = r;
    datastore = new TuskS3Store({
      s3ClientConfig,
      partSize,
      redis: r,
      redisPrefix: `bench-${process.pid}:`,
      ...(process.env.BENCH_PARTS_IN_FLIGHT ? { partsInFlightPerWrite: Number(process.env.BENCH_PARTS_IN_FLIGHT) } : {}),
      logger: pino({ level: process.env.BENCH_LOG_LEVEL ?? 'warn' }, pino.destination(2)),
    });
    if (process.env.BENCH_BARE_UPLOAD_ACK === 'disk') {
      const store = datastore as InstanceType<typeof TuskS3Store>;
      const directory = path.join(repoRoot, '.tmp', 'bench', `bare-buffer-${process.pid}`);
      const sub = new Redis(benchEnv.redisUrl);
      await store.startWriteBuffer({ directory, maxBytes: 2048 * MiB, idleFlushMs: 10_000 }, sub);
      stopBuffer = async () => {
        await store.stopWriteBuffer(Date.now() + 5_000);
        sub.disconnect();
        await fs.promises.rm(directory, { recursive: true, force: true });
      };
    }
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
    http.closeAllConnections();
    void (async () => {
      await stopBuffer?.().catch(() => {});
      await redis?.quit();
      process.exit(0);
    })();
  });
}

/** Starts a bare server process and waits until it listens. */
export async function startBareServer(kind: BareKind, port: number): Promise<BareServer> {
  const proc = spawn(process.execPath, [fileURLToPath(import.meta.url), kind, String(port)], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: process.env,
  });
  let out = '';
  let resolveStats: (s: CallStats) => void = () => {};
  const stats = new Promise<CallStats>((r) => (resolveStats = r));
  await new Promise<void>((resolve, reject) => {
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('LISTENING\n')) resolve();
      const m = /STATS (.*)\n/.exec(out);
      if (m) resolveStats(JSON.parse(m[1]!) as CallStats);
    });
    proc.once('exit', (code) => {
      reject(new Error(`${kind} server exited (${code})`));
      resolveStats({});
    });
  });
  return { proc, pid: proc.pid!, endpoint: `http://127.0.0.1:${port}/files/`, stats };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const kind = process.argv[2];
  if (kind !== 'plain' && kind !== 'store') {
    console.error('usage: bare-server.js plain|store <port>');
    process.exit(2);
  }
  serve(kind, Number(process.argv[3])).catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
