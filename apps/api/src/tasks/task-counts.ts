import { AFTER_SENT, SubTaskStatus, subTaskStatuses } from '@edm/events';

export type TaskCounts = Record<SubTaskStatus | 'total', number>;

const AFTER_DELIVERED: readonly SubTaskStatus[] = [
  'delivered',
  'opened',
  'clicked',
  'complained',
  'unsubscribed',
];
const AFTER_OPENED: readonly SubTaskStatus[] = ['opened', 'clicked'];

/**
 * Exact counts from sub-task rows. `sent`, `delivered` and `opened` are cumulative (reached that
 * step or a later one); every other status counts the sub-tasks sitting in it now.
 */
export function taskCounts(rows: readonly { status: string; count: number | string }[]): TaskCounts {
  const now = Object.fromEntries(subTaskStatuses.map((s) => [s, 0])) as Record<SubTaskStatus, number>;
  for (const row of rows)
    now[row.status as SubTaskStatus] = (now[row.status as SubTaskStatus] ?? 0) + Number(row.count);
  const sum = (statuses: readonly SubTaskStatus[]) => statuses.reduce((total, s) => total + now[s], 0);
  return {
    ...now,
    total: sum(subTaskStatuses),
    sent: sum(AFTER_SENT),
    delivered: sum(AFTER_DELIVERED),
    opened: sum(AFTER_OPENED),
  };
}
