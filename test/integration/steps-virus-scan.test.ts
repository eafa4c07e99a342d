// virus_scan step against a real clamd (started by test/infra/global-setup.ts with our own EICAR
// signatures, see test/infra/clamd.sh).
import fs from 'node:fs';
import net from 'node:net';
import { Readable } from 'node:stream';
import { pingClamd, scanStream, ScannerUnavailableError, ScannerUnreachableError, ScanTooLargeError, type ScanOptions } from '../../workers/scan/clamd.js';
import { EICAR } from '../helpers/fixtures-media.js';

const socket = process.env.TEST_CLAMD_SOCKET;
const port = Number(process.env.TEST_CLAMD_PORT);
if (!socket || !port) throw new Error('TEST_CLAMD_SOCKET/TEST_CLAMD_PORT not set: clamd did not start in global-setup (see its warning; scripts/ensure-system-deps.sh test)');

const MB = 1024 * 1024;
const viaSocket: ScanOptions = { socket, timeoutMs: 30_000, maxStreamBytes: 90 * MB };
const viaTcp: ScanOptions = { host: '127.0.0.1', port, timeoutMs: 30_000, maxStreamBytes: 90 * MB };

/** A fast source of `total` bytes in 64 KB chunks, with `tail` appended at the end. */
function synthetic(total: number, tail = Buffer.alloc(0)): Readable {
  const chunk = Buffer.alloc(64 * 1024, 'tusk clean data ');
  return Readable.from(
    (function* () {
      let left = total;
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        left -= n;
        yield n === chunk.length ? chunk : chunk.subarray(0, n);
      }
      if (tail.length) yield tail;
    })(),
  );
}

async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const p = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return p;
}

describe('virus scan (clamd INSTREAM)', () => {
  test('clamd answers PING on both the unix socket and TCP', async () => {
    await pingClamd({ socket, timeoutMs: 5000 });
    await pingClamd({ port, timeoutMs: 5000 });
  });

  test('EICAR is infected, with the signature name (socket and TCP)', async () => {
    for (const opts of [viaSocket, viaTcp]) {
      const result = await scanStream(Readable.from([EICAR]), EICAR.length, opts);
      expect(result).toEqual({ verdict: 'infected', signature: expect.stringMatching(/^Tusk\.Test\.EICAR.*\.UNOFFICIAL$/) });
    }
  });

  test('EICAR at the end of 3 MB of other bytes, split across chunks, is found', async () => {
    const total = 3 * MB + 12_345;
    const result = await scanStream(synthetic(total, EICAR), total + EICAR.length, viaSocket);
    expect(result.verdict).toBe('infected');
  });

  test('clean bytes are clean', async () => {
    const data = Buffer.from('just a harmless text file\n'.repeat(1000));
    await expect(scanStream(Readable.from([data]), data.length, viaSocket)).resolves.toEqual({ verdict: 'clean' });
    await expect(scanStream(fs.createReadStream('/bin/true'), fs.statSync('/bin/true').size, viaTcp)).resolves.toEqual({ verdict: 'clean' });
  });

  test('a 0-byte object is not "clean": ScannerUnavailableError', async () => {
    await expect(scanStream(Readable.from([]), 0, viaSocket)).rejects.toBeInstanceOf(ScannerUnavailableError);
    // declared non-empty but the stream is empty: nothing was scanned either
    await expect(scanStream(Readable.from([]), 100, viaSocket)).rejects.toBeInstanceOf(ScannerUnavailableError);
  });

  test('clamd unreachable (socket missing, TCP port closed) -> ScannerUnreachableError (no scanner: the job waits for one)', async () => {
    await expect(scanStream(Readable.from([EICAR]), EICAR.length, { ...viaSocket, socket: `${socket}.missing` })).rejects.toBeInstanceOf(ScannerUnreachableError);
    await expect(scanStream(Readable.from([EICAR]), EICAR.length, { ...viaTcp, port: await closedPort() })).rejects.toBeInstanceOf(ScannerUnreachableError);
    await expect(scanStream(Readable.from([EICAR]), EICAR.length, { timeoutMs: 1000, maxStreamBytes: 1000 })).rejects.toBeInstanceOf(ScannerUnavailableError);
  });

  test('a server that accepts but never answers -> ScannerUnavailableError after timeoutMs (a scanner failing: retried, then failed)', async () => {
    const sockets: net.Socket[] = [];
    const silent = net.createServer((s) => {
      sockets.push(s);
      s.resume();
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const started = Date.now();
      const err = await scanStream(Readable.from([EICAR]), EICAR.length, { port: (silent.address() as net.AddressInfo).port, timeoutMs: 500, maxStreamBytes: MB }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ScannerUnavailableError);
      expect(err).not.toBeInstanceOf(ScannerUnreachableError);
      expect(String(err)).toMatch(/within 500 ms/);
      expect(Date.now() - started).toBeLessThan(3000);
    } finally {
      sockets.forEach((s) => s.destroy());
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  test('over maxStreamBytes -> ScanTooLargeError before anything is streamed', async () => {
    let pulled = 0;
    const source = new Readable({
      read() {
        pulled++;
        this.push(Buffer.alloc(1024));
      },
    });
    const err = await scanStream(source, 2 * MB, { ...viaSocket, maxStreamBytes: MB }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ScanTooLargeError);
    expect(err).toMatchObject({ size: 2 * MB, limit: MB });
    expect(pulled).toBe(0);
    expect(source.destroyed).toBe(true);
  });

  test('a stream longer than declared is cut at maxStreamBytes -> ScanTooLargeError', async () => {
    await expect(scanStream(synthetic(3 * MB), 100, { ...viaSocket, maxStreamBytes: MB })).rejects.toBeInstanceOf(ScanTooLargeError);
  });

  test('clamd refusing a stream over its own StreamMaxLength -> ScanTooLargeError', async () => {
    // clamd.sh runs with StreamMaxLength 100M; claim a larger limit on our side.
    const total = 101 * MB;
    const err = await scanStream(synthetic(total), total, { ...viaSocket, maxStreamBytes: 200 * MB }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ScanTooLargeError);
    expect(String(err)).toMatch(/size limit exceeded/i);
  });

  test('backpressure: a fast source is read only as fast as clamd consumes (slow fake clamd)', async () => {
    // Without backpressure (npm clamscan's scanStream) the whole source is read into the socket's
    // buffer at once; here the source may only run a few socket buffers ahead of the reader.
    const total = 40 * MB;
    let produced = 0;
    let received = 0;
    let maxLead = 0;
    const source = new Readable({
      read() {
        if (produced >= total) return void this.push(null);
        const n = Math.min(64 * 1024, total - produced);
        produced += n;
        this.push(Buffer.alloc(n, 'tusk clean data ')); // a fresh buffer per chunk, like a file or S3 read
      },
    });
    const slow = net.createServer((conn) => {
      let tail = Buffer.alloc(0);
      conn.on('data', (chunk: Buffer) => {
        received += chunk.length;
        maxLead = Math.max(maxLead, produced - received);
        tail = Buffer.concat([tail, chunk]).subarray(-4);
        if (received > total && tail.equals(Buffer.alloc(4))) return void conn.end('stream: OK\0');
        conn.pause();
        setTimeout(() => conn.resume(), 1); // about 20-60 MB/s
      });
    });
    await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));
    try {
      const started = Date.now();
      await expect(scanStream(source, total, { port: (slow.address() as net.AddressInfo).port, timeoutMs: 60_000, maxStreamBytes: 90 * MB })).resolves.toEqual({ verdict: 'clean' });
      console.log(`virus scan backpressure: 40 MB to a slow reader in ${Date.now() - started} ms, source at most ${(maxLead / MB).toFixed(2)} MB ahead`);
      expect(produced).toBe(total);
      expect(maxLead).toBeLessThan(8 * MB);
    } finally {
      await new Promise((resolve) => slow.close(resolve));
    }
  });

  test('40 MB from a fast source through the real clamd: RSS stays well below the stream size', async () => {
    const total = 40 * MB;
    let produced = 0;
    const source = new Readable({
      read() {
        if (produced >= total) return void this.push(null);
        produced += 64 * 1024;
        this.push(Buffer.alloc(64 * 1024, 'tusk clean data '));
      },
    });
    const before = process.memoryUsage().rss;
    let peak = before;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 5);
    const started = Date.now();
    try {
      await expect(scanStream(source, total, viaSocket)).resolves.toEqual({ verdict: 'clean' });
    } finally {
      clearInterval(sampler);
    }
    const growthMb = (peak - before) / MB;
    // Loose: freshly allocated chunks are garbage until the next GC, so some growth is expected.
    console.log(`virus scan: 40 MB via clamd in ${Date.now() - started} ms, RSS growth ${growthMb.toFixed(1)} MB (before ${(before / MB).toFixed(0)} MB)`);
    expect(growthMb).toBeLessThan(40);
  });
});
