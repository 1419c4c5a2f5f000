import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * When a send is recorded, the provider events still pending that may be its own are made due
 * at once: found through its tracking id, its provider message id or its recipient. Partial
 * indexes: they hold only the pending events, a small set (most are matched as they arrive).
 */
export class PendingMatchIndexes1764302400000 implements MigrationInterface {
  name = 'PendingMatchIndexes1764302400000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(
      `CREATE INDEX mail_events_pending_tracking ON mail_events (tracking_id) WHERE match_status = 'pending'`,
    );
    await q.query(
      `CREATE INDEX mail_events_pending_recipient ON mail_events (lower(recipient)) WHERE match_status = 'pending'`,
    );
    await q.query(
      `CREATE INDEX mail_events_pending_message_ids ON mail_events USING gin (provider_message_ids) WHERE match_status = 'pending'`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX mail_events_pending_message_ids`);
    await q.query(`DROP INDEX mail_events_pending_recipient`);
    await q.query(`DROP INDEX mail_events_pending_tracking`);
  }
}
