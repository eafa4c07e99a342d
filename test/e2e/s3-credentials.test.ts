// Presigned URLs come from the SDK with the SDK's credential chain: with no static keys configured
// (S3_ACCESS_KEY_ID unset) and credentials only in a shared credentials file, the URLs in the status
// API are signed with those credentials and work. A real tusk (server + workers) on the test S3.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { createTestBucket, testS3Settings, tuskEnvForTests } from '../helpers/services.js';
import { startTusk, type TuskProcess } from '../helpers/tusk-process.js';
import { OCTET, TUS, rawRequest, waitFor } from '../helpers/tus.js';
import type { StatusDoc } from '../helpers/pipeline.js';

let tusk: TuskProcess;
let dir: string;

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tusk-credentials-'));
  const s3 = testS3Settings();
  const credentials = path.join(dir, 'credentials');
  await fs.writeFile(credentials, `[default]\naws_access_key_id = ${s3.accessKeyId}\naws_secret_access_key = ${s3.secretAccessKey}\n`);
  const bucket = await createTestBucket('credentials');
  tusk = await startTusk({
    mode: 'all',
    env: {
      ...tuskEnvForTests(bucket),
      S3_ACCESS_KEY_ID: undefined,
      S3_SECRET_ACCESS_KEY: undefined,
      AWS_SHARED_CREDENTIALS_FILE: credentials,
      AWS_CONFIG_FILE: path.join(dir, 'no-config'),
      AWS_EC2_METADATA_DISABLED: 'true',
      SCAN_REQUIRED: 'false',
      THUMBNAIL_WIDTHS: '160',
      THUMBNAIL_FORMATS: 'webp',
    },
  });
});
afterAll(async () => {
  await tusk?.kill();
  await fs.rm(dir, { recursive: true, force: true });
});

test('status URLs are signed with credentials from a shared credentials file, and work', async () => {
  const jpeg = await sharp({ create: { width: 320, height: 240, channels: 3, background: '#a83' } }).jpeg().toBuffer();
  const meta = `filename ${Buffer.from('p.jpg').toString('base64')},filetype ${Buffer.from('image/jpeg').toString('base64')}`;
  const created = await rawRequest(tusk.url, { method: 'POST', path: '/files/', headers: { ...TUS, 'Upload-Length': String(jpeg.length), 'Upload-Metadata': meta, 'Content-Type': OCTET }, body: jpeg });
  expect(created.status).toBe(201);
  const id = String(created.headers.location).split('/').pop()!;
  let doc: StatusDoc | undefined;
  await waitFor(
    'the upload to be ready',
    async () => {
      doc = JSON.parse((await rawRequest(tusk.url, { method: 'GET', path: `/api/uploads/${id}` })).body) as StatusDoc;
      return doc.status === 'ready';
    },
    60_000,
  );
  const url = new URL(doc!.outputs.thumbnails[0]!.url);
  expect(url.searchParams.get('X-Amz-Credential')).toMatch(new RegExp(`^${testS3Settings().accessKeyId}/`));
  const thumb = await fetch(url);
  expect(thumb.status).toBe(200);
  expect((await sharp(Buffer.from(await thumb.arrayBuffer())).metadata()).format).toBe('webp');
});
