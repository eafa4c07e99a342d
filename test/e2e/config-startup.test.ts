// The real process refusing to start with a bad configuration: it exits at once, non-zero, with a
// message naming the variable, before it starts anything. (The parsing itself: test/unit/config.test.ts.)
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import { createTestBucket, freePort, testRedisUrl, tuskEnvForTests } from '../helpers/services.js';
import { emptyBucket } from '../helpers/tus.js';

const repoRoot = process.env.TEST_REPO_ROOT ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

describe('the tusk process with a bad configuration', () => {
  let dataDir: string;

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'tusk-config-test-'));
  });

  afterAll(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  /** Runs `node dist/tusk.js server` with a clean environment plus `env`; at most 15 s. */
  function run(env: Record<string, string>): Promise<{ code: number | null; signal: NodeJS.Signals | null; output: string }> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [path.join(repoRoot, 'dist', 'tusk.js'), 'server'], {
        cwd: repoRoot,
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', HOST: '127.0.0.1', ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout.on('data', (c: Buffer) => (output += c.toString()));
      child.stderr.on('data', (c: Buffer) => (output += c.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      child.on('error', reject);
      child.on('exit', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal, output });
      });
    });
  }

  test.each<[string, Record<string, string>, string, RegExp]>([
    ['PORT=abc', { PORT: 'abc' }, 'PORT', /abc/],
    ['STORAGE=ftp', { STORAGE: 'ftp' }, 'STORAGE', /"s3" or "file"/],
    ['S3_PART_SIZE=1MiB', { STORAGE: 's3', S3_BUCKET: 'tusk-test', S3_PART_SIZE: '1MiB' }, 'S3_PART_SIZE', /1MiB|1048576/],
    ['REDIS_URL=http://x', { REDIS_URL: 'http://x' }, 'REDIS_URL', /http:\/\/x/],
    ['MAX_UPLOAD_SIZE=lots', { MAX_UPLOAD_SIZE: 'lots' }, 'MAX_UPLOAD_SIZE', /lots/],
    ['TRUST_PROXY=10.0.0.0/33', { TRUST_PROXY: '10.0.0.0/33' }, 'TRUST_PROXY', /10\.0\.0\.0\/33/],
  ])('%s: exits non-zero at once with a message naming the variable', async (_label, bad, name, detail) => {
    const port = await freePort();
    const t0 = Date.now();
    const result = await run({ PORT: String(port), DATA_DIR: dataDir, REDIS_URL: testRedisUrl(), REDIS_PREFIX: 'tusk-config-test:', ...bad });
    expect(result.signal).toBeNull(); // exited by itself, not killed by the 15 s guard
    expect(result.code).not.toBe(0);
    expect(result.code).not.toBeNull();
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(result.output).toMatch(new RegExp(`\\b${name}\\b`));
    expect(result.output).toMatch(detail); // says what is wrong with it
    expect(result.output).not.toMatch(/\n\s+at .+:\d+:\d+/); // a message, not a stack trace
    // it never started anything: no embedded Redis, no upload directory
    expect(await readdir(dataDir)).toEqual([]);
  });

  test('UPLOAD_BUFFER_PEER_PORT taken by another program: exits 1 at start, naming the variable and the address', async () => {
    const bucket = await createTestBucket('peer-port');
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const peerPort = (taken.address() as net.AddressInfo).port;
    try {
      const result = await run({ ...tuskEnvForTests(bucket), PORT: String(await freePort()), DATA_DIR: dataDir, UPLOAD_ACK: 'disk', UPLOAD_BUFFER_PEER_PORT: String(peerPort) });
      expect(result.code).toBe(1);
      expect(result.output).toContain(`UPLOAD_BUFFER_PEER_PORT: cannot listen on 127.0.0.1:${peerPort}`);
      expect(result.output).toMatch(/EADDRINUSE/);
      expect(result.output).not.toMatch(/\n\s+at .+:\d+:\d+/);
      // The buffer directory it had claimed is released (the next process need not adopt it).
      const left = (await readdir(dataDir, { recursive: true })).map(String);
      expect(left.filter((f) => f.endsWith('owner'))).toEqual([]);
    } finally {
      await new Promise((resolve) => taken.close(resolve));
      await emptyBucket(bucket);
      await rm(dataDir, { recursive: true, force: true });
      dataDir = await mkdtemp(path.join(os.tmpdir(), 'tusk-config-test-'));
    }
  });

  test('TRUST_PROXY=true (believe every X-Forwarded-For) is refused: exit 78, saying what to set instead', async () => {
    const result = await run({ PORT: String(await freePort()), DATA_DIR: dataDir, REDIS_URL: testRedisUrl(), TRUST_PROXY: 'true' });
    expect(result.code).toBe(78);
    expect(result.output).toMatch(/TRUST_PROXY: "true" .*no longer accepted/);
    expect(result.output).toMatch(/TRUST_PROXY=1\b.*CIDR/);
    expect(await readdir(dataDir)).toEqual([]);
  });
});
