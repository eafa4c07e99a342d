// Prometheus metrics and request ids of real tusk processes (real Redis, S3, clamd): /metrics has
// tusd's names with tusd's types, and they move when uploads happen - tus and direct uploads alike;
// error answers are counted by status and catalogue code; every answer carries a request id (the
// client's when sane, a UUID otherwise) that is in the log lines of its request; /metrics is
// guarded (token, separate port, not on a port a proxy may relay); a worker's /metrics shows the
// queues' depth, step durations, scan verdicts and webhook deliveries.
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { api, JWT_SECRET, putTo, tokenFor } from '../helpers/direct.js';
import { makePng } from '../helpers/fixtures-media.js';
import { scrape, type Scrape } from '../helpers/metrics.js';
import { waitForStatus } from '../helpers/pipeline.js';
import { createTestBucket, freePort, testRedisUrl, tuskEnvForTests, uniqueRedisPrefix } from '../helpers/services.js';
import { createUpload, patchUpload, rawRequest, TUS, waitFor } from '../helpers/tus.js';
import { startTusk, type TuskProcess } from '../helpers/tusk-process.js';

const MiB = 1024 * 1024;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const UNKNOWN_ID = 'f'.repeat(32);

/** The JSON log lines a process printed. */
function logLines(tusk: TuskProcess): Array<Record<string, unknown>> {
  return tusk
    .output()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** How much each of these samples grew between two scrapes. */
function grew(before: Scrape, after: Scrape, name: string, labels: Record<string, string> = {}): number {
  return after.sum(name, labels) - before.sum(name, labels);
}

describe('API server (S3): tusd names, counters that move, request ids', () => {
  let tusk: TuskProcess;
  let alice = '';
  let bob = '';
  const auth = (token: string) => ({ Authorization: `Bearer ${token}` });

  beforeAll(async () => {
    const bucket = await createTestBucket('metrics');
    tusk = await startTusk({
      env: {
        ...tuskEnvForTests(bucket),
        AUTH_JWT_SECRET: JWT_SECRET,
        QUOTA_BYTES: '64MiB',
        SCAN_REQUIRED: 'false',
        ALLOWED_TYPES: 'application/octet-stream',
      },
    });
    alice = await tokenFor('alice');
    bob = await tokenFor('bob');
  });
  afterAll(async () => {
    await tusk?.kill();
  });

  test("/metrics exposes tusd's names with tusd's types and labels, tusk's own, and the process's", async () => {
    const m = await scrape(`${tusk.url}/metrics`);
    expect(m.status).toBe(200);
    expect(m.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(m.types).toMatchObject({
      tusd_requests_total: 'counter',
      tusd_errors_total: 'counter',
      tusd_bytes_received: 'counter',
      tusd_uploads_created: 'counter',
      tusd_uploads_finished: 'counter',
      tusd_uploads_terminated: 'counter',
      tusd_connections_open: 'gauge',
      tusk_http_request_duration_seconds: 'histogram',
      tusk_http_errors_total: 'counter',
      tusk_s3_request_duration_seconds: 'histogram',
      tusk_s3_errors_total: 'counter',
      tusk_lock_wait_seconds: 'histogram',
      tusk_lock_release_requests_total: 'counter',
      tusk_upload_refusals_total: 'counter',
      tusk_direct_upload_sessions_total: 'counter',
      tusk_uploads_removed_total: 'counter',
      process_cpu_seconds_total: 'counter',
      nodejs_eventloop_lag_seconds: 'gauge',
    });
    // As in tusd, every tus method is there from the start (0), unlabelled counters too.
    for (const method of ['GET', 'HEAD', 'POST', 'PATCH', 'DELETE', 'OPTIONS']) expect(m.value('tusd_requests_total', { method })).toBeDefined();
    for (const name of ['tusd_bytes_received', 'tusd_uploads_created', 'tusd_uploads_finished', 'tusd_uploads_terminated']) expect(m.value(name)).toBeDefined();
    // This scrape's own connection is open.
    expect(m.value('tusd_connections_open')).toBeGreaterThanOrEqual(1);
  });

  test('a tus upload moves created, finished, bytes received (its size) and requests by method; a DELETE moves terminated', async () => {
    const before = await scrape(`${tusk.url}/metrics`);
    const data = randomBytes(3 * MiB + 5);
    const created = await createUpload(tusk.url, { length: data.length, headers: auth(alice), metadata: { filename: 'a.bin' } });
    expect(created.status).toBe(201);
    expect((await patchUpload(created.url, 0, data.subarray(0, MiB), auth(alice))).status).toBe(204);
    expect((await patchUpload(created.url, MiB, data.subarray(MiB), auth(alice))).status).toBe(204);
    const other = await createUpload(tusk.url, { length: 100, headers: auth(alice) });
    const removed = await fetch(other.url, { method: 'DELETE', headers: { ...TUS, ...auth(alice) } });
    expect(removed.status).toBe(204);
    const after = await scrape(`${tusk.url}/metrics`);

    expect(grew(before, after, 'tusd_uploads_created')).toBe(2);
    expect(grew(before, after, 'tusd_uploads_finished')).toBe(1);
    expect(grew(before, after, 'tusd_bytes_received')).toBe(data.length);
    expect(grew(before, after, 'tusd_uploads_terminated')).toBe(1);
    expect(grew(before, after, 'tusk_uploads_removed_total', { reason: 'terminated' })).toBe(1);
    expect(grew(before, after, 'tusd_requests_total', { method: 'POST' })).toBe(2);
    expect(grew(before, after, 'tusd_requests_total', { method: 'PATCH' })).toBe(2);
    expect(grew(before, after, 'tusd_requests_total', { method: 'DELETE' })).toBe(1);
    // Each PATCH took the upload's lock; its body went to S3 as parts.
    expect(grew(before, after, 'tusk_lock_wait_seconds_count', { outcome: 'acquired' })).toBeGreaterThanOrEqual(2);
    expect(grew(before, after, 'tusk_s3_request_duration_seconds_count', { operation: 'UploadPart', outcome: 'ok' })).toBeGreaterThanOrEqual(1);
    expect(grew(before, after, 'tusk_http_request_duration_seconds_count', { method: 'PATCH', route: '/files/:id', status: '204' })).toBe(2);
    expect(grew(before, after, 'tusk_http_request_duration_seconds_count', { method: 'POST', route: '/files/', status: '201' })).toBe(2);
    // A HEAD of the finished upload finishes nothing again.
    expect((await fetch(created.url, { method: 'HEAD', headers: { ...TUS, ...auth(alice) } })).status).toBe(200);
    expect(grew(after, await scrape(`${tusk.url}/metrics`), 'tusd_uploads_finished')).toBe(0);
  });

  test('a direct upload counts as created and finished like a tus upload (no bytes through tusk); its abort as terminated', async () => {
    const before = await scrape(`${tusk.url}/metrics`);
    const data = randomBytes(64 * 1024);
    const init = await api(tusk.url, 'POST', '/api/uploads/initiate', alice, { filename: 'd.bin', filesize: data.length, content_type: 'application/octet-stream' });
    expect(init.status).toBe(201);
    expect((await putTo(init.body.upload_urls[0], data)).status).toBe(200);
    expect((await api(tusk.url, 'POST', `/api/uploads/${init.body.upload_id}/complete`, alice, {})).status).toBe(202);
    const abandoned = await api(tusk.url, 'POST', '/api/uploads/initiate', alice, { filename: 'e.bin', filesize: 10, content_type: 'application/octet-stream' });
    expect((await api(tusk.url, 'DELETE', `/api/uploads/${abandoned.body.upload_id}`, alice)).status).toBe(204);
    const after = await scrape(`${tusk.url}/metrics`);

    expect(grew(before, after, 'tusd_uploads_created')).toBe(2);
    expect(grew(before, after, 'tusd_uploads_finished')).toBe(1);
    expect(grew(before, after, 'tusd_uploads_terminated')).toBe(1);
    expect(grew(before, after, 'tusd_bytes_received')).toBe(0);
    expect(grew(before, after, 'tusk_direct_upload_sessions_total', { via: 'api', event: 'initiated' })).toBe(2);
    expect(grew(before, after, 'tusk_direct_upload_sessions_total', { via: 'api', event: 'completed' })).toBe(1);
    expect(grew(before, after, 'tusk_direct_upload_sessions_total', { via: 'api', event: 'aborted' })).toBe(1);
    expect(grew(before, after, 'tusk_s3_request_duration_seconds_count', { operation: 'HeadObject' })).toBeGreaterThanOrEqual(1);
    // Not on the tus endpoint: tusd's request counter did not move for these.
    expect(grew(before, after, 'tusd_requests_total', { method: 'POST' })).toBe(0);
    expect(grew(before, after, 'tusk_http_request_duration_seconds_count', { method: 'POST', route: '/api/uploads/initiate', status: '201' })).toBe(2);
  });

  test('error answers by status and catalogue code: 404 and 401 on tus (tusd_errors_total), every face in tusk_http_errors_total; quota refusals', async () => {
    const before = await scrape(`${tusk.url}/metrics`);
    expect((await fetch(`${tusk.url}/files/${UNKNOWN_ID}`, { method: 'HEAD', headers: { ...TUS, ...auth(alice) } })).status).toBe(404);
    expect((await fetch(`${tusk.url}/files/${UNKNOWN_ID}`, { method: 'HEAD', headers: { ...TUS } })).status).toBe(401);
    expect((await api(tusk.url, 'GET', `/api/uploads/${UNKNOWN_ID}`, alice)).status).toBe(404);
    const overQuota = await createUpload(tusk.url, { length: 100 * MiB, headers: auth(bob) });
    expect(overQuota.status).toBe(413);
    const after = await scrape(`${tusk.url}/metrics`);

    expect(grew(before, after, 'tusd_errors_total', { status: '404', code: 'not_found' })).toBe(1);
    expect(grew(before, after, 'tusd_errors_total', { status: '401', code: 'unauthorized' })).toBe(1);
    expect(grew(before, after, 'tusd_errors_total', { status: '413', code: 'quota_exceeded' })).toBe(1);
    expect(grew(before, after, 'tusk_http_errors_total', { route: '/files/:id', status: '404', code: 'not_found' })).toBe(1);
    // Refused by the API router's ownership check, before a route: the router's prefix.
    expect(grew(before, after, 'tusk_http_errors_total', { route: '/api/uploads/*', status: '404', code: 'not_found' })).toBe(1);
    expect(grew(before, after, 'tusk_upload_refusals_total', { reason: 'quota_exceeded' })).toBe(1);
  });

  test('request id: echoed when sent, generated when not or not sane, on every answer, in the log lines of its request', async () => {
    const sent = `metrics-test-${randomBytes(6).toString('hex')}`;
    const data = randomBytes(1000);
    const created = await createUpload(tusk.url, { length: data.length, headers: auth(alice) });
    const generated = created.headers.get('x-request-id') ?? '';
    expect(generated).toMatch(UUID);
    const patched = await patchUpload(created.url, 0, data, { ...auth(alice), 'X-Request-Id': sent });
    expect(patched.status).toBe(204);
    expect(patched.headers.get('x-request-id')).toBe(sent);

    // Ids that are not sane tokens are replaced, never echoed or logged.
    for (const bad of ['has space', 'x'.repeat(129), 'caf\u00e9']) {
      const res = await rawRequest(tusk.url, { method: 'GET', path: '/healthz', headers: { 'X-Request-Id': bad } });
      expect(res.headers['x-request-id']).toMatch(UUID);
    }
    // Error answers of every kind carry it: tus, JSON, an early refusal (bad Host), an unknown route.
    expect((await fetch(`${tusk.url}/files/${UNKNOWN_ID}`, { method: 'HEAD', headers: { ...TUS, ...auth(alice), 'X-Request-Id': 'r-1' } })).headers.get('x-request-id')).toBe('r-1');
    expect((await fetch(`${tusk.url}/api/uploads/${UNKNOWN_ID}`, { headers: { ...auth(alice), 'X-Request-Id': 'r-2' } })).headers.get('x-request-id')).toBe('r-2');
    const badHost = await rawRequest(tusk.url, { method: 'GET', path: '/files/', headers: { Host: 'bad host!', 'X-Request-Id': 'r-3' } });
    expect(badHost.status).toBe(400);
    expect(badHost.headers['x-request-id']).toBe('r-3');
    expect((await fetch(`${tusk.url}/nowhere`, { headers: { 'X-Request-Id': 'r-4' } })).headers.get('x-request-id')).toBe('r-4');

    const removed = await fetch(created.url, { method: 'DELETE', headers: { ...TUS, ...auth(alice) } });
    const removedId = removed.headers.get('x-request-id') ?? '';
    expect(removedId).toMatch(UUID);
    await waitFor('the log lines', () => logLines(tusk).some((l) => l.reqId === removedId), 5000);
    const lines = logLines(tusk);
    // The finishing PATCH's line is written deep in the lifecycle; it carries the PATCH's id.
    expect(lines.filter((l) => l.msg === 'upload finished; processing job queued' && l.uploadId === created.id).map((l) => l.reqId)).toEqual([sent]);
    expect(lines.filter((l) => l.msg === 'upload terminated' && l.uploadId === created.id).map((l) => l.reqId)).toEqual([removedId]);
    // No line of one request carries another's id; lines outside requests carry none.
    expect(lines.filter((l) => l.reqId === sent).every((l) => l.uploadId === undefined || l.uploadId === created.id)).toBe(true);
    expect(lines.find((l) => l.msg === 'tusk server listening')?.reqId).toBeUndefined();
  });
});

describe('access to /metrics', () => {
  let dataDir: string;
  const TOKEN = 'metrics-token-0123456789abcdef';
  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'tusk-metrics-test-'));
  });
  afterAll(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });
  const fileEnv = (extra: Record<string, string>) => ({ STORAGE: 'file', DATA_DIR: dataDir, REDIS_URL: testRedisUrl(), REDIS_PREFIX: uniqueRedisPrefix(), ...extra });

  test('METRICS_TOKEN: 401 (catalogue code, WWW-Authenticate) without it or with a wrong one, 200 with it', async () => {
    const tusk = await startTusk({ env: fileEnv({ METRICS_TOKEN: TOKEN }) });
    try {
      const refusedHeaders: Array<Record<string, string>> = [{}, { Authorization: 'Bearer wrong-token-0123456789abcdef' }, { Authorization: `Basic ${TOKEN}` }];
      for (const headers of refusedHeaders) {
        const refused = await fetch(`${tusk.url}/metrics`, { headers });
        expect(refused.status).toBe(401);
        expect(refused.headers.get('tusk-error-code')).toBe('unauthorized');
        expect(refused.headers.get('www-authenticate')).toMatch(/^Bearer/);
        expect(await refused.text()).not.toContain('tusd_');
      }
      const m = await scrape(`${tusk.url}/metrics`, { Authorization: `Bearer ${TOKEN}` });
      expect(m.status).toBe(200);
      expect(m.types.tusd_uploads_created).toBe('counter');
    } finally {
      await tusk.kill();
    }
  });

  test('METRICS_PORT: its own listener (with the token when set); the API port does not answer /metrics', async () => {
    const metricsPort = await freePort();
    const tusk = await startTusk({ env: fileEnv({ METRICS_PORT: String(metricsPort), METRICS_TOKEN: TOKEN }) });
    try {
      const onApi = await fetch(`${tusk.url}/metrics`, { headers: { Authorization: `Bearer ${TOKEN}` } });
      expect(onApi.status).toBe(404);
      expect(await onApi.text()).not.toContain('tusd_');
      expect((await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).status).toBe(401);
      const m = await scrape(`http://127.0.0.1:${metricsPort}/metrics`, { Authorization: `Bearer ${TOKEN}` });
      expect(m.status).toBe(200);
      expect(m.types.tusd_requests_total).toBe('counter');
      // The listener answers /metrics and nothing else.
      expect((await fetch(`http://127.0.0.1:${metricsPort}/files/`)).status).toBe(404);
    } finally {
      await tusk.kill();
    }
  });

  test('an API port a proxy may relay (TRUST_PROXY) and no token: not served, and the start-up log says how to serve it; METRICS=false: nowhere', async () => {
    const proxied = await startTusk({ env: fileEnv({ TRUST_PROXY: 'loopback' }) });
    const off = await startTusk({ env: fileEnv({ METRICS: 'false' }) });
    try {
      expect((await fetch(`${proxied.url}/metrics`)).status).toBe(404);
      expect(logLines(proxied).some((l) => l.level === 40 && /Metrics are not served/.test(String(l.msg)) && /METRICS_TOKEN/.test(String(l.msg)))).toBe(true);
      expect((await fetch(`${off.url}/metrics`)).status).toBe(404);
    } finally {
      await Promise.all([proxied.kill(), off.kill()]);
    }
  });
});

describe('worker metrics (separate server and worker processes, clamd, webhooks)', () => {
  let server: TuskProcess;
  let steps: TuskProcess;
  let starter: TuskProcess | undefined;
  let receiver: http.Server;
  let dir: string;
  let env: Record<string, string>;
  const delivered: string[] = [];

  beforeAll(async () => {
    if (!process.env.TEST_CLAMD_SOCKET) throw new Error('TEST_CLAMD_SOCKET not set: clamd did not start in global setup');
    dir = await mkdtemp(path.join(os.tmpdir(), 'tusk-metrics-worker-'));
    receiver = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        delivered.push(String(req.headers['x-tusk-event']));
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    env = {
      ...tuskEnvForTests(await createTestBucket('metrics-worker')),
      CLAMD_SOCKET: process.env.TEST_CLAMD_SOCKET,
      WEBHOOK_URL: `http://127.0.0.1:${(receiver.address() as { port: number }).port}/hook`,
      WEBHOOK_SECRET: 'metrics-webhook-secret',
      THUMBNAIL_WIDTHS: '64',
      THUMBNAIL_FORMATS: 'webp',
    };
    server = await startTusk({ env });
    // Every queue but process-upload: the upload's job waits until the second worker starts.
    const port = String(await freePort());
    steps = await startTusk({ mode: 'worker', env: { ...env, PORT: port, WORKER_HEALTH_PORT: port, WORKER_QUEUES: 'virus-scan,extract-metadata,thumbnail,transcode,finalize,webhook' } });
  });
  afterAll(async () => {
    await Promise.all([server?.kill(), steps?.kill(), starter?.kill()]);
    await new Promise<void>((resolve) => receiver?.close(() => resolve()));
    await rm(dir, { recursive: true, force: true });
  });

  test("queue depth and the oldest job's age show a job nobody takes; after it is processed, step durations, the scan verdict, the webhook delivery", async () => {
    const png = await readFile(await makePng(path.join(dir, 'a.png'), 64, 48));
    const created = await createUpload(server.url, { length: png.length, body: png, metadata: { filename: 'a.png', filetype: 'image/png' } });
    expect(created.status).toBe(201);

    // Read at scrape time (cached for a few seconds): poll.
    let waiting: Scrape | undefined;
    await waitFor(
      'process-upload to show a waiting job',
      async () => {
        waiting = await scrape(`${steps.url}/metrics`);
        return (waiting.value('tusk_queue_jobs', { queue: 'process-upload', state: 'waiting' }) ?? 0) >= 1;
      },
      20_000,
    );
    expect(waiting!.types).toMatchObject({ tusk_queue_jobs: 'gauge', tusk_queue_oldest_waiting_job_age_seconds: 'gauge', tusk_step_duration_seconds: 'histogram', tusk_scanner_up: 'gauge' });
    expect(waiting!.value('tusk_queue_oldest_waiting_job_age_seconds', { queue: 'process-upload' })).toBeGreaterThan(0);
    for (const queue of ['virus-scan', 'extract-metadata', 'thumbnail', 'transcode', 'finalize', 'webhook']) {
      expect(waiting!.value('tusk_queue_jobs', { queue, state: 'waiting' })).toBe(0);
    }
    expect(waiting!.value('tusk_scanner_up')).toBe(1);

    // A worker for process-upload, with its own metrics listener (not on its health port).
    const port = String(await freePort());
    const metricsPort = await freePort();
    starter = await startTusk({ mode: 'worker', env: { ...env, PORT: port, WORKER_HEALTH_PORT: port, WORKER_QUEUES: 'process-upload', METRICS_PORT: String(metricsPort) } });
    await waitForStatus(server.url, created.id, (d) => d.status === 'ready', { context: () => steps.output().slice(-4000) });
    await waitFor('the upload.ready webhook', () => delivered.includes('upload.ready'), 30_000);

    let done: Scrape | undefined;
    await waitFor(
      'the queue to drain in the metrics',
      async () => {
        done = await scrape(`${steps.url}/metrics`);
        return done.value('tusk_queue_jobs', { queue: 'process-upload', state: 'waiting' }) === 0 && done.sum('tusk_webhook_deliveries_total', { event: 'upload.ready', outcome: 'delivered' }) === 1;
      },
      20_000,
    );
    for (const queue of ['virus-scan', 'extract-metadata', 'thumbnail', 'finalize']) {
      expect(done!.value('tusk_step_duration_seconds_count', { queue, outcome: 'completed' })).toBe(1);
    }
    expect(done!.value('tusk_step_duration_seconds_count', { queue: 'process-upload', outcome: 'completed' })).toBeUndefined();
    expect(done!.value('tusk_scan_verdicts_total', { verdict: 'clean' })).toBe(1);
    expect(done!.value('tusk_queue_oldest_waiting_job_age_seconds', { queue: 'process-upload' })).toBe(0);

    const own = await scrape(`http://127.0.0.1:${metricsPort}/metrics`);
    expect(own.value('tusk_step_duration_seconds_count', { queue: 'process-upload', outcome: 'completed' })).toBe(1);
    expect((await fetch(`${starter.url}/metrics`)).status).toBe(404);
  });
});

describe('worker metrics while no scanner answers', () => {
  let dir: string;
  let tusk: TuskProcess;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'tusk-metrics-noscan-'));
    tusk = await startTusk({
      mode: 'all',
      env: { STORAGE: 'file', DATA_DIR: dir, REDIS_URL: testRedisUrl(), REDIS_PREFIX: uniqueRedisPrefix(), CLAMD_SOCKET: path.join(dir, 'no-clamd.sock') },
    });
  });
  afterAll(async () => {
    await tusk?.kill();
    await rm(dir, { recursive: true, force: true });
  });

  test('tusk_scanner_up is 0; a scan attempt counts as unavailable and its step as delayed, not failed (the upload waits)', async () => {
    const created = await createUpload(tusk.url, { length: 5, body: Buffer.from('hello'), metadata: { filename: 'a.txt' } });
    expect(created.status).toBe(201);
    let m: Scrape | undefined;
    await waitFor(
      'a scan attempt without a scanner',
      async () => {
        m = await scrape(`${tusk.url}/metrics`);
        return m.sum('tusk_scan_verdicts_total', { verdict: 'unavailable' }) >= 1 && m.sum('tusk_step_duration_seconds_count', { queue: 'virus-scan', outcome: 'delayed' }) >= 1;
      },
      20_000,
    );
    expect(m!.value('tusk_scanner_up')).toBe(0);
    expect(m!.sum('tusk_step_duration_seconds_count', { queue: 'virus-scan', outcome: 'failed' })).toBe(0);
    expect(m!.sum('tusk_scan_verdicts_total', { verdict: 'error' })).toBe(0);
    expect((await waitForStatus(tusk.url, created.id, (d) => d.status === 'scanning')).status).toBe('scanning');
  });
});
