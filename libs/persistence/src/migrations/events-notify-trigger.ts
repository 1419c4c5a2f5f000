import { QueryRunner } from 'typeorm';

/**
 * The statement trigger that notified the relay from inside every transaction appending events:
 * created by the initial schema, dropped by NotifyAfterCommit1764313200000 (and created again by
 * its `down`). Shared so that both run the same statements.
 */
export async function createEventsNotifyTrigger(q: QueryRunner): Promise<void> {
  await q.query(`
      CREATE FUNCTION notify_events_appended() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN PERFORM pg_notify('edm_events', ''); RETURN NULL; END $$`);
  await q.query(`
      CREATE TRIGGER events_appended AFTER INSERT ON events
      FOR EACH STATEMENT EXECUTE FUNCTION notify_events_appended()`);
}
