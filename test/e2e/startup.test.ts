// The first minutes with tusk: a server started without workers says so (readiness, log, status
// API) until a worker comes; logs are one JSON object per line without repeated keys (or readable,
// with a banner, on a terminal); Ctrl-C after a dropped upload stops at once; a second start does
// not compile again. Real tusk processes, the test Redis, the file store.
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { freePort, testRedisUrl, uniqueRedisPrefix } from '../helpers/services.js';
import { startTusk, type TuskProcess } from '../helpers/tusk-process.js';
import { OCTET, TUS, controlledPatch, rawRequest, waitFor } from '../helpers/tus.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
let dir: string;

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tusk-startup-'));
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

function envFor(name: string): Record<string, string> {
  return { STORAGE: 'file', DATA_DIR: path.join(dir, name), REDIS_URL: testRedisUrl(), REDIS_PREFIX: uniqueRedisPrefix(), SCAN_REQUIRED: 'false', THUMBNAIL_WIDTHS: '160', THUMBNAIL_FORMATS: 'webp' };
}

/** Top-level keys of a JSON object text, in order, duplicates kept (JSON.parse would drop them). */
function topLevelKeys(line: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === '"') {
      let j = i + 1;
      while (line[j] !== '"') j += line[j] === '\\' ? 2 : 1;
      if (depth === 1 && expectKey) keys.push(line.slice(i + 1, j));
      expectKey = false;
      i = j;
    } else if (c === '{' || c === '[') {
      depth++;
      expectKey = c === '{' && depth === 1;
    } else if (c === '}' || c === ']') depth--;
    else if (c === ',' && depth === 1) expectKey = true;
  }
  return keys;
}

test('a server without workers says so, until a worker comes; its log lines never repeat a key', async () => {
  const env = envFor('no-worker');
  const server = await startTusk({ env, mode: 'server' });
  let worker: TuskProcess | undefined;
  try {
    const ready = JSON.parse((await rawRequest(server.url, { method: 'GET', path: '/readyz' })).body) as { status: string; processing: { code: string; message?: string } };
    expect(ready.status).toBe('ready');
    expect(ready.processing.code).toBe('no_worker');
    await waitFor('the no-worker warning in the log', () => /No tusk worker is running/.test(server.output()), 10_000);

    const body = await sharp({ create: { width: 64, height: 48, channels: 3, background: '#456' } }).jpeg().toBuffer();
    const created = await rawRequest(server.url, { method: 'POST', path: '/files/', headers: { ...TUS, 'Upload-Length': String(body.length), 'Content-Type': OCTET }, body });
    const id = String(created.headers.location).split('/').pop()!;
    const status = async () => JSON.parse((await rawRequest(server.url, { method: 'GET', path: `/api/uploads/${id}` })).body) as { status: string; waiting_for?: { code: string } };
    const waiting = await status();
    expect([waiting.status, waiting.waiting_for?.code]).toEqual(['uploaded', 'no_worker']);

    const port = String(await freePort());
    worker = await startTusk({ env: { ...env, PORT: port, WORKER_HEALTH_PORT: port }, mode: 'worker' });
    await waitFor('the upload to be processed once a worker runs', async () => (await status()).status === 'ready', 60_000);
    expect((await status()).waiting_for).toBeUndefined();
    const after = JSON.parse((await rawRequest(server.url, { method: 'GET', path: '/readyz' })).body) as { processing: { code: string } };
    expect(after.processing.code).toBe('ok');

    for (const proc of [server, worker]) {
      const lines = proc.output().split('\n').filter((l) => l.startsWith('{'));
      expect(lines.length).toBeGreaterThan(3);
      for (const line of lines) {
        const keys = topLevelKeys(line);
        expect([line, keys.length]).toEqual([line, new Set(keys).size]);
      }
    }
  } finally {
    await worker?.kill();
    await server.kill();
  }
});

test('SIGINT after a client dropped its PATCH: the process exits within 5 s', async () => {
  const tusk = await startTusk({ env: { ...envFor('sigint'), SHUTDOWN_TIMEOUT: '60s' }, mode: 'all' });
  const created = await rawRequest(tusk.url, { method: 'POST', path: '/files/', headers: { ...TUS, 'Upload-Length': '10000000' } });
  const p = controlledPatch(`${tusk.url}/files/${String(created.headers.location).split('/').pop()}`, 0, 10_000_000);
  await p.write(Buffer.alloc(200_000, 1));
  p.destroy();
  await new Promise((r) => setTimeout(r, 300));
  const started = Date.now();
  const exit = await tusk.kill('SIGINT');
  expect(exit.code).toBe(0);
  expect(Date.now() - started).toBeLessThan(5_000);
});

test('on a terminal: a banner with the endpoint, storage, Redis, scanning, authentication and workers; readable log lines', async () => {
  const port = String(await freePort());
  const env = { ...process.env, ...envFor('tty'), PORT: port, HOST: '127.0.0.1', LOG_LEVEL: 'info', TERM: 'dumb' };
  // `script` gives the process a pseudo-terminal, as a person's shell would.
  const child = spawn('script', ['-qfec', `${process.execPath} dist/tusk.js all`, '/dev/null'], { cwd: repo, env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString('utf8')));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  try {
    await waitFor('the banner', () => /Ctrl-C stops it/.test(output), 20_000);
    for (const label of ['tus endpoint', `http://127.0.0.1:${port}/files/`, 'storage', 'Redis', 'virus scan', 'authentication', 'workers']) expect(output).toContain(label);
    expect(output).toMatch(/AUTHENTICATION IS OFF/);
    expect(output.match(/AUTHENTICATION IS OFF/g)).toHaveLength(1); // once, not a log line and a banner line
    expect(output).not.toMatch(/^\{"level"/m);
  } finally {
    process.kill(-child.pid!, 'SIGINT');
    await exited;
  }
});

test('a second start does not compile again when nothing changed', async () => {
  const exec = promisify(execFile);
  await exec(process.execPath, ['scripts/build-if-stale.mjs'], { cwd: repo });
  const stamp = path.join(repo, 'dist', '.build-stamp');
  const before = (await fs.stat(stamp)).mtimeMs;
  await exec(process.execPath, ['scripts/build-if-stale.mjs'], { cwd: repo });
  expect((await fs.stat(stamp)).mtimeMs).toBe(before);
});

test('the test helper never takes another program answering /healthz on its port for the tusk it started', async () => {
  // What a port handed out twice looks like: something else already answers GET /healthz there.
  const impostor = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}'));
  const port = await new Promise<number>((resolve) => impostor.listen(0, '127.0.0.1', () => resolve((impostor.address() as net.AddressInfo).port)));
  try {
    const started = await startTusk({ env: { ...envFor('impostor'), PORT: String(port) } }).catch((err: unknown) => err);
    expect(started).toBeInstanceOf(Error);
    expect((started as Error).message).toMatch(/exited before answering \/healthz[\s\S]*EADDRINUSE/);
  } finally {
    await new Promise((resolve) => impostor.close(resolve));
  }
});
