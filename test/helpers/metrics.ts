// Reading a tusk process's /metrics (Prometheus text exposition format 0.0.4) in tests.
//   const m = await scrape(`${tusk.url}/metrics`);
//   m.types.tusd_uploads_created            'counter'
//   m.value('tusd_errors_total', { status: '404', code: 'not_found' })   the sample, or undefined
//   m.sum('tusk_step_duration_seconds_count', { queue: 'virus-scan' })  summed over other labels

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Scrape {
  status: number;
  contentType: string | null;
  text: string;
  /** `# TYPE` of each metric family. */
  types: Record<string, string>;
  samples: Sample[];
  /** The sample with exactly these labels (and no others); undefined when there is none. */
  value(name: string, labels?: Record<string, string>): number | undefined;
  /** The sum of the samples named `name` whose labels include `labels` (0 when none). */
  sum(name: string, labels?: Record<string, string>): number;
}

export function parseExposition(text: string): Pick<Scrape, 'types' | 'samples'> {
  const types: Record<string, string> = {};
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) {
      types[type[1]!] = type[2]!;
      continue;
    }
    if (!line || line.startsWith('#')) continue;
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!sample) throw new Error(`not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const m of (sample[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[m[1]!] = m[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    samples.push({ name: sample[1]!, labels, value: Number(sample[3]) });
  }
  return { types, samples };
}

const includes = (labels: Record<string, string>, wanted: Record<string, string>) => Object.entries(wanted).every(([k, v]) => labels[k] === v);

export async function scrape(url: string, headers: Record<string, string> = {}): Promise<Scrape> {
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(15_000) });
  const text = await res.text();
  const { types, samples } = res.status === 200 ? parseExposition(text) : { types: {}, samples: [] };
  return {
    status: res.status,
    contentType: res.headers.get('content-type'),
    text,
    types,
    samples,
    value: (name, labels = {}) =>
      samples.find((s) => s.name === name && includes(s.labels, labels) && Object.keys(s.labels).length === Object.keys(labels).length)?.value,
    sum: (name, labels = {}) => samples.filter((s) => s.name === name && includes(s.labels, labels)).reduce((total, s) => total + s.value, 0),
  };
}
