// One structured logger (pino, JSON lines on stdout) for every tusk process.
import { pino, type Logger } from 'pino';
import { logContext } from './log-context.js';

export type { Logger };

export function createLogger(level: string, name: string): Logger {
  // Every line carries the fields of the request it was written for (its request id).
  return pino({ level, name, base: { pid: process.pid }, mixin: logContext });
}
