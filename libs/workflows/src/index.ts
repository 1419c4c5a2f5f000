export * from './complete-tasks';
export * from './reclaim-leases';
export * from './task-diagnosis';
export * from './service-quota';
