import { EntityManager } from 'typeorm';
import { EventMetadata, newEvent } from '@edm/events';
import { EventStore } from '@edm/event-store';

/**
 * A sending task whose sub-tasks have all reached a final state is completed. The task row is
 * locked first, so two replicas finishing the last sub-tasks at once complete it once.
 */
export async function completeTasksIfDone(
  tx: EntityManager,
  store: EventStore,
  taskIds: Iterable<string>,
  meta: EventMetadata,
): Promise<string[]> {
  const completed: string[] = [];
  for (const taskId of new Set(taskIds)) {
    const [task] = await tx.query(`SELECT status FROM tasks WHERE id = $1 FOR UPDATE`, [taskId]);
    if (task?.status !== 'sending') continue;
    const [open] = await tx.query(
      `SELECT 1 FROM sub_tasks WHERE task_id = $1 AND status IN ('pending', 'allocated', 'sending') LIMIT 1`,
      [taskId],
    );
    if (open) continue;
    await store.append(
      tx,
      [
        {
          streamId: `task-${taskId}`,
          expectedVersion: 'any',
          events: [newEvent('TaskCompleted', { taskId })],
        },
      ],
      meta,
    );
    completed.push(taskId);
  }
  return completed;
}
