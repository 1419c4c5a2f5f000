/* The fault-injection suite (npm run test:faults): the e2e tier's setup, its own files, a long budget. */
const { projects } = require('../../jest.config.js');
const e2e = projects.find((p) => p.displayName === 'e2e');

module.exports = {
  ...e2e,
  displayName: 'faults',
  testMatch: ['<rootDir>/test/faults/**/*.fault-spec.ts'],
  setupFilesAfterEnv: [],
  testTimeout: 600_000,
  forceExit: true,
};
