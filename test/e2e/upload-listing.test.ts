// GET /api/uploads: the caller's uploads, newest first, cursor-paginated, filtered by status -
// against a real tusk with authentication on, the test Redis and the test S3 (RGW). Hostile input:
// another user's uploads never appear whatever the query, and a bad limit, status or cursor (one
// forged to point into another user's listing too) is a 400 with a code, never a 500.
import { SignJWT } from 'jose';
import { Redis } from 'ioredis';
import { RecordStore } from '../../lib/record-store.js';
import { RedisKeys } from '../../lib/redis-keys.js';
import { createTestBucket, testRedisUrl, tuskEnvForTests, uniqueRedisPrefix } from '../helpers/services.js';
import { startTusk, type TuskProcess } from '../helpers/tusk-process.js';
import { OCTET, TUS, bodyOf } from '../helpers/tus.js';

const SECRET = 'test-secret-of-at-least-32-bytes-0123456789';

function tokenFor(sub: string): Promise<string> {
  return new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setIssuedAt().setExpirationTime('10m').sign(new TextEncoder().encode(SECRET));
}

interface Listing {
  uploads: Array<{ upload_id: string; status: string; filename: string | null }>;
  next_cursor: string | null;
}

describe('GET /api/uploads (listing)', () => {
  let tusk: TuskProcess;
  let redis: Redis;
  let prefix: string;
  let alice: string;
  let bob: string;
  const aliceIds: string[] = []; // oldest first

  async function call(path: string, token?: string, init: RequestInit = {}) {
    const headers = new Headers(init.headers);
    if (token) headers.set('Authorization', `Bearer ${token}`);
    const res = await fetch(`${tusk.url}${path}`, { ...init, headers, signal: AbortSignal.timeout(30_000) });
    const text = await res.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, headers: res.headers, text, json };
  }

  async function create(token: string, name: string, finishWith?: Buffer): Promise<string> {
    const meta = `filename ${Buffer.from(name).toString('base64')}`;
    const headers: Record<string, string> = { ...TUS, 'Upload-Length': String(finishWith?.length ?? 10), 'Upload-Metadata': meta, Authorization: `Bearer ${token}` };
    if (finishWith) headers['Content-Type'] = OCTET;
    const res = await fetch(`${tusk.url}/files/`, { method: 'POST', headers, body: finishWith ? bodyOf(finishWith) : undefined });
    expect(res.status).toBe(201);
    return (res.headers.get('location') ?? '').split('/').pop() as string;
  }

  beforeAll(async () => {
    const bucket = await createTestBucket('listing');
    prefix = uniqueRedisPrefix();
    tusk = await startTusk({ env: { ...tuskEnvForTests(bucket), REDIS_PREFIX: prefix, AUTH_JWT_SECRET: SECRET, SCAN_REQUIRED: 'false', RATE_LIMIT_CREATIONS_PER_MINUTE_USER: '0' } });
    redis = new Redis(testRedisUrl());
    [alice, bob] = await Promise.all([tokenFor('alice'), tokenFor('bob')]);
    // Alice: 5 uploads, the 2nd and 4th finished (status `uploaded`; no worker runs here).
    for (let i = 0; i < 5; i++) aliceIds.push(await create(alice, `a${i}.bin`, i % 2 === 1 ? Buffer.alloc(7, i) : undefined));
    await create(bob, 'b0.bin');
    await create(bob, 'b1.bin', Buffer.alloc(3));
  });
  afterAll(() => redis?.disconnect());

  test('newest first, paginated with a cursor until next_cursor is null; only the caller\'s own', async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res = await call(`/api/uploads?limit=2${cursor ? `&cursor=${cursor}` : ''}`, alice);
      expect(res.status).toBe(200);
      expect(res.headers.get('cache-control')).toBe('no-store');
      const page = res.json as Listing;
      expect(page.uploads.length).toBeLessThanOrEqual(2);
      seen.push(...page.uploads.map((u) => u.upload_id));
      cursor = page.next_cursor;
      pages++;
    } while (cursor && pages < 10);
    expect(seen).toEqual([...aliceIds].reverse());
    expect(pages).toBe(3);
    const all = (await call('/api/uploads', bob)).json as Listing;
    expect(all.uploads.map((u) => u.filename)).toEqual(['b1.bin', 'b0.bin']);
    expect(all.next_cursor).toBeNull();
    // A user with no uploads: an empty page, not a 404.
    const none = await call('/api/uploads', await tokenFor('carol'));
    expect(none.json).toEqual({ uploads: [], next_cursor: null });
  });

  test('each entry is the status document; filter by status', async () => {
    const all = (await call('/api/uploads', alice)).json as Listing;
    const single = (await call(`/api/uploads/${aliceIds[4]}`, alice)).json;
    expect(all.uploads[0]).toEqual(single);
    const finished = (await call('/api/uploads?status=uploaded', alice)).json as Listing;
    expect(finished.uploads.map((u) => u.upload_id)).toEqual([aliceIds[3], aliceIds[1]]);
    const both = (await call('/api/uploads?status=uploading,uploaded&limit=100', alice)).json as Listing;
    expect(both.uploads).toHaveLength(5);
    const paged = (await call('/api/uploads?status=uploaded&limit=1', alice)).json as Listing;
    expect(paged.uploads.map((u) => u.upload_id)).toEqual([aliceIds[3]]);
    const rest = (await call(`/api/uploads?status=uploaded&limit=1&cursor=${paged.next_cursor}`, alice)).json as Listing;
    expect(rest.uploads.map((u) => u.upload_id)).toEqual([aliceIds[1]]);
    expect((await call('/api/uploads?status=ready', alice)).json).toEqual({ uploads: [], next_cursor: null });
  });

  test('a deleted upload leaves the listing; one whose record vanished is dropped from the index', async () => {
    const id = await create(alice, 'gone.bin');
    expect(((await call('/api/uploads?limit=1', alice)).json as Listing).uploads[0]?.upload_id).toBe(id);
    const del = await fetch(`${tusk.url}/files/${id}`, { method: 'DELETE', headers: { ...TUS, Authorization: `Bearer ${alice}` } });
    expect(del.status).toBe(204);
    expect(((await call('/api/uploads?limit=1', alice)).json as Listing).uploads[0]?.upload_id).toBe(aliceIds[4]);
    const keys = new RedisKeys(prefix);
    const lost = await create(alice, 'lost.bin');
    await redis.del(keys.record(lost)); // as when an unfinished upload's record expires
    expect(((await call('/api/uploads?limit=1', alice)).json as Listing).uploads[0]?.upload_id).toBe(aliceIds[4]);
    expect(await redis.zscore(keys.userUploads('alice'), lost)).toBeNull();
    expect(await redis.zscore(keys.userUploads('alice'), aliceIds[4] as string)).not.toBeNull();
  });

  test('uploads made before the listing existed are indexed once at start-up, with their owners', async () => {
    const old = uniqueRedisPrefix();
    const keys = new RedisKeys(old);
    const store = new RecordStore(redis, old);
    const ids = ['1'.repeat(32), '2'.repeat(32), '3'.repeat(32), '4'.repeat(32)];
    const at = (i: number) => new Date(Date.UTC(2026, 0, 1 + i)).toISOString();
    // Two of Alice's, one of Bob's; the fourth has an owner but no record (gone): not listed.
    for (const [i, [id, owner]] of ([[ids[0], 'alice'], [ids[1], 'alice'], [ids[2], 'bob'], [ids[3], 'alice']] as Array<[string, string]>).entries()) {
      await redis.set(keys.owner(id), owner);
      if (i < 3) await store.create({ upload_id: id, filename: `old${i}.bin`, size: 1, content_type: null, created_at: at(i) }, 'uploaded');
    }
    const bucket = await createTestBucket('listing-old');
    const later = await startTusk({ env: { ...tuskEnvForTests(bucket), REDIS_PREFIX: old, AUTH_JWT_SECRET: SECRET, SCAN_REQUIRED: 'false' } });
    try {
      let page: Listing | undefined;
      for (let i = 0; i < 50; i++) {
        const res = await fetch(`${later.url}/api/uploads`, { headers: { Authorization: `Bearer ${alice}` } });
        page = (await res.json()) as Listing;
        if (page.uploads.length >= 2) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(page?.uploads.map((u) => u.upload_id)).toEqual([ids[1], ids[0]]);
      const bobs = (await (await fetch(`${later.url}/api/uploads`, { headers: { Authorization: `Bearer ${bob}` } })).json()) as Listing;
      expect(bobs.uploads.map((u) => u.upload_id)).toEqual([ids[2]]);
      expect(await redis.exists(keys.userUploadsIndexed)).toBe(1);
    } finally {
      await later.kill();
    }
  });

  test('hostile input: bad limit, status, cursor or parameters are 400 invalid_request; no token 401', async () => {
    const bobFirst = ((await call('/api/uploads', bob)).json as Listing).uploads[0]?.upload_id as string;
    const bobScore = await redis.zscore(new RedisKeys(prefix).userUploads('bob'), bobFirst);
    const forged = Buffer.from(`${Number(bobScore) + 1}.${bobFirst}`).toString('base64url');
    // A cursor is only a position: one made from Bob's upload still lists Alice's own uploads.
    const viaForged = (await call(`/api/uploads?cursor=${forged}&limit=100`, alice)).json as Listing;
    expect(viaForged.uploads.every((u) => aliceIds.includes(u.upload_id))).toBe(true);
    for (const q of [
      'limit=0', 'limit=101', 'limit=-1', 'limit=1.5', 'limit=abc', 'limit=', 'limit=1e2', 'limit=99999999999999999999',
      'status=done', 'status=', 'status=ready,', 'status=READY', 'status=ready&status=failed',
      'cursor=', 'cursor=!!!', 'cursor=abc', `cursor=${Buffer.from('1.zz').toString('base64url')}`, `cursor=${'A'.repeat(5000)}`,
      `cursor=${Buffer.from(`12.${bobFirst.toUpperCase()}`).toString('base64url')}`,
      'user=bob', 'owner=bob', 'access_token=x', 'limit=1&limit=2',
    ]) {
      const res = await call(`/api/uploads?${q}`, alice);
      expect([q, res.status]).toEqual([q, 400]);
      expect(res.headers.get('tusk-error-code')).toBe('invalid_request');
      expect((res.json as { error: { code: string } }).error.code).toBe('invalid_request');
    }
    const anon = await call('/api/uploads');
    expect(anon.status).toBe(401);
    expect(anon.headers.get('www-authenticate')).toBe('Bearer');
    // The token is never taken from the query string here.
    expect((await call(`/api/uploads?access_token=${alice}`)).status).toBe(401);
    const bad = await call('/api/uploads', 'not-a-jwt');
    expect(bad.status).toBe(401);
    // Trailing slash, other methods, odd case: not the listing.
    expect((await call('/api/uploads/', alice)).status).toBe(404);
    expect((await call('/API/uploads', alice)).status).toBe(404);
    expect((await call('/api/uploads', alice, { method: 'POST' })).status).toBe(404);
    expect((await call('/api/uploads', alice, { method: 'DELETE' })).status).toBe(404);
  });
});
