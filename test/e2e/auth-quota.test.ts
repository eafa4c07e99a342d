// Authentication and ownership (tus endpoint and status API), per-user byte quota and
// concurrent-upload limit, creation rate limits - against real tusk processes, the test Redis and
// the test S3 (RGW). Test JWTs are signed here with jose. The authenticator and the settings
// alone: test/unit/auth.test.ts; the quota bookkeeping alone: test/integration/quota-service.test.ts.
import { randomBytes } from 'node:crypto';
import { SignJWT } from 'jose';
import { Redis } from 'ioredis';
import { QuotaService } from '../../hooks/quota.js';
import { RedisKeys } from '../../lib/redis-keys.js';
import { createTestBucket, testRedisUrl, tuskEnvForTests, uniqueRedisPrefix } from '../helpers/services.js';
import { startTusk, type TuskProcess } from '../helpers/tusk-process.js';
import { OCTET, TUS, bodyOf, processUploadJobs, s3Leftovers, waitFor } from '../helpers/tus.js';

const SECRET = 'test-secret-of-at-least-32-bytes-0123456789';
const ISSUER = 'https://issuer.test';
const AUDIENCE = 'tusk-tests';

async function tokenFor(sub: string, opts: { secret?: string; issuer?: string; audience?: string; expiresIn?: string | number } = {}): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(sub)
    .setIssuer(opts.issuer ?? ISSUER)
    .setAudience(opts.audience ?? AUDIENCE)
    .setIssuedAt()
    .setExpirationTime(opts.expiresIn ?? '10m')
    .sign(new TextEncoder().encode(opts.secret ?? SECRET));
}

/** An HS256 token with exactly these claims (no defaults: `exp` and `iat` only when given). */
function signed(claims: { sub: string; iat?: number; exp?: number }, secret = SECRET): Promise<string> {
  return new SignJWT({ ...claims, iss: ISSUER, aud: AUDIENCE }).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(secret));
}

const HOUR = 3600;
const nowSeconds = () => Math.floor(Date.now() / 1000);

/** An unsigned token (alg none), built by hand. */
function unsignedToken(sub: string): string {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub, iss: ISSUER, aud: AUDIENCE, exp: Math.floor(Date.now() / 1000) + 600 })}.`;
}

interface Res {
  status: number;
  headers: Headers;
  body: string;
}

async function call(url: string, init: RequestInit & { token?: string } = {}): Promise<Res> {
  const { token, ...rest } = init;
  const headers = new Headers(rest.headers);
  if (token) headers.set('Authorization', `Bearer ${token}`);
  const res = await fetch(url, { ...rest, headers, signal: AbortSignal.timeout(30_000) });
  return { status: res.status, headers: res.headers, body: await res.text() };
}

function create(base: string, token: string | undefined, length: number | 'defer', extra: Record<string, string> = {}, body?: Buffer): Promise<Res> {
  const headers: Record<string, string> = { ...TUS, ...extra };
  if (length === 'defer') headers['Upload-Defer-Length'] = '1';
  else headers['Upload-Length'] = String(length);
  if (body) headers['Content-Type'] = OCTET;
  return call(`${base}/files/`, { method: 'POST', headers, token, body: body ? bodyOf(body) : undefined });
}

function urlOf(base: string, res: Res): string {
  const location = res.headers.get('location');
  if (res.status !== 201 || !location) throw new Error(`expected 201 with Location, got ${res.status} ${res.body}`);
  return new URL(location, base).toString();
}
const idOf = (url: string) => url.split('/').pop() ?? '';

function patch(url: string, token: string | undefined, offset: number, data: Buffer, extra: Record<string, string> = {}): Promise<Res> {
  return call(url, { method: 'PATCH', token, headers: { ...TUS, 'Content-Type': OCTET, 'Upload-Offset': String(offset), ...extra }, body: bodyOf(data) });
}

async function objectCount(bucket: string): Promise<{ keys: number; multipart: number }> {
  const left = await s3Leftovers(bucket, '');
  return { keys: left.keys.length, multipart: left.multipart.length };
}

describe('authentication, ownership, quotas and rate limits (tus + API)', () => {
  let bucket: string;
  let prefix: string;
  let a: TuskProcess;
  let b: TuskProcess;
  let redis: Redis;
  const QUOTA = 1_000_000;
  const MAX_ACTIVE = 8;

  beforeAll(async () => {
    bucket = await createTestBucket('auth');
    prefix = uniqueRedisPrefix();
    const env = {
      ...tuskEnvForTests(bucket),
      REDIS_PREFIX: prefix,
      AUTH_JWT_SECRET: SECRET,
      AUTH_JWT_ISSUER: ISSUER,
      AUTH_JWT_AUDIENCE: AUDIENCE,
      QUOTA_BYTES: String(QUOTA),
      MAX_CONCURRENT_UPLOADS: String(MAX_ACTIVE),
      RATE_LIMIT_CREATIONS_PER_MINUTE_USER: '1000',
      RATE_LIMIT_CREATIONS_PER_MINUTE_IP: '10000',
      // No worker here: downloads are not held back for a scan verdict (tested in tus-download).
      SCAN_REQUIRED: 'false',
    };
    [a, b] = await Promise.all([startTusk({ env }), startTusk({ env })]);
    redis = new Redis(testRedisUrl());
  });
  afterAll(async () => {
    redis?.disconnect();
  });

  test('no token: 401 with WWW-Authenticate on every tus method and API route; OPTIONS (preflight) passes', async () => {
    const token = await tokenFor('user-401');
    const url = urlOf(a.url, await create(a.url, token, 10));
    const id = idOf(url);
    const tusRequests: Array<[string, RequestInit]> = [
      [`${a.url}/files/`, { method: 'POST', headers: { ...TUS, 'Upload-Length': '10' } }],
      [url, { method: 'HEAD', headers: TUS }],
      [url, { method: 'PATCH', headers: { ...TUS, 'Content-Type': OCTET, 'Upload-Offset': '0' }, body: 'x' }],
      [url, { method: 'DELETE', headers: TUS }],
      [url, { method: 'GET' }],
    ];
    for (const [target, init] of tusRequests) {
      const res = await call(target, init);
      expect([init.method, res.status]).toEqual([init.method, 401]);
      expect(res.headers.get('www-authenticate')).toBe('Bearer');
      expect(res.headers.get('tus-resumable')).toBe('1.0.0');
    }
    for (const [target, method] of [
      [`/api/uploads/${id}`, 'GET'],
      [`/api/uploads/${id}/events`, 'GET'],
      [`/api/uploads/${id}/reprocess`, 'POST'],
      [`/api/files/derived/${id}/thumb.webp`, 'GET'],
    ] as const) {
      const res = await call(`${a.url}${target}`, { method });
      expect([target, res.status]).toEqual([target, 401]);
      expect(JSON.parse(res.body)).toEqual({ error: { code: 'unauthorized', message: expect.any(String) } });
    }
    const preflight = await call(`${a.url}/files/`, { method: 'OPTIONS', headers: { Origin: 'http://app.test', 'Access-Control-Request-Method': 'POST' } });
    expect(preflight.status).toBe(204);
    // still there, untouched
    expect((await call(url, { method: 'HEAD', headers: TUS, token })).headers.get('upload-offset')).toBe('0');
  });

  test('bad signature, expired, wrong issuer, wrong audience, alg none, garbage: 401', async () => {
    const bad = [
      await tokenFor('mallory', { secret: 'another-secret-of-at-least-32-bytes-xxxxxx' }),
      await tokenFor('mallory', { expiresIn: Math.floor(Date.now() / 1000) - 60 }),
      await tokenFor('mallory', { issuer: 'https://evil.test' }),
      await tokenFor('mallory', { audience: 'someone-else' }),
      unsignedToken('mallory'),
      'not.a.jwt',
    ];
    for (const token of bad) {
      const res = await create(a.url, token, 10);
      expect(res.status).toBe(401);
      const api = await call(`${a.url}/api/uploads/anything`, { token });
      expect(api.status).toBe(401);
    }
    expect((await create(a.url, await tokenFor('alice-ok'), 10)).status).toBe(201);
  });

  test('tokens must expire: no exp, or exp more than AUTH_MAX_TOKEN_LIFETIME (default 24h) after iat, is 401 on /files/ and /api/', async () => {
    const now = nowSeconds();
    const refused: Array<[string, string, RegExp]> = [
      ['no exp', await signed({ sub: 'ivy', iat: now }), /no exp claim/],
      ['no exp, no iat', await signed({ sub: 'ivy' }), /no exp claim/],
      ['exp 25h after iat', await signed({ sub: 'ivy', iat: now, exp: now + 25 * HOUR }), /longer/],
      ['exp 24h after now, iat 1h ago', await signed({ sub: 'ivy', iat: now - HOUR, exp: now + 24 * HOUR }), /longer/],
      ['no iat, exp 25h from now', await signed({ sub: 'ivy', exp: now + 25 * HOUR }), /longer/],
      ['iat in the future, exp 1h after it', await signed({ sub: 'ivy', iat: now + 30 * 24 * HOUR, exp: now + 30 * 24 * HOUR + HOUR }), /longer/],
    ];
    for (const [label, token, why] of refused) {
      const tus = await create(a.url, token, 10);
      expect([label, tus.status, tus.headers.get('www-authenticate')]).toEqual([label, 401, 'Bearer']);
      expect(tus.body).toMatch(why);
      const api = await call(`${a.url}/api/uploads/anything`, { token });
      expect([label, api.status]).toEqual([label, 401]);
      expect(JSON.parse(api.body)).toEqual({ error: { code: 'unauthorized', message: expect.stringMatching(why) } });
    }
    const accepted: Array<[string, string]> = [
      ['exp 23h after iat', await signed({ sub: 'ivy', iat: now, exp: now + 23 * HOUR })],
      ['exp exactly 24h after iat', await signed({ sub: 'ivy', iat: now - 23 * HOUR, exp: now + HOUR })],
      ['no iat, exp 23h from now', await signed({ sub: 'ivy', exp: now + 23 * HOUR })],
    ];
    for (const [label, token] of accepted) {
      expect([label, (await create(a.url, token, 10)).status]).toEqual([label, 201]);
      expect([label, (await call(`${a.url}/api/uploads/${'0'.repeat(32)}`, { token })).status]).toEqual([label, 404]);
    }
  });

  test("user B cannot HEAD, PATCH, DELETE, download, see via the API or concatenate user A's upload (404 like unknown)", async () => {
    const alice = await tokenFor('alice');
    const bob = await tokenFor('bob');
    const data = randomBytes(1000);
    const url = urlOf(a.url, await create(a.url, alice, data.length, { 'Upload-Metadata': `filename ${Buffer.from('a.bin').toString('base64')}` }));
    expect((await patch(url, alice, 0, data)).status).toBe(204);
    const id = idOf(url);
    const unknown = `${a.url}/files/${'0'.repeat(32)}`;

    const headB = await call(url, { method: 'HEAD', headers: TUS, token: bob });
    const headUnknown = await call(unknown, { method: 'HEAD', headers: TUS, token: bob });
    expect(headB.status).toBe(404);
    expect(headUnknown.status).toBe(404);
    for (const [target, init] of [
      [url, { method: 'PATCH', headers: { ...TUS, 'Content-Type': OCTET, 'Upload-Offset': '1000' }, body: 'x' }],
      [url, { method: 'GET' }],
      [url, { method: 'DELETE', headers: TUS }],
    ] as Array<[string, RequestInit]>) {
      const mine = await call(target, { ...init, token: bob });
      const none = await call(target.replace(id, '0'.repeat(32)), { ...init, token: bob });
      expect([init.method, mine.status, mine.body]).toEqual([init.method, 404, none.body]);
    }
    // B via the process B too (ownership is in Redis)
    expect((await call(url.replace(a.url, b.url), { method: 'HEAD', headers: TUS, token: bob })).status).toBe(404);
    const apiB = await call(`${a.url}/api/uploads/${id}`, { token: bob });
    expect(apiB.status).toBe(404);
    expect(JSON.parse(apiB.body).error.code).toBe('not_found');
    expect((await call(`${a.url}/api/uploads/${id}/events?access_token=${bob}`)).status).toBe(404);
    expect((await call(`${a.url}/api/uploads/${id}/reprocess`, { method: 'POST', token: bob })).status).toBe(404);

    // A still has it, whole
    const headA = await call(url, { method: 'HEAD', headers: TUS, token: alice });
    expect([headA.status, headA.headers.get('upload-offset')]).toEqual([200, '1000']);
    const download = await fetch(url, { headers: { Authorization: `Bearer ${alice}` } });
    expect(download.status).toBe(200);
    expect(Buffer.from(await download.arrayBuffer()).equals(data)).toBe(true);
    const apiA = await call(`${a.url}/api/uploads/${id}`, { token: alice });
    expect(apiA.status).toBe(200);
    expect(JSON.parse(apiA.body).upload_id).toBe(id);

    // SSE with the token as a query parameter (EventSource cannot send headers)
    const controller = new AbortController();
    const sse = await fetch(`${a.url}/api/uploads/${id}/events?access_token=${alice}`, { signal: controller.signal });
    expect(sse.status).toBe(200);
    expect(sse.headers.get('content-type')).toMatch(/text\/event-stream/);
    controller.abort();
    // ... but not on the other routes
    expect((await call(`${a.url}/api/uploads/${id}?access_token=${alice}`)).status).toBe(401);

    // Concatenation: B cannot use A's partial
    const partial = urlOf(a.url, await create(a.url, alice, 5, { 'Upload-Concat': 'partial' }));
    expect((await patch(partial, alice, 0, Buffer.from('hello'))).status).toBe(204);
    const finalB = await call(`${a.url}/files/`, { method: 'POST', token: bob, headers: { ...TUS, 'Upload-Concat': `final;${new URL(partial).pathname}` } });
    expect(finalB.status).toBe(400);
    expect(finalB.body).toMatch(/not found/i);
    // A can, and the final upload is A's, with the partial's bytes taken over (not counted twice)
    const before = await new QuotaService(redis, new RedisKeys(prefix), { quotaBytes: QUOTA, maxConcurrentUploads: MAX_ACTIVE }).usage('alice');
    const finalA = await call(`${a.url}/files/`, { method: 'POST', token: alice, headers: { ...TUS, 'Upload-Concat': `final;${new URL(partial).pathname}` } });
    expect(finalA.status).toBe(201);
    const after = await new QuotaService(redis, new RedisKeys(prefix), { quotaBytes: QUOTA, maxConcurrentUploads: MAX_ACTIVE }).usage('alice');
    expect(after.bytes).toBe(before.bytes);
    const finalUrl = new URL(finalA.headers.get('location') ?? '', a.url).toString();
    expect((await call(finalUrl, { method: 'HEAD', headers: TUS, token: bob })).status).toBe(404);

    // The queued jobs carry the real owner (the token's sub)
    const jobs = await processUploadJobs(testRedisUrl(), prefix);
    const owners = Object.fromEntries(jobs.map((j) => [j.data.uploadId, j.data.owner]));
    expect(owners[id]).toBe('alice');
    expect(owners[idOf(finalUrl)]).toBe('alice');

    // B's DELETE did nothing; A's works and then it is gone for A too
    expect((await call(url, { method: 'DELETE', headers: TUS, token: alice })).status).toBe(204);
    expect((await call(url, { method: 'HEAD', headers: TUS, token: alice })).status).toBe(404);
  });

  test('over quota: 413 before any byte is stored (no object, no multipart upload); DELETE frees the reservation', async () => {
    const carol = await tokenFor('carol');
    const before = await objectCount(bucket);
    const tooBig = await create(a.url, carol, QUOTA + 1, {}, randomBytes(64 * 1024));
    expect(tooBig.status).toBe(413);
    expect(tooBig.body).toMatch(/quota/i);
    expect(tooBig.headers.get('location')).toBeNull();
    expect(await objectCount(bucket)).toEqual(before);

    const first = urlOf(a.url, await create(a.url, carol, 600_000));
    const afterFirst = await objectCount(bucket);
    const second = await create(a.url, carol, 500_000, {}, randomBytes(64 * 1024));
    expect(second.status).toBe(413);
    expect(await objectCount(bucket)).toEqual(afterFirst);
    // The API side (direct uploads) sees the same quota
    const quota = new QuotaService(redis, new RedisKeys(prefix), { quotaBytes: QUOTA, maxConcurrentUploads: MAX_ACTIVE });
    expect(await quota.reserve('carol', 'direct-test-1', 500_000)).toEqual({ ok: false, code: 'quota_exceeded', message: expect.stringMatching(/quota/i) });
    expect((await quota.usage('carol')).bytes).toBe(600_000);

    expect((await call(first, { method: 'DELETE', headers: TUS, token: carol })).status).toBe(204);
    expect((await quota.usage('carol')).bytes).toBe(0);
    expect((await create(a.url, carol, 500_000)).status).toBe(201);
  });

  test('deferred length: reserved as 0, refused with 413 when the declared length is over the quota', async () => {
    const dave = await tokenFor('dave');
    const url = urlOf(a.url, await create(a.url, dave, 'defer'));
    const quota = new QuotaService(redis, new RedisKeys(prefix), { quotaBytes: QUOTA, maxConcurrentUploads: MAX_ACTIVE });
    expect((await quota.reservation(idOf(url)))?.bytes).toBe(0);
    const over = await patch(url, dave, 0, Buffer.from('abc'), { 'Upload-Length': String(QUOTA + 10) });
    expect(over.status).toBe(413);
    const head = await call(url, { method: 'HEAD', headers: TUS, token: dave });
    expect([head.headers.get('upload-offset'), head.headers.get('upload-length'), head.headers.get('upload-defer-length')]).toEqual(['0', null, '1']);
    const ok = await patch(url, dave, 0, Buffer.from('abc'), { 'Upload-Length': '3' });
    expect(ok.status).toBe(204);
    expect(await quota.usage('dave')).toMatchObject({ bytes: 3, activeUploads: 0 });
  });

  test('concurrent-upload limit: the next unfinished upload is refused (403) until one finishes', async () => {
    const erin = await tokenFor('erin');
    const urls: string[] = [];
    for (let i = 0; i < MAX_ACTIVE; i++) urls.push(urlOf(a.url, await create(a.url, erin, 4)));
    const refused = await create(a.url, erin, 4);
    expect(refused.status).toBe(403);
    expect(refused.body).toMatch(/unfinished uploads/i);
    expect((await patch(urls[0] ?? '', erin, 0, Buffer.from('done'))).status).toBe(204);
    expect((await create(a.url, erin, 4)).status).toBe(201);
  });

  test('two tusk processes share the quota and the slot limit: concurrent creations never exceed them', async () => {
    const frank = await tokenFor('frank');
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => create(i % 2 ? b.url : a.url, frank, 150_000)));
    const statuses = results.map((r) => r.status).sort();
    expect(statuses.filter((s) => s === 201)).toHaveLength(6); // 6 x 150 kB <= 1 MB < 7 x 150 kB
    expect(statuses.filter((s) => s === 413)).toHaveLength(4);
    const quota = new QuotaService(redis, new RedisKeys(prefix), { quotaBytes: QUOTA, maxConcurrentUploads: MAX_ACTIVE });
    expect(await quota.usage('frank')).toMatchObject({ bytes: 900_000, activeUploads: 6 });

    const grace = await tokenFor('grace');
    const slots = await Promise.all(Array.from({ length: 14 }, (_, i) => create(i % 2 ? b.url : a.url, grace, 1)));
    expect(slots.filter((r) => r.status === 201)).toHaveLength(MAX_ACTIVE);
    expect(slots.filter((r) => r.status === 403)).toHaveLength(14 - MAX_ACTIVE);
  });
});

describe('token lifetime settings', () => {
  test('AUTH_REQUIRE_EXP=false accepts tokens without exp (warned at start-up); AUTH_MAX_TOKEN_LIFETIME bounds the others', async () => {
    const bucket = await createTestBucket('auth-exp');
    const tusk = await startTusk({
      env: { ...tuskEnvForTests(bucket), AUTH_JWT_SECRET: SECRET, AUTH_JWT_ISSUER: ISSUER, AUTH_JWT_AUDIENCE: AUDIENCE, AUTH_REQUIRE_EXP: 'false', AUTH_MAX_TOKEN_LIFETIME: '2h' },
    });
    try {
      await waitFor('the start-up warning', () => /AUTH_REQUIRE_EXP=false: tokens without exp are accepted/.test(tusk.output()), 10_000);
      const now = nowSeconds();
      const noExp = await signed({ sub: 'jack', iat: now });
      expect((await create(tusk.url, noExp, 10)).status).toBe(201);
      expect((await call(`${tusk.url}/api/uploads/${'0'.repeat(32)}`, { token: noExp })).status).toBe(404);
      expect((await create(tusk.url, await signed({ sub: 'jack', iat: now, exp: now + 2 * HOUR }), 10)).status).toBe(201);
      const tooLong = await create(tusk.url, await signed({ sub: 'jack', iat: now, exp: now + 3 * HOUR }), 10);
      expect([tooLong.status, tooLong.body]).toEqual([401, expect.stringMatching(/longer .* 7200 s/)]);
    } finally {
      await tusk.kill();
    }
  });
});

describe('expiry releases reservations (worker cleanup)', () => {
  test('an unfinished upload that expires gives its bytes and slot back; a finished one keeps its bytes', async () => {
    const bucket = await createTestBucket('quota-expiry');
    const prefix = uniqueRedisPrefix();
    const tusk = await startTusk({
      mode: 'all',
      env: { ...tuskEnvForTests(bucket), REDIS_PREFIX: prefix, AUTH_JWT_SECRET: SECRET, QUOTA_BYTES: '1000', MAX_CONCURRENT_UPLOADS: '1', UPLOAD_EXPIRY: '2s', CLEANUP_INTERVAL: '1s', SCAN_REQUIRED: 'false' },
    });
    const token = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('henry').setExpirationTime('5m').sign(new TextEncoder().encode(SECRET));
    const redis = new Redis(testRedisUrl());
    try {
      const quota = new QuotaService(redis, new RedisKeys(prefix), { quotaBytes: 1000, maxConcurrentUploads: 1 });
      const finished = urlOf(tusk.url, await create(tusk.url, token, 100));
      expect((await patch(finished, token, 0, randomBytes(100))).status).toBe(204);
      const abandoned = urlOf(tusk.url, await create(tusk.url, token, 800));
      expect((await patch(abandoned, token, 0, randomBytes(10))).status).toBe(204);
      expect(await quota.usage('henry')).toMatchObject({ bytes: 900, activeUploads: 1 });
      expect((await create(tusk.url, token, 10)).status).toBe(403); // the one slot is taken
      const deadline = Date.now() + 20_000;
      while ((await quota.usage('henry')).bytes !== 100 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
      expect(await quota.usage('henry')).toMatchObject({ bytes: 100, activeUploads: 0 });
      // Its owner is kept a while (a client coming back hears 410 "expired", not 404), then goes.
      const ownerTtl = await redis.ttl(`${prefix}owner:{${idOf(abandoned)}}`);
      expect(ownerTtl).toBeGreaterThan(0);
      expect(ownerTtl).toBeLessThanOrEqual(7 * 86_400);
      expect((await create(tusk.url, token, 900)).status).toBe(201);
      // The sweep logs once it is over (after the quota was released and the objects deleted).
      await waitFor('the cleanup log line', () => /"released":1/.test(tusk.output()), 10_000);
    } finally {
      redis.disconnect();
      await tusk.kill();
    }
  });
});

describe('creation rate limits', () => {
  test('per user, then per IP: 429 with Retry-After', async () => {
    const bucket = await createTestBucket('ratelimit');
    const tusk = await startTusk({
      env: { ...tuskEnvForTests(bucket), AUTH_JWT_SECRET: SECRET, RATE_LIMIT_CREATIONS_PER_MINUTE_USER: '3', RATE_LIMIT_CREATIONS_PER_MINUTE_IP: '5' },
    });
    const token = (sub: string) => new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setExpirationTime('5m').sign(new TextEncoder().encode(SECRET));
    const u1 = await token('u1');
    for (let i = 0; i < 3; i++) expect((await create(tusk.url, u1, 1)).status).toBe(201);
    const limited = await create(tusk.url, u1, 1);
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(Number(limited.headers.get('retry-after'))).toBeLessThanOrEqual(60);
    // The 4 attempts above count for the IP (limit 5): another user gets one more, then 429.
    const u2 = await token('u2');
    expect((await create(tusk.url, u2, 1)).status).toBe(201);
    const ipLimited = await create(tusk.url, u2, 1);
    expect(ipLimited.status).toBe(429);
    expect(ipLimited.headers.get('retry-after')).toMatch(/^\d+$/);
    await tusk.kill();
  });
});

describe('authentication off', () => {
  test('everything works as "anonymous" and start-up warns loudly', async () => {
    const bucket = await createTestBucket('noauth');
    const prefix = uniqueRedisPrefix();
    const tusk = await startTusk({ env: { ...tuskEnvForTests(bucket), REDIS_PREFIX: prefix } });
    await waitFor('the start-up warning', () => /AUTHENTICATION IS OFF/.test(tusk.output()), 10_000);
    const created = await create(tusk.url, undefined, 5);
    const url = urlOf(tusk.url, created);
    expect((await patch(url, undefined, 0, Buffer.from('hello'))).status).toBe(204);
    expect((await call(url, { method: 'HEAD', headers: TUS })).headers.get('upload-offset')).toBe('5');
    expect((await call(`${tusk.url}/api/uploads/${idOf(url)}`)).status).toBe(200);
    const redis = new Redis(testRedisUrl());
    expect(await redis.get(`${prefix}owner:{${idOf(url)}}`)).toBe('anonymous');
    redis.disconnect();
    const jobs = await processUploadJobs(testRedisUrl(), prefix);
    expect(jobs.map((j) => j.data.owner)).toEqual([null]);
    await tusk.kill();
  });
});
