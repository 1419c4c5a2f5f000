/* Three tiers: *.spec.ts (pure), *.int-spec.ts (real Postgres + NATS), *.e2e-spec.ts (apps as processes). */
const swc = [
  '@swc/jest',
  {
    jsc: {
      target: 'es2022',
      parser: { syntax: 'typescript', decorators: true },
      transform: { legacyDecorator: true, decoratorMetadata: true },
    },
    module: { type: 'commonjs' },
  },
];
const moduleNameMapper = { '^@edm/([a-z-]+)$': '<rootDir>/libs/$1/src' };
const tier = (displayName, testMatch, extra = {}) => ({
  displayName,
  rootDir: __dirname,
  testEnvironment: 'node',
  transform: { '^.+\\.ts$': swc },
  moduleNameMapper,
  testMatch,
  ...extra,
});
module.exports = {
  // Tests run in band on two cores: a handle left open by a failed test must not hold the run forever.
  forceExit: true,
  projects: [
    tier('unit', ['<rootDir>/{apps,libs}/**/*.spec.ts', '<rootDir>/test/deploy/**/*.spec.ts']),
    tier('int', ['<rootDir>/{apps,libs}/**/*.int-spec.ts']),
    tier('e2e', ['<rootDir>/{apps,test}/**/*.e2e-spec.ts'], {
      setupFilesAfterEnv: ['<rootDir>/test/e2e-timeout.js'],
    }),
  ],
};
