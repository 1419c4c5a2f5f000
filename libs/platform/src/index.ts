export * from './bootstrap';
export * from './domain-error';
export * from './global-exception.filter';
export * from './health.controller';
export * from './platform.module';
export * from './zod-body';
export * from './event-bus.subscriber';
