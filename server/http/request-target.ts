// The one place that turns a request URL into what it names. Every authorization decision and the
// handler after it use the id returned here, and nothing else parses the URL again (@tus/server
// is handed this id, see server/tus/endpoint.ts).
//
// Rules: the path is matched case-sensitively; the query string and fragment are never part of it;
// each segment is percent-decoded exactly once and must then be an upload id (lib/upload-id.ts)
// or, for derived files, a plain file or folder name. Empty segments, dot segments, encoded
// separators and anything else are "no such route" (404), never a guess.
import { isUploadId } from '../../lib/upload-id.js';

export const TUS_PATH = '/files';

export type TusTarget = { route: 'collection' } | { route: 'upload'; id: string };

/** The path of a request target (origin-form), without query string and fragment. */
export function pathOf(rawUrl: string | undefined): string {
  const url = rawUrl ?? '';
  const end = url.search(/[?#]/);
  return end === -1 ? url : url.slice(0, end);
}

/** One path segment, percent-decoded once; undefined when the encoding is malformed. */
function decodeSegment(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}

/** The upload id a single raw path segment names, or undefined. */
export function uploadIdOfSegment(segment: string): string | undefined {
  const decoded = decodeSegment(segment);
  return isUploadId(decoded) ? decoded : undefined;
}

/** Is this request for the tus endpoint at all (exact, case-sensitive prefix)? */
export function isTusPath(rawUrl: string | undefined): boolean {
  const path = pathOf(rawUrl);
  return path === TUS_PATH || path.startsWith(`${TUS_PATH}/`);
}

/**
 * `/files` or `/files/` (the collection: creation, OPTIONS) or `/files/<id>` (one upload);
 * undefined for every other path, which is answered 404.
 */
export function tusTarget(rawUrl: string | undefined): TusTarget | undefined {
  const path = pathOf(rawUrl);
  if (path === TUS_PATH || path === `${TUS_PATH}/`) return { route: 'collection' };
  if (!path.startsWith(`${TUS_PATH}/`)) return undefined;
  const rest = path.slice(TUS_PATH.length + 1);
  if (rest.includes('/')) return undefined;
  const id = uploadIdOfSegment(rest);
  return id ? { route: 'upload', id } : undefined;
}

/**
 * The upload id in an upload URL a client sends in a header (Upload-Concat), absolute or
 * relative: the same rules as tusTarget on its path.
 */
export function uploadIdOfUrl(url: string): string | undefined {
  let path: string;
  try {
    path = new URL(url, 'http://placeholder').pathname;
  } catch {
    return undefined;
  }
  const target = tusTarget(path);
  return target?.route === 'upload' ? target.id : undefined;
}

/** A file or folder name under an upload's derived outputs: no dots-only names, no separators. */
const DERIVED_NAME = /^(?!\.{1,2}$)[A-Za-z0-9_.-]{1,128}$/;

/**
 * `<id>/<name>/<name>...` (the part of a derived-file URL after its fixed prefix) as the upload id
 * and the relative key under it, each segment decoded once; undefined for anything else.
 */
export function derivedTarget(rawRest: string): { id: string; rest: string } | undefined {
  const segments = rawRest.split('/');
  if (segments.length < 2) return undefined;
  const id = uploadIdOfSegment(segments[0]!);
  if (!id) return undefined;
  const names: string[] = [];
  for (const raw of segments.slice(1)) {
    const name = decodeSegment(raw);
    if (name === undefined || !DERIVED_NAME.test(name)) return undefined;
    names.push(name);
  }
  return { id, rest: names.join('/') };
}
