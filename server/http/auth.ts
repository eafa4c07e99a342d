// Authentication as express middleware (the API and Companion routes; the tus endpoint calls the
// authenticator itself): the principal goes on `res.locals.principal`, a refusal is the catalogue's
// JSON error (401 with `WWW-Authenticate: Bearer`, or 503 when the keys cannot be fetched).
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { AuthenticateOptions, Authenticator, Principal } from '../../hooks/auth.js';
import { TuskError } from '../../lib/errors.js';
import { sendJsonError, unavailable } from './errors.js';

/** The principal requireAuth put on the response (throws if the route was not protected). */
export function principalOf(res: Response): Principal {
  const principal = res.locals.principal as Principal | undefined;
  if (!principal) throw new Error('route is not behind requireAuth');
  return principal;
}

export function requireAuth(authenticator: Authenticator, opts: AuthenticateOptions = {}): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    authenticator.authenticate(req, opts).then(
      (principal) => {
        res.locals.principal = principal;
        next();
      },
      (err: unknown) => sendJsonError(res, err instanceof TuskError ? err : unavailable('Authentication failed')),
    );
  };
}
