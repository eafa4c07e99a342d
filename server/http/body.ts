// JSON request bodies of the API and Companion routes: parsed with a size bound, validated with a
// zod schema into the catalogue's invalid_request, and async handlers whose errors become the
// catalogue's JSON errors.
import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import type { z } from 'zod';
import { TuskError } from '../../lib/errors.js';
import type { Logger } from '../../lib/logger.js';
import { sendJsonError, toTuskError } from './errors.js';

/** JSON bodies: at most 1 MB (malformed JSON, a bad charset: 4xx by the app's error handler). */
export const jsonBody = express.json({ limit: '1mb' });

export function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  const parsed = schema.safeParse(body ?? {});
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`);
    throw new TuskError('invalid_request', issues.join('; '), { issues });
  }
  return parsed.data;
}

/** An async route handler: whatever it throws is answered from the catalogue. */
export function handle(logger: Logger, fn: (req: Request, res: Response) => Promise<void>): RequestHandler {
  return (req: Request, res: Response, _next: NextFunction) => {
    fn(req, res).catch((err: unknown) => sendJsonError(res, toTuskError(err, logger, { method: req.method, path: req.path })));
  };
}
