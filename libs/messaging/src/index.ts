export * from './ack-decision';
export * from './jetstream.service';
export * from './idempotent-handler';
export * from './outbox-relay';
