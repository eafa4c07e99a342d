// Abandoned direct-to-storage sessions: the worker's maintenance job aborts expired sessions
// (parts freed, reservation released, session expired) and orphaned multipart uploads under
// direct/ that no session owns. Real tusk in `all` mode, UPLOAD_EXPIRY 2 s, CLEANUP_INTERVAL 1 s.
import { randomBytes } from 'node:crypto';
import { CreateMultipartUploadCommand, ListMultipartUploadsCommand, UploadPartCommand } from '@aws-sdk/client-s3';
import { createTestBucket, s3ClientForTests, testRedisUrl, tuskEnvForTests } from '../helpers/services.js';
import { startTusk, type TuskProcess } from '../helpers/tusk-process.js';
import { processUploadJobs, waitFor } from '../helpers/tus.js';
import { api, JWT_SECRET, putTo, tokenFor } from '../helpers/direct.js';

const MiB = 1024 * 1024;

describe('cleanup of abandoned direct uploads', () => {
  let tusk: TuskProcess;
  let bucket = '';
  let prefix = '';

  beforeAll(async () => {
    bucket = await createTestBucket('direct-cleanup');
    const env = tuskEnvForTests(bucket);
    prefix = env.REDIS_PREFIX!;
    tusk = await startTusk({
      mode: 'all',
      env: {
        ...env,
        AUTH_JWT_SECRET: JWT_SECRET,
        UPLOAD_EXPIRY: '2s',
        CLEANUP_INTERVAL: '1s',
        QUOTA_BYTES: '30MiB',
        SINGLE_PUT_MAX: '5MiB',
        SCAN_REQUIRED: 'false',
        ALLOWED_TYPES: 'video/*',
      },
    });
  });
  afterAll(async () => {
    await tusk?.kill();
  });

  test('an expired session and an orphaned multipart upload are aborted; the reservation is freed', async () => {
    const s3 = s3ClientForTests();
    try {
      const token = await tokenFor('erin');
      const init = await api(tusk.url, 'POST', '/api/uploads/initiate', token, { filename: 'v.mp4', filesize: 25 * MiB, content_type: 'video/mp4' });
      expect(init.status).toBe(201);
      const id = init.body.upload_id as string;
      expect((await putTo(init.body.upload_urls[0], randomBytes(10 * MiB))).status).toBe(200);
      // The quota (30 MiB) is taken by the reservation while the session is open.
      const blocked = await api(tusk.url, 'POST', '/api/uploads/initiate', token, { filename: 'w.mp4', filesize: 25 * MiB, content_type: 'video/mp4' });
      expect(blocked.status).toBe(413);

      // An orphan: a multipart upload under direct/ that no session knows (e.g. a crash before saving it).
      const orphanKey = `direct/${randomBytes(16).toString('hex')}`;
      const orphan = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: orphanKey }));
      await s3.send(new UploadPartCommand({ Bucket: bucket, Key: orphanKey, UploadId: orphan.UploadId, PartNumber: 1, Body: randomBytes(5 * MiB) }));

      await waitFor(
        'the cleanup to abort both multipart uploads',
        async () => ((await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: 'direct/' }))).Uploads ?? []).length === 0,
        30_000,
      );
      const parts = await api(tusk.url, 'GET', `/api/uploads/${id}/parts`, token);
      expect(parts.status).toBe(410);
      expect(parts.body.error.code).toBe('expired');
      expect((await api(tusk.url, 'POST', `/api/uploads/${id}/complete`, token, {})).status).toBe(410);
      // The reservation was released: the same upload fits again.
      const again = await api(tusk.url, 'POST', '/api/uploads/initiate', token, { filename: 'w.mp4', filesize: 25 * MiB, content_type: 'video/mp4' });
      expect(again.status).toBe(201);
      await waitFor('the cleanup log line', () => /abandoned sessions cleaned up/.test(tusk.output()), 10_000);
      expect(tusk.output()).toMatch(/"expired":1/);
      expect(tusk.output()).toMatch(/"orphans":1/);
      expect(tusk.output()).toMatch(/"bytesFreed":[1-9]\d{6,}/); // the 10 MiB part and the orphan's 5 MiB
    } finally {
      s3.destroy();
    }
  });

  test("Uppy's single PUT (/s3/params, no completion call) is completed once its object arrived", async () => {
    const token = await tokenFor('frank');
    const data = randomBytes(100_000);
    const params = new URLSearchParams({ filename: 'clip.mp4', type: 'video/mp4', 'metadata[size]': String(data.length) });
    const res = await api(tusk.url, 'GET', `/s3/params?${params}`, token);
    expect(res.status).toBe(200);
    expect((await putTo(res.body.url, data)).status).toBe(200);
    const id = res.body.upload_id as string;
    await waitFor(
      'the worker to complete the arrived PUT and queue its processing',
      async () => (await processUploadJobs(testRedisUrl(), prefix)).some((j) => j.data.uploadId === id),
      10_000,
    );
    const status = await api(tusk.url, 'GET', `/api/uploads/${id}`, token);
    expect(status.status).toBe(200);
    expect(status.body.status).not.toBe('uploading');
    // The run's summary line is logged after the completion it counts: wait for it, do not race it.
    await waitFor('the cleanup summary counting the completed PUT', () => /"completed":1/.test(tusk.output()), 10_000);
  });
});
