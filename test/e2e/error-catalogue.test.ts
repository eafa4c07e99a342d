// One refusal, one answer: over quota, not found, expired and unauthenticated give the same code
// (Tusk-Error-Code, and the JSON body's code) and the same status on the tus endpoint, the direct
// API and the Companion-compatible routes (lib/errors.ts). A real tusk server on the test S3.
import { createTestBucket, tuskEnvForTests } from '../helpers/services.js';
import { startTusk, type TuskProcess } from '../helpers/tusk-process.js';
import { api, JWT_SECRET, tokenFor } from '../helpers/direct.js';
import { OCTET, TUS, rawRequest, sleep } from '../helpers/tus.js';

const MiB = 1024 * 1024;
const QUOTA = 20 * MiB;
const EXPIRY_MS = 3000;

let tusk: TuskProcess;
let token: string;

interface Answer {
  face: string;
  status: number;
  code: string | undefined;
}

const tusAnswer = (res: { status: number; headers: Record<string, string | string[] | undefined> }): Answer => ({
  face: 'tus',
  status: res.status,
  code: res.headers['tusk-error-code'] as string | undefined,
});

async function jsonAnswer(face: string, method: string, path: string, auth: string | undefined, body?: unknown): Promise<Answer> {
  const res = await api(tusk.url, method, path, auth, body);
  const code = res.headers.get('tusk-error-code') ?? undefined;
  // The JSON body names the same code as the header.
  expect([face, res.body?.error?.code]).toEqual([face, code]);
  return { face, status: res.status, code };
}

/** All faces gave the same status and code, and it is `expected`. */
function expectSame(answers: Answer[], expected: { status: number; code: string }): void {
  expect(answers).toEqual(answers.map((a) => ({ face: a.face, ...expected })));
}

beforeAll(async () => {
  const bucket = await createTestBucket('catalogue');
  tusk = await startTusk({
    env: { ...tuskEnvForTests(bucket), AUTH_JWT_SECRET: JWT_SECRET, QUOTA_BYTES: String(QUOTA), UPLOAD_EXPIRY: `${EXPIRY_MS / 1000}s`, SCAN_REQUIRED: 'false', ALLOWED_TYPES: 'video/*' },
  });
  token = await tokenFor('catalogue-user');
});
afterAll(async () => {
  await tusk?.kill();
});

test('unauthenticated: 401 unauthorized on every face', async () => {
  const answers = [
    tusAnswer(await rawRequest(tusk.url, { method: 'POST', path: '/files/', headers: { ...TUS, 'Upload-Length': '10' } })),
    await jsonAnswer('api', 'POST', '/api/uploads/initiate', undefined, { filename: 'a.mp4', filesize: 10, content_type: 'video/mp4' }),
    await jsonAnswer('companion', 'POST', '/s3/multipart', undefined, { filename: 'a.mp4', type: 'video/mp4', metadata: { size: 10 } }),
    await jsonAnswer('status', 'GET', `/api/uploads/${'0'.repeat(32)}`, undefined),
  ];
  expectSame(answers, { status: 401, code: 'unauthorized' });
});

test('not found: 404 not_found on every face', async () => {
  const unknown = 'f'.repeat(32);
  const answers = [
    tusAnswer(await rawRequest(tusk.url, { method: 'HEAD', path: `/files/${unknown}`, headers: { ...TUS, Authorization: `Bearer ${token}` } })),
    await jsonAnswer('api', 'GET', `/api/uploads/${unknown}/parts`, token),
    await jsonAnswer('companion', 'GET', `/s3/multipart/x?key=direct/${unknown}`, token),
    await jsonAnswer('status', 'GET', `/api/uploads/${unknown}`, token),
  ];
  expectSame(answers, { status: 404, code: 'not_found' });
});

test('over the quota: 413 quota_exceeded on every face', async () => {
  const size = QUOTA + 1;
  const answers = [
    tusAnswer(await rawRequest(tusk.url, { method: 'POST', path: '/files/', headers: { ...TUS, Authorization: `Bearer ${token}`, 'Upload-Length': String(size) } })),
    await jsonAnswer('api', 'POST', '/api/uploads/initiate', token, { filename: 'a.mp4', filesize: size, content_type: 'video/mp4' }),
    await jsonAnswer('companion', 'POST', '/s3/multipart', token, { filename: 'a.mp4', type: 'video/mp4', metadata: { size } }),
  ];
  expectSame(answers, { status: 413, code: 'quota_exceeded' });
});

test('expired: 410 expired on every face', async () => {
  const created = await rawRequest(tusk.url, { method: 'POST', path: '/files/', headers: { ...TUS, Authorization: `Bearer ${token}`, 'Upload-Length': '10' } });
  const tusId = String(created.headers.location).split('/').pop()!;
  const initiated = await api(tusk.url, 'POST', '/api/uploads/initiate', token, { filename: 'a.mp4', filesize: 6 * MiB, content_type: 'video/mp4' });
  const companion = await api(tusk.url, 'POST', '/s3/multipart', token, { filename: 'b.mp4', type: 'video/mp4', metadata: { size: 6 * MiB } });
  expect([created.status, initiated.status, companion.status]).toEqual([201, 201, 200]);
  await sleep(EXPIRY_MS + 500);
  const answers = [
    tusAnswer(
      await rawRequest(tusk.url, {
        method: 'PATCH',
        path: `/files/${tusId}`,
        headers: { ...TUS, Authorization: `Bearer ${token}`, 'Content-Type': OCTET, 'Upload-Offset': '0' },
        body: Buffer.from('0123456789'),
      }),
    ),
    await jsonAnswer('api', 'POST', `/api/uploads/${initiated.body.upload_id}/complete`, token, {}),
    await jsonAnswer('companion', 'GET', `/s3/multipart/${encodeURIComponent(companion.body.uploadId)}/1?key=${encodeURIComponent(companion.body.key)}`, token),
  ];
  expectSame(answers, { status: 410, code: 'expired' });
});
