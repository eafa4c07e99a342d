// The API server's side of the metrics (definitions: lib/metrics.ts): every answer timed by method,
// route template and status; the tus endpoint's requests and error answers under tusd's names;
// error answers of every face by catalogue code (the Tusk-Error-Code header every one carries);
// and GET /metrics on the API port where the configuration allows it (MetricsConfig.onApiPort).
import type { Request, RequestHandler } from 'express';
import type { Config } from '../../config/index.js';
import { Metrics, metricsAuthorized, metricsUnauthorized } from '../../lib/metrics.js';
import { ERROR_CODE_HEADER, sendJsonError } from './errors.js';
import { isTusPath, TUS_PATH, tusTarget } from './request-target.js';

/** Status of a request whose client left before any answer was written (as nginx logs it). */
const CLIENT_LEFT = 499;

/**
 * The route template of a request: tus's two, the express route that answered, `<prefix>/*` for
 * an answer of a router's middleware before any route (authentication, the ownership check), or
 * `unmatched`.
 */
function routeOf(req: Request): string {
  if (isTusPath(req.originalUrl)) {
    const target = tusTarget(req.originalUrl);
    return target?.route === 'collection' ? `${TUS_PATH}/` : target ? `${TUS_PATH}/:id` : 'unmatched';
  }
  const path = (req.route as { path?: unknown } | undefined)?.path;
  if (typeof path === 'string') return `${req.baseUrl}${path}`;
  return req.baseUrl ? `${req.baseUrl}/*` : 'unmatched';
}

/** Counts and times every request once its answer is written (or its client is gone). */
export function observeRequests(metrics: Metrics): RequestHandler {
  return (req, res, next) => {
    const started = process.hrtime.bigint();
    res.once('close', () => {
      const status = res.headersSent ? res.statusCode : CLIENT_LEFT;
      const route = routeOf(req);
      // The method after X-HTTP-Method-Override (the tus endpoint applies it to the request).
      const method = Metrics.method(req.method);
      metrics.httpDuration.observe({ method, route, status: String(status) }, Number(process.hrtime.bigint() - started) / 1e9);
      const answeredError = status >= 400 && status !== CLIENT_LEFT;
      const header = res.getHeader(ERROR_CODE_HEADER);
      const code = typeof header === 'string' ? header : 'none';
      if (answeredError) metrics.httpErrors.inc({ route, status: String(status), code });
      if (isTusPath(req.originalUrl)) {
        metrics.tusRequests.inc({ method });
        if (answeredError) metrics.tusErrors.inc({ status: String(status), code });
      }
    });
    next();
  };
}

/**
 * GET /metrics on the API port, when allowed (MetricsConfig.onApiPort): with METRICS_TOKEN
 * (Bearer), or without one only while the port is private. Otherwise /metrics is no route here;
 * the start-up announcement says why (lib/metrics.ts metricsSummary).
 */
export function metricsRoute(metrics: Metrics, config: Config): RequestHandler | undefined {
  const m = config.metrics;
  if (!m.onApiPort) return undefined;
  return (req, res, next) => {
    if (!metricsAuthorized(req.headers.authorization, m.token)) {
      sendJsonError(res, metricsUnauthorized());
      return;
    }
    metrics.render().then(({ contentType, body }) => {
      res.set({ 'Content-Type': contentType, 'Cache-Control': 'no-store' }).send(body);
    }, next);
  };
}
