import { MigrationInterface, QueryRunner } from 'typeorm';

export class WebhookIntake1764295200000 implements MigrationInterface {
  name = 'WebhookIntake1764295200000';

  async up(q: QueryRunner): Promise<void> {
    // Every webhook and tracking hit as received, committed before it is answered.
    await q.query(`
      CREATE TABLE event_logs (
        id uuid PRIMARY KEY,
        received_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        source text NOT NULL,
        service_id uuid,
        path text NOT NULL,
        headers jsonb NOT NULL,
        raw_body text NOT NULL,
        verified boolean NOT NULL,
        status text NOT NULL DEFAULT 'received' CHECK (status IN ('received', 'processed', 'invalid')),
        parse_error text,
        events integer,
        processed_at timestamptz
      )`);
    await q.query(`CREATE INDEX event_logs_received ON event_logs (received_at) WHERE status = 'received'`);
    // One row per provider event found in a request (a SendGrid batch holds many).
    await q.query(`
      CREATE TABLE mail_events (
        id uuid PRIMARY KEY,
        event_log_id uuid NOT NULL REFERENCES event_logs (id),
        provider text NOT NULL,
        service_id uuid,
        account_id uuid,
        dedupe_key text NOT NULL UNIQUE,
        type text,
        raw_type text NOT NULL,
        occurred_at timestamptz NOT NULL,
        recipient text,
        provider_message_ids text[] NOT NULL DEFAULT '{}',
        tracking_id text,
        task_id text,
        header_message_id text,
        url text,
        reason text,
        suppression boolean NOT NULL DEFAULT false,
        match_status text NOT NULL DEFAULT 'pending' CHECK (match_status IN ('pending', 'matched', 'unmatched', 'ignored')),
        match_strategy text,
        sub_task_id uuid,
        matched_task_id uuid,
        match_attempts integer NOT NULL DEFAULT 0,
        next_match_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        received_at timestamptz NOT NULL DEFAULT clock_timestamp()
      )`);
    await q.query(
      `CREATE INDEX mail_events_to_match ON mail_events (next_match_at) WHERE match_status = 'pending'`,
    );
    await q.query(`CREATE INDEX mail_events_task ON mail_events (matched_task_id, match_status)`);
    await q.query(`CREATE INDEX mail_events_service_received ON mail_events (service_id, received_at)`);
    await q.query(`CREATE INDEX mail_events_event_log ON mail_events (event_log_id)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE mail_events`);
    await q.query(`DROP TABLE event_logs`);
  }
}
