// Helpers for the direct-to-storage tests: HS256 tokens, JSON calls to tusk's API, and a small
// TCP proxy in front of tusk that counts every byte in both directions (to prove that the file's
// bytes go to storage, never through tusk).
import net from 'node:net';
import { SignJWT } from 'jose';

export const JWT_SECRET = 'direct-upload-tests-secret-0123456789abcdef';

export async function tokenFor(userId: string, secret = JWT_SECRET): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(userId)
    .setIssuedAt()
    .setExpirationTime('1h')
    .sign(new TextEncoder().encode(secret));
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- JSON of many shapes, asserted by the tests
export interface ApiResult<T = any> {
  status: number;
  headers: Headers;
  body: T;
}

/** A JSON request to tusk; `token` becomes `Authorization: Bearer`. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- see ApiResult
export async function api<T = any>(base: string, method: string, path: string, token?: string, body?: unknown): Promise<ApiResult<T>> {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(30_000) });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    // not JSON
  }
  return { status: res.status, headers: res.headers, body: parsed as T };
}

/** PUT `data` to a presigned URL straight to storage; returns status and ETag. */
export async function putTo(url: string, data: Buffer, headers: Record<string, string> = {}): Promise<{ status: number; etag: string; text: string }> {
  const res = await fetch(url, { method: 'PUT', body: data as Uint8Array<ArrayBuffer>, headers, signal: AbortSignal.timeout(60_000) });
  const text = await res.text();
  return { status: res.status, etag: res.headers.get('etag') ?? '', text };
}

export interface CountingProxy {
  url: string;
  /** Bytes client -> tusk and tusk -> client since start (or the last reset). */
  bytes(): { up: number; down: number };
  close(): Promise<void>;
}

/** A TCP proxy on 127.0.0.1 in front of `targetPort`, counting bytes both ways. */
export async function countingProxy(targetPort: number): Promise<CountingProxy> {
  let up = 0;
  let down = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    client.on('data', (d: Buffer) => {
      up += d.length;
    });
    upstream.on('data', (d: Buffer) => {
      down += d.length;
    });
    client.pipe(upstream);
    upstream.pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    bytes: () => ({ up, down }),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
