// Which way dependencies may point (npm run lint checks it):
//   config <- lib <- hooks <- { server, workers },  tusk.ts the only composition root.
// server/ and workers/ never import each other; nothing imports tusk.ts; no cycles anywhere.
// Inside workers/: the toolchain (media/, scan/) <- steps/ <- jobs/ <- pipeline.ts, main.ts.
// cli/ (the command-line client) is a client of the HTTP interface: of tusk it uses only pure
// helpers (and types), and only tusk.ts starts it.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    { name: 'no-cycles', severity: 'error', comment: 'Modules import each other: split out what both need.', from: {}, to: { circular: true } },
    { name: 'config-is-the-base', severity: 'error', comment: 'config/ depends on nothing of tusk.', from: { path: '^config/' }, to: { path: '^(lib|hooks|server|workers|minio)/|^tusk\\.ts$' } },
    { name: 'lib-is-shared-core', severity: 'error', comment: 'lib/ is the shared core: it may use config/ only.', from: { path: '^lib/' }, to: { path: '^(hooks|server|workers|minio)/|^tusk\\.ts$' } },
    { name: 'minio-is-a-tool', severity: 'error', comment: 'minio/ (bucket bootstrap) uses config/ and lib/ only.', from: { path: '^minio/' }, to: { path: '^(hooks|server|workers)/|^tusk\\.ts$' } },
    { name: 'hooks-below-faces', severity: 'error', comment: 'hooks/ (the upload lifecycle) is used by server/ and workers/, never the other way.', from: { path: '^hooks/' }, to: { path: '^(server|workers)/|^tusk\\.ts$' } },
    { name: 'server-not-workers', severity: 'error', comment: 'The API server never loads worker code (sharp, ffmpeg, processors).', from: { path: '^server/' }, to: { path: '^workers/' } },
    { name: 'workers-not-server', severity: 'error', comment: 'The worker never loads HTTP code (express, routers).', from: { path: '^workers/' }, to: { path: '^server/' } },
    { name: 'workers-tools-below-steps', severity: 'error', comment: 'workers/media (ffmpeg, sharp, EXIF) and workers/scan (clamd) are the toolchain: the steps and jobs use them, never the other way.', from: { path: '^workers/(media|scan)/' }, to: { path: '^workers/(steps|jobs)/|^workers/[^/]+\\.ts$' } },
    { name: 'workers-steps-below-jobs', severity: 'error', comment: 'workers/steps are plain functions on files: queues, records and jobs are workers/jobs business.', from: { path: '^workers/steps/' }, to: { path: '^workers/jobs/|^workers/[^/]+\\.ts$' } },
    { name: 'cli-is-a-client', severity: 'error', comment: 'cli/ talks HTTP to a server: it never loads server, worker, hook or bucket code.', from: { path: '^cli/' }, to: { path: '^(hooks|server|workers|minio)/|^tusk\\.ts$' } },
    { name: 'cli-uses-pure-helpers', severity: 'error', comment: 'Of config/ and lib/, cli/ loads only pure helpers (no configuration, Redis, S3); types are free.', from: { path: '^cli/' }, to: { path: '^(config|lib)/', pathNot: '^(config/units|lib/upload-id|lib/upload-status)\\.ts$', dependencyTypesNot: ['type-only'] } },
    { name: 'only-tusk-starts-cli', severity: 'error', comment: 'The command-line client is started by tusk.ts alone.', from: { pathNot: '^(cli/|tusk\\.ts$)' }, to: { path: '^cli/' } },
    { name: 'one-composition-root', severity: 'error', comment: 'Only tusk.ts wires the process; nothing imports it.', from: {}, to: { path: '^tusk\\.ts$' } },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(node_modules|dist|test|bench)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
