// `npm start` (and `npm run server` / `worker`) compile only when something changed since the last
// build: tsc takes 7-20 s on a small machine, the check a few milliseconds. "Changed" means a
// source file, a Lua script or a build setting is newer than dist/.build-stamp (written by every
// successful `npm run build`), or the stamp is missing.
import { spawnSync } from 'node:child_process';
import process from 'node:process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const stamp = path.join(root, 'dist', '.build-stamp');
const SOURCES = ['tusk.ts', 'config', 'lib', 'hooks', 'server', 'workers', 'minio', 'cli', 'bench', 'web', 'package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json'];

function newest(entry) {
  let stat;
  try {
    stat = fs.statSync(entry);
  } catch {
    return 0;
  }
  if (!stat.isDirectory()) return /\.(ts|lua|json|html|css|mjs)$/.test(entry) ? stat.mtimeMs : 0;
  let latest = stat.mtimeMs; // a deleted or renamed file changes its folder
  for (const name of fs.readdirSync(entry)) latest = Math.max(latest, newest(path.join(entry, name)));
  return latest;
}

const built = fs.existsSync(stamp) ? fs.statSync(stamp).mtimeMs : 0;
const changed = Math.max(...SOURCES.map((s) => newest(path.join(root, s))));
if (built > changed && fs.existsSync(path.join(root, 'dist', 'tusk.js'))) process.exit(0);

// `npm run build` writes the stamp when it succeeds.
const result = spawnSync('npm', ['run', 'build', '--silent'], { cwd: root, stdio: 'inherit' });
process.exit(result.status ?? 1);
