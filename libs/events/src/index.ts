export * from './event-data.schemas';
export * from './domain-event';
export * from './subjects';
export * from './payload-parts';
