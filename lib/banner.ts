// What a tusk process tells a person who started it on a terminal, once it is ready: where to
// point clients, what it stores where, and what is not set up yet. (Not on a terminal, the same
// facts are one JSON log line.)

export interface StartupFacts {
  mode: 'server' | 'worker' | 'all';
  version: string;
  /** [log key, label, value], in order (tus endpoint, API, storage, Redis, virus scan, auth, workers...). */
  lines: Array<[string, string, string]>;
  /** Things to fix, said loudly. */
  warnings: string[];
}

export function renderBanner(facts: StartupFacts, color: boolean): string {
  const bold = (s: string) => (color ? `\x1b[1m${s}\x1b[0m` : s);
  const yellow = (s: string) => (color ? `\x1b[33m${s}\x1b[0m` : s);
  const width = Math.max(...facts.lines.map(([, label]) => label.length));
  const mode = facts.mode === 'all' ? 'server + workers' : facts.mode;
  const out = ['', bold(`tusk ${facts.version} ready (${mode})`)];
  for (const [, label, value] of facts.lines) out.push(`  ${label.padEnd(width)}  ${value}`);
  for (const warning of facts.warnings) out.push('', yellow(`  ! ${warning}`));
  out.push('', '  Ctrl-C stops it.', '');
  return out.join('\n');
}
