export * from './mail-event-type';
