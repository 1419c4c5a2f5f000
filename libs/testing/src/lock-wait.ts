import { DataSource } from 'typeorm';
import { newEvent } from '@edm/events';
import { EventStore, uuidv7 } from '@edm/event-store';

/** Anything that runs a query and answers rows (a TypeORM DataSource, a pg Client's rows). */
interface Queryable {
  query(sql: string): Promise<{ n: number }[]>;
}

/**
 * Waits until a session of this database waits for a row lock: the moment a test that holds a
 * lock in one transaction knows the other is blocked behind it.
 */
export async function untilWaitingForALock(db: Queryable, attempts = 200): Promise<void> {
  for (let i = 0; i < attempts; i += 1) {
    const [{ n }] = await db.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
    );
    if (n > 0) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error('nothing waited for a lock');
}

/**
 * A cancel of task `taskId` as the API makes it (the task row locked, `TaskCancelled` appended),
 * held open: the test starts what must see it, waits until that blocks behind the lock
 * (`untilWaitingForALock`), then commits it.
 */
export async function heldCancel(
  db: DataSource,
  store: EventStore,
  taskId: string,
): Promise<{ commit(): Promise<void> }> {
  const cancel = db.createQueryRunner();
  await cancel.startTransaction();
  await cancel.query(`SELECT status FROM tasks WHERE id = $1 FOR UPDATE`, [taskId]);
  await store.append(
    cancel.manager,
    [
      {
        streamId: `task-${taskId}`,
        expectedVersion: 'any',
        events: [newEvent('TaskCancelled', { taskId, cancelledSubTasks: 0 })],
      },
    ],
    { correlationId: uuidv7(), causationId: null },
  );
  return {
    commit: async () => {
      await cancel.commitTransaction();
      await cancel.release();
    },
  };
}
