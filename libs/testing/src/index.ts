export * from './test-environment';
export * from './service-process';
export * from './private-postgres';
