import { DataSource } from 'typeorm';
import { EventStore, START } from './event-store';

export interface RebuildReport {
  events: number;
  tables: string[];
}

/**
 * Empties every table owned by a registered projection and replays the whole store through the
 * same projections, in one transaction: readers see the old read models until it commits, and
 * appends wait (the events table is locked against writes) so nothing slips between.
 */
export async function rebuildReadModels(
  dataSource: DataSource,
  store: EventStore,
  batchSize = 5_000,
): Promise<RebuildReport> {
  const tables = [...new Set(store.registered.flatMap((p) => p.tables))];
  return dataSource.transaction(async (tx) => {
    await tx.query('LOCK TABLE events IN EXCLUSIVE MODE');
    if (tables.length) await tx.query(`TRUNCATE ${tables.map((t) => `"${t}"`).join(', ')}`);
    let checkpoint = START;
    let count = 0;
    for (;;) {
      // Holding the lock, every transaction that wrote events has finished: read them all.
      const batch = await store.readAll(checkpoint, batchSize, tx, { locked: true });
      if (batch.length === 0) break;
      await store.project(
        tx,
        batch.map((b) => b.event),
      );
      count += batch.length;
      checkpoint = batch[batch.length - 1].checkpoint;
    }
    return { events: count, tables };
  });
}
