// What every command of the command-line client shares: exit codes, the error that carries one,
// the options common to `tusk upload` and `tusk status`, and where the server is.
import os from 'node:os';
import { parseArgs } from 'node:util';

/** The exit codes of the command-line client (README.md, "Command-line client", lists them). */
export const EXIT = {
  ok: 0,
  /** An upload or a request failed: network gone after every retry, or a refusal not below. */
  failed: 1,
  /** The command line is wrong: unknown option, bad value, a file that cannot be read. */
  usage: 2,
  /** `--wait`: processing ended `rejected` or `failed`. */
  processing: 3,
  /** No such upload (404; another user's is 404 too) or it expired (410). */
  notFound: 4,
  /** 401/403 for want of a (valid) token or of the right to act on the upload. */
  auth: 5,
  /** Ctrl-C (SIGINT), the shell convention 128 + 2; SIGTERM gives 143. */
  interrupted: 130,
} as const;

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.failed,
    /** The server's error code (JSON `error.code`, `Tusk-Error-Code`), when it gave one. */
    readonly code?: string,
  ) {
    super(message);
  }
}

/** Thrown once the user interrupted: the command stops cleanly and says how to go on. */
export class Interrupted extends Error {
  constructor(readonly signal: NodeJS.Signals) {
    super(`interrupted (${signal})`);
  }
}

/** 128 + the signal's number, as shells report a process ended by it (130 for SIGINT). */
export function exitOfSignal(signal: NodeJS.Signals): number {
  return 128 + (os.constants.signals[signal] ?? 0);
}

/** The exit code of a refusal: by tusk's error code when there is one, else by the HTTP status. */
export function exitCodeOf(status: number, code?: string): number {
  if (code === 'unauthorized' || code === 'forbidden') return EXIT.auth;
  if (code === 'not_found' || code === 'expired' || code === 'gone') return EXIT.notFound;
  if (code) return EXIT.failed;
  if (status === 401 || status === 403) return EXIT.auth;
  if (status === 404 || status === 410) return EXIT.notFound;
  return EXIT.failed;
}

export const DEFAULT_ENDPOINT = 'http://127.0.0.1:1080/files/';

export const COMMON_OPTIONS = {
  endpoint: { type: 'string', short: 'e' },
  token: { type: 'string', short: 't' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

export const COMMON_HELP = `  -e, --endpoint <url>       the tus endpoint (default: $TUSK_URL, else ${DEFAULT_ENDPOINT})
  -t, --token <jwt>          sent as "Authorization: Bearer <jwt>" (default: $TUSK_TOKEN; prefer
                             the variable: a command line is visible to every user of the machine)
      --json                 machine output: one JSON object per line on stdout
  -h, --help                 this help`;

type OptionsConfig = NonNullable<Parameters<typeof parseArgs>[0]>['options'];

/** node:util parseArgs, strict, with its complaints turned into usage errors (exit 2). */
export function parseCommandLine<O extends NonNullable<OptionsConfig>>(args: string[], options: O) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new CliError(err instanceof Error ? err.message : String(err), EXIT.usage);
  }
}

export interface ClientOptions {
  /** The tus endpoint, always with a trailing slash (the status API is found beside it). */
  endpoint: string;
  token?: string;
  json: boolean;
}

/** Endpoint and token from the options, else from TUSK_URL / TUSK_TOKEN. */
export function clientOptions(values: { endpoint?: string; token?: string; json?: boolean }, env: NodeJS.ProcessEnv): ClientOptions {
  const raw = values.endpoint ?? (env.TUSK_URL || DEFAULT_ENDPOINT);
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new CliError(`not a URL: --endpoint / TUSK_URL "${raw}"`, EXIT.usage);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new CliError(`--endpoint / TUSK_URL must be an http(s) URL (got "${raw}")`, EXIT.usage);
  if (url.username || url.password) throw new CliError('--endpoint / TUSK_URL must not carry credentials; use --token / TUSK_TOKEN', EXIT.usage);
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  const token = values.token ?? (env.TUSK_TOKEN || undefined);
  if (token !== undefined && !/^[\x21-\x7e]+$/.test(token)) throw new CliError('the token must be printable ASCII without spaces', EXIT.usage);
  return { endpoint: url.href, token, json: values.json ?? false };
}

export function authHeaders(token: string | undefined): Record<string, string> {
  return token ? { Authorization: `Bearer ${token}` } : {};
}
