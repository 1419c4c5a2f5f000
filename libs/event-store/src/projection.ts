import { EntityManager } from 'typeorm';
import { DomainEvent, EventType } from '@edm/events';

/**
 * An inline projection: applied in the transaction that appends the events, and again, with the
 * same code, when read models are rebuilt from the store.
 */
export interface Projection {
  readonly name: string;
  /** Tables it owns; a rebuild empties them (children first) before replaying. */
  readonly tables: readonly string[];
  readonly handles: readonly EventType[];
  apply(tx: EntityManager, events: readonly DomainEvent[]): Promise<void>;
}
