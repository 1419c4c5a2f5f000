export * from './webhooks';
export * from './senders';
