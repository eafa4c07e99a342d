// The Prometheus files under monitoring/ with Prometheus's own tool (promtool, Debian's
// `prometheus` package, installed by scripts/ensure-system-deps.sh test): the configuration and the
// alert rules are valid, and the rules' unit tests (alerts.test.yml) pass: each alert fires on the
// series that should fire it, after its `for`, with its labels and annotations, and not on healthy ones.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const exec = promisify(execFile);
const dir = fileURLToPath(new URL('../../monitoring/prometheus/', import.meta.url));
const promtool = (...args: string[]) => exec('promtool', args, { cwd: dir }).then(
  ({ stdout }) => ({ code: 0, output: stdout }),
  (err: { code?: number; stdout?: string; stderr?: string }) => ({ code: err.code ?? 1, output: `${err.stdout ?? ''}${err.stderr ?? ''}` }),
);

test('promtool: prometheus.yml and alerts.yml are valid', async () => {
  expect(await promtool('check', 'config', 'prometheus.yml')).toMatchObject({ code: 0 });
  const rules = await promtool('check', 'rules', 'alerts.yml');
  expect(rules).toMatchObject({ code: 0 });
  expect(rules.output).toMatch(/SUCCESS: 8 rules found/);
});

test('promtool: the alert rules pass their unit tests (alerts.test.yml)', async () => {
  const result = await promtool('test', 'rules', 'alerts.test.yml');
  expect(result.output).toMatch(/SUCCESS/);
  expect(result.code).toBe(0);
});
