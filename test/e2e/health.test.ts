// /healthz and /readyz of real tusk server processes: ready with both dependencies (file store and
// S3), not ready — naming the dependency — when Redis or the bucket is unreachable, while the
// process itself stays up (healthz 200).
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createTestBucket, freePort, testRedisUrl, tuskEnvForTests, uniqueRedisPrefix } from '../helpers/services.js';
import { startTusk, type TuskProcess } from '../helpers/tusk-process.js';
import { within } from '../helpers/tus.js';

interface Probe {
  status: number;
  body: { status?: string; failing?: string[]; details?: Record<string, string> };
  ms: number;
}

async function probe(tusk: TuskProcess, route: '/healthz' | '/readyz'): Promise<Probe> {
  const t0 = Date.now();
  const res = await fetch(`${tusk.url}${route}`, { signal: AbortSignal.timeout(15_000) });
  const body = (await res.json()) as Probe['body'];
  return { status: res.status, body, ms: Date.now() - t0 };
}

let dataDir: string;

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'tusk-health-test-'));
});

afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

function fileEnv(extra: Record<string, string> = {}): Record<string, string> {
  return { STORAGE: 'file', DATA_DIR: dataDir, REDIS_URL: testRedisUrl(), REDIS_PREFIX: uniqueRedisPrefix(), ...extra };
}

describe('file store with Redis', () => {
  let tusk: TuskProcess;
  beforeAll(async () => {
    tusk = await startTusk({ env: fileEnv(), mode: 'server' });
  });
  afterAll(async () => {
    await tusk?.kill('SIGKILL');
  });

  test('/healthz answers 200 {status: ok}', async () => {
    const res = await probe(tusk, '/healthz');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: 'ok' });
  });

  test('/readyz answers 200 {status: ready}', async () => {
    const res = await probe(tusk, '/readyz');
    expect(res).toMatchObject({ status: 200, body: { status: 'ready' } });
  });
});

describe('S3 store with Redis', () => {
  let tusk: TuskProcess;
  beforeAll(async () => {
    const bucket = await createTestBucket('health');
    tusk = await startTusk({ env: tuskEnvForTests(bucket), mode: 'server' });
  });
  afterAll(async () => {
    await tusk?.kill('SIGKILL');
  });

  test('/healthz 200 and /readyz 200 with both dependencies up', async () => {
    expect((await probe(tusk, '/healthz')).status).toBe(200);
    const ready = await probe(tusk, '/readyz');
    // Ready (it takes uploads), and it says that no worker would process them.
    expect({ status: ready.status, body: ready.body }).toEqual({ status: 200, body: { status: 'ready', processing: expect.objectContaining({ code: 'no_worker' }) } });
  });
});

describe('Redis unreachable (REDIS_URL on a dead port)', () => {
  let tusk: TuskProcess;
  beforeAll(async () => {
    const deadPort = await freePort();
    tusk = await startTusk({ env: fileEnv({ REDIS_URL: `redis://127.0.0.1:${deadPort}` }), mode: 'server' });
  });
  afterAll(async () => {
    await tusk?.kill('SIGKILL');
  });

  test("/readyz answers 503 with failing ['redis'] within a few seconds; the process stays up", async () => {
    for (let i = 0; i < 2; i++) {
      const ready = await probe(tusk, '/readyz');
      expect(ready.status).toBe(503);
      expect(ready.body.status).toBe('unavailable');
      expect(ready.body.failing).toEqual(['redis']);
      expect(typeof ready.body.details?.redis).toBe('string');
      expect(ready.ms).toBeLessThan(5000);
    }
    const health = await probe(tusk, '/healthz');
    expect(health.status).toBe(200);
    expect(await within(tusk.exited, 500)).toBe('timeout');
  });
});

describe('bucket missing (S3 answers, the bucket does not exist)', () => {
  let tusk: TuskProcess;
  beforeAll(async () => {
    tusk = await startTusk({ env: tuskEnvForTests(`tusk-missing-${Date.now().toString(36)}`), mode: 'server' });
  });
  afterAll(async () => {
    await tusk?.kill('SIGKILL');
  });

  test("/readyz answers 503 with failing ['storage']; /healthz stays 200", async () => {
    const ready = await probe(tusk, '/readyz');
    expect(ready.status).toBe(503);
    expect(ready.body.failing).toEqual(['storage']);
    expect((await probe(tusk, '/healthz')).status).toBe(200);
    expect(await within(tusk.exited, 500)).toBe('timeout');
  });
});
