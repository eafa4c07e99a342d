// TRUST_PROXY decides which X-Forwarded-For entry is the client address that the per-IP creation
// rate limit counts. Black-box: real tusk processes (auth off, so only the per-IP limit applies),
// the test Redis and S3. The test client always connects from 127.0.0.1, so 127.0.0.1 plays the
// proxy in front of tusk; whatever it puts left of the last trusted hop is the client's own claim.
import { createTestBucket, tuskEnvForTests } from '../helpers/services.js';
import { createUpload } from '../helpers/tus.js';
import { startTusk, type TuskProcess } from '../helpers/tusk-process.js';

const PER_IP = 3;

describe('TRUST_PROXY: which X-Forwarded-For entry the per-IP creation limit counts', () => {
  let bucket: string;

  beforeAll(async () => {
    bucket = await createTestBucket('trust-proxy');
  });

  function start(trustProxy: string | undefined): Promise<TuskProcess> {
    return startTusk({ env: { ...tuskEnvForTests(bucket), TRUST_PROXY: trustProxy, RATE_LIMIT_CREATIONS_PER_MINUTE_IP: String(PER_IP) } });
  }

  /** Statuses of one creation per X-Forwarded-For value, in order. */
  async function creations(tusk: TuskProcess, forwardedFor: string[]): Promise<number[]> {
    const statuses: number[] = [];
    for (const xff of forwardedFor) statuses.push((await createUpload(tusk.url, { length: 1, headers: { 'X-Forwarded-For': xff } })).status);
    return statuses;
  }

  /** PER_IP + 1 values whose left-most entry changes every time, followed by `rest`. */
  const rotatingLeft = (rest: string) => Array.from({ length: PER_IP + 1 }, (_, i) => `1.2.3.${i + 1}${rest ? `, ${rest}` : ''}`);
  const limitedOnTheLast = [...Array<number>(PER_IP).fill(201), 429];

  test('TRUST_PROXY=1: the client is the right-most entry; spoofed entries left of it do not change the key', async () => {
    const tusk = await start('1');
    try {
      expect(await creations(tusk, rotatingLeft('5.6.7.8'))).toEqual(limitedOnTheLast);
      // Another client behind the same proxy has its own budget: the header is honoured, not the socket.
      expect(await creations(tusk, ['1.2.3.1, 9.9.9.9'])).toEqual([201]);
    } finally {
      await tusk.kill();
    }
  });

  test('TRUST_PROXY as addresses/CIDRs: every trusted hop is skipped from the right, the first untrusted one is the client', async () => {
    // 127.0.0.1 is the outer proxy, 10.0.0.0/8 the inner ones; 5.6.7.8 is the client.
    const tusk = await start('127.0.0.1, 10.0.0.0/8');
    try {
      expect(await creations(tusk, rotatingLeft('5.6.7.8, 10.1.2.3'))).toEqual(limitedOnTheLast);
      expect(await creations(tusk, ['9.9.9.9, 10.1.2.3'])).toEqual([201]);
    } finally {
      await tusk.kill();
    }
  });

  test.each<[string, string | undefined]>([
    ['unset', undefined],
    ['a CIDR list without the socket peer', '10.0.0.0/8,192.168.1.1'],
  ])('TRUST_PROXY %s: X-Forwarded-For is ignored, the socket address is the client', async (_label, trustProxy) => {
    const tusk = await start(trustProxy);
    try {
      // Every request claims a different client; all of them are 127.0.0.1.
      expect(await creations(tusk, rotatingLeft(''))).toEqual(limitedOnTheLast);
    } finally {
      await tusk.kill();
    }
  });
});
