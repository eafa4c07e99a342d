// What the command-line client tells while it works, in one of three forms:
//   tty    one progress bar per file on stderr (cli-progress: redraws in place, fits the terminal),
//          rate and ETA; after upload the bar shows the processing; results on stdout at the end
//   lines  stderr not a terminal (CI, logs): one line per 10% per file and per change of the
//          processing, results on stdout as they come
//   json   --json: one JSON object per line on stdout (events below), nothing else on stdout
import cliProgress from 'cli-progress';
import type { CliError } from './options.js';
import { describeDocument, formatBytes, formatDuration, formatRate, RateMeter, summaryLine } from './format.js';
import type { StatusDocument } from './status-api.js';

export interface FileTask {
  path: string;
  /** The name shown (the base name). */
  name: string;
  size: number;
}

export interface Uploaded {
  url: string;
  /** The upload's offset on the server when this run began (0 for a new upload). */
  resumedFrom: number;
}

export interface Reporter {
  begin(file: FileTask): void;
  created(file: FileTask, url: string): void;
  resumed(file: FileTask, url: string, offset: number): void;
  /** The connection failed; tus-js-client tries again after `delayMs`. */
  retrying(file: FileTask, reason: string, delayMs: number): void;
  progress(file: FileTask, sent: number): void;
  uploaded(file: FileTask, result: Uploaded): void;
  failed(file: FileTask, err: CliError): void;
  processing(file: FileTask, doc: StatusDocument): void;
  processed(file: FileTask, doc: StatusDocument): void;
  interrupted(file: FileTask | undefined, url: string | undefined, offset: number | undefined, resumable: boolean): void;
  close(): void;
}

const out = (line: string) => process.stdout.write(`${line}\n`);
const err = (line: string) => process.stderr.write(`${line}\n`);

function interruptedText(file: FileTask | undefined, url: string | undefined, offset: number | undefined, resumable: boolean): string {
  if (!file) return 'Interrupted; processing goes on on the server (tusk status <id> shows it).';
  const where = offset !== undefined ? `at least ${formatBytes(offset)} of ${formatBytes(file.size)} of ${file.name} reached the server` : `${file.name} was not finished`;
  const how = resumable ? 'run the same command again to resume from there' : `resume it with the upload URL ${url ?? '(none yet)'}`;
  return `Interrupted: ${where}; ${how}.`;
}

// ---- json ------------------------------------------------------------------------------------

class JsonReporter implements Reporter {
  private percent = new Map<FileTask, number>();
  private emit(event: string, fields: Record<string, unknown>): void {
    out(JSON.stringify({ event, ...fields }));
  }
  begin(file: FileTask) {
    this.emit('start', { file: file.path, size: file.size });
  }
  created(file: FileTask, url: string) {
    this.emit('created', { file: file.path, url });
  }
  resumed(file: FileTask, url: string, offset: number) {
    this.emit('resumed', { file: file.path, url, offset });
  }
  retrying(file: FileTask, reason: string, delayMs: number) {
    this.emit('retry', { file: file.path, reason, delay_ms: delayMs });
  }
  progress(file: FileTask, sent: number) {
    // Whole percents only: a bounded number of lines whatever the file size.
    const percent = file.size ? Math.floor((sent * 100) / file.size) : 100;
    if (this.percent.get(file) === percent) return;
    this.percent.set(file, percent);
    this.emit('progress', { file: file.path, sent, size: file.size });
  }
  uploaded(file: FileTask, r: Uploaded) {
    this.emit('uploaded', { file: file.path, url: r.url, size: file.size, resumed_from: r.resumedFrom });
  }
  failed(file: FileTask, e: CliError) {
    this.emit('error', { file: file.path, code: e.code ?? null, message: e.message, exit_code: e.exitCode });
  }
  processing(file: FileTask, doc: StatusDocument) {
    this.emit('status', { file: file.path, upload_id: doc.upload_id, status: doc.status, tasks: doc.tasks });
  }
  processed(file: FileTask, doc: StatusDocument) {
    this.emit('processed', { file: file.path, document: doc });
  }
  interrupted(file: FileTask | undefined, url: string | undefined, offset: number | undefined, resumable: boolean) {
    this.emit('interrupted', { file: file?.path ?? null, url: url ?? null, offset: offset ?? null, resumable });
    err(interruptedText(file, url, offset, resumable));
  }
  close() {}
}

// ---- lines (stderr is not a terminal) -----------------------------------------------------------

class LineReporter implements Reporter {
  private state = new Map<FileTask, { meter: RateMeter; decile: number; summary?: string }>();
  private of(file: FileTask) {
    let s = this.state.get(file);
    if (!s) this.state.set(file, (s = { meter: new RateMeter(), decile: 0 }));
    return s;
  }
  begin(file: FileTask) {
    this.of(file);
  }
  created(file: FileTask, url: string) {
    err(`${file.name}: uploading ${formatBytes(file.size)} to ${url}`);
  }
  resumed(file: FileTask, url: string, offset: number) {
    this.of(file).decile = Math.floor((offset * 10) / Math.max(file.size, 1));
    err(`${file.name}: resuming ${url} at ${formatBytes(offset)} of ${formatBytes(file.size)}`);
  }
  retrying(file: FileTask, reason: string, delayMs: number) {
    err(`${file.name}: ${reason}; trying again in ${formatDuration(delayMs / 1000)}`);
  }
  progress(file: FileTask, sent: number) {
    const s = this.of(file);
    s.meter.add(sent);
    const decile = Math.floor((sent * 10) / Math.max(file.size, 1));
    if (decile <= s.decile || decile >= 10) return;
    s.decile = decile;
    err(`${file.name}: ${decile * 10}% of ${formatBytes(file.size)} (${formatRate(s.meter.rate())}, ETA ${formatDuration(s.meter.eta(file.size))})`);
  }
  uploaded(file: FileTask, r: Uploaded) {
    out(`${file.name}: uploaded ${r.url}`);
  }
  failed(file: FileTask, e: CliError) {
    err(`${file.name}: failed: ${e.message}`);
  }
  processing(file: FileTask, doc: StatusDocument) {
    // Progress in steps of 10%, so that a long transcode prints a handful of lines, not hundreds.
    const summary = summaryLine({ ...doc, tasks: Object.fromEntries(Object.entries(doc.tasks).map(([k, t]) => [k, t.progress === undefined ? t : { ...t, progress: Math.floor(t.progress / 10) * 10 }])) as StatusDocument['tasks'] });
    const s = this.of(file);
    if (s.summary === summary) return;
    s.summary = summary;
    err(`${file.name}: ${summary}`);
  }
  processed(file: FileTask, doc: StatusDocument) {
    out(`== ${file.name}\n${describeDocument(doc)}`);
  }
  interrupted(file: FileTask | undefined, url: string | undefined, offset: number | undefined, resumable: boolean) {
    err(interruptedText(file, url, offset, resumable));
  }
  close() {}
}

// ---- tty: progress bars -------------------------------------------------------------------------

interface BarPayload {
  name: string;
  /** What the line shows after the name, for the phases without a bar. */
  text?: string;
  sent: number;
  size: number;
  rate?: number;
  eta?: number;
}

class TtyReporter implements Reporter {
  private readonly bars: cliProgress.MultiBar;
  private readonly files = new Map<FileTask, { bar: cliProgress.SingleBar; meter: RateMeter; payload: BarPayload; started: number }>();
  private readonly results: string[] = [];
  private readonly nameWidth: number;

  constructor(files: FileTask[]) {
    this.nameWidth = Math.min(30, Math.max(...files.map((f) => f.name.length), 4));
    this.bars = new cliProgress.MultiBar(
      {
        stream: process.stderr,
        hideCursor: true,
        fps: 10,
        barsize: 24,
        format: (options, params, payload: BarPayload) => {
          const name = payload.name.length > this.nameWidth ? `${payload.name.slice(0, this.nameWidth - 1)}…` : payload.name.padEnd(this.nameWidth);
          if (payload.text !== undefined) return `${name}  ${payload.text}`;
          const bar = cliProgress.Format.BarFormat(params.progress, options);
          const percent = `${Math.floor(params.progress * 100)}%`.padStart(4);
          return `${name} ${bar} ${percent}  ${formatBytes(payload.sent)} / ${formatBytes(payload.size)}  ${formatRate(payload.rate)}  ETA ${formatDuration(payload.eta)}`;
        },
      },
      cliProgress.Presets.shades_classic,
    );
  }

  private line(file: FileTask) {
    let entry = this.files.get(file);
    if (!entry) {
      const payload: BarPayload = { name: file.name, sent: 0, size: file.size };
      entry = { bar: this.bars.create(Math.max(file.size, 1), 0, payload), meter: new RateMeter(), payload, started: Date.now() };
      this.files.set(file, entry);
    }
    return entry;
  }
  private show(file: FileTask, changes: Partial<BarPayload>, value?: number) {
    const entry = this.line(file);
    Object.assign(entry.payload, changes);
    if (value === undefined) entry.bar.update(entry.payload as object);
    else entry.bar.update(value, entry.payload as object);
  }
  begin(file: FileTask) {
    this.show(file, { text: 'connecting' });
  }
  created(file: FileTask) {
    this.show(file, { text: undefined });
  }
  resumed(file: FileTask, url: string, offset: number) {
    this.bars.log(`${file.name}: resuming at ${formatBytes(offset)} of ${formatBytes(file.size)} (${url})\n`);
    this.show(file, { text: undefined, sent: offset }, offset);
  }
  retrying(file: FileTask, reason: string, delayMs: number) {
    this.bars.log(`${file.name}: ${reason}; trying again in ${formatDuration(delayMs / 1000)}\n`);
  }
  progress(file: FileTask, sent: number) {
    const entry = this.line(file);
    entry.meter.add(sent);
    this.show(file, { text: undefined, sent, rate: entry.meter.rate(), eta: entry.meter.eta(file.size) }, sent);
  }
  uploaded(file: FileTask, r: Uploaded) {
    const entry = this.line(file);
    const seconds = (Date.now() - entry.started) / 1000;
    this.show(file, { text: `uploaded ${formatBytes(file.size)} in ${formatDuration(seconds)}` }, Math.max(file.size, 1));
    this.results.push(`${file.name}: uploaded ${r.url}`);
  }
  failed(file: FileTask, e: CliError) {
    this.show(file, { text: `failed: ${e.message}` });
  }
  processing(file: FileTask, doc: StatusDocument) {
    this.show(file, { text: summaryLine(doc) });
  }
  processed(file: FileTask, doc: StatusDocument) {
    this.show(file, { text: summaryLine(doc) });
    this.results.push(`== ${file.name}\n${describeDocument(doc)}`);
  }
  interrupted(file: FileTask | undefined, url: string | undefined, offset: number | undefined, resumable: boolean) {
    if (file) this.show(file, { text: 'interrupted' });
    this.close();
    err(interruptedText(file, url, offset, resumable));
  }
  private closed = false;
  close() {
    if (this.closed) return;
    this.closed = true;
    this.bars.stop();
    for (const r of this.results) out(r);
  }
}

export function createReporter(json: boolean, files: FileTask[]): Reporter {
  if (json) return new JsonReporter();
  return process.stderr.isTTY ? new TtyReporter(files) : new LineReporter();
}
