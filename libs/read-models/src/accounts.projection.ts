import { EntityManager } from 'typeorm';
import { DomainEvent, isEvent } from '@edm/events';
import { Projection } from '@edm/event-store';

export const accountsProjection: Projection = {
  name: 'accounts',
  tables: ['accounts', 'api_keys'],
  handles: ['AccountCreated', 'ApiKeyIssued', 'ApiKeyRevoked'],
  async apply(tx: EntityManager, events: readonly DomainEvent[]) {
    for (const event of events) {
      if (isEvent(event, 'AccountCreated')) {
        await tx.query(`INSERT INTO accounts (id, name, created_at) VALUES ($1, $2, $3)`, [
          event.data.accountId,
          event.data.name,
          event.occurredAt,
        ]);
      } else if (isEvent(event, 'ApiKeyIssued')) {
        const d = event.data;
        await tx.query(
          `INSERT INTO api_keys (id, account_id, role, key_hash, prefix, label, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
          [d.keyId, d.accountId, d.role, d.keyHash, d.prefix, d.label, event.occurredAt],
        );
      } else if (isEvent(event, 'ApiKeyRevoked')) {
        await tx.query(`UPDATE api_keys SET revoked_at = $2 WHERE id = $1`, [
          event.data.keyId,
          event.occurredAt,
        ]);
      }
    }
  },
};
