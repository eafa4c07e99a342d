// Authentication without a server: the authenticator built from the configuration (shared
// secrets, public keys, JWKS, algorithm pinning, token lifetimes) and its settings, validated with
// clear messages. Test JWTs are signed here with jose; the JWKS is served from a local HTTP server.
// The same rules on real tusk processes: test/e2e/auth-quota.test.ts.
import { generateKeyPairSync } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import { loadConfig } from '../../config/index.js';
import { authSummary, createAuthenticator } from '../../hooks/auth.js';
import { TuskError } from '../../lib/errors.js';

const SECRET = 'test-secret-of-at-least-32-bytes-0123456789';
const ISSUER = 'https://issuer.test';
const AUDIENCE = 'tusk-tests';
const HOUR = 3600;
const nowSeconds = () => Math.floor(Date.now() / 1000);

/** An HS256 token with exactly these claims (no defaults: `exp` and `iat` only when given). */
function signed(claims: { sub: string; iat?: number; exp?: number }, secret = SECRET): Promise<string> {
  return new SignJWT({ ...claims, iss: ISSUER, aud: AUDIENCE }).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(secret));
}

/** An unsigned token (alg none), built by hand. */
function unsignedToken(sub: string): string {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub, iss: ISSUER, aud: AUDIENCE, exp: Math.floor(Date.now() / 1000) + 600 })}.`;
}

describe('authenticator: public keys, JWKS, algorithm pinning', () => {
  const reqWith = (token?: string, url = '/files/') => ({ headers: token ? { authorization: `Bearer ${token}` } : {}, url }) as never;

  test('RS256 public key PEM: a valid token passes; HS256 signed with the PEM (alg confusion) and alg none do not', async () => {
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const auth = createAuthenticator(loadConfig({ AUTH_JWT_PUBLIC_KEY: pem.replace(/\n/g, '\\n') }));
    expect(auth.enabled).toBe(true);
    const good = await new SignJWT({}).setProtectedHeader({ alg: 'RS256' }).setSubject('rsa-user').setExpirationTime('1m').sign(privateKey);
    await expect(auth.authenticate(reqWith(good))).resolves.toEqual({ userId: 'rsa-user' });
    const confused = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('x').setExpirationTime('1m').sign(new TextEncoder().encode(pem));
    await expect(auth.authenticate(reqWith(confused))).rejects.toBeInstanceOf(TuskError);
    await expect(auth.authenticate(reqWith(unsignedToken('x')))).rejects.toMatchObject({ status: 401, code: 'unauthorized' });
    const noSub = await new SignJWT({}).setProtectedHeader({ alg: 'RS256' }).setExpirationTime('1m').sign(privateKey);
    await expect(auth.authenticate(reqWith(noSub))).rejects.toMatchObject({ status: 401 });
    await expect(auth.authenticate(reqWith(undefined))).rejects.toMatchObject({ status: 401 });
    // query tokens only where allowed
    await expect(auth.authenticate(reqWith(undefined, `/api/uploads/x/events?access_token=${good}`))).rejects.toMatchObject({ status: 401 });
    await expect(auth.authenticate(reqWith(undefined, `/api/uploads/x/events?access_token=${good}`), { allowQueryToken: true })).resolves.toEqual({ userId: 'rsa-user' });
  });

  test('ES256 via a JWKS URL', async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256');
    const jwk: JWK = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
    const server = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] })));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`;
      const auth = createAuthenticator(loadConfig({ AUTH_JWKS_URL: url, AUTH_JWT_ISSUER: ISSUER }));
      const sign = (iss: string) => new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setSubject('es-user').setIssuer(iss).setExpirationTime('1m').sign(privateKey);
      await expect(auth.authenticate(reqWith(await sign(ISSUER)))).resolves.toEqual({ userId: 'es-user' });
      await expect(auth.authenticate(reqWith(await sign('https://evil.test')))).rejects.toMatchObject({ status: 401 });
    } finally {
      server.close();
    }
  });

  test('configuration is validated with clear messages', () => {
    expect(() => loadConfig({ AUTH_JWT_SECRET: 'short' })).toThrow(/AUTH_JWT_SECRET: must be at least 32 bytes/);
    expect(() => loadConfig({ AUTH_JWT_SECRET: SECRET, AUTH_JWKS_URL: 'https://x.test/jwks' })).toThrow(/set only one of/);
    expect(() => loadConfig({ AUTH_JWT_PUBLIC_KEY: 'nope' })).toThrow(/AUTH_JWT_PUBLIC_KEY: must be a PEM public key/);
    expect(() => loadConfig({ AUTH_JWT_SECRET: SECRET, AUTH_JWT_ALGORITHMS: 'none' })).toThrow(/AUTH_JWT_ALGORITHMS/);
    expect(() => loadConfig({ AUTH_JWT_ISSUER: ISSUER })).toThrow(/AUTH_JWT_ISSUER: has no effect/);
    expect(() => loadConfig({ QUOTA_BYTES: 'lots' })).toThrow(/QUOTA_BYTES/);
    expect(() => loadConfig({ MAX_CONCURRENT_UPLOADS: '-1' })).toThrow(/MAX_CONCURRENT_UPLOADS/);
    expect(loadConfig({ QUOTA_BYTES: '5GiB' }).access).toMatchObject({ auth: undefined, quotaBytes: 5 * 1024 ** 3, maxConcurrentUploads: 0 });
  });
});

describe('token lifetime settings', () => {
  test('AUTH_MAX_TOKEN_LIFETIME=0: no maximum (exp still required)', async () => {
    const auth = createAuthenticator(loadConfig({ AUTH_JWT_SECRET: SECRET, AUTH_MAX_TOKEN_LIFETIME: '0' }));
    const req = (token: string) => ({ headers: { authorization: `Bearer ${token}` }, url: '/files/' }) as never;
    const now = nowSeconds();
    await expect(auth.authenticate(req(await signed({ sub: 'kim', iat: now, exp: now + 365 * 24 * HOUR })))).resolves.toEqual({ userId: 'kim' });
    await expect(auth.authenticate(req(await signed({ sub: 'kim', iat: now })))).rejects.toMatchObject({ status: 401, message: expect.stringMatching(/no exp claim/) });
  });

  test('the settings are validated', () => {
    expect(() => loadConfig({ AUTH_JWT_SECRET: SECRET, AUTH_MAX_TOKEN_LIFETIME: 'forever' })).toThrow(/AUTH_MAX_TOKEN_LIFETIME/);
    expect(() => loadConfig({ AUTH_JWT_SECRET: SECRET, AUTH_MAX_TOKEN_LIFETIME: '500ms' })).toThrow(/AUTH_MAX_TOKEN_LIFETIME: must be 0 .* or at least 1s/);
    expect(() => loadConfig({ AUTH_JWT_SECRET: SECRET, AUTH_REQUIRE_EXP: 'sometimes' })).toThrow(/AUTH_REQUIRE_EXP/);
    expect(() => loadConfig({ AUTH_REQUIRE_EXP: 'false' })).toThrow(/AUTH_REQUIRE_EXP: has no effect/);
    expect(loadConfig({ AUTH_JWT_SECRET: SECRET }).access.auth).toMatchObject({ requireExp: true, maxTokenLifetimeMs: 24 * HOUR * 1000 });
  });
});

describe('authentication off', () => {
  test('the warning names an explicitly set non-loopback HOST', () => {
    expect(authSummary(loadConfig({ HOST: '0.0.0.0' })).warning).toMatch(/AUTHENTICATION IS OFF and HOST=0\.0\.0\.0/);
    expect(authSummary(loadConfig({})).warning).toMatch(/AUTHENTICATION IS OFF.*127\.0\.0\.1 only/);
  });
});
