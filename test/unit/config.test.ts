// Configuration: the pure parsing and defaults (config/index.ts imported directly). That the real
// process refuses to start with a bad value is test/e2e/config-startup.test.ts.
import path from 'node:path';
import { ConfigError, loadConfig, parseByteSize, parseDuration } from '../../config/index.js';

const MiB = 1024 * 1024;

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
}

describe('parseByteSize', () => {
  test.each([
    ['52428800', 52428800],
    ['0', 0],
    ['50MiB', 50 * MiB],
    ['50 MiB', 50 * MiB],
    ['5GiB', 5 * 1024 * MiB],
    ['1.5GB', 1.5e9],
    ['10k', 10_000],
    ['10KiB', 10 * 1024],
    ['8mib', 8 * MiB],
  ])('%s → %d', (raw, bytes) => {
    expect(parseByteSize(raw)).toBe(bytes);
  });

  test.each(['lots', '', '-1', '1MiBs', '5 XB', '1e6', 'MiB'])('%j is not a size', (raw) => {
    expect(parseByteSize(raw)).toBeUndefined();
  });
});

describe('parseDuration', () => {
  test.each([
    ['86400', 86_400_000],
    ['90s', 90_000],
    ['15m', 900_000],
    ['24h', 86_400_000],
    ['7d', 7 * 86_400_000],
    ['250ms', 250],
    ['1.5s', 1500],
  ])('%s → %d ms', (raw, ms) => {
    expect(parseDuration(raw)).toBe(ms);
  });

  test.each(['soon', '', '-5s', '10 years', 's'])('%j is not a duration', (raw) => {
    expect(parseDuration(raw)).toBeUndefined();
  });
});

describe('loadConfig', () => {
  test('defaults with an empty environment: file storage, embedded Redis, documented limits', () => {
    const config = loadConfig({});
    expect(config).toEqual({
      port: 1080,
      host: '127.0.0.1',
      publicUrl: undefined,
      proxyTrust: expect.any(Function),
      storage: 'file',
      dataDir: path.resolve('./data'),
      s3: undefined,
      corsOrigins: '*',
      redisUrl: undefined,
      redisPrefix: 'tusk:',
      maxUploadSize: 50 * 1024 * MiB,
      checksumSpoolLimit: 2 * 1024 * MiB,
      uploadExpiryMs: 24 * 3_600_000,
      idleTimeoutMs: 60_000,
      lockAcquireTimeoutMs: 30_000,
      lockTtlMs: 30_000,
      shutdownTimeoutMs: 25_000,
      cleanupIntervalMs: 15 * 60_000,
      logLevel: 'info',
      pipeline: expect.objectContaining({ scanRequired: true }),
      access: expect.objectContaining({ quotaBytes: 0, maxConcurrentUploads: 0 }),
      direct: expect.objectContaining({ singlePutMax: 100 * MiB }),
      metrics: { enabled: true, port: undefined, token: undefined, onApiPort: true },
      webUi: { enabled: true, tokenCookie: undefined },
      urlSigningSecret: undefined,
    });
  });

  test('empty strings count as unset', () => {
    const config = loadConfig({ PORT: '', STORAGE: '', MAX_UPLOAD_SIZE: '', REDIS_URL: '' });
    expect(config.port).toBe(1080);
    expect(config.storage).toBe('file');
    expect(config.maxUploadSize).toBe(50 * 1024 * MiB);
    expect(config.redisUrl).toBeUndefined();
  });

  test('S3 is selected when S3_BUCKET or S3_ENDPOINT is set; S3 defaults', () => {
    const config = loadConfig({ S3_BUCKET: 'uploads', S3_ACCESS_KEY_ID: 'k', S3_SECRET_ACCESS_KEY: 's' });
    expect(config.storage).toBe('s3');
    expect(config.s3).toEqual({
      endpoint: undefined,
      region: 'us-east-1',
      bucket: 'uploads',
      accessKeyId: 'k',
      secretAccessKey: 's',
      forcePathStyle: true,
      partSize: 8 * MiB,
      maxConcurrentPartUploads: 16,
      bootstrap: false,
      abortIncompleteAfterDays: 7,
      ack: 'storage',
      buffer: { directory: path.resolve('data/upload-buffer'), maxBytes: 2048 * MiB, idleFlushMs: 10_000, peer: { host: '127.0.0.1', port: 0, url: undefined } },
      abandonBufferedAfterMs: 3_600_000,
    });
    expect(loadConfig({ S3_ENDPOINT: 'http://minio:9000/', S3_BUCKET: 'b-1' }).s3?.endpoint).toBe('http://minio:9000');
    // only the endpoint: S3 is chosen, and the missing bucket is reported
    expect(problemsOf({ S3_ENDPOINT: 'http://minio:9000' }).join('\n')).toMatch(/S3_BUCKET/);
  });

  test('UPLOAD_ACK=disk: the write buffer settings', () => {
    const s3 = loadConfig({ S3_BUCKET: 'b-1', DATA_DIR: '/srv/tusk', UPLOAD_ACK: 'disk', UPLOAD_BUFFER_MAX: '256MiB', UPLOAD_BUFFER_IDLE_FLUSH: '2s', UPLOAD_BUFFER_ABANDON_AFTER: '30m' }).s3;
    expect(s3).toMatchObject({ ack: 'disk', buffer: { directory: '/srv/tusk/upload-buffer', maxBytes: 256 * MiB, idleFlushMs: 2000 }, abandonBufferedAfterMs: 1_800_000 });
    expect(loadConfig({ S3_BUCKET: 'b-1', UPLOAD_ACK: 'disk', UPLOAD_BUFFER_DIR: '/fast/nvme' }).s3?.buffer.directory).toBe('/fast/nvme');
  });

  test('UPLOAD_ACK=disk: bodies for held uploads are forwarded by default, on HOST and any free port', () => {
    expect(loadConfig({ S3_BUCKET: 'b-1', UPLOAD_ACK: 'disk' }).s3?.buffer.peer).toEqual({ host: '127.0.0.1', port: 0, url: undefined });
    expect(loadConfig({ S3_BUCKET: 'b-1', UPLOAD_ACK: 'disk', HOST: '0.0.0.0', UPLOAD_BUFFER_PEER_PORT: '1081', UPLOAD_BUFFER_PEER_URL: 'http://tusk-2:1081/' }).s3?.buffer.peer).toEqual({
      host: '0.0.0.0',
      port: 1081,
      url: 'http://tusk-2:1081',
    });
    expect(loadConfig({ S3_BUCKET: 'b-1', UPLOAD_ACK: 'disk', UPLOAD_BUFFER_FORWARD: 'false' }).s3?.buffer.peer).toBeUndefined();
    expect(problemsOf({ S3_BUCKET: 'b-1', UPLOAD_BUFFER_PEER_URL: 'https://tusk-2:1081' }).join('\n')).toMatch(/^UPLOAD_BUFFER_PEER_URL: .*http:/m);
    expect(problemsOf({ S3_BUCKET: 'b-1', UPLOAD_BUFFER_PEER_PORT: '70000' }).join('\n')).toMatch(/^UPLOAD_BUFFER_PEER_PORT: /m);
  });

  test('STORAGE overrides the guess', () => {
    const file = loadConfig({ STORAGE: 'file', S3_BUCKET: 'uploads', DATA_DIR: '/srv/tusk' });
    expect(file.storage).toBe('file');
    expect(file.s3).toBeUndefined();
    expect(file.dataDir).toBe('/srv/tusk');
    expect(problemsOf({ STORAGE: 's3' })).toEqual([expect.stringMatching(/^S3_BUCKET/)]);
  });

  test('values are parsed: sizes, durations, lists, booleans, URLs', () => {
    const config = loadConfig({
      PORT: '8080',
      HOST: '0.0.0.0',
      PUBLIC_URL: 'https://up.example.com/',
      TRUST_PROXY: '2',
      MAX_UPLOAD_SIZE: '2GiB',
      UPLOAD_EXPIRY: '2h',
      IDLE_TIMEOUT: '90s',
      SHUTDOWN_TIMEOUT: '10',
      CORS_ORIGINS: 'https://a.example, https://b.example',
      REDIS_URL: 'redis://cache:6379/',
      REDIS_PREFIX: 'x:',
      S3_BUCKET: 'media.example',
      S3_PART_SIZE: '16MiB',
      S3_FORCE_PATH_STYLE: 'false',
      LOG_LEVEL: 'debug',
    });
    expect(config).toMatchObject({
      port: 8080,
      host: '0.0.0.0',
      publicUrl: 'https://up.example.com',
      maxUploadSize: 2 * 1024 * MiB,
      uploadExpiryMs: 2 * 3_600_000,
      idleTimeoutMs: 90_000,
      shutdownTimeoutMs: 10_000,
      corsOrigins: ['https://a.example', 'https://b.example'],
      redisUrl: 'redis://cache:6379',
      redisPrefix: 'x:',
      logLevel: 'debug',
    });
    expect(config.s3).toMatchObject({ bucket: 'media.example', partSize: 16 * MiB, forcePathStyle: false });
  });

  test.each<[string, Record<string, string>, RegExp]>([
    ['PORT=abc', { PORT: 'abc' }, /^PORT: .*"abc"/],
    ['PORT=70000', { PORT: '70000' }, /^PORT: /],
    ['STORAGE=ftp', { STORAGE: 'ftp' }, /^STORAGE: /],
    ['S3_PART_SIZE=1MiB', { S3_BUCKET: 'b-1', S3_PART_SIZE: '1MiB' }, /^S3_PART_SIZE: .*5MiB/],
    ['S3_PART_SIZE=6GiB', { S3_BUCKET: 'b-1', S3_PART_SIZE: '6GiB' }, /^S3_PART_SIZE: /],
    ['REDIS_URL=http://x', { REDIS_URL: 'http://x' }, /^REDIS_URL: .*redis:/],
    ['MAX_UPLOAD_SIZE=lots', { MAX_UPLOAD_SIZE: 'lots' }, /^MAX_UPLOAD_SIZE: .*"lots"/],
    ['MAX_UPLOAD_SIZE=0', { MAX_UPLOAD_SIZE: '0' }, /^MAX_UPLOAD_SIZE: /],
    ['UPLOAD_EXPIRY=soon', { UPLOAD_EXPIRY: 'soon' }, /^UPLOAD_EXPIRY: /],
    ['IDLE_TIMEOUT=500ms', { IDLE_TIMEOUT: '500ms' }, /^IDLE_TIMEOUT: /],
    ['TRUST_PROXY=maybe', { TRUST_PROXY: 'maybe' }, /^TRUST_PROXY: .*"maybe"/],
    ['TRUST_PROXY=true', { TRUST_PROXY: 'true' }, /^TRUST_PROXY: .*no longer accepted.*TRUST_PROXY=1/],
    ['TRUST_PROXY=yes', { TRUST_PROXY: 'yes' }, /^TRUST_PROXY: .*no longer accepted/],
    ['TRUST_PROXY=10.0.0.0/33', { TRUST_PROXY: '10.0.0.0/33' }, /^TRUST_PROXY: .*"10\.0\.0\.0\/33"/],
    ['TRUST_PROXY=loopback,10.0.0.256', { TRUST_PROXY: 'loopback, 10.0.0.256' }, /^TRUST_PROXY: "10\.0\.0\.256" is not/],
    ['TRUST_PROXY=010.0.0.1 (octal in proxy-addr)', { TRUST_PROXY: '010.0.0.1' }, /^TRUST_PROXY: "010\.0\.0\.1" is not/],
    ['TRUST_PROXY=1,2', { TRUST_PROXY: '1,2' }, /^TRUST_PROXY: "1", "2" is not/],
    ['TRUST_PROXY=11 (hops)', { TRUST_PROXY: '11' }, /^TRUST_PROXY: a hop count/],
    ['S3_BUCKET=Bad_Bucket', { S3_BUCKET: 'Bad_Bucket' }, /^S3_BUCKET: /],
    ['only S3_ACCESS_KEY_ID', { S3_BUCKET: 'b-1', S3_ACCESS_KEY_ID: 'k' }, /S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY/],
    ['LOG_LEVEL=loud', { LOG_LEVEL: 'loud' }, /^LOG_LEVEL: /],
    ['MAX_MEDIA_DURATION=forever', { MAX_MEDIA_DURATION: 'forever' }, /^MAX_MEDIA_DURATION: .*"forever"/],
    ['MAX_MEDIA_DURATION=500ms', { MAX_MEDIA_DURATION: '500ms' }, /^MAX_MEDIA_DURATION: .*1s/],
    ['MAX_VIDEO_PIXEL_FRAMES=0', { MAX_VIDEO_PIXEL_FRAMES: '0' }, /^MAX_VIDEO_PIXEL_FRAMES: /],
    ['MAX_VIDEO_PIXEL_FRAMES=lots', { MAX_VIDEO_PIXEL_FRAMES: 'lots' }, /^MAX_VIDEO_PIXEL_FRAMES: .*"lots"/],
    ['MIN_VIDEO_BITS_PER_PIXEL=-0.1', { MIN_VIDEO_BITS_PER_PIXEL: '-0.1' }, /^MIN_VIDEO_BITS_PER_PIXEL: .*from 0 to 1/],
    ['MIN_VIDEO_BITS_PER_PIXEL=low', { MIN_VIDEO_BITS_PER_PIXEL: 'low' }, /^MIN_VIDEO_BITS_PER_PIXEL: .*"low"/],
    ['REPROCESS_FORCE_AFTER=later', { REPROCESS_FORCE_AFTER: 'later' }, /^REPROCESS_FORCE_AFTER: /],
    ['UPLOAD_ACK=memory', { S3_BUCKET: 'b-1', UPLOAD_ACK: 'memory' }, /^UPLOAD_ACK: .*"storage" or "disk"/],
    ['UPLOAD_ACK=disk with file storage', { UPLOAD_ACK: 'disk' }, /^UPLOAD_ACK: .*S3/],
    ['UPLOAD_BUFFER_MAX below two parts', { S3_BUCKET: 'b-1', UPLOAD_ACK: 'disk', S3_PART_SIZE: '8MiB', UPLOAD_BUFFER_MAX: '15MiB' }, /^UPLOAD_BUFFER_MAX: .*twice S3_PART_SIZE/],
    ['UPLOAD_BUFFER_ABANDON_AFTER=10s', { S3_BUCKET: 'b-1', UPLOAD_BUFFER_ABANDON_AFTER: '10s' }, /^UPLOAD_BUFFER_ABANDON_AFTER: .*1m/],
    ['UPLOAD_BUFFER_IDLE_FLUSH=never', { S3_BUCKET: 'b-1', UPLOAD_BUFFER_IDLE_FLUSH: 'never' }, /^UPLOAD_BUFFER_IDLE_FLUSH: /],
  ])('rejects %s, naming the variable', (_label, env, message) => {
    const problems = problemsOf(env);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(message);
  });

  describe('TRUST_PROXY', () => {
    // proxyTrust(address, hop) is what express asks for each hop from the right (0 = the socket
    // peer): the first hop it does not trust is the client. The whole chain runs against real
    // tusk processes in test/e2e/trust-proxy.test.ts.
    test.each<[string, string | undefined, Array<[string, number, boolean]>]>([
      ['unset', undefined, [['127.0.0.1', 0, false]]],
      ['false', 'false', [['127.0.0.1', 0, false]]],
      ['0', '0', [['127.0.0.1', 0, false]]],
      ['1 (hops)', '1', [['127.0.0.1', 0, true], ['5.6.7.8', 1, false]]],
      ['2 (hops)', '2', [['127.0.0.1', 0, true], ['5.6.7.8', 1, true], ['1.2.3.4', 2, false]]],
      ['loopback', 'loopback', [['127.0.0.1', 0, true], ['::1', 0, true], ['5.6.7.8', 1, false]]],
      ['a list with CIDRs', '127.0.0.1, 10.0.0.0/8,fd00::/8', [['127.0.0.1', 0, true], ['10.9.8.7', 1, true], ['fd12::1', 1, true], ['5.6.7.8', 2, false], ['127.0.0.2', 0, false]]],
      ['uniquelocal (IPv4-mapped peers match)', 'uniquelocal', [['::ffff:10.1.2.3', 0, true], ['172.16.0.1', 1, true], ['8.8.8.8', 0, false]]],
    ])('%s', (_label, trustProxy, answers) => {
      const config = loadConfig(trustProxy === undefined ? {} : { TRUST_PROXY: trustProxy });
      expect(answers.map(([address, hop]) => [address, hop, config.proxyTrust(address, hop)])).toEqual(answers);
    });
  });

  test('bounds on audio/video work and on forced reprocessing: defaults and parsing', () => {
    expect(loadConfig({}).pipeline).toMatchObject({
      maxMediaDurationMs: 4 * 3_600_000,
      maxVideoPixelFrames: 1e12,
      minVideoBitsPerPixel: 0.00025,
      reprocessForceAfterMs: 60_000,
    });
    const p = loadConfig({ MAX_MEDIA_DURATION: '90m', MAX_VIDEO_PIXEL_FRAMES: '5e11', MIN_VIDEO_BITS_PER_PIXEL: '0', REPROCESS_FORCE_AFTER: '5m' }).pipeline;
    expect(p).toMatchObject({ maxMediaDurationMs: 90 * 60_000, maxVideoPixelFrames: 5e11, minVideoBitsPerPixel: 0, reprocessForceAfterMs: 300_000 });
  });

  test('metrics: the API port answers /metrics with a token, or without one only while it is private', () => {
    const token = 'a-metrics-token-of-32-characters';
    const onApiPort = (env: Record<string, string>) => loadConfig(env).metrics.onApiPort;
    expect(onApiPort({})).toBe(true);
    expect(onApiPort({ HOST: '127.0.0.2' })).toBe(true);
    expect(onApiPort({ HOST: '::1' })).toBe(true);
    // Reachable beyond this machine, directly or through a proxy: only with the token.
    expect(onApiPort({ HOST: '0.0.0.0' })).toBe(false);
    expect(onApiPort({ HOST: '10.0.0.5' })).toBe(false);
    expect(onApiPort({ TRUST_PROXY: '1' })).toBe(false);
    expect(onApiPort({ TRUST_PROXY: 'loopback' })).toBe(false);
    expect(onApiPort({ TRUST_PROXY: 'false' })).toBe(true);
    expect(onApiPort({ HOST: '0.0.0.0', METRICS_TOKEN: token })).toBe(true);
    // Its own listener instead; or none at all.
    expect(onApiPort({ METRICS_PORT: '9464', METRICS_TOKEN: token })).toBe(false);
    expect(onApiPort({ METRICS: 'false' })).toBe(false);
    expect(loadConfig({ METRICS_PORT: '9464', METRICS_TOKEN: token }).metrics).toEqual({ enabled: true, port: 9464, token, onApiPort: false });
    for (const bad of ['short', 'has a space in it, sixteen+', 'x'.repeat(257)]) expect(problemsOf({ METRICS_TOKEN: bad }).join('\n')).toMatch(/METRICS_TOKEN/);
    expect(problemsOf({ METRICS_PORT: '70000' }).join('\n')).toMatch(/METRICS_PORT/);
  });

  test('reports every bad variable at once', () => {
    const problems = problemsOf({ PORT: 'abc', STORAGE: 'ftp', MAX_UPLOAD_SIZE: 'lots' });
    expect(problems).toHaveLength(3);
    expect(problems.join('\n')).toMatch(/PORT/);
    expect(problems.join('\n')).toMatch(/STORAGE/);
    expect(problems.join('\n')).toMatch(/MAX_UPLOAD_SIZE/);
  });
});
