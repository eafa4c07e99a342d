// Authentication: every tus request and every API call carries a Bearer JWT whose `sub`
// is the user id. Verified with jose against one configured key source: an HMAC secret
// (AUTH_JWT_SECRET), a public key PEM (AUTH_JWT_PUBLIC_KEY) or a JWKS URL (AUTH_JWKS_URL), with
// the algorithms pinned to what that key can do (never `none`, never HS* with a public key: no
// algorithm confusion), optional issuer/audience checks, `exp`/`nbf` honoured. `exp` is required
// (AUTH_REQUIRE_EXP) and may lie at most AUTH_MAX_TOKEN_LIFETIME after `iat`: a leaked token
// stops working on its own.
// With no key source configured, authentication is off: every request is the one principal
// `anonymous`, and tusk warns loudly at start-up (authSummary).
import { createPublicKey, type KeyObject } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { isLoopbackHost, type AuthConfig, type Config } from '../config/index.js';
import { RETRY_AFTER_SECONDS, TuskError } from '../lib/errors.js';

export interface Principal {
  userId: string;
}

/** The principal of every request while authentication is off. */
export const ANONYMOUS: Principal = Object.freeze({ userId: 'anonymous' });

/** Query parameter that may carry the token where headers cannot be set (EventSource). RFC 6750 name. */
export const QUERY_TOKEN_PARAM = 'access_token';

/** A refused token (401, with `WWW-Authenticate: Bearer`). */
function unauthorized(message: string): TuskError {
  return new TuskError('unauthorized', message, {}, { 'WWW-Authenticate': 'Bearer' });
}

/** The signing keys could not be fetched (503): the token may well be good. */
function keysUnavailable(message: string): TuskError {
  return new TuskError('unavailable', message, {}, { 'Retry-After': String(RETRY_AFTER_SECONDS) });
}

export interface AuthenticateOptions {
  /** Also accept `?access_token=` (SSE). The Authorization header wins when both are present. */
  allowQueryToken?: boolean;
}

export interface Authenticator {
  /** False: no auth configured; every request is ANONYMOUS. */
  enabled: boolean;
  /** The request's principal; throws TuskError unauthorized (401) or unavailable (503). */
  authenticate(req: IncomingMessage, opts?: AuthenticateOptions): Promise<Principal>;
}

/** Largest `sub` accepted (it becomes part of Redis keys). */
const MAX_USER_ID_LENGTH = 256;

/** Pinned algorithms for a public key, from its type (RSA: RS256, EC: by curve, Ed25519: EdDSA). */
function algorithmsForKey(key: KeyObject): string[] {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return ['RS256'];
    case 'rsa-pss':
      return ['PS256'];
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      if (curve === 'secp384r1') return ['ES384'];
      if (curve === 'secp521r1') return ['ES512'];
      return ['ES256'];
    }
    case 'ed25519':
      return ['EdDSA'];
    default:
      throw new Error(`AUTH_JWT_PUBLIC_KEY: unsupported key type ${key.asymmetricKeyType ?? 'unknown'}`);
  }
}

export function createAuthenticator(config: Config | { access: { auth: AuthConfig | undefined } }): Authenticator {
  const auth = config.access.auth;
  if (!auth) {
    return { enabled: false, authenticate: async () => ANONYMOUS };
  }
  let key: Uint8Array | KeyObject | JWTVerifyGetKey;
  let algorithms: string[];
  if (auth.mode === 'secret') {
    key = new TextEncoder().encode(auth.secret ?? '');
    algorithms = auth.algorithms ?? ['HS256'];
  } else if (auth.mode === 'public-key') {
    const publicKey = createPublicKey(auth.publicKeyPem ?? '');
    key = publicKey;
    algorithms = auth.algorithms ?? algorithmsForKey(publicKey);
  } else {
    key = createRemoteJWKSet(new URL(auth.jwksUrl ?? ''), { timeoutDuration: 5000, cooldownDuration: 30_000, cacheMaxAge: 10 * 60_000 });
    algorithms = auth.algorithms ?? ['RS256', 'ES256'];
  }
  const options = {
    algorithms,
    issuer: auth.issuer,
    audience: auth.audience,
    clockTolerance: Math.round(auth.clockToleranceMs / 1000),
    requiredClaims: auth.requireExp ? ['sub', 'exp'] : ['sub'],
  };
  const maxLifetimeSeconds = Math.floor(auth.maxTokenLifetimeMs / 1000);

  return {
    enabled: true,
    async authenticate(req, opts = {}) {
      const token = tokenOf(req, opts.allowQueryToken === true);
      if (!token) throw unauthorized('Missing bearer token (Authorization: Bearer <JWT>)');
      let payload;
      try {
        ({ payload } = await jwtVerify(token, key as Uint8Array, options));
      } catch (err) {
        throw authErrorOf(err);
      }
      checkLifetime(payload, maxLifetimeSeconds, options.clockTolerance);
      const sub = payload.sub;
      if (typeof sub !== 'string' || sub.length === 0 || sub.length > MAX_USER_ID_LENGTH || [...sub].some((c) => c.charCodeAt(0) < 0x20)) {
        throw unauthorized('Token subject (sub) is missing or invalid');
      }
      return { userId: sub };
    },
  };
}

/**
 * Refuses a token whose `exp` lies more than `maxSeconds` after its `iat` (0: no maximum). Counted
 * from now when `iat` is absent or in the future, so that a made-up `iat` cannot stretch it.
 */
function checkLifetime(payload: JWTPayload, maxSeconds: number, toleranceSeconds: number): void {
  if (maxSeconds <= 0 || payload.exp === undefined) return;
  const now = Math.floor(Date.now() / 1000);
  const from = payload.iat === undefined ? now : Math.min(payload.iat, now);
  if (payload.exp - from > maxSeconds + toleranceSeconds) {
    throw unauthorized(`Token rejected: valid for longer (exp - iat) than the ${maxSeconds} s this server accepts`);
  }
}

function authErrorOf(err: unknown): TuskError {
  if (err instanceof joseErrors.JWTExpired) return unauthorized('Token expired');
  if (err instanceof joseErrors.JWKSTimeout) return keysUnavailable('Could not fetch the signing keys (JWKS timeout)');
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.claim === 'exp' && err.reason === 'missing') return unauthorized('Token rejected: no exp claim (tokens must expire)');
    if (err.reason === 'missing') return unauthorized(`Token rejected: no ${err.claim} claim`);
    return unauthorized(`Token rejected: ${err.claim} claim check failed`);
  }
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return unauthorized('Token rejected: algorithm not allowed');
  if (err instanceof joseErrors.JOSEError) return unauthorized('Invalid token');
  // Not a JOSE error: the JWKS endpoint was unreachable or answered garbage.
  return keysUnavailable('Could not fetch the signing keys');
}

/** The token of `Authorization: Bearer <token>`, or of `?access_token=` when allowed. */
export function tokenOf(req: IncomingMessage, allowQueryToken: boolean): string | undefined {
  const header = req.headers.authorization;
  if (typeof header === 'string') {
    const match = /^Bearer[ ]+([A-Za-z0-9._~+/=-]+)\s*$/i.exec(header);
    return match?.[1];
  }
  if (!allowQueryToken) return undefined;
  const query = (req.url ?? '').split('?')[1];
  if (!query) return undefined;
  return new URLSearchParams(query).get(QUERY_TOKEN_PARAM) ?? undefined;
}

/** What the start-up announcement says about authentication: its state, and a warning if any. */
export function authSummary(config: Config): { state: string; warning?: string } {
  const auth = config.access.auth;
  if (auth) {
    const source = auth.mode === 'secret' ? 'HMAC secret' : auth.mode === 'public-key' ? 'public key' : `JWKS ${auth.jwksUrl}`;
    const lifetime = auth.maxTokenLifetimeMs > 0 ? `, at most ${Math.round(auth.maxTokenLifetimeMs / 3_600_000)} h valid` : '';
    const state = `Bearer JWT (${source}${auth.issuer ? `, iss ${auth.issuer}` : ''}${auth.audience ? `, aud ${auth.audience}` : ''}${lifetime})`;
    if (!auth.requireExp) {
      return { state, warning: 'AUTH_REQUIRE_EXP=false: tokens without exp are accepted and never expire; a leaked one works until the signing key changes.' };
    }
    return { state };
  }
  const loopback = isLoopbackHost(config.host);
  const warning =
    config.access.hostExplicit && !loopback
      ? `AUTHENTICATION IS OFF and HOST=${config.host}: anyone who can reach this address can upload, read and delete every upload. Set AUTH_JWT_SECRET, AUTH_JWT_PUBLIC_KEY or AUTH_JWKS_URL.`
      : 'AUTHENTICATION IS OFF: every request is the single user "anonymous". tusk listens on ' +
        `${config.host} only; set AUTH_JWT_SECRET, AUTH_JWT_PUBLIC_KEY or AUTH_JWKS_URL before exposing it.`;
  return { state: 'off (every request is the user "anonymous")', warning };
}
