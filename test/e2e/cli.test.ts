// The command-line client (`node dist/tusk.js upload|status ...`, cli/) against a real tusk
// (`all`, S3 on the test RGW, scanning off), black-box: its exit codes, what it prints, what ends
// up in storage. A TCP proxy in front of tusk (test/helpers/direct.ts) plays the slow or silent
// network and counts the bytes that crossed it.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { countingProxy, JWT_SECRET, tokenFor } from '../helpers/direct.js';
import { makePng } from '../helpers/fixtures-media.js';
import { createTestBucket, makeRandomFile, tuskEnvForTests } from '../helpers/services.js';
import { offsetOf, storedSha256, uploadIdOf, waitFor } from '../helpers/tus.js';
import { runTuskCli, startTusk, type TuskProcess } from '../helpers/tusk-process.js';

const MiB = 1024 * 1024;

let tusk: TuskProcess;
let bucket: string;
let dir: string;
let resumeFile: string;

/** The client against `tusk` (or `TUSK_URL` in `env`), remembering unfinished uploads in this run's temp dir. */
const cli = (args: string[], env: Record<string, string> = {}) =>
  runTuskCli(args, { env: { TUSK_URL: `${tusk.url}/files/`, TUSK_RESUME_FILE: resumeFile, ...env } });

const event = (run: ReturnType<typeof cli>, name: string) => run.events().find((e) => e.event === name);

/** What the client printed, for a failing assertion's message. */
const printed = (run: ReturnType<typeof cli>) => `--- stdout ---\n${run.stdout()}\n--- stderr ---\n${run.stderr()}`;

async function exitCode(run: ReturnType<typeof cli>): Promise<number | null> {
  const exit = await run.exited;
  if (exit.signal) throw new Error(`the client died of ${exit.signal}\n${printed(run)}`);
  return exit.code;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'tusk-cli-'));
  resumeFile = path.join(dir, 'state', 'uploads.json');
  bucket = await createTestBucket('cli');
  // Only images and videos: a random file is then rejected (type_not_allowed), for --wait's exit code.
  tusk = await startTusk({ mode: 'all', env: { ...tuskEnvForTests(bucket), SCAN_REQUIRED: 'false', ALLOWED_TYPES: 'image/*,video/*' } });
});

afterAll(async () => {
  await tusk?.kill();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('uploads a file byte-identical and prints its upload URL', async () => {
  const file = await makeRandomFile(dir, 5 * MiB + 123);
  const run = cli(['upload', file.path, '--chunk-size', '2MiB']);
  expect(await exitCode(run)).toBe(0);
  const url = /: uploaded (http\S+)/.exec(run.stdout())?.[1];
  if (!url) throw new Error(`no upload URL printed\n${printed(run)}`);
  expect(await storedSha256({ kind: 's3', bucket }, uploadIdOf(url))).toBe(file.sha256);
});

test('after Ctrl-C the same command resumes from the offset the server has, not from 0, and ends byte-identical', async () => {
  const file = await makeRandomFile(dir, 8 * MiB);
  // 2 MiB/s: the first run is still sending when it is interrupted.
  const proxy = await countingProxy(tusk.port, { upBytesPerSecond: 2 * MiB });
  try {
    const env = { TUSK_URL: `${proxy.url}/files/` };
    const first = cli(['upload', file.path, '--json', '--chunk-size', '1MiB'], env);
    // Past 3 MiB sent, at least the first two 1 MiB chunks were accepted.
    await waitFor('3 MiB sent', () => first.events().some((e) => e.event === 'progress' && Number(e.sent) >= 3 * MiB), 60_000);
    expect(await first.kill('SIGINT')).toEqual({ code: 130, signal: null });
    expect(first.stderr()).toMatch(/run the same command again to resume/);
    const url = event(first, 'created')?.url as string;
    expect(event(first, 'interrupted')).toMatchObject({ url, resumable: true });
    // What the slowed proxy still buffers of the first run goes too: the server's offset is final
    // once its HEAD answers (it waits for the cut PATCH to save what arrived).
    proxy.dropConnections();
    const offset = await offsetOf(url);
    expect(offset).toBeGreaterThanOrEqual(2 * MiB);
    expect(offset).toBeLessThan(file.size);

    proxy.setUpRate(undefined);
    const upBefore = proxy.bytes().up;
    const second = cli(['upload', file.path, '--json', '--chunk-size', '1MiB'], env);
    expect(await exitCode(second)).toBe(0);
    expect(event(second, 'created')).toBeUndefined();
    expect(event(second, 'resumed')).toMatchObject({ url, offset });
    expect(event(second, 'uploaded')).toMatchObject({ url, resumed_from: offset });
    // Only the rest of the file crossed the network (and a few requests' headers).
    expect(proxy.bytes().up - upBefore).toBeLessThan(file.size - offset + 64 * 1024);
    expect(await storedSha256({ kind: 's3', bucket }, uploadIdOf(url))).toBe(file.sha256);
    // A finished upload is forgotten: the resume file no longer names it.
    expect(await readFile(resumeFile, 'utf8')).not.toContain(uploadIdOf(url));
  } finally {
    await proxy.close();
  }
});

test('a connection on which nothing moves any more is dropped after --idle-timeout and the upload goes on', async () => {
  const file = await makeRandomFile(dir, 6 * MiB);
  // After 2 MiB the connection goes silent (no FIN, no RST), as when a network goes away.
  const proxy = await countingProxy(tusk.port, { freezeAfterUpBytes: 2 * MiB });
  try {
    const run = cli(['upload', file.path, '--json', '--chunk-size', '4MiB', '--idle-timeout', '2s'], { TUSK_URL: `${proxy.url}/files/` });
    expect(await exitCode(run)).toBe(0);
    expect(event(run, 'retry')).toMatchObject({ reason: expect.stringMatching(/nothing moved for 2 s/) });
    const url = event(run, 'uploaded')?.url as string;
    expect(await storedSha256({ kind: 's3', bucket }, uploadIdOf(url))).toBe(file.sha256);
  } finally {
    await proxy.close();
  }
});

test('--wait follows processing until the upload is ready and prints its tasks', async () => {
  const png = await makePng(path.join(dir, 'picture.png'), 64, 48);
  const run = cli(['upload', '--wait', png]);
  expect(await exitCode(run)).toBe(0);
  const out = run.stdout();
  expect(out).toMatch(/^Status\s+ready$/m);
  expect(out).toMatch(/^\s+metadata\s+done$/m);
  expect(out).toMatch(/^\s+thumbnail\s+done$/m);
  expect(out).toMatch(/^\s+thumbnail \d+px (webp|jpeg)\s+http/m);
  // While it waited, it told how processing went (stderr is no terminal here: one line per change).
  expect(run.stderr()).toMatch(/picture\.png: ready: /);
});

test('--wait exits 3 when processing rejects the upload, with the reason', async () => {
  const file = await makeRandomFile(dir, 64 * 1024);
  const run = cli(['upload', '--wait', '--json', file.path]);
  expect(await exitCode(run)).toBe(3);
  const processed = event(run, 'processed')?.document as { status: string; reason: { code: string } };
  expect(processed).toMatchObject({ status: 'rejected', reason: { code: 'type_not_allowed' } });
});

test('tusk status prints the document; an unknown id exits 4 with the server error code, a malformed one 2', async () => {
  const file = await makeRandomFile(dir, 1000);
  const up = cli(['upload', '--json', file.path]);
  expect(await exitCode(up)).toBe(0);
  const url = event(up, 'uploaded')?.url as string;
  const id = uploadIdOf(url);

  const status = cli(['status', id]);
  expect(await exitCode(status)).toBe(0);
  expect(status.stdout()).toMatch(new RegExp(`^Upload\\s+${id}\\s+\\(${path.basename(file.path)}, 1000 B\\)$`, 'm'));
  expect(status.stdout()).toMatch(/^Status\s+\w+/m);
  expect(status.stdout()).toMatch(/^\s+virus scan\s+\w+/m);

  const json = cli(['status', '--json', url]);
  expect(await exitCode(json)).toBe(0);
  expect(JSON.parse(json.stdout())).toMatchObject({ upload_id: id, filename: path.basename(file.path), size: 1000 });

  const unknown = cli(['status', '0123456789abcdef0123456789abcdef']);
  expect(await exitCode(unknown)).toBe(4);
  expect(unknown.stderr()).toMatch(/404 Not Found \(not_found: /);

  const malformed = cli(['status', 'not-an-upload-id']);
  expect(await exitCode(malformed)).toBe(2);
});

describe('with authentication on', () => {
  let authTusk: TuskProcess;
  beforeAll(async () => {
    authTusk = await startTusk({ mode: 'server', env: { ...tuskEnvForTests(bucket), AUTH_JWT_SECRET: JWT_SECRET } });
  });
  afterAll(async () => {
    await authTusk?.kill();
  });

  test('the token (TUSK_TOKEN or --token) goes as a Bearer token; without one the exit code is 5', async () => {
    const file = await makeRandomFile(dir, 300 * 1024);
    const endpoint = `${authTusk.url}/files/`;

    const anonymous = cli(['upload', '--json', file.path], { TUSK_URL: endpoint });
    expect(await exitCode(anonymous)).toBe(5);
    expect(event(anonymous, 'error')).toMatchObject({ code: 'unauthorized', exit_code: 5 });

    const alice = await tokenFor('alice');
    const up = cli(['upload', '--json', file.path], { TUSK_URL: endpoint, TUSK_TOKEN: alice });
    expect(await exitCode(up)).toBe(0);
    const id = uploadIdOf(event(up, 'uploaded')?.url as string);
    expect(await storedSha256({ kind: 's3', bucket }, id)).toBe(file.sha256);

    const status = cli(['status', '--json', '--token', alice, id], { TUSK_URL: endpoint });
    expect(await exitCode(status)).toBe(0);
    expect(JSON.parse(status.stdout())).toMatchObject({ upload_id: id });

    const noToken = cli(['status', id], { TUSK_URL: endpoint });
    expect(await exitCode(noToken)).toBe(5);
    expect(noToken.stderr()).toMatch(/401 Unauthorized \(unauthorized: /);

    // Another user's upload is not found, as an unknown one.
    const bob = cli(['status', id], { TUSK_URL: endpoint, TUSK_TOKEN: await tokenFor('bob') });
    expect(await exitCode(bob)).toBe(4);
  });
});
