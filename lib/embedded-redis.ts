// All-in-one mode without REDIS_URL: tusk runs a private redis-server on a unix socket under
// DATA_DIR, with the append-only file on so queued jobs and upload state survive restarts.
// Production sets REDIS_URL and never comes here.
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Redis } from 'ioredis';
import type { Logger } from './logger.js';

export interface EmbeddedRedis {
  url: string;
  /** Stops the redis-server if this process started it (flushing the append-only file). */
  stop(): Promise<void>;
}

async function answersPing(socketPath: string): Promise<boolean> {
  const client = new Redis({ path: socketPath, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1000 });
  client.on('error', () => {});
  try {
    await client.connect();
    return (await client.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

export async function startEmbeddedRedis(dataDir: string, logger: Logger): Promise<EmbeddedRedis> {
  const dir = path.join(dataDir, 'redis');
  const socketPath = path.join(dir, 'redis.sock');
  if (Buffer.byteLength(socketPath) > 100) {
    throw new Error(`DATA_DIR is too long for a unix socket path (${socketPath}); use a shorter DATA_DIR or set REDIS_URL`);
  }
  const url = `unix://${socketPath}`;
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  if (await answersPing(socketPath)) {
    logger.info({ socket: socketPath }, 'using the private Redis already running under DATA_DIR');
    return { url, stop: async () => {} };
  }
  const child = spawn(
    'redis-server',
    [
      '--port', '0',
      '--unixsocket', socketPath,
      '--unixsocketperm', '700',
      '--dir', dir,
      '--appendonly', 'yes',
      '--appendfsync', 'everysec',
      '--save', '',
      '--maxmemory-policy', 'noeviction',
      '--logfile', path.join(dir, 'redis.log'),
    ],
    { stdio: 'ignore', detached: true },
  );
  const spawnError = new Promise<never>((_, reject) =>
    child.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        err.code === 'ENOENT'
          ? new Error('redis-server is not installed: set REDIS_URL, or install it (apt-get install redis-server; `npm start` does this for you)')
          : err,
      ),
    ),
  );
  spawnError.catch(() => {});
  const deadline = Date.now() + 10_000;
  for (;;) {
    const ready = await Promise.race([answersPing(socketPath), spawnError]);
    if (ready) break;
    if (child.exitCode !== null) throw new Error(`private redis-server exited with code ${child.exitCode}; see ${path.join(dir, 'redis.log')}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`private redis-server did not answer within 10 s; see ${path.join(dir, 'redis.log')}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  child.unref();
  logger.info({ socket: socketPath, pid: child.pid }, 'started a private Redis (append-only) under DATA_DIR');
  return {
    url,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM'); // redis-server flushes the append-only file on SIGTERM
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    },
  };
}
