// CORS for the answers tusk writes itself (@tus/server sets its own the same way): the origin a
// browser may read an answer from, from CORS_ORIGINS.
import type { IncomingMessage } from 'node:http';
import type { Config } from '../../config/index.js';

/**
 * Access-Control-Allow-Origin for this request: `*` with CORS_ORIGINS=*, the request's Origin when
 * it is listed, otherwise the first listed origin (a browser on any other origin cannot read it).
 */
export function allowedOrigin(req: IncomingMessage, config: Pick<Config, 'corsOrigins'>): string | undefined {
  const origin = req.headers.origin;
  if (config.corsOrigins === '*') return '*';
  return origin && config.corsOrigins.includes(origin) ? origin : config.corsOrigins[0];
}
