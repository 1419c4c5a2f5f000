import { MigrationInterface, QueryRunner } from 'typeorm';
import { createEventsNotifyTrigger } from './events-notify-trigger';

export class InitialSchema1764288000000 implements MigrationInterface {
  name = 'InitialSchema1764288000000';

  async up(q: QueryRunner): Promise<void> {
    // The event store doubles as the outbox. tx_id lets readers stay below the oldest in-flight
    // transaction, so an event that commits late is never skipped by a checkpoint.
    await q.query(`
      CREATE TABLE events (
        global_position bigserial PRIMARY KEY,
        id uuid NOT NULL UNIQUE,
        stream_id text NOT NULL,
        version integer NOT NULL CHECK (version > 0),
        type text NOT NULL,
        data jsonb NOT NULL,
        metadata jsonb NOT NULL,
        occurred_at timestamptz NOT NULL DEFAULT now(),
        tx_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
        UNIQUE (stream_id, version)
      )`);
    await q.query(`CREATE INDEX events_tx_position ON events (tx_id, global_position)`);
    await createEventsNotifyTrigger(q);
    await q.query(`
      CREATE TABLE relay_checkpoints (
        name text PRIMARY KEY,
        tx_id xid8 NOT NULL DEFAULT '0',
        position bigint NOT NULL DEFAULT 0,
        published bigint NOT NULL DEFAULT 0,
        updated_at timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`
      CREATE TABLE processed_events (
        consumer text NOT NULL,
        event_id uuid NOT NULL,
        processed_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (consumer, event_id)
      )`);

    await q.query(`
      CREATE TABLE accounts (
        id uuid PRIMARY KEY,
        name text NOT NULL,
        created_at timestamptz NOT NULL
      )`);
    await q.query(`
      CREATE TABLE api_keys (
        id uuid PRIMARY KEY,
        account_id uuid REFERENCES accounts (id),
        role text NOT NULL CHECK (role IN ('admin', 'account')),
        key_hash text NOT NULL UNIQUE,
        prefix text NOT NULL,
        label text NOT NULL,
        created_at timestamptz NOT NULL,
        revoked_at timestamptz
      )`);

    await q.query(`
      CREATE TABLE sending_services (
        id uuid PRIMARY KEY,
        account_id uuid NOT NULL REFERENCES accounts (id),
        name text NOT NULL,
        provider text NOT NULL,
        from_email text NOT NULL,
        from_name text,
        pace jsonb NOT NULL,
        daily_quota integer,
        quota_reset_hour_utc integer NOT NULL DEFAULT 0,
        options jsonb NOT NULL DEFAULT '{}',
        credentials_sealed text,
        status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'frozen', 'disabled')),
        status_reason text,
        frozen_until timestamptz,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL
      )`);
    await q.query(`CREATE INDEX sending_services_account ON sending_services (account_id)`);
    // Operational state of a service that is not derived from events: the pace slot and quota
    // counters are claimed with conditional updates by every dispatcher replica.
    await q.query(`
      CREATE TABLE service_runtime (
        service_id uuid PRIMARY KEY,
        next_slot_at timestamptz NOT NULL DEFAULT now(),
        quota_used integer NOT NULL DEFAULT 0,
        quota_window_start timestamptz NOT NULL DEFAULT now(),
        consecutive_failures integer NOT NULL DEFAULT 0,
        last_error text,
        last_sent_at timestamptz
      )`);

    await q.query(`
      CREATE TABLE contacts (
        id uuid PRIMARY KEY,
        account_id uuid NOT NULL REFERENCES accounts (id),
        email text NOT NULL,
        name text,
        attributes jsonb NOT NULL DEFAULT '{}',
        tags text[] NOT NULL DEFAULT '{}',
        status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'bounced', 'complained', 'unsubscribed')),
        soft_bounces integer NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        UNIQUE (account_id, email)
      )`);
    await q.query(`CREATE INDEX contacts_tags ON contacts USING gin (tags)`);
    await q.query(`CREATE INDEX contacts_account_status ON contacts (account_id, status)`);

    await q.query(`
      CREATE TABLE templates (
        id uuid PRIMARY KEY,
        account_id uuid NOT NULL REFERENCES accounts (id),
        name text NOT NULL,
        subject text NOT NULL,
        html text,
        text text,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL
      )`);

    await q.query(`
      CREATE TABLE tasks (
        id uuid PRIMARY KEY,
        account_id uuid NOT NULL REFERENCES accounts (id),
        name text NOT NULL,
        subject text NOT NULL,
        html text,
        text text,
        template_id uuid REFERENCES templates (id),
        service_ids uuid[] NOT NULL DEFAULT '{}',
        priority integer NOT NULL DEFAULT 0,
        scheduled_at timestamptz,
        status text NOT NULL CHECK (status IN ('scheduled', 'sending', 'paused', 'completed', 'cancelled')),
        total integer NOT NULL,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        completed_at timestamptz
      )`);
    await q.query(`CREATE INDEX tasks_account_created ON tasks (account_id, created_at DESC)`);
    await q.query(`CREATE INDEX tasks_active ON tasks (status) WHERE status IN ('scheduled', 'sending')`);

    await q.query(`
      CREATE TABLE sub_tasks (
        id uuid PRIMARY KEY,
        task_id uuid NOT NULL REFERENCES tasks (id),
        account_id uuid NOT NULL,
        contact_id uuid,
        email text NOT NULL,
        status text NOT NULL,
        service_id uuid,
        lease_owner text,
        lease_expires_at timestamptz,
        attempts integer NOT NULL DEFAULT 0,
        next_attempt_at timestamptz,
        provider_message_id text,
        tracking_id text NOT NULL UNIQUE,
        last_error text,
        version integer NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        sent_at timestamptz,
        delivered_at timestamptz,
        opened_at timestamptz,
        clicked_at timestamptz
      )`);
    await q.query(`CREATE INDEX sub_tasks_task_status ON sub_tasks (task_id, status)`);
    await q.query(
      `CREATE INDEX sub_tasks_pending ON sub_tasks (task_id, next_attempt_at) WHERE status = 'pending'`,
    );
    await q.query(
      `CREATE INDEX sub_tasks_leased ON sub_tasks (lease_expires_at) WHERE status IN ('allocated', 'sending')`,
    );
    await q.query(`CREATE INDEX sub_tasks_provider_message ON sub_tasks (provider_message_id)`);
    await q.query(`CREATE INDEX sub_tasks_task_email ON sub_tasks (task_id, email)`);
    await q.query(`CREATE INDEX sub_tasks_email_service_sent ON sub_tasks (email, service_id, sent_at)`);

    await q.query(`
      CREATE TABLE idempotency_keys (
        account_id uuid NOT NULL,
        key text NOT NULL,
        request_hash text NOT NULL,
        status_code integer NOT NULL,
        response jsonb NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (account_id, key)
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    for (const table of [
      'idempotency_keys',
      'sub_tasks',
      'tasks',
      'templates',
      'contacts',
      'service_runtime',
      'sending_services',
      'api_keys',
      'accounts',
      'processed_events',
      'relay_checkpoints',
      'events',
    ]) {
      await q.query(`DROP TABLE IF EXISTS ${table}`);
    }
    await q.query(`DROP FUNCTION IF EXISTS notify_events_appended`);
  }
}
