// The one parser from request URL to upload id (server/http/request-target.ts), by property:
// whatever a client sends, an id comes out only for exactly /files/<id> (one decode, any query or
// fragment ignored), and never for another spelling of the path.
import fc from 'fast-check';
import { derivedTarget, tusTarget, uploadIdOfUrl } from '../../server/http/request-target.js';
import { isUploadId } from '../../lib/upload-id.js';

const hexId = fc.stringMatching(/^[0-9a-f]{32}$/);
/** Characters that make URL tricks: separators, dots, percent signs, case, controls, unicode. */
const tricky = fc.string({ unit: fc.constantFrom('/', '.', '%', '2', 'e', 'E', 'f', 'F', '?', '#', ';', '\\', 'a', 'A', '0', ' ', '\u0000', 'é', 'files', 'FILES', '..', '//'), maxLength: 12 });
const suffix = fc.oneof(fc.constant(''), fc.string().map((s) => `?${s}`), fc.string().map((s) => `#${s}`));

/** Percent-encodes some characters of `id` (a legal spelling of the same segment). */
const encodedSpelling = (id: string) =>
  fc.array(fc.boolean(), { minLength: id.length, maxLength: id.length }).map((flags) =>
    [...id].map((c, i) => (flags[i] ? `%${c.charCodeAt(0).toString(16).toUpperCase()}` : c)).join(''),
  );

describe('tusTarget', () => {
  test('/files/<id> names the id, whatever query or fragment follows, and whatever percent-encoding spells it', () => {
    fc.assert(
      fc.property(hexId.chain((id) => fc.tuple(fc.constant(id), encodedSpelling(id), suffix)), ([id, spelled, tail]) => {
        expect(tusTarget(`/files/${spelled}${tail}`)).toEqual({ route: 'upload', id });
      }),
    );
  });

  test('an id comes out only for exactly one segment under /files/ that decodes (once) to an upload id', () => {
    fc.assert(
      fc.property(tricky, hexId, tricky, suffix, (before, id, after, tail) => {
        const url = `/files/${before}${id}${after}${tail}`;
        const target = tusTarget(url);
        const path = url.split(/[?#]/)[0]!;
        if (target?.route !== 'upload') return;
        const segment = path.slice('/files/'.length);
        expect(segment.includes('/')).toBe(false);
        expect(decodeURIComponent(segment)).toBe(target.id);
        expect(isUploadId(target.id)).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  test('any other spelling of the path (case, extra, empty or dot segments, encoded separators, double encoding) names nothing', () => {
    const forms = (id: string) => [
      `/FILES/${id}`,
      `/Files/${id}`,
      `/files/x/${id}`,
      `/files//${id}`,
      `/files/%2e/${id}`,
      `/files/./${id}`,
      `/files/../files/${id}`,
      `/files/${id}/`,
      `/files/${id}/x`,
      `/files%2F${id}`,
      `/files/%2F${id}`,
      `/files/${id}%2F`,
      `/files/${id.toUpperCase()}`,
      `/files/${id.replace(/./, '%25')}`,
      `/files/%25${id.slice(2)}`,
      `//files/${id}`,
      `/files;/${id}`,
      `/%66iles/${id}`,
      `/files/${id}%00`,
      `/files/${id};x`,
      `/files/%E0%A4%A`,
    ];
    fc.assert(
      fc.property(hexId, (id) => {
        for (const form of forms(id)) expect([form, tusTarget(form)]).toEqual([form, undefined]);
      }),
    );
  });

  test('the collection is /files and /files/ only', () => {
    expect(tusTarget('/files/')).toEqual({ route: 'collection' });
    expect(tusTarget('/files?x=1')).toEqual({ route: 'collection' });
    for (const other of ['/FILES/', '/files//', '/files/./', '/file', '/filesx']) expect(tusTarget(other)).toBeUndefined();
  });

  test('upload URLs in headers follow the same rule', () => {
    const id = 'a'.repeat(32);
    expect(uploadIdOfUrl(`http://host:1/files/${id}`)).toBe(id);
    expect(uploadIdOfUrl(`/files/${id}?x`)).toBe(id);
    for (const bad of ['/files/%E0%A4%A', `/files/x/${id}`, `/FILES/${id}`, `http://host/api/${id}`, '::::']) expect(uploadIdOfUrl(bad)).toBeUndefined();
  });
});

describe('derivedTarget', () => {
  test('yields only an upload id and plain names: no dot segments, no empty segments, no separators after one decode', () => {
    fc.assert(
      fc.property(hexId, fc.array(tricky, { minLength: 1, maxLength: 4 }), (id, names) => {
        const target = derivedTarget([id, ...names].join('/'));
        if (!target) return;
        expect(target.id).toBe(id);
        for (const name of target.rest.split('/')) {
          expect(name).not.toBe('');
          expect(name).not.toBe('.');
          expect(name).not.toBe('..');
          expect(name).toMatch(/^[A-Za-z0-9_.-]+$/);
        }
      }),
      { numRuns: 2000 },
    );
  });

  test('the forms that reached another upload name nothing', () => {
    const a = 'a'.repeat(32);
    const b = 'b'.repeat(32);
    for (const form of [`${b}/../${a}/thumbnails/160.webp`, `${b}/%2e%2e/${a}/x`, `/${a}/x`, `${a}//x`, `${a}/x%2Fy`, `${a.toUpperCase()}/x`, `${a}/.`]) {
      expect([form, derivedTarget(form)]).toEqual([form, undefined]);
    }
    expect(derivedTarget(`${a}/thumbnails/160.webp`)).toEqual({ id: a, rest: 'thumbnails/160.webp' });
  });
});
