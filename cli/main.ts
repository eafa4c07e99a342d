// The command-line client: `tusk upload <file...>` and `tusk status <id...>` (README.md,
// "Command-line client"). It is a client of tusk's (or any tus server's) HTTP interface and
// nothing else: it reads no server configuration and opens no Redis or S3 connection, and
// dependency-cruiser keeps it from importing server, worker or hook code.
import { CliError, EXIT, Interrupted, exitOfSignal } from './options.js';
import { status } from './status.js';
import { upload } from './upload.js';

/** Runs `tusk <command> ...args`; resolves with the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  // The first Ctrl-C stops cleanly (the upload stays resumable, the next run goes on); a second
  // one while that is under way exits at once.
  const interrupt = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupt.signal.aborted) process.exit(exitOfSignal(signal));
    interrupt.abort(new Interrupted(signal));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    if (command === 'upload') return await upload(args, process.env, interrupt.signal);
    if (command === 'status') return await status(args, process.env, interrupt.signal);
    throw new CliError(`unknown command "${command}"`, EXIT.usage);
  } catch (err) {
    if (err instanceof Interrupted) return exitOfSignal(err.signal);
    if (err instanceof CliError) {
      console.error(`tusk ${command}: ${err.message}`);
      return err.exitCode;
    }
    console.error(`tusk ${command}: ${err instanceof Error ? err.message : String(err)}`);
    return EXIT.failed;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
