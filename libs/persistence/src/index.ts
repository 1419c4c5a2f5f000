export * from './database';
export * from './persistence.module';
export * from './postgres-errors';
export { migrations } from './migrations';
export * from './named-statement';
