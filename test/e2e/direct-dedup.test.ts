// Dedup of direct uploads (Dropbox pattern): the pipeline hashes the object while scanning it and
// indexes it per user when it is ready; an initiate with the same sha256 + size by the same user
// answers { deduplicated: true, upload_id } without URLs, and the new upload shares the object and
// outputs. Another user, or another hash, uploads normally. Real tusk (`all`), RGW, Redis, clamd.
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { createTestBucket, tuskEnvForTests } from '../helpers/services.js';
import { startTusk, type TuskProcess } from '../helpers/tusk-process.js';
import { sha256, waitFor } from '../helpers/tus.js';
import { makeJpeg, tempDir } from '../helpers/fixtures-media.js';
import { api, JWT_SECRET, putTo, tokenFor } from '../helpers/direct.js';

describe('dedup of direct uploads', () => {
  let tusk: TuskProcess;
  let dir = '';

  beforeAll(async () => {
    if (!process.env.TEST_CLAMD_SOCKET) throw new Error('TEST_CLAMD_SOCKET not set: clamd did not start in global setup');
    const bucket = await createTestBucket('direct-dedup');
    tusk = await startTusk({
      mode: 'all',
      env: { ...tuskEnvForTests(bucket), AUTH_JWT_SECRET: JWT_SECRET, CLAMD_SOCKET: process.env.TEST_CLAMD_SOCKET, STEP_BACKOFF: '500ms' },
    });
  });
  afterAll(async () => {
    await tusk?.kill();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('same user, same sha256 and size: deduplicated, sharing the ready outputs; others upload normally', async () => {
    dir = await tempDir('tusk-dedup-');
    const file = await makeJpeg(path.join(dir, 'a.jpg'), 320, 240);
    const data = await readFile(file);
    const hash = sha256(data);
    const alice = await tokenFor('alice');
    const body = { filename: 'a.jpg', filesize: data.length, content_type: 'image/jpeg', sha256: hash };

    // Nothing indexed yet: a normal upload even with the hash.
    const init = await api(tusk.url, 'POST', '/api/uploads/initiate', alice, body);
    expect(init.status).toBe(201);
    const first = init.body.upload_id as string;
    expect((await putTo(init.body.upload_urls[0], data)).status).toBe(200);
    expect((await api(tusk.url, 'POST', `/api/uploads/${first}/complete`, alice, {})).status).toBe(202);
    let ready: { status?: string; outputs: { thumbnails: Array<{ width: number }> } } | undefined;
    await waitFor(
      'the first upload to be ready',
      async () => {
        ready = (await api(tusk.url, 'GET', `/api/uploads/${first}`, alice)).body;
        return ready?.status === 'ready' || ready?.status === 'rejected' || ready?.status === 'failed';
      },
      60_000,
    );
    expect(ready!.status).toBe('ready');
    expect(ready!.outputs.thumbnails.length).toBeGreaterThan(0);

    const dup = await api(tusk.url, 'POST', '/api/uploads/initiate', alice, { ...body, filename: 'again.jpg' });
    expect(dup.status).toBe(200);
    expect(dup.body).toEqual({ deduplicated: true, upload_id: expect.stringMatching(/^[a-f0-9]{32}$/) });
    expect(dup.body.upload_id).not.toBe(first);
    const doc = await api(tusk.url, 'GET', `/api/uploads/${dup.body.upload_id}`, alice);
    expect(doc.status).toBe(200);
    expect(doc.body).toMatchObject({ upload_id: dup.body.upload_id, status: 'ready', filename: 'again.jpg', size: data.length });
    expect(doc.body.outputs.thumbnails.map((t: { width: number }) => t.width)).toEqual(ready!.outputs.thumbnails.map((t: { width: number }) => t.width));
    // Completing it is a no-op that returns the same document.
    expect((await api(tusk.url, 'POST', `/api/uploads/${dup.body.upload_id}/complete`, alice, {})).status).toBe(202);

    // Per user: bob with the same hash gets URLs. A different hash: URLs too.
    const bob = await api(tusk.url, 'POST', '/api/uploads/initiate', await tokenFor('bob'), body);
    expect(bob.status).toBe(201);
    expect(bob.body.upload_urls).toHaveLength(1);
    const other = await api(tusk.url, 'POST', '/api/uploads/initiate', alice, { ...body, sha256: 'f'.repeat(64) });
    expect(other.status).toBe(201);
    expect(other.body.deduplicated).toBeUndefined();
  });
});
