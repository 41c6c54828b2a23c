/**
 * Two projects. `unit`: pure tests (*.unit.test.ts), no servers, seconds (`npm run test:unit`).
 * `e2e`: everything else, against the Temporal dev server and moto that its globalSetup starts
 * (Jest runs a project's globalSetup only when one of its files is selected, so a unit file alone
 * starts nothing). `npm test` runs both projects, every file once.
 */
const shared = {
  rootDir: __dirname,
  testEnvironment: 'node',
  transform: {
    '^.+\\.tsx?$': ['@swc/jest', { jsc: { target: 'es2022' } }],
    // jose 6 ships ESM only; jest's own module loader (Node 20) cannot require it, so it is compiled to CommonJS.
    '/node_modules/jose/.+\\.js$': ['@swc/jest', { jsc: { target: 'es2022' }, module: { type: 'commonjs' } }],
  },
  transformIgnorePatterns: ['/node_modules/(?!jose/)'],
};

/** @type {import('jest').Config} */
module.exports = {
  // Global options (Jest reads these from the top level, not from a project).
  testTimeout: 180_000,
  verbose: true,
  projects: [
    { ...shared, displayName: 'unit', testMatch: ['<rootDir>/test/**/*.unit.test.ts'] },
    {
      ...shared,
      displayName: 'e2e',
      testMatch: ['<rootDir>/test/**/*.test.ts'],
      testPathIgnorePatterns: ['/node_modules/', '\\.unit\\.test\\.ts$'],
      globalSetup: '<rootDir>/test/support/global-setup.ts',
      globalTeardown: '<rootDir>/test/support/global-teardown.ts',
    },
  ],
};
