import { EntityManager } from 'typeorm';
import { DomainEvent, isEvent } from '@edm/events';
import { Projection } from '@edm/event-store';

export const alertsProjection: Projection = {
  name: 'alerts',
  tables: ['alerts'],
  handles: ['AlertRaised', 'AlertResolved', 'AlertAcknowledged'],
  async apply(tx: EntityManager, events: readonly DomainEvent[]) {
    for (const event of events) {
      if (isEvent(event, 'AlertRaised')) {
        const d = event.data;
        await tx.query(
          `INSERT INTO alerts (id, kind, subject, account_id, severity, message, details, status, first_seen_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, 'firing', $8)`,
          [
            d.alertId,
            d.kind,
            d.subject,
            d.accountId,
            d.severity,
            d.message,
            JSON.stringify(d.details),
            event.occurredAt,
          ],
        );
      } else if (isEvent(event, 'AlertResolved')) {
        await tx.query(`UPDATE alerts SET status = 'resolved', resolved_at = $2 WHERE id = $1`, [
          event.data.alertId,
          event.occurredAt,
        ]);
      } else if (isEvent(event, 'AlertAcknowledged')) {
        await tx.query(`UPDATE alerts SET acknowledged_at = $2, acknowledged_by = $3 WHERE id = $1`, [
          event.data.alertId,
          event.occurredAt,
          event.data.by,
        ]);
      }
    }
  },
};
