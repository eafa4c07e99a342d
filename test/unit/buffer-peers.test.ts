// The receiving side of forwarded PATCH bodies (lib/stores/s3-buffer-peers.ts) when the holder
// cannot be reached: the body is left untouched for the hand-over, one warning names the setting
// to fix, and the holder is not tried again for a while (each try could cost the accept timeout).
// A real socket on loopback; the holder's side is tested with the write buffer
// (test/integration/s3-store.test.ts).
import net from 'node:net';
import { Readable, Writable } from 'node:stream';
import { pino } from 'pino';
import { PeerClient } from '../../lib/stores/s3-buffer-peers.js';

async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

test('a holder that cannot be reached: the body is untouched, one warning, and no new attempt for a while', async () => {
  const lines: string[] = [];
  const log = pino(
    { level: 'warn' },
    new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    }),
  );
  const client = new PeerClient(log);
  const port = await closedPort();
  // A listener appearing on that port after the first failure must not be tried either.
  let connections = 0;
  const late = net.createServer((s) => {
    connections++;
    s.destroy();
  });
  try {
    const peer = { url: `http://127.0.0.1:${port}`, token: 'x'.repeat(32) };
    const body = Readable.from([Buffer.alloc(1024, 1)]);
    expect(await client.forward(peer, '0'.repeat(32), 0, 1024, body)).toBe('unreachable');
    expect(body.readableFlowing).toBeNull(); // never piped: the hand-over still has the whole body
    expect(lines.filter((l) => l.includes('UPLOAD_BUFFER_PEER_URL'))).toHaveLength(1);

    await new Promise<void>((resolve) => late.listen(port, '127.0.0.1', resolve));
    expect(await client.forward(peer, '0'.repeat(32), 0, 1024, Readable.from([Buffer.alloc(1024, 1)]))).toBe('unreachable');
    expect(connections).toBe(0);
    expect(lines).toHaveLength(1);
  } finally {
    client.close();
    await new Promise((resolve) => late.close(resolve));
  }
});
