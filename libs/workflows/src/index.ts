export * from './complete-tasks';
