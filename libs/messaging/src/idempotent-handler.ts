import { DataSource, EntityManager } from 'typeorm';
import { DomainEvent } from '@edm/events';

/**
 * Runs `effect` at most once per consumer and event: the processed mark and the effect commit
 * together, so a redelivered event changes nothing the second time.
 */
export async function handleOnce(
  dataSource: DataSource,
  consumer: string,
  event: DomainEvent,
  effect: (tx: EntityManager) => Promise<void>,
): Promise<boolean> {
  return dataSource.transaction(async (tx) => {
    const marked: unknown[] = await tx.query(
      `INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING event_id`,
      [consumer, event.id],
    );
    if (marked.length === 0) return false;
    await effect(tx);
    return true;
  });
}
