// Fields that go into every log line written while one piece of work is handled (a request: its
// request id), whichever module writes the line and however deep in async code it is. lib/logger.ts
// adds them (pino's mixin); server/http/request-id.ts sets them for each request.
import { AsyncLocalStorage } from 'node:async_hooks';

export type LogContext = Readonly<Record<string, string>>;

const contexts = new AsyncLocalStorage<LogContext>();

/** Runs `fn` (and everything it starts) with `fields` in every log line. */
export const runWithLogContext = <T>(fields: LogContext, fn: () => T): T => contexts.run(fields, fn);

/** A copy of the fields of the work being handled now (pino merges a line's own fields into it); empty outside of one. */
export const logContext = (): Record<string, string> => ({ ...contexts.getStore() });
