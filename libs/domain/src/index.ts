export * from './mail-event-type';
export * from './credentials-vault';
export * from './email-address';
export * from './sub-task-lifecycle';
export * from './tracking-links';
export * from './secret-options';
