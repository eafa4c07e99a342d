// Helpers for the direct-to-storage tests: HS256 tokens, JSON calls to tusk's API, and a small
// TCP proxy in front of tusk that counts every byte in both directions (to prove that the file's
// bytes go to storage, never through tusk; slowed or frozen, it is also the bad network of the
// command-line client's tests).
import http from 'node:http';
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

/**
 * A JSON request to tusk; `token` becomes `Authorization: Bearer`. The path is sent byte for byte
 * (node:http, not fetch, whose URL parser would resolve `%2e`, `..` and the like before sending),
 * so tests can send exactly the odd request targets a hostile client would.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- see ApiResult
export function api<T = any>(base: string, method: string, path: string, token?: string, body?: unknown): Promise<ApiResult<T>> {
  const target = new URL(base);
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  if (payload) Object.assign(headers, { 'content-type': 'application/json', 'content-length': String(payload.length) });
  return new Promise((resolve, reject) => {
    const req = http.request({ host: target.hostname, port: Number(target.port), method, path, headers, agent: false, timeout: 30_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: unknown = text;
        try {
          parsed = text ? JSON.parse(text) : undefined;
        } catch {
          // not JSON
        }
        const h = new Headers();
        for (const [name, value] of Object.entries(res.headers)) if (value !== undefined) h.set(name, Array.isArray(value) ? value.join(', ') : value);
        resolve({ status: res.statusCode ?? 0, headers: h, body: parsed as T });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer within 30 s`)));
    req.on('error', reject);
    req.end(payload);
  });
}

/**
 * PUT `data` to a presigned URL straight to storage; returns status and ETag. `chunked` sends it
 * without Content-Length (Transfer-Encoding: chunked), as a client that dodges a signed length would.
 */
export async function putTo(url: string, data: Buffer, headers: Record<string, string> = {}, options: { chunked?: boolean } = {}): Promise<{ status: number; etag: string; text: string }> {
  const body = options.chunked
    ? new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new Uint8Array(data));
          controller.close();
        },
      })
    : (data as Uint8Array<ArrayBuffer>);
  const res = await fetch(url, { method: 'PUT', body, headers, signal: AbortSignal.timeout(60_000), ...(options.chunked ? { duplex: 'half' } : {}) } as RequestInit);
  const text = await res.text();
  return { status: res.status, etag: res.headers.get('etag') ?? '', text };
}

export interface CountingProxy {
  url: string;
  /** Bytes client -> tusk and tusk -> client since start (or the last reset). */
  bytes(): { up: number; down: number };
  /** Limits client -> tusk to `bytesPerSecond` on every connection (undefined: no limit). */
  setUpRate(bytesPerSecond: number | undefined): void;
  /** Closes both sides of every connection open now, with whatever they still buffer (later ones pass). */
  dropConnections(): void;
  close(): Promise<void>;
}

export interface ProxyOptions {
  /** client -> tusk bytes per second on each connection; default unlimited. */
  upBytesPerSecond?: number;
  /**
   * Once this many bytes went up, the connections of that moment stop forwarding in both
   * directions and stay open, as on a network that went away without a word (no FIN, no RST);
   * later connections pass normally.
   */
  freezeAfterUpBytes?: number;
}

/** A TCP proxy on 127.0.0.1 in front of `targetPort`, counting bytes both ways (optionally slow or freezing). */
export async function countingProxy(targetPort: number, options: ProxyOptions = {}): Promise<CountingProxy> {
  let up = 0;
  let down = 0;
  let upRate = options.upBytesPerSecond;
  let frozen = false;
  const sockets = new Set<net.Socket>();
  const pairs = new Set<{ client: net.Socket; upstream: net.Socket; frozen: boolean }>();
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    const pair = { client, upstream, frozen: false };
    sockets.add(client);
    sockets.add(upstream);
    pairs.add(pair);
    // The client side pauses for the rate limit and for upstream backpressure; it goes on when neither holds it.
    let waitingDrain = false;
    let waitingRate = false;
    const maybeResume = () => {
      if (!pair.frozen && !waitingDrain && !waitingRate) client.resume();
    };
    client.on('data', (d: Buffer) => {
      if (pair.frozen) return;
      up += d.length;
      if (!upstream.write(d)) {
        waitingDrain = true;
        client.pause();
        upstream.once('drain', () => {
          waitingDrain = false;
          maybeResume();
        });
      }
      if (options.freezeAfterUpBytes !== undefined && !frozen && up >= options.freezeAfterUpBytes) {
        frozen = true;
        for (const p of pairs) {
          p.frozen = true;
          p.client.pause();
          p.upstream.pause();
        }
        return;
      }
      if (upRate) {
        waitingRate = true;
        client.pause();
        setTimeout(() => {
          waitingRate = false;
          maybeResume();
        }, (d.length / upRate) * 1000);
      }
    });
    client.on('end', () => upstream.end());
    upstream.on('data', (d: Buffer) => {
      if (pair.frozen) return;
      down += d.length;
      if (!client.write(d)) {
        upstream.pause();
        client.once('drain', () => {
          if (!pair.frozen) upstream.resume();
        });
      }
    });
    upstream.on('end', () => client.end());
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
      pairs.delete(pair);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    bytes: () => ({ up, down }),
    setUpRate: (bytesPerSecond) => {
      upRate = bytesPerSecond;
    },
    dropConnections: () => {
      for (const p of pairs) {
        p.client.destroy();
        p.upstream.destroy();
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
