// The request id: taken from the client's (or its proxy's) `X-Request-Id` when that is a sane
// token, generated (a UUID) otherwise; returned on every answer of the request, whichever face or
// error writes it, and written into every log line of the request (lib/log-context.ts).
import { randomUUID } from 'node:crypto';
import type { RequestHandler } from 'express';
import { runWithLogContext } from '../../lib/log-context.js';

export const REQUEST_ID_HEADER = 'X-Request-Id';

/** Printable ASCII without spaces, at most 128 characters: anything else is replaced, never logged. */
const SANE_REQUEST_ID = /^[\x21-\x7e]{1,128}$/;

export function requestIdOf(header: string | string[] | undefined): string {
  return typeof header === 'string' && SANE_REQUEST_ID.test(header) ? header : randomUUID();
}

/** The first middleware: the id goes on the answer before anything can answer. */
export const requestId: RequestHandler = (req, res, next) => {
  const id = requestIdOf(req.headers['x-request-id']);
  res.setHeader(REQUEST_ID_HEADER, id);
  runWithLogContext({ reqId: id }, next);
};
