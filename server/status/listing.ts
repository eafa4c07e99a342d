// GET /api/uploads: the caller's uploads, newest first, a page at a time, optionally only some
// statuses. Owner-scoped by construction: it reads the caller's own index (hooks/ownership.ts),
// never anyone else's, so there is no id in the request to authorize.
//
//   ?limit=1..100 (default 20)   ?status=ready,failed   ?cursor=<next_cursor of the previous page>
//
// Answer: { uploads: [<status document>...], next_cursor: string | null }. A cursor is opaque to
// clients (base64url of "<creation ms>.<upload id>"); anything that is not one is 400.
import type { Request } from 'express';
import type { ListingCursor } from '../../hooks/ownership.js';
import { TuskError } from '../../lib/errors.js';
import { isUploadId } from '../../lib/upload-id.js';
import { STATUSES, type UploadStatus } from '../../lib/upload-status.js';

export const LISTING_DEFAULT_LIMIT = 20;
export const LISTING_MAX_LIMIT = 100;
/** Index entries one request reads at most while filtering by status; the page then ends early, with a cursor. */
export const LISTING_SCAN_BUDGET = 1000;

export interface ListingQuery {
  limit: number;
  statuses?: ReadonlySet<UploadStatus>;
  after?: ListingCursor;
}

const PARAMS = new Set(['limit', 'status', 'cursor']);

function invalid(message: string): TuskError {
  return new TuskError('invalid_request', message);
}

export function encodeCursor(c: ListingCursor): string {
  return Buffer.from(`${c.createdMs}.${c.id}`).toString('base64url');
}

export function decodeCursor(raw: string): ListingCursor | undefined {
  if (!/^[A-Za-z0-9_-]{1,80}$/.test(raw)) return undefined;
  const m = /^(\d{1,15})\.([0-9a-f]{32})$/.exec(Buffer.from(raw, 'base64url').toString('latin1'));
  if (!m || !isUploadId(m[2] as string)) return undefined;
  return { createdMs: Number(m[1]), id: m[2] as string };
}

/** The listing's query string, validated; throws TuskError invalid_request (400) naming the problem. */
export function parseListingQuery(req: Request): ListingQuery {
  const search = new URL(req.originalUrl, 'http://x').searchParams;
  const seen = new Set<string>();
  for (const name of search.keys()) {
    if (!PARAMS.has(name)) throw invalid(`Unknown parameter "${name.slice(0, 40)}"; the listing takes limit, status and cursor`);
    if (seen.has(name)) throw invalid(`Parameter "${name}" given more than once`);
    seen.add(name);
  }
  const query: ListingQuery = { limit: LISTING_DEFAULT_LIMIT };
  const limit = search.get('limit');
  if (limit !== null) {
    if (!/^[0-9]{1,3}$/.test(limit) || Number(limit) < 1 || Number(limit) > LISTING_MAX_LIMIT) throw invalid(`limit must be a whole number from 1 to ${LISTING_MAX_LIMIT}`);
    query.limit = Number(limit);
  }
  const status = search.get('status');
  if (status !== null) {
    const wanted = status.split(',');
    const bad = wanted.find((s) => !(STATUSES as readonly string[]).includes(s));
    if (bad !== undefined) throw invalid(`status must be a comma-separated list of ${STATUSES.join(', ')}`);
    query.statuses = new Set(wanted as UploadStatus[]);
  }
  const cursor = search.get('cursor');
  if (cursor !== null) {
    const after = decodeCursor(cursor);
    if (!after) throw invalid('cursor is not one this server gave (use next_cursor of the previous page)');
    query.after = after;
  }
  return query;
}
