// Tests are ESM TypeScript (the @tus packages are ESM-only), compiled by ts-jest file by file
// (tsconfig.json sets isolatedModules) without type-checking (`npm run lint` runs tsc --noEmit).
//
// Three tiers, one jest project each (`--selectProjects unit`; test/run.sh and the npm scripts
// choose them):
//   unit         test/unit/         pure code in-process: no Redis, S3, clamd, ffmpeg, no dist/
//   integration  test/integration/  tusk modules in-process against the real Redis, S3 (Ceph RGW),
//                                   clamd, ffmpeg and sharp
//   e2e          test/e2e/          real tusk processes (`node dist/tusk.js`), black-box
// Redis, RGW and clamd are started by test/infra/global-setup.ts, which only the integration and
// e2e projects have: jest runs a project's globalSetup only when one of its tests is selected, so
// a unit run starts no services. The root globalSetup/globalTeardown (every run) give the run its
// own temporary directory and fail it if anything is left there (test/infra/temp-guard-*.ts).
const tier = (displayName, services) => ({
  displayName,
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  transform: {
    '^.+\\.ts$': ['ts-jest', { useESM: true, diagnostics: false }],
  },
  testMatch: [`<rootDir>/test/${displayName}/**/*.test.ts`],
  ...(services ? { globalSetup: '<rootDir>/test/infra/global-setup.ts', globalTeardown: '<rootDir>/test/infra/global-teardown.ts' } : {}),
});

/** @type {import('jest').Config} */
export default {
  projects: [tier('unit', false), tier('integration', true), tier('e2e', true)],
  globalSetup: '<rootDir>/test/infra/temp-guard-setup.ts',
  globalTeardown: '<rootDir>/test/infra/temp-guard-teardown.ts',
  testTimeout: 120_000,
  maxWorkers: 2,
};
