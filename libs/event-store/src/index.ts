export * from './event-store';
export * from './expected-version';
export * from './projection';
export * from './uuid-v7';
export * from './read-model-rebuild';
