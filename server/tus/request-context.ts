// What the tus endpoint decided about the request it is handling, for the code @tus/server calls
// back into (its hooks, getFileIdFromRequest, generateUrl, the locker): the upload id the request
// names (server/http/request-target.ts), the authenticated principal, the public base URL, and
// what the endpoint already holds or granted. One AsyncLocalStorage for all of it, so a callback
// can never see another request's id or principal.
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Lock, Locker, RequestRelease } from '@tus/utils';
import { ANONYMOUS, type Principal } from '../../hooks/auth.js';
import type { TuskError } from '../../lib/errors.js';
import type { DigestTap, ExpectedDigest } from './digest.js';
import type { DraftRules } from './draft.js';

export interface TusRequestContext {
  principal: Principal;
  /** The upload the request names; undefined for the collection (/files/). */
  id: string | undefined;
  /** Scheme, host and port of the public URL (PUBLIC_URL or the validated request host). */
  baseUrl: string;
  /** Creating a partial upload (Upload-Concat: partial). */
  creatingPartial?: boolean;
  /** Bytes reserved at creation for a deferred-length upload created with a body. */
  deferredCreationBytes?: number;
  /** The upload lock this request already holds (taken before spooling a checksummed body). */
  heldLock?: string;
  /** The refusal @tus/server answered with (its code and headers go on the response). */
  error?: TuskError;
  /** A request of the IETF draft (server/tus/draft.ts): its version's rules, and what it created. */
  draft?: DraftRequestState;
}

export interface DraftRequestState {
  rules: DraftRules;
  /** Called when a creation has stored its new upload (the 104 with its URL goes out then). */
  created?: (id: string, url: string) => void;
  /** The upload a creation made. */
  createdId?: string;
  createdUrl?: string;
  /** Hashes the request body for its Content-Digest / Repr-Digest while it streams. */
  tap?: DigestTap;
  /** A Repr-Digest for the whole upload, to remember when the creation makes it. */
  reprDigest?: ExpectedDigest[];
}

const contexts = new AsyncLocalStorage<TusRequestContext>();

export const runInTusRequest = <T>(context: TusRequestContext, fn: () => T): T => contexts.run(context, fn);

/** The context of the request being handled; outside a request, an anonymous one without an id. */
export function tusRequest(): TusRequestContext {
  return contexts.getStore() ?? { principal: ANONYMOUS, id: undefined, baseUrl: '' };
}

/**
 * A Locker that hands out the lock a request already holds as a no-op lock, so the endpoint can
 * take an upload's lock before it spools a body and @tus/server's own newLock(id) in the same
 * request does not wait for (and ask to release) the request's own lock.
 */
export class RequestScopedLocker implements Locker {
  constructor(private readonly inner: Locker) {}

  newLock(id: string): Lock {
    if (contexts.getStore()?.heldLock === id) return heldLock;
    return this.inner.newLock(id);
  }
}

const heldLock: Lock = {
  lock: async (_signal: AbortSignal, _requestRelease: RequestRelease) => {},
  unlock: async () => {},
};
