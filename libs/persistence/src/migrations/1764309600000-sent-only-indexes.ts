import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Two correlation indexes hold only the sub-tasks they can find: those with a provider message
 * id, and those sent (recipient, service, sent_at). Their queries compare those columns with
 * strict operators, so the planner still uses them. A sub-task is updated three times on its way
 * to `sent` (leased, sending, sent), each a new row version; before it is sent neither index
 * takes an entry for it any more.
 */
export class SentOnlyIndexes1764309600000 implements MigrationInterface {
  name = 'SentOnlyIndexes1764309600000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(
      `CREATE INDEX sub_tasks_provider_message_new ON sub_tasks (provider_message_id) WHERE provider_message_id IS NOT NULL`,
    );
    await q.query(`DROP INDEX sub_tasks_provider_message`);
    await q.query(`ALTER INDEX sub_tasks_provider_message_new RENAME TO sub_tasks_provider_message`);
    await q.query(
      `CREATE INDEX sub_tasks_email_service_sent_new ON sub_tasks (email, service_id, sent_at) WHERE sent_at IS NOT NULL`,
    );
    await q.query(`DROP INDEX sub_tasks_email_service_sent`);
    await q.query(`ALTER INDEX sub_tasks_email_service_sent_new RENAME TO sub_tasks_email_service_sent`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX sub_tasks_email_service_sent`);
    await q.query(`CREATE INDEX sub_tasks_email_service_sent ON sub_tasks (email, service_id, sent_at)`);
    await q.query(`DROP INDEX sub_tasks_provider_message`);
    await q.query(`CREATE INDEX sub_tasks_provider_message ON sub_tasks (provider_message_id)`);
  }
}
