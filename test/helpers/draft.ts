// Clients of "Resumable Uploads for HTTP" (draft-ietf-httpbis-resumable-upload) for the black-box
// tests, over a raw TCP socket so that interim (1xx) responses are read exactly as they arrive:
//
//   RawExchange     one HTTP/1.1 request whose body the test writes, stalls or cuts; it records
//                   every interim response and the final one (or the error if the connection ends)
//   DraftClient     written from draft -11 (interop 8): Upload-Complete, application/partial-upload
//                   appends, Upload-Limit, problem details; also speaks interop 4-7 where they agree
//   DraftClient01   written from draft -01 (interop 3): Upload-Incomplete, 204 offset retrieval,
//                   201 appends
import net from 'node:net';

export interface Interim {
  status: number;
  headers: Record<string, string>;
}

export interface DraftResult {
  status: number;
  headers: Record<string, string>;
  body: string;
  interims: Interim[];
}

function parseHead(text: string): { status: number; headers: Record<string, string> } {
  const [statusLine, ...lines] = text.split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '')?.[1] ?? NaN);
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  return { status, headers };
}

/** One request on its own connection (Connection: close), read byte by byte as the server sends. */
export class RawExchange {
  readonly interims: Interim[] = [];
  /** The final response, or the error / early close that came instead. Never rejects. */
  readonly result: Promise<DraftResult | Error>;
  private readonly socket: net.Socket;
  private buffer = Buffer.alloc(0);
  private listeners: Array<() => void> = [];
  private settle!: (r: DraftResult | Error) => void;
  private settled = false;

  constructor(base: string, method: string, path: string, headers: Record<string, string>) {
    const url = new URL(base);
    this.result = new Promise((resolve) => {
      this.settle = (r) => {
        if (this.settled) return;
        this.settled = true;
        resolve(r);
        this.notify();
      };
    });
    this.socket = net.connect({ host: url.hostname, port: Number(url.port) });
    this.socket.setNoDelay(true);
    this.socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.parse(method);
    });
    this.socket.on('error', (err) => this.settle(err));
    this.socket.on('close', () => {
      if (!this.parse(method, true)) this.settle(new Error(`connection closed before a final response (${this.interims.length} interim)`));
    });
    let head = `${method} ${path} HTTP/1.1\r\nHost: ${url.host}\r\nConnection: close\r\n`;
    for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`;
    this.socket.write(`${head}\r\n`);
  }

  /** Parses what arrived; true once the final response is complete. */
  private parse(method: string, closed = false): boolean {
    for (;;) {
      if (this.settled) return true;
      const end = this.buffer.indexOf('\r\n\r\n');
      if (end === -1) return false;
      const { status, headers } = parseHead(this.buffer.subarray(0, end).toString('latin1'));
      const rest = this.buffer.subarray(end + 4);
      if (status >= 100 && status < 200) {
        this.interims.push({ status, headers });
        this.buffer = rest;
        this.notify();
        continue;
      }
      let body: Buffer | undefined;
      if (method === 'HEAD' || status === 204 || status === 304) body = Buffer.alloc(0);
      else if (headers['content-length'] !== undefined) {
        const n = Number(headers['content-length']);
        if (rest.length >= n) body = rest.subarray(0, n);
      } else if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
        body = dechunk(rest);
      } else if (closed) body = rest;
      if (!body) return false;
      this.settle({ status, headers, body: body.toString('latin1'), interims: this.interims });
      this.socket.destroy();
      return true;
    }
  }

  private notify(): void {
    for (const fn of this.listeners.splice(0)) fn();
  }

  /** Resolves with the first interim response (already received or to come) that matches. */
  async interim(match: (i: Interim) => boolean = () => true, timeoutMs = 30_000): Promise<Interim> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.interims.find(match);
      if (found) return found;
      if (this.settled) throw new Error(`no matching interim response before the final one (${JSON.stringify(this.interims)})`);
      if (Date.now() > deadline) throw new Error('no matching interim response in time');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 200);
        this.listeners.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Writes body bytes; resolves once the kernel took them. */
  write(chunk: Buffer | string): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.socket.destroyed) return reject(new Error('socket closed'));
      this.socket.write(chunk, (err) => (err ? reject(err) : resolve()));
    });
  }

  /** Cuts the connection (a dropped network, a killed app). */
  destroy(): void {
    this.socket.destroy();
  }

  /** The final response; throws if the connection ended without one. */
  async final(): Promise<DraftResult> {
    const r = await this.result;
    if (r instanceof Error) throw r;
    return r;
  }
}

function dechunk(data: Buffer): Buffer | undefined {
  const out: Buffer[] = [];
  let pos = 0;
  for (;;) {
    const lineEnd = data.indexOf('\r\n', pos);
    if (lineEnd === -1) return undefined;
    const size = parseInt(data.subarray(pos, lineEnd).toString('latin1'), 16);
    if (Number.isNaN(size)) return undefined;
    if (size === 0) return Buffer.concat(out);
    if (data.length < lineEnd + 2 + size + 2) return undefined;
    out.push(data.subarray(lineEnd + 2, lineEnd + 2 + size));
    pos = lineEnd + 2 + size + 2;
  }
}

/** A whole request: headers, a body (Content-Length set unless given), the final answer. */
export async function exchange(base: string, method: string, path: string, headers: Record<string, string>, body?: Buffer): Promise<DraftResult> {
  const withLength = body && !Object.keys(headers).some((h) => /^(content-length|transfer-encoding)$/i.test(h)) ? { 'Content-Length': String(body.length), ...headers } : headers;
  const x = new RawExchange(base, method, path, withLength);
  // A refusal may come (and the connection close) before the body is written: the answer counts.
  if (body && body.length > 0) await x.write(body).catch(() => {});
  return x.final();
}

/** The path of an upload URL (absolute or relative). */
export const pathOf = (url: string) => new URL(url, 'http://x').pathname;

/** Parses an Upload-Limit dictionary (the keys this suite reads are integers). */
export function parseLimit(value: string | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const member of (value ?? '').split(',')) {
    const [k, v] = member.trim().split('=');
    if (k && v !== undefined && /^\d+$/.test(v)) out[k] = Number(v);
  }
  return out;
}

export interface OffsetState {
  status: number;
  offset: number | undefined;
  complete: boolean | undefined;
  length: number | undefined;
  limit: Record<string, number>;
  headers: Record<string, string>;
}

const sfInt = (v: string | undefined) => (v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined);
const sfBool = (v: string | undefined) => (v === '?1' ? true : v === '?0' ? false : undefined);

/**
 * A client of draft -11 (interop 8). Creation (POST with Upload-Complete), offset retrieval (HEAD),
 * append (PATCH, application/partial-upload), cancellation (DELETE); `upload` puts them together
 * the way -11 describes resumption: learn the URL from the 104, and after a failure retrieve the
 * offset and append the rest.
 */
export class DraftClient {
  constructor(
    readonly base: string,
    readonly headers: Record<string, string> = {},
    readonly version = 8,
  ) {}

  private h(extra: Record<string, string>): Record<string, string> {
    return { 'Upload-Draft-Interop-Version': String(this.version), ...this.headers, ...extra };
  }

  /** Starts a creation whose body the caller writes (`length` bytes declared by Content-Length). */
  startCreation(opts: { complete: boolean; contentLength?: number; headers?: Record<string, string> }): RawExchange {
    const length: Record<string, string> = opts.contentLength === undefined ? {} : { 'Content-Length': String(opts.contentLength) };
    return new RawExchange(this.base, 'POST', '/files/', this.h({ 'Upload-Complete': opts.complete ? '?1' : '?0', ...length, ...opts.headers }));
  }

  async create(body: Buffer | undefined, opts: { complete: boolean; headers?: Record<string, string> }): Promise<DraftResult & { location: string | undefined }> {
    const x = this.startCreation({ complete: opts.complete, contentLength: body?.length ?? 0, headers: opts.headers });
    if (body && body.length > 0) await x.write(body);
    const r = await x.final();
    return { ...r, location: r.headers.location ?? r.interims.find((i) => i.status === 104)?.headers.location };
  }

  async offset(url: string, extra: Record<string, string> = {}): Promise<OffsetState> {
    const r = await exchange(this.base, 'HEAD', pathOf(url), this.h(extra));
    return {
      status: r.status,
      offset: sfInt(r.headers['upload-offset']),
      complete: sfBool(r.headers['upload-complete']),
      length: sfInt(r.headers['upload-length']),
      limit: parseLimit(r.headers['upload-limit']),
      headers: r.headers,
    };
  }

  startAppend(url: string, offset: number, opts: { complete: boolean; contentLength?: number; headers?: Record<string, string> }): RawExchange {
    const length: Record<string, string> = opts.contentLength === undefined ? {} : { 'Content-Length': String(opts.contentLength) };
    return new RawExchange(
      this.base,
      'PATCH',
      pathOf(url),
      this.h({ 'Content-Type': 'application/partial-upload', 'Upload-Offset': String(offset), 'Upload-Complete': opts.complete ? '?1' : '?0', ...length, ...opts.headers }),
    );
  }

  async append(url: string, offset: number, body: Buffer, opts: { complete: boolean; headers?: Record<string, string> }): Promise<DraftResult> {
    const x = this.startAppend(url, offset, { complete: opts.complete, contentLength: body.length, headers: opts.headers });
    if (body.length > 0) await x.write(body);
    return x.final();
  }

  cancel(url: string): Promise<DraftResult> {
    return exchange(this.base, 'DELETE', pathOf(url), this.h({}));
  }

  /**
   * Uploads `data` in one creation request; if the connection is lost (here: cut after `dropAfter`
   * bytes, after the 104 arrived), resumes through the URL of the 104: offset, then the rest.
   */
  async upload(data: Buffer, opts: { dropAfter?: number; headers?: Record<string, string> } = {}): Promise<{ url: string; final: DraftResult; resumedFrom?: number }> {
    const x = this.startCreation({ complete: true, contentLength: data.length, headers: opts.headers });
    const announced = await x.interim((i) => i.status === 104 && i.headers.location !== undefined);
    const url = announced.headers.location!;
    if (opts.dropAfter === undefined) {
      await x.write(data);
      return { url, final: await x.final() };
    }
    await x.write(data.subarray(0, opts.dropAfter));
    x.destroy();
    const state = await this.offset(url);
    if (state.status !== 200 || state.offset === undefined) throw new Error(`offset retrieval failed: ${state.status}`);
    const final = await this.append(url, state.offset, data.subarray(state.offset), { complete: true });
    return { url, final, resumedFrom: state.offset };
  }
}

/**
 * A client of draft -01 (interop 3): creation with Upload-Incomplete, the Offset Retrieving
 * Procedure (HEAD, 204, Upload-Incomplete), the Upload Appending Procedure (PATCH, no
 * Upload-Incomplete on the last one), cancellation.
 */
export class DraftClient01 {
  constructor(
    readonly base: string,
    readonly headers: Record<string, string> = {},
  ) {}

  private h(extra: Record<string, string>): Record<string, string> {
    return { 'Upload-Draft-Interop-Version': '3', ...this.headers, ...extra };
  }

  startCreation(opts: { incomplete: boolean; contentLength: number }): RawExchange {
    return new RawExchange(this.base, 'POST', '/files/', this.h({ 'Upload-Incomplete': opts.incomplete ? '?1' : '?0', 'Content-Length': String(opts.contentLength) }));
  }

  async create(body: Buffer, incomplete: boolean): Promise<DraftResult & { location: string | undefined }> {
    const x = this.startCreation({ incomplete, contentLength: body.length });
    if (body.length > 0) await x.write(body);
    const r = await x.final();
    return { ...r, location: r.headers.location ?? r.interims.find((i) => i.status === 104)?.headers.location };
  }

  async offset(url: string, extra: Record<string, string> = {}): Promise<{ status: number; offset: number | undefined; incomplete: boolean | undefined; headers: Record<string, string> }> {
    const r = await exchange(this.base, 'HEAD', pathOf(url), this.h(extra));
    return { status: r.status, offset: sfInt(r.headers['upload-offset']), incomplete: sfBool(r.headers['upload-incomplete']), headers: r.headers };
  }

  /** The last part carries no Upload-Incomplete (-01: only a part that is not the end sets it). */
  append(url: string, offset: number, body: Buffer, last: boolean): Promise<DraftResult> {
    return exchange(this.base, 'PATCH', pathOf(url), this.h({ 'Upload-Offset': String(offset), ...(last ? {} : { 'Upload-Incomplete': '?1' }) }), body);
  }

  cancel(url: string): Promise<DraftResult> {
    return exchange(this.base, 'DELETE', pathOf(url), this.h({}));
  }
}
