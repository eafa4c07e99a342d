// The last error handler of the express app: whatever a route or a body parser throws becomes a
// short JSON error. Never a stack trace, whatever NODE_ENV says (express's own final handler
// prints one outside production), and never a 500 for input the client got wrong.
import type { ErrorRequestHandler } from 'express';
import type { Logger } from '../../lib/logger.js';

/** Codes of client errors raised by express and body-parser (their `type`, or the status). */
const CLIENT_ERROR_CODES: Record<number, string> = {
  400: 'invalid_request',
  403: 'forbidden',
  404: 'not_found',
  411: 'length_required',
  413: 'too_large',
  415: 'unsupported_media_type',
};

export function handleUncaught(logger: Logger): ErrorRequestHandler {
  return (err: unknown, req, res, _next) => {
    const e = (err ?? {}) as { status?: unknown; statusCode?: unknown; expose?: unknown; message?: unknown; type?: unknown };
    const status = typeof e.status === 'number' ? e.status : typeof e.statusCode === 'number' ? e.statusCode : 500;
    const clientError = status >= 400 && status < 500;
    if (!clientError) logger.error({ err, method: req.method, url: req.url }, 'unexpected error in a request');
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const code = clientError ? (CLIENT_ERROR_CODES[status] ?? 'invalid_request') : 'internal';
    const message = clientError
      ? e.expose !== false && typeof e.message === 'string' && e.message.length <= 200
        ? e.message
        : 'Malformed request'
      : 'Internal server error';
    res.status(clientError ? status : 500).set('Cache-Control', 'no-store').json({ error: { code, message } });
  };
}
