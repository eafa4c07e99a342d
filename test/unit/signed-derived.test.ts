// The pieces of signed derived-file URLs and the page's policy that need no services: tokens
// (lib/signed-urls.ts), the playlist rewrite (server/status/signed-derived.ts) on hostile
// playlists, and the storage origins the page's Content-Security-Policy allows.
import fc from 'fast-check';
import { loadConfig } from '../../config/index.js';
import { DerivedUrlSigner } from '../../lib/signed-urls.js';
import { contentSecurityPolicy, storageOrigins } from '../../server/http/web-ui.js';
import { rewritePlaylist } from '../../server/status/signed-derived.js';

const ID = 'a'.repeat(32);
const OTHER = 'b'.repeat(32);
const signer = new DerivedUrlSigner(async () => Buffer.from('k'.repeat(32)), 3_600_000);

describe('DerivedUrlSigner', () => {
  test('a token is good for its upload until its expiry, and for nothing else', async () => {
    const now = Date.now();
    const token = await signer.token(ID, now);
    expect(await signer.check(ID, token, now)).toEqual({ ok: true, expiresAtMs: expect.any(Number) });
    const check = await signer.check(ID, token, now);
    expect(check.ok && check.expiresAtMs - now).toBeGreaterThanOrEqual(3_600_000);
    expect(await signer.check(OTHER, token, now)).toEqual({ ok: false, why: 'invalid' });
    expect(await signer.check(ID, token, now + 3 * 3_600_000)).toEqual({ ok: false, why: 'expired' });
    const other = new DerivedUrlSigner(async () => Buffer.from('z'.repeat(32)), 3_600_000);
    expect(await other.check(ID, token, now)).toEqual({ ok: false, why: 'invalid' });
    const [exp, sig] = token.split('.') as [string, string];
    expect(await signer.check(ID, `${Number(exp) + 1}.${sig}`, now)).toEqual({ ok: false, why: 'invalid' });
  });

  test('no string but a real token passes', async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 80 }), async (s) => {
        expect((await signer.check(ID, s)).ok).toBe(false);
      }),
      { numRuns: 300 },
    );
  });

  test('URLs made within a minute are the same (an <img> is not reloaded for a new signature)', async () => {
    const t0 = Math.floor(Date.now() / 60_000) * 60_000 + 1000;
    expect(await signer.url('http://h', `derived/${ID}/hls/master.m3u8`, t0)).toBe(await signer.url('http://h', `derived/${ID}/hls/master.m3u8`, t0 + 30_000));
    expect(await signer.url('http://h', `derived/${ID}/thumbnails/160.jpg`, t0)).toMatch(new RegExp(`^http://h/api/derived/${ID}/\\d+\\.[A-Za-z0-9_-]{43}/thumbnails/160\\.jpg$`));
  });
});

describe('rewritePlaylist', () => {
  const resolve = async (key: string) => `R(${key})`;

  test('every URI line and URI attribute becomes the resolved key, relative to the playlist', async () => {
    const master = ['#EXTM3U', '#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=640x360', '360p/index.m3u8', '#EXT-X-MEDIA:TYPE=AUDIO,URI="audio/index.m3u8"', ''].join('\n');
    expect(await rewritePlaylist(master, `derived/${ID}/hls/master.m3u8`, resolve)).toBe(
      ['#EXTM3U', '#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=640x360', `R(derived/${ID}/hls/360p/index.m3u8)`, `#EXT-X-MEDIA:TYPE=AUDIO,URI="R(derived/${ID}/hls/audio/index.m3u8)"`, ''].join('\n'),
    );
    const media = ['#EXTM3U', '#EXT-X-MAP:URI="init.mp4"', '#EXTINF:6.0,', 'seg0.ts', '#EXTINF:6.0,', '../360p/seg1.ts?x=1', '#EXT-X-ENDLIST'].join('\r\n');
    expect((await rewritePlaylist(media, `derived/${ID}/hls/360p/index.m3u8`, resolve)).split('\n')).toEqual([
      '#EXTM3U',
      `#EXT-X-MAP:URI="R(derived/${ID}/hls/360p/init.mp4)"`,
      '#EXTINF:6.0,',
      `R(derived/${ID}/hls/360p/seg0.ts)`,
      '#EXTINF:6.0,',
      `R(derived/${ID}/hls/360p/seg1.ts)`,
      '#EXT-X-ENDLIST',
    ]);
  });

  test('a reference out of the upload\'s folder, or absolute, is dropped with its tag', async () => {
    const hostile = [
      '#EXTM3U',
      '#EXTINF:6.0,',
      `../../../${OTHER}/hls/seg0.ts`,
      '#EXTINF:6.0,',
      'https://evil.test/seg.ts',
      '#EXTINF:6.0,',
      '/etc/passwd',
      '#EXT-X-MAP:URI="../../../x"',
      '#EXTINF:6.0,',
      '%2e%2e/%2e%2e/%2e%2e/seg.ts',
      '#EXTINF:6.0,',
      '%E0%A4%A.ts',
      '#EXTINF:6.0,',
      'ok.ts',
    ].join('\n');
    const out = await rewritePlaylist(hostile, `derived/${ID}/hls/360p/index.m3u8`, resolve);
    expect(out.split('\n')).toEqual(['#EXTM3U', '#EXTINF:6.0,', `R(derived/${ID}/hls/360p/ok.ts)`]);
  });

  test('whatever the playlist holds, nothing outside the upload\'s folder is resolved', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.string({ unit: fc.constantFrom('.', '/', '%', '2', 'e', 'a', '#', 'U', 'R', 'I', '=', '"', ':', '\n', 'h', 't', 'p', 's'), maxLength: 30 }), { maxLength: 8 }), async (lines) => {
        const seen: string[] = [];
        await rewritePlaylist(lines.join('\n'), `derived/${ID}/hls/master.m3u8`, async (key) => {
          seen.push(key);
          return 'x';
        });
        for (const key of seen) expect(key.startsWith(`derived/${ID}/`) && !key.split('/').includes('..')).toBe(true);
      }),
      { numRuns: 300 },
    );
  });
});

describe('the page\'s Content-Security-Policy', () => {
  const s3 = { STORAGE: 's3', S3_BUCKET: 'media', S3_ACCESS_KEY_ID: 'k', S3_SECRET_ACCESS_KEY: 's', REDIS_URL: 'redis://127.0.0.1:6379' };
  test('allows the storage origin presigned URLs name, and nothing inline', () => {
    expect(storageOrigins(loadConfig({ ...s3, S3_ENDPOINT: 'http://minio:9000', S3_PUBLIC_ENDPOINT: 'https://files.example.com' }))).toEqual(['https://files.example.com']);
    expect(storageOrigins(loadConfig({ ...s3, S3_ENDPOINT: 'https://s3.example.com:8443', S3_FORCE_PATH_STYLE: 'false' }))).toEqual(['https://s3.example.com:8443', 'https://media.s3.example.com:8443']);
    expect(storageOrigins(loadConfig({ ...s3, S3_REGION: 'eu-west-1' }))).toContain('https://media.s3.eu-west-1.amazonaws.com');
    expect(storageOrigins(loadConfig({}))).toEqual([]);
    const csp = contentSecurityPolicy(loadConfig({ ...s3, S3_ENDPOINT: 'http://127.0.0.1:9000' }));
    expect(csp).toMatch(/(^|; )script-src 'self'(;|$)/);
    expect(csp).toMatch(/media-src 'self' blob: http:\/\/127\.0\.0\.1:9000/);
    expect(csp).toMatch(/connect-src 'self' http:\/\/127\.0\.0\.1:9000/);
    expect(csp).not.toMatch(/unsafe|\*/);
    expect(csp).toContain("frame-ancestors 'none'");
  });
});
