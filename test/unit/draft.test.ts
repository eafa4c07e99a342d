// The pure parts of the IETF draft face (server/tus/draft.ts, server/tus/digest.ts): structured
// field values, interop versions, filenames from Content-Disposition, digest fields, the raw 104
// writer. Hostile values by property: nothing throws but a catalogue refusal, nothing invalid is
// taken as valid.
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import fc from 'fast-check';
import { TuskError } from '../../lib/errors.js';
import { DigestTap, parseDigestField } from '../../server/tus/digest.js';
import { draftRulesOf, filenameOf, problemBody, requestCompletes, rulesOf, sendInterim104, sfBoolean, sfInteger, uploadLimit } from '../../server/tus/draft.js';

const reqWith = (headers: Record<string, string>, minor = 1) => ({ headers: Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v])), httpVersionMajor: 1, httpVersionMinor: minor }) as unknown as IncomingMessage;

describe('structured field values', () => {
  test('sfInteger takes 1-15 digits only', () => {
    expect([sfInteger('0'), sfInteger(' 42 '), sfInteger('007'), sfInteger('999999999999999')]).toEqual([0, 42, 7, 999_999_999_999_999]);
    for (const bad of ['', '-1', '1e3', '1.0', '0x10', '9999999999999999', '1, 2', '+1', undefined]) expect([bad, sfInteger(bad)]).toEqual([bad, undefined]);
    expect(sfInteger(['1', '2'])).toBeUndefined();
    fc.assert(
      fc.property(fc.string(), (s) => {
        const v = sfInteger(s);
        expect(v === undefined || (Number.isSafeInteger(v) && v >= 0)).toBe(true);
      }),
    );
  });

  test('sfBoolean takes ?0 and ?1 only', () => {
    expect([sfBoolean('?1'), sfBoolean('?0'), sfBoolean(' ?1 ')]).toEqual([true, false, true]);
    for (const bad of ['1', 'true', '?2', '?1;a', '', '?1, ?0', undefined]) expect(sfBoolean(bad)).toBeUndefined();
  });

  test('completeness: Upload-Incomplete in interop 3 (absent on an append = last), Upload-Complete later', () => {
    const v3 = rulesOf(3);
    expect(requestCompletes(reqWith({ 'Upload-Incomplete': '?1' }), v3, true)).toBe(false);
    expect(requestCompletes(reqWith({ 'Upload-Incomplete': '?0' }), v3, true)).toBe(true);
    expect(requestCompletes(reqWith({}), v3, true)).toBeUndefined();
    expect(requestCompletes(reqWith({}), v3, false)).toBe(true);
    expect(requestCompletes(reqWith({ 'Upload-Incomplete': 'x' }), v3, false)).toBeUndefined();
    const v8 = rulesOf(8);
    expect(requestCompletes(reqWith({ 'Upload-Complete': '?1' }), v8, false)).toBe(true);
    expect(requestCompletes(reqWith({ 'Upload-Incomplete': '?0' }), v8, false)).toBeUndefined();
  });
});

describe('interop versions', () => {
  test('3 to 8 are served, anything else is a 412 naming them, no header is tus', () => {
    expect(draftRulesOf(reqWith({}))).toBeUndefined();
    for (const v of [3, 4, 5, 6, 7, 8]) expect(draftRulesOf(reqWith({ 'Upload-Draft-Interop-Version': String(v) }))?.version).toBe(v);
    for (const bad of ['2', '9', '', 'eight', '8.0', '-3']) {
      expect(() => draftRulesOf(reqWith({ 'Upload-Draft-Interop-Version': bad }))).toThrow(TuskError);
    }
  });

  test('what the versions disagree on', () => {
    expect([3, 4, 5, 6, 7, 8].map((v) => rulesOf(v as 3).headStatus)).toEqual([204, 204, 200, 200, 200, 200]);
    expect([3, 4, 5, 6, 7, 8].map((v) => rulesOf(v as 3).appendStatus)).toEqual([201, 201, 201, 201, 204, 204]);
    expect([3, 4, 5, 6, 7, 8].map((v) => rulesOf(v as 3).partialUploadType)).toEqual([false, false, false, true, true, true]);
    expect([3, 4, 5, 6, 7, 8].map((v) => rulesOf(v as 3).progress)).toEqual([false, false, true, true, true, true]);
    expect(uploadLimit(rulesOf(6), 100, 10.7)).toBe('max-size=100, expires=10');
    expect(uploadLimit(rulesOf(8), 100, -5)).toBe('max-size=100, max-age=0');
    expect(uploadLimit(rulesOf(8), 100, undefined)).toBe('max-size=100');
  });

  test('problem details carry the IANA type only where the version defines it', () => {
    const err = new TuskError('invalid_request', 'inconsistent', { problemType: 'inconsistent-upload-length' });
    expect(problemBody(err, rulesOf(8)).type).toBe('https://iana.org/assignments/http-problem-types#inconsistent-upload-length');
    expect(problemBody(err, rulesOf(6)).type).toBe('about:blank');
    const mismatch = new TuskError('offset_mismatch', 'x', { problemType: 'mismatching-upload-offset', expectedOffset: 5, providedOffset: 3 });
    expect(problemBody(mismatch, rulesOf(6))).toMatchObject({ type: 'https://iana.org/assignments/http-problem-types#mismatching-upload-offset', 'expected-offset': 5, 'provided-offset': 3, code: 'offset_mismatch', status: 409 });
  });
});

describe('Content-Disposition filename', () => {
  test('filename* (UTF-8) over filename, quoted or token; only a base name', () => {
    expect(filenameOf('inline; filename="a b.txt"')).toBe('a b.txt');
    expect(filenameOf('attachment; filename=plain.bin')).toBe('plain.bin');
    expect(filenameOf(`inline; filename="fallback.txt"; filename*=UTF-8''%E2%82%AC%20rates.csv`)).toBe('€ rates.csv');
    expect(filenameOf('inline; filename="say \\"hi\\".txt"')).toBe('say "hi".txt');
    expect(filenameOf('inline; filename="../../etc/passwd"')).toBe('passwd');
    expect(filenameOf('inline; filename="C:\\\\Windows\\\\evil.exe"')).toBe('evil.exe');
  });

  test('nothing usable: no filename', () => {
    for (const bad of ['inline', 'inline; filename=""', 'inline; filename="a\u0001b"', 'inline; filename=".."', `inline; filename*=UTF-8''%E2%ZZ`, `inline; filename="${'x'.repeat(3000)}"`]) {
      expect([bad.slice(0, 30), filenameOf(bad)]).toEqual([bad.slice(0, 30), undefined]);
    }
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (s) => {
        const name = filenameOf(`inline; filename="${s}"; filename*=UTF-8''${s}`);
        // eslint-disable-next-line no-control-regex
        expect(name === undefined || (name.length <= 255 && !/[/\\\u0000-\u001f]/.test(name))).toBe(true);
      }),
    );
  });
});

describe('digest fields (RFC 9530)', () => {
  const sha256 = (b: Buffer) => createHash('sha256').update(b).digest();

  test('sha-256 and sha-512 are read, other algorithms ignored, malformed fields refused', () => {
    const d = sha256(Buffer.from('abc'));
    expect(parseDigestField('Content-Digest', `sha-256=:${d.toString('base64')}:`)).toEqual([{ algorithm: 'sha-256', value: d }]);
    expect(parseDigestField('Content-Digest', `md5=:${Buffer.alloc(16).toString('base64')}:, unixsum=:AAAA:`)).toBeUndefined();
    expect(parseDigestField('Content-Digest', undefined)).toBeUndefined();
    for (const bad of ['sha-256', 'sha-256=abc', 'sha-256=:abc', `sha-256=:${Buffer.alloc(31).toString('base64')}:`, 'SHA-256=:AAAA:', 'x'.repeat(5000)]) {
      expect(() => parseDigestField('Content-Digest', bad)).toThrow(TuskError);
    }
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (s) => {
        try {
          parseDigestField('Repr-Digest', s);
        } catch (err) {
          expect(err).toBeInstanceOf(TuskError);
        }
      }),
    );
  });

  test('the tap passes bytes through and fails the stream when the digest does not match', async () => {
    const body = Buffer.from('hello, world');
    const run = async (expected: Buffer) => {
      const tap = new DigestTap([{ field: 'Content-Digest', expected: [{ algorithm: 'sha-256', value: expected }] }]);
      const out: Buffer[] = [];
      tap.on('data', (c: Buffer) => out.push(c));
      const done = new Promise<string | undefined>((resolve) => {
        tap.on('error', () => resolve(tap.mismatch));
        tap.on('end', () => resolve(undefined));
      });
      tap.write(body.subarray(0, 5));
      tap.end(body.subarray(5));
      return { failed: await done, out: Buffer.concat(out) };
    };
    expect(await run(sha256(body))).toEqual({ failed: undefined, out: body });
    expect((await run(sha256(Buffer.from('other')))).failed).toBe('Content-Digest');
  });
});

describe('the 104 writer', () => {
  function fakeRes(headersSent = false) {
    const written: string[] = [];
    const res = { headersSent, destroyed: false, _writeRaw: (data: string) => written.push(data) } as unknown as ServerResponse;
    return { res, written };
  }

  test('writes a 104 with the interop version ahead of the final answer', () => {
    const { res, written } = fakeRes();
    expect(sendInterim104(reqWith({}), res, rulesOf(8), { Location: 'http://h/files/x' })).toBe(true);
    expect(written).toEqual(['HTTP/1.1 104 Upload Resumption Supported\r\nUpload-Draft-Interop-Version: 8\r\nLocation: http://h/files/x\r\n\r\n']);
  });

  test('never to HTTP/1.0, never after the final head, never a value with CR/LF', () => {
    const a = fakeRes();
    expect(sendInterim104(reqWith({}, 0), a.res, rulesOf(8), {})).toBe(false);
    const b = fakeRes(true);
    expect(sendInterim104(reqWith({}), b.res, rulesOf(8), {})).toBe(false);
    const c = fakeRes();
    expect(sendInterim104(reqWith({}), c.res, rulesOf(8), { Location: 'x\r\nSet-Cookie: a=b' })).toBe(false);
    expect([...a.written, ...b.written, ...c.written]).toEqual([]);
  });
});
