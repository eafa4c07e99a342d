// One structured logger (pino) for every tusk process: JSON lines on stdout, or, on a terminal,
// the same lines made readable (pino-pretty, in-process: no worker thread to lose lines at exit).
import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';
import { logContext } from './log-context.js';

export type { Logger };

export function createLogger(level: string, name: string, human = process.stdout.isTTY === true): Logger {
  // Every line carries the fields of the request it was written for (its request id).
  const options = { level, name, base: { pid: process.pid }, mixin: logContext };
  if (!human) return pino(options);
  return pino(options, pretty({ colorize: true, translateTime: 'HH:MM:ss', ignore: 'pid,hostname,name', sync: true }));
}

/** A URL as it may be shown or logged: any password in it replaced. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}
