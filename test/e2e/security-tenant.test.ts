// Tenant isolation and request bounds on the tus endpoint, tried as an attacker would: user B
// (another logged-in user) sends every URL form we and a property-based generator can think of
// at user A's uploads, and A's uploads must come out unread, unchanged and undeleted. Also the
// bounds a request cannot get around: concatenation, deferred lengths, checksummed bodies,
// creation limits, malformed input, hosts, aborted requests. Real tusk processes, real Redis, real
// S3 (Ceph RGW).
import { createHash, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { Redis } from 'ioredis';
import { createTestBucket, testRedisUrl, tuskEnvForTests, uniqueRedisPrefix } from '../helpers/services.js';
import { startTusk, type TuskProcess } from '../helpers/tusk-process.js';
import { JWT_SECRET, tokenFor } from '../helpers/direct.js';
import { OCTET, TUS, controlledPatch, processUploadJobs, rawRequest, waitFor, within, type RawResult } from '../helpers/tus.js';

const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });
/** Something in the body that looks like a stack trace (Node's "    at fn (file:line)"). */
const STACK = /\n\s+at [^\n]+:\d+/;

interface Tokens {
  alice: string;
  bob: string;
}

async function create(base: string, token: string, headers: Record<string, string>, body?: Buffer): Promise<RawResult & { id: string }> {
  const res = await rawRequest(base, {
    method: 'POST',
    path: '/files/',
    headers: { ...TUS, ...bearer(token), ...(body ? { 'Content-Type': OCTET } : {}), ...headers },
    body,
  });
  const location = typeof res.headers.location === 'string' ? res.headers.location : '';
  return { ...res, id: location.split('/').pop() ?? '' };
}

function patch(base: string, token: string, id: string, offset: number, body: Buffer, headers: Record<string, string> = {}): Promise<RawResult> {
  return rawRequest(base, {
    method: 'PATCH',
    path: `/files/${id}`,
    headers: { ...TUS, ...bearer(token), 'Content-Type': OCTET, 'Upload-Offset': String(offset), ...headers },
    body,
  });
}

const head = (base: string, token: string, id: string) => rawRequest(base, { method: 'HEAD', path: `/files/${id}`, headers: { ...TUS, ...bearer(token) } });
const get = (base: string, token: string, path: string) => rawRequest(base, { method: 'GET', path, headers: bearer(token) });

describe('tenant isolation on /files/ (s3 store, auth on)', () => {
  let tusk: TuskProcess;
  let redis: Redis;
  let prefix: string;
  let tokens: Tokens;
  // A's uploads: one unfinished (7 of 23 bytes), one finished; B's own unfinished one (3 of 29).
  const aliceFinished = Buffer.from('alice-private-bytes-0123456789');
  let ua = '';
  let fa = '';
  let ub = '';

  async function aliceUsage(): Promise<Record<string, string>> {
    return redis.hgetall(`${prefix}quota:user:{alice}`);
  }

  /** A's two uploads exactly as they were, her reservation and ownership too. */
  async function expectAliceIntact(usage: Record<string, string>): Promise<void> {
    const h = await head(tusk.url, tokens.alice, ua);
    expect([h.status, h.headers['upload-offset'], h.headers['upload-length']]).toEqual([200, '7', '23']);
    const g = await get(tusk.url, tokens.alice, `/files/${fa}`);
    expect([g.status, g.body]).toEqual([200, aliceFinished.toString('latin1')]);
    expect(await redis.get(`${prefix}owner:{${ua}}`)).toBe('alice');
    expect(await redis.get(`${prefix}owner:{${fa}}`)).toBe('alice');
    expect(await aliceUsage()).toEqual(usage);
  }

  /** What B got must not show anything of A's uploads, and must be a clean error or B's own. */
  function expectNothingOfAlice(res: RawResult, what: string): void {
    expect([what, res.status]).not.toEqual([what, 500]);
    expect(res.body).not.toContain(aliceFinished.toString('latin1'));
    expect(res.body).not.toMatch(STACK);
    expect([what, res.headers['upload-length']]).not.toEqual([what, '23']);
    expect([what, res.headers['upload-length']]).not.toEqual([what, String(aliceFinished.length)]);
  }

  beforeAll(async () => {
    const bucket = await createTestBucket('tenant');
    prefix = uniqueRedisPrefix();
    tusk = await startTusk({
      env: {
        ...tuskEnvForTests(bucket),
        REDIS_PREFIX: prefix,
        AUTH_JWT_SECRET: JWT_SECRET,
        QUOTA_BYTES: '1000000',
        MAX_CONCURRENT_UPLOADS: '20',
        RATE_LIMIT_CREATIONS_PER_MINUTE_USER: '0',
        RATE_LIMIT_CREATIONS_PER_MINUTE_IP: '0',
        SCAN_REQUIRED: 'false',
        LOG_LEVEL: 'warn',
      },
    });
    redis = new Redis(testRedisUrl());
    tokens = { alice: await tokenFor('alice'), bob: await tokenFor('bob') };
    const u = await create(tusk.url, tokens.alice, { 'Upload-Length': '23' }, Buffer.from('AAAAAAA'));
    const f = await create(tusk.url, tokens.alice, { 'Upload-Length': String(aliceFinished.length) }, aliceFinished);
    const b = await create(tusk.url, tokens.bob, { 'Upload-Length': '29' }, Buffer.from('BBB'));
    expect([u.status, f.status, b.status]).toEqual([201, 201, 201]);
    [ua, fa, ub] = [u.id, f.id, b.id];
  });
  afterAll(async () => {
    redis?.disconnect();
    await tusk?.kill();
  });

  test('the reported forms: B cannot read, overwrite, inspect or delete A uploads', async () => {
    const usage = await aliceUsage();
    const { bob } = tokens;
    const attempts: Array<[string, string, Record<string, string>, Buffer?]> = [
      ['GET', `/FILES/${fa}`, {}],
      ['PATCH', `/files/x/${ua}`, { 'Content-Type': OCTET, 'Upload-Offset': '7' }, Buffer.from('X')],
      ['PATCH', `/files//${ua}`, { 'Content-Type': OCTET, 'Upload-Offset': '7' }, Buffer.from('X')],
      ['PATCH', `/files/%2e/${ua}`, { 'Content-Type': OCTET, 'Upload-Offset': '7' }, Buffer.from('X')],
      ['HEAD', `/files/${ub}?/${ua}`, {}],
      ['HEAD', `/files/${ub}?/${fa}`, {}],
      ['DELETE', `/FILES/${ua}`, {}],
      ['DELETE', `/files/${ub}/../${ua}`, {}],
      ['GET', `/files/${ub}/../${fa}`, {}],
    ];
    for (const [method, path, headers, body] of attempts) {
      const res = await rawRequest(tusk.url, { method, path, headers: { ...TUS, ...bearer(bob), ...headers }, body });
      expectNothingOfAlice(res, `${method} ${path}`);
      expect([`${method} ${path}`, res.status < 300]).toEqual([`${method} ${path}`, path.startsWith(`/files/${ub}?`)]);
      if (path.startsWith(`/files/${ub}?`)) expect(res.headers['upload-offset']).toBe('3'); // B's own upload, never A's
    }
    await expectAliceIntact(usage);
  });

  test('property: no URL form, method or override lets B reach A uploads', async () => {
    const usage = await aliceUsage();
    const caseOf = (s: string) => fc.array(fc.boolean(), { minLength: s.length, maxLength: s.length }).map((f) => [...s].map((c, i) => (f[i] ? c.toUpperCase() : c)).join(''));
    const pctSome = (s: string) =>
      fc.array(fc.boolean(), { minLength: s.length, maxLength: s.length }).map((f) => [...s].map((c, i) => (f[i] ? `%${c.charCodeAt(0).toString(16)}` : c)).join(''));
    const idForm = (id: string) =>
      fc.oneof(
        fc.constant(id),
        caseOf(id),
        pctSome(id),
        pctSome(id).map((s) => s.replace(/%/g, '%25')), // double encoding
        fc.constant(`${id}/`),
        fc.constant(`${id};x`),
        fc.constant(`${id}%00`),
        fc.constant(`${id}%2F`),
        fc.constant(`.%2F${id}`),
      );
    const prefixForm = fc.oneof(
      caseOf('/files/'),
      fc.constantFrom('/files//', '/files/./', '/files/%2e/', '/files/x/', '/files/../files/', `/files/${ub}/../`, '//files/', '/files;/', '/%66iles/', '/files%2F', '/api/../files/', '/./files/', '/files/%2e%2e/files/'),
    );
    const tailForm = fc.oneof(
      fc.constant(''),
      fc.constantFrom('?', '#x', `?/${ub}`, `?id=${ub}`, '?x=/..'),
    );
    const trick = fc.oneof(
      // A's id somewhere in an odd path
      fc.record({ target: fc.constantFrom(ua, fa), pre: prefixForm, tail: tailForm }).chain(({ target, pre, tail }) => idForm(target).map((id) => `${pre}${id}${tail}`)),
      // B's own upload in the path, A's id in the query or fragment
      fc.record({ target: fc.constantFrom(ua, fa), sep: fc.constantFrom('?/', '?', '#/', '/?', '?x=/files/') }).map(({ target, sep }) => `/files/${ub}${sep}${target}`),
    );
    const method = fc.constantFrom('GET', 'HEAD', 'PATCH', 'DELETE', 'POST', 'PUT', 'OPTIONS');
    const override = fc.option(fc.constantFrom('PATCH', 'DELETE', 'HEAD', 'GET', 'patch'), { nil: undefined });
    await fc.assert(
      fc.asyncProperty(method, trick, override, async (m, path, methodOverride) => {
        const headers: Record<string, string> = { ...TUS, ...bearer(tokens.bob), 'Content-Type': OCTET, 'Upload-Offset': '7' };
        if (methodOverride) headers['X-HTTP-Method-Override'] = methodOverride;
        const body = m === 'PATCH' || m === 'POST' ? Buffer.from('XY') : undefined;
        const res = await rawRequest(tusk.url, { method: m, path, headers, body });
        expectNothingOfAlice(res, `${m} ${path} (override ${methodOverride})`);
        await expectAliceIntact(usage);
      }),
      { numRuns: 200 },
    );
  });

  test('A herself gets her uploads by the one canonical URL only', async () => {
    expect((await head(tusk.url, tokens.alice, ua)).status).toBe(200);
    for (const path of [`/FILES/${ua}`, `/files//${ua}`, `/files/${ua}/`, `/files/${ua.toUpperCase()}`]) {
      const res = await rawRequest(tusk.url, { method: 'HEAD', path, headers: { ...TUS, ...bearer(tokens.alice) } });
      expect([path, res.status]).toEqual([path, 404]);
    }
  });

  test('HEAD of an unfinished upload with a finished one in the query neither queues it nor frees its slot', async () => {
    const usage = await aliceUsage();
    const res = await rawRequest(tusk.url, { method: 'HEAD', path: `/files/${ua}?/${fa}`, headers: { ...TUS, ...bearer(tokens.alice) } });
    expect([res.status, res.headers['upload-offset']]).toEqual([200, '7']);
    const jobs = await processUploadJobs(testRedisUrl(), prefix);
    expect(jobs.map((j) => j.id)).not.toContain(ua);
    expect(await aliceUsage()).toEqual(usage);
  });

  test('POST to an upload URL creates nothing (and cannot get around the creation limits)', async () => {
    const before = await aliceUsage();
    const res = await rawRequest(tusk.url, { method: 'POST', path: `/files/${ua}`, headers: { ...TUS, ...bearer(tokens.alice), 'Upload-Length': '5' } });
    expect(res.status).toBe(405);
    expect(res.headers.location).toBeUndefined();
    expect(await aliceUsage()).toEqual(before);
  });

  test('Upload-Concat: final may not list a partial twice, and the quota never goes below zero', async () => {
    const carol = await tokenFor('carol');
    const p = await create(tusk.url, carol, { 'Upload-Length': '5', 'Upload-Concat': 'partial' }, Buffer.from('hello'));
    expect(p.status).toBe(201);
    const twice = await create(tusk.url, carol, { 'Upload-Concat': `final;/files/${p.id} /files/${p.id}` });
    expect(twice.status).toBe(400);
    expect(twice.body).toMatch(/more than once/);
    const bad = await create(tusk.url, carol, { 'Upload-Concat': 'final;/files/%E0%A4%A' });
    expect(bad.status).toBe(400);
    const once = await create(tusk.url, carol, { 'Upload-Concat': `final;/files/${p.id}` });
    expect(once.status).toBe(201);
    expect(await redis.hget(`${prefix}quota:user:{carol}`, 'bytes')).toBe('5');
    const del = await rawRequest(tusk.url, { method: 'DELETE', path: `/files/${once.id}`, headers: { ...TUS, ...bearer(carol) } });
    expect(del.status).toBe(204);
    expect(await redis.hget(`${prefix}quota:user:{carol}`, 'bytes')).toBe('0');
  });

  test('malformed input answers 400/404 without a stack, never 500', async () => {
    const { alice } = tokens;
    const cases: Array<[string, string, Record<string, string>]> = [
      ['GET', '/files/%E0%A4%A', {}],
      ['PATCH', '/files/%E0%A4%A', { 'Content-Type': OCTET, 'Upload-Offset': '0' }],
      ['POST', '/files/', { 'Upload-Concat': 'final;/files/%E0%A4%A' }],
      ['POST', '/files/', { 'Upload-Length': '1', Host: 'a b', 'Upload-Checksum': 'sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=', 'Content-Type': OCTET }],
      ['HEAD', '/files/', {}],
    ];
    for (const [method, path, headers] of cases) {
      const res = await rawRequest(tusk.url, { method, path, headers: { ...TUS, ...bearer(alice), ...headers }, body: method === 'POST' && headers['Content-Type'] ? Buffer.from('x') : undefined });
      expect([method, path, res.status >= 400 && res.status < 500]).toEqual([method, path, true]);
      expect(res.body).not.toMatch(STACK);
    }
  });

  test('event streams per user are bounded (each holds a socket without idle timeout and a subscription)', async () => {
    const controllers: AbortController[] = [];
    const open = async () => {
      const controller = new AbortController();
      const res = await fetch(`${tusk.url}/api/uploads/${ua}/events`, { headers: bearer(tokens.alice), signal: controller.signal });
      controllers.push(controller);
      return res.status;
    };
    try {
      const statuses = [];
      for (let i = 0; i < 32; i++) statuses.push(await open());
      expect(new Set(statuses)).toEqual(new Set([200]));
      expect(await open()).toBe(429);
      // Another user is not affected, and a closed stream frees its place.
      const bobs = await create(tusk.url, tokens.bob, { 'Upload-Length': '9' });
      const other = await fetch(`${tusk.url}/api/uploads/${bobs.id}/events`, { headers: bearer(tokens.bob) });
      expect(other.status).toBe(200);
      await other.body?.cancel();
      controllers.shift()!.abort();
      await waitFor('a stream place to free up', async () => (await open()) === 200, 5_000);
    } finally {
      for (const c of controllers) c.abort();
    }
  });

  test('Location is built from a validated host: a Host that is not one is refused', async () => {
    const evil = await rawRequest(tusk.url, { method: 'POST', path: '/files/', headers: { ...TUS, ...bearer(tokens.alice), 'Upload-Length': '1', Host: 'evil.example/x?' } });
    expect(evil.status).toBe(400);
    expect(evil.headers.location).toBeUndefined();
    const good = await rawRequest(tusk.url, { method: 'POST', path: '/files/', headers: { ...TUS, ...bearer(tokens.alice), 'Upload-Length': '1', Host: 'uploads.example:8443' } });
    expect(good.status).toBe(201);
    expect(good.headers.location).toMatch(/^http:\/\/uploads\.example:8443\/files\/[0-9a-f]{32}$/);
  });
});

describe('bounds before a body is read (s3 store, quota on)', () => {
  let tusk: TuskProcess;
  let token: string;
  let redis: Redis;
  let prefix: string;
  const QUOTA = 3 * 1024 * 1024;

  beforeAll(async () => {
    const bucket = await createTestBucket('bounds');
    prefix = uniqueRedisPrefix();
    redis = new Redis(testRedisUrl());
    tusk = await startTusk({
      env: {
        ...tuskEnvForTests(bucket),
        REDIS_PREFIX: prefix,
        AUTH_JWT_SECRET: JWT_SECRET,
        QUOTA_BYTES: String(QUOTA),
        CHECKSUM_SPOOL_LIMIT: '1MiB',
        SCAN_REQUIRED: 'false',
        LOG_LEVEL: 'warn',
      },
    });
    token = await tokenFor(`dave-${randomBytes(4).toString('hex')}`);
  });
  afterAll(async () => {
    redis?.disconnect();
    await tusk?.kill();
  });

  test('a deferred-length upload reserves what each body adds before storing it: over the quota is 413, no length is 411', async () => {
    const created = await create(tusk.url, token, { 'Upload-Defer-Length': '1' });
    expect(created.status).toBe(201);
    const tooMuch = await patch(tusk.url, token, created.id, 0, randomBytes(QUOTA + 1));
    expect(tooMuch.status).toBe(413);
    expect((await head(tusk.url, token, created.id)).headers['upload-offset']).toBe('0');
    const chunked = controlledPatch(`${tusk.url}/files/${created.id}`, 0, null, bearer(token));
    const answer = await within(chunked.result, 10_000);
    chunked.destroy();
    expect(answer !== 'timeout' && !(answer instanceof Error) && answer.status).toBe(411);
    const first = QUOTA - 100_000;
    expect((await patch(tusk.url, token, created.id, 0, randomBytes(first))).status).toBe(204);
    expect((await patch(tusk.url, token, created.id, first, randomBytes(200_000))).status).toBe(413);
    const h = await head(tusk.url, token, created.id);
    expect(h.headers['upload-offset']).toBe(String(first));
  });

  test('a deferred-length creation body over the quota is refused before it is stored', async () => {
    const res = await create(tusk.url, token, { 'Upload-Defer-Length': '1' }, randomBytes(QUOTA + 1));
    expect(res.status).toBe(413);
  });

  test('a checksummed PATCH is refused on offset, length or quota before its body is read', async () => {
    const created = await create(tusk.url, token, { 'Upload-Length': '100' });
    expect(created.status).toBe(201);
    const url = `${tusk.url}/files/${created.id}`;
    const checksum = { ...bearer(token), 'Upload-Checksum': 'sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=' };
    // Each declares 300 MB and sends nothing: the answer must come without the body.
    for (const [offset, expected] of [
      [5, 409],
      [0, 413],
    ] as const) {
      const p = controlledPatch(url, offset, 300_000_000, checksum);
      const res = await within(p.result, 10_000);
      p.destroy();
      expect([offset, res !== 'timeout' && !(res instanceof Error) ? res.status : res]).toEqual([offset, expected]);
    }
    const deferred = await create(tusk.url, token, { 'Upload-Defer-Length': '1' });
    const p = controlledPatch(`${tusk.url}/files/${deferred.id}`, 0, 300_000_000, checksum);
    const res = await within(p.result, 10_000);
    p.destroy();
    expect(res !== 'timeout' && !(res instanceof Error) && res.status).toBe(413);
  });

  test('a checksummed PATCH waits for the upload lock before it reads its body', async () => {
    const created = await create(tusk.url, token, { 'Upload-Length': '5000' });
    const url = `${tusk.url}/files/${created.id}`;
    const stalled = controlledPatch(url, 0, 5000, bearer(token));
    await stalled.write(randomBytes(1000));
    await waitFor('the stalled PATCH to hold the lock', async () => (await redis.exists(`${prefix}lock:${created.id}`)) === 1, 10_000);
    // At offset 0 while the stalled request holds the lock: it is asked to let go, saves its
    // 1000 bytes, and only then is the checksummed request checked - and refused on its offset.
    const p = controlledPatch(url, 0, 300_000_000, { ...bearer(token), 'Upload-Checksum': 'sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=' });
    const res = await within(p.result, 20_000);
    p.destroy();
    stalled.destroy();
    expect(res !== 'timeout' && !(res instanceof Error) && res.status).toBe(409);
    expect((await head(tusk.url, token, created.id)).headers['upload-offset']).toBe('1000');
  });

  test('checksummed bodies are bounded by CHECKSUM_SPOOL_LIMIT', async () => {
    const user = await tokenFor(`erin-${randomBytes(4).toString('hex')}`);
    const big = randomBytes(2 * 1024 * 1024);
    const sha1 = (b: Buffer) => `sha1 ${createHash('sha1').update(b).digest('base64')}`;
    const created = await create(tusk.url, user, { 'Upload-Length': String(big.length) });
    expect(created.status).toBe(201);
    const small = big.subarray(0, 9000);
    expect((await patch(tusk.url, user, created.id, 0, small, { 'Upload-Checksum': sha1(small) })).status).toBe(204);
    const rest = big.subarray(9000);
    const res = await patch(tusk.url, user, created.id, 9000, rest, { 'Upload-Checksum': sha1(rest) });
    expect(res.status).toBe(413);
    expect((await head(tusk.url, user, created.id)).headers['upload-offset']).toBe('9000');
  });
});

describe('an aborted PATCH does not hold up shutdown', () => {
  test('SIGTERM after a client dropped its PATCH exits without waiting for it', async () => {
    const bucket = await createTestBucket('abort');
    const tusk = await startTusk({ env: { ...tuskEnvForTests(bucket), SCAN_REQUIRED: 'false', SHUTDOWN_TIMEOUT: '60s' } });
    const created = await create(tusk.url, await tokenFor('x'), { 'Upload-Length': '10000000' });
    const p = controlledPatch(`${tusk.url}/files/${created.id}`, 0, 10_000_000);
    await p.write(randomBytes(100_000));
    p.destroy();
    await new Promise((r) => setTimeout(r, 500));
    const started = Date.now();
    const exit = await tusk.kill('SIGTERM');
    expect(exit.code).toBe(0);
    expect(tusk.output()).not.toMatch(/ending uploads in flight|still saving at the deadline/);
    // A third of SHUTDOWN_TIMEOUT is what a request still in flight would have been given.
    expect(Date.now() - started).toBeLessThan(20_000);
  });
});

describe('errors never carry a stack trace, whatever NODE_ENV', () => {
  test('undecodable paths and unsupported charsets are clean 4xx JSON/tus errors', async () => {
    const bucket = await createTestBucket('stack');
    const tusk = await startTusk({ env: { ...tuskEnvForTests(bucket), NODE_ENV: undefined, AUTH_JWT_SECRET: JWT_SECRET, SCAN_REQUIRED: 'false' } });
    const token = await tokenFor('y');
    const cases: Array<{ method: string; path: string; headers?: Record<string, string>; body?: Buffer }> = [
      { method: 'GET', path: '/files/%E0%A4%A' },
      { method: 'GET', path: '/api/uploads/%E0%A4%A' },
      { method: 'GET', path: '/api/files/derived/%E0%A4%A/x' },
      { method: 'POST', path: '/api/uploads/initiate', headers: { 'Content-Type': 'application/json; charset=koi8-r' }, body: Buffer.from('{"filename":"a"}') },
      { method: 'POST', path: '/api/uploads/initiate', headers: { 'Content-Type': 'application/json' }, body: Buffer.from('{"filename":') },
      { method: 'POST', path: '/s3/multipart/%E0%A4%A/complete?key=direct%2F%E0', headers: { 'Content-Type': 'application/json' }, body: Buffer.from('{}') },
    ];
    for (const c of cases) {
      const res = await rawRequest(tusk.url, { ...c, headers: { ...bearer(token), ...c.headers } });
      expect([c.method, c.path, res.status >= 400 && res.status < 500]).toEqual([c.method, c.path, true]);
      expect(res.body).not.toMatch(STACK);
      expect(res.body).not.toMatch(/<pre>|node_modules/);
    }
    await tusk.kill();
  });
});
