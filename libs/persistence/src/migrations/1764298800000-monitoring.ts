import { MigrationInterface, QueryRunner } from 'typeorm';

export class Monitoring1764298800000 implements MigrationInterface {
  name = 'Monitoring1764298800000';

  async up(q: QueryRunner): Promise<void> {
    // Read model of the alert events; at most one firing alert per kind and subject.
    await q.query(`
      CREATE TABLE alerts (
        id uuid PRIMARY KEY,
        kind text NOT NULL,
        subject text NOT NULL,
        account_id uuid,
        severity text NOT NULL,
        message text NOT NULL,
        details jsonb NOT NULL,
        status text NOT NULL CHECK (status IN ('firing', 'resolved')),
        first_seen_at timestamptz NOT NULL,
        resolved_at timestamptz,
        acknowledged_at timestamptz,
        acknowledged_by text
      )`);
    await q.query(`CREATE UNIQUE INDEX alerts_one_firing ON alerts (kind, subject) WHERE status = 'firing'`);
    await q.query(`CREATE INDEX alerts_status ON alerts (status, first_seen_at DESC)`);
    // Deliveries to the HTTP sink: retried with backoff, repeated after a cool-down while firing.
    await q.query(`
      CREATE TABLE alert_notifications (
        id uuid PRIMARY KEY,
        alert_id uuid NOT NULL,
        what text NOT NULL CHECK (what IN ('raised', 'resolved', 'repeat')),
        body jsonb NOT NULL,
        attempts integer NOT NULL DEFAULT 0,
        next_attempt_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        delivered_at timestamptz,
        last_error text,
        created_at timestamptz NOT NULL DEFAULT clock_timestamp()
      )`);
    await q.query(
      `CREATE INDEX alert_notifications_due ON alert_notifications (next_attempt_at) WHERE delivered_at IS NULL`,
    );
    // What the monitor learns from the event stream (idempotent upserts, latest wins).
    await q.query(`
      CREATE TABLE monitor_service_state (
        service_id uuid PRIMARY KEY,
        last_sent_at timestamptz,
        last_webhook_at timestamptz,
        first_unanswered_sent_at timestamptz
      )`);
    await q.query(`
      CREATE TABLE monitor_task_state (
        task_id uuid PRIMARY KEY,
        last_progress_at timestamptz NOT NULL
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    for (const table of ['monitor_task_state', 'monitor_service_state', 'alert_notifications', 'alerts'])
      await q.query(`DROP TABLE ${table}`);
  }
}
