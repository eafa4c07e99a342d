// JSON errors of the API: `{ "error": { "code", "message", ...details } }` with the HTTP status.
import type { Response } from 'express';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export function sendError(res: Response, status: number, code: string, message: string, details: Record<string, unknown> = {}): void {
  if (res.headersSent) return;
  res.status(status).set('Cache-Control', 'no-store').json({ error: { code, message, ...details } });
}

export function sendApiError(res: Response, err: ApiError): void {
  if (res.headersSent) return;
  res.set(err.headers);
  sendError(res, err.status, err.code, err.message, err.details);
}
