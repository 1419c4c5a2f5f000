export * from './test-environment';
export * from './service-process';
export * from './private-postgres';
export * from './private-nats';
export * from './api-call';
export * from './sns-test-signer';
export * from './lock-wait';
