// The public base URL (scheme://host[:port]) of a request: PUBLIC_URL when set, otherwise the
// request's own host, which is only used once it is a well-formed host name or address. With a
// trusted proxy (TRUST_PROXY) express takes scheme and host from X-Forwarded-Proto/-Host; the
// same validation applies to them. Every Location and every URL in a JSON answer is built here.
import type { NextFunction, Request, Response } from 'express';
import type { Config } from '../../config/index.js';
import { isTusPath } from './request-target.js';

const LABEL = '[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?';
const HOST = new RegExp(`^(?:${LABEL}(?:\\.${LABEL})*\\.?|\\[[0-9A-Fa-f:.]{2,45}\\])(?::\\d{1,5})?$`);

export function isValidHost(host: string | undefined): host is string {
  return typeof host === 'string' && host.length <= 260 && HOST.test(host);
}

export function publicBaseUrl(req: Request, config: Pick<Config, 'publicUrl'>): string {
  if (config.publicUrl) return config.publicUrl;
  return `${req.protocol}://${req.host}`;
}

/**
 * Refuses a request whose host (Host, or X-Forwarded-Host from a trusted proxy) is not a host
 * name or address: 400 before any handler sees it, so nothing can echo it into a URL.
 */
export function requireValidHost(req: Request, res: Response, next: NextFunction): void {
  let host: string | undefined;
  try {
    host = req.host;
  } catch {
    host = undefined;
  }
  if (isValidHost(host) && isValidHost(req.headers.host)) return next();
  res.set('Connection', 'close');
  if (isTusPath(req.url)) {
    res.status(400).set({ 'Content-Type': 'text/plain; charset=utf-8', 'Tus-Resumable': '1.0.0' }).send('Invalid Host header\n');
  } else {
    res.status(400).json({ error: { code: 'invalid_request', message: 'Invalid Host header' } });
  }
}
