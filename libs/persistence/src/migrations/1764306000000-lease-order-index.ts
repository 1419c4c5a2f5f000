import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A lease takes a task's ready sub-tasks in (next_attempt_at, id) order. The index had only
 * next_attempt_at after the task, and every sub-task materialised in one batch shares its
 * next_attempt_at: each lease of 200 read and sorted the whole batch (thousands of rows) to find
 * them. With id in the index the order is the index's own, and a lease reads about what it takes.
 */
export class LeaseOrderIndex1764306000000 implements MigrationInterface {
  name = 'LeaseOrderIndex1764306000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(
      `CREATE INDEX sub_tasks_pending_order ON sub_tasks (task_id, next_attempt_at, id) WHERE status = 'pending'`,
    );
    await q.query(`DROP INDEX sub_tasks_pending`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(
      `CREATE INDEX sub_tasks_pending ON sub_tasks (task_id, next_attempt_at) WHERE status = 'pending'`,
    );
    await q.query(`DROP INDEX sub_tasks_pending_order`);
  }
}
