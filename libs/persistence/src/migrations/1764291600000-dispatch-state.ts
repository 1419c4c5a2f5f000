import { MigrationInterface, QueryRunner } from 'typeorm';

export class DispatchState1764291600000 implements MigrationInterface {
  name = 'DispatchState1764291600000';

  async up(q: QueryRunner): Promise<void> {
    // When a task was last served by any service: the round robin between tasks of equal priority.
    await q.query(`
      CREATE TABLE task_dispatch (
        task_id uuid PRIMARY KEY,
        last_leased_at timestamptz NOT NULL
      )`);
    await q.query(`ALTER TABLE service_runtime ADD COLUMN quota_exhausted_at timestamptz`);
    await q.query(`ALTER TABLE service_runtime ADD COLUMN frozen_count integer NOT NULL DEFAULT 0`);
    // The sandbox provider's "remote" mailbox: what it accepted, once per idempotency key.
    await q.query(`
      CREATE TABLE sandbox_messages (
        idempotency_key text PRIMARY KEY,
        provider_message_id text NOT NULL UNIQUE,
        service_id uuid,
        tracking_id text NOT NULL,
        recipient text NOT NULL,
        subject text NOT NULL,
        headers jsonb NOT NULL,
        accepted_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        accepts integer NOT NULL DEFAULT 1
      )`);
    await q.query(
      `CREATE INDEX sandbox_messages_service_accepted ON sandbox_messages (service_id, accepted_at)`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE sandbox_messages`);
    await q.query(`ALTER TABLE service_runtime DROP COLUMN frozen_count, DROP COLUMN quota_exhausted_at`);
    await q.query(`DROP TABLE task_dispatch`);
  }
}
