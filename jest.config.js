// Tests are ESM TypeScript (the @tus packages are ESM-only), compiled by ts-jest file by file
// (tsconfig.json sets isolatedModules) without type-checking (`npm run lint` runs tsc --noEmit). Real Redis and a real S3 (Ceph RGW)
// are started once for the run by test/infra/global-setup.ts.
/** @type {import('jest').Config} */
export default {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  transform: {
    '^.+\\.ts$': ['ts-jest', { useESM: true, diagnostics: false }],
  },
  testMatch: ['<rootDir>/test/**/*.test.ts'],
  globalSetup: '<rootDir>/test/infra/global-setup.ts',
  globalTeardown: '<rootDir>/test/infra/global-teardown.ts',
  testTimeout: 120_000,
  maxWorkers: 2,
};
