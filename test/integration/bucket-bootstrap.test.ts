// Bucket bootstrap and the readiness check against a real S3 (the Ceph RGW started for the test run).
import {
  DeleteBucketCommand,
  GetBucketCorsCommand,
  GetBucketLifecycleConfigurationCommand,
  HeadBucketCommand,
  PutBucketCorsCommand,
  PutBucketLifecycleConfigurationCommand,
  type LifecycleRule,
  type S3Client,
} from '@aws-sdk/client-s3';
import net from 'node:net';
import { pino } from 'pino';
import { BucketNotReadableError, bootstrapBucket, checkBucketReadable, CORS_EXPOSE_HEADERS, LIFECYCLE_RULE_IDS } from '../../minio/bootstrap.js';
import { createS3Client, type S3ConnectionConfig } from '../../lib/s3.js';

function requiredEnv(name: string): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(
      `${name} is not set. This test needs a real S3: the test infrastructure (test/infra/global-setup.ts) starts Ceph RGW and sets ` +
        'TEST_S3_ENDPOINT, TEST_S3_ACCESS_KEY_ID, TEST_S3_SECRET_ACCESS_KEY and TEST_S3_REGION.',
    );
  }
  return value;
}

const conn: S3ConnectionConfig = {
  endpoint: requiredEnv('TEST_S3_ENDPOINT'),
  accessKeyId: requiredEnv('TEST_S3_ACCESS_KEY_ID'),
  secretAccessKey: requiredEnv('TEST_S3_SECRET_ACCESS_KEY'),
  region: requiredEnv('TEST_S3_REGION'),
  forcePathStyle: true,
};
const DAYS = 3;
const ORIGINS = ['https://app.example.com', 'http://localhost:3000'];

const client = createS3Client(conn);
const buckets: string[] = [];
function newBucketName(tag: string): string {
  const name = `tusk-boot-${tag}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  buckets.push(name);
  return name;
}

interface LogLine {
  level: number;
  msg: string;
  rule?: string;
}
function captureLogger() {
  const lines: LogLine[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  return { logger, lines, warnings: () => lines.filter((l) => l.level === 40) };
}

/**
 * The real client, with S3 errors injected for some commands or answers altered (to act like
 * servers that lack a feature).
 */
function faultyClient(
  real: S3Client,
  inject: (command: unknown) => Error | undefined,
  alter: (command: unknown, output: unknown) => unknown = (_c, output) => output,
): S3Client {
  return new Proxy(real, {
    get(target, prop, receiver) {
      if (prop !== 'send') return Reflect.get(target, prop, receiver) as unknown;
      return async (command: Parameters<S3Client['send']>[0], options?: Parameters<S3Client['send']>[1]) => {
        const err = inject(command);
        if (err) throw err;
        return alter(command, await target.send(command, options));
      };
    },
  });
}
function s3Error(code: string, status: number): Error {
  return Object.assign(new Error(code), { name: code, Code: code, $metadata: { httpStatusCode: status } });
}

async function lifecycleRules(bucket: string): Promise<LifecycleRule[]> {
  return (await client.send(new GetBucketLifecycleConfigurationCommand({ Bucket: bucket }))).Rules ?? [];
}

afterAll(async () => {
  for (const bucket of buckets) {
    await client.send(new DeleteBucketCommand({ Bucket: bucket })).catch(() => undefined);
  }
  client.destroy();
});

describe('bootstrapBucket', () => {
  it('creates a missing bucket with CORS and lifecycle rules, and reports what it applied', async () => {
    const bucket = newBucketName('new');
    const { logger } = captureLogger();
    const summary = await bootstrapBucket(client, { bucket, corsOrigins: ORIGINS, abortIncompleteAfterDays: DAYS, logger });

    expect(summary.bucket).toBe(bucket);
    expect(summary.created).toBe(true);
    await expect(client.send(new HeadBucketCommand({ Bucket: bucket }))).resolves.toBeDefined();

    expect(summary.cors.applied).toBe(true);
    const cors = await client.send(new GetBucketCorsCommand({ Bucket: bucket }));
    expect(cors.CORSRules).toHaveLength(1);
    const rule = cors.CORSRules![0]!;
    expect(rule.AllowedOrigins?.sort()).toEqual([...ORIGINS].sort());
    expect(rule.AllowedMethods?.sort()).toEqual(['DELETE', 'GET', 'HEAD', 'POST', 'PUT']);
    expect(rule.AllowedHeaders).toEqual(['*']);
    const exposed = (rule.ExposeHeaders ?? []).map((h) => h.toLowerCase());
    for (const header of ['ETag', 'Location', 'Upload-Offset', 'Upload-Length', 'Upload-Metadata', 'Tus-Resumable', 'Upload-Expires']) {
      expect(exposed).toContain(header.toLowerCase());
    }
    expect(exposed).toHaveLength(CORS_EXPOSE_HEADERS.length);

    // Every tusk rule is either applied or reported as not applied, never both.
    const { applied, notApplied } = summary.lifecycle;
    expect([...applied, ...notApplied.map((n) => n.rule)].sort()).toEqual(Object.values(LIFECYCLE_RULE_IDS).sort());
    expect(applied).toContain(LIFECYCLE_RULE_IDS.abortIncompleteMultipart);

    const rules = await lifecycleRules(bucket);
    const abort = rules.find((r) => r.ID === LIFECYCLE_RULE_IDS.abortIncompleteMultipart);
    expect(abort?.Status).toBe('Enabled');
    expect(abort?.AbortIncompleteMultipartUpload?.DaysAfterInitiation).toBe(DAYS);
    const expire = rules.find((r) => r.ID === LIFECYCLE_RULE_IDS.expireIncompleteUploads);
    if (applied.includes(LIFECYCLE_RULE_IDS.expireIncompleteUploads)) {
      expect(expire?.Status).toBe('Enabled');
      expect(expire?.Expiration?.Days).toBe(DAYS);
      expect(expire?.Filter?.Tag).toEqual({ Key: 'Tus-Completed', Value: 'false' });
    } else {
      expect(expire).toBeUndefined();
    }
  });

  it('is idempotent: a second run changes nothing and duplicates no rule', async () => {
    const bucket = newBucketName('twice');
    const opts = { bucket, corsOrigins: '*' as const, abortIncompleteAfterDays: DAYS, logger: captureLogger().logger };
    const first = await bootstrapBucket(client, opts);
    const second = await bootstrapBucket(client, opts);
    expect(first.created).toBe(true);
    expect(second.created).toBe(false);
    expect(second.lifecycle).toEqual(first.lifecycle);
    expect(second.cors).toEqual(first.cors);

    const ids = (await lifecycleRules(bucket)).map((r) => r.ID).sort();
    expect(ids).toEqual([...first.lifecycle.applied].sort());
    const cors = await client.send(new GetBucketCorsCommand({ Bucket: bucket }));
    expect(cors.CORSRules).toHaveLength(1);
    expect(cors.CORSRules![0]!.AllowedOrigins).toEqual(['*']);
  });

  it('keeps lifecycle rules that tusk did not make, and updates its own', async () => {
    const bucket = newBucketName('others');
    const logger = captureLogger().logger;
    await bootstrapBucket(client, { bucket, corsOrigins: '*', abortIncompleteAfterDays: DAYS, logger });
    const current = await lifecycleRules(bucket);
    const foreign: LifecycleRule = { ID: 'operator-tmp', Status: 'Enabled', Filter: { Prefix: 'tmp/' }, Expiration: { Days: 30 } };
    await client.send(new PutBucketLifecycleConfigurationCommand({ Bucket: bucket, LifecycleConfiguration: { Rules: [...current, foreign] } }));

    const summary = await bootstrapBucket(client, { bucket, corsOrigins: '*', abortIncompleteAfterDays: DAYS + 1, logger });
    const rules = await lifecycleRules(bucket);
    expect(rules.find((r) => r.ID === 'operator-tmp')?.Expiration?.Days).toBe(30);
    expect(rules.find((r) => r.ID === LIFECYCLE_RULE_IDS.abortIncompleteMultipart)?.AbortIncompleteMultipartUpload?.DaysAfterInitiation).toBe(DAYS + 1);
    expect(rules).toHaveLength(1 + summary.lifecycle.applied.length);
  });

  it('warns and carries on when the server rejects the tag-filtered rule', async () => {
    const bucket = newBucketName('notag');
    const rejectTagFilters = faultyClient(client, (cmd) =>
      cmd instanceof PutBucketLifecycleConfigurationCommand && cmd.input.LifecycleConfiguration?.Rules?.some((r) => r.Filter?.Tag)
        ? s3Error('MalformedXML', 400)
        : undefined,
    );
    const { logger, warnings } = captureLogger();
    const summary = await bootstrapBucket(rejectTagFilters, { bucket, corsOrigins: '*', abortIncompleteAfterDays: DAYS, logger });

    expect(summary.lifecycle.applied).toEqual([LIFECYCLE_RULE_IDS.abortIncompleteMultipart]);
    expect(summary.lifecycle.notApplied).toEqual([{ rule: LIFECYCLE_RULE_IDS.expireIncompleteUploads, reason: expect.stringContaining('MalformedXML') }]);
    expect(warnings().some((w) => w.rule === LIFECYCLE_RULE_IDS.expireIncompleteUploads && w.msg.includes('not applied'))).toBe(true);
    expect((await lifecycleRules(bucket)).map((r) => r.ID)).toEqual([LIFECYCLE_RULE_IDS.abortIncompleteMultipart]);
  });

  it('reports a rule the server accepted but did not store (recent MinIO drops AbortIncompleteMultipartUpload)', async () => {
    const bucket = newBucketName('dropped');
    const dropsAbort = faultyClient(
      client,
      () => undefined,
      (cmd, output) => {
        if (!(cmd instanceof GetBucketLifecycleConfigurationCommand)) return output;
        const rules = (output as { Rules?: LifecycleRule[] }).Rules ?? [];
        return { ...(output as object), Rules: rules.map(({ AbortIncompleteMultipartUpload: _dropped, ...rule }) => rule) };
      },
    );
    const { logger, warnings } = captureLogger();
    const summary = await bootstrapBucket(dropsAbort, { bucket, corsOrigins: '*', abortIncompleteAfterDays: DAYS, logger });
    expect(summary.lifecycle.applied).not.toContain(LIFECYCLE_RULE_IDS.abortIncompleteMultipart);
    expect(summary.lifecycle.notApplied).toContainEqual({ rule: LIFECYCLE_RULE_IDS.abortIncompleteMultipart, reason: expect.stringContaining('not stored as sent') });
    expect(warnings().some((w) => w.rule === LIFECYCLE_RULE_IDS.abortIncompleteMultipart)).toBe(true);
  });

  it('tolerates a server without per-bucket CORS (community MinIO: NotImplemented)', async () => {
    const bucket = newBucketName('nocors');
    const noCors = faultyClient(client, (cmd) => (cmd instanceof PutBucketCorsCommand ? s3Error('NotImplemented', 501) : undefined));
    const { logger, warnings } = captureLogger();
    const summary = await bootstrapBucket(noCors, { bucket, corsOrigins: '*', abortIncompleteAfterDays: DAYS, logger });
    expect(summary.cors).toEqual({ applied: false, reason: expect.stringContaining('NotImplemented') });
    expect(warnings().some((w) => w.msg.includes('CORS not applied'))).toBe(true);
  });

  it('throws when CORS rules cannot be set', async () => {
    const bucket = newBucketName('corsfail');
    const denied = faultyClient(client, (cmd) => (cmd instanceof PutBucketCorsCommand ? s3Error('AccessDenied', 403) : undefined));
    await expect(bootstrapBucket(denied, { bucket, corsOrigins: '*', abortIncompleteAfterDays: DAYS, logger: captureLogger().logger })).rejects.toThrow(
      `S3 bucket "${bucket}": cannot set CORS rules: AccessDenied (HTTP 403)`,
    );
  });

  it('throws when the bucket cannot be reached or created (wrong credentials)', async () => {
    const bad = createS3Client({ ...conn, secretAccessKey: 'not-the-secret' });
    try {
      const bucket = newBucketName('badcreds');
      await expect(bootstrapBucket(bad, { bucket, corsOrigins: '*', abortIncompleteAfterDays: DAYS, logger: captureLogger().logger })).rejects.toThrow(
        /S3 bucket "tusk-boot-badcreds-.*": cannot check whether it exists: .*HTTP 403/,
      );
      await expect(client.send(new HeadBucketCommand({ Bucket: bucket }))).rejects.toMatchObject({ $metadata: { httpStatusCode: 404 } });
    } finally {
      bad.destroy();
    }
  });
});

describe('checkBucketReadable', () => {
  let bucket: string;
  beforeAll(async () => {
    bucket = newBucketName('ready');
    await bootstrapBucket(client, { bucket, corsOrigins: '*', abortIncompleteAfterDays: DAYS, logger: captureLogger().logger });
  });

  it('is true for an existing bucket', async () => {
    await expect(checkBucketReadable(client, bucket)).resolves.toBe(true);
  });

  it('throws a clear error for a missing bucket', async () => {
    const missing = `tusk-boot-missing-${Date.now().toString(36)}`;
    const err = await checkBucketReadable(client, missing).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BucketNotReadableError);
    expect(err).toMatchObject({ reason: 'not-found', bucket: missing });
    expect((err as Error).message).toBe(`S3 bucket "${missing}" is not readable: the bucket does not exist (HTTP 404)`);
  });

  it('throws a clear error for wrong credentials', async () => {
    const bad = createS3Client({ ...conn, accessKeyId: 'nobody', secretAccessKey: 'wrong' });
    try {
      const err = await checkBucketReadable(bad, bucket).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BucketNotReadableError);
      expect(err).toMatchObject({ reason: 'access-denied' });
      expect((err as Error).message).toMatch(/is not readable: access denied \(HTTP 403\): wrong credentials/);
    } finally {
      bad.destroy();
    }
  });

  it('throws a clear error when S3 is unreachable', async () => {
    const nowhere = createS3Client({ ...conn, endpoint: 'http://127.0.0.1:9' });
    try {
      const err = await checkBucketReadable(nowhere, bucket).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BucketNotReadableError);
      expect(err).toMatchObject({ reason: 'unreachable' });
      expect((err as Error).message).toMatch(new RegExp(`^S3 bucket "${bucket}" is not readable: cannot reach S3: .*connect ECONNREFUSED 127\\.0\\.0\\.1:9$`));
    } finally {
      nowhere.destroy();
    }
  });

  it('throws a clear error when S3 accepts the connection but never answers', async () => {
    const silent = net.createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as net.AddressInfo;
    const stuck = createS3Client({ ...conn, endpoint: `http://127.0.0.1:${port}` });
    try {
      const err = await checkBucketReadable(stuck, bucket, { timeoutMs: 300 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BucketNotReadableError);
      expect(err).toMatchObject({ reason: 'timeout' });
      expect((err as Error).message).toBe(`S3 bucket "${bucket}" is not readable: no answer from S3 within 300 ms`);
    } finally {
      stuck.destroy();
      silent.close();
    }
  });
});
