import { MigrationInterface, QueryRunner } from 'typeorm';
import { createEventsNotifyTrigger } from './events-notify-trigger';

/**
 * The relay is notified after a commit that appended events, by the event store, and no longer
 * by a trigger inside the appending transaction: a NOTIFY there makes Postgres hold one lock for
 * the whole cluster from before the commit until its WAL flush, so every commit that appended
 * events waited for the one before it and none shared a flush.
 */
export class NotifyAfterCommit1764313200000 implements MigrationInterface {
  name = 'NotifyAfterCommit1764313200000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`DROP TRIGGER events_appended ON events`);
    await q.query(`DROP FUNCTION notify_events_appended()`);
  }

  async down(q: QueryRunner): Promise<void> {
    await createEventsNotifyTrigger(q);
  }
}
