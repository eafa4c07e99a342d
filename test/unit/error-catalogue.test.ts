// The error catalogue is the one list of codes clients see: README.md documents each of them with
// its status, and no two codes are spelled alike.
import fs from 'node:fs';
import { ERROR_CATALOGUE } from '../../lib/errors.js';

test('README "Errors" lists every code of the catalogue with its status, and nothing else', () => {
  const readme = fs.readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const section = readme.slice(readme.indexOf('\n## Errors\n'), readme.indexOf('\n## Architecture\n'));
  const rows = [...section.matchAll(/^\| `([a-z_]+)` \| (\d{3}) \|/gm)].map((m) => [m[1], Number(m[2])]);
  expect(rows).toEqual(Object.entries(ERROR_CATALOGUE).map(([code, { status }]) => [code, status]));
});
