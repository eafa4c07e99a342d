// `tusk status <id|upload URL>...`: the status document of each upload, for people or (--json) as is.
import { COMMON_HELP, COMMON_OPTIONS, CliError, EXIT, clientOptions, parseCommandLine } from './options.js';
import { describeDocument } from './format.js';
import { fetchDocument, statusTarget } from './status-api.js';

export const STATUS_HELP = `usage: tusk status [options] <upload id or upload URL>...

Prints the status of each upload: status, each processing task with its progress, the reason of a
rejection or failure, and the outputs (thumbnails, HLS, MP4, metadata).

${COMMON_HELP}

Exit codes: 0 printed, 1 failed, 2 bad usage, 4 no such upload (or another user's), 5 not authorized.`;

export async function status(args: string[], env: NodeJS.ProcessEnv, signal: AbortSignal): Promise<number> {
  const { values, positionals } = parseCommandLine(args, COMMON_OPTIONS);
  if (values.help) {
    process.stdout.write(`${STATUS_HELP}\n`);
    return EXIT.ok;
  }
  const o = clientOptions(values, env);
  if (positionals.length === 0) throw new CliError('which upload? (tusk status --help)', EXIT.usage);
  const targets = positionals.map((p) => statusTarget(p, o.endpoint));
  let exit: number = EXIT.ok;
  for (const [i, target] of targets.entries()) {
    try {
      const doc = await fetchDocument(target.url, o.token, signal);
      if (o.json) process.stdout.write(`${JSON.stringify(doc)}\n`);
      else process.stdout.write(`${i > 0 ? '\n' : ''}${describeDocument(doc)}\n`);
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      const e = err instanceof CliError ? err : new CliError(String(err));
      if (o.json) process.stdout.write(`${JSON.stringify({ upload_id: target.id, error: { code: e.code ?? null, message: e.message } })}\n`);
      console.error(`tusk status ${target.id}: ${e.message}`);
      exit = Math.max(exit, e.exitCode);
    }
  }
  return exit;
}
