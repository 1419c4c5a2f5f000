export * from './complete-tasks';
export * from './reclaim-leases';
